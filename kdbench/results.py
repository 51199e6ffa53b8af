"""Result files: atomic writes, tolerant reads, and the results-directory layout.

```
<results-dir>/
  run.json                      the last invocation (config, versions)
  cells/<task>__<domain>__<method>__f<fraction>__s<seed>.json   one per cell
  teachers/<hash>/model.safetensors, meta.json                 trained teachers, content-keyed
```
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1


# ------------------------------------------------------------------------------------- the cell result
#: the fields every cell file has (a failed cell too); the others are written only when they have a value
_HEADER_FIELDS = ("schema", "status", "config", "config_hash", "method", "task", "domain", "variant",
                  "teacher_seeds", "teacher_seed", "teacher_domains", "fraction", "seed", "device",
                  "precision", "compile", "teacher_cache_mb", "versions", "data_revision", "created")


@dataclasses.dataclass(eq=False)
class CellResult(Mapping[str, Any]):
    """One cell's result: what the runner writes to ``cells/<key>.json``, the Ray executor carries
    back, ``kdbench_cell_finish`` receives, and the tables and the conformance kit read.

    :meth:`to_json` / :meth:`from_json` convert to and from the file's JSON object (the same file
    format as before this type existed, schema :data:`SCHEMA_VERSION`). A result is also a read-only
    mapping of that JSON object (``result["metrics"]``, ``result.get("error")``), so that hook plugins
    written against the dict keep working. :meth:`from_json` never fails: a file read back is
    untrusted, so each value is kept as it is (check it with :func:`check_cell`), and keys this
    version does not know are kept in ``extra`` and written back unchanged.
    """

    status: str
    method: str
    task: str
    domain: str
    fraction: float
    seed: int
    schema: int = SCHEMA_VERSION
    config: dict[str, Any] = dataclasses.field(default_factory=dict)
    config_hash: str = ""
    variant: dict[str, Any] | None = None
    teacher_seeds: int | None = None
    teacher_seed: int | None = None
    #: None: the setting does not matter to this cell (its teachers are single-domain)
    teacher_domains: str | None = None
    device: str | None = None
    precision: str | None = None
    compile: bool | None = None
    teacher_cache_mb: float | None = None
    #: ``--precision auto`` on CPU: the start-up fp32/bf16 GEMM measurement (kdbench.device)
    precision_probe: dict[str, Any] | None = None
    versions: dict[str, Any] = dataclasses.field(default_factory=dict)
    data_revision: str | None = None
    created: str | None = None
    # a failed cell
    error: str | None = None
    traceback: str | None = None
    # an ok cell
    metrics: dict[str, Any] | None = None
    predictions: dict[str, Any] | None = None
    split_hash: str | None = None
    train_hash: str | None = None
    n_train: int | None = None
    timing: dict[str, Any] | None = None
    params: dict[str, Any] | None = None
    teachers: list[dict[str, Any]] | None = None
    train: dict[str, Any] | None = None
    #: where it was computed (``--executor ray``: name, node, seconds)
    executor: dict[str, Any] | None = None
    #: keys of the file this version does not know (kept on a round trip)
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)
    #: the keys of the file it was read from (None: made here, so its header and the set fields)
    _present: set[str] | None = dataclasses.field(default=None, init=False, repr=False)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_json(self) -> dict[str, Any]:
        """The cell file's JSON object."""
        return {**self.extra, **{k: self[k] for k in self._keys()}}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CellResult:
        """A result from a cell file's JSON object, values as they are (see the class docstring)."""
        known = {f.name for f in dataclasses.fields(cls)} - {"extra", "_present"}
        fields = {k: v for k, v in data.items() if k in known}
        for k in ("status", "method", "task", "domain", "fraction", "seed"):
            fields.setdefault(k, None)
        out = cls(**fields)
        out.extra = {k: v for k, v in data.items() if k not in known}
        out._present = set(data) & known
        return out

    # the read-only mapping of the JSON object
    def _keys(self) -> list[str]:
        names = [f.name for f in dataclasses.fields(self) if f.name not in ("extra", "_present")]
        if self._present is not None:  # read from a file: exactly its keys
            return [k for k in names if k in self._present]
        return [k for k in names if k in _HEADER_FIELDS or getattr(self, k) is not None]

    def __getitem__(self, key: str) -> Any:
        if key in self.extra:
            return self.extra[key]
        if key in self._keys():
            return getattr(self, key)
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        yield from self._keys()
        yield from (k for k in self.extra if k not in self._keys())

    def __len__(self) -> int:
        return len(set(self._keys()) | set(self.extra))


def config_hash(obj: Any) -> str:
    """Stable hash of a JSON-able object (keys sorted, floats in repr)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of ``data``: recorded when kdbench stores a file, checked when it reads it back."""
    return hashlib.sha256(data).hexdigest()


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@cache
def file_mode() -> int:
    """The mode ``open()`` gives a new file under the process umask (mkstemp's own is 0600)."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same directory, fsync, rename: readers never see half a file.

    The file gets the ordinary permissions of a new file, so a results directory shared with
    colleagues (or Ray workers under another user) stays readable.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=1, sort_keys=True) + "\n").encode())


def read_json(path: Path) -> dict[str, Any] | None:
    """The parsed file, or None when it is missing or corrupt (it is then recomputed)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):  # RecursionError: JSON nested too deep to parse
        return None
    return data if isinstance(data, dict) else None


def cells_dir(results_dir: Path) -> Path:
    return results_dir / "cells"


def iter_cells(results_dir: Path) -> Iterator[tuple[Path, dict[str, Any] | None]]:
    for path in sorted(cells_dir(results_dir).glob("*.json")):
        yield path, read_json(path)


def load_cells(results_dir: Path) -> list[dict[str, Any]]:
    """Every readable cell result of a run (failed ones included, with their status)."""
    return [c for _, c in iter_cells(results_dir) if c is not None and c.get("schema") == SCHEMA_VERSION]


# ------------------------------------------------------------------ reading an untrusted directory
#: a cell file larger than this is not read (a real one is well under 1 MiB)
MAX_CELL_BYTES = 64 * 2**20
#: stored test accuracy and the one derived from the predictions may differ by float32 rounding only
ACCURACY_TOLERANCE = 0.01
_NAME_KEYS = ("task", "domain", "method")


def clean_name(text: str) -> str:
    """``text`` without control or format characters (escape sequences, bidi overrides, zero-width
    characters), so that a name from a cell file cannot drive a terminal or a document."""
    import unicodedata

    return "".join(ch for ch in text if unicodedata.category(ch) not in ("Cc", "Cf", "Zl", "Zp", "Cs"))


def _number(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    v = float(x)
    return v if v == v and abs(v) != float("inf") else None


def check_cell(cell: Any) -> tuple[CellResult | None, str | None]:
    """A cell as read from a file (its JSON object, or a :class:`CellResult`), checked:
    ``(clean copy, None)`` or ``(None, problem)``.

    Checks the shape (a JSON object with string ``task``/``domain``/``method``, a fraction in (0, 1],
    an integer seed >= 0), and for an ok cell: a test accuracy in [0, 100] that agrees with its
    predictions (within :data:`ACCURACY_TOLERANCE`; the tables use the one derived from the
    predictions), predictions as equal-length lists, and finite non-negative timings. Names are
    stripped of control characters (:func:`clean_name`).
    """
    if isinstance(cell, CellResult):
        cell = cell.to_json()
    if not isinstance(cell, dict):
        return None, f"not a JSON object but {type(cell).__name__}"
    missing = [k for k in ("task", "domain", "method", "fraction", "seed") if k not in cell]
    if missing:
        return None, f"lacks {', '.join(missing)}"
    out = dict(cell)
    for key in _NAME_KEYS:
        if not isinstance(cell[key], str) or not clean_name(cell[key]).strip():
            return None, f"{key} is not a name ({_short(cell[key])})"
        out[key] = clean_name(cell[key])
    frac = _number(cell["fraction"])
    if frac is None or not 0.0 < frac <= 1.0:
        return None, f"fraction {_short(cell['fraction'])} is not a number in (0, 1]"
    out["fraction"] = frac
    seed = cell["seed"]
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        return None, f"seed {_short(seed)} is not a non-negative integer"
    if cell.get("status") != "ok":
        return CellResult.from_json(out), None
    metrics = cell.get("metrics")
    acc = _number(metrics.get("test_accuracy")) if isinstance(metrics, dict) else None
    if acc is None or not 0.0 <= acc <= 100.0:
        shown = metrics.get("test_accuracy") if isinstance(metrics, dict) else None
        return None, f"test_accuracy {_short(shown)} is not a number in [0, 100]"
    pred = cell.get("predictions")
    if not isinstance(pred, dict) or not all(isinstance(pred.get(k), list) for k in ("pred", "gold", "ids")):
        return None, "predictions lack pred, gold or ids lists"
    if not len(pred["pred"]) == len(pred["gold"]) == len(pred["ids"]) or not pred["ids"]:
        return None, (f"predictions have {len(pred['pred'])} pred, {len(pred['gold'])} gold and "
                      f"{len(pred['ids'])} ids")
    if not all(isinstance(v, (str, int)) and not isinstance(v, bool) for v in (*pred["pred"], *pred["gold"])):
        return None, "predictions hold values that are not labels"
    if len({str(i) for i in pred["ids"]}) != len(pred["ids"]):
        return None, "predictions have duplicate example ids"
    derived = 100.0 * sum(a == b for a, b in zip(pred["pred"], pred["gold"], strict=True)) / len(pred["ids"])
    if abs(derived - acc) > ACCURACY_TOLERANCE:
        return None, f"stored test_accuracy {acc:.2f} disagrees with its predictions ({derived:.2f})"
    if not isinstance(cell.get("split_hash"), str):
        return None, "split_hash is missing"
    timing = cell.get("timing")
    if timing is not None:
        if not isinstance(timing, dict):
            return None, "timing is not an object"
        for k, v in timing.items():
            if v is not None and ((t := _number(v)) is None or t < 0):
                return None, f"timing {clean_name(str(k))[:40]} {_short(v)} is not a non-negative number"
    params = cell.get("params")
    if params is not None and not isinstance(params, dict):
        return None, "params is not an object"
    if isinstance(params, dict) and params.get("model") is not None and (
            (n := _number(params["model"])) is None or n < 0):
        return None, f"params.model {_short(params['model'])} is not a non-negative number"
    out["metrics"] = {**(metrics if isinstance(metrics, dict) else {}), "test_accuracy": derived}
    return CellResult.from_json(out), None


def _short(value: Any) -> str:
    return clean_name(repr(value))[:40]


def read_regular_json(path: Path) -> tuple[Any, str | None]:
    """Parse one file that must be a regular file: ``(data, None)`` or ``(None, problem)``. A FIFO
    or device is never opened for reading (opening a FIFO would block)."""
    import stat

    try:
        st = path.stat()
    except OSError as exc:
        return None, f"cannot be read ({exc.strerror or exc})"
    if not stat.S_ISREG(st.st_mode):
        return None, "is not a regular file"
    if st.st_size > MAX_CELL_BYTES:
        return None, f"is {st.st_size} bytes, larger than any cell"
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))  # never blocks on a FIFO
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):  # swapped since the check
                return None, "is not a regular file"
            raw = f.read(MAX_CELL_BYTES + 1)
    except OSError as exc:
        return None, f"cannot be read ({exc.strerror or exc})"
    try:
        return json.loads(raw.decode("utf-8")), None
    except (ValueError, RecursionError) as exc:
        return None, f"is not valid JSON ({clean_name(str(exc))[:80]})"


def scan_cells(results_dir: Path) -> tuple[list[CellResult], list[str]]:
    """The cells of a results directory that is treated as untrusted input, and the problems found.

    Only regular ``*.json`` files in ``cells/`` are read (FIFOs, devices and directories are skipped);
    a ``cells`` directory or a cell file that is a symlink out of the results directory is refused;
    malformed JSON of any shape or depth, other schemas and cells failing :func:`check_cell` are kept
    out. Each problem is one line naming the file. Every kept cell carries its file name as ``_file``.
    """
    root = results_dir.resolve()
    folder = cells_dir(results_dir)
    problems: list[str] = []
    if folder.is_symlink() and not folder.resolve().is_relative_to(root):
        return [], [f"{clean_name(str(folder))}: a symlink out of the results directory; not read"]
    if not folder.is_dir():
        return [], []
    cells: list[CellResult] = []
    try:
        paths = sorted(folder.glob("*.json"))
    except OSError as exc:
        return [], [f"{folder}: cannot be listed ({exc.strerror or exc})"]
    for path in paths:
        name = clean_name(path.name)
        if path.is_symlink() and not path.resolve().is_relative_to(root):
            problems.append(f"{name}: a symlink out of the results directory; not read")
            continue
        data, problem = read_regular_json(path)
        if problem is None and isinstance(data, dict) and data.get("schema") != SCHEMA_VERSION:
            problem = f"schema {_short(data.get('schema'))} is not {SCHEMA_VERSION}"
        if problem is None:
            data, problem = check_cell(data)
        if problem is not None or data is None:
            problems.append(f"{name}: {problem}")
            continue
        data.extra["_file"] = name
        cells.append(data)
    return cells, problems


@cache
def git_sha() -> str | None:
    """The commit of the kdbench checkout, when it is one."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def versions() -> dict[str, str | None]:
    import platform

    import torch
    import transformers

    import kdbench

    return {"kdbench": kdbench.__version__, "torch": torch.__version__,
            "transformers": transformers.__version__, "python": platform.python_version(),
            "git_sha": git_sha()}
