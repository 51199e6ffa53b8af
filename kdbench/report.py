"""Rendering: the only module that imports rich. Everything it shows is computed elsewhere."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table as RichTable
from rich.text import Text

from kdbench import hookimpl

if TYPE_CHECKING:
    from pathlib import Path

    from kdbench.grid import Cell
    from kdbench.registry import Registry
    from kdbench.results import CellResult
    from kdbench.runner import RunSummary
    from kdbench.tables import Entry, Table

console = Console()
err_console = Console(stderr=True)


def method_options(cls: Any) -> list[tuple[str, str, str]]:
    """``(name, type, default)`` of each option of a method's Config dataclass."""
    import dataclasses

    out = []
    for f in dataclasses.fields(cls.Config):
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else "—")
        kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        out.append((f.name, str(kind), repr(default) if isinstance(default, str) else str(default)))
    return out


def print_method(cls: Any) -> None:
    """``kdbench show METHOD``: what it is, its teacher kind and its options."""
    console.print(f"[bold]{escape(cls.name)}[/bold]: {escape(cls.description)}")
    console.print(f"teacher: {escape(cls.teacher or 'none')}")
    opts = method_options(cls)
    if not opts:
        console.print("options: none")
        return
    console.print(f"set with --set {escape(cls.name)}.KEY=VALUE, or as a variant row: "
                  f"--methods '{escape(cls.name)}\\[KEY=VALUE,...]'")
    t = RichTable(title="Options", title_justify="left")
    for col in ("option", "type", "default"):
        t.add_column(col)
    for row in opts:
        t.add_row(*map(escape, row))
    console.print(t)


def print_registry(reg: Registry, verbose: bool = False) -> None:
    for title, kind, extra in (("Methods", reg.methods, "teacher"), ("Tasks", reg.tasks, "domains"),
                               ("Teacher kinds", reg.teachers, None)):
        t = RichTable(title=title, title_justify="left")
        t.add_column("name", style="bold")
        if extra:
            t.add_column(extra)
        t.add_column("description")
        t.add_column("from", style="dim")
        for name, e in sorted(kind.entries.items()):
            cells = [name]
            if extra == "teacher":
                cells.append(e.cls.teacher or "none")  # type: ignore[attr-defined]
            elif extra == "domains":
                cells.append(",".join(e.cls.domains))  # type: ignore[attr-defined]
            cells += [e.cls.description, f"{e.dist} ({e.source})"]  # type: ignore[attr-defined]
            t.add_row(*map(escape, cells))  # plugin text is shown as written, never as markup
        console.print(t)
    if verbose:
        t = RichTable(title="Method options (--set METHOD.KEY=VALUE, or METHOD[KEY=VALUE,...] in --methods)",
                      title_justify="left")
        for col in ("method", "option", "type", "default"):
            t.add_column(col)
        for name, e in sorted(reg.methods.entries.items()):
            for opt in method_options(e.cls):
                t.add_row(*map(escape, (name, *opt)))
        console.print(t)
    for f in reg.failures:
        console.print(f"[red]plugin {escape(repr(f.name))} ({escape(str(f.dist))}) failed to load:[/red] "
                      f"{escape(str(f.error))}")


def _rich_cell(entry: Entry, n_max: int) -> Text:
    from kdbench.export import value_text

    text = value_text(entry, n_max)
    if text is None:
        return Text("—", style="dim")
    style = "bold" if entry.best else "italic" if entry.tied else ("dim" if entry.ref_value is not None else "")
    out = Text(text, style=style)
    if entry.marker:
        out.append(entry.marker, style="bold" if entry.best else "")
    return out


def _rich_table(tab: Table) -> list[Any]:
    """The renderables of one table: the table, its Δ table, notes and legends."""
    from kdbench import export

    n_max = export.max_n(tab)
    t = RichTable(title=tab.title, title_justify="left")
    width = max([len(r.method) if r.source is None else len(export.row_label(tab, r)) + 4 for r in tab.rows],
                default=6)
    t.add_column("method", style="bold", no_wrap=True, min_width=width)
    for c in tab.columns:
        t.add_column(c, justify="right", min_width=len(c))
    if tab.has_cost:
        for c in export.COST_COLUMNS:
            t.add_column(c, justify="right", style="cyan")
    for k, (block, rows) in enumerate(export.blocks(tab)):
        if block:
            if k:
                t.add_section()
            t.add_row(Text(export.BLOCK_TITLES.get(block, block), style="italic underline"))
        for r in rows:
            cells: list[Any] = [_rich_cell(e, n_max) for e in r.entries]
            if tab.has_cost:
                cells += ([Text(c or "—") for c in export.cost_texts(r.cost)] if r.source is None
                          else [Text("")] * len(export.COST_COLUMNS))
            label = Text(r.method) if r.source is None else Text("  ↳ " + export.row_label(tab, r), style="dim")
            t.add_row(label, *cells)
    out: list[Any] = [t]
    out += [Text(line, style="yellow") for line in tab.notes]
    out += [Text(line, style="dim") for line in tab.legend]
    rows = export.delta_rows(tab)
    if rows:
        d = RichTable(title=export.delta_title(tab), title_justify="left")
        d.add_column("method", style="bold", no_wrap=True, min_width=width)
        for c in tab.columns:
            d.add_column(c, justify="right", min_width=len(c))
        for r in rows:
            d.add_row(r.method, *[Text((export.delta_text(e) or "—") + e.marker) for e in r.entries])
        out += [Text(""), d, *[Text(line, style="dim") for line in export.delta_legend(tab)]]
    return out


def print_tables(tables: list[Table], target: Console | None = None) -> None:
    """Every table with its effect-size table, notes and legend (see :mod:`kdbench.tables`)."""
    target = target or console
    if not tables:
        target.print("no finished cells yet")
    for i, tab in enumerate(tables):
        if i:
            target.print()
        for item in _rich_table(tab):
            target.print(item)


def tables_text(tables: list[Table]) -> str:
    """The terminal rendering as plain text (``--format rich -o FILE``)."""
    import io

    buf = Console(file=io.StringIO(), width=200, record=True, color_system=None)
    print_tables(tables, buf)
    return buf.export_text()


def print_summary(summary: RunSummary, results_dir: Path) -> None:
    console.print(f"{summary.total} cells: {summary.skipped} already done, {summary.ok} ran ok, "
                  f"{len(summary.failed)} failed; {summary.teachers_trained} teacher(s) trained. "
                  f"Results: {escape(str(results_dir))}")
    for key, err in summary.failed:
        console.print(f"[red]failed[/red] {escape(key)}: {escape(err)}")
    for key, path, why in summary.superseded:
        console.print(f"[yellow]kept[/yellow] the earlier ok result of {escape(key)} ({why}): {escape(path)}")


class RichReporter:
    """The terminal reporter, a plugin on the run's hooks (as pytest's terminal reporter is): a grid
    bar (cells done / total, ETA), a bar for the current cell (steps, epoch, loss) and one line per
    finished cell and per message. The CLI registers it; the runner only calls hooks."""

    def __init__(self) -> None:
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
                                 console=err_console, transient=False)
        self.grid: TaskID | None = None
        self.cell: TaskID | None = None
        self.t0 = time.perf_counter()

    @hookimpl
    def kdbench_grid_start(self, cells: list[Cell], todo: int) -> None:
        self.progress.start()
        self.grid = self.progress.add_task("grid", total=todo, info=f"{len(cells) - todo} done earlier")

    @hookimpl
    def kdbench_cell_start(self, cell: Cell) -> None:
        if self.cell is not None:
            self.progress.remove_task(self.cell)
        self.cell = self.progress.add_task(escape(cell.describe()), total=None, info="")

    @hookimpl
    def kdbench_train_step(self, stage: str, step: int, total: int, epoch: int, loss: float) -> None:
        if self.cell is not None:
            self.progress.update(self.cell, completed=step, total=total, info=f"{stage} ep {epoch} loss {loss:.4f}")

    @hookimpl
    def kdbench_cell_finish(self, cell: Cell, result: CellResult, seconds: float) -> None:
        status = str(result.get("status"))
        colour = "green" if status == "ok" else "red"
        self.progress.console.print(f"[{colour}]{escape(status)}[/{colour}] {escape(cell.describe())} ({seconds:.1f}s)")
        if self.grid is not None:
            self.progress.advance(self.grid)

    @hookimpl
    def kdbench_message(self, text: str) -> None:
        self.progress.console.print(f"[dim]{escape(text)}[/dim]")

    @hookimpl
    def kdbench_grid_finish(self) -> None:
        self.progress.stop()
