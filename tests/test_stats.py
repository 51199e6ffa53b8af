"""Tests for kdbench.stats: fixed arrays checked against hand-worked values and scipy."""

from __future__ import annotations

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
    compare,
    holm,
    mcnemar,
    paired_bootstrap,
    paired_t,
    significance_marker,
    summarize,
    tied_with_best,
    wilcoxon,
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
    with pytest.raises(StatsError):
        paired_t([1.0], [2.0])


def test_wilcoxon_matches_scipy_and_handles_zero() -> None:
    a, b = [1, 2, 3, 4, 5], [1.5, 2.1, 3.9, 4.2, 5.6]
    stat, p = wilcoxon(a, b)
    assert stat == 0.0
    assert p == pytest.approx(2 / 2**5)  # exact: all five differences negative
    assert wilcoxon([1, 2, 3], [1, 2, 3]) == (0.0, 1.0)


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


def test_paired_bootstrap_reproducible_and_sane() -> None:
    r1 = paired_bootstrap(_A, _B, n_boot=2000, seed=1)
    r2 = paired_bootstrap(_A, _B, n_boot=2000, seed=1)
    r3 = paired_bootstrap(_A, _B, n_boot=2000, seed=2)
    assert r1 == r2
    assert r1 != r3
    delta, lo, hi, p = r1
    assert delta == pytest.approx(100 * (_A.mean() - _B.mean()))
    assert lo <= delta <= hi
    assert 1 / 2001 <= p <= 1.0


def test_paired_bootstrap_identical_and_clear_difference() -> None:
    delta, lo, hi, p = paired_bootstrap(_A, _A, n_boot=500)
    assert (delta, lo, hi, p) == (0.0, 0.0, 0.0, 1.0)
    a = np.ones(200, dtype=bool)
    b = np.zeros(200, dtype=bool)
    b[:20] = True  # a better on 180 examples, never worse
    delta, lo, hi, p = paired_bootstrap(a, b, n_boot=1000)
    assert delta == pytest.approx(90.0)
    assert p == pytest.approx(1 / 1001)  # smoothing floor: no resample reaches |delta*-delta|>=90


def test_paired_bootstrap_2d_is_cluster_over_columns() -> None:
    a2 = np.vstack([_A, _A])
    b2 = np.vstack([_B, _B])
    # duplicating a seed adds no information: identical to the 1-D result with the same seed
    assert paired_bootstrap(a2, b2, n_boot=1000, seed=3) == pytest.approx(
        paired_bootstrap(_A, _B, n_boot=1000, seed=3))
    with pytest.raises(StatsError):
        paired_bootstrap(_A, _B[:-1])


def test_summarize_one_seed_bootstrap() -> None:
    s = summarize([100 * _A.mean()], correct=[list(_A)], n_boot=2000, seed=0)
    assert s.method == "bootstrap" and s.n == 1 and s.sd == 0.0
    assert s.ci_low <= s.mean <= s.ci_high
    assert s.ci_high - s.ci_low > 1.0  # points, not fractions
    assert summarize([100 * _A.mean()], correct=[list(_A)], n_boot=2000, seed=0) == s
    assert summarize([100 * _A.mean()], correct=[list(_A)], n_boot=2000, seed=5) != s
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
