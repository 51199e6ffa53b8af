"""Tests for kdbench.stats: fixed arrays checked against hand-worked values and scipy."""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sps

from kdbench.stats import (
    Comparison,
    StatsError,
    Summary,
    adjust,
    bootstrap_se,
    compare,
    examples_needed,
    hierarchical_bootstrap,
    holm,
    lattice_sum_pmf,
    mcnemar,
    mde,
    paired_bootstrap,
    paired_t,
    seeds_needed,
    significance_marker,
    summarize,
    tied_with_best,
    variance_components,
)


def _pairs(b: int, c: int, both_right: int = 0, both_wrong: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Outcome arrays with b (a right, b wrong) and c (a wrong, b right) discordant pairs."""
    a = [True] * b + [False] * c + [True] * both_right + [False] * both_wrong
    o = [False] * b + [True] * c + [True] * both_right + [False] * both_wrong
    return np.array(a), np.array(o)


# ------------------------------------------------------------------------------------- paired t
def test_paired_t_matches_formula() -> None:
    a = np.array([1, 2, 3, 4, 5], dtype=float)
    b = np.array([1.5, 2.1, 3.9, 4.2, 5.6])
    d = a - b
    t = d.mean() / (d.std(ddof=1) / math.sqrt(d.size))
    p = 2 * sps.t.sf(abs(t), d.size - 1)
    stat, pval = paired_t(a, b)
    assert stat == pytest.approx(t, abs=1e-10)
    assert pval == pytest.approx(p, abs=1e-10)


def test_paired_t_degenerate() -> None:
    assert paired_t([1.0, 2.0], [1.0, 2.0]) == (0.0, 1.0)
    # identical non-zero per-seed differences: zero variance is degenerate, never p = 0
    t, p = paired_t([81.0, 82.0, 83.0], [80.0, 81.0, 82.0])
    assert math.isnan(t) and math.isnan(p)
    with pytest.raises(StatsError):
        paired_t([1.0], [2.0])


# --------------------------------------------------------------------------------------- McNemar
def test_mcnemar_exact_known_table() -> None:
    a, b = _pairs(10, 3, both_right=50, both_wrong=7)
    stat, p = mcnemar(a, b)
    assert p == pytest.approx(2 * (1 + 13 + 78 + 286) / 8192, abs=1e-12)
    assert p == pytest.approx(0.09228515625, abs=1e-12)
    assert stat == 3.0
    # symmetric in a and b
    assert mcnemar(b, a)[1] == pytest.approx(p, abs=1e-12)


def test_mcnemar_chi_square_case() -> None:
    a, b = _pairs(30, 12, both_right=100)
    stat, p = mcnemar(a, b)
    assert stat == pytest.approx(289 / 42, abs=1e-12)
    assert p == pytest.approx(sps.chi2.sf(289 / 42, 1), abs=1e-12)
    # forcing exact switches to the binomial test
    assert mcnemar(a, b, exact=True)[1] == pytest.approx(sps.binomtest(30, 42).pvalue, abs=1e-12)


def test_mcnemar_no_discordant_pairs() -> None:
    a, b = _pairs(0, 0, both_right=5, both_wrong=5)
    assert mcnemar(a, b) == (0.0, 1.0)


# ------------------------------------------------------------------------------------------ Holm
def test_holm_textbook() -> None:
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02], abs=1e-12)


def test_holm_nan_and_caps() -> None:
    out = holm([0.01, math.nan, 0.5, 0.6])
    assert math.isnan(out[1])
    assert out[0] == pytest.approx(0.03)  # m = 3, NaN excluded
    assert out[2] == 1.0 and out[3] == 1.0
    assert holm([]) == []
    with pytest.raises(StatsError):
        holm([1.5])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(min_value=0.0, max_value=1.0), min_size=1, max_size=30))
def test_holm_properties(ps: list[float]) -> None:
    adj = holm(ps)
    assert len(adj) == len(ps)
    for p, q in zip(ps, adj, strict=True):
        assert q >= p - 1e-15
        assert q <= 1.0
    order = sorted(range(len(ps)), key=lambda i: ps[i])
    sorted_adj = [adj[i] for i in order]
    assert all(x <= y for x, y in zip(sorted_adj, sorted_adj[1:], strict=False))


# -------------------------------------------------------------------------------------- bootstrap
_RNG = np.random.default_rng(123)
_A = _RNG.random(400) < 0.80
_B = _RNG.random(400) < 0.72


def _brute_force(diff: np.ndarray) -> dict[int, float]:
    """The two-level bootstrap law of the summed difference by enumerating every resample."""
    s, n = diff.shape
    law: dict[int, float] = {}
    for seeds in itertools.product(range(s), repeat=s):
        for idx in itertools.product(range(n), repeat=n):
            t = int(diff[list(seeds)][:, list(idx)].sum())
            law[t] = law.get(t, 0.0) + 1.0 / (s**s * n**n)
    return law


def test_exact_bootstrap_equals_enumeration_one_seed() -> None:
    d = np.array([[1, 1, 0, 1, 0, -1]])
    dist = hierarchical_bootstrap(d)
    law = _brute_force(d)
    assert dist.pmf == pytest.approx([law.get(int(t), 0.0) for t in dist.support], abs=1e-12)
    # hand-worked: D = 2, p = P(|T - 2| >= 2) = P(T <= 0) + P(T >= 4)
    assert dist.observed == 2
    assert dist.p_two_sided() == pytest.approx(sum(v for t, v in law.items() if abs(t - 2) >= 2), abs=1e-12)


def test_exact_bootstrap_equals_enumeration_two_seeds() -> None:
    d = np.array([[1, 0, -1], [1, 1, 0]])
    dist = hierarchical_bootstrap(d)
    law = _brute_force(d)
    assert dist.pmf == pytest.approx([law.get(int(t), 0.0) for t in dist.support], abs=1e-12)
    assert dist.scale == pytest.approx(100 / 6)


def test_one_seed_law_is_the_trinomial() -> None:
    # n = 40 examples: 9 won, 4 lost, 27 tied; T = K+ - K- with (K+, K-, K0) ~ Multinomial(40; .225, .1, .675)
    d = np.array([[1] * 9 + [-1] * 4 + [0] * 27])
    dist = hierarchical_bootstrap(d)
    expect = np.zeros(81)
    for kp in range(41):
        for km in range(41 - kp):
            expect[kp - km + 40] += sps.multinomial.pmf([kp, km, 40 - kp - km], 40, [9 / 40, 4 / 40, 27 / 40])
    assert dist.pmf == pytest.approx(expect, abs=1e-12)
    # the FFT route (used for large lattices) gives the same law as direct convolution
    unit = np.array([4 / 40, 27 / 40, 9 / 40])
    fft_law = lattice_sum_pmf(np.vstack([unit, unit]), 40)[0]
    assert fft_law == pytest.approx(expect, abs=1e-12)


def test_exact_bootstrap_is_the_limit_of_monte_carlo() -> None:
    delta, lo, hi, p = paired_bootstrap(_A, _B)
    rng = np.random.default_rng(0)
    d = (_A.astype(float) - _B.astype(float)) * 100
    boot = d[rng.integers(0, d.size, size=(20_000, d.size))].mean(axis=1)
    assert delta == pytest.approx(d.mean())
    assert p == pytest.approx(np.mean(np.abs(boot - delta) >= abs(delta) - 1e-9), abs=0.01)
    assert (lo, hi) == pytest.approx(tuple(np.quantile(boot, [0.025, 0.975])), abs=0.5)
    # deterministic: the seed argument changes nothing without Monte Carlo
    assert paired_bootstrap(_A, _B, seed=1) == paired_bootstrap(_A, _B, seed=2) == (delta, lo, hi, p)


def test_paired_bootstrap_identical_and_clear_difference() -> None:
    delta, lo, hi, p = paired_bootstrap(_A, _A)
    assert (delta, lo, hi, p) == (0.0, 0.0, 0.0, 1.0)
    a = np.ones(200, dtype=bool)
    b = np.zeros(200, dtype=bool)
    b[:20] = True  # a better on 180 examples, never worse
    delta, lo, hi, p = paired_bootstrap(a, b)
    assert delta == pytest.approx(90.0)
    assert p == pytest.approx(0.1**200, abs=1e-15)  # only the all-ties resample reaches |T - D| >= D
    with pytest.raises(StatsError):
        paired_bootstrap(_A, _B[:-1])


def test_monte_carlo_over_seed_multisets_reports_its_error(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(5)
    d = (rng.random((7, 30)) < 0.3).astype(int) - (rng.random((7, 30)) < 0.3).astype(int)
    mc = hierarchical_bootstrap(d, seed=1, n_draws=200)
    assert mc.draws >= 200
    se = mc.p_mc_se(lambda t: np.abs(t - mc.observed) >= abs(mc.observed))
    assert 0 < se < 0.05
    assert hierarchical_bootstrap(d, seed=1, n_draws=200).p_two_sided() == mc.p_two_sided()  # reproducible
    monkeypatch.setattr("kdbench.stats.EXACT_SEED_MULTISETS", 2000)  # 7 seeds: 1,716 multisets
    exact = hierarchical_bootstrap(d)
    assert exact.draws == 0
    assert abs(mc.p_two_sided() - exact.p_two_sided()) < 5 * se
    # decisions are resolved: p is more than 3 standard errors from 0.05 and 0.01 (or the budget ran out)
    assert all(abs(mc.p_two_sided() - th) > 3 * se for th in (0.05, 0.01)) or mc.draws >= 8_000


def test_tost_equivalence() -> None:
    d = np.array([[1, -1] * 50 + [0] * 100])  # Δ = 0 on 200 examples
    dist = hierarchical_bootstrap(d)
    assert dist.p_tost(15.0) < 0.01  # SE = 5 points: ±15 is 3 SE
    assert dist.p_tost(0.5) > 0.3  # ±0.5 points cannot be shown with 200 examples
    t = dist.support
    # hand: margin 5 points = 10 lattice units; p = max(P(T >= 10), P(T <= -10))
    assert dist.p_tost(5.0) == pytest.approx(max(dist.pmf[t >= 10].sum(), dist.pmf[t <= -10].sum()), abs=1e-12)


def test_mde_and_seeds_needed_hand_computed() -> None:
    # issue #17: SE 1.18 on the Average gives an MDE of about 3.3 points, 4.9 after Holm over 55
    assert mde(1.18) == pytest.approx((sps.norm.ppf(0.975) + sps.norm.ppf(0.8)) * 1.18)
    assert round(mde(1.18), 1) == 3.3
    assert round(mde(1.18, 55), 1) == 4.9
    d = np.array([[1] * 30 + [-1] * 25 + [0] * 145])
    var = variance_components(d)
    # one seed: no seed variance, and the test set's variance cannot be split from the interaction
    assert var.seed is None and var.example == 0.0 and var.n_examples == 200
    assert var.interaction == pytest.approx(np.var(d[0], ddof=1) * 1e4)
    z = sps.norm.ppf(1 - 0.05 / 14) + sps.norm.ppf(0.8)
    target = (1.0 / z) ** 2
    # the two-level bootstrap's variance with k seeds is (3k-2)/(n k²) · interaction here
    k = seeds_needed(var, 1.0, m=7)
    assert (3 * k - 2) / (200 * k**2) * var.interaction <= target < (3 * k - 5) / (200 * (k - 1) ** 2) * var.interaction


def test_variance_components_are_the_two_way_anova_estimates() -> None:
    # 2 seeds x 4 examples, in points (x100): rows means 50, 0; column means 50, 50, 0, 0; grand 25
    d = np.array([[1, 1, 0, 0], [0, 0, 0, 0]])
    v = variance_components(d)
    ms_seed = 4 * (25**2 + 25**2) / 1  # n · Σ(row mean - grand)² / (S-1)
    ms_example = 2 * (4 * 25**2) / 3  # S · Σ(column mean - grand)² / (n-1)
    ms_inter = 8 * 25**2 / 3  # residuals ±25 in all 8 cells, over (S-1)(n-1) = 3
    assert v.interaction == pytest.approx(ms_inter)
    assert v.seed == pytest.approx((ms_seed - ms_inter) / 4)
    assert v.example == pytest.approx((ms_example - ms_inter) / 2)
    # every seed wrong on the same examples: all test-set variance, which no number of seeds removes
    same = variance_components(np.array([[1] * 20 + [0] * 180] * 3))
    assert same.seed == 0.0 and same.interaction == 0.0 and same.example == pytest.approx(np.var([1] * 20 + [0] * 180, ddof=1) * 1e4)
    assert seeds_needed(same, 1.0) is None
    assert examples_needed(same, 1.0, n_seeds=3) == math.ceil(same.example / (1.0 / _z(1)) ** 2)


def _z(m: int) -> float:
    return float(sps.norm.ppf(1 - 0.05 / (2 * m)) + sps.norm.ppf(0.8))


def _law_sd(dist: Any) -> float:
    """Standard deviation (points) of an enumerated bootstrap law, read off its lattice."""
    t = dist.support.astype(np.float64)
    mu = float((t * dist.pmf).sum())
    return math.sqrt(float(((t - mu) ** 2 * dist.pmf).sum())) * dist.scale


@pytest.mark.parametrize("seeds", [1, 2, 3, 5])
def test_bootstrap_se_closed_form_is_the_enumerated_bootstrap(seeds: int) -> None:
    rng = np.random.default_rng(seeds)
    d = rng.choice([-1, 0, 1], size=(seeds, 40), p=[0.2, 0.6, 0.2])
    assert bootstrap_se(d) == pytest.approx(_law_sd(hierarchical_bootstrap(d)), rel=1e-9)
    # the component model predicts the same variance on average; on one draw, within a factor
    assert 0.5 < variance_components(d).bootstrap_var() / bootstrap_se(d) ** 2 < 2.0


def test_summarize_one_seed_bootstrap_is_exact_binomial() -> None:
    s = summarize([100 * _A.mean()], correct=[list(_A)])
    assert s.method == "bootstrap" and s.n == 1 and s.sd == 0.0
    k, n = int(_A.sum()), _A.size
    assert s.ci_low == pytest.approx(100 * sps.binom.ppf(0.025, n, k / n) / n)
    assert s.ci_high == pytest.approx(100 * sps.binom.ppf(0.975, n, k / n) / n)
    assert summarize([100 * _A.mean()], correct=[list(_A)], seed=5) == s  # nothing random
    none = summarize([80.0])
    assert none.method == "none" and math.isnan(none.ci_low)


def test_summarize_t_three_seeds() -> None:
    acc = [80.0, 82.5, 81.0]
    s = summarize(acc)
    mean = sum(acc) / 3
    sd = math.sqrt(sum((x - mean) ** 2 for x in acc) / 2)
    half = sps.t.ppf(0.975, 2) * sd / math.sqrt(3)
    assert s == Summary(3, pytest.approx(mean), pytest.approx(sd), pytest.approx(mean - half),
                        pytest.approx(mean + half), "t")
    assert half == pytest.approx(4.302652729911275 * sd / math.sqrt(3))
    with pytest.raises(StatsError):
        summarize([])


# ---------------------------------------------------------------------------------------- compare
def _cell(seed: int, correct: list[bool], ids: list[str], split: str = "h1", fraction: float = 0.1,
          method: str = "m") -> dict[str, Any]:
    return {"seed": seed, "accuracy": 100 * sum(correct) / len(correct), "correct": correct,
            "split_hash": split, "fraction": fraction, "example_ids": ids, "method": method}


_IDS = [f"e{i}" for i in range(len(_A))]


def _cells(arr: np.ndarray, seeds: tuple[int, ...] = (0, 1, 2), **kw: Any) -> list[dict[str, Any]]:
    return [_cell(s, list(np.roll(arr, s)), _IDS, **kw) for s in seeds]


def test_compare_refuses_mismatched_cells() -> None:
    a = _cells(_A)
    with pytest.raises(StatsError, match="split_hash"):
        compare(a, _cells(_B, split="h2"), n_boot=100)
    with pytest.raises(StatsError, match="fraction"):
        compare(a, _cells(_B, fraction=0.5), n_boot=100)
    other_ids = [_cell(s, list(_B), [f"x{i}" for i in range(len(_B))]) for s in (0, 1, 2)]
    with pytest.raises(StatsError, match="example ids"):
        compare(a, other_ids, n_boot=100)
    with pytest.raises(StatsError, match="no seed"):
        compare(a, _cells(_B, seeds=(7,)), n_boot=100)


def test_compare_aligns_by_id_and_pairs_by_seed() -> None:
    a = _cells(_A, method="kd")
    b = _cells(_B, seeds=(0, 1, 2, 3), method="student")
    ref = compare(a, b, n_boot=500)
    assert isinstance(ref, Comparison)
    assert (ref.method, ref.baseline, ref.n_seeds, ref.n_examples) == ("kd", "student", 3, len(_A))
    assert ref.delta == pytest.approx(100 * (_A.mean() - _B.mean()))
    assert ref.delta_ci[0] <= ref.delta <= ref.delta_ci[1]
    assert ref.p_seeds is not None and ref.p_adjusted is None

    # shuffle the baseline's example order within each seed: result must not change
    perm = np.random.default_rng(0).permutation(len(_A))
    shuffled = []
    for cell in b:
        corr = np.asarray(cell["correct"])[perm]
        shuffled.append(_cell(cell["seed"], list(corr), [_IDS[i] for i in perm], method="student"))
    assert compare(a, shuffled, n_boot=500) == ref

    # fewer than 3 shared seeds: no seed-level test
    assert compare(a[:2], b, n_boot=100).p_seeds is None


def test_compare_se_is_exact_when_seed_multisets_are_sampled() -> None:
    # 7 seeds: the bootstrap law is sampled, but the se behind the MDE is the closed form, so it does
    # not move with the bootstrap's seed, and it is the number `kdbench power` starts from
    a, b = _cells(_A, seeds=tuple(range(7))), _cells(_B, seeds=tuple(range(7)))
    one, other = compare(a, b, n_boot=200, seed=0), compare(a, b, n_boot=200, seed=1)
    diff = np.array([np.roll(_A, s).astype(int) - np.roll(_B, s).astype(int) for s in range(7)])
    assert one.se == other.se == bootstrap_se(diff) > 0


def test_compare_reports_degenerate_seed_test() -> None:
    # every seed: the method is right on exactly one more example than the baseline
    base = [_cell(s, [True] * 5 + [False] * 5, [f"e{i}" for i in range(10)]) for s in (0, 1, 2)]
    better = [_cell(s, [True] * 6 + [False] * 4, [f"e{i}" for i in range(10)]) for s in (0, 1, 2)]
    c = compare(better, base)
    assert c.seeds_degenerate and c.p_seeds is not None and math.isnan(c.p_seeds)
    assert c.p_examples > 0


def test_adjust_and_markers() -> None:
    base = Comparison("m", "b", 1.0, (0.0, 2.0), 0.01, 0.02, None, None, 1, 10)
    comps = [base, Comparison("m2", "b", 1.0, (0.0, 2.0), 0.04, 0.02, None, None, 1, 10)]
    out = adjust(comps)
    assert [c.p_adjusted for c in out] == pytest.approx([0.02, 0.04])
    assert comps[0].p_adjusted is None  # originals untouched
    assert significance_marker(0.009) == "**"
    assert significance_marker(0.01) == "*"
    assert significance_marker(0.05) == ""
    assert significance_marker(None) == ""
    assert significance_marker(math.nan) == ""


def test_tied_with_best() -> None:
    rows = {
        "a": Summary(3, 80.0, 1.0, 78.0, 82.0, "t"),
        "b": Summary(3, 79.0, 1.0, 77.5, 80.5, "t"),
        "c": Summary(3, 70.0, 1.0, 69.0, 71.0, "t"),
        "d": Summary(1, 79.5, 0.0, math.nan, math.nan, "none"),
    }
    assert tied_with_best(rows) == {"a", "b"}
    # paired p-values override interval overlap
    assert tied_with_best(rows, pvalues={"b": 0.01, "c": 0.2}) == {"a", "c"}
    assert tied_with_best(rows, higher_is_better=False) == {"c"}
    assert tied_with_best({}) == set()


def test_tied_with_every_best_row() -> None:
    rows = {"x": Summary(1, 87.0, 0, 80, 90, "bootstrap"), "y": Summary(1, 87.0, 0, 80, 90, "bootstrap"),
            "r": Summary(1, 84.0, 0, 78, 88, "bootstrap")}
    # not different from x, but different from y (same mean): not tied
    assert tied_with_best(rows, {"r": {"x": 0.3, "y": 0.01}}) == {"x", "y"}
    assert tied_with_best(rows, {"r": {"x": 0.3, "y": 0.2}}) == {"x", "y", "r"}
    # equivalence: tied only when the TOST p is small against every best row
    assert tied_with_best(rows, {"r": {"x": 0.01, "y": 0.02}}, equivalence=True) == {"x", "y", "r"}
    assert tied_with_best(rows, {"r": {"x": 0.01, "y": 0.2}}, equivalence=True) == {"x", "y"}
