"""kdbench.plot: the figure's axes, lines, labels and colours, and a PNG that is not blank."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from _resultsets import small
from matplotlib.colors import to_rgba

from kdbench import plot
from kdbench.api import KDBenchError
from kdbench.cli import main
from kdbench.results import atomic_write_json
from kdbench.tables import curves

ORDER = ["student", "kd", "teacher", "mix"]


@pytest.fixture(scope="module")
def fig():
    return plot.make_figure(curves(small(fractions=(0.5, 1.0)), ORDER))


def test_panels_per_domain_plus_average(fig) -> None:
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in axes] == ["amazon · books", "amazon · kitchen", "amazon · Average"]
    for ax in axes:
        assert ax.get_xlabel() == plot.XLABEL and ax.get_ylabel() == plot.YLABEL
        assert [t.get_text() for t in ax.get_xticklabels()] == ["50%", "100%"]


def test_one_line_per_method_with_mean_and_band(fig) -> None:
    books = fig.axes[0]
    lines = {line.get_label(): line for line in books.lines}
    assert list(lines) == ORDER
    x, y = lines["kd"].get_data()
    assert list(x) == [0.5, 1.0] and list(y) == pytest.approx([75.0, 80.0])
    assert len(books.collections) == 4  # one CI band per method (3 seeds: t intervals)
    band = books.collections[1].get_paths()[0].vertices
    assert band[:, 1].min() < 75.0 and band[:, 1].max() > 80.0


def test_colours_fixed_across_panels_and_legend(fig) -> None:
    per_panel = [{line.get_label(): to_rgba(line.get_color()) for line in ax.lines} for ax in fig.axes]
    assert all(p == per_panel[0] for p in per_panel)
    assert len(set(per_panel[0].values())) == len(ORDER)
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == ORDER
    assert [to_rgba(h.get_color()) for h in legend.legend_handles] == [per_panel[0][m] for m in ORDER]


def test_png_is_not_blank(fig, tmp_path: Path) -> None:
    from matplotlib.image import imread

    out = tmp_path / "f.png"
    plot.save(fig, out)
    img = imread(out)[..., :3]
    assert img.shape[0] > 300 and img.shape[1] > 600
    non_white = np.mean(np.any(img < 0.95, axis=-1))
    assert non_white > 0.02  # lines, bands, text
    assert len(np.unique(img.reshape(-1, 3), axis=0)) > 20  # more than a flat background
    with pytest.raises(KDBenchError, match="use a .png, .pdf or .svg"):
        plot.save(fig, tmp_path / "f.bmp")


def test_single_seed_single_fraction_and_empty() -> None:
    f = plot.make_figure(curves(small(seeds=1), ORDER))
    assert [t.get_text() for t in f.axes[0].get_xticklabels()] == ["100%"]
    assert len(f.axes[0].collections) == 4  # bootstrap bands with one seed
    with pytest.raises(KDBenchError, match="no finished cells"):
        plot.make_figure([])


def test_cli_plot(tmp_path: Path, capsys) -> None:
    root = tmp_path / "run"
    for c in small(seeds=1, methods=("student", "kd"), fractions=(0.5, 1.0)):
        atomic_write_json(root / "cells" / f"{c['domain']}_{c['method']}_{c['fraction']}.json", c)
    out = tmp_path / "fig.png"
    assert main(["plot", str(root), "-o", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["plot", str(tmp_path / "nope"), "-o", str(out)]) == 2
    assert "not a results directory" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["plot", str(tmp_path / "empty"), "-o", str(out)]) == 2
    assert "no finished cells" in capsys.readouterr().err


def test_help_imports_neither_torch_nor_matplotlib() -> None:
    code = ("import sys, kdbench.cli as c\ntry:\n c.main(['--help'])\nexcept SystemExit:\n pass\n"
            "assert 'torch' not in sys.modules and 'matplotlib' not in sys.modules, sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def test_cli_plot_skips_a_fifo_and_bad_json_with_a_warning(tmp_path: Path, capsys) -> None:
    import os

    root = tmp_path / "run"
    for c in small(seeds=1, methods=("student", "kd")):
        atomic_write_json(root / "cells" / f"{c['domain']}_{c['method']}.json", c)
    os.mkfifo(root / "cells" / "pipe.json")
    (root / "cells" / "bad.json").write_text('{"schema": 1, "fraction": [[[[')
    assert main(["plot", str(root), "-o", str(tmp_path / "fig.png")]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err[:2] == ["kdbench: warning: cell file kept out: bad.json: is not valid JSON (Expecting value: line 1 "
                       "column 31 (char 30))", "kdbench: warning: cell file kept out: pipe.json: is not a regular file"]


# ------------------------------------------------------------------------------ --kind delta
@pytest.fixture(scope="module")
def delta_tables():
    from kdbench.tables import build_tables

    return [t for t in build_tables(small(), "default", None, method_order=ORDER) if t.kind == "main"]


def test_delta_figure_draws_the_tables_comparisons(delta_tables) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = plot.delta_figure(delta_tables)
    FigureCanvasAgg(fig).draw()  # tick labels exist once drawn
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in axes] == ["amazon · f=1 · books", "amazon · f=1 · kitchen",
                                               "amazon · f=1 · Average"]
    table = delta_tables[0]
    rows = [r for r in table.rows if r.method != "student"]
    assert [t.get_text() for t in axes[0].get_yticklabels()] == [r.method for r in rows]
    for j, ax in enumerate(axes):
        assert ax.get_xlabel() == "Δ vs student (points)"
        points = [line.get_xdata()[0] for line in ax.lines if line.get_marker() == "o"]
        assert points == pytest.approx([r.entries[j].comparison.delta for r in rows])
        # books: kd is 10 points better on the same examples, so the table marks it; the figure too
        marks = {t.get_text() for t in ax.texts}
        assert marks == {r.entries[j].marker for r in rows if r.entries[j].marker}
    assert "**" in {t.get_text() for t in axes[0].texts}


def test_delta_figure_needs_a_comparison() -> None:
    from kdbench.tables import build_tables

    only = [t for t in build_tables(small(methods=("student",)), "default", None) if t.kind == "main"]
    with pytest.raises(KDBenchError, match="no comparisons to plot"):
        plot.delta_figure(only)


def test_cli_plot_delta(tmp_path: Path, capsys) -> None:
    root = tmp_path / "run"
    for c in small(seeds=3, methods=("student", "kd", "mix")):
        atomic_write_json(root / "cells" / f"{c['domain']}_{c['method']}_{c['seed']}.json", c)
    out = tmp_path / "delta.svg"
    assert main(["plot", str(root), "-o", str(out), "--kind", "delta", "--baseline", "kd"]) == 0
    assert "Δ vs kd (points)" in out.read_text()
    assert main(["plot", str(root), "-o", str(out), "--kind", "delta", "--baseline", "nope"]) == 2
    assert "unknown --baseline method 'nope'" in capsys.readouterr().err
