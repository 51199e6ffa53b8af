"""Turn result cells into table data: summaries, significance tests, best/tied marks, cost, references.

Pure: no rendering here (see :mod:`kdbench.report` for the terminal and :mod:`kdbench.export` for
Markdown, LaTeX and CSV). The statistics are those of :mod:`kdbench.stats`, all computed exactly
(no random resampling up to 6 seeds), so a table does not depend on ``resample_seed``:

* **a cell** (method × domain at one fraction): mean and sd over seeds with a 95% *t* interval;
  with a single seed, the exact bootstrap interval over the test examples. Its accuracy is derived
  from its predictions; a cell whose stored ``test_accuracy`` disagrees is kept out and reported;
* **Average**: for each seed that has *every* domain of the table, the mean over domains; seeds
  missing a domain are left out, and a method missing a domain has no Average (never invented);
* **vs the baseline**: :func:`kdbench.stats.compare`: with one seed the exact paired bootstrap over
  test examples (conditional on that training run), with several the exact two-level bootstrap over
  seeds then examples (the primary test); a paired *t*-test over seeds as well (secondary) with 3+
  shared seeds. The Average column's test pools the examples of all domains (concatenated per seed);
* **families** (Holm within each): *primary*, the student methods vs the baseline on the Average
  (every column of a data-scarce table is an Average); *secondary*, the student methods per domain;
  *teacher*, rows whose name starts with ``teacher`` (no claim about distillation rests on them).
  Each family's minimum detectable effect at 80% power (:func:`kdbench.stats.mde`, at Holm's
  strictest level) is in the legend;
* **best / tied**, per block (teacher rows, student rows): the best rows share the block's highest
  mean in the column; another row is tied when, against *every* best row, the paired test gives
  unadjusted ``p >= 0.05`` (not significantly different: no Holm, which would make ties easier),
  or, with an ``equivalence_margin``, when the TOST shows equivalence within the margin;
* Δ intervals are unadjusted 95% percentile intervals of the exact bootstrap;
* cells evaluated on different splits (``split_hash``) of one task/domain/fraction are refused.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from kdbench import results as res
from kdbench.errors import KDBenchError, did_you_mean
from kdbench.stats import (
    Comparison,
    StatsError,
    Summary,
    Variance,
    adjust,
    bootstrap_se,
    compare,
    examples_needed,
    holm,
    mde,
    paired_outcomes,
    seeds_needed,
    significance_marker,
    summarize,
    tied_with_best,
    variance_components,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence
    from pathlib import Path

    from kdbench.references import References, Source

AVERAGE = "Average"
DEFAULT_BASELINE = "student"
ALPHA = 0.05
#: initial Monte-Carlo draws of seed multisets, used only with 7+ seeds (everything else is exact)
N_BOOT = 1_000
TEACHER_PREFIX = "teacher"
FAMILIES = ("primary", "secondary", "teacher")
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
    comparison: Comparison | None = None  # vs the baseline, p_adjusted = Holm within its family
    p_seeds_adjusted: float | None = None  # Holm within its family's seed-level tests
    family: str = ""  # of the comparison: "primary", "secondary" or "teacher"
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


@dataclass(frozen=True)
class Family:
    """One family of comparisons: its size (Holm's m) and minimum detectable effect at 80% power
    (points, at Holm's strictest level; the median over the family's comparisons, and the range)."""

    name: str
    size: int
    mde: float
    mde_range: tuple[float, float]
    #: comparisons left out of the MDE: identical outputs (no discordant example), so no variance
    #: estimate; an MDE of 0 from them would claim that any difference is detectable
    no_variance: int = 0


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
    families: list[Family] = field(default_factory=list)
    equivalence_margin: float | None = None
    n_seeds: int = 0  # the most seeds of any comparison
    mc_p_se: float = 0.0  # the largest Monte-Carlo standard error of a p-value (0: all exact)
    degenerate: int = 0  # seed-level t-tests with identical per-seed differences
    rejected: list[str] = field(default_factory=list)  # cell files kept out, with the reason

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
    """A checked ok cell (:func:`kdbench.results.check_cell`) as :data:`kdbench.stats.CellLike`
    (plus the raw cell under ``raw``); the accuracy is the one derived from the predictions."""
    p = c["predictions"]
    correct = [a == b for a, b in zip(p["pred"], p["gold"], strict=True)]
    return {"seed": c["seed"], "method": c["method"], "fraction": c["fraction"],
            "accuracy": 100.0 * sum(correct) / len(correct), "correct": correct,
            "example_ids": [str(i) for i in p["ids"]], "split_hash": c["split_hash"], "raw": c}


class Index:
    """OK cells by task → fraction → (method, domain) → seed, checked for mixed splits.

    Every cell is checked first (:func:`kdbench.results.check_cell`); one that fails is kept out and
    its problem listed in ``rejected`` (``problems`` found while reading files are added there too).
    """

    def __init__(self, cells: Iterable[Mapping[str, Any]], method_order: Sequence[str] = (),
                 problems: Sequence[str] = ()) -> None:
        self.data: dict[str, dict[float, dict[tuple[str, str], dict[int, dict[str, Any]]]]] = {}
        self.failed: Counter[tuple[str, float]] = Counter()
        self.rejected: list[str] = list(problems)
        seen: list[str] = [res.clean_name(str(m)) for m in dict.fromkeys(method_order)]
        hashes: dict[tuple[str, str, float], dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
        for raw in cells:
            c, problem = res.check_cell(raw)
            if c is None:
                where = raw.get("_file") if isinstance(raw, Mapping) else None
                self.rejected.append(f"{where or 'a cell'}: {problem}")
                continue
            task, fraction = c["task"], c["fraction"]
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
                parts = "; ".join(f"{res.clean_name(h)[:24]}: {', '.join(who[:3])}{' …' if len(who) > 3 else ''}"
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
def ablation_variants() -> set[str]:
    """Meta-KD's ablation rows other than full Meta-KD."""
    from kdbench.grid import ABLATION_METHOD, ABLATION_ROWS

    return {m for m, _ in ABLATION_ROWS} - {ABLATION_METHOD}


def _row_order(layout: str, present: Sequence[str], extra: Sequence[str]) -> list[tuple[str, str]]:
    """(method, block) in display order; paper layout lists every paper row, run or not.

    The paper layout leaves out Meta-KD's ablation variants: they are the ablation layout's rows,
    tested there against full Meta-KD, and would otherwise join (and weaken, through Holm's m) the
    main table's primary family. Any other method that was run follows the paper's rows.
    """
    names = list(dict.fromkeys([*present, *extra]))
    if layout == "ablation":  # Meta-KD's ablation rows only, in the paper's order, run or not
        from kdbench.grid import ABLATION_ROWS

        return [(m, "") for m, _ in ABLATION_ROWS]
    if layout != "paper":
        return [(m, "") for m in names]
    rows = [(m, "teacher") for m in PAPER_TEACHERS] + [(m, "student") for m in PAPER_STUDENTS]
    known = set(PAPER_TEACHERS) | set(PAPER_STUDENTS) | ablation_variants()
    return rows + [(m, "student") for m in names if m not in known]


def is_teacher(method: str) -> bool:
    """Teacher rows (``teacher``, ``teacher:mix``, ...) form their own block and test family."""
    return method.startswith(TEACHER_PREFIX)


@dataclass(frozen=True)
class _Stats:
    """How a table's tests are run (passed down from :func:`build_tables`)."""

    n_boot: int = N_BOOT
    resample_seed: int = 0
    equivalence_margin: float | None = None
    thresholds: tuple[float, ...] = (ALPHA, 0.01)


def _compare(cells_a: Sequence[Mapping[str, Any]], cells_b: Sequence[Mapping[str, Any]], a: str, b: str,
             where: str, how: _Stats) -> Comparison | None:
    seeds_b = {c["seed"] for c in cells_b}
    if not cells_a or not cells_b or not any(c["seed"] in seeds_b for c in cells_a):
        return None
    try:
        return compare(cells_a, cells_b, method=a, baseline=b, n_boot=how.n_boot, seed=how.resample_seed,
                       equivalence_margin=how.equivalence_margin, thresholds=how.thresholds)
    except StatsError as exc:
        raise KDBenchError(f"cannot compare {a} with {b} on {where}: {exc}") from None


def _family(table: Table, method: str, column: str) -> str:
    if is_teacher(method):
        return "teacher"
    return "primary" if table.kind == "scarce" or column == AVERAGE else "secondary"


def _median(xs: Sequence[float]) -> float:
    v = sorted(xs)
    k = len(v) // 2
    return v[k] if len(v) % 2 else (v[k - 1] + v[k]) / 2


def _finish(table: Table, groups: Sequence[Sequence[Sequence[Mapping[str, Any]]]], how: _Stats) -> None:
    """Fill comparisons (Holm within each family), best and tied marks; ``groups[r][c]`` are row r's
    cells of column c (measured rows only, aligned with ``table.rows``)."""
    rows = table.rows
    table.equivalence_margin = how.equivalence_margin
    base = next((i for i, r in enumerate(rows) if r.source is None and r.method == table.baseline), None)
    cmp_at: list[tuple[int, int, Comparison]] = []
    if base is not None:
        # With 7+ seeds p is Monte Carlo: resolve it against every level Holm may compare it with in
        # its family (α/k and 0.01/k for k = 1..m), not only 0.05 and 0.01.
        sizes = Counter(_family(table, r.method, col) for i, r in enumerate(rows) if i != base and r.source is None
                        for j, col in enumerate(table.columns) if groups[i][j] and groups[base][j])
        levels = {fam: tuple(sorted({a / k for a in (ALPHA, 0.01) for k in range(1, m + 1)}))
                  for fam, m in sizes.items()}
        for i, r in enumerate(rows):
            if i == base or r.source is not None:
                continue
            for j, col in enumerate(table.columns):
                fam_how = replace(how, thresholds=levels.get(_family(table, r.method, col), how.thresholds))
                c = _compare(groups[i][j], groups[base][j], r.method, table.baseline or "",
                             f"{table.task} {col}{_at(table)}", fam_how)
                if c is not None:
                    cmp_at.append((i, j, c))
    table.n_comparisons = len(cmp_at)
    for fam in FAMILIES:
        members = [(i, j, c) for i, j, c in cmp_at if _family(table, rows[i].method, table.columns[j]) == fam]
        if not members:
            continue
        adjusted = adjust([c for _, _, c in members])
        seed_p = holm([math.nan if c.p_seeds is None else c.p_seeds for _, _, c in members])
        for (i, j, _), c, ps in zip(members, adjusted, seed_p, strict=True):
            rows[i].entries[j] = replace(rows[i].entries[j], comparison=c, family=fam,
                                         p_seeds_adjusted=None if math.isnan(ps) else ps)
        mdes = [mde(c.se, len(members), ALPHA) for _, _, c in members if math.isfinite(c.se) and c.se > 0]
        flat = sum(1 for _, _, c in members if c.se == 0)
        if mdes:
            table.families.append(Family(fam, len(members), _median(mdes), (min(mdes), max(mdes)), flat))
        else:
            table.families.append(Family(fam, len(members), math.nan, (math.nan, math.nan), flat))
    table.n_seeds = max((c.n_seeds for _, _, c in cmp_at), default=0)
    table.mc_p_se = max((c.p_mc_se for _, _, c in cmp_at), default=0.0)
    table.degenerate = sum(c.seeds_degenerate for _, _, c in cmp_at)

    # Best per column and block, and rows tied with every best row of their block (unadjusted).
    vs_base = {(i, j): c for i, j, c in cmp_at}
    for j, col in enumerate(table.columns):
        for block in (True, False):
            summaries: dict[int, Summary] = {i: s for i, r in enumerate(rows)
                                             if r.source is None and is_teacher(r.method) == block
                                             and (s := r.entries[j].summary) is not None}
            if not summaries:
                continue
            top = max(s.mean for s in summaries.values())
            best = [i for i, s in summaries.items() if s.mean == top]
            pvals: dict[int, dict[int, float]] = {}
            for i in summaries:
                if i in best:
                    continue
                for k in best:
                    if k == base and (i, j) in vs_base:  # the same exact test: reuse it
                        vs: Comparison | None = vs_base[(i, j)]
                    else:
                        vs = _compare(groups[i][j], groups[k][j], rows[i].method, rows[k].method,
                                      f"{table.task} {col}{_at(table)}", how)
                    if vs is not None:
                        p = vs.p_equivalence if how.equivalence_margin is not None else vs.p_examples
                        if p is not None:
                            pvals.setdefault(i, {})[k] = p
            # No paired test possible (no shared seed): interval overlap, see tied_with_best.
            tied = tied_with_best(summaries, pvals, alpha=ALPHA, equivalence=how.equivalence_margin is not None)
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


FAMILY_TEXT = {"primary": "primary: student methods vs {b} on the Average",
               "secondary": "secondary: student methods vs {b} per domain",
               "teacher": "teacher rows vs {b}"}


def _test_legend(table: Table) -> list[str]:
    b = table.baseline
    lines = []
    if b is None:
        lines.append("No baseline in this table: no significance tests.")
    elif table.n_seeds <= 1:
        lines.append(f"Tests vs {b} (two-sided; the sign is in the Δ table): exact paired bootstrap over test examples "
                     "(the bootstrap distribution computed exactly, no resampling noise). One seed: the test is "
                     "conditional on that one training run. It answers \"is this run better than the "
                     f"{b} run on these test examples?\", not \"is this method better?\"; training variance "
                     "is not counted.")
    else:
        mc = (f" seed multisets sampled: the largest Monte-Carlo standard error of a p-value is {table.mc_p_se:.2g}"
              if table.mc_p_se > 0 else " computed exactly over every seed multiset, no resampling noise")
        lines.append(f"Tests vs {b} (two-sided; the sign is in the Δ table): two-level bootstrap, seeds then test "
                     f"examples (up to {table.n_seeds} seeds paired), which counts training variance as well as "
                     f"test-set variance;{mc}."
                     + (" † p<0.05: paired t-test over seeds (secondary; ≥ 3 shared seeds), Holm within the family."
                        if table.has_seed_tests else " No seed-level t-test: fewer than 3 seeds.")
                     + (f" {table.degenerate} seed-level t-test(s) degenerate (identical per-seed differences, "
                        "zero variance): no p-value." if table.degenerate else ""))
    if b is not None and table.families:
        fams = "; ".join(f"{FAMILY_TEXT[f.name].format(b=b)} (m = {f.size}, "
                         + ("MDE not estimable" if math.isnan(f.mde) else f"MDE {f.mde:.1f}")
                         + (f" [{f.mde_range[0]:.1f}–{f.mde_range[1]:.1f}]" if f.mde_range[1] - f.mde_range[0] >= 0.05
                            else "")
                         + (f"; {f.no_variance} with identical outputs left out" if f.no_variance else "") + ")"
                         for f in table.families)
        lines.append("* p<0.05, ** p<0.01 after Holm–Bonferroni within each family of comparisons: " + fams + ". "
                     "MDE: the smallest true difference (points) the family's test detects with 80% power at "
                     "Holm's strictest level α/m (median over the family, range in brackets); smaller effects "
                     "can go unmarked, so no marker is absence of evidence, not evidence of no difference.")
    if table.equivalence_margin is not None:
        tie = (f"tied = shown equivalent to every best row of its block within ±{table.equivalence_margin:g} points "
               "(TOST, two one-sided bootstrap tests at α = 0.05)")
    else:
        tie = ("tied = not significantly different from every best row of its block (paired test, unadjusted "
               "p ≥ 0.05; interval overlap when no seed is shared). Not a test of equivalence: use "
               "--equivalence-margin for one")
    lines.append(f"Bold: best mean of the column within its block (teacher rows, student rows). Italic: {tie}.")
    return lines


def _legend(table: Table) -> list[str]:
    ns = Counter(e.summary.n for r in table.rows if r.source is None for e in r.entries if e.summary is not None)
    n_text = ", ".join(str(n) for n in sorted(ns)) if ns else "0"
    lines = [f"Cells: mean ± sd of test accuracy (%) over seeds (n = {n_text} seed(s) per cell); — = not run. "
             "95% CIs (t over seeds; exact bootstrap over test examples with one seed) are in the CSV export."]
    if table.kind == "main":
        lines.append("Average: mean over the domains of each seed that has all of them (never filled in); "
                     "its tests pool the examples of all domains.")
    else:
        lines.append("Each column: the Average over domains at that fraction of the target's training data "
                     "(per seed with every domain; never filled in).")
    lines += _test_legend(table)
    if table.has_cost:
        lines.append("Params: parameters of the evaluated model (M). Train: the method's own training (s, "
                     "teacher training excluded). Teacher: training of the teacher(s) it used (s). Speed-up: "
                     "teacher / student inference time on the test set. All averaged over the table's cells.")
    for k, src in enumerate(table.sources, 1):
        lines.append(f"[{k}] {src.describe()}.")
    if table.rejected:
        shown = "; ".join(table.rejected[:5]) + (f"; and {len(table.rejected) - 5} more" if len(table.rejected) > 5
                                                 else "")
        lines.append(f"Kept out ({len(table.rejected)} cell file(s) unreadable or invalid): {shown}.")
    if table.sources:
        lines.append("Rows 'reported [k]': published numbers from source k, in parentheses measured − published "
                     "(points; descriptive only, untested: the published runs are not paired with ours).")
    return lines


def _main_table(index: Index, task: str, fraction: float, layout: str, baseline: str | None,
                columns_domains: Sequence[str], refs: References | None, how: _Stats) -> Table:
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
                  columns, rows, baseline if baseline in present else None, n_boot=how.n_boot,
                  rejected=index.rejected)
    _finish(table, groups, how)
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
    left_out = sorted(ablation_variants() & set(present)) if layout == "paper" else []
    if left_out:
        table.legend.append(f"Meta-KD's ablation rows ({len(left_out)} run) are not in this layout or its "
                            "families: see --layout ablation, where each is tested against full Meta-KD.")
    return table


def _scarce_table(index: Index, task: str, layout: str, baseline: str | None, domains: Sequence[str],
                  refs: References | None, how: _Stats) -> Table:
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
                  baseline if baseline in present else None, n_boot=how.n_boot, rejected=index.rejected)
    table.column_fractions = fractions
    _finish(table, groups, how)
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


def layout_baseline(layout: str, methods: Sequence[str], baseline: str | None) -> str | None:
    """The method a layout tests against: full Meta-KD for the ablation layout (a different
    ``baseline`` is refused, not silently ignored), else :func:`resolve_baseline`."""
    if layout != "ablation":
        return resolve_baseline(methods, baseline)
    from kdbench.grid import ABLATION_METHOD

    if baseline is not None and baseline != ABLATION_METHOD:
        raise KDBenchError(f"the ablation layout tests against {ABLATION_METHOD}: leave out --baseline")
    return ABLATION_METHOD if ABLATION_METHOD in methods else None


def build_tables(cells: Iterable[Mapping[str, Any]], layout: str = "default", baseline: str | None = None,
                 references: References | None = None,
                 task_domains: Mapping[str, Sequence[str]] | None = None,
                 method_order: Sequence[str] = (), n_boot: int = N_BOOT, *, resample_seed: int = 0,
                 equivalence_margin: float | None = None, problems: Sequence[str] = (),
                 split: bool = True) -> list[Table]:
    """Every table of a set of cells: per task × fraction a main table, then per task with several
    fractions a data-scarce table. ``task_domains`` gives the paper layout its columns (all of a
    task's domains, so missing ones show); otherwise the columns are the domains that were run.

    ``n_boot`` and ``resample_seed`` only matter with 7 or more seeds (see :mod:`kdbench.stats`);
    ``equivalence_margin`` (points) makes "tied" a TOST equivalence test; ``problems`` (cell files
    kept out while reading) are shown in every table's legend."""
    if layout not in LAYOUTS:
        raise KDBenchError(f"unknown layout {layout!r} (choose from: {', '.join(LAYOUTS)})")
    if equivalence_margin is not None and not (math.isfinite(equivalence_margin) and equivalence_margin > 0):
        raise KDBenchError(f"the equivalence margin must be a positive number of points, got {equivalence_margin}")
    if isinstance(resample_seed, bool) or not isinstance(resample_seed, int) or resample_seed < 0:
        raise KDBenchError(f"the resample seed must be a non-negative integer, got {resample_seed}")
    cells = list(cells)
    # Tables never mix teachers trained with and without the target domain (--teacher-domains):
    # one set of tables per setting; cells the setting does not affect (None) appear in each.
    settings = sorted({c.get("teacher_domains") for c in cells} - {None}, key=lambda s: s != "all")
    if split and (len(settings) > 1 or settings == ["others"]):
        per_setting: list[Table] = []
        for setting in settings:
            part = build_tables([c for c in cells if c.get("teacher_domains") in (setting, None)], layout,
                                baseline, references, task_domains, method_order, n_boot,
                                resample_seed=resample_seed, equivalence_margin=equivalence_margin,
                                problems=problems, split=False)
            for t in part:
                t.title += " · cross-domain teachers: " + ("all domains" if setting == "all"
                                                            else "other domains only (target held out)")
            per_setting.extend(part)
        return per_setting
    how = _Stats(n_boot, resample_seed, equivalence_margin)
    if layout == "ablation":  # only Meta-KD and its variants; every row is tested against full Meta-KD
        cells = [c for c in cells if c.get("method") in {m for m, _ in _row_order("ablation", [], [])}]
    index = Index(cells, method_order, problems)
    base = layout_baseline(layout, index.methods, baseline)
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
                                 notes=[f"{index.failed[(task, fraction)]} failed cell(s), none finished"],
                                 rejected=index.rejected))
                continue
            cols = domains if layout == "paper" else index.domains(task, fraction)
            out.append(_main_table(index, task, fraction, layout, base, cols, references, how))
        if len([f for f in fractions if f in index.data.get(task, {})]) > 1:
            out.append(_scarce_table(index, task, layout, base, domains, references, how))
    _teacher_legend(out, cells)
    return out


def _teacher_legend(tables: Sequence[Table], cells: Sequence[Mapping[str, Any]]) -> None:
    """State shared teacher seeds (``--teacher-seeds``) and held-out-domain teachers in the legends."""
    checked = []  # untrusted input: only cells that pass the checks
    for raw in cells:
        cell, _problem = res.check_cell(raw)
        if cell is not None:
            checked.append(cell)
    for t in tables:
        mine = [c for c in checked if c.get("task") == t.task and c.get("status") == "ok"
                and (t.fraction is None or c["fraction"] == t.fraction)]
        shared = sorted({(int(c["teacher_seeds"]), int(c["teacher_seed"])) for c in mine
                         if isinstance(c.get("teacher_seeds"), int) and isinstance(c.get("teacher_seed"), int)
                         and c["teacher_seed"] != c["seed"]})
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
    run, _ = res.read_regular_json(results_dir / "run.json")
    run = run if isinstance(run, dict) else {}
    raw_config = run.get("config")
    config = raw_config if isinstance(raw_config, dict) else {}
    methods = run.get("rows") or config.get("methods")  # rows: variants resolved
    return [res.clean_name(str(m)) for m in methods] if isinstance(methods, list) else []


def build(results_dir: Path, layout: str = "default", baseline: str | None = None,
          references: References | None = None, task_domains: Mapping[str, Sequence[str]] | None = None,
          n_boot: int = N_BOOT, *, resample_seed: int = 0, equivalence_margin: float | None = None,
          warn: Callable[[str], None] | None = None) -> list[Table]:
    """:func:`build_tables` on the cells of a results directory, read as untrusted input
    (:func:`kdbench.results.scan_cells`); each cell file kept out is passed to ``warn`` (one line)."""
    cells, problems = res.scan_cells(results_dir)
    for line in problems:
        if warn is not None:
            warn(line)
    return build_tables(cells, layout, baseline, references, task_domains, method_order(results_dir), n_boot,
                        resample_seed=resample_seed, equivalence_margin=equivalence_margin, problems=problems)


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


def load_curves(results_dir: Path, warn: Callable[[str], None] | None = None) -> list[Curves]:
    """:func:`curves` of a results directory read as untrusted input; problems go to ``warn``."""
    cells, problems = res.scan_cells(results_dir)
    for line in problems:
        if warn is not None:
            warn(line)
    return curves(cells, method_order(results_dir))



# --------------------------------------------------------------------------------------- power
@dataclass(frozen=True)
class PowerRow:
    """How many seeds (or test examples) one primary comparison needs to detect ``effect`` points on the
    Average with 80% power, at Holm's strictest level for a family of ``family_size``, under the
    tables' primary test (the two-level bootstrap).

    ``variance``: the run's seed, test-example and interaction components (points², see
    :func:`kdbench.stats.variance_components`; ``variance.seed`` None: one seed, not measurable, so
    ``seeds`` is a lower bound). ``mde_now``: the run's own MDE, equal to the table's ``mde_80``.
    ``seeds``: None when no number of seeds reaches ``effect`` with this test set (its own variance is
    too large). ``examples``: test examples per domain needed with the run's seeds (None: the seed
    variance alone is too large for that many seeds).
    """

    task: str
    fraction: float
    method: str
    baseline: str
    delta: float
    n_seeds: int
    n_examples: int
    family_size: int
    effect: float
    variance: Variance
    mde_now: float
    seeds: int | None
    examples: int | None


def power_rows(cells: Iterable[Mapping[str, Any]], effects: Sequence[float], baseline: str | None = None,
               method_order: Sequence[str] = (), alpha: float = ALPHA, power: float = 0.8,
               layout: str = "default") -> list[PowerRow]:
    """Per task × fraction × student method: the primary comparison vs the baseline on the Average,
    and the seeds (or test examples) needed to detect each of ``effects`` points.

    The family (Holm's m) is the student rows of ``layout``, as in ``kdbench table``: the paper
    layout leaves Meta-KD's ablation variants out; the ablation layout tests them against full Meta-KD."""
    if layout not in LAYOUTS:
        raise KDBenchError(f"unknown layout {layout!r} (choose from: {', '.join(LAYOUTS)})")
    if not effects or any(not (math.isfinite(e) and e > 0) for e in effects):
        raise KDBenchError("--effect must be positive numbers of accuracy points")
    index = Index(cells, method_order)
    base = layout_baseline(layout, index.methods, baseline)
    shown = {m for m, _ in _row_order(layout, index.methods, [])}
    out: list[PowerRow] = []
    if base is None:
        return out
    for task in index.tasks():
        for fraction in sorted(index.data.get(task, {})):
            domains = index.domains(task, fraction)
            students = [m for m in index.methods_at(task, fraction)
                        if m != base and m in shown and not is_teacher(m)]
            ref = index.average_cells(task, fraction, base, domains)
            for m in students:
                cells_m = index.average_cells(task, fraction, m, domains)
                if not cells_m or not ref:
                    continue
                try:
                    seeds, a, b, _ = paired_outcomes(cells_m, ref)
                except StatsError as exc:
                    raise KDBenchError(f"cannot compare {m} with {base} on {task}: {exc}") from None
                diff = a.astype(int) - b.astype(int)
                var = variance_components(diff)
                per_domain = var.n_examples // max(1, len(domains))
                k = len(students)
                for effect in effects:
                    n_need = examples_needed(var, effect, len(seeds), k, alpha, power)
                    out.append(PowerRow(task, fraction, m, base, 100.0 * float(diff.mean()), len(seeds),
                                        per_domain, k, effect, var,
                                        mde(bootstrap_se(diff), k, alpha, power),  # = the table's mde_80
                                        seeds_needed(var, effect, k, alpha, power),
                                        None if n_need is None else math.ceil(n_need / max(1, len(domains)))))
    return out


def power(results_dir: Path, effects: Sequence[float], baseline: str | None = None,
          warn: Callable[[str], None] | None = None, layout: str = "default") -> list[PowerRow]:
    """:func:`power_rows` on a results directory read as untrusted input."""
    cells, problems = res.scan_cells(results_dir)
    for line in problems:
        if warn is not None:
            warn(line)
    return power_rows(cells, effects, baseline, method_order(results_dir), layout=layout)
