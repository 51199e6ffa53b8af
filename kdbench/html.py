"""``kdbench report``: one self-contained HTML page of a run, to read in a browser or send to a colleague.

The page holds the run's configuration and environment, every table of ``kdbench table`` (values,
significance markers, best/tied marks, cost, legends) with its Δ table, four figures and the failed
cells with their errors. It needs no network: the CSS is inline, the figures are matplotlib SVGs
inlined as ``<svg>`` elements, and there is no script. Every piece of text that comes from a cell or a
configuration is HTML-escaped.

A thin consumer: the numbers come from :mod:`kdbench.tables` (statistics) and are formatted by
:mod:`kdbench.export` (the same texts as the Markdown and terminal tables); the accuracy-vs-fraction
figure is :func:`kdbench.plot.make_figure`. matplotlib is imported inside the functions.
"""

from __future__ import annotations

import html
import io
import json
import math
import re
from collections import Counter, defaultdict
from typing import TYPE_CHECKING, Any

from kdbench import export
from kdbench import results as res
from kdbench.errors import KDBenchError
from kdbench.tables import AVERAGE

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence
    from pathlib import Path

    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from kdbench.references import References
    from kdbench.tables import Curves, Entry, Table

#: ids of the figures, in page order (the browser test checks that each is present and loaded)
FIGURES = ("fig-fraction", "fig-domains", "fig-delta", "fig-cost", "fig-losses")

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;max-width:1180px;
padding:1.5rem;color:#1b1b1b;background:#fff;line-height:1.45}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{border-bottom:2px solid #ddd;padding-bottom:.2rem;margin-top:2.2rem}
h3{margin-bottom:.4rem}nav ul{columns:2;padding-left:1.2rem}
table{border-collapse:collapse;margin:.4rem 0 .6rem;font-size:.86rem}
th,td{border:1px solid #d4d4d4;padding:.22rem .5rem;text-align:right;white-space:nowrap}
th:first-child,td:first-child{text-align:left}thead th{background:#f1f3f5}
tr.block td{background:#fafafa;font-weight:600;text-align:left}tr.ref td{color:#555;font-style:italic}
td.missing{color:#999;text-align:center}td.best{font-weight:700}td.tied{font-style:italic}
table.kv td{text-align:left;white-space:normal;max-width:60rem}table.kv td:first-child{font-weight:600}
ul.legend{font-size:.8rem;color:#444;margin-top:0}figure{margin:1rem 0}
figure svg{width:100%;height:auto;border:1px solid #eee}figcaption{font-size:.85rem;color:#444}
pre{background:#f6f8fa;padding:.5rem;overflow:auto;font-size:.78rem;max-height:22rem}
.ok{color:#1a7f37}.failed{color:#cf222e}code{background:#f6f8fa;padding:0 .2rem}
"""


def esc(value: Any) -> str:
    """Text for HTML, escaped (quotes too, so it is safe in attributes)."""
    return html.escape(str(value), quote=True)


# ------------------------------------------------------------------------------------- tables
def _value_cell(entry: Any, n_max: int) -> str:
    text = export.value_text(entry, n_max)
    if text is None:
        return '<td class="missing">—</td>'
    cls = ' class="best"' if entry.best else (' class="tied"' if entry.tied else "")
    return f"<td{cls}>{esc(text + entry.marker)}</td>"


def table_html(t: Table) -> str:
    """One table of :func:`kdbench.tables.build` with its notes, legend and Δ table."""
    anchor = f"table-{_slug(t.title)}"
    parts = [f'<h3 id="{esc(anchor)}">{esc(t.title)}</h3>']
    if not t.rows:
        parts.append("<ul>" + "".join(f"<li>{esc(n)}</li>" for n in t.notes) + "</ul>")
        return "\n".join(parts)
    n_max = export.max_n(t)
    header = ["method", *t.columns, *(export.COST_COLUMNS if t.has_cost else ())]
    body = []
    for block, rows in export.blocks(t):
        if block:
            body.append(f'<tr class="block"><td colspan="{len(header)}">'
                        f"{esc(export.BLOCK_TITLES.get(block, block))}</td></tr>")
        for r in rows:
            label = export.row_label(t, r)
            cells = [_value_cell(e, n_max) for e in r.entries]
            if t.has_cost:
                cells += ([f"<td>{esc(c)}</td>" if c else '<td class="missing">—</td>' for c in export.cost_texts(r.cost)]
                          if r.source is None else ["<td></td>"] * len(export.COST_COLUMNS))
            cls = ' class="ref"' if r.source is not None else ""
            body.append(f"<tr{cls}><td>{'↳ ' if r.source is not None else ''}{esc(label)}</td>{''.join(cells)}</tr>")
    parts.append(f'<table class="results" data-kind="main"><thead><tr>{"".join(f"<th>{esc(h)}</th>" for h in header)}'
                 f"</tr></thead><tbody>{''.join(body)}</tbody></table>")
    parts.append(_legend([*t.notes, *t.legend]))
    rows = export.delta_rows(t)
    if rows:
        parts.append(f"<h4>{esc(export.delta_title(t))}</h4>")
        dbody = "".join(
            f"<tr><td>{esc(r.method)}</td>"
            + "".join(f"<td>{esc((export.delta_text(e) or '—') + e.marker)}</td>" for e in r.entries) + "</tr>"
            for r in rows)
        parts.append(f'<table class="results" data-kind="delta"><thead><tr><th>method</th>'
                     f"{''.join(f'<th>{esc(c)}</th>' for c in t.columns)}</tr></thead><tbody>{dbody}</tbody></table>")
        parts.append(_legend(export.delta_legend(t)))
    return "\n".join(parts)


def _legend(lines: Iterable[str]) -> str:
    items = "".join(f"<li>{esc(x)}</li>" for x in lines)
    return f'<ul class="legend">{items}</ul>' if items else ""


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in text.lower()).strip("-")


# ------------------------------------------------------------------------------------ figures
def figure_svg(fig: Figure, prefix: str) -> str:
    """The figure as an inline ``<svg>`` element: text kept as text, coordinates to 0.1 pt, whitespace
    and unreferenced group ids dropped (a few tens of KB), and every id prefixed with ``prefix`` so
    that several figures share one page without clashing."""
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "kdbench",
                                "font.sans-serif": ["DejaVu Sans", "Arial", "Helvetica"]}):
        fig.savefig(buf, format="svg", metadata={"Date": None})
    svg = buf.getvalue().decode("utf-8")
    svg = svg[svg.index("<svg"):]
    svg = re.sub(r"<metadata>.*?</metadata>", "", svg, flags=re.S)  # matplotlib's RDF credits
    svg = re.sub(r"(\d+\.\d)\d+", r"\1", svg)
    svg = re.sub(r'<g id="[A-Za-z]+_\d+">', "<g>", svg)
    svg = re.sub(r">\s+<", "><", svg)
    svg = re.sub(r"\s*\n\s*", " ", svg)
    svg = re.sub(r'\bid="([^"]+)"', rf'id="{prefix}-\1"', svg)
    svg = re.sub(r"url\(#([^)]+)\)", rf"url(#{prefix}-\1)", svg)
    svg = re.sub(r'href="#([^"]+)"', rf'href="#{prefix}-\1"', svg)
    return re.sub(r'<svg ([^>]*?)width="[^"]*" height="[^"]*"', r'<svg \1', svg, count=1)


def _figure_html(fig_id: str, fig: Figure | None, caption: str) -> str:
    if fig is None:
        return (f'<figure id="{fig_id}" data-empty="1"><figcaption>{esc(caption)} '
                "(nothing to draw in this run)</figcaption></figure>")
    svg = figure_svg(fig, fig_id).replace("<svg ", f'<svg role="img" aria-label="{esc(caption)}" ', 1)
    return f'<figure id="{fig_id}">{svg}<figcaption>{esc(caption)}</figcaption></figure>'


def _measured_rows(t: Table) -> list[Any]:
    return [r for r in t.rows if r.source is None and any(e.summary is not None for e in r.entries)]


def _summary_point(e: Entry) -> tuple[float, float, float, str] | None:
    s = e.summary
    return None if s is None else (s.mean, s.ci_low, s.ci_high, "")


def domains_figure(main_tables: Sequence[Table], colour: Mapping[str, Any]) -> Figure | None:
    """Per main table: a panel per domain (and Average), each method's mean with its 95% CI."""
    from kdbench.plot import interval_panels

    tabs = [t for t in main_tables if _measured_rows(t)]
    if not tabs:
        return None
    return interval_panels(tabs, [_measured_rows(t) for t in tabs], colour, _summary_point,
                           lambda t: "test accuracy (%)", "Accuracy per domain: mean over seeds, 95% CI")


def _pareto(points: Sequence[tuple[float, float]], lower_x_better: bool) -> list[tuple[float, float]]:
    """The non-dominated points (higher accuracy is better; x lower or higher is better), by x."""
    ordered = sorted(points, key=lambda p: (p[0] if lower_x_better else -p[0], -p[1]))
    front, best = [], -math.inf
    for x, y in ordered:
        if y > best:
            front.append((x, y))
            best = y
    return sorted(front)


def cost_figure(main_tables: Sequence[Table], colour: Mapping[str, Any]) -> Figure | None:
    """Per main table: Average accuracy against parameters and against inference speed-up over the
    teacher, with the Pareto front of each (a teacher row's speed-up over itself is 1×)."""
    from matplotlib.figure import Figure

    data = []
    for t in main_tables:
        if AVERAGE not in t.columns:
            continue
        j = t.columns.index(AVERAGE)
        pts = []
        for r in _measured_rows(t):
            s = r.entries[j].summary
            if s is None or r.cost is None:
                continue
            speed = r.cost.speedup
            if speed is None and r.method.startswith("teacher"):
                speed = 1.0
            pts.append((r.method, s, r.cost.params, speed))
        if pts:
            data.append((t, pts))
    if not data:
        return None
    fig = Figure(figsize=(11, 4.2 * len(data)), layout="constrained")
    axes = fig.subplots(len(data), 2, squeeze=False)
    for i, (t, pts) in enumerate(data):
        for k, (label, lower_better) in enumerate((("parameters (millions)", True),
                                                   ("inference speed-up over the teacher (×)", False))):
            ax: Axes = axes[i][k]
            xy = []
            for method, s, params, speed in pts:
                x = (params / 1e6 if params is not None else None) if k == 0 else speed
                if x is None or not math.isfinite(x):
                    continue
                lo, hi = s.mean - s.ci_low, s.ci_high - s.mean
                err = [[lo], [hi]] if math.isfinite(lo) and math.isfinite(hi) else None
                ax.errorbar([x], [s.mean], yerr=err, fmt="o", color=colour.get(method), capsize=2)
                ax.annotate(method, (x, s.mean), textcoords="offset points", xytext=(4, 3), fontsize=7)
                xy.append((x, s.mean))
            front = _pareto(xy, lower_better)
            if len(front) > 1:
                ax.plot([p[0] for p in front], [p[1] for p in front], "--", color="#555", linewidth=1,
                        label="Pareto front")
                ax.legend(fontsize=7, loc="lower left" if lower_better else "lower right")
            ax.set_xlabel(label)
            ax.set_ylabel(f"test accuracy, {AVERAGE} (%)")
            ax.set_title(t.title, fontsize=9)
            ax.grid(True, alpha=0.3)
    fig.suptitle("Accuracy against inference cost (mean over seeds, 95% CI)")
    return fig


def _loss_series(train: Mapping[str, Any]) -> list[tuple[str, list[float], list[float]]]:
    """(stage, x, losses) of a cell's ``train`` record, stages one after the other. The trainer logs
    the mean loss of each window of up to 10 steps (a window also ends with each epoch), so the values
    are placed evenly over the stage's steps."""
    stages = train.get("stages")
    parts = stages if isinstance(stages, list) and stages else [train]
    out: list[tuple[str, list[float], list[float]]] = []
    offset = 0.0
    for st in parts:
        losses = [float(x) for x in st.get("losses") or []]
        steps = float(st.get("steps") or len(losses))
        if losses:
            out.append((str(st.get("stage", "")), [offset + steps * (i + 1) / len(losses) for i in range(len(losses))],
                        losses))
        offset += steps
    return out


def losses_figure(cells: Sequence[Mapping[str, Any]], methods: Sequence[str]) -> Figure | None:
    """A panel per method that trains: the logged training loss of each of its cells (a line per domain
    and seed), stages one after the other (log scale: stage losses differ in size)."""
    from matplotlib.figure import Figure

    from kdbench.plot import colours

    by_method: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for c in cells:
        if c.get("status") == "ok" and _loss_series(c.get("train") or {}):
            by_method[str(c.get("method"))].append(c)
    names = [m for m in methods if m in by_method] + sorted(m for m in by_method if m not in methods)
    if not names:
        return None
    domains = sorted({str(c.get("domain")) for cs in by_method.values() for c in cs})
    dcol = colours(domains)
    ncols = min(4, len(names))
    nrows = math.ceil(len(names) / ncols)
    fig = Figure(figsize=(3.3 * ncols, 2.6 * nrows + 0.8), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for k, m in enumerate(names):
        ax = axes[k // ncols][k % ncols]
        boundaries: set[float] = set()
        for c in sorted(by_method[m], key=lambda c: (str(c.get("domain")), float(c.get("fraction") or 0),
                                                      int(c.get("seed") or 0))):
            series = _loss_series(c.get("train") or {})
            for n, (_, xs, ys) in enumerate(series):
                ax.plot(xs, ys, color=dcol[str(c.get("domain"))], linewidth=1, alpha=0.8)
                if n:
                    boundaries.add(xs[0])
        for b in boundaries:
            ax.axvline(b, color="#999", linestyle=":", linewidth=1)
        ax.set_yscale("log")
        ax.set_title(m, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.set_ylabel("training loss", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(True, alpha=0.3)
    for k in range(len(names), nrows * ncols):
        axes[k // ncols][k % ncols].set_visible(False)
    from matplotlib.lines import Line2D

    fig.legend(handles=[Line2D([], [], color=dcol[d]) for d in domains], labels=domains, loc="outside lower center",
               ncols=min(len(domains), 8), title="domain (a line per cell: every fraction and seed)")
    fig.suptitle("Training loss per method (mean of each logging window; dotted: next stage)")
    return fig


# ------------------------------------------------------------------------------ other sections
def _kv_table(items: Iterable[tuple[str, Any]]) -> str:
    rows = "".join(f"<tr><td>{esc(k)}</td><td>{esc(_plain(v))}</td></tr>" for k, v in items)
    return f'<table class="kv"><tbody>{rows}</tbody></table>'


def _plain(v: Any) -> str:
    if isinstance(v, str):
        return v
    return json.dumps(v, sort_keys=True, default=str)


def config_html(run: Mapping[str, Any], cells: Sequence[Mapping[str, Any]]) -> str:
    parts = []
    if run:
        config = run.get("config") or {}
        parts.append("<h3>Configuration (run.json)</h3>" + _kv_table(sorted(config.items())))
        if run.get("profile"):
            parts.append("<h3>Profile</h3>" + _kv_table(sorted((run.get("profile") or {}).items())))
        env = [("device", run.get("device")), *sorted((f"versions.{k}", v) for k, v in (run.get("versions") or {}).items())]
        parts.append("<h3>Environment of the last invocation</h3>" + _kv_table(env))
    else:
        parts.append("<p>No readable run.json in this directory.</p>")
    # what the cells themselves record (a run resumed elsewhere may mix environments)
    seen: dict[str, Counter[str]] = defaultdict(Counter)
    for c in cells:
        for key in ("device", "precision", "executor", "data_revision"):
            value = c.get(key)
            if isinstance(value, dict):  # e.g. the executor record: its name (the rest is per cell)
                value = value.get("name")
            if value is not None:
                seen[key][_plain(value)] += 1
        for k, v in (c.get("versions") or {}).items():
            seen[f"versions.{k}"][_plain(v)] += 1
    if seen:
        items = [(k, "; ".join(f"{v} ({n} cells)" for v, n in sorted(cnt.items()))) for k, cnt in sorted(seen.items())]
        parts.append("<h3>Recorded in the cells</h3>" + _kv_table(items))
    return "\n".join(parts)


def failed_html(cells: Sequence[Mapping[str, Any]]) -> str:
    failed = [c for c in cells if c.get("status") != "ok"]
    if not failed:
        return '<p class="ok">No failed cells.</p>'
    rows = []
    for c in sorted(failed, key=lambda c: (str(c.get("task")), str(c.get("domain")), str(c.get("method")))):
        where = (f"{c.get('method')} · {c.get('task')}/{c.get('domain')} · f={c.get('fraction')} · "
                 f"seed {c.get('seed')}")
        tb = c.get("traceback")
        detail = f"<details><summary>traceback</summary><pre>{esc(tb)}</pre></details>" if tb else ""
        rows.append(f"<tr><td>{esc(where)}</td><td class=\"failed\" style=\"text-align:left;white-space:normal\">"
                    f"{esc(c.get('error', ''))}{detail}</td></tr>")
    return (f'<table id="failed-cells" class="kv"><thead><tr><th>cell</th><th>error</th></tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table>")


# -------------------------------------------------------------------------------------- page
def _delta_figure_or_none(main_tables: Sequence[Table]) -> Figure | None:
    """:func:`kdbench.plot.delta_figure`, or None where it has no comparison to draw."""
    from kdbench.plot import delta_figure

    try:
        return delta_figure(main_tables)
    except KDBenchError:
        return None


def render(results_dir: Path, layout: str = "default", baseline: str | None = None,
           references: References | None = None, task_domains: Mapping[str, Sequence[str]] | None = None,
           n_boot: int | None = None) -> str:
    """The whole page for a results directory (raises :class:`KDBenchError` when it holds no cell).
    ``n_boot``: bootstrap resamples of the tests (default: the tables' own, 10,000)."""
    from kdbench import tables
    from kdbench.plot import colours, make_figure

    cells = res.load_cells(results_dir)
    if not cells:
        raise KDBenchError(f"no cell results in {results_dir}; nothing to report")
    run = res.read_json(results_dir / "run.json") or {}
    order = tables.method_order(results_dir)
    tabs = tables.build_tables(cells, layout, baseline, references, task_domains, order,
                               n_boot=tables.N_BOOT if n_boot is None else n_boot)
    main = [t for t in tabs if t.kind == "main"]
    also_ablation = layout == "paper" and bool(tables.ablation_variants() & {c.get("method") for c in cells})
    if also_ablation:  # the paper layout leaves Meta-KD's ablation rows out: show them as --layout ablation does
        tabs += tables.build_tables(cells, "ablation", None, None, task_domains, order,
                                    n_boot=tables.N_BOOT if n_boot is None else n_boot)
    curves: list[Curves] = tables.curves(cells, order)
    methods = list(dict.fromkeys([*order, *sorted({str(c.get("method")) for c in cells})]))
    colour = colours(methods)
    n_ok = sum(c.get("status") == "ok" for c in cells)
    n_failed = len(cells) - n_ok
    import kdbench

    figures = [
        ("fig-fraction", make_figure(curves) if curves else None,
         "Test accuracy against the fraction of the target's training data: a line per method (mean over "
         "seeds) with its 95% CI as a band, a panel per domain plus the Average."),
        ("fig-domains", domains_figure(main, colour),
         "Accuracy per domain and Average: each method's mean over seeds with its 95% CI (t over seeds; a "
         "bootstrap over test examples with one seed), the same numbers as the tables."),
        ("fig-delta", _delta_figure_or_none(main),
         "Each method's difference from the baseline (accuracy points) with its unadjusted 95% interval and the "
         "table's significance marker after Holm: the Δ table as a figure (kdbench plot --kind delta)."),
        ("fig-cost", cost_figure(main, colour),
         "Average accuracy against inference cost: parameters of the evaluated model (left) and the speed-up "
         "of its test-set inference over its teacher's (right; a teacher row is 1× by definition). Dashed: "
         "the Pareto front (no other row is both cheaper and more accurate)."),
        ("fig-losses", losses_figure(cells, methods),
         "Training loss logged by each method (train.losses of every cell; two-stage methods show both "
         "stages one after the other). Rows that train nothing themselves (teacher rows) have no curve."),
    ]
    title = f"kdbench report · {results_dir.resolve().name}"
    nav = ['<li><a href="#config">Configuration and environment</a></li>',
           '<li><a href="#tables">Tables</a></li>',
           *(f'<li>&nbsp;&nbsp;<a href="#table-{esc(_slug(t.title))}">{esc(t.title)}</a></li>' for t in tabs),
           '<li><a href="#figures">Figures</a></li>', '<li><a href="#failed">Failed cells</a></li>']
    body = [
        f"<h1>{esc(title)}</h1>",
        f"<p>{len(cells)} cells: <span class=\"ok\">{n_ok} ok</span>, "
        f"<span class=\"{'failed' if n_failed else 'ok'}\">{n_failed} failed</span>. Made by kdbench "
        f"{esc(kdbench.__version__)} with <code>kdbench report</code>; the tables are those of "
        f"<code>kdbench table</code> (layout {esc(layout)}{', then ablation' if also_ablation else ''}).</p>",
        f"<nav><ul>{''.join(nav)}</ul></nav>",
        '<h2 id="config">Configuration and environment</h2>', config_html(run, cells),
        '<h2 id="tables">Tables</h2>', *(table_html(t) for t in tabs),
        '<h2 id="figures">Figures</h2>', *(_figure_html(i, f, cap) for i, f, cap in figures),
        '<h2 id="failed">Failed cells</h2>', failed_html(cells),
    ]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{esc(title)}</title><style>{CSS}</style></head>\n<body>\n" + "\n".join(body)
            + "\n</body></html>\n")


def write(results_dir: Path, output: Path, **kwargs: Any) -> None:
    """Render the page and write it atomically."""
    export.write(output, render(results_dir, **kwargs))
