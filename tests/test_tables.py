"""kdbench.tables and kdbench.references on small fixed result sets (no training)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from _resultsets import cell, small
from scipy import stats as sps

from kdbench import references, tables
from kdbench.api import KDBenchError
from kdbench.results import atomic_write_json
from kdbench.stats import holm
from kdbench.tables import AVERAGE, PAPER_STUDENTS, PAPER_TEACHERS, build_tables

ORDER = ["student", "kd", "teacher", "mix"]
NB = 1000  # Monte-Carlo draws (only used with 7+ seeds; these tests have at most 3)
EXAMPLE = Path(__file__).resolve().parents[1] / "results" / "reference" / "example.yaml"


def entry(table: tables.Table, method: str, column: str) -> tables.Entry:
    row = next(r for r in table.rows if r.method == method and r.source is None)
    return row.entries[table.columns.index(column)]


@pytest.fixture(scope="module")
def main3() -> tables.Table:
    """3 seeds, 4 methods, books + kitchen at fraction 1.0."""
    (t,) = build_tables(small(), method_order=ORDER, n_boot=NB)
    return t


# ------------------------------------------------------------------------------------ summaries
def test_cell_summary_is_t_interval_over_seeds(main3: tables.Table) -> None:
    assert main3.columns == ["books", "kitchen", AVERAGE]
    assert [r.method for r in main3.rows] == ORDER
    s = entry(main3, "kd", "books").summary
    assert s is not None and s.n == 3 and s.method == "t"
    assert s.mean == pytest.approx(80.0) and s.sd == pytest.approx(1.0)
    half = sps.t.ppf(0.975, 2) * 1.0 / math.sqrt(3)
    assert (s.ci_low, s.ci_high) == pytest.approx((80 - half, 80 + half))


def test_average_is_per_seed_mean_over_domains(main3: tables.Table) -> None:
    s = entry(main3, "kd", AVERAGE).summary
    # per seed: (80+71)/2, (79+70)/2, (81+72)/2
    assert s is not None and s.n == 3
    assert s.mean == pytest.approx(75.5) and s.sd == pytest.approx(1.0)


def test_average_never_invented() -> None:
    cells = [c for c in small() if not (c["method"] == "kd" and c["domain"] == "kitchen" and c["seed"] == 2)]
    (t,) = build_tables(cells, method_order=ORDER, n_boot=NB)
    avg = entry(t, "kd", AVERAGE).summary
    assert avg is not None and avg.n == 2  # seed 2 lacks kitchen: left out, not filled in
    assert avg.mean == pytest.approx(((80 + 71) / 2 + (79 + 70) / 2) / 2)
    cells = [c for c in cells if not (c["method"] == "kd" and c["domain"] == "kitchen")]
    (t,) = build_tables(cells, method_order=ORDER, n_boot=NB)
    assert entry(t, "kd", "kitchen").summary is None
    assert entry(t, "kd", AVERAGE).summary is None


def test_one_seed_interval_is_a_bootstrap_over_examples() -> None:
    (t,) = build_tables(small(seeds=1), method_order=ORDER, n_boot=NB)
    s = entry(t, "student", "books").summary
    assert s is not None and s.n == 1 and s.method == "bootstrap" and s.sd == 0.0
    assert s.ci_low < 70 < s.ci_high
    avg = entry(t, "student", AVERAGE).summary
    assert avg is not None and avg.method == "bootstrap"  # over the concatenated examples of both domains
    # reproducible
    (t2,) = build_tables(small(seeds=1), method_order=ORDER, n_boot=NB)
    assert entry(t2, "student", "books").summary == s


# ---------------------------------------------------------------------------------- comparisons
def test_comparisons_against_baseline_with_holm(main3: tables.Table) -> None:
    assert main3.baseline == "student"
    assert entry(main3, "student", "books").comparison is None
    comps = [(r.method, col, e.comparison) for r in main3.rows for col, e in zip(main3.columns, r.entries, strict=True)
             if e.comparison is not None]
    assert len(comps) == main3.n_comparisons == 9  # 3 methods x (2 domains + Average)
    # three families, Holm within each: students on the Average, students per domain, teacher rows
    family = {(m, col): entry(main3, m, col).family for m, col, _ in comps}
    assert family == {("kd", "books"): "secondary", ("kd", "kitchen"): "secondary", ("kd", AVERAGE): "primary",
                      ("mix", "books"): "secondary", ("mix", "kitchen"): "secondary", ("mix", AVERAGE): "primary",
                      ("teacher", "books"): "teacher", ("teacher", "kitchen"): "teacher",
                      ("teacher", AVERAGE): "teacher"}
    for fam, size in (("primary", 2), ("secondary", 4), ("teacher", 3)):
        members = [c for m, col, c in comps if family[(m, col)] == fam]
        assert len(members) == size
        assert [c.p_adjusted for c in members] == pytest.approx(holm([c.p_examples for c in members]))
    assert [(f.name, f.size) for f in main3.families] == [("primary", 2), ("secondary", 4), ("teacher", 3)]
    legend = " ".join(main3.legend)
    assert "primary: student methods vs student on the Average (m = 2, MDE" in legend
    assert "two-level bootstrap, seeds then test examples" in legend
    kd_books = entry(main3, "kd", "books")
    assert kd_books.comparison.delta == pytest.approx(10.0)
    assert kd_books.comparison.n_seeds == 3 and kd_books.comparison.n_examples == 100
    lo, hi = kd_books.comparison.delta_ci
    assert lo < 10 < hi and lo > 0
    assert kd_books.comparison.p_seeds is not None  # n >= 3: paired t over seeds too
    assert kd_books.marker.startswith("**")
    # kitchen: kd is 1 point better on 2 of 3 seeds: not significant
    assert entry(main3, "kd", "kitchen").comparison.delta == pytest.approx(1.0)
    assert "*" not in entry(main3, "kd", "kitchen").marker


def test_average_comparison_pools_all_domains(main3: tables.Table) -> None:
    c = entry(main3, "kd", AVERAGE).comparison
    assert c is not None
    assert c.delta == pytest.approx(5.5)
    assert c.n_examples == 200  # both domains' examples, concatenated


def test_seed_level_test_only_with_three_seeds() -> None:
    (t,) = build_tables(small(seeds=2), method_order=ORDER, n_boot=NB)
    assert entry(t, "kd", "books").comparison.p_seeds is None
    assert not t.has_seed_tests
    assert "fewer than 3 seeds" in " ".join(t.legend)


def test_baseline_choice() -> None:
    (t,) = build_tables(small(seeds=1), baseline="kd", method_order=ORDER, n_boot=NB)
    assert t.baseline == "kd" and entry(t, "kd", "books").comparison is None
    assert entry(t, "student", "books").comparison.delta == pytest.approx(-10.0)
    no_student = [c for c in small(seeds=1) if c["method"] != "student"]
    (t,) = build_tables(no_student, method_order=["teacher", "kd", "mix"], n_boot=NB)
    assert t.baseline == "teacher"  # the first method when student was not run
    with pytest.raises(KDBenchError, match="did you mean 'kd'"):
        build_tables(small(seeds=1), baseline="kdd", n_boot=NB)


def test_best_and_tied_with_best(main3: tables.Table) -> None:
    # per block: the teacher row is best among teachers, mix among students
    assert entry(main3, "teacher", "books").best and not entry(main3, "teacher", "books").tied
    assert entry(main3, "mix", "books").best
    assert not entry(main3, "kd", "books").tied and not entry(main3, "kd", "books").best  # 9 points below mix
    assert sum(entry(main3, m, "books").best for m in ORDER) == 2


def test_ties_against_every_best_row_and_equivalence() -> None:
    cells = [c for c in small(seeds=1) if c["method"] in ("student", "kd")]
    # two rows share the best mean (80 on books). "near" (74) is nested in kd: its 6 discordant pairs all
    # favour kd (significant), while against kd2 it has 20 + 26 discordant pairs (not significant)
    cells += [cell("kd2", "books", 0, 80, offset=50), cell("kd2", "kitchen", 0, 71),
              cell("near", "books", 0, 74), cell("near", "kitchen", 0, 70)]

    def vs(a: str, b: str) -> float:
        side = [[tables._stat_cell(c) for c in cells if c["method"] == m and c["domain"] == "books"] for m in (a, b)]
        return tables.compare(side[0], side[1]).p_examples

    assert vs("near", "kd") < 0.05 <= vs("near", "kd2")
    (t,) = build_tables(cells, method_order=["student", "kd", "kd2", "near"])
    assert entry(t, "kd", "books").best and entry(t, "kd2", "books").best
    assert not entry(t, "near", "books").tied  # tested against every best row, not only the first
    (t2,) = build_tables([c for c in cells if c["method"] != "kd"], method_order=["student", "kd2", "near"])
    assert entry(t2, "near", "books").tied
    # equivalence: within ±1 point cannot be shown with 100 examples, within ±30 it can
    (t1,) = build_tables(cells, method_order=["student", "kd", "kd2", "near"], equivalence_margin=1.0)
    assert not entry(t1, "near", "books").tied
    (t30,) = build_tables(cells, method_order=["student", "kd", "kd2", "near"], equivalence_margin=30.0)
    assert entry(t30, "near", "books").tied
    assert "TOST" in " ".join(t30.legend)
    with pytest.raises(KDBenchError, match="equivalence margin"):
        build_tables(cells, equivalence_margin=-1.0)


def test_one_seed_legend_says_training_variance_is_not_counted() -> None:
    (t,) = build_tables(small(seeds=1), method_order=ORDER)
    legend = " ".join(t.legend)
    assert "conditional on that one training run" in legend
    assert "not \"is this method better?\"" in legend and "training variance is not counted" in legend


def test_degenerate_seed_level_test_is_reported(main3: tables.Table) -> None:
    # mix is 19 points above student on books with every seed: zero variance, not p = 0
    c = entry(main3, "mix", "books").comparison
    assert c.seeds_degenerate and math.isnan(c.p_seeds)
    assert "†" not in entry(main3, "mix", "books").marker
    assert "degenerate" in " ".join(main3.legend)


# ---------------------------------------------------------------------------------- refusals
def test_mixed_split_hashes_refused() -> None:
    cells = small(seeds=2)
    odd = next(c for c in cells if c["method"] == "kd" and c["domain"] == "books" and c["seed"] == 1)
    odd["split_hash"] = "another-split"
    with pytest.raises(KDBenchError, match="amazon/books at fraction 1 mixes cells evaluated on different splits"):
        build_tables(cells, n_boot=NB)
    cells = small(seeds=1)
    for c in cells:
        if c["method"] == "student" and c["domain"] == "kitchen":
            c["split_hash"] = "another-split"  # baseline on other data than the rest
    with pytest.raises(KDBenchError, match="another-split") as exc:
        build_tables(cells, n_boot=NB)
    assert "\n" not in str(exc.value)


def test_duplicate_and_incomplete_cells_refused() -> None:
    cells = small(seeds=1)
    with pytest.raises(KDBenchError, match="appears twice"):
        build_tables([*cells, dict(cells[0])], n_boot=NB)
    broken = dict(cells[0])
    del broken["predictions"]
    (t,) = build_tables([broken, *cells[1:]], n_boot=NB)  # kept out and named in the legend
    assert "Kept out (1 cell file(s) unreadable or invalid): a cell: predictions lack" in " ".join(t.legend)


def test_bad_layout_refused() -> None:
    with pytest.raises(KDBenchError, match="unknown layout"):
        build_tables(small(seeds=1), layout="wide")


def test_failed_cells_are_noted() -> None:
    cells = [*small(seeds=1), cell("kd", "books", 5, 0, status="failed")]
    (t,) = build_tables(cells, method_order=ORDER, n_boot=NB)
    assert any("1 failed cell(s)" in n for n in t.notes)
    assert entry(t, "kd", "books").summary.n == 1


# -------------------------------------------------------------------------------------- layouts
def test_paper_layout_shows_missing_rows_and_columns() -> None:
    cells = [*small(seeds=1), cell("custom", "books", 0, 75), cell("custom", "kitchen", 0, 75)]
    (t,) = build_tables(cells, layout="paper", task_domains={"amazon": ("books", "dvd", "kitchen")},
                        method_order=[*ORDER, "custom"], n_boot=NB)
    assert t.columns == ["books", "dvd", "kitchen", AVERAGE]
    names = [(r.method, r.block) for r in t.rows]
    assert names == ([(m, "teacher") for m in PAPER_TEACHERS] + [(m, "student") for m in PAPER_STUDENTS]
                     + [("custom", "student")])
    # rows not run are present and empty; nothing is filled in
    for m in ("teacher:mix", "teacher:mtl", "teacher:meta", "pkd", "tinybert", "mtl", "multiteacher", "metakd"):
        assert all(e.summary is None for e in entry_row(t, m).entries)
    # dvd was not run: its column is empty and no Average can be formed
    assert all(e.summary is None for r in t.rows for e in (r.entries[1], r.entries[3]))
    assert entry(t, "kd", "books").summary.mean == pytest.approx(80.0)
    assert any("dvd" in n for n in t.notes)


def entry_row(t: tables.Table, method: str) -> tables.Row:
    return next(r for r in t.rows if r.method == method and r.source is None)


def test_data_scarce_table_with_several_fractions() -> None:
    ts = build_tables(small(seeds=1, fractions=(0.5, 1.0)), method_order=ORDER, n_boot=NB)
    assert [(t.kind, t.fraction) for t in ts] == [("main", 0.5), ("main", 1.0), ("scarce", None)]
    scarce = ts[-1]
    assert scarce.columns == ["50%", "100%"]
    assert entry(scarce, "kd", "50%").summary.mean == pytest.approx(70.5)
    assert entry(scarce, "kd", "100%").summary.mean == pytest.approx(75.5)
    assert entry(scarce, "kd", "50%").comparison.delta == pytest.approx(5.5)
    assert scarce.n_comparisons == 6
    assert len(build_tables(small(seeds=1), n_boot=NB)) == 1  # one fraction: no data-scarce table


def test_cost_columns(main3: tables.Table) -> None:
    kd = entry_row(main3, "kd").cost
    assert kd is not None
    assert kd.params == 1_000_000 and kd.student_train_seconds == 10.0 and kd.teacher_train_seconds == 40.0
    assert kd.speedup == pytest.approx(4.0)  # 2.0 s teacher / 0.5 s student inference
    student = entry_row(main3, "student").cost
    assert student.teacher_train_seconds is None and student.speedup is None  # no teacher: not measured


# ----------------------------------------------------------------------------------- references
def test_example_reference_file_parses_and_gives_deltas() -> None:
    refs = references.load(EXAMPLE)
    assert len(refs.sources) == 1 and "not a published number" in refs.sources[0].paper
    assert all(n.task == "amazon" for n in refs.numbers)
    ts = build_tables(small(seeds=1, methods=("student", "kd"), fractions=(0.5, 1.0)), references=refs,
                      method_order=["student", "kd"], n_boot=NB)
    main = ts[1]
    assert main.sources == [refs.sources[0]]
    ref_rows = [r for r in main.rows if r.source is not None]
    assert [r.method for r in ref_rows] == ["student", "kd", "metakd"]
    kd_ref = ref_rows[1].entries
    assert kd_ref[0].ref_value == 60.0 and kd_ref[0].ref_delta == pytest.approx(80.0 - 60.0)
    assert kd_ref[1].ref_value is None  # kitchen not given for kd
    assert kd_ref[2].ref_delta == pytest.approx(75.5 - 60.0)
    # metakd was not run: its measured row is empty, the reference row has no delta
    assert all(e.summary is None for e in entry_row(main, "metakd").entries)
    assert ref_rows[2].entries[2].ref_value == 70.0 and ref_rows[2].entries[2].ref_delta is None
    scarce = ts[2]
    kd_scarce = next(r for r in scarce.rows if r.method == "kd" and r.source is not None)
    assert kd_scarce.entries[0].ref_value == 55.0 and kd_scarce.entries[0].ref_delta == pytest.approx(15.5)
    assert any("descriptive only" in line for line in main.legend)
    # references are not compared statistically, so they do not enter Holm's family
    (plain,) = build_tables(small(seeds=1, methods=("student", "kd")), method_order=["student", "kd"], n_boot=NB)
    assert plain.n_comparisons == main.n_comparisons


def test_reference_csv(tmp_path: Path) -> None:
    p = tmp_path / "ref.csv"
    p.write_text("task,method,domain,fraction,value,paper,table,split,metric\n"
                 "amazon,kd,books,,61.5,Example paper,Table 0,their split,accuracy (%)\n"
                 "amazon,kd,Average,0.5,55,Example paper,Table 0,their split,accuracy (%)\n")
    refs = references.load(p)
    assert [(n.method, n.domain, n.fraction, n.value) for n in refs.numbers] == [
        ("kd", "books", 1.0, 61.5), ("kd", "Average", 0.5, 55.0)]
    assert refs.sources[0].table == "Table 0"


@pytest.mark.parametrize(("text", "message"), [
    ("numbers: [{task: amazon, method: kd, domain: books, value: 50}]", "is not defined under 'sources'"),
    ("sources: {s: {paper: p, table: t, split: s}}\nnumbers: [{source: s, task: a, method: m, domain: d, value: 1}]",
     "source lacks metric"),
    ("sources: {s: {paper: p, table: t, split: s, metric: m}}\n"
     "numbers: [{source: s, task: a, method: m, domain: d, value: 150}]", "not an accuracy in points"),
    ("sources: {s: {paper: p, table: t, split: s, metric: m}}\n"
     "numbers: [{source: s, task: a, method: m, domain: d, value: x}]", "must be numbers"),
    ("sources: {s: {paper: p, table: t, split: s, metric: m}}\n"
     "numbers: [{source: s, task: a, method: m, domain: d, value: 1, frac: 1}]", "unknown key(s) frac"),
    ("sources: {s: {paper: p, table: t, split: s, metric: m}}\n"
     "numbers: [{source: s, task: a, method: m, domain: d, value: 1}, {source: s, task: a, method: m, "
     "domain: d, value: 2}]", "given twice"),
    ("numbers: [", "not valid YAML"),
    ("- 1", "expected a mapping"),
])
def test_reference_errors_are_one_line(tmp_path: Path, text: str, message: str) -> None:
    p = tmp_path / "ref.yaml"
    p.write_text(text)
    with pytest.raises(KDBenchError) as exc:
        references.load(p)
    assert message in str(exc.value) and "\n" not in str(exc.value)


def test_reference_file_kinds(tmp_path: Path) -> None:
    with pytest.raises(KDBenchError, match="not found"):
        references.load(tmp_path / "missing.yaml")
    (tmp_path / "r.json").write_text("{}")
    with pytest.raises(KDBenchError, match="use a .yaml, .yml or .csv file"):
        references.load(tmp_path / "r.json")
    (tmp_path / "r.csv").write_text("task,method,value\n")
    with pytest.raises(KDBenchError, match="lacks column"):
        references.load(tmp_path / "r.csv")


# ------------------------------------------------------------------------- results directories
def write_run(root: Path, cells: list[dict], methods: list[str]) -> Path:
    for c in cells:
        atomic_write_json(root / "cells" / f"{c['task']}__{c['domain']}__{c['method']}__f{c['fraction']:g}__s{c['seed']}.json", c)
    atomic_write_json(root / "run.json", {"config": {"methods": methods}})
    return root


def test_build_reads_a_results_directory_in_run_order(tmp_path: Path) -> None:
    root = write_run(tmp_path / "r", small(seeds=1), ["teacher", "mix", "student", "kd"])
    (t,) = tables.build(root, n_boot=NB)
    assert [r.method for r in t.rows] == ["teacher", "mix", "student", "kd"]  # run.json's order
    assert t.baseline == "student"
    curves = tables.load_curves(root)
    assert [c.task for c in curves] == ["amazon"] and list(curves[0].panels) == ["books", "kitchen", AVERAGE]


def test_power_rows_use_the_runs_seed_and_example_variance() -> None:
    import numpy as np

    from kdbench.stats import bootstrap_se, mde, seeds_needed, variance_components

    rows = tables.power_rows(small(seeds=3), [1.0], method_order=ORDER)
    assert [(r.method, r.family_size, r.n_seeds, r.n_examples) for r in rows] == [("kd", 2, 3, 100), ("mix", 2, 3, 100)]
    kd = rows[0]
    # by hand: per-seed, per-example differences of kd vs student pooled over both domains
    cells = small(seeds=3)

    def outcomes(method: str, seed: int) -> list[bool]:
        out = []
        for d in ("books", "kitchen"):
            c = next(x for x in cells if (x["method"], x["domain"], x["seed"]) == (method, d, seed))
            out += [p == g for p, g in zip(c["predictions"]["pred"], c["predictions"]["gold"], strict=True)]
        return out

    diff = np.array([np.array(outcomes("kd", s), int) - np.array(outcomes("student", s), int) for s in range(3)])
    var = variance_components(diff)
    assert kd.variance == var
    assert kd.seeds == seeds_needed(var, 1.0, m=2)
    assert kd.mde_now == pytest.approx(mde(bootstrap_se(diff), 2))
    # the run's MDE is the table's: the same two-level bootstrap, the same family
    (t,) = build_tables(cells, method_order=ORDER, n_boot=NB)
    entry = next(r for r in t.rows if r.method == "kd").entries[-1]
    assert entry.family == "primary" and kd.mde_now == pytest.approx(mde(entry.comparison.se, 2))


def test_ablation_layout_tests_every_row_against_full_metakd() -> None:
    from kdbench.grid import ABLATION_ROWS

    names = [m for m, _ in ABLATION_ROWS]
    accs = {names[0]: 90, names[1]: 85, names[2]: 89, names[3]: 70, names[4]: 88}
    cells = [cell(m, d, s, accs[m]) for m in names[:4] for d in ("books", "kitchen") for s in range(3)]
    cells += [cell("kd", "books", 0, 99)]  # not an ablation row: left out of this layout
    (t,) = build_tables(cells, layout="ablation", n_boot=500)
    assert [r.method for r in t.rows] == names  # all five rows in the paper's order, γ2 = 0 not run: —
    assert t.baseline == "metakd" and t.columns == ["books", "kitchen", AVERAGE] and "ablation" in t.title
    assert all(e.summary is None for e in entry_row(t, names[4]).entries)
    assert entry_row(t, names[0]).entries[0].comparison is None
    for m in names[1:4]:  # every other run row is tested against full Meta-KD in every column
        assert all(e.comparison is not None and e.comparison.baseline == "metakd" for e in entry_row(t, m).entries)
    assert entry(t, names[3], AVERAGE).comparison.p_adjusted < 0.05  # 70 vs 90: clearly worse
    assert any("w/o expertise weights" in line for line in t.legend)


def test_paper_layout_and_power_leave_ablation_variants_to_the_ablation_layout() -> None:
    """Ablation rows run beside the main methods must not join (and weaken) the main primary family."""
    from kdbench.grid import ABLATION_ROWS

    variants = [m for m, _ in ABLATION_ROWS[1:]]
    accs = {"student": 80, "kd": 84, "metakd": 86, **dict.fromkeys(variants, 83)}
    cells = [cell(m, d, s, a) for m, a in accs.items() for d in ("books", "kitchen") for s in range(3)]
    (t,) = build_tables(cells, layout="paper", n_boot=NB)
    assert not {r.method for r in t.rows} & set(variants)
    (fam,) = [f for f in t.families if f.name == "primary"]
    assert fam.size == 2  # kd and metakd vs student, not 2 + 4 ablation rows
    assert any("--layout ablation" in line for line in t.legend)

    def family(layout: str) -> tuple[set[str], set[int], set[str]]:
        rows = tables.power_rows(cells, [1.0], layout=layout)
        return {r.method for r in rows}, {r.family_size for r in rows}, {r.baseline for r in rows}

    assert family("default") == ({"kd", "metakd", *variants}, {6}, {"student"})
    assert family("paper") == ({"kd", "metakd"}, {2}, {"student"})
    assert family("ablation") == (set(variants), {4}, {"metakd"})
    with pytest.raises(KDBenchError, match="leave out --baseline"):
        tables.power_rows(cells, [1.0], baseline="student", layout="ablation")
    with pytest.raises(KDBenchError, match="leave out --baseline"):  # the table refuses it too, not ignores it
        build_tables(cells, layout="ablation", baseline="student", n_boot=NB)
    assert build_tables(cells, layout="ablation", baseline="metakd", n_boot=NB)[0].baseline == "metakd"


def test_teacher_settings_are_stated_and_never_mixed() -> None:
    cells = [cell(m, d, s, 80) for m in ("kd", "mix") for d in ("books", "kitchen") for s in range(2)]
    for c in cells:
        c["teacher_seeds"], c["teacher_seed"] = 1, 0
        c["teacher_domains"] = "all" if c["method"] == "mix" else None
    held = [{**c, "teacher_domains": "others"} for c in cells if c["method"] == "mix"]
    out = build_tables(cells + held, n_boot=200)
    assert len(out) == 2 and "all domains" in out[0].title and "target held out" in out[1].title
    assert all({r.method for r in t.rows} == {"kd", "mix"} for t in out)  # kd (setting-free) in both
    assert any("s mod K" in line for line in out[0].legend)
    assert any("without the target" in line for line in out[1].legend)
    (curves,) = tables.curves(cells + held)  # figures show the default setting only, never both
    assert set(curves.methods) == {"kd", "mix"}


def test_a_family_of_identical_outputs_has_no_mde_not_zero():
    """No discordant example means no variance estimate: the MDE is not estimable, never 0."""
    from kdbench.tables import build_tables

    def cell(method: str, seed: int = 0) -> dict:
        pred = [0, 1, 1, 0, 1, 0, 0, 1]
        return {"status": "ok", "task": "t", "domain": "d", "method": method, "fraction": 1.0, "seed": seed,
                "metrics": {"test_accuracy": 100.0}, "split_hash": "h",
                "predictions": {"ids": [str(i) for i in range(8)], "pred": pred, "gold": pred}}

    (table,) = build_tables([cell("student"), cell("kd")])
    assert table.families and all(math.isnan(f.mde) and f.no_variance for f in table.families)
    assert "MDE not estimable" in " ".join(table.legend) and "MDE 0.0" not in " ".join(table.legend)
