"""kdbench.results: atomic writes, tolerant reads, content hashes."""

from __future__ import annotations

import os
import stat

import pytest

from kdbench import results as res


@pytest.fixture
def umask_027():
    """Run under umask 027 (group may read, others nothing), then restore the old one."""
    old = os.umask(0o027)
    res.file_mode.cache_clear()
    yield
    os.umask(old)
    res.file_mode.cache_clear()


def test_atomic_write_gives_a_new_files_ordinary_permissions(tmp_path, umask_027):
    # mkstemp creates 0600 files; a results directory shared with a group must stay readable to it
    path = tmp_path / "cells" / "a.json"
    res.atomic_write_json(path, {"x": 1})
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert res.read_json(path) == {"x": 1}


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "a.json"
    res.atomic_write_json(path, {"x": 1})
    with pytest.raises(TypeError):
        res.atomic_write_bytes(path, "not bytes")  # type: ignore[arg-type]
    assert res.read_json(path) == {"x": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


@pytest.mark.parametrize("text", [None, "", '{"x": 1', "[1, 2]", "\x00\x01"])
def test_read_json_returns_none_for_missing_or_unusable_files(tmp_path, text):
    path = tmp_path / "a.json"
    if text is not None:
        path.write_text(text)
    assert res.read_json(path) is None


def test_config_hash_ignores_key_order_and_sees_values():
    assert res.config_hash({"a": 1, "b": [1, 2]}) == res.config_hash({"b": [1, 2], "a": 1})
    assert res.config_hash({"a": 1}) != res.config_hash({"a": 2})
    assert res.config_hash({"lr": 1e-4}) != res.config_hash({"lr": 1.0e-4 + 1e-12})


def test_load_cells_skips_unreadable_files_and_other_schemas(tmp_path):
    cells = res.cells_dir(tmp_path)
    res.atomic_write_json(cells / "ok.json", {"schema": res.SCHEMA_VERSION, "status": "ok"})
    res.atomic_write_json(cells / "old.json", {"schema": res.SCHEMA_VERSION + 1, "status": "ok"})
    (cells / "broken.json").write_text("{")
    assert res.load_cells(tmp_path) == [{"schema": res.SCHEMA_VERSION, "status": "ok"}]
