"""Meta-tests that keep the hook surface honest (as datasette does)."""

from __future__ import annotations

import inspect

from kdbench import hookspecs


def hooks():
    return [f for name, f in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("kdbench_")]


def test_every_hook_is_prefixed_typed_and_documented():
    specs = hooks()
    assert len(specs) >= 6
    for f in specs:
        assert f.__doc__ and len(f.__doc__.strip()) > 20, f.__name__
        sig = inspect.signature(f)
        assert sig.return_annotation is not inspect.Signature.empty, f.__name__
        for p in sig.parameters.values():
            assert p.annotation is not inspect.Parameter.empty, (f.__name__, p.name)


def test_every_hook_is_documented_in_readme():
    from pathlib import Path

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    for f in hooks():
        assert f.__name__ in readme, f"{f.__name__} missing from README"
