"""Stage-1 reuse (kdbench/stagecache.py): a restored stage gives byte-identical cell results."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from kdbench import stagecache
from kdbench.config import RunConfig
from kdbench.testing import _load_registry, _run

KEPT = ("metrics", "predictions", "train", "split_hash", "train_hash", "teachers", "config_hash")


def _tinybert(results: Path, methods: str = "tinybert", reuse: bool = True, cache: Path | None = None):
    cfg = RunConfig.from_sources({"methods": methods, "tasks": "toy", "domains": "garden", "fractions": "0.5",
                                  "profile": "tiny", "results_dir": results, "cache_dir": cache or results / "c",
                                  "device": "cpu", "precision": "fp32", "reuse": reuse})
    runner = _run(cfg, _load_registry("toy", ()))
    return {c.method: json.loads(runner.cell_path(c).read_text()) for c in runner.cells}


def _same(a: dict, b: dict) -> None:
    for k in KEPT:
        assert json.dumps(a[k], sort_keys=True) == json.dumps(b[k], sort_keys=True), k


def test_rng_state_round_trips():
    state = stagecache.rng_state()
    expected = (torch.rand(3), random.random(), np.random.rand())
    stagecache.set_rng_state(json.loads(json.dumps(state)))  # through JSON, as stored in meta.json
    assert torch.equal(torch.rand(3), expected[0])
    assert random.random() == expected[1] and np.random.rand() == expected[2]


def test_reused_stage1_gives_byte_identical_results(tmp_path, monkeypatch):
    computed = _tinybert(tmp_path)["tinybert"]
    stored = list((tmp_path / "cache" / "stage1").iterdir())
    assert len(stored) == 1 and (stored[0] / "weights.safetensors").is_file()

    loads: list[bool] = []
    real = stagecache._load

    def spy(*args):
        restored = real(*args)
        loads.append(restored is not None)
        return restored

    monkeypatch.setattr(stagecache, "_load", spy)
    shutil.rmtree(tmp_path / "cells")
    reused = _tinybert(tmp_path)["tinybert"]
    assert loads == [True]
    assert len(list((tmp_path / "cache" / "stage1").iterdir())) == 1  # nothing new was computed
    _same(computed, reused)

    # and recomputed in a fresh directory holding only the same teacher (and tokenizer): the same bytes
    fresh = tmp_path / "fresh"
    shutil.copytree(tmp_path / "teachers", fresh / "teachers")
    _same(reused, _tinybert(fresh, cache=tmp_path / "c")["tinybert"])
    assert loads == [True, False]


def test_no_reuse_stores_nothing(tmp_path):
    _tinybert(tmp_path, reuse=False)
    assert not (tmp_path / "cache" / "stage1").exists()


def test_a_temperature_sweep_shares_stage1_and_a_stage1_option_does_not(tmp_path):
    cells = _tinybert(tmp_path, methods="tinybert,tinybert[temperature=2]")
    assert len(cells) == 2 and len(list((tmp_path / "cache" / "stage1").iterdir())) == 1
    # the second temperature's stage 1 is the first's: both cells log the same stage-1 losses
    s1 = [c["train"]["stages"][0]["losses"] for c in cells.values()]
    assert s1[0] == s1[1]
    _tinybert(tmp_path, methods="tinybert[lr_stage1=0.001]")
    assert len(list((tmp_path / "cache" / "stage1").iterdir())) == 2


def test_a_tampered_stage_is_recomputed(tmp_path, capsys):
    computed = _tinybert(tmp_path)["tinybert"]
    (folder,) = (tmp_path / "cache" / "stage1").iterdir()
    data = bytearray((folder / "weights.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (folder / "weights.safetensors").write_bytes(bytes(data))
    shutil.rmtree(tmp_path / "cells")
    again = _tinybert(tmp_path)["tinybert"]
    assert "does not match its recorded sha256" in capsys.readouterr().err
    _same(computed, again)


@pytest.mark.parametrize("change", ["weights", "rng", "data", "options", "teacher"])
def test_the_key_covers_what_determines_the_stage(change):
    from kdbench.api import TrainConfig
    from kdbench.data import Encoded

    torch.manual_seed(0)
    model = torch.nn.Linear(2, 2)
    extra = torch.nn.Parameter(torch.zeros(3))
    data = Encoded(ids=["a"], input_ids=[[1, 2]], token_type_ids=[[0, 0]], labels=[1])
    kw = dict(student=model, params=[*model.parameters(), extra], teacher_key="t", data=data,
              options={"lr_stage1": 1e-4}, train=TrainConfig(), batch_size=4, seed=0, stage="s",
              precision="fp32", device=torch.device("cpu"))
    torch.manual_seed(1)
    before = stagecache.stage_key(**kw)  # type: ignore[arg-type]
    torch.manual_seed(1)
    assert stagecache.stage_key(**kw) == before  # type: ignore[arg-type]
    if change == "weights":
        with torch.no_grad():
            extra[0] = 1.0
    elif change == "rng":
        torch.manual_seed(2)
    elif change == "data":
        kw["data"] = data.with_extra(t=[0.5])
    elif change == "options":
        kw["options"] = {"lr_stage1": 2e-4}
    else:
        kw["teacher_key"] = "u"
    assert stagecache.stage_key(**kw) != before  # type: ignore[arg-type]
