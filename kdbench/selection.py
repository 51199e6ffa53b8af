"""Dev-based selection: each method at the configuration with the best mean DEV accuracy.

Pure functions on cell results (no rendering library). A method's *configurations* are its rows in a
results directory: the method itself and its variants (``kd``, ``kd[temperature=4]``, a sweep's rows).
Per method × task × domain × fraction, :func:`select_dev` picks the configuration whose mean dev
accuracy over seeds is highest (ties: the plain method, then the name's order) and returns that
configuration's cells, renamed to the method, for the ordinary tables. The choice reads
``metrics.dev_accuracy`` only: test metrics and predictions never influence it (see
``tests/test_selection.py``). The *budget* of a method is the number of configurations it had.
Cells run with different ``--teacher-domains`` settings are never pooled into one choice.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    from kdbench.tables import Table


def base_method(cell: Mapping[str, Any]) -> str:
    """The registered method of a cell's row (cells written before variants existed: their method)."""
    variant = cell.get("variant")
    if isinstance(variant, dict) and isinstance(variant.get("method"), str):
        return variant["method"]
    return str(cell["method"])


def _dev(cell: Mapping[str, Any]) -> float | None:
    value = (cell.get("metrics") or {}).get("dev_accuracy")
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


@dataclass(frozen=True)
class Choice:
    """The configuration chosen for one method × task × domain × fraction (× teacher setting)."""

    task: str
    fraction: float
    domain: str
    method: str
    configuration: str  # the row's name
    dev_mean: float
    n_seeds: int
    budget: int  # configurations with a dev accuracy for this domain
    teacher_domains: str | None = None


@dataclass
class Selection:
    cells: list[dict[str, Any]] = field(default_factory=list)  # chosen cells, ``method`` = the method
    choices: list[Choice] = field(default_factory=list)
    #: configurations per method (the largest number over its task × domain × fraction groups)
    budgets: dict[str, int] = field(default_factory=dict)

    @property
    def unequal(self) -> bool:
        return len(set(self.budgets.values())) > 1


def choose(configs: Mapping[str, Sequence[Mapping[str, Any]]], method: str) -> tuple[str, float, int] | None:
    """``(configuration, mean dev accuracy, seeds)`` with the best mean dev accuracy; reads dev only."""
    scored = []
    for name, cells in configs.items():
        devs = [d for d in (_dev(c) for c in cells) if d is not None]
        if devs:
            scored.append((-sum(devs) / len(devs), name != method, name, len(devs)))
    if not scored:
        return None
    neg, _, name, n = min(scored)
    return name, -neg, n


def select_dev(cells: Iterable[Mapping[str, Any]]) -> Selection:
    """The chosen configuration's ok cells per method × task × domain × fraction, renamed to the method;
    failed cells pass through (renamed) so that the tables still count them."""
    groups: dict[tuple[str, float, str, str, str | None], dict[str, list[Mapping[str, Any]]]] = {}
    out = Selection()
    for c in cells:
        method = base_method(c)
        if c.get("status") != "ok":
            failed = dict(c)
            failed["method"] = method
            out.cells.append(failed)
            continue
        key = (str(c["task"]), float(c["fraction"]), str(c["domain"]), method, c.get("teacher_domains"))
        groups.setdefault(key, {}).setdefault(str(c["method"]), []).append(c)
    budgets: dict[str, int] = {}
    for (task, fraction, domain, method, tdom), configs in sorted(groups.items(), key=lambda kv: str(kv[0])):
        budgets[method] = max(budgets.get(method, 0), len(configs))
        picked = choose(configs, method)
        if picked is None:
            continue
        name, dev_mean, n = picked
        out.choices.append(Choice(task, fraction, domain, method, name, dev_mean, n, len(configs), tdom))
        for c in configs[name]:
            chosen = copy.copy(dict(c))
            chosen["method"] = method
            chosen["selected"] = {"configuration": name, "dev_mean": dev_mean, "budget": len(configs)}
            out.cells.append(chosen)
    out.budgets = budgets
    return out


def legend(selection: Selection) -> list[str]:
    budgets = ", ".join(f"{m} {n}" for m, n in selection.budgets.items())
    lines = ["Selected on dev: each row is its method at the configuration with the best mean DEV accuracy over "
             "seeds, chosen per domain and fraction (test data never used to choose); cells show that "
             "configuration's test accuracy. The choices are listed below the tables."]
    lines.append(f"Budget (configurations each method was allowed): {budgets}."
                 + (" UNEQUAL budgets: a method with more configurations had more chances to score well on "
                    "dev and, through noise, on test." if selection.unequal else " Equal budgets."))
    return lines


def annotate(tables: Sequence[Table], selection: Selection) -> None:
    """Add the selection's legend lines and title mark to tables built from ``selection.cells``."""
    for t in tables:
        t.title += " · best dev configuration"
        t.legend.extend(legend(selection))


def render(selection: Selection, fmt: str = "text") -> str:
    """The chosen configuration per method and domain, with the budget column, as a pipe table."""
    by_table: dict[tuple[str, float, str | None], list[Choice]] = {}
    for ch in selection.choices:
        by_table.setdefault((ch.task, ch.fraction, ch.teacher_domains), []).append(ch)
    out: list[str] = []
    for (task, fraction, tdom), choices in by_table.items():
        domains = sorted({c.domain for c in choices})
        methods = list(dict.fromkeys(c.method for c in choices))
        where = "" if tdom in (None, "all") else f" · teachers: {tdom}"
        out.append(f"{'### ' if fmt == 'markdown' else ''}{task} · fraction {fraction:g}{where} · "
                   "configuration chosen on dev (mean dev accuracy over seeds)")
        out.append("")
        out.append("| method | budget | " + " | ".join(domains) + " |")
        out.append("|---|---:|" + "---|" * len(domains))
        for m in methods:
            cells = []
            for d in domains:
                found = [c for c in choices if c.method == m and c.domain == d]
                cells.append(f"{found[0].configuration} (dev {found[0].dev_mean:.1f}, n={found[0].n_seeds})"
                             if found else "—")
            out.append(f"| {m} | {selection.budgets.get(m, 0)} | " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out) + ("\n" if out else "")
