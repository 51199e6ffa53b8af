"""Tables as text: GitHub Markdown (tabulate), booktabs LaTeX and long-format CSV.

Also the cell formatting shared with the terminal rendering in :mod:`kdbench.report`, so every
format shows the same numbers and markers. Nothing here computes statistics (see :mod:`kdbench.tables`).
"""

from __future__ import annotations

import csv
import io
import math
from typing import TYPE_CHECKING

from kdbench.errors import KDBenchError
from kdbench.results import clean_name

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from pathlib import Path

    from kdbench.tables import Cost, Entry, PowerRow, Row, Table

FORMATS = ("rich", "markdown", "latex", "csv")
SUFFIXES = {".md": "markdown", ".markdown": "markdown", ".tex": "latex", ".csv": "csv", ".txt": "rich"}
COST_COLUMNS = ("Params", "Train (s)", "Teacher (s)", "Speed-up")
BLOCK_TITLES = {"teacher": "Teachers", "student": "Students"}


# ------------------------------------------------------------------------------- shared pieces
def max_n(table: Table) -> int:
    return max((e.summary.n for r in table.rows for e in r.entries if e.summary is not None), default=0)


def value_text(entry: Entry, n_max: int, pm: str = "±") -> str | None:
    """``mean ± sd`` (sd only with several seeds; ``(n=k)`` when fewer seeds than the table's most),
    a reference row's ``published (measured - published)``, or None when missing."""
    if entry.ref_value is not None:
        delta = "" if entry.ref_delta is None else f" ({entry.ref_delta:+.2f})"
        return f"{entry.ref_value:.2f}{delta}"
    s = entry.summary
    if s is None:
        return None
    text = f"{s.mean:.2f}"
    if s.n > 1:
        text += f" {pm} {s.sd:.2f}"
    if s.n < n_max:
        text += f" (n={s.n})"
    return text


def delta_text(entry: Entry) -> str | None:
    c = entry.comparison
    if c is None:
        return None
    return f"{c.delta:+.2f} [{c.delta_ci[0]:+.2f}, {c.delta_ci[1]:+.2f}]"


def _num(x: float | None, fmt: Callable[[float], str]) -> str | None:
    return None if x is None or not math.isfinite(x) else fmt(x)


def cost_texts(cost: Cost | None, times: str = "×") -> list[str | None]:
    if cost is None:
        return [None] * len(COST_COLUMNS)

    def seconds(s: float) -> str:
        return f"{s:.0f}" if s >= 100 else f"{s:.1f}"

    return [_num(cost.params, lambda p: f"{p / 1e6:.1f}M" if p >= 1e7 else f"{p / 1e6:.2f}M"),
            _num(cost.student_train_seconds, seconds), _num(cost.teacher_train_seconds, seconds),
            _num(cost.speedup, lambda x: f"{x:.1f}{times}")]


def row_label(table: Table, row: Row) -> str:
    return row.method if row.source is None else f"reported [{row.source + 1}]"


def delta_rows(table: Table) -> list[Row]:
    """Rows of the effect-size table: measured rows with at least one comparison to the baseline."""
    return [r for r in table.rows if r.source is None and any(e.comparison is not None for e in r.entries)]


def delta_title(table: Table) -> str:
    return f"Δ vs {table.baseline} (accuracy points, unadjusted 95% CI) · {table.title}"


def delta_legend(table: Table) -> list[str]:
    how = ("the exact paired bootstrap over test examples (one seed: conditional on that training run)"
           if table.n_seeds <= 1 else "the two-level bootstrap over seeds then test examples")
    return [f"Δ = method − {table.baseline} in accuracy points, with its unadjusted 95% percentile interval from "
            f"{how}. * p<0.05, ** p<0.01: the same bootstrap's p-value after Holm–Bonferroni within the "
            "comparison's family (see the table's legend), so an unadjusted interval can exclude 0 beside no "
            "marker."
            + (" † p<0.05: paired t-test over seeds (≥ 3 shared seeds), Holm within the family."
               if table.has_seed_tests else "")
            + (" Minimum detectable effect at 80% power after Holm (median of the family): "
               + ", ".join(f"{f.name} " + ("not estimable" if math.isnan(f.mde) else f"{f.mde:.1f}")
                           for f in table.families) + " points."
               if table.families else "")]


def blocks(table: Table) -> list[tuple[str, list[Row]]]:
    """Rows grouped by consecutive block ("" when the layout has none)."""
    out: list[tuple[str, list[Row]]] = []
    for r in table.rows:
        if not out or out[-1][0] != r.block:
            out.append((r.block, []))
        out[-1][1].append(r)
    return out


# ------------------------------------------------------------------------------------ markdown
def _md_escape(text: str) -> str:
    text = clean_name(text)
    for ch in ("\\", "*", "_", "|"):
        text = text.replace(ch, "\\" + ch)
    return text


def styled_cell(entry: Entry, n_max: int, *, missing: str, bold: str, italic: str,
                marker: Callable[[str], str], pm: str = "±") -> str:
    """A value cell in a markup: ``missing`` when not run, else the value (best in ``bold``, tied in
    ``italic``: format strings with one ``{}``) followed by its marker as ``marker`` writes it."""
    text = value_text(entry, n_max, pm=pm)
    if text is None:
        return missing
    if entry.best:
        text = bold.format(text)
    elif entry.tied:
        text = italic.format(text)
    return text + marker(entry.marker)


def _md_cell(entry: Entry, n_max: int) -> str:
    return styled_cell(entry, n_max, missing="—", bold="**{}**", italic="_{}_", marker=_md_escape)


def _md_table(header: list[str], body: list[list[str]]) -> str:
    from tabulate import tabulate

    align = ("left", *("right",) * (len(header) - 1))
    return tabulate(body, headers=header, tablefmt="pipe", disable_numparse=True, colalign=align)


def to_markdown(tables: Sequence[Table]) -> str:
    parts: list[str] = []
    for t in tables:
        parts.append(f"### {_md_escape(t.title)}\n")
        if not t.rows:
            parts.append("\n".join(f"- {_md_escape(n)}" for n in t.notes) + "\n")
            continue
        n_max = max_n(t)
        header = ["method", *map(_md_escape, t.columns), *(COST_COLUMNS if t.has_cost else ())]
        body = []
        for block, rows in blocks(t):
            if block:
                body.append([f"**{BLOCK_TITLES.get(block, block)}**", *[""] * (len(header) - 1)])
            for r in rows:
                label = _md_escape(row_label(t, r))
                if r.source is not None:
                    label = "↳ " + label
                cells = [_md_cell(e, n_max) for e in r.entries]
                if t.has_cost:
                    cells += [c or "—" for c in cost_texts(r.cost)] if r.source is None else [""] * len(COST_COLUMNS)
                body.append([label, *cells])
        parts.append(_md_table(header, body) + "\n")
        parts.append("\n".join(f"- {_md_escape(x)}" for x in [*t.notes, *t.legend]) + "\n")
        rows = delta_rows(t)
        if rows:
            parts.append(f"#### {_md_escape(delta_title(t))}\n")
            body = [[_md_escape(r.method), *[(delta_text(e) or "—") + _md_escape(e.marker) for e in r.entries]]
                    for r in rows]
            parts.append(_md_table(["method", *map(_md_escape, t.columns)], body) + "\n")
            parts.append("\n".join(f"- {_md_escape(x)}" for x in delta_legend(t)) + "\n")
    return "\n".join(parts)


# --------------------------------------------------------------------------------------- LaTeX
_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                  "±": r"$\pm$", "—": "--", "–": "--", "−": "$-$", "Δ": r"$\Delta$", "†": r"$^{\dagger}$",
                  "≥": r"$\geq$", "·": r"$\cdot$", "×": r"$\times$", "↳": r"$\hookrightarrow$", "<": r"$<$",
                  ">": r"$>$"}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in clean_name(text))


def _latex_marker(marker: str) -> str:
    if not marker:
        return ""
    return "$^{" + marker.replace("†", r"\dagger") + "}$"


def _latex_cell(entry: Entry, n_max: int) -> str:
    return styled_cell(entry, n_max, missing="--", bold=r"\textbf{{{}}}", italic=r"\textit{{{}}}",
                       marker=_latex_marker, pm="$\\pm$")


def _latex_tabular(header: list[str], body: list[list[str] | str]) -> list[str]:
    lines = [r"\begin{tabular}{l" + "r" * (len(header) - 1) + "}", r"\toprule", " & ".join(header) + r" \\",
             r"\midrule"]
    for row in body:
        lines.append(row if isinstance(row, str) else " & ".join(row) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return lines


def to_latex(tables: Sequence[Table]) -> str:
    out = ["% kdbench tables; needs \\usepackage{booktabs}"]
    for t in tables:
        out += ["", r"\begin{table}[t]", r"\centering", rf"\caption{{{latex_escape(t.title)}}}"]
        if not t.rows:
            out += [r"\par\footnotesize " + latex_escape(" ".join(t.notes)), r"\end{table}"]
            continue
        n_max = max_n(t)
        header = ["Method", *map(latex_escape, t.columns), *(COST_COLUMNS if t.has_cost else ())]
        body: list[list[str] | str] = []
        for k, (block, rows) in enumerate(blocks(t)):
            if block:
                if k:
                    body.append(r"\midrule")
                body.append(rf"\multicolumn{{{len(header)}}}{{l}}{{\textit{{{BLOCK_TITLES.get(block, block)}}}}} \\")
            for r in rows:
                label = latex_escape(row_label(t, r))
                if r.source is not None:
                    label = r"\quad " + label
                cells = [_latex_cell(e, n_max) for e in r.entries]
                if t.has_cost:
                    cells += ([latex_escape(c) if c else "--" for c in cost_texts(r.cost)] if r.source is None
                              else [""] * len(COST_COLUMNS))
                body.append([label, *cells])
        out += _latex_tabular([latex_escape(h) for h in header], body)
        out.append(r"\par\smallskip\footnotesize " + r" \\ ".join(latex_escape(x) for x in [*t.notes, *t.legend]))
        out.append(r"\end{table}")
        rows = delta_rows(t)
        if rows:
            out += ["", r"\begin{table}[t]", r"\centering", rf"\caption{{{latex_escape(delta_title(t))}}}"]
            dbody: list[list[str] | str] = [
                [latex_escape(r.method), *[latex_escape(delta_text(e) or "—") + _latex_marker(e.marker)
                                           for e in r.entries]] for r in rows]
            out += _latex_tabular(["Method", *map(latex_escape, t.columns)], dbody)
            out.append(r"\par\smallskip\footnotesize " + r" \\ ".join(latex_escape(x) for x in delta_legend(t)))
            out.append(r"\end{table}")
    return "\n".join(out) + "\n"


# ----------------------------------------------------------------------------------------- CSV
CSV_FIELDS = ("table", "kind", "layout", "task", "fraction", "column", "row_kind", "block", "method", "n",
              "mean", "sd", "ci_low", "ci_high", "ci_method", "best", "tied_with_best", "baseline", "delta",
              "delta_ci_low", "delta_ci_high", "p_bootstrap", "p_bootstrap_holm", "p_mcnemar", "p_seeds_t",
              "p_seeds_t_holm", "n_seeds_paired", "family", "family_size", "delta_se", "mde_80", "p_bootstrap_mc_se",
              "p_equivalence", "equivalence_margin", "marker", "reference", "reference_delta", "source_paper",
              "source_table", "source_split", "source_metric", "params", "student_train_seconds",
              "teacher_train_seconds", "speedup")


def _g(x: float | None) -> str:
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.6g}"


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(value: object) -> object:
    """A text cell made safe for spreadsheets: control characters stripped, and text starting with
    ``= + - @`` (or tab / CR) prefixed with ``'`` so that it is not run as a formula (OWASP's advice).
    Numbers (``-0.5``) are left alone."""
    if not isinstance(value, str):
        return value
    text = clean_name(value)
    if text.startswith(_FORMULA_START):
        try:
            float(text)
        except ValueError:
            return "'" + text
    return text


def to_csv(tables: Sequence[Table]) -> str:
    """Long format: one line per table × row × column (missing cells included, empty). Intervals are
    unadjusted; ``p_bootstrap_holm`` is Holm within ``family`` (of ``family_size`` comparisons)."""
    from kdbench.stats import mde
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n")
    w.writeheader()
    for t in tables:
        fam_size = {f.name: f.size for f in t.families}
        for r in t.rows:
            for col, e in zip(t.columns, r.entries, strict=True):
                s, c = e.summary, e.comparison
                src = t.sources[r.source] if r.source is not None else None
                line: dict[str, object] = {"table": t.title, "kind": t.kind, "layout": t.layout, "task": t.task,
                                           "fraction": _g(t.fraction) if t.fraction is not None else
                                           _g(t.column_fractions[t.columns.index(col)]) if t.column_fractions
                                           else "",
                                           "column": col, "row_kind": "measured" if src is None else "reference",
                        "block": r.block, "method": r.method, "baseline": t.baseline or "",
                        "marker": e.marker, "best": str(e.best).lower() if src is None else "",
                        "tied_with_best": str(e.tied).lower() if src is None else ""}
                if s is not None:
                    line |= {"n": s.n, "mean": _g(s.mean), "sd": _g(s.sd), "ci_low": _g(s.ci_low),
                             "ci_high": _g(s.ci_high), "ci_method": s.method}
                if c is not None:
                    line |= {"delta": _g(c.delta), "delta_ci_low": _g(c.delta_ci[0]),
                             "delta_ci_high": _g(c.delta_ci[1]), "p_bootstrap": _g(c.p_examples),
                             "p_bootstrap_holm": _g(c.p_adjusted), "p_mcnemar": _g(c.p_mcnemar),
                             "p_seeds_t": "degenerate" if c.seeds_degenerate else _g(c.p_seeds),
                             "p_seeds_t_holm": _g(e.p_seeds_adjusted),
                             "n_seeds_paired": c.n_seeds, "family": e.family,
                             "family_size": fam_size.get(e.family, ""), "delta_se": _g(c.se),
                             "mde_80": _g(mde(c.se, fam_size[e.family])) if e.family in fam_size and c.se > 0 else "",
                             "p_bootstrap_mc_se": _g(c.p_mc_se), "p_equivalence": _g(c.p_equivalence),
                             "equivalence_margin": _g(t.equivalence_margin)}
                if src is not None:
                    line |= {"reference": _g(e.ref_value), "reference_delta": _g(e.ref_delta),
                             "source_paper": src.paper, "source_table": src.table, "source_split": src.split,
                             "source_metric": src.metric}
                if r.cost is not None:
                    line |= {"params": _g(r.cost.params), "student_train_seconds": _g(r.cost.student_train_seconds),
                             "teacher_train_seconds": _g(r.cost.teacher_train_seconds),
                             "speedup": _g(r.cost.speedup)}
                w.writerow({k: csv_safe(v) for k, v in line.items()})
    return buf.getvalue()


# -------------------------------------------------------------------------------------- power
def power_text(rows: Sequence[PowerRow]) -> str:
    """``kdbench power``'s answer as plain text: one block per task × fraction, a line per method."""
    out: list[str] = []
    groups: dict[tuple[str, float], list[PowerRow]] = {}
    for r in rows:
        groups.setdefault((r.task, r.fraction), []).append(r)
    for (task, fraction), group in groups.items():
        g = group[0]
        out.append(f"{clean_name(task)} · fraction {fraction:g} · student methods vs {clean_name(g.baseline)} on the "
                   f"Average: primary family of {g.family_size} comparison(s), Holm, 80% power, α = 0.05 "
                   f"(strictest level α/{g.family_size})")
        out.append(f"run: {g.n_seeds} seed(s), {g.n_examples} test examples per domain")
        header = ("method", "Δ now", "MDE now", "effect", "seeds needed", "test examples/domain needed")
        body = []
        for r in group:
            seeds = ("— (test-set variance dominates)" if r.seeds is None
                     else f"≥ {r.seeds}" if r.variance.seed is None else str(r.seeds))
            examples = "— (seed variance dominates)" if r.examples is None else f"{r.examples:,} (with {r.n_seeds} seed(s))"
            body.append((clean_name(r.method), f"{r.delta:+.2f}", f"{r.mde_now:.2f}", f"{r.effect:g}", seeds, examples))
        widths = [max(len(x) for x in col) for col in zip(header, *body, strict=True)]
        for line in (header, *body):
            out.append("  ".join(x.ljust(w) for x, w in zip(line, widths, strict=True)).rstrip())
        for effect in dict.fromkeys(r.effect for r in group):
            counts = [r.seeds for r in group if r.effect == effect]
            need = sorted(c for c in counts if c is not None)
            summary = f"to detect {effect:g} point(s) on the Average: "
            if not need:
                summary += f"no number of seeds suffices with {g.n_examples} test examples per domain"
            else:
                summary += (f"median {need[len(need) // 2]} seeds (range {need[0]}–{need[-1]}) with "
                            f"{g.n_examples} test examples per domain")
                if len(need) < len(counts):
                    summary += f"; {len(counts) - len(need)} comparison(s) need more test examples instead"
            out.append(summary)
        out.append("MDE now: the run's minimum detectable effect under the table's primary test (the two-level "
                   "bootstrap, seeds then test examples), the table's mde_80. Seeds and examples needed: the same "
                   "test's variance predicted from the run's seed, test-example and seed × example components "
                   "(a crossed model: every seed is scored on the same test set, so more seeds never average "
                   "the test set's own variance away).")
        if any(r.variance.seed is None for r in group):
            out.append("One seed: training (seed) variance cannot be measured from this run, and the test-example "
                       "variance cannot be split from the seed × example part; the seeds needed assume none of "
                       "the first and all of the second (optimistic): a lower bound. Run 2+ seeds to measure them.")
        out.append("")
    return "\n".join(out)


# -------------------------------------------------------------------------------------- output
def resolve_format(fmt: str | None, output: Path | None) -> str:
    """An explicit ``--format``, else one from ``-o``'s suffix, else rich."""
    if fmt is not None:
        return fmt
    if output is None:
        return "rich"
    if output.suffix.lower() in SUFFIXES:
        return SUFFIXES[output.suffix.lower()]
    raise KDBenchError(f"cannot tell the format of {output} from its suffix; pass --format "
                       f"({', '.join(FORMATS)})")


def render(tables: Sequence[Table], fmt: str) -> str:
    if fmt == "markdown":
        return to_markdown(tables)
    if fmt == "latex":
        return to_latex(tables)
    if fmt == "csv":
        return to_csv(tables)
    raise KDBenchError(f"unknown format {fmt!r} (choose from: {', '.join(FORMATS)})")


def write(path: Path, text: str) -> None:
    """Atomically (temporary file, fsync, rename); a failure is a one-line error."""
    from kdbench.results import atomic_write_bytes

    try:
        atomic_write_bytes(path, text.encode("utf-8"))
    except OSError as exc:
        raise KDBenchError(f"cannot write {path}: {exc.strerror or exc}") from None
