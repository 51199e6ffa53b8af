"""kdbench.export (Markdown, LaTeX, CSV) and the rich rendering, on a small fixed result set."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from _resultsets import cell, small

from kdbench import export, report
from kdbench.api import KDBenchError
from kdbench.cli import main
from kdbench.results import atomic_write_json
from kdbench.tables import build_tables

ORDER = ["student", "kd", "teacher", "mix"]
EXAMPLE = Path(__file__).resolve().parents[1] / "results" / "reference" / "example.yaml"

# books: kd +10 (** and † vs student), teacher best of the teacher block, mix best of the students
# (its per-seed differences vs student are identical: the seed-level t is degenerate, no †);
# kitchen: kd +1 (no marker); Average pools both domains.
MARKDOWN_TABLE = """\
| method   |                books |               kitchen |               Average |   Params |   Train (s) |   Teacher (s) |   Speed-up |
|:---------|---------------------:|----------------------:|----------------------:|---------:|------------:|--------------:|-----------:|
| student  |         70.00 ± 0.00 |          70.00 ± 0.00 |          70.00 ± 0.00 |    1.00M |        10.0 |             — |          — |
| kd       |    80.00 ± 1.00\\*\\*† |          71.00 ± 1.00 |     75.50 ± 1.00\\*\\*† |    1.00M |        10.0 |          40.0 |       4.0× |
| teacher  | **90.00 ± 0.00**\\*\\* | **85.00 ± 1.00**\\*\\*† | **87.50 ± 0.50**\\*\\*† |    1.00M |        10.0 |           0.0 |          — |
| mix      | **89.00 ± 0.00**\\*\\* |  **84.00 ± 0.00**\\*\\* |  **86.50 ± 0.00**\\*\\* |    1.00M |        10.0 |          40.0 |       4.0× |
"""

LATEX_TABULAR = r"""\begin{tabular}{lrrrrrrr}
\toprule
Method & books & kitchen & Average & Params & Train (s) & Teacher (s) & Speed-up \\
\midrule
student & 70.00 $\pm$ 0.00 & 70.00 $\pm$ 0.00 & 70.00 $\pm$ 0.00 & 1.00M & 10.0 & -- & -- \\
kd & 80.00 $\pm$ 1.00$^{**\dagger}$ & 71.00 $\pm$ 1.00 & 75.50 $\pm$ 1.00$^{**\dagger}$ & 1.00M & 10.0 & 40.0 & 4.0$\times$ \\
teacher & \textbf{90.00 $\pm$ 0.00}$^{**}$ & \textbf{85.00 $\pm$ 1.00}$^{**\dagger}$ & \textbf{87.50 $\pm$ 0.50}$^{**\dagger}$ & 1.00M & 10.0 & 0.0 & -- \\
mix & \textbf{89.00 $\pm$ 0.00}$^{**}$ & \textbf{84.00 $\pm$ 0.00}$^{**}$ & \textbf{86.50 $\pm$ 0.00}$^{**}$ & 1.00M & 10.0 & 40.0 & 4.0$\times$ \\
\bottomrule
\end{tabular}
"""


@pytest.fixture(scope="module")
def fixed():
    return build_tables(small(), method_order=ORDER, n_boot=2000)


def test_markdown_matches_expected_text(fixed) -> None:
    md = export.to_markdown(fixed)
    assert md.startswith("### amazon · fraction 1 · test accuracy (%)\n\n" + MARKDOWN_TABLE)
    legend = md[len("### amazon · fraction 1 · test accuracy (%)\n\n" + MARKDOWN_TABLE):]
    assert ("- Tests vs student (two-sided; the sign is in the Δ table): two-level bootstrap, seeds then test "
            "examples (up to 3 seeds paired), which counts training variance") in legend
    assert "† p<0.05: paired t-test over seeds (secondary" in legend
    assert ("- \\* p<0.05, \\*\\* p<0.01 after Holm–Bonferroni within each family of comparisons: primary: student "
            "methods vs student on the Average (m = 2, MDE ") in legend
    assert "- Bold: best mean of the column within its block (teacher rows, student rows). Italic: tied = " in legend
    # the effect-size table: deltas with their unadjusted CIs, markers kept
    assert "#### Δ vs student (accuracy points, unadjusted 95% CI) · amazon · fraction 1 · test accuracy (%)" in md
    delta_lines = md.split("#### Δ vs student")[1].splitlines()
    kd = next(line for line in delta_lines if line.startswith("| kd"))
    assert "+10.00 [" in kd and "]\\*\\*†" in kd and "+1.00 [" in kd
    assert md.count("Holm–Bonferroni") == 2  # a legend under each of the two tables


def test_latex_matches_expected_text(fixed) -> None:
    tex = export.to_latex(fixed)
    assert LATEX_TABULAR in tex
    assert tex.startswith("% kdbench tables; needs \\usepackage{booktabs}\n")
    assert r"\caption{amazon $\cdot$ fraction 1 $\cdot$ test accuracy (\%)}" in tex
    assert tex.count(r"\begin{table}") == tex.count(r"\end{table}") == 2
    assert r"Holm--Bonferroni within each family" in tex
    assert r"\par\smallskip\footnotesize" in tex
    kd_delta = next(line for line in tex.splitlines() if line.startswith("kd & +10.00"))
    assert kd_delta.count(r"$^{**\dagger}$") == 2


def test_latex_and_markdown_escape_names() -> None:
    cells = [cell("student", "books", 0, 70), cell("my_kd", "books", 0, 80)]
    (t,) = build_tables(cells, method_order=["student", "my_kd"], n_boot=500)
    assert r"my\_kd & \textbf{80.00}" in export.to_latex([t])
    assert "| my\\_kd" in export.to_markdown([t])
    assert export.latex_escape("50% & $x_1$ {a} #") == r"50\% \& \$x\_1\$ \{a\} \#"


def test_paper_layout_renders_missing_rows_and_blocks() -> None:
    (t,) = build_tables(small(seeds=1), layout="paper", task_domains={"amazon": ("books", "dvd", "kitchen")},
                        method_order=ORDER, n_boot=500)
    md = export.to_markdown([t])
    assert "| **Teachers** |" in md and "| **Students** |" in md
    pkd = next(line for line in md.splitlines() if line.startswith("| pkd"))
    assert pkd.count("—") == 8  # 4 accuracy columns and 4 cost columns, all missing
    dvd_col = [line.split("|")[3].strip() for line in md.splitlines() if line.startswith("| kd ")]
    assert dvd_col == ["—", "—"]  # the table and its Δ table
    tex = export.to_latex([t])
    assert r"\multicolumn{9}{l}{\textit{Teachers}} \\" in tex and r"\multicolumn{9}{l}{\textit{Students}} \\" in tex
    assert "metakd" + " & --" * 8 + r" \\" in tex


def test_references_rendered_with_deltas() -> None:
    from kdbench import references

    refs = references.load(EXAMPLE)
    ts = build_tables(small(seeds=1, methods=("student", "kd")), references=refs, method_order=["student", "kd"],
                      n_boot=500)
    md = export.to_markdown(ts)
    assert "| ↳ reported [1] | 60.00 (+20.00) |" in md
    assert "- [1] example — not a published number" in md
    tex = export.to_latex(ts)
    assert r"\quad reported [1] & 60.00 (+20.00) & -- & 60.00 (+15.50)" in tex


def test_csv_long_format(fixed) -> None:
    rows = list(csv.DictReader(io.StringIO(export.to_csv(fixed))))
    assert len(rows) == 4 * 3  # 4 methods x (2 domains + Average)
    kd = next(r for r in rows if r["method"] == "kd" and r["column"] == "books")
    assert kd["mean"] == "80" and kd["sd"] == "1" and kd["n"] == "3" and kd["ci_method"] == "t"
    assert kd["marker"] == "**†" and kd["baseline"] == "student" and float(kd["delta"]) == 10
    assert float(kd["p_bootstrap_holm"]) < 0.01 and kd["p_seeds_t"]
    assert float(kd["ci_low"]) < 80 < float(kd["ci_high"])
    assert kd["speedup"] == "4" and kd["params"] == "1e+06"
    assert kd["family"] == "secondary" and kd["family_size"] == "4" and float(kd["mde_80"]) > 0
    assert kd["p_bootstrap_mc_se"] == "0"  # exact
    teacher = next(r for r in rows if r["method"] == "teacher" and r["column"] == "books")
    assert teacher["best"] == "true" and teacher["family"] == "teacher"
    mix = next(r for r in rows if r["method"] == "mix" and r["column"] == "books")
    assert mix["best"] == "true" and mix["p_seeds_t"] == "degenerate"
    student = next(r for r in rows if r["method"] == "student" and r["column"] == "books")
    assert student["best"] == "false" and student["tied_with_best"] == "false"


def test_rich_rendering_keeps_markers(fixed) -> None:
    text = report.tables_text(fixed)
    assert "80.00 ± 1.00**†" in text and "Holm–Bonferroni" in text and "Δ vs student" in text


def test_resolve_format() -> None:
    assert export.resolve_format(None, None) == "rich"
    assert export.resolve_format(None, Path("t.tex")) == "latex"
    assert export.resolve_format(None, Path("t.md")) == "markdown"
    assert export.resolve_format("csv", Path("t.txt")) == "csv"
    with pytest.raises(KDBenchError, match="pass --format"):
        export.resolve_format(None, Path("t.docx"))


# --------------------------------------------------------------------------------------- CLI
@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("run")
    for c in small(seeds=1, methods=("student", "kd"), fractions=(0.5, 1.0)):
        atomic_write_json(root / "cells" / f"{c['task']}__{c['domain']}__{c['method']}__f{c['fraction']:g}__s{c['seed']}.json", c)
    atomic_write_json(root / "run.json", {"config": {"methods": ["student", "kd"]}})
    return root


def test_cli_table_formats_and_output_file(run_dir, tmp_path, capsys) -> None:
    assert main(["table", str(run_dir), "--format", "markdown"]) == 0
    out = capsys.readouterr().out
    assert "### amazon · data-scarce study" in out and "**80.00**\\*" in out
    out_file = tmp_path / "t.tex"
    assert main(["table", str(run_dir), "-o", str(out_file), "--baseline", "kd"]) == 0
    tex = out_file.read_text()
    assert tex.startswith("% kdbench tables") and "Tests vs kd" in tex
    assert not list(tmp_path.glob(".t.tex.*"))  # atomic write left no temporary file
    assert main(["table", str(run_dir), "--format", "csv", "--reference", str(EXAMPLE)]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    ref = next(r for r in rows if r["row_kind"] == "reference" and r["method"] == "kd" and r["column"] == "books"
               and r["fraction"] == "1")
    assert ref["reference"] == "60" and ref["reference_delta"] == "20" and ref["source_metric"] == "test accuracy (%)"
    scarce = next(r for r in rows if r["kind"] == "scarce" and r["method"] == "kd" and r["column"] == "50%"
                  and r["row_kind"] == "measured")
    assert scarce["fraction"] == "0.5" and scarce["mean"] == "70.5"
    assert main(["table", str(run_dir)]) == 0  # rich
    assert "Δ vs student" in capsys.readouterr().out


@pytest.mark.parametrize(("args", "message"), [
    (["--baseline", "kdd"], "did you mean 'kd'"),
    (["--reference", "/nonexistent/ref.yaml"], "reference file not found"),
    (["-o", "/tmp/kdbench-table.docx"], "pass --format"),
    (["--layout", "wide"], "invalid choice"),
])
def test_cli_table_bad_input_is_one_line(run_dir, capsys, args, message) -> None:
    if args[0] == "--layout":
        with pytest.raises(SystemExit) as exc:
            main(["table", str(run_dir), *args])
        assert exc.value.code == 2
    else:
        assert main(["table", str(run_dir), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_cli_empty_results_dir(tmp_path, capsys) -> None:
    assert main(["table", str(tmp_path)]) == 0
    assert "no finished cells yet" in capsys.readouterr().out
    assert main(["table", str(tmp_path), "-o", str(tmp_path / "t.md")]) == 2
    assert "nothing to write" in capsys.readouterr().err and not (tmp_path / "t.md").exists()


def test_cli_mixed_splits_refused(tmp_path, capsys) -> None:
    cells = small(seeds=2, methods=("student", "kd"))
    cells[-1]["split_hash"] = "other"
    for c in cells:
        atomic_write_json(tmp_path / "cells" / f"{c['domain']}_{c['method']}_{c['seed']}.json", c)
    assert main(["table", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "different splits" in err and len(err.strip().splitlines()) == 1


# ----------------------------------------------------------------- untrusted results directories
def test_cli_table_warns_and_notes_a_kept_out_file(run_dir, tmp_path, capsys) -> None:
    import shutil

    root = tmp_path / "run"
    shutil.copytree(run_dir, root)
    (root / "cells" / "broken.json").write_text('{"schema": 1, "task": "amaz')
    assert main(["table", str(root), "--format", "markdown"]) == 0
    captured = capsys.readouterr()
    assert captured.err.startswith("kdbench: warning: cell file kept out: broken.json: is not valid JSON (")
    assert len(captured.err.strip().splitlines()) == 1
    assert "Kept out (1 cell file(s) unreadable or invalid): broken.json: is not valid JSON" in captured.out
    # a new user's edits: kd's books accuracy set to 99 (not what its predictions say), a NaN, a text fraction
    path = next((root / "cells").glob("amazon__books__kd__f1__s0.json"))
    kd = json.loads(path.read_text())
    path.write_text(json.dumps({**kd, "metrics": {**kd["metrics"], "test_accuracy": 99.0}}))
    nan = root / "cells" / "nan.json"
    nan.write_text(json.dumps({**kd, "seed": 5, "metrics": {"test_accuracy": float("nan")}}))
    (root / "cells" / "frac.json").write_text(json.dumps({**kd, "seed": 6, "fraction": "half"}))
    assert main(["table", str(root), "--format", "markdown"]) == 0
    captured = capsys.readouterr()
    err = captured.err.splitlines()
    assert len(err) == 4 and all(line.startswith("kdbench: warning: cell file kept out: ") for line in err)
    assert ("amazon__books__kd__f1__s0.json: stored test_accuracy 99.00 disagrees with its predictions (80.00)"
            in captured.err)
    assert "nan.json: test_accuracy nan is not a number in [0, 100]" in captured.err
    assert "frac.json: fraction 'half' is not a number in (0, 1]" in captured.err
    assert "99.00" not in captured.out.split("- Cells")[0]  # the edited value is shown nowhere in the table
    assert "Kept out (4 cell file(s) unreadable or invalid)" in captured.out


def test_names_are_clean_in_every_format_and_csv_cannot_hold_formulas() -> None:
    cells = [cell("student", "books", 0, 70), cell("=HYPERLINK(\x1b[2J\"x\")", "books", 0, 80),
             cell("@SUM(A1)\u202e", "books", 0, 75)]
    (t,) = build_tables(cells, method_order=["student"])
    outputs = {"markdown": export.to_markdown([t]), "latex": export.to_latex([t]), "csv": export.to_csv([t]),
               "rich": report.tables_text([t])}
    for fmt, text in outputs.items():
        assert "\x1b" not in text and "\u202e" not in text, fmt
    rows = list(csv.DictReader(io.StringIO(outputs["csv"])))
    methods = {r["method"] for r in rows}
    assert methods == {"student", "'=HYPERLINK([2J\"x\")", "'@SUM(A1)"}
    assert all(not r["method"].startswith(("=", "+", "-", "@")) for r in rows)
    assert export.csv_safe("+1 point") == "'+1 point" and export.csv_safe("-3.5") == "-3.5"


def test_cli_table_resample_seed_and_equivalence_margin(run_dir, capsys) -> None:
    outs = []
    for n in ("0", "5"):
        assert main(["table", str(run_dir), "--format", "csv", "--resample-seed", n]) == 0
        outs.append(capsys.readouterr().out)
    assert outs[0] == outs[1]
    assert main(["table", str(run_dir), "--format", "markdown", "--equivalence-margin", "2"]) == 0
    assert "within ±2 points (TOST" in capsys.readouterr().out
    assert main(["table", str(run_dir), "--equivalence-margin", "nan"]) == 2
    assert "equivalence margin must be a positive number" in capsys.readouterr().err
    assert main(["table", str(run_dir), "--resample-seed", "-1"]) == 2
    assert "resample seed must be a non-negative integer" in capsys.readouterr().err


def test_amazon_reference_run_does_not_depend_on_the_resample_seed() -> None:
    """The committed run (1 seed, 48 cells): exact tests, so any seed gives the same bytes (the full
    check, seeds 0-19 through the CLI, is in the run's README)."""
    from kdbench import tables

    run = Path(__file__).resolve().parents[1] / "results" / "amazon-cpu-all"
    texts = {export.render(tables.build(run, resample_seed=n), fmt)
             for n in (0, 19) for fmt in ("csv",)}
    assert len(texts) == 1
    (committed,) = [(run / "table.csv").read_text()]
    assert texts.pop() == committed


def test_markers_with_many_seeds_do_not_depend_on_the_resample_seed() -> None:
    """7 seeds: seed multisets are sampled (Monte Carlo), grown until no p is near a Holm level."""
    marks = set()
    for n in (0, 1):
        (t,) = build_tables(_seven_seeds(), resample_seed=n, n_boot=200)
        marks.add(tuple((r.method, e.marker, e.best, e.tied) for r in t.rows for e in r.entries))
        assert t.mc_p_se > 0 and "Monte-Carlo standard error" in " ".join(t.legend)
    assert len(marks) == 1


def _seven_seeds() -> list:
    """7 seeds, 40 test examples: kd right on 32 or 29 of them by seed, student on 28."""
    out = []
    for s in range(7):
        out += [cell("student", "books", s, 28, n=40), cell("kd", "books", s, 29 if s % 2 else 32, n=40)]
    return out


def test_power_text_says_when_only_more_test_examples_help() -> None:
    from kdbench import tables

    # every seed right and wrong on the same examples (offset 0): the whole Δ variance is the test
    # set's own, so no number of seeds detects 1 point; a 100-point effect needs one seed
    cells = [cell(m, "books", s, k, n=40, offset=0) for s in range(3) for m, k in (("student", 28), ("kd", 32))]
    rows = tables.power_rows(cells, [1.0, 100.0])
    assert [(r.effect, r.seeds) for r in rows] == [(1.0, None), (100.0, 1)]
    assert rows[0].variance.seed == 0.0 and rows[0].variance.interaction == 0.0 and rows[0].examples is not None
    text = export.power_text(rows)
    assert "— (test-set variance dominates)" in text
    assert "to detect 1 point(s) on the Average: no number of seeds suffices with 40 test examples per domain" in text
    assert "to detect 100 point(s) on the Average: median 1 seeds" in text


def test_cli_power(run_dir, capsys) -> None:
    assert main(["power", str(run_dir), "--effect", "1,2"]) == 0
    out = capsys.readouterr().out
    assert "student methods vs student on the Average: primary family of 1 comparison(s)" in out
    assert "to detect 1 point(s) on the Average" in out and "lower bound" in out
    assert main(["power", str(run_dir), "--effect", "x"]) == 2
    assert "--effect must be numbers" in capsys.readouterr().err
    assert main(["power", str(run_dir), "--effect", "-1"]) == 2
