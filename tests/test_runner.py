"""Runner guarantees: crash-safe resume (SIGKILL, SIGINT), run lock, failed cells, corrupt files,
determinism. Small tiny-profile grids on the toy task (no data needed: about a second per cell); the
CLI runs in a subprocess that registers the toy task as a plugin would (:data:`TOY_CLI`)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from kdbench import hookimpl, registry, runner
from kdbench.api import KDBenchError
from kdbench.config import RunConfig
from kdbench.lock import LOCK_NAME, run_lock
from kdbench.testing import toy_plugin

sys.path.insert(0, str(Path(__file__).parent / "plugins"))

#: 18 cells (3 methods x 2 domains x 3 seeds): long enough to be interrupted after the first ones
GRID = ["--profile", "tiny", "--tasks", "toy", "--domains", "garden,kitchen", "--fractions", "0.25",
        "--methods", "student,kd,teacher", "--seeds", "3"]

#: ``kdbench`` in a subprocess, with the toy task registered besides the installed plugins
TOY_CLI = """import sys
from kdbench import registry
from kdbench.testing import toy_plugin
real = registry.load
registry.load = lambda extra_plugins=None, **kw: real([*(extra_plugins or []), toy_plugin()], **kw)
from kdbench.cli import main
sys.exit(main(sys.argv[1:]))
"""


def config(tmp: Path, cache_dir: Path, **kw) -> RunConfig:
    base = {"profile": "tiny", "tasks": "toy", "domains": "garden", "fractions": "0.25",
            "methods": "student", "cache_dir": cache_dir, "results_dir": tmp}
    return RunConfig.from_sources({**base, **kw})


def toy_registry(*plugins: object) -> registry.Registry:
    return registry.load(extra_plugins=[*plugins, toy_plugin()])


def cli_argv(*args: str) -> list[str]:
    return [sys.executable, "-c", TOY_CLI, *args]


def cli(*args: str, env_extra: dict | None = None) -> subprocess.Popen:
    env = {**os.environ, **(env_extra or {})}
    return subprocess.Popen(cli_argv(*args), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_cells(cells: Path, n: int, proc: subprocess.Popen, timeout: float = 300) -> None:
    t0 = time.time()
    while len(list(cells.glob("*.json"))) < n:
        assert proc.poll() is None, proc.communicate()
        assert time.time() - t0 < timeout
        time.sleep(0.2)


def test_sigkill_then_resume_loses_nothing(tmp_path):
    results = tmp_path / "r"
    args = [*GRID, "--cache-dir", str(tmp_path / "cache"), "--results-dir", str(results)]
    proc = cli("run", *args)
    wait_for_cells(results / "cells", 2, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = {p.name: p.read_bytes() for p in (results / "cells").glob("*.json")}
    assert before and (results / LOCK_NAME).exists()  # a stale lock is left behind

    done = subprocess.run(cli_argv("run", *args), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    files = sorted((results / "cells").glob("*.json"))
    assert len(files) == 18 and len({f.name for f in files}) == 18
    for name, data in before.items():
        assert (results / "cells" / name).read_bytes() == data  # finished cells untouched
    leftovers = [p for p in results.rglob("*") if p.name.endswith(".tmp") or p.name == LOCK_NAME]
    assert leftovers == []
    assert all(json.loads(f.read_text())["status"] == "ok" for f in files)
    from kdbench import tables

    (table,) = tables.build(results)  # the results table is complete: every entry, the average too
    assert {r.method for r in table.rows} == {"student", "kd", "teacher"}
    assert all(e.summary is not None for r in table.rows for e in r.entries)


def test_sigint_exits_130_and_resumes(tmp_path):
    results = tmp_path / "r"
    args = [*GRID, "--domains", "garden", "--cache-dir", str(tmp_path / "cache"), "--results-dir", str(results)]
    proc = cli("run", *args)
    wait_for_cells(results / "cells", 1, proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "rerun the same command to resume" in err and "Traceback" not in err
    assert not (results / LOCK_NAME).exists()
    done = subprocess.run(cli_argv("run", *args), capture_output=True, text=True)
    assert done.returncode == 0 and len(list((results / "cells").glob("*.json"))) == 9


HOLD_LOCK = """
import sys, time
from pathlib import Path
from kdbench.lock import run_lock
with run_lock(Path(sys.argv[1])):
    print("locked", flush=True)
    time.sleep(60)
"""


def test_run_lock_refuses_a_live_owner_and_takes_over_a_stale_one(tmp_path):
    owner = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert owner.stdout.readline().strip() == "locked"
        assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == owner.pid
        with pytest.raises(KDBenchError, match=f"in use by another kdbench run \\(pid {owner.pid}\\)"), \
                run_lock(tmp_path):
            pass
    finally:
        owner.kill()  # SIGKILL: the OS releases its lock, its owner file stays behind
        owner.wait()
    assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == owner.pid
    with run_lock(tmp_path):  # the owner is gone: stale, taken over
        assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
    assert not (tmp_path / LOCK_NAME).exists()


def test_run_lock_ignores_a_live_pid_without_the_os_lock(tmp_path):
    # The hand-written lock trusted a live pid, so a reused pid kept a dead run's lock; now only the
    # OS lock counts: an owner file naming a live process of this host that holds no lock is stale.
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": sleeper.pid, "host": socket.gethostname()}))
        with run_lock(tmp_path):
            assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
    finally:
        sleeper.kill()
        sleeper.wait()


def test_run_lock_of_another_host_is_kept_and_says_how_to_clear_it(tmp_path):
    # A shared filesystem: the owner's pid means nothing here, so the lock stands; the message says
    # what to do when that run is gone (the machine was replaced, say).
    lock = tmp_path / LOCK_NAME
    lock.write_text(json.dumps({"pid": os.getpid(), "host": "elsewhere"}))
    with pytest.raises(KDBenchError, match=r"\(pid \d+ on elsewhere\).*if no run is alive there, delete "), \
            run_lock(tmp_path):
        pass
    assert json.loads(lock.read_text())["host"] == "elsewhere"


def test_non_finite_loss_and_oom_fail_the_cell_not_the_grid(tmp_path):
    import kdbench_faulty_plugin

    reg = toy_registry(kdbench_faulty_plugin)
    summary = runner.run(config(tmp_path, tmp_path / "cache", methods="nan3,oom,student"), reg)
    assert summary.exit_code == 1 and summary.ok == 1
    cells = {c["method"]: c for c in map(lambda p: json.loads(p.read_text()), (tmp_path / "cells").glob("*"))}
    assert cells["nan3"]["status"] == "failed"
    assert cells["nan3"]["error"] == "NonFiniteLossError: non-finite loss at step 3"
    assert cells["oom"]["status"] == "failed" and "OutOfMemoryError" in cells["oom"]["error"]
    assert cells["student"]["status"] == "ok"


def test_release_memory_only_acts_on_cuda_oom(monkeypatch):
    from kdbench import device

    calls = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: calls.append(1))
    device.release_memory(ValueError("x"))
    device.release_memory(torch.cuda.OutOfMemoryError("CUDA out of memory"))
    assert calls == [1]


def test_corrupt_cell_and_teacher_are_recomputed(tmp_path):
    reg = toy_registry()
    cfg = config(tmp_path, tmp_path / "cache", methods="student,kd")
    assert runner.run(cfg, reg).teachers_trained == 1
    cell = tmp_path / "cells" / "toy__garden__student__f0.25__s0.json"
    cell.write_text(cell.read_text()[:100])  # truncated
    (teacher,) = (tmp_path / "teachers").iterdir()
    (teacher / "model.safetensors").write_bytes(b"garbage")
    (tmp_path / "cells" / "toy__garden__kd__f0.25__s0.json").unlink()
    messages: list[str] = []

    class Rec:
        @hookimpl
        def kdbench_message(self, text: str) -> None:
            messages.append(text)

    reg = toy_registry()
    reg.pm.register(Rec())
    s = runner.run(cfg, reg)
    assert (s.ok, s.skipped, s.teachers_trained) == (2, 0, 1)
    assert any("unreadable result file" in m for m in messages)
    assert any("does not match its recorded sha256; retraining" in m for m in messages)  # garbage bytes
    assert json.loads(cell.read_text())["status"] == "ok"


def test_same_command_twice_is_deterministic_on_cpu(tmp_path):
    """Also from two fresh caches: the tiny profile's tokenizer is built deterministically."""
    out = []
    for name in ("a", "b"):
        runner.run(config(tmp_path / name, tmp_path / f"{name}-cache", methods="student,kd"), toy_registry())
        cells = sorted((tmp_path / name / "cells").glob("*.json"))
        out.append([(json.loads(p.read_text())["metrics"], json.loads(p.read_text())["predictions"],
                     json.loads(p.read_text())["train"]["losses"]) for p in cells])
    assert out[0] == out[1]


def test_cuda_branches_without_a_gpu(monkeypatch):
    """The CUDA-only code paths, with the CUDA calls mocked."""
    from kdbench import device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert device.resolve_device("auto").type == "cuda"
    assert device.resolve_precision("auto", torch.device("cuda")) == "bf16"
    assert device.resolve_precision("auto", torch.device("cpu")) == "fp32"
    seen = {}
    monkeypatch.setattr(torch, "autocast", lambda device_type, dtype: seen.update(t=device_type, d=dtype))
    device.autocast(torch.device("cuda"), "bf16")
    assert seen == {"t": "cuda", "d": torch.bfloat16}
    device.setup(torch.device("cuda"))
    assert torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False

    moved = {}

    class FakeTensor:
        def pin_memory(self):
            moved["pinned"] = True
            return self

        def to(self, dev, non_blocking=False):
            moved["non_blocking"] = non_blocking
            return self

    device.to_device({"x": FakeTensor()}, torch.device("cuda"))
    assert moved == {"pinned": True, "non_blocking": True}


# ------------------------------------------------------------------ integrity of stored files (#18 §4)
def _finished_toy(tmp_path: Path) -> tuple[Path, Path, list[str]]:
    sys.path.insert(0, str(Path(__file__).parent))
    from _toycli import BASE, make_finished

    results, cache = make_finished(tmp_path)
    return results, cache, ["run", *BASE, "--results-dir", str(results), "--cache-dir", str(cache)]


def _rerun_kd(results: Path, args: list[str]) -> tuple[dict, dict, Any]:
    """Delete the toy run's kd cell and rerun: the cell before, the cell after, and the invocation."""
    from _toycli import invoke, toy_cli

    kd = results / "cells" / "toy__garden__kd__f0.25__s0.json"
    before = json.loads(kd.read_text())
    kd.unlink()
    with toy_cli():
        got = invoke(args)
    assert got.code == 0, got.err
    return before, json.loads(kd.read_text()), got


def test_tampered_teacher_checkpoint_is_retrained_with_a_warning(tmp_path):
    """A well-formed checkpoint whose bytes differ from the sha256 in meta.json is not used."""
    from safetensors.torch import load_file, save_file

    results, _, args = _finished_toy(tmp_path)
    (folder,) = list((results / "teachers").iterdir())
    meta = json.loads((folder / "meta.json").read_text())
    assert len(meta["sha256"]) == 64
    weights = load_file(str(folder / "model.safetensors"))
    save_file({k: v * 0 for k, v in weights.items()}, str(folder / "model.safetensors"))  # loads fine
    before, after, got = _rerun_kd(results, args)
    text = " ".join((got.out + got.err).split())
    assert "does not match its recorded sha256; retraining" in text and "1 teacher(s) trained" in text
    assert after["predictions"] == before["predictions"]  # the retrained teacher, not the zeroed one
    assert after["train"]["losses"] == before["train"]["losses"]
    import hashlib

    new_meta = json.loads((folder / "meta.json").read_text())
    assert new_meta["sha256"] == hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()


def test_tampered_teacher_logits_cache_is_recomputed_with_a_warning(tmp_path):
    """A well-formed cache of all-1e30 logits (the issue's example) is detected and recomputed."""
    import numpy as np

    results, _, args = _finished_toy(tmp_path)
    caches = sorted((results / "cache" / "teacher-logits").glob("*.npy"))
    assert caches and all(p.with_suffix(".sha256").is_file() for p in caches)
    for p in caches:
        np.save(p, np.full_like(np.load(p), 1e30), allow_pickle=False)
    before, after, got = _rerun_kd(results, args)
    assert "does not match its recorded sha256" in got.err
    assert after["predictions"] == before["predictions"] and after["train"]["losses"] == before["train"]["losses"]
    assert all(np.abs(np.load(p)).max() < 1e6 for p in caches)  # recomputed in place


# ----------------------------------------------------------- variants, cell identity, teacher settings
# On the in-memory toy task (no data needed), tiny profile: seconds per cell.
def toy(tmp: Path, **kw) -> RunConfig:
    base = {"profile": "tiny", "tasks": "toy", "domains": "garden", "fractions": "0.25", "methods": "student",
            "results_dir": tmp, "cache_dir": tmp / "cache"}
    return RunConfig.from_sources({**base, **kw})


@pytest.fixture(scope="module")
def toy_reg():
    from kdbench.testing import toy_plugin

    return registry.load([toy_plugin()])


def read_cells(path: Path) -> dict[str, dict]:
    return {p.name: json.loads(p.read_text()) for p in sorted((path / "cells").glob("*.json"))}


def test_variants_are_rows_with_their_own_cells(tmp_path, toy_reg):
    from kdbench.tables import build_tables

    summary = runner.run(toy(tmp_path, methods="kd,kd[temperature=4]", options=["kd.alpha=0.7"]), toy_reg)
    assert summary.ok == 2 and summary.teachers_trained == 1  # the variant shares kd's teacher
    cells = {c["method"]: c for c in read_cells(tmp_path).values()}
    assert set(cells) == {"kd", "kd[temperature=4]"}
    kd, t4 = cells["kd"], cells["kd[temperature=4]"]
    assert kd["config"]["method_options"] == {"alpha": 0.7, "temperature": 1.0}  # --set: kd's own row ...
    assert t4["config"]["method_options"] == {"alpha": 0.7, "temperature": 4.0}  # ... under the variant's options
    assert "variant" not in kd["config"] and t4["config"]["variant"] == {"method": "kd", "options": {"temperature": 4.0}}
    assert {r.method for r in build_tables(read_cells(tmp_path).values(), n_boot=100)[0].rows} == \
        {"kd", "kd[temperature=4]"}


def test_close_fractions_write_two_cells(tmp_path, toy_reg):
    summary = runner.run(toy(tmp_path, fractions="0.1234567,0.1234568"), toy_reg)
    assert summary.ok == 2
    assert sorted(read_cells(tmp_path)) == ["toy__garden__student__f0.1234567__s0.json",
                                            "toy__garden__student__f0.1234568__s0.json"]
    assert {c["fraction"] for c in read_cells(tmp_path).values()} == {0.1234567, 0.1234568}


def test_a_failed_recomputation_keeps_the_earlier_ok_result(tmp_path, toy_reg, monkeypatch):
    assert runner.run(toy(tmp_path, methods="kd"), toy_reg).ok == 1
    path = tmp_path / "cells" / "toy__garden__kd__f0.25__s0.json"
    before = path.read_bytes()
    old_hash = json.loads(before)["config_hash"]

    def boom(self, cell):
        raise RuntimeError("recomputation failed")

    monkeypatch.setattr(runner.Runner, "evaluate_cell", boom)
    summary = runner.run(toy(tmp_path, methods="kd", options=["kd.alpha=0.9"]), toy_reg)  # config changed
    assert summary.exit_code == 1
    assert json.loads(path.read_text())["status"] == "failed"
    kept = tmp_path / "cells" / "superseded" / f"toy__garden__kd__f0.25__s0.{old_hash}.json"
    assert kept.read_bytes() == before
    assert summary.superseded == [("toy__garden__kd__f0.25__s0", str(kept), "its recomputation failed")]


def test_teacher_seeds_one_trains_each_teacher_once(tmp_path, toy_reg):
    summary = runner.run(toy(tmp_path, methods="kd", seeds="3", teacher_seeds="1", domains="garden,kitchen"),
                         toy_reg)
    assert summary.ok == 6 and summary.teachers_trained == 2  # one per domain, not one per domain and seed
    cells = read_cells(tmp_path).values()
    assert {c["teacher_seeds"] for c in cells} == {1} and {c["teacher_seed"] for c in cells} == {0}
    for domain in ("garden", "kitchen"):
        keys = {c["teachers"][0]["key"] for c in cells if c["domain"] == domain}
        assert len(keys) == 1
    # seed 0 is the default run's cell; seeds 1, 2 record the teacher seed in their config
    assert ["teacher_seed" in c["config"] for c in sorted(cells, key=lambda c: (c["domain"], c["seed"]))] == \
        [False, True, True] * 2


def test_held_out_domain_teachers_never_see_the_target(tmp_path, toy_reg, monkeypatch):
    import kdbench_methods.mix as mix

    seen: list[str] = []
    real = mix.pooled

    def spy(ctx, split):
        out = real(ctx, split)
        seen.extend(ex.id for ex in out)
        return out

    monkeypatch.setattr(mix, "pooled", spy)
    summary = runner.run(toy(tmp_path, methods="mix,kd", teacher_domains="others"), toy_reg)
    assert summary.ok == 2 and summary.teachers_trained == 2  # the mix teacher and kd's single teacher
    assert seen and not any(i.startswith("toy/garden/") for i in seen)  # target garden: never trained on
    assert any(i.startswith("toy/kitchen/train/") for i in seen)
    cells = {c["method"]: c for c in read_cells(tmp_path).values()}
    assert cells["mix"]["teachers"][0]["domains"] == ["kitchen"]
    assert cells["mix"]["teacher_domains"] == "others" and cells["mix"]["config"]["teacher_domains"] == "others"
    # kd's single-domain teacher is the same in both settings: its cell is not marked
    assert cells["kd"]["teacher_domains"] is None and "teacher_domains" not in cells["kd"]["config"]
    # held-out cells have files of their own, so both settings can share a results directory
    assert sorted(read_cells(tmp_path)) == ["toy__garden__kd__f0.25__s0.json",
                                            "toy__garden__mix__f0.25__s0__teachers-others.json"]
