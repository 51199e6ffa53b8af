"""kdbench.export (Markdown, LaTeX, CSV) and the rich rendering, on a small fixed result set."""

from __future__ import annotations

import csv
import io
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

# books: kd +10 (** and † vs student), teacher best, mix 1 point below it (tied);
# kitchen: kd +1 (no marker); Average pools both domains.
MARKDOWN_TABLE = """\
| method   |                 books |               kitchen |               Average |   Params |   Train (s) |   Teacher (s) |   Speed-up |
|:---------|----------------------:|----------------------:|----------------------:|---------:|------------:|--------------:|-----------:|
| student  |          70.00 ± 0.00 |          70.00 ± 0.00 |          70.00 ± 0.00 |    1.00M |        10.0 |             — |          — |
| kd       |     80.00 ± 1.00\\*\\*† |          71.00 ± 1.00 |     75.50 ± 1.00\\*\\*† |    1.00M |        10.0 |          40.0 |       4.0× |
| teacher  | **90.00 ± 0.00**\\*\\*† | **85.00 ± 1.00**\\*\\*† | **87.50 ± 0.50**\\*\\*† |    1.00M |        10.0 |           0.0 |          — |
| mix      |   _89.00 ± 0.00_\\*\\*† |   _84.00 ± 0.00_\\*\\*† |   _86.50 ± 0.00_\\*\\*† |    1.00M |        10.0 |          40.0 |       4.0× |
"""

LATEX_TABULAR = r"""\begin{tabular}{lrrrrrrr}
\toprule
Method & books & kitchen & Average & Params & Train (s) & Teacher (s) & Speed-up \\
\midrule
student & 70.00 $\pm$ 0.00 & 70.00 $\pm$ 0.00 & 70.00 $\pm$ 0.00 & 1.00M & 10.0 & -- & -- \\
kd & 80.00 $\pm$ 1.00$^{**\dagger}$ & 71.00 $\pm$ 1.00 & 75.50 $\pm$ 1.00$^{**\dagger}$ & 1.00M & 10.0 & 40.0 & 4.0$\times$ \\
teacher & \textbf{90.00 $\pm$ 0.00}$^{**\dagger}$ & \textbf{85.00 $\pm$ 1.00}$^{**\dagger}$ & \textbf{87.50 $\pm$ 0.50}$^{**\dagger}$ & 1.00M & 10.0 & 0.0 & -- \\
mix & \textit{89.00 $\pm$ 0.00}$^{**\dagger}$ & \textit{84.00 $\pm$ 0.00}$^{**\dagger}$ & \textit{86.50 $\pm$ 0.00}$^{**\dagger}$ & 1.00M & 10.0 & 40.0 & 4.0$\times$ \\
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
    assert ("- vs baseline student (two-sided; the sign is in the Δ table): \\* p<0.05, \\*\\* p<0.01, paired bootstrap over test examples (2,000 "
            "resamples; examples resampled jointly across seeds), Holm–Bonferroni over the 9 comparisons of this "
            "table. † p<0.05, paired t-test over seeds") in legend
    assert "- Bold: best mean of the column. Italic: tied with the best" in legend
    # the effect-size table: deltas with their CIs, markers kept
    assert "#### Δ vs student (accuracy points, 95% CI) · amazon · fraction 1 · test accuracy (%)" in md
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
    assert r"Holm--Bonferroni over the 9 comparisons" in tex
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
    teacher = next(r for r in rows if r["method"] == "teacher" and r["column"] == "books")
    assert teacher["best"] == "true"
    mix = next(r for r in rows if r["method"] == "mix" and r["column"] == "books")
    assert mix["tied_with_best"] == "true" and mix["best"] == "false"


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
    assert tex.startswith("% kdbench tables") and "vs baseline kd" in tex
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
