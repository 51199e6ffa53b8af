"""kdbench.report: what the terminal shows. Text from plugins, errors and paths is printed as
written; rich would otherwise read ``[abc]`` as a markup tag and swallow it."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from kdbench import report
from kdbench.grid import Cell
from kdbench.runner import RunSummary


@pytest.fixture
def screen(monkeypatch) -> io.StringIO:
    buf = io.StringIO()
    fake = Console(file=buf, width=300, color_system=None)
    monkeypatch.setattr(report, "console", fake)
    monkeypatch.setattr(report, "err_console", fake)
    return buf


def test_reporter_prints_bracketed_text_literally(screen):
    from kdbench import registry
    from kdbench.results import CellResult

    reg = registry.load()
    reg.pm.register(report.RichReporter())  # the reporter is a plugin: it sees the run through the hooks
    hook = reg.pm.hook
    cell = Cell(task="amazon", fraction=1.0, seed=0, domain="books", method="kd")
    hook.kdbench_grid_start(cells=[cell], todo=1)
    hook.kdbench_message(text="teacher mix for amazon/books [d6f3a1b2c4e5f607]: submitted")
    hook.kdbench_cell_start(cell=cell)
    hook.kdbench_train_step(cell=cell, stage="kd", step=1, total=2, epoch=1, loss=0.5, lr=1e-3)
    result = CellResult(status="failed", task="amazon", domain="books", method="kd", fraction=1.0, seed=0)
    hook.kdbench_cell_finish(cell=cell, result=result, seconds=1.0)
    hook.kdbench_grid_finish()
    out = screen.getvalue()
    assert "teacher mix for amazon/books [d6f3a1b2c4e5f607]: submitted" in out
    assert "failed kd · amazon/books · f=1 · seed 0 (1.0s)" in out


def test_summary_prints_errors_and_paths_literally(screen):
    summary = RunSummary(total=2, ok=1, failed=[("amazon__books__kd__f1__s0", "KeyError: ['logits']")])
    report.print_summary(summary, Path("/runs/[exp]"))
    out = screen.getvalue()
    assert "Results: /runs/[exp]" in out
    assert "failed amazon__books__kd__f1__s0: KeyError: ['logits']" in out


def test_method_options_show_type_and_default():
    from kdbench import registry
    from kdbench.report import method_options

    kd = registry.load().methods.get("kd")
    assert method_options(kd) == [("alpha", "float", "0.5"), ("temperature", "float", "1.0")]
