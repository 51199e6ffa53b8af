"""``kdbench plot``: accuracy against the fraction of the target's training data (matplotlib, Agg).

One row of panels per task: one panel per domain plus the Average; one line per method (mean over
seeds) with its 95% CI as a band (t over seeds; a bootstrap over test examples with one seed; the
same :class:`~kdbench.stats.Summary` as the tables). A method keeps its colour in every panel.
matplotlib is imported inside the functions, so importing this module is cheap.
"""

from __future__ import annotations

import io
import math
from typing import TYPE_CHECKING

from kdbench.errors import KDBenchError
from kdbench.tables import AVERAGE

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from pathlib import Path

    from matplotlib.figure import Figure

    from kdbench.tables import Curves

FORMATS = ("png", "pdf", "svg")
XLABEL = "fraction of the target's training data"
YLABEL = "test accuracy (%)"


def colours(methods: Sequence[str]) -> dict[str, tuple[float, float, float, float]]:
    """A fixed colour per method (tab10, then tab20), in the given order."""
    from matplotlib import colormaps

    cmap = colormaps["tab10" if len(methods) <= 10 else "tab20"]
    return {m: cmap(i % cmap.N) for i, m in enumerate(methods)}


def make_figure(all_curves: Sequence[Curves]) -> Figure:
    """The figure (not saved): rows = tasks, columns = domains then Average."""
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FixedLocator, NullLocator

    if not all_curves:
        raise KDBenchError("no finished cells to plot")
    methods = list(dict.fromkeys(m for c in all_curves for m in c.methods))
    colour = colours(methods)
    ncols = max(len(c.panels) for c in all_curves)
    fig = Figure(figsize=(3.6 * ncols, 3.2 * len(all_curves) + 0.9), layout="constrained")
    axes = fig.subplots(len(all_curves), ncols, squeeze=False)
    for r, cur in enumerate(all_curves):
        fractions = sorted({f for lines in cur.panels.values() for pts in lines.values() for f, _ in pts})
        for c in range(ncols):
            ax = axes[r][c]
            if c >= len(cur.panels):
                ax.set_visible(False)
                continue
            panel = list(cur.panels)[c]
            for m, pts in cur.panels[panel].items():
                xs = [f for f, _ in pts]
                ys = [s.mean for _, s in pts]
                ax.plot(xs, ys, marker="o", color=colour[m], label=m, linewidth=1.8)
                lo = [s.ci_low for _, s in pts]
                hi = [s.ci_high for _, s in pts]
                if all(math.isfinite(v) for v in [*lo, *hi]):
                    ax.fill_between(xs, lo, hi, color=colour[m], alpha=0.18, linewidth=0)
            ax.set_title(f"{cur.task} · {panel}", fontweight="bold" if panel == AVERAGE else "normal")
            ax.set_xlabel(XLABEL)
            ax.set_ylabel(YLABEL)
            ax.xaxis.set_major_locator(FixedLocator(fractions))
            ax.xaxis.set_minor_locator(NullLocator())
            ax.set_xticklabels([f"{100 * f:g}%" for f in fractions])
            if len(fractions) == 1:
                ax.set_xlim(fractions[0] - 0.1, fractions[0] + 0.1)
            ax.grid(True, alpha=0.3)
    handles = [Line2D([], [], marker="o", color=colour[m], label=m) for m in methods]
    fig.legend(handles=handles, labels=methods, loc="outside lower center", ncols=min(len(methods), 8),
               title="method · line: mean over seeds · band: 95% CI")
    fig.suptitle("Test accuracy against training data")
    return fig


def save(fig: Figure, path: Path) -> None:
    """Write the figure atomically; the format follows the suffix (png, pdf or svg)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from kdbench.results import atomic_write_bytes

    fmt = path.suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise KDBenchError(f"cannot write a figure to {path}: use a .png, .pdf or .svg file")
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=150)
    try:
        atomic_write_bytes(path, buf.getvalue())
    except OSError as exc:
        raise KDBenchError(f"cannot write {path}: {exc.strerror or exc}") from None


def plot(results_dir: Path, output: Path, warn: Callable[[str], None] | None = None) -> Figure:
    """Read the results directory as untrusted input (cell files kept out go to ``warn``), draw, save."""
    from kdbench.tables import load_curves

    fig = make_figure(load_curves(results_dir, warn))
    save(fig, output)
    return fig
