"""Experiment tracking (``kdbench run --log tensorboard,mlflow``): ordinary plugins on kdbench's hooks.

Each tracker is a pluggy plugin, exactly what a third-party package would write: it implements
``kdbench_configure``, ``kdbench_cell_start``, ``kdbench_train_step``, ``kdbench_dev_eval`` and
``kdbench_cell_finish`` (see :mod:`kdbench.hookspecs`), and the CLI registers it when ``--log``
names it. Per cell it logs:

* the training-loss curve and the learning rate, per stage (``<stage>/loss``, ``<stage>/lr``), at
  the optimiser step of each ``kdbench_train_step`` call;
* the checkpoint-selection score of each evaluation (``<stage>/dev_accuracy``), once per epoch;
* the final metrics (``test_accuracy``, ``dev_accuracy``), the timings (``timing/...``), the
  parameter counts, the cell's status, and its configuration.

Under ``--executor ray`` the training runs on workers and the per-step hooks fire there, not here:
the driver's tracker then logs, at ``kdbench_cell_finish``, the loss curve that the cell result
stores (``train.losses``, one point per logging interval, at its index rather than at its step), and
no learning rate or per-epoch dev accuracy.

TensorBoard: one run folder per cell, ``<log-dir>/<cell key>/`` (default log dir
``<results-dir>/tensorboard``), written with ``torch.utils.tensorboard``. MLflow: one run per cell
in the experiment ``kdbench``, in MLflow's file store ``<results-dir>/mlruns`` unless
``--mlflow-tracking-uri`` names a server (or another store).
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kdbench import hookimpl
from kdbench.errors import KDBenchError

if TYPE_CHECKING:
    from collections.abc import Mapping

    from kdbench.config import RunConfig
    from kdbench.grid import Cell
    from kdbench.registry import Registry

#: tracker name -> (module that must be importable, the extra that installs it)
EXTRAS = {"tensorboard": ("tensorboard", "tensorboard"), "mlflow": ("mlflow", "mlflow")}
EXPERIMENT = "kdbench"


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def check_available(name: str) -> None:
    module, extra = EXTRAS[name]
    if not _installed(module):
        raise KDBenchError(f"--log {name} needs {module}, which is not installed: pip install 'kdbench[{extra}]'")


def register(registry: Registry, config: RunConfig) -> list[Any]:
    """Register the trackers ``config.log`` names (checking their extras first, one line if missing)."""
    for name in config.log:
        check_available(name)
    trackers: list[Any] = []
    for name in config.log:
        tracker = TensorBoardTracker() if name == "tensorboard" else MLflowTracker()
        registry.pm.register(tracker, name=f"kdbench-tracking-{name}")
        trackers.append(tracker)
    return trackers


def _flat(prefix: str, obj: Any) -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (lists as JSON), for trackers that take flat key/values."""
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            out.update(_flat(f"{prefix}.{k}" if prefix else str(k), v))
        return out
    return {prefix: json.dumps(obj) if isinstance(obj, (list, tuple)) else obj}


def final_scalars(result: Mapping[str, Any]) -> dict[str, float]:
    """The numbers of a finished cell that a tracker logs once: metrics, timings, parameters."""
    out: dict[str, float] = {}
    for group in ("metrics", "timing", "params"):
        for key, value in (result.get(group) or {}).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                out[key if group == "metrics" else f"{group}/{key}"] = float(value)
    return out


class Tracker:
    """What both trackers share: which cell is open, and the fallback curve for Ray."""

    def __init__(self) -> None:
        self.config: RunConfig | None = None
        self.stepped: set[str] = set()  # cells that got per-step events (else: the curve from the result)

    @hookimpl
    def kdbench_configure(self, config: RunConfig) -> None:
        self.config = config

    @hookimpl
    def kdbench_cell_start(self, cell: Cell) -> None:
        self.open(cell)

    @hookimpl
    def kdbench_train_step(self, cell: Cell | None, stage: str, step: int, total: int, epoch: int,
                           loss: float, lr: float) -> None:
        if cell is None:
            return
        self.stepped.add(cell.key)
        self.scalars(cell, {f"{stage}/loss": loss, f"{stage}/lr": lr, f"{stage}/epoch": epoch}, step)

    @hookimpl
    def kdbench_dev_eval(self, cell: Cell | None, stage: str, step: int, epoch: int, dev_accuracy: float) -> None:
        if cell is not None:
            self.scalars(cell, {f"{stage}/dev_accuracy": dev_accuracy}, step)

    @hookimpl
    def kdbench_cell_finish(self, cell: Cell, result: Mapping[str, Any]) -> None:
        if cell.key not in self.stepped:  # under Ray: the stored curve, indexed by logging interval
            losses = (result.get("train") or {}).get("losses") or []
            for i, value in enumerate(losses):
                self.scalars(cell, {"curve/loss": value}, i + 1)
        self.finish(cell, result)
        self.stepped.discard(cell.key)

    # what a tracker implements
    def open(self, cell: Cell) -> None: ...
    def scalars(self, cell: Cell, values: dict[str, float], step: int) -> None: ...
    def finish(self, cell: Cell, result: Mapping[str, Any]) -> None: ...

    def results_dir(self) -> Path:
        return self.config.results_dir if self.config is not None else Path("results/latest")


class TensorBoardTracker(Tracker):
    """Event files for TensorBoard: one run folder per cell (``tensorboard --logdir <log-dir>``)."""

    def __init__(self) -> None:
        super().__init__()
        self.writers: dict[str, Any] = {}

    def log_dir(self) -> Path:
        if self.config is not None and self.config.log_dir is not None:
            return self.config.log_dir
        return self.results_dir() / "tensorboard"

    def writer(self, cell: Cell) -> Any:
        if cell.key not in self.writers:
            from torch.utils.tensorboard import SummaryWriter

            self.writers[cell.key] = SummaryWriter(str(self.log_dir() / cell.key))
        return self.writers[cell.key]

    def open(self, cell: Cell) -> None:
        self.writer(cell)

    def scalars(self, cell: Cell, values: dict[str, float], step: int) -> None:
        w = self.writer(cell)
        for tag, value in values.items():
            w.add_scalar(f"train/{tag}", value, step)

    def finish(self, cell: Cell, result: Mapping[str, Any]) -> None:
        w = self.writer(cell)
        for tag, value in final_scalars(result).items():
            w.add_scalar(f"final/{tag}", value, 0)
        w.add_text("status", result.get("status", "?") + (f": {result['error']}" if "error" in result else ""))
        w.add_text("config", "```\n" + json.dumps(result.get("config", {}), indent=1, sort_keys=True) + "\n```")
        w.close()
        del self.writers[cell.key]


_MLFLOW_KEY = re.compile(r"[^\w\-. /]")


class MLflowTracker(Tracker):
    """One MLflow run per cell, in the experiment ``kdbench``; params are the cell's configuration."""

    def __init__(self) -> None:
        super().__init__()
        self.runs: dict[str, str] = {}  # cell key -> MLflow run id
        self._client: Any = None

    def tracking_uri(self) -> str:
        if self.config is not None and self.config.mlflow_tracking_uri:
            return self.config.mlflow_tracking_uri
        return (self.results_dir() / "mlruns").resolve().as_uri()

    def client(self) -> Any:
        if self._client is None:
            uri = self.tracking_uri()
            if uri.startswith("file:"):
                # MLflow 3 keeps its file store in maintenance mode and wants this opt-in to use it;
                # it is still the one store that needs no database or server (see README).
                os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
            from mlflow.tracking import MlflowClient

            self._client = MlflowClient(tracking_uri=uri)
        return self._client

    def experiment_id(self) -> str:
        client = self.client()
        exp = client.get_experiment_by_name(EXPERIMENT)
        return str(exp.experiment_id if exp is not None else client.create_experiment(EXPERIMENT))

    def run_id(self, cell: Cell) -> str:
        if cell.key not in self.runs:
            tags = {"kdbench.cell": cell.key, "kdbench.method": cell.method, "kdbench.task": cell.task,
                    "kdbench.domain": cell.domain, "kdbench.fraction": f"{cell.fraction:g}",
                    "kdbench.seed": str(cell.seed), "kdbench.results_dir": str(self.results_dir())}
            run = self.client().create_run(self.experiment_id(), run_name=cell.key, tags=tags)
            self.runs[cell.key] = run.info.run_id
        return self.runs[cell.key]

    def open(self, cell: Cell) -> None:
        self.run_id(cell)

    def scalars(self, cell: Cell, values: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(_MLFLOW_KEY.sub("_", k), float(v), now, step) for k, v in values.items()]
        self.client().log_batch(self.run_id(cell), metrics=metrics)

    def finish(self, cell: Cell, result: Mapping[str, Any]) -> None:
        from mlflow.entities import Metric, Param

        client, run = self.client(), self.run_id(cell)
        now = int(time.time() * 1000)
        client.log_batch(run, metrics=[Metric(_MLFLOW_KEY.sub("_", k), v, now, 0)
                                       for k, v in final_scalars(result).items()])
        config = result.get("config") or {}
        params = {k: v for k, v in _flat("", config).items() if v is not None}
        client.log_batch(run, params=[Param(_MLFLOW_KEY.sub("_", k), str(v)[:6000]) for k, v in params.items()])
        client.log_dict(run, result.get("config", {}), "config.json")
        client.set_tag(run, "kdbench.status", result.get("status", "?"))
        if "error" in result:
            client.set_tag(run, "kdbench.error", str(result["error"])[:5000])
        client.set_terminated(run, "FINISHED" if result.get("status") == "ok" else "FAILED")
        del self.runs[cell.key]
