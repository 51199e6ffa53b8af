"""kdbench.results: atomic writes, tolerant reads, content hashes."""

from __future__ import annotations

import json
import os
import stat

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


# ------------------------------------------------------------- a results directory is untrusted input
def _good() -> dict:
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from _resultsets import cell

    return cell("kd", "books", 0, 80)


def test_scan_cells_keeps_good_cells_and_names_each_bad_file(tmp_path):
    cells = res.cells_dir(tmp_path)
    good = _good()
    res.atomic_write_json(cells / "good.json", good)
    (cells / "truncated.json").write_text(json.dumps(good)[:200])
    (cells / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    (cells / "list.json").write_text("[1, 2]")
    (cells / "latin1.json").write_bytes(b'{"a": "\xe9"}')
    bad = {
        "nan_accuracy": ("metrics", {"test_accuracy": float("nan")}),
        "big_accuracy": ("metrics", {"test_accuracy": 150.0}),
        "edited_accuracy": ("metrics", {"test_accuracy": 99.0}),
        "text_fraction": ("fraction", "abc"),
        "zero_fraction": ("fraction", 0.0),
        "float_seed": ("seed", 1.5),
        "bool_seed": ("seed", True),
        "negative_timing": ("timing", {"student_train_seconds": -3.0}),
        "list_method": ("method", ["kd"]),
        "short_preds": ("predictions", {"ids": ["a"], "pred": [1, 0], "gold": [1, 0]}),
    }
    for name, (key, value) in bad.items():
        (cells / f"{name}.json").write_text(json.dumps({**good, key: value}))  # NaN written as a JSON NaN
    (cells / "subdir.json").mkdir()
    cells_found, problems = res.scan_cells(tmp_path)
    assert [c["_file"] for c in cells_found] == ["good.json"]
    assert cells_found[0]["metrics"]["test_accuracy"] == 80.0
    by_file = {p.split(":")[0]: p for p in problems}
    expected = {"truncated.json": "not valid JSON", "deep.json": "not valid JSON", "list.json": "not a JSON object",
                "latin1.json": "not valid JSON", "nan_accuracy.json": "not a number in [0, 100]",
                "big_accuracy.json": "not a number in [0, 100]",
                "edited_accuracy.json": "stored test_accuracy 99.00 disagrees with its predictions (80.00)",
                "text_fraction.json": "not a number in (0, 1]", "zero_fraction.json": "not a number in (0, 1]",
                "float_seed.json": "not a non-negative integer", "bool_seed.json": "not a non-negative integer",
                "negative_timing.json": "not a non-negative number", "list_method.json": "method is not a name",
                "short_preds.json": "predictions have 2 pred", "subdir.json": "not a regular file"}
    assert set(by_file) == set(expected)
    for name, text in expected.items():
        assert text in by_file[name], by_file[name]
    assert all("\n" not in p for p in problems)


def test_scan_cells_never_opens_a_fifo(tmp_path):
    cells = res.cells_dir(tmp_path)
    cells.mkdir(parents=True)
    os.mkfifo(cells / "pipe.json")  # opening it for reading would block forever without a writer
    res.atomic_write_json(cells / "good.json", _good())
    found, problems = res.scan_cells(tmp_path)
    assert len(found) == 1 and problems == ["pipe.json: is not a regular file"]


def test_scan_cells_refuses_symlinks_out_of_the_results_directory(tmp_path):
    outside = tmp_path / "elsewhere"
    res.atomic_write_json(outside / "cells" / "good.json", _good())
    run = tmp_path / "run"
    run.mkdir()
    (run / "cells").symlink_to(outside / "cells")
    found, problems = res.scan_cells(run)
    assert found == [] and "a symlink out of the results directory" in problems[0]
    (run / "cells").unlink()
    (run / "cells").mkdir()
    (run / "cells" / "zero.json").symlink_to("/dev/zero")
    (run / "cells" / "inside.json").symlink_to(outside / "cells" / "good.json")
    found, problems = res.scan_cells(run)
    assert found == [] and len(problems) == 2
    assert all("symlink out of the results directory" in p for p in problems)


def test_names_lose_control_characters(tmp_path):
    evil = {**_good(), "method": "kd\x1b[31m\u202e\x07", "domain": "bo\x00oks"}
    (c, problem) = res.check_cell(evil)
    assert problem is None and c["method"] == "kd[31m" and c["domain"] == "books"
    assert res.check_cell({**_good(), "method": "\x1b\x07"})[1] == "method is not a name ('\\x1b\\x07')"


_JSON = st.recursive(st.none() | st.booleans() | st.floats(allow_nan=True) | st.integers() | st.text(max_size=8),
                     lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=5), kids, max_size=3),
                     max_leaves=8)
_PATHS = [("task",), ("domain",), ("method",), ("fraction",), ("seed",), ("status",), ("split_hash",), ("metrics",),
          ("metrics", "test_accuracy"), ("predictions",), ("predictions", "ids"), ("predictions", "pred"),
          ("predictions", "gold"), ("timing",), ("timing", "student_train_seconds"), ("params",),
          ("params", "model"), ("teachers",), ("schema",)]


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(_PATHS), _JSON)
def test_any_damaged_cell_is_kept_out_or_tabled_never_a_traceback(path, value):
    import copy

    from kdbench.api import KDBenchError
    from kdbench.tables import build_tables

    good = _good()
    student = {**copy.deepcopy(good), "method": "student"}
    damaged = copy.deepcopy(good)
    target = damaged
    for key in path[:-1]:
        target = target[key] if isinstance(target.get(key), dict) else target.setdefault(key, {})
    target[path[-1]] = value
    cell, problem = res.check_cell(damaged)
    assert (cell is None) != (problem is None)
    try:
        build_tables([student, damaged])
    except KDBenchError as exc:  # a refusal (e.g. a damaged split_hash mixing splits) is one line
        assert "\n" not in str(exc)


# ---------------------------------------------------------------------------------- CellResult
def test_cell_result_round_trips_a_stored_cell_file_exactly(tmp_path):
    """A cell file of the committed reference run reads back and writes the same JSON object."""
    from pathlib import Path

    folder = Path(__file__).parent.parent / "results" / "amazon-cpu-all" / "cells"
    for path in sorted(folder.glob("*.json"))[:5]:
        data = json.loads(path.read_text())
        result = res.CellResult.from_json(data)
        assert result.to_json() == data and dict(result) == data and result == data
        assert result.ok and result.metrics == data["metrics"] and result["seed"] == data["seed"]


def test_cell_result_made_here_writes_its_header_and_only_the_fields_it_has():
    failed = res.CellResult(status="failed", method="kd", task="t", domain="d", fraction=1.0, seed=0,
                            error="ValueError: x", traceback="tb")
    out = failed.to_json()
    assert out["error"] == "ValueError: x" and "metrics" not in out and "executor" not in out
    assert out["data_revision"] is None and out["schema"] == res.SCHEMA_VERSION  # header keys always
    assert failed.get("metrics", {}) == {} and "metrics" not in failed and not failed.ok
    with pytest.raises(KeyError):
        failed["extra"]  # the bookkeeping fields are not keys of the file


def test_cell_result_keeps_untrusted_values_and_unknown_keys():
    data = {"status": 5, "task": ["x"], "future_key": {"a": 1}, "metrics": None}
    result = res.CellResult.from_json(data)  # never raises: check_cell judges the values
    assert result.to_json() == data and result.extra == {"future_key": {"a": 1}}
    assert "domain" not in result and result.get("metrics", 0) is None
    assert res.check_cell(result)[1] == "lacks domain, method, fraction, seed"
