"""Run the grid on Ray (``kdbench run --executor ray``): the engine clusters already have.

How the work is laid out:

* **Teachers first, each once.** The driver asks every method which teachers its cells will need
  (:meth:`~kdbench.api.Method.teacher_requests`) and hashes them exactly as the local runner does.
  Each distinct teacher is one Ray task; a teacher already stored in the results directory is put in
  the object store instead of being trained again.
* **Cells depend on their teachers.** A cell is one Ray task whose arguments are its teachers'
  ObjectRefs, so Ray starts it when they exist. The worker installs them and runs the very same
  :meth:`Runner.cell_result <kdbench.runner.Runner.cell_result>` the local executor runs.
* **Only the driver writes.** Workers return payloads (the cell's result, a teacher's weights and
  metadata); the driver writes them with the local executor's atomic writes. So resume, failure
  records and the run lock behave exactly as with ``--executor local``, and no shared filesystem is
  needed: a teacher travels as its safetensors bytes through the object store, or, with
  ``--ray-shared-dir``, as a folder on a path that every node mounts (then only its metadata travels).
* **Failures.** A task whose worker dies is retried ``--ray-max-retries`` times by Ray. A cell that
  raises is recorded as failed by the worker, as locally; a cell whose task still fails after the
  retries (or whose teacher failed) is recorded as failed by the driver. Ctrl-C cancels every
  outstanding task and exits 130; the rerun resumes.

Workers need kdbench (with the same plugins) and the data: a ``--data-dir`` path that exists on every
node, or no data dir, so that each node downloads the original archives into its cache.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import tempfile
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kdbench import results as res
from kdbench.errors import KDBenchError

if TYPE_CHECKING:
    from kdbench.api import TeacherRequest
    from kdbench.config import RunConfig
    from kdbench.grid import Cell
    from kdbench.results import CellResult
    from kdbench.runner import Runner

INSTALL_HINT = "pip install 'kdbench[ray]'"


def check_available() -> None:
    """Fail with a one-line hint, before any work, when Ray is not installed."""
    if importlib.util.find_spec("ray") is None:
        raise KDBenchError(f"--executor ray needs Ray, which is not installed: {INSTALL_HINT}")


@dataclasses.dataclass(frozen=True)
class TeacherJob:
    """One teacher to train: what was asked for (kind, target domain, options), how it reads in
    messages, and a cell whose data it is trained on."""

    key: str
    request: TeacherRequest
    label: str
    cell: Cell

    @property
    def domain(self) -> str:
        return self.request.domain


def plan(runner: Runner, todo: list[Cell]) -> tuple[dict[str, TeacherJob], dict[Cell, list[str]]]:
    """The distinct teachers the cells need (by content key) and the teacher keys of each cell."""
    jobs: dict[str, TeacherJob] = {}
    needs: dict[Cell, list[str]] = {}
    for cell in todo:
        needs[cell] = []
        if not runner.config.reuse:  # --no-reuse: every cell trains its own teachers
            continue
        for spec in runner.teacher_specs(cell):
            jobs.setdefault(spec.key, TeacherJob(spec.key, spec.request, spec.label, cell))
            needs[cell].append(spec.key)
    return jobs, needs


# ----------------------------------------------------------------------------------- worker side
#: The runner of this worker process, kept between its tasks: Ray reuses a worker for many tasks,
#: and rebuilding the registry, the task's data and tokenizer, reinstalling teachers and recomputing
#: cached teacher outputs for each one would waste what the local executor keeps for a whole run.
_worker: tuple[str, Runner] | None = None  # (hash of the run's config, its runner)


def _worker_runner(config: RunConfig, plugins: list[Any]) -> Runner:
    """This worker's runner for ``config``: results go to its scratch folder, teachers there too or
    to the shared path. Made on the worker's first task of a run and reused by the later ones."""
    global _worker
    key = res.config_hash(dataclasses.asdict(config))
    if _worker is not None and _worker[0] == key:
        return _worker[1]
    import atexit
    import shutil

    import transformers

    from kdbench import device as dev
    from kdbench import registry
    from kdbench.runner import Runner

    transformers.logging.set_verbosity_error()
    scratch = Path(tempfile.mkdtemp(prefix="kdbench-ray-"))
    atexit.register(shutil.rmtree, scratch, ignore_errors=True)
    runner = Runner(dataclasses.replace(config, results_dir=scratch, executor="local"),
                    registry.load(plugins, strict=config.strict_plugins))
    if config.ray_shared_dir is not None:
        runner.teachers.root = config.ray_shared_dir / "teachers"
    dev.setup(runner.runtime.device)
    if _worker is not None:  # a worker serves one run at a time: drop an earlier run's scratch
        shutil.rmtree(_worker[1].config.results_dir, ignore_errors=True)
    _worker = (key, runner)
    return runner


def train_teacher(config: RunConfig, plugins: list[Any], job: TeacherJob) -> dict[str, Any]:
    """Ray task: train one teacher; return its metadata and (without a shared path) its weights."""
    runner = _worker_runner(config, plugins)
    spec = runner.teacher_spec(job.cell, job.request)
    assert spec.key == job.key, "teacher key differs between driver and worker (plugin versions?)"
    with runner.teachers.cell() as usage:
        runner.teachers.get(spec)
    folder = runner.teachers.root / job.key
    payload: dict[str, Any] = {"key": job.key, "meta": res.read_json(folder / "meta.json"),
                               "trained": usage.trained}
    if config.ray_shared_dir is None:
        payload["weights"] = (folder / "model.safetensors").read_bytes()
    return payload


def compute_cell(config: RunConfig, plugins: list[Any], cell: Cell, *teachers: dict[str, Any]) -> CellResult:
    """Ray task: install the cell's teachers, then train and evaluate it exactly as locally."""
    start = time.perf_counter()
    runner = _worker_runner(config, plugins)
    for payload in teachers:
        if "weights" in payload and not (runner.teachers.root / payload["key"] / "meta.json").exists():
            install_teacher(runner.teachers.root, payload)
    result = runner.cell_result(cell)
    import ray

    result.executor = {"name": "ray", "node": ray.util.get_node_ip_address(),
                       "seconds": round(time.perf_counter() - start, 3)}
    return result


def install_teacher(root: Path, payload: dict[str, Any]) -> None:
    """Write a teacher payload as the local runner stores teachers: weights first, meta.json last."""
    folder = root / payload["key"]
    res.atomic_write_bytes(folder / "model.safetensors", payload["weights"])
    res.atomic_write_json(folder / "meta.json", payload["meta"])


def stored_teacher(runner: Runner, key: str) -> dict[str, Any] | None:
    """A teacher trained earlier, as a payload (resume never retrains): from the shared path, where
    workers read it themselves, else from the results directory, shipped as bytes."""
    shared = runner.config.ray_shared_dir
    for folder, ship in ([(shared / "teachers" / key, False)] if shared is not None else []) + [
            (runner.teachers.root / key, True)]:
        meta = res.read_json(folder / "meta.json")
        if meta is not None and (folder / "model.safetensors").exists():
            payload: dict[str, Any] = {"key": key, "meta": meta, "trained": 0}
            if ship:
                payload["weights"] = (folder / "model.safetensors").read_bytes()
            return payload
    return None


# ----------------------------------------------------------------------------------- driver side
def run_grid(runner: Runner, todo: list[Cell]) -> None:
    """Run ``todo`` on Ray and record every cell through ``runner.record`` (atomic, like local)."""
    if not todo:
        return
    check_available()
    import ray

    cfg = runner.config
    started = not ray.is_initialized()
    if started:
        try:
            ray.init(address=cfg.ray_address, include_dashboard=False, log_to_driver=False)
        except ConnectionError as exc:
            raise KDBenchError(f"--ray-address {cfg.ray_address}: cannot connect to Ray ({exc}); "
                               "start the cluster or pass another address") from None
    try:
        gpus = cfg.ray_num_gpus
        if gpus is None:
            gpus = 1.0 if ray.cluster_resources().get("GPU", 0) >= 1 else 0.0
        options = {"num_cpus": cfg.ray_num_cpus, "num_gpus": gpus, "max_retries": cfg.ray_max_retries}
        teacher_task = ray.remote(train_teacher).options(**options)
        cell_task = ray.remote(compute_cell).options(**options)

        # plugins given in-process on the driver (not entry points) are shipped to the workers too
        plugins = ray.put(runner.registry.extra_plugins)
        jobs, needs = plan(runner, todo)
        refs: dict[str, Any] = {}
        training: dict[Any, TeacherJob] = {}
        for key, job in jobs.items():
            stored = stored_teacher(runner, key)
            if stored is not None:
                refs[key] = ray.put(stored)
            else:
                refs[key] = teacher_task.remote(cfg, plugins, job)
                training[refs[key]] = job
                runner.hook.kdbench_message(text=f"teacher {job.label} for {job.cell.task}/{job.domain} "
                                                 f"(seed {job.cell.seed}) [{key}]: submitted")
        cells: dict[Any, tuple[Cell, float]] = {}
        for cell in todo:
            runner.hook.kdbench_cell_start(cell=cell)  # on the driver, as the cell is submitted
            cells[cell_task.remote(cfg, plugins, cell, *(refs[k] for k in needs[cell]))] = (cell, time.perf_counter())
        _collect(runner, training, cells)
    finally:
        if started:
            ray.shutdown()


def _collect(runner: Runner, training: dict[Any, TeacherJob], cells: dict[Any, tuple[Cell, float]]) -> None:
    """Wait for teachers and cells as they finish; store teachers, record cells; cancel on Ctrl-C."""
    import ray

    outstanding = [*training, *cells]
    try:
        while outstanding:
            done, outstanding = ray.wait(outstanding, num_returns=1)
            ref = done[0]
            if ref in training:
                _store_teacher(runner, ref, training[ref])
                continue
            cell, submitted = cells[ref]
            try:
                result = ray.get(ref)
            except ray.exceptions.RayError as exc:
                result = runner.failed_result(cell, "ray: " + _one_line(exc), traceback.format_exc())
            # the time the cell took on its worker, not the time it also spent queued for one
            seconds = (result.executor or {}).get("seconds", time.perf_counter() - submitted)
            runner.record(cell, result, seconds)
    except KeyboardInterrupt:
        for ref in outstanding:
            ray.cancel(ref, force=True)
        raise


def _store_teacher(runner: Runner, ref: Any, job: TeacherJob) -> None:
    import ray

    try:
        payload = ray.get(ref)
    except ray.exceptions.RayError as exc:
        runner.hook.kdbench_message(text=f"teacher {job.label} for {job.domain} [{job.key}] failed: "
                                         f"{_one_line(exc)}; the cells that need it are recorded as failed")
        return
    runner.summary.teachers_trained += payload["trained"]
    if "weights" in payload:  # keep the results directory complete, as a local run leaves it
        install_teacher(runner.teachers.root, payload)
    runner.hook.kdbench_message(text=f"teacher {job.label} for {job.cell.task}/{job.domain} [{job.key}]: trained")


def _one_line(exc: BaseException) -> str:
    cause = getattr(exc, "cause", None) or exc
    lines = [line for line in str(cause).splitlines() if line.strip()]
    return f"{type(cause).__name__}: {lines[-1] if lines else ''}".strip()
