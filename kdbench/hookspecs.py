"""Every hook kdbench calls. Plugins implement them with ``@kdbench.hookimpl``.

Registration hooks return classes; the core puts them into a :class:`kdbench.registry.Registry`
and later looks one up by name. Picking a method is therefore a dictionary lookup, not a hook
broadcast (the tox ``tox_register_tox_env`` pattern).

Lifecycle hooks let a plugin observe a run (logging, notifications) without touching the runner.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from kdbench.api import Method, Task, Teacher
    from kdbench.config import RunConfig
    from kdbench.grid import Cell
    from kdbench.results import CellResult

hookspec = pluggy.HookspecMarker("kdbench")


@hookspec
def kdbench_register_methods() -> list[type[Method]]:
    """Return the :class:`~kdbench.api.Method` classes this plugin provides, keyed by ``name``."""
    raise NotImplementedError


@hookspec
def kdbench_register_tasks() -> list[type[Task]]:
    """Return the :class:`~kdbench.api.Task` classes this plugin provides, keyed by ``name``."""
    raise NotImplementedError


@hookspec
def kdbench_register_teachers() -> list[type[Teacher]]:
    """Return the :class:`~kdbench.api.Teacher` kinds this plugin provides, keyed by ``name``.

    A method names the kind it needs in ``Method.teacher``; the runner trains each distinct
    teacher once and shares it.
    """
    raise NotImplementedError


@hookspec(historic=True)
def kdbench_configure(config: RunConfig) -> None:
    """Called once with the resolved run configuration before any cell runs (on the driver only)."""


@hookspec
def kdbench_grid_start(cells: list[Cell], todo: int) -> None:
    """Before the first cell of a run, on the driver: every cell of the grid, and how many of them
    will be computed (the others are done already)."""


@hookspec
def kdbench_message(text: str) -> None:
    """A one-line notice of the run (a teacher being trained, a result file recomputed, ...)."""


@hookspec
def kdbench_grid_finish() -> None:
    """After the last cell, on the driver (also when the run stops early, e.g. on Ctrl-C)."""


@hookspec
def kdbench_cell_start(cell: Cell) -> None:
    """Called on the driver before a cell trains (not for cells skipped because their result exists).

    Under ``--executor ray`` it fires when the cell is submitted to the cluster (cells then run in
    parallel, so several start before the first finishes); every cell still gets its
    ``kdbench_cell_start`` before its ``kdbench_cell_finish``.
    """


@hookspec
def kdbench_train_step(cell: Cell | None, stage: str, step: int, total: int, epoch: int, loss: float,
                       lr: float) -> None:
    """Training progress, every few optimiser steps (``kdbench.trainer.LOG_EVERY``) and at the last.

    ``stage`` names the training run within the cell, as the method passes it to the trainer: the
    method's name for one-stage methods, one name per stage for multi-stage ones, ``teacher:<domain>``
    for a teacher trained inside the cell (``step`` restarts at 1 in each stage). ``loss`` is the mean
    training loss of the steps since the loss was last read (at most ``LOG_EVERY`` steps; it is also
    read at each epoch's end), ``lr`` the learning rate after this step, ``total`` the stage's number
    of steps, ``epoch`` counts from 1. ``cell`` is ``None`` for a teacher trained outside any cell.

    Fires where the training runs: under ``--executor ray`` that is a worker, whose plugins are
    only the installed (entry-point) ones; the driver's plugins see the curve in
    ``kdbench_cell_finish``'s ``result["train"]["losses"]`` instead.
    """


@hookspec
def kdbench_dev_eval(cell: Cell | None, stage: str, step: int, epoch: int, dev_accuracy: float) -> None:
    """One checkpoint-selection evaluation (once per epoch): the stage's score, usually dev accuracy
    in points, after ``step`` steps. Same ``cell``/``stage`` conventions, and workers, as
    :func:`kdbench_train_step`."""


@hookspec
def kdbench_cell_finish(cell: Cell, result: CellResult, seconds: float) -> None:
    """Called after a cell's result file was written, with the stored result (status ok or failed).

    Fires on the driver under every executor. ``result`` is a :class:`kdbench.results.CellResult`
    (typed fields, and a read-only mapping of the cell file's content, so ``result["metrics"]`` and
    ``result.get("error")`` work as on the file's JSON object): ``status``,
    ``metrics`` (``test_accuracy``, ``dev_accuracy``), ``timing``, ``params``, ``config``,
    ``train`` (``losses``: the training-loss curve, one point every ``LOG_EVERY`` steps and at each
    epoch's end; a two-stage method's stages in order) and, when failed, ``error``. ``seconds``: how
    long the cell took where it was computed (under Ray, on its worker, without queueing).
    """
