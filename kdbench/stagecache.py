"""Reuse of a finished training stage (TinyBERT-style stage 1) across cells and runs.

A sweep over stage-2 options (temperature, stage-2 learning rate or epochs) or a variant that changes
only stage 2 would otherwise recompute an identical stage 1. :func:`cached_stage` keys a stage by a
content hash of everything that determines it and stores what the rest of the cell needs:

* the key hashes the *values* of the trainable parameters and buffers when the stage starts (so the
  student's init, its seed and any extra module such as TinyBERT's projection W_h are covered without
  listing them), the random state when it starts (torch, Python, NumPy: dropout masks depend on it),
  the teacher's content key, the training data's token ids and per-example values, the options that
  decide the stage's loss, the training settings, batch size, seed, stage name, precision and device;
* it stores, like a trained teacher, ``weights.safetensors`` (every parameter and the student's buffers
  after the stage) and ``meta.json`` (sha256 of the weights, the stage's losses and info, and the random
  state when the stage ended), written atomically, weights first, meta last
  (``<results-dir>/cache/stage1/<key>/``);
* a restored stage leaves the model, the extra parameters and every random generator exactly as the
  computed stage left them, so what follows (stage 2, evaluation) and the cell's result are
  byte-identical (``tests/test_stagecache.py``). A stored stage that fails its sha256 is recomputed.
"""

from __future__ import annotations

import dataclasses
import random
import sys
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from kdbench import results as res
from kdbench.api import FitResult

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping
    from pathlib import Path

    from kdbench.api import FitContext, TrainConfig
    from kdbench.data import Encoded
    from kdbench.modeling import KDModel

VERSION = "1"


# ------------------------------------------------------------------------------------- RNG state
def rng_state() -> dict[str, Any]:
    """Every generator :func:`kdbench.device.seed_everything` seeds, as JSON-able values."""
    py = random.getstate()
    kind, keys, pos, has_gauss, gauss = np.random.get_state(legacy=True)
    out: dict[str, Any] = {"torch": torch.get_rng_state().tolist(),
                           "python": [py[0], list(py[1]), py[2]],
                           "numpy": [kind, np.asarray(keys).tolist(), int(pos), int(has_gauss), float(gauss)]}
    if torch.cuda.is_available():  # pragma: no cover - no GPU in CI
        out["cuda"] = [s.tolist() for s in torch.cuda.get_rng_state_all()]
    return out


def set_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, gauss))
    if "cuda" in state and torch.cuda.is_available():  # pragma: no cover - no GPU in CI
        torch.cuda.set_rng_state_all([torch.tensor(s, dtype=torch.uint8) for s in state["cuda"]])


# ---------------------------------------------------------------------------------------- the key
def _tensor_digest(tensors: Iterable[tuple[str, torch.Tensor]]) -> str:
    import hashlib

    h = hashlib.sha256()
    for name, t in tensors:
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}\0".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _extras(student: KDModel, params: list[torch.nn.Parameter]) -> list[torch.nn.Parameter]:
    """The parameters of ``params`` that are not the student's (e.g. W_h, a domain branch)."""
    own = {id(p) for p in student.parameters()}
    return [p for p in params if id(p) not in own]


def stage_key(*, student: KDModel, params: list[torch.nn.Parameter], teacher_key: str, data: Encoded,
              options: Mapping[str, Any], train: TrainConfig, batch_size: int, seed: int, stage: str,
              precision: str, device: torch.device, method_version: str = "") -> str:
    """Content hash of everything that determines the stage's outcome (see the module docstring)."""
    start = _tensor_digest([*student.state_dict().items(),
                            *((f"extra.{i}", p) for i, p in enumerate(_extras(student, params)))])
    return res.config_hash({
        "version": VERSION, "weights": start, "rng": res.config_hash(rng_state()), "teacher": teacher_key,
        "data": res.config_hash([data.ids, data.input_ids, data.token_type_ids, data.labels,
                                 sorted(data.extra.items())]),
        "options": dict(options), "train": dataclasses.asdict(train), "batch_size": batch_size, "seed": seed,
        "stage": stage, "precision": precision, "device": device.type, "method_version": method_version})


# ------------------------------------------------------------------------------------ store / load
def _save(folder: Path, key: str, student: KDModel, params: list[torch.nn.Parameter], fit: FitResult) -> None:
    from safetensors.torch import save

    tensors = {f"student.{k}": v.detach().contiguous().cpu() for k, v in student.state_dict().items()}
    tensors.update({f"extra.{i}": p.detach().contiguous().cpu() for i, p in enumerate(_extras(student, params))})
    weights = save(tensors)
    res.atomic_write_bytes(folder / "weights.safetensors", weights)  # weights first, meta.json last
    res.atomic_write_json(folder / "meta.json", {
        "key": key, "version": VERSION, "sha256": res.sha256_bytes(weights), "losses": fit.losses,
        "info": fit.info, "rng": rng_state(), "versions": res.versions()})


def _load(folder: Path, student: KDModel, params: list[torch.nn.Parameter]) -> FitResult | None:
    """Restore the stored stage into ``student`` and ``params``; None when absent or not intact."""
    from safetensors.torch import load

    meta = res.read_json(folder / "meta.json")
    if meta is None:
        return None
    try:
        data = (folder / "weights.safetensors").read_bytes()
    except OSError:
        return None
    if meta.get("sha256") != res.sha256_bytes(data):
        print(f"kdbench: warning: stage cache {folder.name} does not match its recorded sha256; recomputing it",
              file=sys.stderr)
        return None
    try:
        tensors = load(data)
        state = {k.removeprefix("student."): v for k, v in tensors.items() if k.startswith("student.")}
        extras = _extras(student, params)
        if len(extras) != sum(k.startswith("extra.") for k in tensors):
            return None
        student.load_state_dict(state)
        with torch.no_grad():
            for i, p in enumerate(extras):
                p.copy_(tensors[f"extra.{i}"])
        set_rng_state(meta["rng"])
    except Exception as exc:  # noqa: BLE001 - a broken entry is recomputed, never fatal
        print(f"kdbench: warning: stage cache {folder.name} unreadable ({type(exc).__name__}); recomputing it",
              file=sys.stderr)
        return None
    student.eval()  # as train() leaves it
    return FitResult(model=student, head="main", losses=list(meta["losses"]), info=dict(meta["info"]))


def cached_stage(ctx: FitContext, student: KDModel, params: Iterable[torch.nn.Parameter], *,
                 teacher_key: str, data: Encoded, options: Mapping[str, Any], train: TrainConfig,
                 stage: str, compute: Callable[[], FitResult], method_version: str = "") -> FitResult:
    """``compute()`` (a training stage of ``student`` and ``params``), or its stored outcome.

    Only with ``ctx.reuse``, a results directory and a teacher with a content key; otherwise this is
    exactly ``compute()``.
    """
    if not ctx.reuse or ctx.workdir is None or not teacher_key:
        return compute()
    plist = list(params)
    key = stage_key(student=student, params=plist, teacher_key=teacher_key, data=data, options=options,
                    train=train, batch_size=ctx.profile.batch_size, seed=ctx.seed, stage=stage,
                    precision=ctx.precision, device=ctx.device, method_version=method_version)
    folder = ctx.workdir / "cache" / "stage1" / key
    restored = _load(folder, student, plist)
    if restored is not None:  # its info is the computed stage's, so the cell's record is identical
        return restored
    fit = compute()
    _save(folder, key, student, plist, fit)
    return fit
