"""Turn a results directory into table data (pure: no rendering here; see :mod:`kdbench.report`)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kdbench import results as res
from kdbench.stats import Summary, summarize

if TYPE_CHECKING:
    from pathlib import Path


@dataclass
class Table:
    """Rows are methods, columns are domains then ``Average``; a missing cell is None."""

    title: str
    columns: list[str]
    rows: dict[str, list[Summary | None]]
    notes: list[str] = field(default_factory=list)


def _correct(cell: dict[str, Any]) -> list[bool]:
    p = cell["predictions"]
    return [a == b for a, b in zip(p["pred"], p["gold"], strict=True)]


def build(results_dir: Path) -> list[Table]:
    """One table per (task, fraction): mean ± sd over seeds, with n, per method × domain."""
    cells = res.load_cells(results_dir)
    groups: dict[tuple[str, float], list[dict[str, Any]]] = defaultdict(list)
    failed = defaultdict(int)
    for c in cells:
        if c.get("status") == "ok":
            groups[(c["task"], c["fraction"])].append(c)
        else:
            failed[(c["task"], c["fraction"])] += 1
    tables = []
    for (task, fraction), group in sorted(groups.items()):
        domains = list(dict.fromkeys(c["domain"] for c in group))
        methods = list(dict.fromkeys(c["method"] for c in group))
        by = defaultdict(dict)
        for c in group:
            by[(c["method"], c["domain"])][c["seed"]] = c
        rows: dict[str, list[Summary | None]] = {}
        for m in methods:
            row: list[Summary | None] = []
            for d in domains:
                seeds = by.get((m, d), {})
                row.append(summarize([s["metrics"]["test_accuracy"] for s in seeds.values()],
                                     [_correct(s) for s in seeds.values()]) if seeds else None)
            # Average over domains, per seed, only for seeds that have every domain: never invented.
            full = [s for s in sorted({s for d in domains for s in by.get((m, d), {})})
                    if all(s in by.get((m, d), {}) for d in domains)]
            avg = [sum(by[(m, d)][s]["metrics"]["test_accuracy"] for d in domains) / len(domains) for s in full]
            row.append(summarize(avg) if avg and all(r is not None for r in row) else None)
            rows[m] = row
        notes = []
        if failed[(task, fraction)]:
            notes.append(f"{failed[(task, fraction)]} failed cell(s) not shown; see kdbench run's summary")
        tables.append(Table(f"{task} · fraction {fraction:g} · test accuracy (%)", [*domains, "Average"],
                            rows, notes))
    return tables
