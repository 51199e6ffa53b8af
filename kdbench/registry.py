"""Load plugins through the ``kdbench`` entry-point group and index what they register by name.

Built-in methods and tasks are ordinary entry points of the ``kdbench`` distribution (see
``pyproject.toml``), so they load exactly like a third-party package: no special cases.

Every teacher kind also gets its evaluation row as a method (``teacher:<kind>``, or the kind's
``row`` name), derived here (:class:`kdbench.api.DerivedTeacherRow`) unless a plugin registered a
method of that name itself.
"""

from __future__ import annotations

import importlib.metadata as md
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import pluggy

from kdbench import NAME, hookspecs
from kdbench.errors import KDBenchError, did_you_mean

if TYPE_CHECKING:
    from types import ModuleType

    from kdbench.api import Method, Task, Teacher

T = TypeVar("T")

#: set to any value to load no entry points (tests register plugins explicitly)
DISABLE_AUTOLOAD_ENV = "KDBENCH_DISABLE_PLUGIN_AUTOLOAD"


class UnknownNameError(KDBenchError):
    """An unknown method/task/teacher/domain name; the message carries a suggestion."""


@dataclass
class Entry(Generic[T]):
    cls: type[T]
    source: str  # plugin name (entry-point name or module name) it came from
    dist: str  # distribution providing it ("kdbench" for built-ins)


class Kind(Generic[T]):
    """Name → class map for one kind of plugin object; refuses duplicates."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.entries: dict[str, Entry[T]] = {}

    def add(self, cls: type[T], source: str, dist: str) -> None:
        name = getattr(cls, "name", None)
        if not isinstance(name, str) or not name:
            raise KDBenchError(f"plugin {source!r} registered a {self.kind} class {cls!r} without a name")
        if name in self.entries:
            other = self.entries[name]
            raise KDBenchError(f"duplicate {self.kind} name {name!r}: registered by {other.source!r} "
                               f"({other.dist}) and {source!r} ({dist}); uninstall one of them")
        self.entries[name] = Entry(cls, source, dist)

    def get(self, name: str) -> type[T]:
        if name not in self.entries:
            raise UnknownNameError(did_you_mean(self.kind, name, list(self.entries)))
        return self.entries[name].cls

    def names(self) -> list[str]:
        return list(self.entries)

    def __contains__(self, name: object) -> bool:
        return name in self.entries


@dataclass
class PluginFailure:
    name: str
    dist: str
    error: str


@dataclass
class Registry:
    """Every method, task and teacher kind available, and the plugins that failed to load."""

    methods: Kind[Method] = field(default_factory=lambda: Kind("method"))
    tasks: Kind[Task] = field(default_factory=lambda: Kind("task"))
    teachers: Kind[Teacher] = field(default_factory=lambda: Kind("teacher"))
    failures: list[PluginFailure] = field(default_factory=list)
    #: the plugin manager every hook is called through (the plugins' and kdbench's own reporter)
    pm: pluggy.PluginManager = field(default_factory=lambda: plugin_manager())
    #: the plugins passed to :func:`load` besides the entry points (Ray workers load them too)
    extra_plugins: list[Any] = field(default_factory=list)


def plugin_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(NAME)
    pm.add_hookspecs(hookspecs)
    return pm


def load(extra_plugins: list[ModuleType | Any] | None = None, strict: bool = False,
         autoload: bool | None = None) -> Registry:
    """Build the registry from the ``kdbench`` entry points plus ``extra_plugins``.

    A plugin that fails to import is recorded in ``Registry.failures`` and skipped, so one broken
    package does not take the others down; ``strict=True`` makes it fatal instead.
    """
    pm = plugin_manager()
    reg = Registry(pm=pm, extra_plugins=list(extra_plugins or []))
    dists: dict[str, str] = {}
    if autoload is None:
        autoload = not os.environ.get(DISABLE_AUTOLOAD_ENV)
    if autoload:
        for ep in sorted(md.entry_points(group=NAME), key=lambda e: e.name):
            dist = ep.dist.name if ep.dist is not None else "?"
            try:
                plugin = ep.load()
                pm.register(plugin, name=ep.name)
            except Exception as exc:  # noqa: BLE001 - any import error is reported, not raised
                msg = f"{type(exc).__name__}: {exc}".splitlines()[0]
                if strict:
                    raise KDBenchError(f"plugin {ep.name!r} ({dist}) failed to load: {msg}") from exc
                reg.failures.append(PluginFailure(ep.name, dist, msg))
                continue
            dists[ep.name] = dist
    for plugin in extra_plugins or []:
        name = pm.register(plugin)
        if name is not None:
            dists[name] = getattr(plugin, "__name__", name)
    pm.check_pending()

    # Call each implementation separately so every class is attributed to the plugin that gave it.
    for hook, kind in ((pm.hook.kdbench_register_methods, reg.methods),
                       (pm.hook.kdbench_register_tasks, reg.tasks),
                       (pm.hook.kdbench_register_teachers, reg.teachers)):
        for impl in reversed(hook.get_hookimpls()):  # registration order
            classes: Any = impl.function() or []
            for cls in classes:
                kind.add(cls, impl.plugin_name, dists.get(impl.plugin_name, "?"))
    from kdbench.api import DerivedTeacherRow

    for entry in list(reg.teachers.entries.values()):
        row = DerivedTeacherRow(entry.cls)
        if row.name not in reg.methods:
            reg.methods.add(row, entry.source, entry.dist)  # type: ignore[arg-type]  # reads like a Method class
    return reg
