from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

from kdbench import hookimpl, registry
from kdbench.api import KDBenchError, Method

sys.path.insert(0, str(Path(__file__).parent / "plugins"))


def test_builtins_load_through_entry_points():
    reg = registry.load()
    for name in ("student", "teacher", "kd"):
        assert name in reg.methods
        assert reg.methods.entries[name].dist == "kdbench"
    assert {"amazon", "mnli"} <= set(reg.tasks.names())
    assert "single" in reg.teachers
    assert not reg.failures


def test_every_method_names_a_registered_teacher_kind_or_none():
    """``Method.teacher`` is a registered kind or ``None``: no sentinel strings ("none", "multi")."""
    reg = registry.load()
    kinds = set(reg.teachers.names())
    teachers = {name: e.cls.teacher for name, e in reg.methods.entries.items()}  # type: ignore[attr-defined]
    assert all(t is None or t in kinds for t in teachers.values()), teachers
    assert teachers["student"] is None and teachers["multiteacher"] == "single"
    for name, e in reg.methods.entries.items():  # every request is of a registered kind
        assert all(r.kind in kinds for r in e.cls().teacher_requests("a", ["a", "b"])), name  # type: ignore[attr-defined]


def test_every_teacher_kind_has_a_derived_row_with_its_options():
    """``teacher:<kind>`` rows come from the teacher kinds, not from one class per kind; the row of
    ``single`` is named ``teacher``, and a row takes its kind's options."""
    from kdbench.api import DerivedTeacherRow, TeacherRequest

    reg = registry.load()
    for kind in reg.teachers.names():
        cls = reg.teachers.get(kind)
        row = reg.methods.get("teacher" if kind == "single" else f"teacher:{kind}")
        assert isinstance(row, DerivedTeacherRow) and row.teacher == kind and row.Config is cls.Config
        assert row().teacher_requests("a", ["a", "b"]) == [TeacherRequest(kind, "a")]
    meta = reg.methods.get("teacher:meta")(reg.teachers.get("meta").Config(use_domain_corruption=False))
    assert meta.teacher_requests("a", ["a"]) == [TeacherRequest("meta", "a", {"use_domain_corruption": False})]
    assert {"teacher", "teacher:mix", "teacher:mtl", "teacher:meta"} <= set(reg.methods.names())


def test_third_party_plugin_is_registered():
    import kdbench_example_plugin

    reg = registry.load(extra_plugins=[kdbench_example_plugin])
    assert reg.methods.get("smooth").description.startswith("Student with label-smoothed")
    assert reg.methods.entries["smooth"].source == "kdbench_example_plugin"


def _plugin_with(name: str) -> types.SimpleNamespace:
    cls = type("M", (Method,), {"name": name, "description": "dup"})

    @hookimpl
    def kdbench_register_methods():
        return [cls]

    return types.SimpleNamespace(kdbench_register_methods=kdbench_register_methods)


def test_duplicate_name_is_refused():
    with pytest.raises(KDBenchError, match="duplicate method name 'kd'"):
        registry.load(extra_plugins=[_plugin_with("kd")])


def test_unknown_name_suggests():
    reg = registry.load()
    with pytest.raises(registry.UnknownNameError, match="did you mean 'kd'"):
        reg.methods.get("kdd")


def test_broken_plugin_is_reported_and_others_work(monkeypatch):
    import importlib.metadata as md

    real = md.entry_points

    def fake(group=None, **kw):
        eps = list(real(group=group))
        broken = md.EntryPoint(name="broken", value="kdbench_no_such_module_xyz", group="kdbench")
        return [*eps, broken]

    monkeypatch.setattr(md, "entry_points", fake)
    reg = registry.load()
    assert [f.name for f in reg.failures] == ["broken"]
    assert "ModuleNotFoundError" in reg.failures[0].error
    assert "kd" in reg.methods
    with pytest.raises(KDBenchError, match="plugin 'broken'"):
        registry.load(strict=True)


def test_autoload_can_be_disabled(monkeypatch):
    monkeypatch.setenv(registry.DISABLE_AUTOLOAD_ENV, "1")
    assert registry.load().methods.names() == []
