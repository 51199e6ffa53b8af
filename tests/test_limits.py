"""kdbench/limits.py (distance to the hardware limit) and the start-up precision probe; CUDA paths mocked."""

from __future__ import annotations

import math

import pytest
import torch

from kdbench import device as dev
from kdbench import limits
from kdbench.config import resolve_profile
from kdbench.device import Runtime

CPU = torch.device("cpu")
CUDA = torch.device("cuda")


def test_cpu_gemm_rate_is_positive_and_labelled():
    r = limits.gemm_rate(CPU, "fp32", n=64, min_seconds=0.001, repeats=1)
    assert r.precision == "fp32" and r.n == 64 and r.threads == torch.get_num_threads()
    assert r.flops_per_s > 0 and r.gflops == r.flops_per_s / 1e9


def test_tf32_is_refused_on_cpu_and_unknown_precisions_everywhere():
    with pytest.raises(ValueError, match="only on CUDA"):
        limits.gemm_rate(CPU, "tf32", n=8)
    with pytest.raises(ValueError, match="expected one of"):
        limits.gemm_rate(CPU, "fp16", n=8)


class FakeCuda:
    """torch.cuda.Event / synchronize stand-ins: every timed region lasts ``ms`` milliseconds."""

    def __init__(self, monkeypatch, ms: float = 250.0):
        self.calls: list[str] = []
        self.tf32_seen: list[bool] = []
        self.dtypes: list[torch.dtype] = []
        fake = self
        real_operands = limits.operands

        class Event:
            def __init__(self, enable_timing=False):
                assert enable_timing

            def record(self):
                fake.calls.append("record")

            def elapsed_time(self, end):
                fake.calls.append("elapsed")
                return ms

        def operands(n, dtype, device):
            assert device.type == "cuda"
            fake.dtypes.append(dtype)
            fake.tf32_seen.append(torch.backends.cuda.matmul.allow_tf32)
            return real_operands(n, dtype, CPU)

        monkeypatch.setattr(torch.cuda, "Event", Event)
        monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: fake.calls.append("sync"))
        monkeypatch.setattr(limits, "operands", operands)


@pytest.mark.parametrize(("precision", "dtype", "tf32"), [("bf16", torch.bfloat16, False),
                                                            ("tf32", torch.float32, True),
                                                            ("fp32", torch.float32, False)])
def test_cuda_gemm_rate_uses_events_after_a_synchronize(monkeypatch, precision, dtype, tf32):
    fake = FakeCuda(monkeypatch, ms=250.0)
    saved = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = not tf32
    try:
        r = limits.gemm_rate(CUDA, precision, n=32, min_seconds=1.0, repeats=2)
        assert torch.backends.cuda.matmul.allow_tf32 is (not tf32)  # restored
    finally:
        torch.backends.cuda.matmul.allow_tf32 = saved
    assert fake.dtypes == [dtype] and fake.tf32_seen == [tf32]
    # one warm-up region of 0.25 s -> 4 products per timed region of 0.25 s: 2·32³ FLOPs per 1/16 s
    assert r.flops_per_s == pytest.approx(2 * 32**3 * 16)
    # every region: synchronize, record, (work), record, synchronize, then read the events
    assert fake.calls[:6] == ["sync", "record", "record", "sync", "elapsed", "sync"]
    assert fake.calls.count("elapsed") == 3


def test_count_flops_matches_the_hand_worked_linear_layer():
    lin = torch.nn.Linear(4, 3, bias=False)
    x = torch.randn(2, 4)
    assert limits.count_flops(lambda: lin(x)) == 2 * 2 * 4 * 3  # forward: one (2×4)@(4×3) product
    # forward + backward w.r.t. the weight only (x needs no gradient): twice the forward
    assert limits.count_flops(lambda: lin(x).sum().backward()) == 2 * (2 * 2 * 4 * 3)
    xg = x.requires_grad_()
    assert limits.count_flops(lambda: lin(xg).sum().backward()) == 3 * (2 * 2 * 4 * 3)


def test_achieved_fraction_and_outside_share():
    a = limits.Achieved(flops=10**9, seconds=0.5, rate=4e9)
    assert a.flops_per_s == 2e9 and a.fraction == 0.5
    assert limits.outside_share(10.0, 7.5) == 0.25
    assert limits.outside_share(10.0, 11.0) == 0.0 and math.isnan(limits.outside_share(0.0, 0.0))


def test_measure_counts_once_and_times_the_best_call():
    calls = []
    m = limits.measure(lambda: calls.append(1), CPU, limits.GemmRate("fp32", 1, 1, 1e9), repeats=3)
    assert len(calls) == 1 + 1 + 3 and m.flops == 0 and m.seconds >= 0


def test_profile_limits_on_the_tiny_profile():
    prof = resolve_profile("tiny")
    rate = limits.gemm_rate(CPU, "fp32", n=128, min_seconds=0.01, repeats=1)
    out = limits.profile_limits(prof, CPU, "fp32", rate, length=16, repeats=1)
    assert set(out) == {"teacher_train_step", "student_train_step", "student_eval_batch"}
    assert all(a.flops > 0 and a.seconds > 0 and a.fraction > 0 for a in out.values())
    # the teacher is the larger model; an eval batch has no backward (about a third of a step's FLOPs
    # per example)
    assert out["teacher_train_step"].flops > out["student_train_step"].flops
    per_ex_eval = out["student_eval_batch"].flops / prof.eval_batch_size
    per_ex_train = out["student_train_step"].flops / prof.batch_size
    assert per_ex_eval < 0.5 * per_ex_train


def test_the_training_loop_feeds_the_step_timer():
    from kdbench.api import TrainConfig
    from kdbench.data import Encoded
    from kdbench.modeling import load_model
    from kdbench.trainer import forward, train

    prof = resolve_profile("tiny")
    torch.manual_seed(0)
    model = load_model(prof.student, 2, profile=prof, role="student", vocab_size=50)
    enc = Encoded(ids=[str(i) for i in range(10)], input_ids=[[2, 7 + i % 5, 3] for i in range(10)],
                  token_type_ids=[[0, 0, 0]] * 10, labels=[i % 2 for i in range(10)])
    before = (limits.STEP_TIMER.steps, limits.STEP_TIMER.seconds)
    train(model, enc, lambda b: torch.nn.functional.cross_entropy(forward(model, b).logits, b["labels"]),
          TrainConfig(epochs=2), batch_size=4, eval_batch_size=8, runtime=Runtime(CPU, "fp32", compile=False),
          seed=0)
    assert limits.STEP_TIMER.steps - before[0] == 2 * 3
    assert limits.STEP_TIMER.seconds > before[1]


# ------------------------------------------------------------------------------ precision probe
def test_probe_only_for_auto_on_cpu():
    assert dev.precision_probe("fp32", CPU) is None and dev.precision_probe("auto", CUDA) is None


@pytest.mark.parametrize(("fp32", "bf16", "hint"), [(100.0, 20.0, False), (100.0, 124.0, False),
                                                     (100.0, 130.0, True)])
def test_probe_keeps_fp32_and_hints_only_when_bf16_is_clearly_faster(monkeypatch, fp32, bf16, hint):
    monkeypatch.setattr(dev, "_gemm_rates", lambda threads: (fp32, bf16))
    p = dev.precision_probe("auto", CPU)
    assert p is not None and p["chosen"] == "fp32" == dev.resolve_precision("auto", CPU)
    assert (p["fp32_gemm_gflops"], p["bf16_gemm_gflops"]) == (fp32, bf16)
    assert ("hint" in p) is hint
    if hint:
        assert "--precision bf16" in p["hint"] and "1.3x" in p["hint"]


def test_probe_measures_once_per_thread_count(monkeypatch):
    calls = []
    real = limits.gemm_rate
    monkeypatch.setattr(limits, "gemm_rate", lambda *a, **k: calls.append(a) or real(CPU, k.get("precision", a[1]), n=32,
                                                                                     min_seconds=0.001, repeats=1))
    dev._gemm_rates.cache_clear()
    try:
        dev.precision_probe("auto", CPU)
        dev.precision_probe("auto", CPU)
        assert [c[1] for c in calls] == ["fp32", "bf16"]
    finally:
        dev._gemm_rates.cache_clear()
