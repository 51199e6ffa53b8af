"""How far kdbench's work is from the hardware's limit: GEMM rates, FLOPs per step, time outside steps.

* :func:`gemm_rate`: torch's dense matmul rate on this machine, at the current thread count and a
  precision (``fp32``, ``bf16``; on CUDA also ``tf32``), timed with CUDA events on a GPU.
* :func:`count_flops` / :func:`measure`: the FLOPs of one call (``torch.utils.flop_counter``: matmuls
  and attention, which dominate a transformer step; element-wise work is not counted) and its best
  time, hence the achieved FLOP/s as a fraction of the GEMM rate.
* :data:`STEP_TIMER`: the shared training loop adds each optimiser step's time to it, so a benchmark
  can tell the share of a cell's wall time spent *outside* training steps (evaluation, tokenization,
  model loading, teacher inference). On CUDA a step's time is its host time (the loop syncs every
  ``LOG_EVERY`` steps), so the share is exact over a cell but not per step.

Used by ``benchmarks/test_limits.py`` and by :func:`kdbench.device.precision_probe`.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

DTYPES = {"fp32": torch.float32, "tf32": torch.float32, "bf16": torch.bfloat16}


class StepTimer:
    """Seconds spent in optimiser steps of :func:`kdbench.trainer.train`, summed over the process."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.steps = 0

    def add(self, seconds: float) -> None:
        self.seconds += seconds
        self.steps += 1


STEP_TIMER = StepTimer()


@contextlib.contextmanager
def matmul_precision(device: torch.device, precision: str) -> Iterator[None]:
    """On CUDA, TF32 matmuls exactly when ``precision == "tf32"`` (restored afterwards)."""
    if precision not in DTYPES:
        raise ValueError(f"precision {precision!r}: expected one of {', '.join(DTYPES)}")
    if device.type != "cuda":
        if precision == "tf32":
            raise ValueError("tf32 exists only on CUDA")
        yield
        return
    before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before


def elapsed(device: torch.device, fn: Callable[[], Any], iters: int = 1) -> float:
    """Seconds for ``iters`` calls of ``fn``: CUDA events around them (after a synchronize) on a GPU,
    ``perf_counter`` on a CPU."""
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize(device)
        start.record()
        for _ in range(iters):
            fn()
        end.record()
        torch.cuda.synchronize(device)
        return float(start.elapsed_time(end)) / 1000.0
    t0 = time.perf_counter()
    for _ in range(iters):
        fn()
    return time.perf_counter() - t0


def operands(n: int, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return (torch.randn(n, n, generator=g).to(device=device, dtype=dtype),
            torch.randn(n, n, generator=g).to(device=device, dtype=dtype))


@dataclass(frozen=True)
class GemmRate:
    precision: str
    n: int
    threads: int
    flops_per_s: float

    @property
    def gflops(self) -> float:
        return self.flops_per_s / 1e9


def gemm_rate(device: torch.device, precision: str = "fp32", n: int | None = None, min_seconds: float = 0.3,
              repeats: int = 3) -> GemmRate:
    """Best of ``repeats`` timings of n×n @ n×n matmuls (2n³ FLOPs each), each run ≥ ``min_seconds``."""
    n = n or (8192 if device.type == "cuda" else 1024)
    with matmul_precision(device, precision):
        a, b = operands(n, DTYPES[precision], device)
        first = elapsed(device, lambda: a @ b)  # warm-up, and the time of one product
        iters = max(1, math.ceil(min_seconds / max(first, 1e-9)))
        best = min(elapsed(device, lambda: a @ b, iters) / iters for _ in range(repeats))
    return GemmRate(precision, n, torch.get_num_threads(), 2 * n**3 / max(best, 1e-12))


def count_flops(fn: Callable[[], Any]) -> int:
    """FLOPs of one call of ``fn`` as torch's FlopCounterMode counts them (forward and backward)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


@dataclass(frozen=True)
class Achieved:
    """One measured call: its FLOPs, best time, FLOP/s and that as a fraction of a GEMM rate."""

    flops: int
    seconds: float
    rate: float

    @property
    def flops_per_s(self) -> float:
        return self.flops / max(self.seconds, 1e-12)

    @property
    def fraction(self) -> float:
        return self.flops_per_s / self.rate


def measure(fn: Callable[[], Any], device: torch.device, rate: GemmRate, repeats: int = 3) -> Achieved:
    """FLOPs of ``fn`` and its best time over ``repeats`` calls (after one warm-up call)."""
    flops = count_flops(fn)
    elapsed(device, fn)
    return Achieved(flops, min(elapsed(device, fn) for _ in range(repeats)), rate.flops_per_s)


def outside_share(wall_seconds: float, step_seconds: float) -> float:
    """Share of a wall time spent outside training steps (0 when everything was steps)."""
    return max(0.0, 1.0 - step_seconds / wall_seconds) if wall_seconds > 0 else math.nan


# --------------------------------------------------------------------------- a profile's model steps
def synthetic_batch(batch_size: int, length: int, vocab_size: int, num_labels: int = 2,
                    seed: int = 0) -> dict[str, torch.Tensor]:
    """A full batch of random token ids (no padding): the worst case a profile's loop sees."""
    g = torch.Generator().manual_seed(seed)
    return {"input_ids": torch.randint(5, vocab_size, (batch_size, length), generator=g),
            "token_type_ids": torch.zeros(batch_size, length, dtype=torch.long),
            "attention_mask": torch.ones(batch_size, length, dtype=torch.long),
            "labels": torch.randint(0, num_labels, (batch_size,), generator=g)}


def train_step(model: Any, batch: dict[str, torch.Tensor], device: torch.device,
               precision: str) -> Callable[[], None]:
    """One optimiser step as the shared loop takes it: forward, cross-entropy, backward, clip, AdamW."""
    from kdbench import device as dev
    from kdbench.trainer import forward

    model.to(device).train()
    b = dev.to_device(batch, device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)

    def step() -> None:
        with dev.autocast(device, precision):
            loss = torch.nn.functional.cross_entropy(forward(model, b).logits.float(), b["labels"])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
    return step


def eval_step(model: Any, batch: dict[str, torch.Tensor], device: torch.device,
              precision: str) -> Callable[[], None]:
    """One evaluation batch as :func:`kdbench.trainer.predict` runs it."""
    from kdbench import device as dev
    from kdbench.trainer import forward

    model.to(device).eval()
    b = dev.to_device(batch, device)

    def step() -> None:
        with torch.inference_mode(), dev.autocast(device, precision):
            forward(model, b).logits.float().cpu()
    return step


def profile_limits(profile: Any, device: torch.device, precision: str, rate: GemmRate, *,
                   length: int | None = None, vocab_size: int = 4000, repeats: int = 3) -> dict[str, Achieved]:
    """A teacher training step, a student training step and a student evaluation batch of ``profile``
    (batch sizes of the profile, ``length`` tokens, default its ``max_len``), each against ``rate``."""
    from kdbench.modeling import load_model

    length = length or profile.max_len
    out: dict[str, Achieved] = {}
    for role, spec in (("teacher", profile.teacher), ("student", profile.student)):
        torch.manual_seed(0)
        model = load_model(spec, 2, profile=profile, role=role, vocab_size=vocab_size)
        vocab = int(model.config.vocab_size)
        step = train_step(model, synthetic_batch(profile.batch_size, length, vocab), device, precision)
        out[f"{role}_train_step"] = measure(step, device, rate, repeats)
        if role == "student":
            ev = eval_step(model, synthetic_batch(profile.eval_batch_size, length, vocab), device, precision)
            out["student_eval_batch"] = measure(ev, device, rate, repeats)
    return out
