"""kdbench.ray_executor: the tiny grid on a local Ray cluster gives the local executor's cells, and
resumes the same way. Needs the ``ray`` extra (``.ci/run`` installs it, so these run in CI)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from kdbench import hookimpl, ray_executor, registry, runner
from kdbench.config import RunConfig
from kdbench.results import CellResult
from kdbench.testing import toy_plugin

try:
    import ray
except ImportError:
    if os.environ.get("CI"):  # .ci/run installs the extra: missing there is a failure, not a skip
        raise
    pytest.skip("the ray extra is not installed (pip install -e '.[ray]')", allow_module_level=True)

# on the toy task (no data needed): these tests are about the executor; the driver ships the toy
# plugin to the workers with the run's other in-process plugins
GRID = {"profile": "tiny", "tasks": "toy", "domains": "garden,kitchen", "fractions": "0.25",
        "methods": "student,kd,teacher"}  # 6 cells, 2 single teachers, each shared by kd and teacher


def config(results: Path, **kw) -> RunConfig:
    return RunConfig.from_sources({**GRID, "cache_dir": results.parent / "cache", "results_dir": results, **kw})


def toy_registry() -> registry.Registry:
    return registry.load([toy_plugin()])


def cells(results: Path) -> dict[str, dict]:
    return {p.name: json.loads(p.read_text()) for p in sorted((results / "cells").glob("*.json"))}


@pytest.fixture(scope="module")
def local_ray():
    # One torch thread in this process and in every worker (they inherit the environment at
    # ray.init): reductions then run in the same order, so loss curves match bit for bit. With
    # different thread counts, metrics and predictions still match, losses only to ~1e-6.
    before = os.environ.get("KDBENCH_THREADS")
    os.environ["KDBENCH_THREADS"] = "1"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()
    if before is None:
        del os.environ["KDBENCH_THREADS"]
    else:
        os.environ["KDBENCH_THREADS"] = before


def test_ray_grid_matches_local_then_resumes_one_cell(tmp_path, local_ray):
    local = runner.run(config(tmp_path / "local"), toy_registry())
    assert local.exit_code == 0 and local.ok == 6

    on_ray = runner.run(config(tmp_path / "ray", executor="ray"), toy_registry())
    assert on_ray.exit_code == 0, on_ray.failed
    assert (on_ray.ok, on_ray.teachers_trained) == (6, 2)  # each domain's teacher once, cluster-wide
    want, got = cells(tmp_path / "local"), cells(tmp_path / "ray")
    assert sorted(got) == sorted(want)
    for name, cell in got.items():
        assert cell["status"] == "ok" and cell["executor"]["name"] == "ray" and cell["executor"]["seconds"] > 0
        for field in ("metrics", "predictions", "config_hash", "split_hash", "train_hash"):
            assert cell[field] == want[name][field], (name, field)
        assert cell["train"]["losses"] == want[name]["train"]["losses"], name
    # The driver stored the teachers in the results directory, as a local run does.
    assert len(list((tmp_path / "ray" / "teachers").glob("*/meta.json"))) == 2

    # Resume: delete one cell; only that cell runs, its teacher comes from the results directory.
    before = {p.name: p.read_bytes() for p in (tmp_path / "ray" / "cells").glob("*.json")}
    victim = next(n for n in before if "__kd__" in n)
    (tmp_path / "ray" / "cells" / victim).unlink()
    again = runner.run(config(tmp_path / "ray", executor="ray"), toy_registry())
    assert (again.ok, again.skipped, again.teachers_trained, again.failed) == (1, 5, 0, [])
    for name, data in before.items():
        if name != victim:
            assert (tmp_path / "ray" / "cells" / name).read_bytes() == data
    assert cells(tmp_path / "ray")[victim]["metrics"] == want[victim]["metrics"]


def test_a_cell_whose_task_fails_on_ray_is_recorded_as_failed(tmp_path, local_ray,
                                                               monkeypatch):
    """Worker-side failures that escape the cell (here: the task is cancelled) become failed cells."""
    cfg = config(tmp_path / "r", executor="ray", methods="student", domains="garden")
    real = ray_executor.compute_cell

    def boom(*args, **kwargs):
        raise ray.exceptions.TaskCancelledError()

    monkeypatch.setattr(ray_executor, "compute_cell", boom)  # pickled by value into the worker
    summary = runner.run(cfg, toy_registry())
    monkeypatch.setattr(ray_executor, "compute_cell", real)
    assert summary.exit_code == 1 and summary.ok == 0
    (cell,) = cells(tmp_path / "r").values()
    assert cell["status"] == "failed" and cell["error"].startswith("ray: ")
    assert runner.run(cfg, toy_registry()).ok == 1  # a failed cell is rerun by the next run


def test_plan_trains_each_teacher_once(tmp_path):
    """kd needs the target's single teacher (at the cell's fraction); multiteacher needs every domain's,
    the other one on its full data. Shared ones are planned once: 2 + 2×1 = 4 distinct teachers."""
    r = runner.Runner(config(tmp_path / "r", executor="ray", methods="student,kd,multiteacher"), toy_registry())
    jobs, needs = ray_executor.plan(r, r.cells)
    assert [(j.request.kind, j.label) for j in jobs.values()] == [("single", "single")] * 4
    by_method = {(c.method, c.domain): keys for c, keys in needs.items()}
    assert {m: len(k) for (m, _), k in by_method.items()} == {"student": 0, "kd": 1, "multiteacher": 2}
    for domain in ("garden", "kitchen"):
        assert by_method["kd", domain][0] in by_method["multiteacher", domain]


def test_a_worker_keeps_its_runner_and_teachers_between_tasks(tmp_path, monkeypatch):
    """Ray reuses worker processes: a worker's second task of a run finds its runner (data,
    tokenizer, stored teachers) ready; a task of another run replaces it and removes its scratch."""
    monkeypatch.setattr(ray_executor, "_worker", None)
    cfg = config(tmp_path / "run", executor="ray")
    plugins = [toy_plugin()]
    worker = ray_executor._worker_runner(cfg, plugins)
    assert ray_executor._worker_runner(cfg, plugins) is worker
    assert worker.config.results_dir != cfg.results_dir  # its own scratch, never the driver's folder

    driver = runner.Runner(cfg, toy_registry())
    job = next(iter(ray_executor.plan(driver, driver.cells)[0].values()))
    first, second = ray_executor.train_teacher(cfg, plugins, job), ray_executor.train_teacher(cfg, plugins, job)
    assert (first["trained"], second["trained"]) == (1, 0)  # the second found it in the scratch
    assert first["weights"] == second["weights"] and first["meta"] == second["meta"]

    other = ray_executor._worker_runner(config(tmp_path / "other", executor="ray"), plugins)
    assert other is not worker and not worker.config.results_dir.exists()


# ------------------------------------------------------------------------- one reporting channel
class HookRecorder:
    """Records every run hook the driver sees (the rich reporter is a plugin on the same hooks)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str | None]] = []

    @hookimpl
    def kdbench_configure(self, config):
        self.calls.append(("configure", None))

    @hookimpl
    def kdbench_grid_start(self, cells, todo):
        self.calls.append(("grid_start", str(todo)))

    @hookimpl
    def kdbench_cell_start(self, cell):
        self.calls.append(("cell_start", cell.key))

    @hookimpl
    def kdbench_train_step(self, cell, stage, step):
        self.calls.append(("train_step", cell.key if cell is not None else None))

    @hookimpl
    def kdbench_dev_eval(self, cell, stage, step):
        self.calls.append(("dev_eval", cell.key if cell is not None else None))

    @hookimpl
    def kdbench_message(self, text):
        self.calls.append(("message", None))

    @hookimpl
    def kdbench_cell_finish(self, cell, result, seconds):
        assert isinstance(result, CellResult) and seconds >= 0
        self.calls.append(("cell_finish", f"{cell.key}:{result.status}"))

    @hookimpl
    def kdbench_grid_finish(self):
        self.calls.append(("grid_finish", None))


def test_local_and_ray_executors_call_the_same_hooks(tmp_path, local_ray):
    """On the toy task (no data needed): the driver sees the same run events under both executors;
    per-step hooks fire where the training runs, so under Ray only the workers see them."""
    seen = {}
    for executor in ("local", "ray"):
        rec = HookRecorder()
        reg = registry.load([toy_plugin()])
        reg.pm.register(rec)
        cfg = RunConfig.from_sources({"profile": "tiny", "tasks": "toy", "domains": "garden", "fractions": "0.25",
                                      "methods": "student,kd", "results_dir": tmp_path / executor,
                                      "cache_dir": tmp_path / "cache", "executor": executor})
        summary = runner.run(cfg, reg)
        assert summary.ok == 2, summary.failed
        seen[executor] = rec.calls
    for executor, calls in seen.items():
        run_events = [c for c in calls if c[0] not in ("train_step", "dev_eval", "message")]
        assert run_events[:2] == [("configure", None), ("grid_start", "2")] and run_events[-1] == ("grid_finish", None)
        for key in ("toy__garden__student__f0.25__s0", "toy__garden__kd__f0.25__s0"):
            mine = [c for c in run_events if c[1] is not None and c[1].split(":")[0] == key]
            assert mine == [("cell_start", key), ("cell_finish", f"{key}:ok")], (executor, mine)
        assert len(run_events) == 7 and ("message", None) in calls  # the teacher's training was reported
    local_steps = [c for c in seen["local"] if c[0] in ("train_step", "dev_eval")]
    assert local_steps and all(c[1] is not None for c in local_steps)  # every step inside a cell
    assert not [c for c in seen["ray"] if c[0] in ("train_step", "dev_eval")]  # they fire on the workers
