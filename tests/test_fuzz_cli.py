"""Fuzzing whole ``kdbench`` invocations in-process (issue #18, §5).

Hypothesis draws flags and values (valid, invalid and random text), config files, thread settings
and damage done to a copy of a finished results directory, runs ``kdbench.cli.main`` and checks:

- the exit code is 0, 1, 2 or 130 (argparse's usage errors included);
- no traceback, on stdout or stderr;
- no output line longer than 400 characters, unless it lists the valid names ("choose from:");
- no finished cell file changed, except those of cells the run recomputed.

Training is replaced by a stub that fails the cell at once (``Runner.evaluate_cell``), so a valid
invocation goes through every check and the real recording path in milliseconds; which cells it
recomputed is recorded by the stub. The fraction, plugin, device and model checks are the real ones.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).parent))
from _toycli import BASE, invoke, make_finished, snapshot, toy_cli  # noqa: E402

EXIT_CODES = {0, 1, 2, 130}
MAX_LINE = 400

junk = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=30)

FLAG_VALUES: dict[str, list[str]] = {
    "--methods": ["student", "kd", "student,kd", "kdd", "", ",", "kd,kd", "teacher"],
    "--tasks": ["toy", "toyy", "brokentoy", "toy,brokentoy", ""],
    "--domains": ["garden", "kitchen", "garden,kitchen", "books", ""],
    "--fractions": ["0.25", "1.0", "0.5", "0", "1e-9", "0.01", "nan", "inf", "0.25,0.25", "-1"],
    "--seeds": ["1", "2", "0", "-1", "1e3", str(10**30), "1.5"],
    "--profile": ["tiny", "nope", "", "paper"],
    "--teacher": ["tiny:L1-H32-A2", "tiny:L0-H0-A0", "tiny:L2-H30-A4", "no-org/no-model", "tiny:", ""],
    "--student": ["tiny:L1-H32-A4", "tiny:L1-H8-A3", "/nonexistent/model", " "],
    "--device": ["cpu", "auto", "cuda:7", "tpu", "mps", "", "cuda:-1"],
    "--precision": ["fp32", "bf16", "fp8", "auto"],
    "--set": ["kd.alpha=0.7", "kd.alpha=0.6", "kd.alpha=2", "kd.x=1", "kd", "student.x=1", "=", "kd.=1"],
    "--teacher-cache-mb": ["0", "-1", "nan", "abc", "1e400", "16"],
    "--executor": ["local", "dask"],
    "--ray-num-cpus": ["1"],
    "--data-dir": ["", "/nonexistent/data"],
}
SWITCHES = ["--no-reuse", "--compile", "--fraction-all-domains", "--strict-plugins", "--help"]

CONFIG_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-3, 10**20), st.floats(allow_nan=True),
                          junk, st.lists(st.one_of(junk, st.integers()), max_size=3),
                          st.dictionaries(junk, st.one_of(junk, st.integers()), max_size=2),
                          st.sampled_from(["student,kd", "toy", "garden", "tiny", "cpu", "0.25", "kd.alpha=1"]))
CONFIG_KEYS = ["methods", "tasks", "domains", "fractions", "seeds", "profile", "teacher", "student", "device",
               "precision", "options", "compile", "reuse", "teacher_cache_mb", "executor", "results_dir",
               "cache_dir", "fraction_all_domains", "seed", "ray_max_retries"]

DAMAGES = ["truncate", "garbage", "empty", "delete", "wrong-shape", "deep", "directory", "bad-hash",
           "teacher-garbage", "teacher-meta", "logits-garbage", "logits-hash", "stale-lock", "lock-huge-pid",
           "run-json"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_finished(tmp_path_factory.mktemp("finished"))


@pytest.fixture(scope="module")
def stubbed():
    """Training replaced by a stub that records the cell and fails it at once."""
    from kdbench import runner

    evaluated: list[str] = []

    def stub(self, cell):
        evaluated.append(str(self.cell_path(cell)))
        raise RuntimeError("fuzz: training skipped")

    mp = pytest.MonkeyPatch()
    mp.setattr(runner.Runner, "evaluate_cell", stub)
    with toy_cli():
        yield evaluated
    mp.undo()


def damage(results: Path, kind: str, data: st.DataObject) -> None:
    cells = sorted(p for p in (results / "cells").glob("*.json") if p.is_file())
    if not cells and kind in DAMAGES[:8]:
        return
    cell = data.draw(st.sampled_from(cells)) if kind in DAMAGES[:8] else None
    teacher = next((results / "teachers").iterdir())
    logits = sorted((results / "cache" / "teacher-logits").glob("*.npy"))
    if kind == "truncate":
        cell.write_bytes(cell.read_bytes()[: data.draw(st.integers(0, 200))])
    elif kind == "garbage":
        cell.write_bytes(data.draw(st.binary(max_size=64)))
    elif kind == "empty":
        cell.write_bytes(b"")
    elif kind == "delete":
        cell.unlink()
    elif kind == "wrong-shape":
        cell.write_text(json.dumps(data.draw(st.sampled_from(
            [[], 3, "ok", {"status": "ok"}, {"status": "ok", "metrics": "x", "config_hash": 5},
             {"schema": 1, "status": "ok", "method": 7, "metrics": {"test_accuracy": "high"}}]))))
    elif kind == "deep":
        cell.write_text("[" * 100_000 + "]" * 100_000)
    elif kind == "directory":
        cell.unlink()
        cell.mkdir()
    elif kind == "bad-hash":
        obj = json.loads(cell.read_text())
        obj["config_hash"] = "0" * 16
        cell.write_text(json.dumps(obj))
    elif kind == "teacher-garbage":
        (teacher / "model.safetensors").write_bytes(b"\0" * 64)
    elif kind == "teacher-meta":
        (teacher / "meta.json").write_text("{not json")
    elif kind == "logits-garbage" and logits:
        logits[0].write_bytes(b"\x93NUMPY garbage")
    elif kind == "logits-hash" and logits:
        logits[0].with_suffix(".sha256").write_text("0" * 64)
    elif kind == "stale-lock":
        (results / ".kdbench.lock").write_text(data.draw(st.sampled_from(["", "{", "[]", '{"pid": -1}'])))
    elif kind == "lock-huge-pid":
        import socket

        (results / ".kdbench.lock").write_text(json.dumps({"pid": 10**30, "host": socket.gethostname()}))
    elif kind == "run-json":
        (results / "run.json").write_bytes(b"\xff\xfe")


def check(got, results: Path, before: dict[str, bytes], recomputed: set[str], file_format: bool = False) -> None:
    """``file_format``: stdout is LaTeX, CSV or Markdown, whose lines are as long as their content."""
    assert got.code in EXIT_CODES, (got.code, got.err[-3000:])
    assert "Traceback" not in got.out + got.err, got.err[-3000:]
    for line in (got.err if file_format else got.out + got.err).splitlines():
        assert len(line) <= MAX_LINE or "choose from:" in line, line[:500]
    after = snapshot(results)
    for name, data in before.items():
        if not name.startswith("cells/"):
            continue
        path = str(results / name)
        if path not in recomputed:
            assert after.get(name) == data, f"{name} changed though its cell was not recomputed"


@st.composite
def run_argv(draw: st.DrawFn, scratch: Path) -> tuple[list[str], dict[str, str]]:
    argv = ["run"]
    flags = draw(st.lists(st.sampled_from(sorted(FLAG_VALUES)), max_size=4, unique=True))
    for flag in flags:
        argv += [flag, draw(st.one_of(st.sampled_from(FLAG_VALUES[flag]), junk))]
    argv += draw(st.lists(st.sampled_from(SWITCHES), max_size=2, unique=True))
    if draw(st.booleans()):
        cfg = scratch / "run.yaml"
        if draw(st.integers(0, 9)) == 0:
            cfg.write_bytes(draw(st.binary(max_size=40)))
        else:
            entries = draw(st.dictionaries(st.sampled_from(CONFIG_KEYS), CONFIG_VALUES, max_size=3))
            cfg.write_text(yaml.safe_dump(entries, allow_unicode=True))
        argv += ["--config", str(cfg)]
    env = {}
    if draw(st.integers(0, 5)) == 0:
        env[draw(st.sampled_from(["KDBENCH_THREADS", "OMP_NUM_THREADS"]))] = draw(
            st.sampled_from(["1", "", "0", "x", "-3", " 2 "]))
    return argv, env


FUZZ = settings(max_examples=40, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large])


@FUZZ
@given(data=st.data())
def test_fuzz_run(finished, stubbed, data):
    src, cache = finished
    with tempfile.TemporaryDirectory() as tmp:
        results = Path(tmp) / "results"
        shutil.copytree(src, results)
        for kind in data.draw(st.lists(st.sampled_from(DAMAGES), max_size=2, unique=True)):
            damage(results, kind, data)
        argv, env = data.draw(run_argv(Path(tmp)))
        given = set(argv)
        base = [x for flag, value in zip(BASE[::2], BASE[1::2], strict=True) if flag not in given for x in (flag, value)]
        full = [*argv, *base, "--cache-dir", str(cache)]
        if "--results-dir" not in given:
            full += ["--results-dir", str(results)]
        before = snapshot(results)
        stubbed.clear()
        got = invoke(full, env)
        event(f"exit {got.code}" + (" (cells recomputed)" if stubbed else ""))
        check(got, results, before, set(stubbed))


@settings(FUZZ, max_examples=20)
@given(data=st.data())
def test_fuzz_table_and_plot(finished, stubbed, data):
    src, _ = finished
    with tempfile.TemporaryDirectory() as tmp:
        results = Path(tmp) / "results"
        shutil.copytree(src, results)
        safe = [d for d in DAMAGES if d != "deep"]  # read by tables.py: hardened by the results-directory work
        for kind in data.draw(st.lists(st.sampled_from(safe), max_size=2, unique=True)):
            damage(results, kind, data)
        command = data.draw(st.sampled_from(["table", "plot", "list"]))
        argv = [command] + ([] if command == "list" else [str(results)])
        if command == "table":
            argv += data.draw(st.lists(st.sampled_from([
                ["--layout", "paper"], ["--layout", "nope"], ["--format", "markdown"], ["--format", "csv"],
                ["--format", "latex"], ["--format", "xlsx"], ["--baseline", "kd"], ["--baseline", "nope"],
                ["-o", str(Path(tmp) / "t.md")], ["-o", str(Path(tmp) / "missing" / "t.md")], ["-o", tmp],
                ["--reference", str(Path(tmp) / "nope.yaml")]]), max_size=3).map(lambda xs: sum(xs, [])))
        elif command == "plot":
            argv += ["-o", data.draw(st.sampled_from([str(Path(tmp) / "p.png"), str(Path(tmp) / "no" / "p.png"),
                                                      str(Path(tmp) / "p.txt"), ""]))]
        before = snapshot(results)
        got = invoke(argv)
        event(f"{command}: exit {got.code}")
        check(got, results, before, set(), file_format="--format" in argv)
        assert snapshot(results) == before  # reading a results directory never writes into it
