"""Statistics for comparing benchmark cells: confidence intervals, paired tests, Holm correction.

Everything here is a pure function of its inputs (numpy and scipy only; scipy is imported lazily
so ``import kdbench.stats`` stays cheap). All accuracies are in **accuracy points** (0-100), and
per-example correctness is given as booleans (``True`` = the prediction matched the gold label).

What a table reports, and why
-----------------------------
* **Spread over seeds** (:func:`summarize`): mean, sample sd and a 95% *t* interval across seeds.
  With a single seed there is no between-seed spread to measure, so the interval is a percentile
  bootstrap over the test examples of that seed (it reflects test-set sampling noise only).
* **Method vs. baseline** (:func:`compare`): the difference ``delta`` in accuracy points, its 95%
  interval and a p-value from a **paired bootstrap over test examples** (the *primary* test).
  Holm's step-down correction (:func:`adjust`) is applied over the primary p-values of a table.

Primary test: paired bootstrap, not McNemar
-------------------------------------------
Both tests are paired over examples, and on a single seed they nearly always agree. The bootstrap
is primary because

1. it yields a confidence interval for ``delta`` from the *same* resampling as its p-value, so the
   interval and the significance marker printed in a table can never contradict each other;
2. it handles several seeds correctly: when every seed is evaluated on the same test set, the
   examples are resampled as *clusters* (one example = its column across all seeds), so the
   correlation between seeds on the same example is respected. McNemar's test on outcomes pooled
   over seeds would count the same example once per seed as if it were independent evidence,
   which makes it anti-conservative (p too small) as the number of seeds grows;
3. it makes no large-sample approximation and works for any statistic of the per-example scores.

McNemar's test is still computed (cheap) and stored in :attr:`Comparison.p_mcnemar` for the
record; read it with caveat 2 in mind when ``n_seeds > 1``. A paired *t*-test over per-seed
accuracies (:attr:`Comparison.p_seeds`) is reported when there are at least 3 seeds: it speaks to
training-run variance, which the over-examples tests do not see.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

__all__ = [
    "CellLike",
    "Comparison",
    "StatsError",
    "Summary",
    "adjust",
    "compare",
    "holm",
    "mcnemar",
    "paired_bootstrap",
    "paired_t",
    "significance_marker",
    "summarize",
    "tied_with_best",
    "wilcoxon",
]

CellLike = Mapping[str, Any]
"""A stored cell: keys ``seed``, ``accuracy`` (points), ``correct`` (list[bool]), ``split_hash``,
``fraction`` and ``example_ids`` (list[str], aligned with ``correct``)."""

K = TypeVar("K", bound=Hashable)

# Bootstrap draws are generated in chunks so memory stays bounded (about this many indices at once).
_CHUNK_ELEMS = 2_000_000


class StatsError(ValueError):
    """Inputs that cannot be compared or summarised (mismatched splits, empty data, ...)."""


# ------------------------------------------------------------------------------------------ helpers
def _as_bool_array(x: Any, name: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.size == 0:
        raise StatsError(f"{name} is empty")
    if arr.dtype != np.bool_:
        if not np.all((arr == 0) | (arr == 1)):
            raise StatsError(f"{name} must hold booleans (or 0/1), got dtype {arr.dtype}")
        arr = arr.astype(np.bool_)
    return arr


def _bootstrap_means(values: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Means of ``n_boot`` resamples (with replacement, same size) of the 1-D array ``values``."""
    n = values.shape[0]
    out = np.empty(n_boot, dtype=np.float64)
    chunk = max(1, _CHUNK_ELEMS // n)
    for start in range(0, n_boot, chunk):
        stop = min(n_boot, start + chunk)
        idx = rng.integers(0, n, size=(stop - start, n))
        out[start:stop] = values[idx].mean(axis=1)
    return out


def _percentile_ci(boot: np.ndarray, confidence: float) -> tuple[float, float]:
    alpha = 1.0 - confidence
    lo, hi = np.quantile(boot, [alpha / 2, 1.0 - alpha / 2])
    return float(lo), float(hi)


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise StatsError(f"confidence must be in (0, 1), got {confidence}")


def _check_n_boot(n_boot: int) -> None:
    if n_boot < 1:
        raise StatsError(f"n_boot must be at least 1, got {n_boot}")


# ------------------------------------------------------------------------------------------ summary
@dataclass(frozen=True)
class Summary:
    """Mean accuracy of one row/column over seeds, with its confidence interval.

    ``method`` says how the interval was obtained: ``"t"`` (across seeds), ``"bootstrap"`` (over the
    test examples of a single seed) or ``"none"`` (a single seed without per-example correctness:
    the interval is NaN).
    """

    n: int
    mean: float
    sd: float
    ci_low: float
    ci_high: float
    method: str


def summarize(
    accuracies: Sequence[float],
    correct: Sequence[Sequence[bool]] | None = None,
    confidence: float = 0.95,
    n_boot: int = 10_000,
    seed: int = 0,
) -> Summary:
    """Summarise per-seed accuracies (points) as mean, sample sd and a confidence interval.

    * ``n >= 2`` seeds: Student-*t* interval ``mean ± t_{(1+c)/2, n-1} · sd / sqrt(n)``. The seeds
      are independent training runs, so their spread is the quantity of interest, and with the
      small ``n`` typical of benchmarks the *t* quantile (not the normal one) is required.
    * ``n == 1``: there is no spread over seeds; the interval is a percentile bootstrap over the
      test examples of that seed (``correct[0]``, scaled to points), reproducible through ``seed``.
      It measures test-set sampling noise only. Without ``correct`` the interval is NaN and
      ``method == "none"``.

    ``sd`` uses ``ddof=1`` and is 0.0 when ``n == 1``. ``correct`` (one boolean sequence per seed)
    is only read when ``n == 1``.
    """
    _check_confidence(confidence)
    acc = np.asarray(accuracies, dtype=np.float64)
    if acc.ndim != 1 or acc.size == 0:
        raise StatsError("summarize needs a non-empty 1-D sequence of accuracies")
    if not np.all(np.isfinite(acc)):
        raise StatsError("accuracies must be finite")
    n = int(acc.size)
    mean = float(acc.mean())
    if n >= 2:
        from scipy import stats

        sd = float(acc.std(ddof=1))
        half = float(stats.t.ppf((1.0 + confidence) / 2.0, n - 1)) * sd / math.sqrt(n)
        return Summary(n, mean, sd, mean - half, mean + half, "t")
    if correct is None or len(correct) == 0:
        return Summary(1, mean, 0.0, math.nan, math.nan, "none")
    _check_n_boot(n_boot)
    points = _as_bool_array(correct[0], "correct[0]").astype(np.float64).ravel() * 100.0
    boot = _bootstrap_means(points, n_boot, np.random.default_rng(seed))
    lo, hi = _percentile_ci(boot, confidence)
    return Summary(1, mean, 0.0, lo, hi, "bootstrap")


# ---------------------------------------------------------------------------------- paired tests
def paired_bootstrap(
    correct_a: np.ndarray | Sequence[bool],
    correct_b: np.ndarray | Sequence[bool],
    n_boot: int = 10_000,
    seed: int = 0,
    confidence: float = 0.95,
) -> tuple[float, float, float, float]:
    """Paired bootstrap over examples: ``(delta, ci_low, ci_high, p)`` with ``delta = acc(a) - acc(b)``
    in accuracy points.

    ``correct_a[i]`` and ``correct_b[i]`` must refer to the same example (and seed). Arrays may be

    * 1-D: one unit per entry (e.g. one seed, or outcomes pooled over seeds by concatenation);
    * 2-D ``(n_seeds, n_examples)``: every seed evaluated on the same examples; the *columns*
      (examples) are resampled jointly across seeds (cluster bootstrap), so repeated evaluations of
      one example are not counted as independent evidence.

    Each resample draws units with replacement, the same indices for ``a`` and ``b`` (pairing), and
    records ``delta*``. The interval is the percentile interval of ``delta*``. The two-sided p-value
    tests ``H0: delta = 0`` by shifting the bootstrap distribution to the null (Berg-Kirkpatrick et
    al. 2012; Koehn 2004)::

        p = (1 + #{ |delta* - delta| >= |delta| }) / (n_boot + 1)

    The +1 smoothing keeps ``p > 0`` (a finite resample can't prove ``p = 0``); ``delta == 0`` gives
    ``p == 1``. Reproducible for a given ``seed``.
    """
    _check_n_boot(n_boot)
    _check_confidence(confidence)
    a = _as_bool_array(correct_a, "correct_a")
    b = _as_bool_array(correct_b, "correct_b")
    if a.shape != b.shape:
        raise StatsError(f"correct_a and correct_b differ in shape: {a.shape} vs {b.shape}")
    if a.ndim not in (1, 2):
        raise StatsError(f"correct arrays must be 1-D or 2-D, got {a.ndim}-D")
    diff = (a.astype(np.float64) - b.astype(np.float64)) * 100.0
    # Per-unit mean difference; the mean of resampled unit means equals the pooled mean difference
    # because every column holds the same number of seeds.
    units = diff if diff.ndim == 1 else diff.mean(axis=0)
    delta = float(units.mean())
    boot = _bootstrap_means(units, n_boot, np.random.default_rng(seed))
    lo, hi = _percentile_ci(boot, confidence)
    # A tiny tolerance so that float noise in the means doesn't flip ties at exactly |delta|.
    tol = 1e-9 * max(1.0, abs(delta))
    extreme = int(np.count_nonzero(np.abs(boot - delta) >= abs(delta) - tol))
    p = (1.0 + extreme) / (n_boot + 1.0)
    return delta, lo, hi, min(1.0, p)


def mcnemar(
    correct_a: np.ndarray | Sequence[bool],
    correct_b: np.ndarray | Sequence[bool],
    exact: bool | None = None,
) -> tuple[float, float]:
    """McNemar's test on paired per-example outcomes: ``(statistic, p)``, two-sided.

    Only discordant pairs carry information: ``b`` = a right & b wrong, ``c`` = a wrong & b right.
    Under H0 each discordant pair is a fair coin, so

    * exact (``exact=True``, or ``exact=None`` and ``b + c < 25``): ``p`` from the two-sided
      binomial test of ``b`` successes in ``b + c`` trials with ``p = 0.5`` (scipy ``binomtest``);
      the statistic returned is ``min(b, c)``. The chi-square approximation is poor for few pairs.
    * otherwise: ``stat = (max(|b - c| - 1, 0))**2 / (b + c)`` (Edwards' continuity correction) and
      ``p = chi2.sf(stat, df=1)``.

    With no discordant pairs the two systems never disagree: returns ``(0.0, 1.0)``. Inputs of any
    shape are flattened (pairs pooled); see the module docstring about pooling over seeds.
    """
    a = _as_bool_array(correct_a, "correct_a")
    b_ = _as_bool_array(correct_b, "correct_b")
    if a.shape != b_.shape:
        raise StatsError(f"correct_a and correct_b differ in shape: {a.shape} vs {b_.shape}")
    b = int(np.count_nonzero(a & ~b_))
    c = int(np.count_nonzero(~a & b_))
    n = b + c
    if n == 0:
        return 0.0, 1.0
    from scipy import stats

    if exact or (exact is None and n < 25):
        p = float(stats.binomtest(b, n, 0.5, alternative="two-sided").pvalue)
        return float(min(b, c)), min(1.0, p)
    stat = max(abs(b - c) - 1, 0) ** 2 / n
    return float(stat), float(stats.chi2.sf(stat, 1))


def _paired_floats(a: Sequence[float], b: Sequence[float], minimum: int) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    if x.ndim != 1 or x.shape != y.shape:
        raise StatsError(f"paired samples must be 1-D of equal length, got {x.shape} and {y.shape}")
    if x.size < minimum:
        raise StatsError(f"a paired test needs at least {minimum} pairs, got {x.size}")
    return x, y


def paired_t(a_by_seed: Sequence[float], b_by_seed: Sequence[float]) -> tuple[float, float]:
    """Paired Student *t*-test across seeds (scipy ``ttest_rel``): ``(t, p)``, two-sided.

    Pairs are seeds (``a_by_seed[i]`` and ``b_by_seed[i]`` share seed ``i``): pairing removes the
    seed-level variation both methods share (same data order, same subsample). Assumes the per-seed
    differences are roughly normal, which is the usual working assumption for few seeds.

    All differences zero returns ``(0.0, 1.0)`` (scipy would give NaN). Identical non-zero
    differences (zero variance) follow scipy: ``t = ±inf``, ``p = 0``.
    """
    x, y = _paired_floats(a_by_seed, b_by_seed, 2)
    d = x - y
    if np.all(d == 0):
        return 0.0, 1.0
    from scipy import stats

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = stats.ttest_rel(x, y)
    return float(res.statistic), float(res.pvalue)


def wilcoxon(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """Wilcoxon signed-rank test on paired samples (scipy ``wilcoxon``): ``(statistic, p)``.

    The non-parametric alternative to :func:`paired_t`: no normality assumption, only symmetry of
    the differences. Note that with ``n`` pairs the smallest attainable two-sided p is
    ``2 / 2**n`` (0.0625 for 5 seeds), so it cannot reach 0.05 with fewer than 6 seeds.
    All-zero differences return ``(0.0, 1.0)``.
    """
    x, y = _paired_floats(a, b, 1)
    if np.all(x - y == 0):
        return 0.0, 1.0
    from scipy import stats

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = stats.wilcoxon(x, y)
    return float(res.statistic), float(res.pvalue)


# -------------------------------------------------------------------------------- multiple tests
def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the input order.

    Holm's step-down procedure controls the family-wise error rate over all comparisons of a table
    under any dependence between tests (comparisons sharing a baseline are dependent), and is
    uniformly more powerful than plain Bonferroni. With the ``m`` non-NaN p-values sorted ascending,
    ``p_(1) <= ... <= p_(m)``::

        adj_(i) = min(1, max_{j <= i} (m - j + 1) * p_(j))

    The running max keeps the adjusted values monotone in the sorted order. NaN inputs (tests that
    were not run) stay NaN and do not count towards ``m``.
    """
    p = np.asarray(pvalues, dtype=np.float64)
    if p.ndim != 1:
        raise StatsError("holm expects a 1-D sequence of p-values")
    valid = ~np.isnan(p)
    if np.any((p[valid] < 0) | (p[valid] > 1)):
        raise StatsError("p-values must lie in [0, 1]")
    out = np.full(p.shape, np.nan)
    idx = np.flatnonzero(valid)
    m = idx.size
    if m:
        order = idx[np.argsort(p[idx], kind="stable")]
        scaled = p[order] * np.arange(m, 0, -1)
        out[order] = np.minimum(1.0, np.maximum.accumulate(scaled))
    return [float(v) for v in out]


# --------------------------------------------------------------------------------- comparisons
@dataclass(frozen=True)
class Comparison:
    """``method`` vs. ``baseline`` on one table cell (task × domain × fraction), pooled over seeds.

    * ``delta``: mean accuracy difference in points (method - baseline), from per-example outcomes.
    * ``delta_ci``: its 95% paired-bootstrap percentile interval.
    * ``p_examples``: **primary** p-value, paired bootstrap over test examples (see module doc).
    * ``p_mcnemar``: McNemar's test on the pooled pairs, for the record.
    * ``p_seeds``: paired *t*-test over per-seed accuracies when ``n_seeds >= 3``, else ``None``.
    * ``p_adjusted``: Holm-adjusted ``p_examples`` over a table, filled by :func:`adjust`.
    * ``n_seeds``: seeds present for both methods; ``n_examples``: test examples per seed.
    """

    method: str
    baseline: str
    delta: float
    delta_ci: tuple[float, float]
    p_examples: float
    p_mcnemar: float
    p_seeds: float | None
    p_adjusted: float | None
    n_seeds: int
    n_examples: int


def _cells_by_seed(cells: Sequence[CellLike], side: str) -> dict[Any, CellLike]:
    out: dict[Any, CellLike] = {}
    for cell in cells:
        missing = [k for k in ("seed", "accuracy", "correct", "split_hash", "fraction", "example_ids")
                   if k not in cell]
        if missing:
            raise StatsError(f"{side} cell lacks key(s): {', '.join(missing)}")
        s = cell["seed"]
        if s in out:
            raise StatsError(f"{side} has seed {s} twice")
        if len(cell["correct"]) != len(cell["example_ids"]):
            raise StatsError(f"{side} seed {s}: {len(cell['correct'])} outcomes for "
                             f"{len(cell['example_ids'])} example ids")
        out[s] = cell
    return out


def _aligned(cell_a: CellLike, cell_b: CellLike, seed: Any) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Check that two cells of one seed are comparable; return ids and outcomes in ``a``'s order."""
    if cell_a["split_hash"] != cell_b["split_hash"]:
        raise StatsError(f"seed {seed}: split_hash differs ({cell_a['split_hash']} vs "
                         f"{cell_b['split_hash']}); the cells were evaluated on different data")
    if cell_a["fraction"] != cell_b["fraction"]:
        raise StatsError(f"seed {seed}: fraction differs ({cell_a['fraction']} vs {cell_b['fraction']})")
    ids_a = [str(i) for i in cell_a["example_ids"]]
    ids_b = [str(i) for i in cell_b["example_ids"]]
    pos_b = {eid: k for k, eid in enumerate(ids_b)}
    if len(pos_b) != len(ids_b) or len(set(ids_a)) != len(ids_a):
        raise StatsError(f"seed {seed}: duplicate example ids")
    if set(ids_a) != set(pos_b):
        only_a = len(set(ids_a) - set(pos_b))
        only_b = len(set(pos_b) - set(ids_a))
        raise StatsError(f"seed {seed}: example ids differ ({only_a} only in method, {only_b} only in "
                         "baseline)")
    a = _as_bool_array(cell_a["correct"], f"seed {seed} correct")
    b_raw = _as_bool_array(cell_b["correct"], f"seed {seed} correct")
    b = b_raw[np.fromiter((pos_b[eid] for eid in ids_a), dtype=np.intp, count=len(ids_a))]
    return ids_a, a, b


def compare(
    cells_a: Sequence[CellLike],
    cells_b: Sequence[CellLike],
    method: str | None = None,
    baseline: str | None = None,
    n_boot: int = 10_000,
    seed: int = 0,
) -> Comparison:
    """Compare a method's cells (``cells_a``) with the baseline's (``cells_b``) for one table cell.

    Cells are paired by ``seed`` (only seeds present on both sides are used) and, within a seed,
    examples are aligned by ``example_ids``. Raises :class:`StatsError` when paired cells differ in
    ``split_hash`` or ``fraction``, when example ids don't match, or when no seed is shared.

    When every seed has the same test examples (the usual case: seeds change training, not the test
    split), the paired bootstrap resamples examples jointly across seeds (cluster bootstrap);
    otherwise each (seed, example) pair is one unit. ``delta`` is computed from the per-example
    outcomes, i.e. it equals the difference of mean accuracies when ``accuracy == 100 * mean(correct)``.
    ``p_seeds`` uses the stored per-seed ``accuracy``. Names default to the cells' ``method`` key.
    """
    by_a = _cells_by_seed(cells_a, "method")
    by_b = _cells_by_seed(cells_b, "baseline")
    seeds = [s for s in by_a if s in by_b]
    if not seeds:
        raise StatsError("no seed is shared by the method and the baseline cells")
    seeds.sort(key=lambda s: (not isinstance(s, int), s if isinstance(s, int) else 0, repr(s)))
    name_a = method if method is not None else str(by_a[seeds[0]].get("method", "a"))
    name_b = baseline if baseline is not None else str(by_b[seeds[0]].get("method", "b"))

    ids_ref: list[str] | None = None
    same_examples = True
    rows_a: list[np.ndarray] = []
    rows_b: list[np.ndarray] = []
    for s in seeds:
        ids, a, b = _aligned(by_a[s], by_b[s], s)
        if ids_ref is None:
            ids_ref = ids
        elif ids != ids_ref:
            if set(ids) == set(ids_ref):  # same examples, other order: reorder to the first seed's
                pos = {eid: k for k, eid in enumerate(ids)}
                perm = np.fromiter((pos[e] for e in ids_ref), dtype=np.intp, count=len(ids_ref))
                a, b = a[perm], b[perm]
            else:
                same_examples = False
        rows_a.append(a)
        rows_b.append(b)

    if same_examples:
        mat_a, mat_b = np.vstack(rows_a), np.vstack(rows_b)
    else:
        mat_a, mat_b = np.concatenate(rows_a), np.concatenate(rows_b)
    delta, lo, hi, p = paired_bootstrap(mat_a, mat_b, n_boot=n_boot, seed=seed)
    _, p_mc = mcnemar(mat_a, mat_b)
    p_seeds: float | None = None
    if len(seeds) >= 3:
        acc_a = [float(by_a[s]["accuracy"]) for s in seeds]
        acc_b = [float(by_b[s]["accuracy"]) for s in seeds]
        p_seeds = paired_t(acc_a, acc_b)[1]
    n_examples = len(ids_ref) if same_examples and ids_ref is not None else int(mat_a.size // len(seeds))
    return Comparison(name_a, name_b, delta, (lo, hi), p, p_mc, p_seeds, None, len(seeds), n_examples)


def adjust(comparisons: Sequence[Comparison]) -> list[Comparison]:
    """Holm-adjust the primary p-values (``p_examples``) of one table; returns new ``Comparison``s
    with ``p_adjusted`` set, in the input order. Pass every comparison the table shows at once: the
    family is the table."""
    adjusted = holm([c.p_examples for c in comparisons])
    return [dataclasses.replace(c, p_adjusted=p) for c, p in zip(comparisons, adjusted, strict=True)]


# ------------------------------------------------------------------------------------- display
def significance_marker(p: float | None) -> str:
    """``"**"`` when ``p < 0.01``, ``"*"`` when ``p < 0.05``, else ``""`` (also for None/NaN)."""
    if p is None or math.isnan(p):
        return ""
    if p < 0.01:
        return "**"
    if p < 0.05:
        return "*"
    return ""


def tied_with_best(
    summaries: Mapping[K, Summary],
    pvalues: Mapping[K, float] | None = None,
    alpha: float = 0.05,
    higher_is_better: bool = True,
) -> set[K]:
    """Rows of one column to highlight as "best or statistically tied with the best".

    The best row(s) have the highest mean (lowest with ``higher_is_better=False``). Another row is
    tied with the best when

    * ``pvalues`` gives its p-value from a paired test against the best row (e.g.
      :attr:`Comparison.p_examples` of row vs. best): tied iff ``p >= alpha``. This is the preferred
      rule: paired tests are far more sensitive than comparing intervals.
    * otherwise (or when its p-value is missing/NaN): its confidence interval overlaps the best
      row's. Overlap is a conservative display heuristic (non-overlap implies a difference, overlap
      does not imply its absence), so it may mark more rows as tied than a paired test would.

    Rows with a NaN interval and no p-value are never tied (unless they are the best).
    """
    if not summaries:
        return set()
    sign = 1.0 if higher_is_better else -1.0
    top = max(sign * s.mean for s in summaries.values())
    best = {k for k, s in summaries.items() if sign * s.mean == top}
    ref = summaries[next(iter(best))]
    tied = set(best)
    for k, s in summaries.items():
        if k in best:
            continue
        p = pvalues.get(k) if pvalues is not None else None
        if p is not None and not math.isnan(p):
            if p >= alpha:
                tied.add(k)
            continue
        if any(math.isnan(v) for v in (s.ci_low, s.ci_high, ref.ci_low, ref.ci_high)):
            continue
        if s.ci_high >= ref.ci_low and s.ci_low <= ref.ci_high:
            tied.add(k)
    return tied
