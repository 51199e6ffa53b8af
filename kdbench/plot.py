"""``kdbench plot``: the figures of a results directory (matplotlib, Agg).

* ``--kind curves`` (default): accuracy against the fraction of the target's training data. One row
  of panels per task: one panel per domain plus the Average; one line per method (mean over seeds)
  with its 95% CI as a band (t over seeds; a bootstrap over test examples with one seed; the same
  :class:`~kdbench.stats.Summary` as the tables). A method keeps its colour in every panel.
* ``--kind delta``: the Δ table as a forest plot. One row of panels per table (task × fraction) of
  ``kdbench table`` with the same ``--layout`` and ``--baseline``: each method's difference from the
  baseline in accuracy points with its unadjusted 95% interval (the same
  :class:`~kdbench.stats.Comparison` as the table, so the same two-level bootstrap over seeds and
  test examples), and the table's significance marker after Holm beside the point. It is the figure
  for a grid with one fraction, where ``curves`` has a single point per method.

matplotlib is imported inside the functions, so importing this module is cheap.
"""

from __future__ import annotations

import io
import math
from typing import TYPE_CHECKING, Any

from kdbench.errors import KDBenchError
from kdbench.tables import AVERAGE

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from pathlib import Path

    from matplotlib.figure import Figure

    from kdbench.tables import Curves, Entry, Row, Table

    #: one dot of :func:`interval_panels`: x, interval low and high, marker text
    Point = tuple[float, float, float, str]

FORMATS = ("png", "pdf", "svg")
KINDS = ("curves", "delta")
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


def interval_panels(tabs: Sequence[Table], rows_of: Sequence[Sequence[Row]], colour: Mapping[str, Any],
                    point: Callable[[Entry], Point | None], xlabel: Callable[[Table], str], title: str,
                    *, zero_line: bool = False) -> Figure:
    """Dot-and-interval panels (not saved): a row of panels per table, a panel per table column.

    In each panel a row of the table is one dot with its interval, ``point(entry)`` giving
    ``(x, low, high, marker)`` (None: nothing to draw; a non-finite bound: no bar). Shared by
    :func:`delta_figure` and the report's accuracy-per-domain figure.
    """
    from matplotlib.figure import Figure

    ncols = max(len(t.columns) for t in tabs)
    height = sum(0.3 * len(rows) + 1.2 for rows in rows_of)
    fig = Figure(figsize=(2.9 * ncols + 2.2, height + 0.6), layout="constrained")
    axes = fig.subplots(len(tabs), ncols, squeeze=False, sharey="row",
                        gridspec_kw={"height_ratios": [len(rows) + 2 for rows in rows_of]})
    for i, (t, rows) in enumerate(zip(tabs, rows_of, strict=True)):
        for j in range(ncols):
            ax = axes[i][j]
            if j >= len(t.columns):
                ax.set_visible(False)
                continue
            if zero_line:
                ax.axvline(0.0, color="0.4", linewidth=0.8)
            for y, r in enumerate(rows):
                p = point(r.entries[j])
                if p is None:
                    continue
                x, lo, hi, marker = p
                err = [[x - lo], [hi - x]] if math.isfinite(lo) and math.isfinite(hi) else None
                ax.errorbar([x], [y], xerr=err, fmt="o", color=colour.get(r.method), capsize=2, markersize=4)
                if marker:
                    ax.annotate(marker, (x, y), xytext=(0, 4), textcoords="offset points",
                                ha="center", va="bottom", fontsize=8)
            ax.set_yticks(range(len(rows)), [r.method for r in rows])
            ax.set_ylim(len(rows) - 0.5, -0.7)
            at = f" · f={t.fraction:g}" if t.fraction is not None else ""
            ax.set_title(f"{t.task}{at} · {t.columns[j]}", fontsize=8,
                         fontweight="bold" if t.columns[j] == AVERAGE else "normal")
            ax.set_xlabel(xlabel(t), fontsize=8)
            ax.tick_params(labelsize=7)
            ax.grid(True, axis="x", alpha=0.3)
    fig.suptitle(title, fontsize=9)
    return fig


def _delta_point(e: Entry) -> Point | None:
    c = e.comparison
    return None if c is None else (c.delta, *c.delta_ci, e.marker)


def delta_figure(tables: Sequence[Table]) -> Figure:
    """The forest plot (not saved): rows = the tables that have a baseline, columns = their columns."""
    tabs = [t for t in tables if t.baseline and any(e.comparison for r in t.rows for e in r.entries)]
    if not tabs:
        raise KDBenchError("no comparisons to plot: the results need the baseline and at least one other method")
    rows_of = [[r for r in t.rows if r.source is None and any(e.comparison for e in r.entries)] for t in tabs]
    colour = colours(list(dict.fromkeys(r.method for rows in rows_of for r in rows)))
    return interval_panels(
        tabs, rows_of, colour, _delta_point, lambda t: f"Δ vs {t.baseline} (points)",
        "Difference from the baseline: mean over seeds, unadjusted 95% CI (bootstrap over seeds, then test "
        "examples)\n* p<0.05, ** p<0.01 after Holm within the comparison's family; † seed-level paired t "
        "after Holm", zero_line=True)


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


def plot(results_dir: Path, output: Path, warn: Callable[[str], None] | None = None, *, kind: str = "curves",
         layout: str = "default", baseline: str | None = None) -> Figure:
    """Read the results directory as untrusted input (cell files kept out go to ``warn``), draw, save.

    ``layout`` and ``baseline`` are those of ``kdbench table`` and matter only for ``kind="delta"``."""
    from kdbench import tables

    if kind == "delta":
        fig = delta_figure([t for t in tables.build(results_dir, layout, baseline, warn=warn) if t.kind == "main"])
    else:
        fig = make_figure(tables.load_curves(results_dir, warn))
    save(fig, output)
    return fig
