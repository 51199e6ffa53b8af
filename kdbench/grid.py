"""Expand a run configuration into cells: row × task × domain × fraction × seed.

A **row** is a method, or a *variant*: a method with options of its own and a name. Variants come
from ``--methods 'kd,kd[temperature=4]'`` (canonical name ``method[k=v,...]``, keys sorted), from
named variants in the config file (``variants: {kd-T4: {method: kd, temperature: 4}}``), from
aliases (``metakd-ablation``: full Meta-KD and its four ablations) and from ``--sweep``
(the product of the values given per method). Each row has its own cell files.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kdbench.errors import KDBenchError
from kdbench.registry import UnknownNameError, did_you_mean

if TYPE_CHECKING:
    from kdbench.config import RunConfig
    from kdbench.registry import Registry

#: Meta-KD's ablation table (Pan et al. 2021, Table 5): full Meta-KD, then one component removed each
ABLATION_METHOD = "metakd"
ABLATION_ROWS: tuple[tuple[str, str], ...] = (
    ("metakd", "full Meta-KD"),
    ("metakd[use_prototype_weights=false]", "w/o prototype weights"),
    ("metakd[use_domain_corruption=false]", "w/o domain corruption"),
    ("metakd[use_expertise_weights=false]", "w/o expertise weights"),
    ("metakd[gamma2=0]", "w/o transferable-knowledge term (γ2 = 0)"),
)
#: ``--methods`` aliases: one name for a list of rows
ALIASES: dict[str, tuple[str, ...]] = {"metakd-ablation": tuple(name for name, _ in ABLATION_ROWS)}

_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")
_INLINE = re.compile(r"^([^\[\]]+)\[(.*)\]$")


def fraction_text(fraction: float) -> str:
    """Exact text of a fraction for cell keys: ``0.2``, ``1``; ``repr`` when ``:g`` would round."""
    short = f"{fraction:g}"
    return short if float(short) == fraction else repr(fraction)


def method_slug(name: str) -> str:
    """File-system safe form of a row name; a short hash is added when characters had to be replaced."""
    plain = name.replace(":", "-")
    safe = _SAFE.sub("-", plain).strip("-")
    if safe == plain:
        return safe
    return f"{safe}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"


@dataclass(frozen=True, order=True)
class Cell:
    task: str
    fraction: float
    seed: int
    domain: str
    method: str  # the row: a method name or a variant's name

    @property
    def key(self) -> str:
        """File-system safe, unique name of the cell."""
        return f"{self.task}__{self.domain}__{method_slug(self.method)}__f{fraction_text(self.fraction)}__s{self.seed}"

    def describe(self) -> str:
        return f"{self.method} · {self.task}/{self.domain} · f={self.fraction:g} · seed {self.seed}"


@dataclass(frozen=True)
class Variant:
    """A row of the grid: ``method`` run with ``options`` (on top of the profile and ``--set``)."""

    name: str
    method: str
    options: tuple[tuple[str, Any], ...] = ()

    @property
    def is_variant(self) -> bool:
        return bool(self.options) or self.name != self.method

    def options_dict(self) -> dict[str, Any]:
        return dict(self.options)


def canonical_name(method: str, options: dict[str, Any]) -> str:
    from kdbench.config import option_text

    if not options:
        return method
    return f"{method}[{','.join(f'{k}={option_text(v)}' for k, v in sorted(options.items()))}]"


def _variant(registry: Registry, method: str, raw: dict[str, Any], where: str, name: str | None = None) -> Variant:
    from kdbench.config import coerce_option, method_config

    cls = registry.methods.get(method)
    opts = {k: coerce_option(cls.Config, method, k, v, where) for k, v in raw.items()}
    method_config(cls.Config, method, opts)  # the options' own checks (ranges, choices), up front
    return Variant(name or canonical_name(method, opts), method, tuple(sorted(opts.items())))


def parse_row(item: str, config: RunConfig, registry: Registry) -> list[Variant]:
    """One ``--methods`` entry as rows: an alias gives several."""
    if item in ALIASES:
        return [v for sub in ALIASES[item] for v in parse_row(sub, config, registry)]
    if item in config.variants:
        spec = dict(config.variants[item])
        method = spec.pop("method")
        if item in registry.methods:
            raise KDBenchError(f"variants: {item!r} is already a method's name; name the variant differently")
        return [_variant(registry, method, spec, f"variants: {item}", name=item)]
    m = _INLINE.match(item)
    if m is None:
        if "[" in item or "]" in item:
            raise KDBenchError(f"--methods {item!r}: expected METHOD[KEY=VALUE,...], e.g. kd[temperature=4]")
        registry.methods.get(item)
        return [Variant(item, item)]
    method, body = m.group(1).strip(), m.group(2)
    raw: dict[str, Any] = {}
    for part in (p for p in body.split(",") if p.strip()):
        key, sep, val = part.partition("=")
        if not sep or not key.strip() or not val.strip():
            raise KDBenchError(f"--methods {item!r}: expected METHOD[KEY=VALUE,...], e.g. kd[temperature=4]")
        if key.strip() in raw:
            raise KDBenchError(f"--methods {item!r}: option {key.strip()} given twice")
        raw[key.strip()] = val.strip()
    return [_variant(registry, method, raw, f"--methods {item}")]


def resolve_rows(config: RunConfig, registry: Registry) -> list[Variant]:
    """The rows of the run, in order: ``methods`` (aliases and variants resolved), then the sweeps.

    A swept method's plain row (when listed) is replaced, at its place, by the sweep's variants.
    """
    rows = [v for item in config.methods for v in parse_row(item, config, registry)]
    by_method: dict[str, list[tuple[str, tuple[str, ...]]]] = {}
    for method, key, values in config.sweep:
        by_method.setdefault(method, []).append((key, values))
    for method, axes in by_method.items():
        swept = [_variant(registry, method, dict(zip([k for k, _ in axes], combo, strict=True)),
                          f"--sweep {method}")
                 for combo in itertools.product(*(vals for _, vals in axes))]
        at = next((i for i, r in enumerate(rows) if r.name == method and not r.is_variant), None)
        if at is None:
            rows.extend(swept)
        else:
            rows[at:at + 1] = swept
    seen: dict[str, Variant] = {}
    slugs: dict[str, str] = {}
    for r in rows:
        if r.name in seen:
            raise KDBenchError(f"--methods: row {r.name!r} appears twice")
        same = next((o for o in seen.values() if (o.method, o.options) == (r.method, r.options)), None)
        if same is not None:
            raise KDBenchError(f"--methods: {r.name!r} and {same.name!r} are the same configuration")
        slug = method_slug(r.name)
        if slug in slugs:
            raise KDBenchError(f"--methods: rows {r.name!r} and {slugs[slug]!r} would share cell files")
        seen[r.name], slugs[slug] = r, r.name
    return rows


def task_domains(config: RunConfig, registry: Registry) -> dict[str, tuple[str, ...]]:
    """Selected domains of each selected task; every name given must belong to some task."""
    tasks = {name: registry.tasks.get(name) for name in config.tasks}
    if config.domains is None:
        return {name: cls.domains for name, cls in tasks.items()}
    known = [d for cls in tasks.values() for d in cls.domains]
    for d in config.domains:
        if d not in known:
            raise UnknownNameError(did_you_mean("domain", d, known))
    out = {name: tuple(d for d in cls.domains if d in config.domains) for name, cls in tasks.items()}
    empty = [name for name, doms in out.items() if not doms]
    if empty:
        raise KDBenchError(f"--domains selects no domain of task {empty[0]!r} "
                           f"(its domains: {', '.join(tasks[empty[0]].domains)})")
    return out


#: the most cells one run may list; a larger grid is refused before it is expanded
MAX_CELLS = 100_000


def grid_size(config: RunConfig, selected: dict[str, tuple[str, ...]], n_rows: int) -> int:
    """Number of cells, computed without listing them (``--seeds 10**18`` must not exhaust memory)."""
    per_seed = sum(len(d) for d in selected.values()) * n_rows * len(config.fractions)
    return per_seed * config.seeds


def expand(config: RunConfig, registry: Registry, rows: list[Variant] | None = None) -> list[Cell]:
    """All cells, row innermost: cells that share a teacher and a subset run back to back."""
    rows = rows if rows is not None else resolve_rows(config, registry)
    selected = task_domains(config, registry)
    size = grid_size(config, selected, len(rows))
    if size > MAX_CELLS:
        raise KDBenchError(f"the grid has {size:,} cells (rows × domains × fractions × seeds), more than "
                           f"{MAX_CELLS:,}; split it into several runs or lower --seeds")
    cells = []
    for task, domains in selected.items():
        for fraction in config.fractions:
            for seed in range(config.seeds):
                for domain in domains:
                    for row in rows:
                        cells.append(Cell(task, fraction, seed, domain, row.name))
    return cells
