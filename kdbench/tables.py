"""Turn result cells into table data: summaries, significance tests, best/tied marks, cost, references.

Pure: no rendering here (see :mod:`kdbench.report` for the terminal and :mod:`kdbench.export` for
Markdown, LaTeX and CSV). The statistics are those of :mod:`kdbench.stats`:

* **a cell** (method × domain at one fraction): mean and sd over seeds with a 95% *t* interval;
  with a single seed, a bootstrap interval over the test examples;
* **Average**: for each seed that has *every* domain of the table, the mean over domains; seeds
  missing a domain are left out, and a method missing a domain has no Average (never invented);
* **vs the baseline** (every other row, every column): :func:`kdbench.stats.compare`, a paired
  bootstrap over test examples pooled over seeds (examples resampled jointly across seeds), the
  *primary* test; a paired *t*-test over seeds as well when both have at least 3 shared seeds.
  The Average column's test pools the examples of all domains (concatenated per seed). Holm's
  correction runs over all primary p-values of a table, and separately over its seed-level ones;
* **best / tied**: the highest mean of each column is the best; another row is tied with it when
  the paired bootstrap against the best row gives Holm-adjusted ``p >= 0.05`` (Holm over all such
  comparisons of the table);
* cells evaluated on different splits (``split_hash``) of one task/domain/fraction are refused.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from kdbench import results as res
from kdbench.api import KDBenchError
from kdbench.registry import did_you_mean
from kdbench.stats import (
    Comparison,
    StatsError,
    Summary,
    adjust,
    compare,
    holm,
    significance_marker,
    summarize,
    tied_with_best,
)

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence
    from pathlib import Path

    from kdbench.references import References, Source

AVERAGE = "Average"
DEFAULT_BASELINE = "student"
ALPHA = 0.05
N_BOOT = 10_000
#: the Meta-KD main table: teacher block, then student block (rows shown even when not run)
PAPER_TEACHERS = ("teacher", "teacher:mix", "teacher:mtl", "teacher:meta")
PAPER_STUDENTS = ("student", "kd", "pkd", "tinybert", "mix", "mtl", "multiteacher", "metakd")
LAYOUTS = ("default", "paper", "ablation")


# --------------------------------------------------------------------------------------- data
@dataclass(frozen=True)
class Cost:
    """What a row cost, averaged over the table's cells of that method (None: not measured).

    ``params``: parameters of the evaluated model; ``teacher_train_seconds``: training time of the
    teacher(s) the method used (a shared teacher counts in every cell using it); ``student_train_seconds``:
    the method's own training, teacher training excluded; ``speedup``: teacher over student inference
    time on the test set (sum over cells of each, so long cells weigh more).
    """

    params: float | None
    teacher_train_seconds: float | None
    student_train_seconds: float | None
    speedup: float | None


@dataclass(frozen=True)
class Entry:
    """One row × column of a table. ``summary`` None means not run (or, for Average, incomplete)."""

    summary: Summary | None = None
    comparison: Comparison | None = None  # vs the baseline, p_adjusted = Holm over the table
    p_seeds_adjusted: float | None = None  # Holm over the table's seed-level tests
    best: bool = False
    tied: bool = False
    ref_value: float | None = None  # reference rows: the published number
    ref_delta: float | None = None  # reference rows: measured mean - published

    @property
    def marker(self) -> str:
        """``*``/``**`` (primary test after Holm) then ``†`` (seed-level paired t after Holm)."""
        if self.comparison is None:
            return ""
        dagger = "†" if self.p_seeds_adjusted is not None and self.p_seeds_adjusted < ALPHA else ""
        return significance_marker(self.comparison.p_adjusted) + dagger


@dataclass
class Row:
    """A method's row (``source`` None) or the published numbers of one source for it."""

    method: str
    entries: list[Entry]
    block: str = ""  # paper layout: "teacher" or "student"
    cost: Cost | None = None
    source: int | None = None  # index into Table.sources for reference rows

    @property
    def measured(self) -> bool:
        return self.source is None and any(e.summary is not None for e in self.entries)


@dataclass
class Table:
    title: str
    kind: str  # "main" (domains + Average) or "scarce" (fractions, averaged over domains)
    layout: str
    task: str
    fraction: float | None
    columns: list[str]
    rows: list[Row]
    baseline: str | None
    notes: list[str] = field(default_factory=list)
    legend: list[str] = field(default_factory=list)
    sources: list[Source] = field(default_factory=list)  # of the reference rows, numbered from 1
    n_comparisons: int = 0
    n_boot: int = N_BOOT
    column_fractions: list[float] | None = None  # data-scarce tables: the fraction of each column

    @property
    def has_seed_tests(self) -> bool:
        return any(e.comparison is not None and e.comparison.p_seeds is not None for r in self.rows for e in r.entries)

    @property
    def has_cost(self) -> bool:
        return any(r.cost is not None for r in self.rows)


# ----------------------------------------------------------------------------------- indexing
def _describe(c: Mapping[str, Any]) -> str:
    return f"{c.get('method')} · {c.get('task')}/{c.get('domain')} · f={c.get('fraction')} · seed {c.get('seed')}"


def _stat_cell(c: Mapping[str, Any]) -> dict[str, Any]:
    """A stored cell as :data:`kdbench.stats.CellLike` (plus the raw cell under ``raw``)."""
    try:
        acc = float(c["metrics"]["test_accuracy"])
        p = c["predictions"]
        correct = [a == b for a, b in zip(p["pred"], p["gold"], strict=True)]
        ids = [str(i) for i in p["ids"]]
        split = c["split_hash"]
    except (KeyError, TypeError, ValueError) as exc:
        raise KDBenchError(f"cell {_describe(c)} lacks metrics, predictions or split_hash ({exc}); "
                           "rerun it") from None
    if len(ids) != len(correct) or not correct:
        raise KDBenchError(f"cell {_describe(c)}: {len(ids)} ids for {len(correct)} predictions; rerun it")
    return {"seed": c["seed"], "method": c["method"], "fraction": c["fraction"], "accuracy": acc,
            "correct": correct, "example_ids": ids, "split_hash": split, "raw": c}


class Index:
    """OK cells by task → fraction → (method, domain) → seed, checked for mixed splits."""

    def __init__(self, cells: Iterable[Mapping[str, Any]], method_order: Sequence[str] = ()) -> None:
        self.data: dict[str, dict[float, dict[tuple[str, str], dict[int, dict[str, Any]]]]] = {}
        self.failed: Counter[tuple[str, float]] = Counter()
        seen: list[str] = list(dict.fromkeys(method_order))
        hashes: dict[tuple[str, str, float], dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
        for c in cells:
            missing = [k for k in ("task", "domain", "method", "fraction", "seed") if k not in c]
            if missing:
                raise KDBenchError(f"a cell result lacks {', '.join(missing)}; is it a kdbench cell file?")
            task, fraction = c["task"], float(c["fraction"])
            if c.get("status") != "ok":
                self.failed[(task, fraction)] += 1
                continue
            cell = _stat_cell(c)
            slot = self.data.setdefault(task, {}).setdefault(fraction, {}).setdefault((c["method"], c["domain"]), {})
            if c["seed"] in slot:
                raise KDBenchError(f"cell {_describe(c)} appears twice; keep one result per cell")
            slot[c["seed"]] = cell
            hashes[(task, c["domain"], fraction)][str(cell["split_hash"])].append(f"{c['method']} seed {c['seed']}")
            if c["method"] not in seen:
                seen.append(c["method"])
        for (task, domain, fraction), by_hash in hashes.items():
            if len(by_hash) > 1:
                parts = "; ".join(f"{h}: {', '.join(who[:3])}{' …' if len(who) > 3 else ''}"
                                  for h, who in by_hash.items())
                raise KDBenchError(f"{task}/{domain} at fraction {fraction:g} mixes cells evaluated on different "
                                   f"splits (split_hash {parts}); tables compare only cells of one split, so "
                                   "rerun them on the same data or table them separately")
        present = {m for t in self.data.values() for f in t.values() for (m, _) in f}
        self.methods = [m for m in seen if m in present]

    def tasks(self) -> list[str]:
        return sorted(set(self.data) | {t for t, _ in self.failed})

    def fractions(self, task: str) -> list[float]:
        return sorted(set(self.data.get(task, {})) | {f for t, f in self.failed if t == task})

    def domains(self, task: str, fraction: float | None = None) -> list[str]:
        fracs = [fraction] if fraction is not None else list(self.data.get(task, {}))
        return sorted({d for f in fracs for (_, d) in self.data.get(task, {}).get(f, {})})

    def seeds(self, task: str, fraction: float, method: str, domain: str) -> dict[int, dict[str, Any]]:
        return self.data.get(task, {}).get(fraction, {}).get((method, domain), {})

    def methods_at(self, task: str, fraction: float | None = None) -> list[str]:
        fracs = [fraction] if fraction is not None else list(self.data.get(task, {}))
        have = {m for f in fracs for (m, _) in self.data.get(task, {}).get(f, {})}
        return [m for m in self.methods if m in have]

    def average_cells(self, task: str, fraction: float, method: str, domains: Sequence[str]) -> list[dict[str, Any]]:
        """Per seed that has every domain: the mean accuracy over domains and all examples concatenated."""
        by_domain = [self.seeds(task, fraction, method, d) for d in domains]
        if not domains or any(not s for s in by_domain):
            return []
        common = sorted(set.intersection(*(set(s) for s in by_domain)))
        out = []
        for seed in common:
            parts = [s[seed] for s in by_domain]
            out.append({"seed": seed, "method": method, "fraction": fraction,
                        "accuracy": sum(p["accuracy"] for p in parts) / len(parts),
                        "correct": [x for p in parts for x in p["correct"]],
                        "example_ids": [f"{d}/{i}" for d, p in zip(domains, parts, strict=True)
                                        for i in p["example_ids"]],
                        "split_hash": "+".join(str(p["split_hash"]) for p in parts)})
        return out


def _summary(cells: Sequence[Mapping[str, Any]]) -> Summary | None:
    if not cells:
        return None
    cells = sorted(cells, key=lambda c: c["seed"])
    return summarize([c["accuracy"] for c in cells], [cells[0]["correct"]])


def _cost(cells: Sequence[Mapping[str, Any]]) -> Cost | None:
    raws = [c["raw"] for c in cells]
    if not raws:
        return None

    def mean(values: list[Any]) -> float | None:
        vals = [float(v) for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
        return sum(vals) / len(vals) if vals else None

    timing = [r.get("timing") or {} for r in raws]
    params = mean([(r.get("params") or {}).get("model") for r in raws])
    teacher = mean([t.get("teacher_train_seconds") for t, r in zip(timing, raws, strict=True) if r.get("teachers")])
    student = mean([t.get("student_train_seconds") for t in timing])
    pairs = [(float(a), float(b)) for a, b in ((t.get("teacher_inference_seconds"), t.get("student_inference_seconds"))
                                               for t in timing)
             if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b > 0]
    speedup = sum(a for a, _ in pairs) / sum(b for _, b in pairs) if pairs else None
    return Cost(params, teacher, student, speedup)


# ------------------------------------------------------------------------------------ building
def _row_order(layout: str, present: Sequence[str], extra: Sequence[str]) -> list[tuple[str, str]]:
    """(method, block) in display order; paper layout lists every paper row, run or not."""
    names = list(dict.fromkeys([*present, *extra]))
    if layout == "ablation":  # Meta-KD's ablation rows only, in the paper's order, run or not
        from kdbench.grid import ABLATION_ROWS

        return [(m, "") for m, _ in ABLATION_ROWS]
    if layout != "paper":
        return [(m, "") for m in names]
    rows = [(m, "teacher") for m in PAPER_TEACHERS] + [(m, "student") for m in PAPER_STUDENTS]
    known = set(PAPER_TEACHERS) | set(PAPER_STUDENTS)
    return rows + [(m, "student") for m in names if m not in known]


def _compare(cells_a: Sequence[Mapping[str, Any]], cells_b: Sequence[Mapping[str, Any]], a: str, b: str,
             where: str, n_boot: int) -> Comparison | None:
    seeds_b = {c["seed"] for c in cells_b}
    if not cells_a or not cells_b or not any(c["seed"] in seeds_b for c in cells_a):
        return None
    try:
        return compare(cells_a, cells_b, method=a, baseline=b, n_boot=n_boot, seed=0)
    except StatsError as exc:
        raise KDBenchError(f"cannot compare {a} with {b} on {where}: {exc}") from None


def _finish(table: Table, groups: Sequence[Sequence[Sequence[Mapping[str, Any]]]], n_boot: int) -> None:
    """Fill comparisons (Holm over the table), best and tied marks; ``groups[r][c]`` are row r's cells
    of column c (measured rows only, aligned with ``table.rows``)."""
    rows = table.rows
    base = next((i for i, r in enumerate(rows) if r.source is None and r.method == table.baseline), None)
    cmp_at: list[tuple[int, int, Comparison]] = []
    if base is not None:
        for i, r in enumerate(rows):
            if i == base or r.source is not None:
                continue
            for j, col in enumerate(table.columns):
                c = _compare(groups[i][j], groups[base][j], r.method, table.baseline or "",
                             f"{table.task} {col}{_at(table)}", n_boot)
                if c is not None:
                    cmp_at.append((i, j, c))
    adjusted = adjust([c for _, _, c in cmp_at])
    seed_p = holm([math.nan if c.p_seeds is None else c.p_seeds for _, _, c in cmp_at])
    for (i, j, _), c, ps in zip(cmp_at, adjusted, seed_p, strict=True):
        rows[i].entries[j] = replace(rows[i].entries[j], comparison=c,
                                     p_seeds_adjusted=None if math.isnan(ps) else ps)
    table.n_comparisons = len(cmp_at)

    # Best per column, and rows tied with it (paired bootstrap vs the best, Holm over the table).
    vs_base = {(i, j): c.p_examples for i, j, c in cmp_at}
    tie_tests: list[tuple[int, int, float]] = []
    best_of: dict[int, list[int]] = {}
    for j, col in enumerate(table.columns):
        measured: dict[int, Summary] = {i: s for i, r in enumerate(rows)
                                        if r.source is None and (s := r.entries[j].summary) is not None}
        if not measured:
            continue
        top = max(s.mean for s in measured.values())
        best_of[j] = [i for i, s in measured.items() if s.mean == top]
        for i in measured:
            if i in best_of[j]:
                continue
            if best_of[j][0] == base and (i, j) in vs_base:  # same test, same resamples: reuse it
                tie_tests.append((i, j, vs_base[(i, j)]))
                continue
            c = _compare(groups[i][j], groups[best_of[j][0]][j], rows[i].method, rows[best_of[j][0]].method,
                         f"{table.task} {col}{_at(table)}", n_boot)
            if c is not None:
                tie_tests.append((i, j, c.p_examples))
    tie_p = holm([p for _, _, p in tie_tests])
    for j, best in best_of.items():
        summaries: dict[int, Summary] = {i: s for i, r in enumerate(rows)
                                         if r.source is None and (s := r.entries[j].summary) is not None}
        pvals = {i: p for (i, jj, _), p in zip(tie_tests, tie_p, strict=True) if jj == j}
        # No paired test possible (no shared seed): fall back to interval overlap, see tied_with_best.
        tied = tied_with_best(summaries, pvals, alpha=ALPHA)
        for i in summaries:
            rows[i].entries[j] = replace(rows[i].entries[j], best=i in best, tied=i in tied and i not in best)


def _at(table: Table) -> str:
    return f" at fraction {table.fraction:g}" if table.fraction is not None else ""


def _add_references(table: Table, refs: References | None, fractions: Sequence[float] | None = None) -> None:
    """Insert a row of published numbers after each method's row (adding the method's row, empty,
    when it was not run) with ``measured - published`` deltas."""
    if refs is None:
        return
    out: list[Row] = []
    for row in table.rows:
        out.append(row)
        per_source: dict[int, list[Entry]] = {}
        for j, col in enumerate(table.columns):
            if fractions is None:
                domain, fraction = col, table.fraction
            else:
                domain, fraction = AVERAGE, fractions[j]
            assert fraction is not None
            for n in refs.lookup(table.task, row.method, domain, fraction):
                entries = per_source.setdefault(n.source, [Entry() for _ in table.columns])
                measured = row.entries[j].summary
                entries[j] = Entry(ref_value=n.value,
                                   ref_delta=None if measured is None else measured.mean - n.value)
        for k in sorted(per_source):
            src = refs.sources[k]
            if src not in table.sources:
                table.sources.append(src)
            out.append(Row(row.method, per_source[k], row.block, None, table.sources.index(src)))
    table.rows = out


def _reference_methods(refs: References | None, task: str, fractions: Sequence[float]) -> list[str]:
    if refs is None:
        return []
    return list(dict.fromkeys(n.method for n in refs.numbers
                              if n.task == task and any(math.isclose(n.fraction, f) for f in fractions)))


def _legend(table: Table) -> list[str]:
    ns = Counter(e.summary.n for r in table.rows if r.source is None for e in r.entries if e.summary is not None)
    n_text = ", ".join(str(n) for n in sorted(ns)) if ns else "0"
    lines = [f"Cells: mean ± sd of test accuracy (%) over seeds (n = {n_text} seed(s) per cell); — = not run. "
             "95% CIs (t over seeds; bootstrap over test examples with one seed) are in the CSV export."]
    if table.kind == "main":
        lines.append("Average: mean over the domains of each seed that has all of them (never filled in); "
                     "its tests pool the examples of all domains.")
    else:
        lines.append("Each column: the Average over domains at that fraction of the target's training data "
                     "(per seed with every domain; never filled in).")
    if table.baseline is None:
        lines.append("No baseline in this table: no significance tests.")
    else:
        lines.append(f"vs baseline {table.baseline} (two-sided; the sign is in the Δ table): * p<0.05, ** p<0.01, "
                     "paired bootstrap over test examples "
                     f"({table.n_boot:,} resamples; examples resampled jointly across seeds), Holm–Bonferroni "
                     f"over the {table.n_comparisons} comparisons of this table."
                     + (" † p<0.05, paired t-test over seeds (with ≥ 3 shared seeds), Holm over this table's "
                        "seed-level tests." if table.has_seed_tests else " No seed-level test: fewer than 3 seeds."))
    lines.append("Bold: best mean of the column. Italic: tied with the best (paired bootstrap vs the best row, "
                 "Holm over this table's such tests, p ≥ 0.05; interval overlap when no seed is shared).")
    if table.has_cost:
        lines.append("Params: parameters of the evaluated model (M). Train: the method's own training (s, "
                     "teacher training excluded). Teacher: training of the teacher(s) it used (s). Speed-up: "
                     "teacher / student inference time on the test set. All averaged over the table's cells.")
    for k, src in enumerate(table.sources, 1):
        lines.append(f"[{k}] {src.describe()}.")
    if table.sources:
        lines.append("Rows 'reported [k]': published numbers from source k, in parentheses measured − published "
                     "(points; descriptive only, untested: the published runs are not paired with ours).")
    return lines


def _main_table(index: Index, task: str, fraction: float, layout: str, baseline: str | None,
                columns_domains: Sequence[str], refs: References | None, n_boot: int) -> Table:
    domains = list(columns_domains)
    columns = [*domains, AVERAGE]
    present = index.methods_at(task, fraction)
    rows: list[Row] = []
    groups: list[list[list[dict[str, Any]]]] = []
    for method, block in _row_order(layout, present, _reference_methods(refs, task, [fraction])):
        cells = [list(index.seeds(task, fraction, method, d).values()) for d in domains]
        avg = index.average_cells(task, fraction, method, domains)
        groups.append([*cells, avg])
        entries = [Entry(_summary(c)) for c in [*cells, avg]]
        rows.append(Row(method, entries, block, _cost([x for c in cells for x in c])))
    suffix = {"paper": " · Meta-KD layout", "ablation": " · Meta-KD ablation"}.get(layout, "")
    table = Table(f"{task} · fraction {fraction:g} · test accuracy (%){suffix}", "main", layout, task, fraction,
                  columns, rows, baseline if baseline in present else None, n_boot=n_boot)
    _finish(table, groups, n_boot)
    missing = [d for d in domains if not any(index.seeds(task, fraction, m, d) for m in present)]
    if missing:
        table.notes.append(f"no results for {', '.join(missing)}: those columns and Average are missing")
    if baseline is not None and table.baseline is None:
        table.notes.append(f"baseline {baseline} was not run here: no significance tests")
    if index.failed[(task, fraction)]:
        table.notes.append(f"{index.failed[(task, fraction)]} failed cell(s) not shown; see kdbench run's summary")
    _add_references(table, refs)
    table.legend = _legend(table)
    if layout == "ablation":
        from kdbench.grid import ABLATION_ROWS

        table.legend.append("Rows: " + "; ".join(f"{m} = {what}" for m, what in ABLATION_ROWS) + ".")
    return table


def _scarce_table(index: Index, task: str, layout: str, baseline: str | None, domains: Sequence[str],
                  refs: References | None, n_boot: int) -> Table:
    fractions = [f for f in index.fractions(task) if f in index.data.get(task, {})]
    columns = [f"{100 * f:g}%" for f in fractions]
    present = index.methods_at(task)
    rows: list[Row] = []
    groups: list[list[list[dict[str, Any]]]] = []
    for method, block in _row_order(layout, present, _reference_methods(refs, task, fractions)):
        cells = [index.average_cells(task, f, method, domains) for f in fractions]
        groups.append(cells)
        rows.append(Row(method, [Entry(_summary(c)) for c in cells], block))
    table = Table(f"{task} · data-scarce study · average test accuracy (%) over {', '.join(domains)} "
                  "by fraction of the target's training data", "scarce", layout, task, None, columns, rows,
                  baseline if baseline in present else None, n_boot=n_boot)
    table.column_fractions = fractions
    _finish(table, groups, n_boot)
    # Comparisons are per fraction; a comparison of two fractions is never made.
    if baseline is not None and table.baseline is None:
        table.notes.append(f"baseline {baseline} was not run here: no significance tests")
    _add_references(table, refs, fractions)
    table.legend = _legend(table)
    return table


def resolve_baseline(methods: Sequence[str], baseline: str | None) -> str | None:
    """``baseline`` (checked), else ``student`` when run, else the first method."""
    if baseline is not None:
        if baseline not in methods:
            raise KDBenchError(did_you_mean("--baseline method", baseline, list(methods)).replace(
                "(choose from", "(methods in these results"))
        return baseline
    if DEFAULT_BASELINE in methods:
        return DEFAULT_BASELINE
    return methods[0] if methods else None


def build_tables(cells: Iterable[Mapping[str, Any]], layout: str = "default", baseline: str | None = None,
                 references: References | None = None,
                 task_domains: Mapping[str, Sequence[str]] | None = None,
                 method_order: Sequence[str] = (), n_boot: int = N_BOOT, split: bool = True) -> list[Table]:
    """Every table of a set of cells: per task × fraction a main table, then per task with several
    fractions a data-scarce table. ``task_domains`` gives the paper layout its columns (all of a
    task's domains, so missing ones show); otherwise the columns are the domains that were run."""
    if layout not in LAYOUTS:
        raise KDBenchError(f"unknown layout {layout!r} (choose from: {', '.join(LAYOUTS)})")
    cells = list(cells)
    # Tables never mix teachers trained with and without the target domain (--teacher-domains):
    # one set of tables per setting; cells the setting does not affect (None) appear in each.
    settings = sorted({c.get("teacher_domains") for c in cells} - {None}, key=lambda s: s != "all")
    if split and (len(settings) > 1 or settings == ["others"]):
        per_setting: list[Table] = []
        for setting in settings:
            part = build_tables([c for c in cells if c.get("teacher_domains") in (setting, None)], layout,
                                baseline, references, task_domains, method_order, n_boot, split=False)
            for t in part:
                t.title += " · cross-domain teachers: " + ("all domains" if setting == "all"
                                                            else "other domains only (target held out)")
            per_setting.extend(part)
        return per_setting
    if layout == "ablation":  # every row is tested against full Meta-KD
        from kdbench.grid import ABLATION_METHOD

        cells = [c for c in cells if c.get("method") in {m for m, _ in _row_order("ablation", [], [])}]
        index = Index(cells, method_order)
        base = ABLATION_METHOD if ABLATION_METHOD in index.methods else None
    else:
        index = Index(cells, method_order)
        base = resolve_baseline(index.methods, baseline)
    out: list[Table] = []
    for task in index.tasks():
        run_domains = index.domains(task)
        if layout == "paper" and task_domains and task in task_domains:
            domains = list(task_domains[task]) + [d for d in run_domains if d not in task_domains[task]]
        else:
            domains = run_domains
        fractions = index.fractions(task)
        for fraction in fractions:
            if fraction not in index.data.get(task, {}):
                out.append(Table(f"{task} · fraction {fraction:g}", "main", layout, task, fraction, [], [], None,
                                 notes=[f"{index.failed[(task, fraction)]} failed cell(s), none finished"]))
                continue
            cols = domains if layout == "paper" else index.domains(task, fraction)
            out.append(_main_table(index, task, fraction, layout, base, cols, references, n_boot))
        if len([f for f in fractions if f in index.data.get(task, {})]) > 1:
            out.append(_scarce_table(index, task, layout, base, domains, references, n_boot))
    _teacher_legend(out, cells)
    return out


def _teacher_legend(tables: Sequence[Table], cells: Sequence[Mapping[str, Any]]) -> None:
    """State shared teacher seeds (``--teacher-seeds``) and held-out-domain teachers in the legends."""
    for t in tables:
        mine = [c for c in cells if c.get("task") == t.task and c.get("status") == "ok"
                and (t.fraction is None or float(c.get("fraction", -1)) == t.fraction)]
        shared = sorted({(int(c["teacher_seeds"]), int(c.get("teacher_seed", -1))) for c in mine
                         if isinstance(c.get("teacher_seeds"), int)
                         and c.get("teacher_seed", c.get("seed")) != c.get("seed")})
        if shared:
            ks = sorted({k for k, _ in shared})
            t.legend.append(f"Teacher seeds: K = {', '.join(map(str, ks))} (student seed s uses the teachers of "
                            "seed s mod K): seeds share teachers, so seed-level tests measure student variance "
                            "only, not teacher variance.")
        if any(c.get("teacher_domains") == "others" for c in mine):
            t.legend.append("Cross-domain teachers (mix, mtl, meta, multiteacher's) were trained without the "
                            "target domain (--teacher-domains others).")


def method_order(results_dir: Path) -> list[str]:
    """The methods of the run's last invocation, in the order given (run.json), if readable."""
    run = res.read_json(results_dir / "run.json") or {}
    methods = run.get("rows") or (run.get("config") or {}).get("methods") or []  # rows: variants resolved
    return [str(m) for m in methods] if isinstance(methods, list) else []


def build(results_dir: Path, layout: str = "default", baseline: str | None = None,
          references: References | None = None, task_domains: Mapping[str, Sequence[str]] | None = None,
          n_boot: int = N_BOOT) -> list[Table]:
    """:func:`build_tables` on the cells of a results directory."""
    return build_tables(res.load_cells(results_dir), layout, baseline, references, task_domains,
                        method_order(results_dir), n_boot)


# ------------------------------------------------------------------------------------- figures
@dataclass
class Curves:
    """Accuracy against fraction for one task: ``panels[panel][method]`` = [(fraction, Summary)]."""

    task: str
    panels: dict[str, dict[str, list[tuple[float, Summary]]]]
    methods: list[str]


def curves(cells: Iterable[Mapping[str, Any]], method_order: Sequence[str] = ()) -> list[Curves]:
    """Per task: one panel per domain plus Average, one curve per method (same statistics as the tables).

    Figures never mix teacher settings: with both, they show the default one (all domains)."""
    cells = list(cells)
    if any(c.get("teacher_domains") == "others" for c in cells) and any(c.get("teacher_domains") == "all"
                                                                         for c in cells):
        cells = [c for c in cells if c.get("teacher_domains") != "others"]
    index = Index(cells, method_order)
    out = []
    for task in index.tasks():
        domains = index.domains(task)
        fractions = sorted(index.data.get(task, {}))
        panels: dict[str, dict[str, list[tuple[float, Summary]]]] = {}
        for panel in [*domains, AVERAGE]:
            lines: dict[str, list[tuple[float, Summary]]] = {}
            for m in index.methods_at(task):
                points = []
                for f in fractions:
                    group = (index.average_cells(task, f, m, domains) if panel == AVERAGE
                             else list(index.seeds(task, f, m, panel).values()))
                    s = _summary(group)
                    if s is not None:
                        points.append((f, s))
                if points:
                    lines[m] = points
            panels[panel] = lines
        if any(panels.values()):
            out.append(Curves(task, panels, index.methods_at(task)))
    return out


def load_curves(results_dir: Path) -> list[Curves]:
    return curves(res.load_cells(results_dir), method_order(results_dir))

