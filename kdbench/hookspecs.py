"""Every hook kdbench calls. Plugins implement them with ``@kdbench.hookimpl``.

Registration hooks return classes; the core puts them into a :class:`kdbench.registry.Registry`
and later looks one up by name. Picking a method is therefore a dictionary lookup, not a hook
broadcast (the tox ``tox_register_tox_env`` pattern).

Lifecycle hooks let a plugin observe a run (logging, notifications) without touching the runner.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from kdbench.api import Method, Task, Teacher
    from kdbench.config import RunConfig
    from kdbench.grid import Cell

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
    """Called once with the resolved run configuration before any cell runs."""


@hookspec
def kdbench_cell_start(cell: Cell) -> None:
    """Called before a cell trains (not for cells skipped because their result exists)."""


@hookspec
def kdbench_cell_finish(cell: Cell, result: dict[str, Any]) -> None:
    """Called after a cell's result file was written, with the stored result (status ok or failed)."""
