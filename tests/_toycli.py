"""In-process ``kdbench`` on the toy task (no data, seconds), for the hardening tests.

``toy_cli()`` patches :func:`kdbench.registry.load` so that every command also sees the toy task and
``brokentoy``, a task whose ``load()`` raises a plain ``RuntimeError`` (a plugin bug). ``finished``
builds a results directory with finished ok cells, teacher checkpoints and teacher-logits caches.
"""

from __future__ import annotations

import contextlib
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from kdbench import hookimpl, registry
from kdbench.testing import ToyTask

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping


class BrokenToyTask(ToyTask):
    name = "brokentoy"
    description = "A task plugin with a bug: load() raises RuntimeError"

    def load(self) -> Any:
        raise RuntimeError("boom: a bug in the plugin\nsecond line of the message")


class _Plugin:
    @hookimpl
    def kdbench_register_tasks(self) -> list[type[ToyTask]]:
        return [ToyTask, BrokenToyTask]


@contextlib.contextmanager
def toy_cli() -> Iterator[None]:
    real = registry.load
    mp = pytest.MonkeyPatch()
    mp.setattr(registry, "load", lambda extra_plugins=None, **kw: real([*(extra_plugins or []), _Plugin()], **kw))
    mp.setenv("HF_HUB_OFFLINE", "1")  # a hub id that is not a model fails fast, without the network
    mp.delenv("KDBENCH_DATA_DIR", raising=False)
    try:
        yield
    finally:
        mp.undo()


@dataclass
class Outcome:
    code: int
    out: str
    err: str


def invoke(argv: list[str], env: Mapping[str, str] | None = None) -> Outcome:
    """``kdbench ARGV`` in this process: exit code (argparse's SystemExit included), stdout, stderr."""
    from kdbench.cli import main

    out, err = io.StringIO(), io.StringIO()
    saved = {k: os.environ.get(k) for k in (env or {})}
    os.environ.update(env or {})
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(argv)
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 2
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return Outcome(int(code), out.getvalue(), err.getvalue())


#: the finished grid: 2 cells (student, kd) on one toy domain, one teacher, one logits cache
BASE = ["--tasks", "toy", "--domains", "garden", "--profile", "tiny", "--methods", "student,kd",
        "--fractions", "0.25"]


def make_finished(root: Path) -> tuple[Path, Path]:
    """A finished results directory (and its cache directory) under ``root``."""
    results, cache = root / "results", root / "cache"
    with toy_cli():
        done = invoke(["run", *BASE, "--results-dir", str(results), "--cache-dir", str(cache)])
    assert done.code == 0, done.err
    assert len(list((results / "cells").glob("*.json"))) == 2
    return results, cache


def snapshot(root: Path) -> dict[str, bytes]:
    """Every regular file under ``root`` and its bytes."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
