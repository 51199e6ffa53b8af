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


# ---------------------------------------------------------------------- one runtime object (#14 §5)
def test_runtime_resolves_device_and_precision_once(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert device.Runtime.resolve("auto", "auto", False) == device.Runtime(torch.device("cpu"), "fp32", False)
    assert device.Runtime.resolve("cpu", "bf16", True) == device.Runtime(torch.device("cpu"), "bf16", True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert device.Runtime.resolve("auto", "auto", False).precision == "bf16"  # bf16 autocast on CUDA
    from kdbench.api import KDBenchError

    with pytest.raises(KDBenchError, match="cuda:3"):
        device.Runtime.resolve("cuda:3", "auto", False)


def test_contexts_read_device_precision_and_compile_from_the_runtime():
    """Plugins written against ``ctx.device`` / ``ctx.precision`` keep working; the run's defaults of
    ``reuse`` and ``teacher_cache_mb`` are RunConfig's, not restated."""
    from kdbench.api import FitContext, TeacherContext
    from kdbench.config import RunConfig

    rt = device.Runtime(torch.device("cpu"), "bf16", True)
    fit = FitContext(task=None, target="d", domains={}, seed=0, profile=None, runtime=rt,  # type: ignore[arg-type]
                     get_teacher=None, build_student=None, tokenize=None)  # type: ignore[arg-type]
    teach = TeacherContext(task=None, target="d", train_domains=("d",), domains={}, seed=0,  # type: ignore[arg-type]
                           profile=None, runtime=rt, tokenize=None)  # type: ignore[arg-type]
    for ctx in (fit, teach):
        assert (ctx.device, ctx.precision, ctx.compile) == (torch.device("cpu"), "bf16", True)
    assert (fit.reuse, fit.teacher_cache_mb) == (RunConfig().reuse, RunConfig().teacher_cache_mb)
    import dataclasses

    literal = {f.name: f.default for f in dataclasses.fields(FitContext)}
    assert literal["reuse"] is literal["teacher_cache_mb"] is dataclasses.MISSING  # read from RunConfig
