"""kdbench.device: thread count selection (the CUDA branches are in test_runner.py)."""

from __future__ import annotations

import pytest
import torch

from kdbench import device


@pytest.mark.parametrize(("env", "want"), [
    ({"KDBENCH_THREADS": "3", "OMP_NUM_THREADS": "5"}, 3),   # kdbench's own setting wins
    ({"OMP_NUM_THREADS": "5"}, 5),
    ({"KDBENCH_THREADS": "", "OMP_NUM_THREADS": " "}, None),  # empty = unset: the usable cores
])
def test_cpu_threads_respects_the_environment(monkeypatch, env, want):
    for var in ("KDBENCH_THREADS", "OMP_NUM_THREADS"):
        monkeypatch.delenv(var, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setattr(device.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4, 5, 6}, raising=False)
    assert device.cpu_threads() == (want if want is not None else 7)


@pytest.mark.parametrize("value", ["zero", "0", "-2", "1.5", "2 threads", "١", "99999999"])
@pytest.mark.parametrize("var", ["KDBENCH_THREADS", "OMP_NUM_THREADS"])
def test_invalid_thread_settings_are_refused_in_one_line(monkeypatch, var, value):
    """Invalid values are refused, not silently ignored (Hardening round 2, §1 Environment)."""
    from kdbench.api import KDBenchError

    monkeypatch.setenv(var, value)
    with pytest.raises(KDBenchError, match=f"{var}=.* is not a positive integer") as info:
        device.cpu_threads()
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("name", ["tpu", "gpu", "cuda:x", "cuda:-1", "CPU", "", "cpu ", "cuda:99999", "xla"])
def test_device_names_that_torch_has_no_such_device_for_are_refused(name):
    from kdbench.api import KDBenchError

    with pytest.raises(KDBenchError, match="--device"):
        device.resolve_device(name)


def test_devices_that_are_not_here_are_refused(monkeypatch):
    from kdbench.api import KDBenchError

    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(KDBenchError, match="MPS is not available"):
        device.resolve_device("mps")
    if torch.cuda.is_available():
        n = torch.cuda.device_count()
        with pytest.raises(KDBenchError, match=f"has {n} CUDA device"):
            device.resolve_device(f"cuda:{n}")
        assert device.resolve_device("cuda:0").type == "cuda"
    else:
        with pytest.raises(KDBenchError, match="no CUDA device"):
            device.resolve_device("cuda:0")
    assert device.resolve_device("cpu") == torch.device("cpu")


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
