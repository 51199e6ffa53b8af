"""Rendering: the only module that imports rich. Everything it shows is computed elsewhere."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table as RichTable

from kdbench.runner import Reporter

if TYPE_CHECKING:
    from pathlib import Path

    from kdbench.grid import Cell
    from kdbench.registry import Registry
    from kdbench.runner import RunSummary
    from kdbench.tables import Table

console = Console()
err_console = Console(stderr=True)


def print_registry(reg: Registry) -> None:
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
                cells.append(e.cls.teacher)  # type: ignore[attr-defined]
            elif extra == "domains":
                cells.append(",".join(e.cls.domains))  # type: ignore[attr-defined]
            cells += [e.cls.description, f"{e.dist} ({e.source})"]  # type: ignore[attr-defined]
            t.add_row(*cells)
        console.print(t)
    for f in reg.failures:
        console.print(f"[red]plugin {f.name!r} ({f.dist}) failed to load:[/red] {f.error}")


def fmt(s: Any) -> str:
    if s is None:
        return "—"
    sd = f" ± {s.sd:.2f}" if s.n > 1 else ""
    return f"{s.mean:.2f}{sd} (n={s.n})"


def print_tables(tables: list[Table]) -> None:
    if not tables:
        console.print("no finished cells yet")
    for tab in tables:
        t = RichTable(title=tab.title, title_justify="left")
        t.add_column("method", style="bold")
        for c in tab.columns:
            t.add_column(c, justify="right")
        for method, row in tab.rows.items():
            t.add_row(method, *[fmt(s) for s in row])
        console.print(t)
        for note in tab.notes:
            console.print(f"[dim]{note}[/dim]")
        console.print("[dim]mean ± sd over seeds (n = seeds); — = not run[/dim]")


def print_summary(summary: RunSummary, results_dir: Path) -> None:
    console.print(f"{summary.total} cells: {summary.skipped} already done, {summary.ok} ran ok, "
                  f"{len(summary.failed)} failed; {summary.teachers_trained} teacher(s) trained. "
                  f"Results: {results_dir}")
    for key, err in summary.failed:
        console.print(f"[red]failed[/red] {key}: {err}")


class RichReporter(Reporter):
    """A grid bar (cells done / total, ETA) and a bar for the current cell (steps, epoch, loss)."""

    def __init__(self) -> None:
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
                                 console=err_console, transient=False)
        self.grid = None
        self.cell = None
        self.t0 = time.perf_counter()

    def grid_start(self, cells: list[Cell], todo: int) -> None:
        self.progress.start()
        self.grid = self.progress.add_task("grid", total=todo, info=f"{len(cells) - todo} done earlier")

    def cell_start(self, cell: Cell) -> None:
        if self.cell is not None:
            self.progress.remove_task(self.cell)
        self.cell = self.progress.add_task(cell.describe(), total=None, info="")

    def cell_progress(self, **info: Any) -> None:
        if self.cell is not None:
            self.progress.update(self.cell, completed=info["step"], total=info["total"],
                                 info=f"{info.get('stage', '')} ep {info['epoch']} loss {info['loss']:.4f}")

    def cell_end(self, cell: Cell, status: str, seconds: float) -> None:
        colour = "green" if status == "ok" else "red"
        self.progress.console.print(f"[{colour}]{status}[/{colour}] {cell.describe()} ({seconds:.1f}s)")
        if self.grid is not None:
            self.progress.advance(self.grid)

    def message(self, text: str) -> None:
        self.progress.console.print(f"[dim]{text}[/dim]")

    def grid_end(self) -> None:
        self.progress.stop()
