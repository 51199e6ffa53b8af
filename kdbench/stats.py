"""Statistics for comparing benchmark cells: exact paired bootstrap, Holm, power, equivalence.

Everything here is a pure function of its inputs (numpy and scipy only; scipy is imported lazily
so ``import kdbench.stats`` stays cheap). Accuracies are in **accuracy points** (0-100) and
per-example correctness is given as booleans (``True`` = the prediction matched the gold label).

Why the paired bootstrap is computed exactly
--------------------------------------------
A prediction is right or wrong, so for one seed the paired difference on an example is in
{-1, 0, +1}, and with ``S`` seeds summed per example it is an integer in ``[-S, S]``. The paired
bootstrap resamples the ``n`` examples with replacement, so the sum of the resampled differences is
the sum of ``n`` independent draws from that empirical lattice distribution: its law is the
``n``-fold convolution of a distribution on ``2S + 1`` points. :func:`lattice_sum_pmf` computes it
as ``phi(omega)**n`` of the characteristic function on a discrete Fourier grid long enough that
nothing wraps round (for small lattices a direct repeated convolution; both exact up to float
rounding, about 1e-13, far below any decision threshold). So p-values and percentile intervals are
those of *infinitely many* resamples: they no longer depend on a random seed (issue #17: with
10,000 Monte-Carlo resamples 6 of 10 markers of a real table changed with the seed).

We keep the bootstrap rather than switching to the exact McNemar / sign-flip test because one
distribution then gives both the p-value and the interval (and the standard error used for power),
and because it extends to the two-level bootstrap below. The exact McNemar p (the sign-flip test of
one seed) is still reported beside it for the record (CSV ``p_mcnemar``). The p-value is the usual
shift-to-the-null bootstrap p (Berg-Kirkpatrick et al. 2012; Koehn 2004), two-sided:
``p = P*(|Δ* - Δ| >= |Δ|)``, compared on the integer lattice (no float ties). The percentile
interval takes the smallest lattice value whose cumulative probability reaches ``α/2`` and
``1 - α/2``.

Training variance
-----------------
* **One seed.** The test over examples is *conditional on that one training run*: it answers "is
  this run better than that run on these test examples?", not "is this method better?". Tables say
  so in their legend.
* **Two or more seeds.** The primary test is a **two-level (hierarchical) bootstrap**: resample the
  seeds with replacement, then the test examples (jointly for every chosen seed, since all seeds are
  evaluated on the same examples). It counts training variance and test-set variance together and
  keeps the exact-lattice machinery: for a given multiset of seeds the per-example values are
  integers in ``[-S, S]``. Over the ``C(2S-1, S)`` multisets (3 for 2 seeds, 462 for 6) the
  distribution is an exact finite mixture; only above :data:`EXACT_SEED_MULTISETS` multisets
  (7+ seeds) are multisets sampled, and then the Monte-Carlo standard error of p is reported and
  samples are added until no p sits within 3 standard errors of a decision threshold (the tables
  pass every level Holm can compare a p with in its family, ``α/k``; at most 8,000 draws,
  after which the standard error is still reported). Only the seed level is sampled: for each
  sampled multiset the law over examples is exact. We chose it over the seed-level paired t as primary because
  with 2-5 seeds a t over per-seed accuracies ignores the test-set noise that every seed shares and
  has 1-4 degrees of freedom; the seed-level paired t is still reported as a secondary test
  (``†``) with 3 or more seeds. Its known weakness: with few seeds the bootstrap under-states seed
  variance by the factor ``(S-1)/S``. A seed-level t with identical per-seed differences has zero
  variance: it is reported as *degenerate*, never as p = 0.

Multiplicity, power and ties
----------------------------
* :func:`holm` controls the family-wise error within a family of comparisons (the tables define
  three families: student methods vs the baseline on the Average; the per-domain comparisons;
  the teacher rows).
* :func:`mde` is the minimum detectable effect at 80% power of a two-sided test at Holm's
  strictest level ``α/m`` for a comparison with standard error ``se``:
  ``(z_{1-α/(2m)} + z_{0.8}) · se`` (normal approximation to the bootstrap distribution).
  :func:`seeds_needed` solves the same equation for the number of seeds, with the variance the
  two-level bootstrap would have (:meth:`Variance.bootstrap_var`).
* Intervals are **unadjusted** 95% percentile intervals; markers are Holm-adjusted within their
  family, so an interval that excludes 0 can sit beside no marker. Tables label them unadjusted.
* "Tied" (:func:`tied_with_best`) means *not significantly different from every best row*
  (unadjusted; Holm would make ties easier to reach), which is absence of evidence; with an
  equivalence margin the tables use :attr:`Comparison.p_equivalence`, a TOST (two one-sided
  bootstrap tests at the margin, Schuirmann 1987) from the same exact distribution.

Power: why not deepsig
----------------------
``deepsig`` (Ulmer, Hardmeier & Frellsen 2022, github.com/Kaleidophon/deep-significance; its ASO test
is from Dror, Shlomov & Reichart 2019) was the anchor. Its ``bootstrap_power_analysis`` takes one
model's per-seed scores, lifts them by a factor (1.25 by default), bootstraps them and counts how
often a paired t-test finds the lift: the power of the seeds already run, by Monte Carlo. kdbench
needs the converse (how many seeds, or test examples, for an effect of so many *points*), and its
runs often have one seed, where a seed-level bootstrap has nothing to resample. So
:func:`seeds_needed` reads the variance components from the run (:func:`variance_components`: seed,
test-example and their interaction, a crossed two-way model, since every seed is scored on the same
test set), predicts the variance of the tables' two-level bootstrap for more seeds or examples, and
solves the normal approximation, which is deterministic. ASO itself is not used: it compares score
distributions over seeds and needs several per side. deepsig is not a dependency (nothing of it is
used).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import warnings
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

__all__ = [
    "EXACT_SEED_MULTISETS",
    "CellLike",
    "Comparison",
    "LatticeDistribution",
    "StatsError",
    "Summary",
    "Variance",
    "adjust",
    "bootstrap_se",
    "compare",
    "examples_needed",
    "hierarchical_bootstrap",
    "holm",
    "lattice_sum_pmf",
    "mcnemar",
    "mde",
    "paired_bootstrap",
    "paired_t",
    "seeds_needed",
    "significance_marker",
    "summarize",
    "tied_with_best",
    "variance_components",
]

CellLike = Mapping[str, Any]
"""A stored cell: keys ``seed``, ``accuracy`` (points), ``correct`` (list[bool]), ``split_hash``,
``fraction`` and ``example_ids`` (list[str], aligned with ``correct``)."""

K = TypeVar("K", bound=Hashable)

#: above this many seed multisets (7+ seeds) the two-level bootstrap samples them (Monte Carlo)
EXACT_SEED_MULTISETS = 500
#: decision thresholds a Monte-Carlo p must be resolved against (3 standard errors away)
THRESHOLDS = (0.05, 0.01)
_MC_MAX = 8_000
# complex entries per batch of characteristic functions
_BATCH_ELEMS = 4_000_000
_POWER = 0.8


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


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise StatsError(f"confidence must be in (0, 1), got {confidence}")


def _check_n_boot(n_boot: int) -> None:
    if n_boot < 1:
        raise StatsError(f"n_boot must be at least 1, got {n_boot}")


# ---------------------------------------------------------------------------- exact lattice sums
def lattice_sum_pmf(unit_pmf: np.ndarray, n: int) -> np.ndarray:
    """Law of the sum of ``n`` independent draws from a distribution on ``{-h, ..., h}``.

    ``unit_pmf`` has shape ``(2h + 1,)`` (or ``(k, 2h + 1)`` for ``k`` distributions at once),
    index ``j`` holding ``P(X = j - h)``. Returns shape ``(2hn + 1,)`` (or ``(k, 2hn + 1)``),
    index ``t`` holding ``P(sum = t - hn)``. Computed as the ``n``-th power of the characteristic
    function on a grid of length >= ``2hn + 1`` (no wrap-round), then clipped at 0 and
    renormalised: exact up to float rounding.
    """
    pmf = np.atleast_2d(np.asarray(unit_pmf, dtype=np.float64))
    k, width = pmf.shape
    if width % 2 != 1 or n < 1:
        raise StatsError("unit_pmf needs an odd width and n >= 1")
    h = width // 2
    span = 2 * h * n + 1
    if span <= 4001 and k == 1:  # small: repeated squaring by direct convolution (no FFT noise)
        out = np.ones(1)
        base, e = pmf[0], n
        while e:
            if e & 1:
                out = np.convolve(out, base)
            e >>= 1
            if e:
                base = np.convolve(base, base)
        res = out[None, :]
    else:
        from scipy import fft

        length = fft.next_fast_len(span, real=True)
        values = np.arange(-h, h + 1)
        # phi(omega_m) = sum_v p_v exp(-2 pi i v m / L), one row per distribution; the law is real,
        # so the non-negative frequencies suffice (irfft)
        m = np.arange(length // 2 + 1)
        phase = np.exp(-2j * np.pi * np.outer(values, m) / length)  # (width, L/2 + 1)
        res = np.empty((k, span))
        rows = max(1, _BATCH_ELEMS // length)
        for start in range(0, k, rows):
            phi = pmf[start:start + rows] @ phase
            # phi**n in polar form (cheaper and as accurate as complex pow)
            powered = np.abs(phi) ** n * np.exp(1j * n * np.angle(phi))
            dist = fft.irfft(powered, n=length, axis=1)  # index t <-> sum t (mod L)
            res[start:start + rows] = np.concatenate([dist[:, length - h * n:], dist[:, :h * n + 1]], axis=1)
    res = np.clip(res, 0.0, None)
    res /= res.sum(axis=1, keepdims=True)
    return res[0] if np.asarray(unit_pmf).ndim == 1 else res


@dataclass(frozen=True)
class LatticeDistribution:
    """The bootstrap law of ``T``, the sum of the resampled per-unit integer differences.

    ``pmf[t + offset] = P*(T = t)``; ``observed`` is the observed sum ``D``; the mean difference in
    points is ``scale * T`` (``scale = 100 / (n * S)``). ``mc_se`` is the Monte-Carlo standard error
    of probabilities read from it (0 when exact); ``draws`` the seed multisets sampled (0: exact).
    """

    pmf: np.ndarray
    offset: int
    observed: int
    scale: float
    mc_se_weights: np.ndarray | None = None  # per-multiset pmfs for Monte-Carlo error, when sampled
    draws: int = 0

    @property
    def support(self) -> np.ndarray:
        return np.arange(self.pmf.size) - self.offset

    def prob(self, mask: np.ndarray) -> float:
        return float(min(1.0, max(0.0, self.pmf[mask].sum())))

    def p_two_sided(self) -> float:
        """Shift-to-null p: ``P*(|T - D| >= |D|)`` on the integer lattice (1 when ``D == 0``)."""
        t, d = self.support, self.observed
        return self.prob(np.abs(t - d) >= abs(d))

    def p_mc_se(self, mask_fn: Any) -> float:
        """Monte-Carlo standard error of a probability (0 when the mixture was enumerated)."""
        if self.mc_se_weights is None:
            return 0.0
        per = self.mc_se_weights[:, mask_fn(self.support)].sum(axis=1)
        return float(per.std(ddof=1) / math.sqrt(per.size)) if per.size > 1 else math.inf

    def quantile(self, q: float) -> float:
        """Smallest lattice value (points) whose cumulative probability reaches ``q``."""
        cdf = np.cumsum(self.pmf)
        k = int(np.searchsorted(cdf, q - 1e-12, side="left"))
        return float((min(k, self.pmf.size - 1) - self.offset) * self.scale)

    def interval(self, confidence: float) -> tuple[float, float]:
        a = (1.0 - confidence) / 2.0
        return self.quantile(a), self.quantile(1.0 - a)

    def p_tost(self, margin: float) -> float:
        """Equivalence within ``±margin`` points: the larger of the two one-sided shift-to-null
        p-values (``H0: Δ <= -margin`` and ``H0: Δ >= margin``); small p = equivalent."""
        t, d = self.support, self.observed
        m = margin / self.scale  # in lattice units (not necessarily integer)
        p_low = self.prob(t - d >= d + m - 1e-9)  # H0 Δ <= -M: P*(Δ* - Δ >= Δ + M)
        p_high = self.prob(t - d <= d - m + 1e-9)  # H0 Δ >= M: P*(Δ* - Δ <= Δ - M)
        return max(p_low, p_high)


def _unit_pmfs(units: np.ndarray, h: int) -> np.ndarray:
    """Empirical distribution over ``{-h..h}`` of each row of the integer matrix ``units``."""
    k, n = units.shape
    idx = (units + h) + (2 * h + 1) * np.arange(k)[:, None]
    counts = np.bincount(idx.ravel(), minlength=k * (2 * h + 1)).reshape(k, 2 * h + 1)
    return counts / n


def _multisets(s: int) -> tuple[np.ndarray, np.ndarray]:
    """Every multiset of ``s`` seeds drawn from ``s`` as counts, with its multinomial probability."""
    counts, weights = [], []
    for combo in itertools.combinations_with_replacement(range(s), s):
        c = np.bincount(np.asarray(combo), minlength=s)
        counts.append(c)
        weights.append(math.factorial(s) / math.prod(math.factorial(int(x)) for x in c) / s ** s)
    return np.asarray(counts), np.asarray(weights)


def hierarchical_bootstrap(diff: np.ndarray, seed: int = 0, n_draws: int = 1000,
                           thresholds: Sequence[float] = THRESHOLDS) -> LatticeDistribution:
    """Two-level bootstrap law of the summed differences of an ``(S, n)`` integer matrix in {-1,0,1}.

    Seeds are resampled with replacement, then examples (columns) jointly across the chosen seeds.
    ``S == 1`` is the ordinary paired bootstrap over examples. Exact (an enumerated mixture, up to 6 seeds) when
    there are at most :data:`EXACT_SEED_MULTISETS` seed multisets; otherwise ``n_draws`` multisets
    are sampled with ``numpy.random.default_rng(seed)``, doubling until the two-sided p is more than
    3 Monte-Carlo standard errors from every threshold (or :data:`_MC_MAX` draws).
    """
    d = np.asarray(diff, dtype=np.int64)
    if d.ndim != 2 or d.size == 0:
        raise StatsError("hierarchical_bootstrap needs a non-empty (seeds, examples) matrix")
    s, n = d.shape
    observed = int(d.sum())
    scale = 100.0 / (n * s)
    if math.comb(2 * s - 1, s) <= EXACT_SEED_MULTISETS:
        counts, weights = _multisets(s)
        pmfs = lattice_sum_pmf(_unit_pmfs(counts @ d, s), n)
        pmfs = np.atleast_2d(pmfs)
        return LatticeDistribution(weights @ pmfs, s * n, observed, scale)
    rng = np.random.default_rng(seed)
    cache: dict[bytes, np.ndarray] = {}  # the law over examples of each distinct multiset drawn
    keys: list[bytes] = []
    want = max(2, n_draws)
    while True:
        picks = rng.integers(0, s, size=(want - len(keys), s))
        counts = np.stack([np.bincount(p, minlength=s) for p in picks])
        new_keys = [c.tobytes() for c in counts]
        fresh = {k: c for k, c in zip(new_keys, counts, strict=True) if k not in cache}
        if fresh:
            laws = np.atleast_2d(lattice_sum_pmf(_unit_pmfs(np.stack(list(fresh.values())) @ d, s), n))
            cache.update(zip(fresh, laws, strict=True))
        keys += new_keys
        total = len(keys)
        per = np.stack([cache[k] for k in keys])
        dist = LatticeDistribution(per.mean(axis=0), s * n, observed, scale, per, total)
        p = dist.p_two_sided()
        se = dist.p_mc_se(lambda t: np.abs(t - observed) >= abs(observed))
        if all(abs(p - th) > 3 * se for th in thresholds) or total >= _MC_MAX:
            return dist
        want = min(_MC_MAX, 2 * total)


# ------------------------------------------------------------------------------------------ summary
@dataclass(frozen=True)
class Summary:
    """Mean accuracy of one row/column over seeds, with its confidence interval.

    ``method`` says how the interval was obtained: ``"t"`` (across seeds), ``"bootstrap"`` (the
    exact percentile bootstrap over the test examples of a single seed) or ``"none"`` (a single
    seed without per-example correctness: the interval is NaN).
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

    * ``n >= 2`` seeds: Student-*t* interval ``mean ± t_{(1+c)/2, n-1} · sd / sqrt(n)``.
    * ``n == 1``: the percentile bootstrap over the test examples of that seed, computed exactly
      (the resampled count of correct examples is Binomial(n_examples, accuracy)); it measures
      test-set sampling noise only. Without ``correct`` the interval is NaN (``method == "none"``).

    ``n_boot`` and ``seed`` are accepted for compatibility and unused (nothing is sampled).
    """
    _check_confidence(confidence)
    _check_n_boot(n_boot)
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
    from scipy import stats

    ok = _as_bool_array(correct[0], "correct[0]").ravel()
    m, k = ok.size, int(ok.sum())
    cdf = stats.binom.cdf(np.arange(m + 1), m, k / m)
    a = (1.0 - confidence) / 2.0
    lo = int(np.searchsorted(cdf, a - 1e-12, side="left"))
    hi = int(np.searchsorted(cdf, 1.0 - a - 1e-12, side="left"))
    return Summary(1, mean, 0.0, 100.0 * lo / m, 100.0 * min(hi, m) / m, "bootstrap")


# ---------------------------------------------------------------------------------- paired tests
def _diff_matrix(correct_a: Any, correct_b: Any) -> np.ndarray:
    a = _as_bool_array(correct_a, "correct_a")
    b = _as_bool_array(correct_b, "correct_b")
    if a.shape != b.shape:
        raise StatsError(f"correct_a and correct_b differ in shape: {a.shape} vs {b.shape}")
    if a.ndim not in (1, 2):
        raise StatsError(f"correct arrays must be 1-D or 2-D, got {a.ndim}-D")
    d = a.astype(np.int64) - b.astype(np.int64)
    return d[None, :] if d.ndim == 1 else d


def paired_bootstrap(
    correct_a: np.ndarray | Sequence[bool],
    correct_b: np.ndarray | Sequence[bool],
    n_boot: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> tuple[float, float, float, float]:
    """Paired bootstrap: ``(delta, ci_low, ci_high, p)`` with ``delta = acc(a) - acc(b)`` in points.

    * 1-D arrays: one seed; examples are resampled (the bootstrap conditional on that training run).
    * 2-D ``(n_seeds, n_examples)``: every seed evaluated on the same examples; the two-level
      bootstrap of :func:`hierarchical_bootstrap` (seeds, then examples jointly across seeds).

    Computed exactly (see the module docstring); ``n_boot`` and ``seed`` only matter with 7 or more
    seeds, where the seed multisets are sampled (``n_boot`` initial draws).
    """
    _check_n_boot(n_boot)
    _check_confidence(confidence)
    d = _diff_matrix(correct_a, correct_b)
    dist = hierarchical_bootstrap(d, seed=seed, n_draws=n_boot)
    lo, hi = dist.interval(confidence)
    return dist.observed * dist.scale, lo, hi, dist.p_two_sided()


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
    shape are flattened (pairs pooled over seeds, which is anti-conservative with several seeds).
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


def paired_t(a_by_seed: Sequence[float], b_by_seed: Sequence[float]) -> tuple[float, float]:
    """Paired Student *t*-test across seeds (scipy ``ttest_rel``): ``(t, p)``, two-sided.

    All differences zero returns ``(0.0, 1.0)``. Identical non-zero differences have zero variance:
    the test is **degenerate** and returns ``(nan, nan)`` (scipy would say p = 0, which no finite
    number of seeds can show); callers report it as degenerate.
    """
    x = np.asarray(a_by_seed, dtype=np.float64)
    y = np.asarray(b_by_seed, dtype=np.float64)
    if x.ndim != 1 or x.shape != y.shape:
        raise StatsError(f"paired samples must be 1-D of equal length, got {x.shape} and {y.shape}")
    if x.size < 2:
        raise StatsError(f"a paired test needs at least 2 pairs, got {x.size}")
    d = x - y
    if np.all(d == 0):
        return 0.0, 1.0
    if np.allclose(d, d[0], rtol=0.0, atol=1e-9):
        return math.nan, math.nan
    from scipy import stats

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = stats.ttest_rel(x, y)
    return float(res.statistic), float(res.pvalue)


# -------------------------------------------------------------------------------- multiple tests
def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the input order.

    Holm's step-down procedure controls the family-wise error rate under any dependence between
    tests. With the ``m`` non-NaN p-values sorted ascending, ``p_(1) <= ... <= p_(m)``::

        adj_(i) = min(1, max_{j <= i} (m - j + 1) * p_(j))

    NaN inputs (tests that were not run) stay NaN and do not count towards ``m``.
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


# -------------------------------------------------------------------------------------- power
def _z_sum(alpha: float, m: int, power: float) -> float:
    from scipy import stats

    if not 0 < alpha < 1 or m < 1 or not 0 < power < 1:
        raise StatsError("need 0 < alpha < 1, m >= 1 and 0 < power < 1")
    return float(stats.norm.ppf(1.0 - alpha / (2.0 * m)) + stats.norm.ppf(power))


def mde(se: float, m: int = 1, alpha: float = 0.05, power: float = _POWER) -> float:
    """Minimum detectable effect (points) at ``power`` of a two-sided test at level ``alpha / m``
    (Holm's first step, i.e. Bonferroni: what a single true effect must clear in a family of ``m``)
    for a difference estimated with standard error ``se``: ``(z_{1-α/(2m)} + z_power) · se``."""
    return _z_sum(alpha, m, power) * se


@dataclass(frozen=True)
class Variance:
    """Variance components (points² per test example) of a seeds × test-examples matrix of paired
    differences, under the crossed model ``d_si = μ + a_s + b_i + e_si`` (see :func:`variance_components`).

    ``seed``: var(a), training variance (None with one seed: not measurable); ``example``: var(b), the
    test set's own sampling variance, shared by every seed, so more seeds never average it away;
    ``interaction``: var(e), what each seed gets wrong differently. With one seed ``example`` and
    ``interaction`` cannot be told apart and all of it is counted as interaction, the assumption under
    which more seeds help most (so :func:`seeds_needed` is then a lower bound).
    """

    seed: float | None
    example: float
    interaction: float
    n_seeds: int
    n_examples: int

    def bootstrap_var(self, n_seeds: int | None = None, n_examples: int | None = None) -> float:
        """Expected variance (points²) of the two-level bootstrap law of the mean Δ (seeds resampled,
        then examples jointly: :func:`hierarchical_bootstrap`, the tables' primary test) for a run of
        ``n_seeds`` × ``n_examples`` with these components. Worked out from the bootstrap's own
        resampling: ``(S-1)/S² · seed + example/n + (3S-2)/(n S²) · interaction``. Resampling seeds
        sees the seed variance with ddof 0 (none at all with one seed), and the interaction is
        counted both across seeds and within the example resampling, so the test is conservative."""
        s = n_seeds or self.n_seeds
        n = n_examples or self.n_examples
        return (s - 1) / s**2 * (self.seed or 0.0) + self.example / n + (3 * s - 2) / (n * s**2) * self.interaction


def variance_components(diff: np.ndarray) -> Variance:
    """Method-of-moments (two-way ANOVA, one observation per cell) estimates of :class:`Variance`
    from an ``(S, n)`` matrix of per-example differences in {-1, 0, 1}, clipped at 0."""
    d = np.asarray(diff, dtype=np.float64) * 100.0
    if d.ndim == 1:
        d = d[None, :]
    s, n = d.shape
    if n < 2:
        raise StatsError("need at least 2 examples")
    if s < 2:
        return Variance(None, 0.0, float(d.var(ddof=1)), s, n)
    rows, cols, grand = d.mean(axis=1), d.mean(axis=0), d.mean()
    ms_seed = n * float(((rows - grand) ** 2).sum()) / (s - 1)
    ms_example = s * float(((cols - grand) ** 2).sum()) / (n - 1)
    ms_inter = float(((d - rows[:, None] - cols[None, :] + grand) ** 2).sum()) / ((s - 1) * (n - 1))
    return Variance(max(0.0, (ms_seed - ms_inter) / n), max(0.0, (ms_example - ms_inter) / s), ms_inter, s, n)


def bootstrap_se(diff: np.ndarray) -> float:
    """Standard deviation (points) of the exact two-level bootstrap law of the mean of an ``(S, n)``
    difference matrix, in closed form: the standard deviation of ``hierarchical_bootstrap(diff)``'s
    law when that is enumerated (up to 6 seeds), without enumerating, and free of its Monte-Carlo
    noise when it is sampled (7+ seeds). A single row is the one-level bootstrap over its examples.
    Seeds drawn with counts ``c`` (multinomial), then ``n`` columns of ``u = c @ d``:
    ``Var(T) = n · E[var_i(u_i)] + S · var_s(row sums)``, with ``E[c_s c_t]`` equal to ``2 - 1/S`` on
    the diagonal and ``1 - 1/S`` off it."""
    d = np.atleast_2d(np.asarray(diff, dtype=np.float64))
    s, n = d.shape
    cov = np.cov(d, ddof=0) if s > 1 else np.array([[d[0].var()]])
    weights = np.full((s, s), 1.0 - 1.0 / s) + np.eye(s)
    var_t = n * float((weights * cov).sum()) + s * float(d.sum(axis=1).var())
    return math.sqrt(max(0.0, var_t)) * 100.0 / (n * s)


def seeds_needed(var: Variance, effect: float, m: int = 1, alpha: float = 0.05, power: float = _POWER,
                 n_examples: int | None = None) -> int | None:
    """The fewest seeds for which the two-level bootstrap's MDE (:meth:`Variance.bootstrap_var`) is at
    most ``effect``; None when no number of seeds can do it (the test set's own variance alone is too
    large: more test examples are needed). At least 2 once seed variance is measured and non-zero
    (one seed cannot see it)."""
    if effect <= 0:
        raise StatsError("effect must be positive")
    target = (effect / _z_sum(alpha, m, power)) ** 2
    n = n_examples or var.n_examples
    room = target - var.example / n  # the floor no number of seeds goes below
    if room <= 0:
        return None
    first = 2 if var.seed else 1
    # beyond 2 seeds the variance only falls, and a/S + 3e/(nS) bounds it: the loop is finite
    last = max(first, math.ceil(((var.seed or 0.0) + 3 * var.interaction / n) / room) + 1)
    return next(k for k in range(first, last + 1) if var.bootstrap_var(k, n) <= target + 1e-12)


def examples_needed(var: Variance, effect: float, n_seeds: int, m: int = 1, alpha: float = 0.05,
                    power: float = _POWER) -> int | None:
    """Test examples (in all) with which ``n_seeds`` seeds reach an MDE of ``effect``; None when the
    seed variance alone is too large for that many seeds."""
    target = (effect / _z_sum(alpha, m, power)) ** 2
    s = n_seeds
    room = target - (s - 1) / s**2 * (var.seed or 0.0)
    if room <= 0:
        return None
    return max(1, math.ceil((var.example + (3 * s - 2) / s**2 * var.interaction) / room - 1e-12))


# --------------------------------------------------------------------------------- comparisons
@dataclass(frozen=True)
class Comparison:
    """``method`` vs. ``baseline`` on one table cell (task × domain × fraction), pooled over seeds.

    * ``delta``: mean accuracy difference in points (method - baseline), from per-example outcomes.
    * ``delta_ci``: its unadjusted 95% percentile interval from the exact (two-level) bootstrap.
    * ``p_examples``: **primary** p-value: the exact paired bootstrap over test examples with one
      seed (conditional on that run), the two-level bootstrap over seeds then examples with more.
    * ``p_mcnemar``: exact/asymptotic McNemar on the pooled pairs, for the record.
    * ``p_seeds``: paired *t*-test over per-seed accuracies when ``n_seeds >= 3``, else ``None``;
      NaN with ``seeds_degenerate`` when every seed gives the same non-zero difference.
    * ``p_adjusted``: Holm-adjusted ``p_examples`` within its family, filled by :func:`adjust`.
    * ``se``: standard deviation of the bootstrap law of ``delta``, exact (:func:`bootstrap_se`), for
      the MDE; the same number ``kdbench power`` starts from.
    * ``p_mc_se``: Monte-Carlo standard error of ``p_examples`` (0.0: exact).
    * ``p_equivalence``: TOST p for ``|delta| < equivalence margin`` (None: no margin given).
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
    se: float = math.nan
    p_mc_se: float = 0.0
    seeds_degenerate: bool = False
    p_equivalence: float | None = None


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


def paired_outcomes(cells_a: Sequence[CellLike], cells_b: Sequence[CellLike]) -> tuple[list[Any], np.ndarray,
                                                                                       np.ndarray, bool]:
    """Shared seeds (sorted) and the aligned outcome matrices ``(S, n)`` of two sides; the flag says
    whether every seed has the same examples (else the rows are concatenated into one, ``(1, S·n)``)."""
    by_a = _cells_by_seed(cells_a, "method")
    by_b = _cells_by_seed(cells_b, "baseline")
    seeds = [s for s in by_a if s in by_b]
    if not seeds:
        raise StatsError("no seed is shared by the method and the baseline cells")
    seeds.sort(key=lambda s: (not isinstance(s, int), s if isinstance(s, int) else 0, repr(s)))
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
        return seeds, np.vstack(rows_a), np.vstack(rows_b), True
    return seeds, np.concatenate(rows_a)[None, :], np.concatenate(rows_b)[None, :], False


def compare(
    cells_a: Sequence[CellLike],
    cells_b: Sequence[CellLike],
    method: str | None = None,
    baseline: str | None = None,
    n_boot: int = 2000,
    seed: int = 0,
    equivalence_margin: float | None = None,
    thresholds: Sequence[float] = THRESHOLDS,
) -> Comparison:
    """Compare a method's cells (``cells_a``) with the baseline's (``cells_b``) for one table cell.

    Cells are paired by ``seed`` (only seeds present on both sides are used) and, within a seed,
    examples are aligned by ``example_ids``. Raises :class:`StatsError` when paired cells differ in
    ``split_hash`` or ``fraction``, when example ids don't match, or when no seed is shared.

    The primary test is :func:`hierarchical_bootstrap` (exact up to 6 seeds; with 7+ ``n_boot``
    initial seed-multiset draws from ``seed``, grown until no p is within 3 Monte-Carlo errors of
    ``thresholds``). When seeds were evaluated on different examples, (seed, example) pairs are the
    units of a one-level bootstrap. ``p_seeds`` uses the stored per-seed ``accuracy``.
    """
    seeds, mat_a, mat_b, _same = paired_outcomes(cells_a, cells_b)
    by_a = _cells_by_seed(cells_a, "method")
    by_b = _cells_by_seed(cells_b, "baseline")
    name_a = method if method is not None else str(by_a[seeds[0]].get("method", "a"))
    name_b = baseline if baseline is not None else str(by_b[seeds[0]].get("method", "b"))
    diff = mat_a.astype(np.int64) - mat_b.astype(np.int64)
    dist = hierarchical_bootstrap(diff, seed=seed, n_draws=n_boot, thresholds=thresholds)
    lo, hi = dist.interval(0.95)
    p = dist.p_two_sided()
    p_se = dist.p_mc_se(lambda t: np.abs(t - dist.observed) >= abs(dist.observed))
    _, p_mc = mcnemar(mat_a, mat_b)
    p_seeds: float | None = None
    degenerate = False
    if len(seeds) >= 3:
        acc_a = [float(by_a[s]["accuracy"]) for s in seeds]
        acc_b = [float(by_b[s]["accuracy"]) for s in seeds]
        _, p_seeds = paired_t(acc_a, acc_b)
        degenerate = math.isnan(p_seeds)
    p_eq = None if equivalence_margin is None else dist.p_tost(equivalence_margin)
    n_examples = int(mat_a.shape[1]) if _same else int(mat_a.size // len(seeds))
    return Comparison(name_a, name_b, dist.observed * dist.scale, (lo, hi), p, p_mc, p_seeds, None, len(seeds),
                      n_examples, bootstrap_se(diff), p_se, degenerate, p_eq)


def adjust(comparisons: Sequence[Comparison]) -> list[Comparison]:
    """Holm-adjust the primary p-values (``p_examples``) of one family; returns new ``Comparison``s
    with ``p_adjusted`` set, in the input order."""
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
    pvalues: Mapping[K, Mapping[K, float]] | Mapping[K, float] | None = None,
    alpha: float = 0.05,
    higher_is_better: bool = True,
    equivalence: bool = False,
) -> set[K]:
    """Rows of one column (of one block) to highlight as "best or tied with the best".

    The best rows share the highest mean (lowest with ``higher_is_better=False``). ``pvalues[k]``
    maps each best row to the p-value of row ``k`` against it (a plain float is taken as the p
    against every best row). A row is tied when, against **every** best row,

    * ``equivalence=False``: ``p >= alpha`` (not significantly different: absence of evidence);
    * ``equivalence=True``: ``p < alpha`` where ``p`` is a TOST p (shown equivalent within the margin).

    A row without a p-value against some best row falls back to interval overlap with that row
    (a conservative display heuristic) when not testing equivalence; under equivalence it is not
    tied. Rows with a NaN interval and no p-value are never tied (unless they are best).
    """
    if not summaries:
        return set()
    sign = 1.0 if higher_is_better else -1.0
    top = max(sign * s.mean for s in summaries.values())
    best = [k for k, s in summaries.items() if sign * s.mean == top]
    tied = set(best)
    for k, s in summaries.items():
        if k in tied:
            continue
        raw = pvalues.get(k) if pvalues is not None else None
        ok = True
        for b in best:
            p = raw.get(b) if isinstance(raw, Mapping) else raw
            if p is not None and not math.isnan(p):
                ok = p < alpha if equivalence else p >= alpha
            elif equivalence:
                ok = False
            else:
                ref = summaries[b]
                if any(math.isnan(v) for v in (s.ci_low, s.ci_high, ref.ci_low, ref.ci_high)):
                    ok = False
                else:
                    ok = s.ci_high >= ref.ci_low and s.ci_low <= ref.ci_high
            if not ok:
                break
        if ok:
            tied.add(k)
    return tied
