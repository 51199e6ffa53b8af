"""Published numbers to show beside measured ones (``kdbench table --reference FILE``).

Pure parsing and validation; see the README section "Tables and figures" for the format. A file is
YAML (``.yaml``/``.yml``) or CSV (``.csv``). Every number carries its source: the paper, the table
in it, the data split the paper used and the metric. Numbers are accuracy points (0-100).

YAML::

    sources:
      src1: {paper: "...", table: "...", split: "...", metric: "..."}
    numbers:
      - {source: src1, task: amazon, method: kd, domain: books, fraction: 1.0, value: 12.3}

CSV (one number per line, the source inline)::

    task,method,domain,fraction,value,paper,table,split,metric

``domain`` may be ``Average``; ``fraction`` defaults to 1.0.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kdbench.errors import KDBenchError

if TYPE_CHECKING:
    from pathlib import Path

SOURCE_FIELDS = ("paper", "table", "split", "metric")
NUMBER_FIELDS = ("task", "method", "domain", "fraction", "value")


@dataclass(frozen=True)
class Source:
    paper: str
    table: str
    split: str
    metric: str

    def describe(self) -> str:
        return f"{self.paper}, {self.table}; split: {self.split}; metric: {self.metric}"


@dataclass(frozen=True)
class RefNumber:
    task: str
    method: str
    domain: str
    fraction: float
    value: float
    source: int  # index into References.sources


@dataclass(frozen=True)
class References:
    sources: tuple[Source, ...]
    numbers: tuple[RefNumber, ...]

    def lookup(self, task: str, method: str, domain: str, fraction: float) -> list[RefNumber]:
        return [n for n in self.numbers if n.task == task and n.method == method and n.domain == domain
                and math.isclose(n.fraction, fraction)]


def _source(raw: Any, where: str) -> Source:
    if not isinstance(raw, dict):
        raise KDBenchError(f"{where}: a source must be a mapping with keys {', '.join(SOURCE_FIELDS)}")
    missing = [k for k in SOURCE_FIELDS if not str(raw.get(k) or "").strip()]
    if missing:
        raise KDBenchError(f"{where}: source lacks {', '.join(missing)} (every number needs paper, table, "
                           "split and metric)")
    extra = sorted(set(raw) - set(SOURCE_FIELDS))
    if extra:
        raise KDBenchError(f"{where}: unknown source key(s) {', '.join(extra)} (allowed: {', '.join(SOURCE_FIELDS)})")
    return Source(*(str(raw[k]).strip() for k in SOURCE_FIELDS))


def _number(raw: dict[str, Any], where: str) -> tuple[str, str, str, float, float]:
    missing = [k for k in ("task", "method", "domain", "value") if str(raw.get(k) or "").strip() == ""]
    if missing:
        raise KDBenchError(f"{where}: missing {', '.join(missing)}")
    try:
        value = float(raw["value"])
        fraction = float(raw["fraction"]) if str(raw.get("fraction") or "").strip() else 1.0
    except (TypeError, ValueError):
        raise KDBenchError(f"{where}: value and fraction must be numbers") from None
    if not (math.isfinite(value) and 0.0 <= value <= 100.0):
        raise KDBenchError(f"{where}: value {raw['value']!r} is not an accuracy in points (0-100)")
    if not (math.isfinite(fraction) and 0.0 < fraction <= 1.0):
        raise KDBenchError(f"{where}: fraction {raw.get('fraction')!r} is outside (0, 1]")
    return str(raw["task"]).strip(), str(raw["method"]).strip(), str(raw["domain"]).strip(), fraction, value


def _collect(records: list[tuple[dict[str, Any], Source, str]]) -> References:
    sources: list[Source] = []
    numbers: list[RefNumber] = []
    seen: set[tuple[str, str, str, float, int]] = set()
    for raw, src, where in records:
        task, method, domain, fraction, value = _number(raw, where)
        if src not in sources:
            sources.append(src)
        k = sources.index(src)
        key = (task, method, domain, fraction, k)
        if key in seen:
            raise KDBenchError(f"{where}: {method} on {task}/{domain} at fraction {fraction:g} is given twice "
                               "for the same source")
        seen.add(key)
        numbers.append(RefNumber(task, method, domain, fraction, value, k))
    if not numbers:
        raise KDBenchError("the reference file holds no numbers")
    return References(tuple(sources), tuple(numbers))


def parse_yaml(text: str, name: str = "reference file") -> References:
    import yaml

    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise KDBenchError(f"{name}: not valid YAML ({first})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("numbers"), list):
        raise KDBenchError(f"{name}: expected a mapping with a list under 'numbers' (and 'sources')")
    extra = sorted(set(doc) - {"sources", "numbers"})
    if extra:
        raise KDBenchError(f"{name}: unknown top-level key(s) {', '.join(extra)} (allowed: sources, numbers)")
    raw_sources = doc.get("sources") or {}
    if not isinstance(raw_sources, dict):
        raise KDBenchError(f"{name}: 'sources' must map a name to {{paper, table, split, metric}}")
    sources = {str(k): _source(v, f"{name}: source {k!r}") for k, v in raw_sources.items()}
    records = []
    for i, raw in enumerate(doc["numbers"], 1):
        where = f"{name}: number {i}"
        if not isinstance(raw, dict):
            raise KDBenchError(f"{where}: expected a mapping")
        allowed = {*NUMBER_FIELDS, "source"}
        extra = sorted(set(raw) - allowed)
        if extra:
            raise KDBenchError(f"{where}: unknown key(s) {', '.join(extra)} (allowed: {', '.join(sorted(allowed))})")
        ref = raw.get("source")
        if isinstance(ref, dict):
            src = _source(ref, where)
        elif ref is not None and str(ref) in sources:
            src = sources[str(ref)]
        else:
            raise KDBenchError(f"{where}: source {ref!r} is not defined under 'sources' "
                               f"(defined: {', '.join(sources) or 'none'})")
        records.append((raw, src, where))
    return _collect(records)


def parse_csv(text: str, name: str = "reference file") -> References:
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in reader.fieldnames or []]
    missing = [k for k in ("task", "method", "domain", "value", *SOURCE_FIELDS) if k not in header]
    if missing:
        raise KDBenchError(f"{name}: CSV header lacks column(s) {', '.join(missing)}")
    records = []
    for i, row in enumerate(reader, 2):
        row = {(k or "").strip(): (v or "").strip() if isinstance(v, str) else v for k, v in row.items()}
        where = f"{name}: line {i}"
        src = _source({k: row.get(k) for k in SOURCE_FIELDS}, where)
        records.append(({k: row.get(k) for k in NUMBER_FIELDS}, src, where))
    return _collect(records)


def load(path: Path) -> References:
    """Parse a YAML or CSV reference file; any problem is a one-line :class:`KDBenchError`."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise KDBenchError(f"reference file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise KDBenchError(f"cannot read reference file {path}: {exc}") from None
    suffix = path.suffix.lower()
    if suffix in (".yaml", ".yml"):
        return parse_yaml(text, str(path))
    if suffix == ".csv":
        return parse_csv(text, str(path))
    raise KDBenchError(f"reference file {path}: use a .yaml, .yml or .csv file")
