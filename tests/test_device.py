"""kdbench.device: thread count selection (the CUDA branches are in test_runner.py)."""

from __future__ import annotations

import pytest
import torch

from kdbench import device


@pytest.mark.parametrize(("env", "want"), [
    ({"KDBENCH_THREADS": "3", "OMP_NUM_THREADS": "5"}, 3),   # kdbench's own setting wins
    ({"OMP_NUM_THREADS": "5"}, 5),
    ({"KDBENCH_THREADS": "zero", "OMP_NUM_THREADS": "0"}, None),  # nonsense falls back to cores
])
def test_cpu_threads_respects_the_environment(monkeypatch, env, want):
    for var in ("KDBENCH_THREADS", "OMP_NUM_THREADS"):
        monkeypatch.delenv(var, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setattr(device.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4, 5, 6}, raising=False)
    assert device.cpu_threads() == (want if want is not None else 7)


def test_setup_sets_torch_threads(monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.setenv("KDBENCH_THREADS", "1")
    try:
        device.setup(torch.device("cpu"))
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_compile_model_in_place_keeps_outputs_and_state_dict_keys():
    from kdbench.config import resolve_profile
    from kdbench.modeling import load_model

    torch.manual_seed(0)
    model = load_model("tiny:L2-H32-A4", 2, profile=resolve_profile("tiny"), role="student", vocab_size=50).eval()
    ids = torch.randint(1, 50, (3, 7))
    mask = torch.ones_like(ids)
    before = model(input_ids=ids, attention_mask=mask).logits
    keys = list(model.state_dict())
    device.compile_model(model, backend="eager")  # the real path, minus the C++ toolchain inductor needs
    device.compile_model(model, backend="eager")  # idempotent
    assert list(model.state_dict()) == keys  # checkpoints stay loadable into uncompiled models
    assert torch.allclose(model(input_ids=ids, attention_mask=mask).logits, before, atol=1e-6)
