"""``--log tensorboard,mlflow``: the trackers are hook plugins; read what they wrote back and compare."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

from kdbench import cli, registry, runner, tracking
from kdbench.config import RunConfig
from kdbench.grid import Cell
from kdbench.testing import toy_plugin

KEY = "toy__garden__kd__f1__s0"


def available(module: str) -> bool:
    return tracking._installed(module)


EXAMPLE = Path(__file__).parent / "plugins" / "kdbench_tensorboard_example.py"


def readme_example():
    """tests/plugins/kdbench_tensorboard_example.py, the README's second plugin example (verbatim)."""
    spec = importlib.util.spec_from_file_location("kdbench_tb", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tracked_run(tmp_path_factory):
    """One tiny kd cell on the toy task, logged to every tracker that is installed."""
    out = tmp_path_factory.mktemp("tracked")
    log = [t for t in ("tensorboard", "mlflow") if available(tracking.EXTRAS[t][0])]
    if not log:
        pytest.skip("neither tensorboard nor mlflow is installed (pip install 'kdbench[tensorboard,mlflow]')")
    plugins = [toy_plugin()]
    if "tensorboard" in log:  # the README's worked example of a hook plugin rides along
        plugins.append(readme_example().tracker)
    reg = registry.load(plugins)
    config = RunConfig.from_sources({"methods": "kd", "tasks": "toy", "domains": "garden", "profile": "tiny",
                                     "results_dir": str(out), "cache_dir": str(out / "cache"), "log": log})
    tracking.register(reg, config)
    summary = runner.run(config, reg)
    assert summary.ok == 1
    result = json.loads((out / "cells" / f"{KEY}.json").read_text())
    return out, result


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-5)


def test_tensorboard_event_files_hold_the_curves_and_metrics(tracked_run):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out, result = tracked_run
    ea = EventAccumulator(str(out / "tensorboard" / KEY))
    ea.Reload()
    tags = set(ea.Tags()["scalars"])
    loss = ea.Scalars("train/kd/loss")
    # every logged point is one of the curve's points, in order, at increasing optimiser steps
    curve = result["train"]["losses"]
    assert len(loss) >= 3 and [e.step for e in loss] == sorted(e.step for e in loss)
    assert all(any(_close(e.value, c) for c in curve) for e in loss)
    assert _close(loss[-1].value, curve[-1])
    assert loss[-1].step == result["train"]["steps"]
    lrs = [e.value for e in ea.Scalars("train/kd/lr")]
    assert len(lrs) == len(loss) and max(lrs) <= 3e-3 + 1e-9 and lrs[-1] < max(lrs)  # warmup then decay
    dev = [e.value for e in ea.Scalars("train/kd/dev_accuracy")]
    assert len(dev) == 3  # one evaluation per epoch (tiny: 3 epochs)
    assert _close(max(dev), result["train"]["best_dev"])
    assert "train/teacher:garden/loss" in tags  # the teacher trained inside the cell has its own curve
    assert _close(ea.Scalars("final/test_accuracy")[0].value, result["metrics"]["test_accuracy"])
    assert _close(ea.Scalars("final/dev_accuracy")[0].value, result["metrics"]["dev_accuracy"])
    assert _close(ea.Scalars("final/timing/student_train_seconds")[0].value,
                  result["timing"]["student_train_seconds"])
    assert ea.Scalars("final/params/model")[0].value == result["params"]["model"]
    assert "config/text_summary" in ea.Tags()["tensors"]


def test_mlflow_run_holds_the_curves_metrics_and_config(tracked_run):
    pytest.importorskip("mlflow")
    import os

    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    from mlflow.tracking import MlflowClient

    out, result = tracked_run
    client = MlflowClient(tracking_uri=(out / "mlruns").resolve().as_uri())
    exp = client.get_experiment_by_name("kdbench")
    (run,) = client.search_runs([exp.experiment_id])
    assert run.info.run_name == KEY and run.info.status == "FINISHED"
    assert run.data.tags["kdbench.method"] == "kd" and run.data.tags["kdbench.status"] == "ok"
    rid = run.info.run_id
    loss = client.get_metric_history(rid, "kd/loss")
    assert max(m.step for m in loss) == result["train"]["steps"]
    assert all(any(_close(m.value, c) for c in result["train"]["losses"]) for m in loss)
    assert len(client.get_metric_history(rid, "kd/lr")) == len(loss)
    dev = client.get_metric_history(rid, "kd/dev_accuracy")
    assert len(dev) == 3 and _close(max(m.value for m in dev), result["train"]["best_dev"])
    assert client.get_metric_history(rid, "teacher_garden/loss")  # ':' is not allowed in MLflow keys
    assert _close(run.data.metrics["test_accuracy"], result["metrics"]["test_accuracy"])
    assert _close(run.data.metrics["timing/student_train_seconds"], result["timing"]["student_train_seconds"])
    assert run.data.params["method_options.alpha"] == str(result["config"]["method_options"]["alpha"])
    assert run.data.params["profile.name"] == "tiny"


def test_without_per_step_events_the_stored_curve_is_logged(tmp_path):
    """Under --executor ray the driver sees no steps: cell_finish logs result["train"]["losses"]."""
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tracker = tracking.TensorBoardTracker()
    tracker.kdbench_configure(RunConfig(results_dir=tmp_path))
    cell = Cell("toy", 1.0, 0, "garden", "kd")
    result = {"status": "ok", "metrics": {"test_accuracy": 75.0, "dev_accuracy": 70.0},
              "train": {"losses": [0.9, 0.6, 0.4]}, "config": {"x": 1}}
    tracker.kdbench_cell_finish(cell, result)
    ea = EventAccumulator(str(tmp_path / "tensorboard" / cell.key))
    ea.Reload()
    assert [(e.step, round(e.value, 4)) for e in ea.Scalars("train/curve/loss")] == [(1, 0.9), (2, 0.6), (3, 0.4)]
    assert ea.Scalars("final/test_accuracy")[0].value == 75.0


def test_a_missing_extra_is_one_line_naming_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(tracking, "_installed", lambda module: module != "mlflow")
    code = cli.main(["run", "--log", "tensorboard,mlflow", "--results-dir", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err
    assert "pip install 'kdbench[mlflow]'" in err


@pytest.mark.parametrize(("argv", "words"), [
    (["--log", "wandb"], "unknown tracker 'wandb'"),
    (["--log-dir", "tb"], "--log-dir only applies with --log tensorboard"),
    (["--mlflow-tracking-uri", "http://127.0.0.1:5000"], "--mlflow-tracking-uri only applies with --log mlflow"),
])
def test_bad_tracking_options_are_one_line(tmp_path, capsys, argv, words):
    code = cli.main(["run", *argv, "--results-dir", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and words in err, err


def test_readme_tracking_example_is_verbatim_and_logs_what_it_says(tracked_run):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    assert EXAMPLE.read_text().strip() in readme
    out, result = tracked_run
    ea = EventAccumulator(str(out / "tb" / KEY))
    ea.Reload()
    assert _close(ea.Scalars("kd/loss")[-1].value, result["train"]["losses"][-1])
    assert len(ea.Scalars("kd/dev_accuracy")) == 3
    assert _close(ea.Scalars("final/test_accuracy")[0].value, result["metrics"]["test_accuracy"])
