"""All device and precision handling lives here, so the CUDA branches can be tested on a CPU."""

from __future__ import annotations

import contextlib
import functools
import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from kdbench.api import KDBenchError

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping


DEVICE_NAME = re.compile(r"^(auto|cpu|cuda|cuda:\d{1,4}|mps)$")


def check_device_name(name: str) -> str:
    """The form of ``--device`` (no torch needed): auto, cpu, cuda, cuda:N or mps."""
    if not isinstance(name, str) or not DEVICE_NAME.match(name):
        shown = " ".join(repr(name).split())[:60]
        raise KDBenchError(f"--device: {shown} is not a device; use auto, cpu or cuda[:N]")
    return name


def resolve_device(name: str) -> torch.device:
    """``auto`` → cuda when available, else cpu. A device torch cannot use here is a user error.

    Called before the grid starts (and before anything is written), so a device that is not
    there is refused with exit 2 instead of failing every cell.
    """
    check_device_name(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise KDBenchError(f"--device {name}: no CUDA device is available; use --device cpu or auto")
        index = int(name.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise KDBenchError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s) "
                               f"(cuda:0..cuda:{torch.cuda.device_count() - 1})")
    if name == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise KDBenchError("--device mps: MPS is not available on this machine; use --device cpu or auto")
    return torch.device(name)


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` → bf16 autocast on CUDA, fp32 on CPU."""
    if precision == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    return precision


@dataclass(frozen=True)
class Runtime:
    """Where and how models run, resolved once per run: the one object that the runner, the teacher
    store, the contexts and the training loop pass on, instead of device, precision and compile each.

    ``precision`` is resolved (``fp32`` or ``bf16``) and part of every cell's and teacher's hash;
    ``compile`` (``--compile``) does not change results.
    """

    device: torch.device
    precision: str
    compile: bool

    @classmethod
    def resolve(cls, device: str, precision: str, compile: bool) -> Runtime:
        """From ``--device``, ``--precision`` and ``--compile`` (a device torch cannot use: exit 2)."""
        dev = resolve_device(device)
        return cls(dev, resolve_precision(precision, dev), compile)


#: bf16 must beat fp32 GEMM by this factor before the start-up probe suggests it (noise margin)
BF16_HINT_FACTOR = 1.25


@functools.lru_cache(maxsize=4)
def _gemm_rates(threads: int) -> tuple[float, float]:
    from kdbench.limits import gemm_rate

    cpu = torch.device("cpu")
    return tuple(gemm_rate(cpu, p, n=512, min_seconds=0.02, repeats=2).gflops  # type: ignore[return-value]
                 for p in ("fp32", "bf16"))


def precision_probe(requested: str, device: torch.device) -> dict[str, Any] | None:
    """``--precision auto`` on CPU: measure fp32 and bf16 GEMM (512², ~0.1 s, once per process).

    The choice stays fp32: a faster bf16 GEMM does not make a faster bf16-autocast step (casts and
    element-wise work; measured in the README), and a precision picked by a noisy measurement would
    change cells' config hashes from run to run. The probe only adds a ``hint`` when bf16 GEMM is
    :data:`BF16_HINT_FACTOR` times faster. ``None`` when nothing was measured (explicit precision, GPU).
    """
    if requested != "auto" or device.type != "cpu":
        return None
    fp32, bf16 = _gemm_rates(torch.get_num_threads())
    out: dict[str, Any] = {"requested": "auto", "chosen": "fp32", "fp32_gemm_gflops": round(fp32, 2),
                           "bf16_gemm_gflops": round(bf16, 2), "threads": torch.get_num_threads()}
    if bf16 >= BF16_HINT_FACTOR * fp32:
        out["hint"] = (f"bf16 GEMM ran {bf16 / fp32:.1f}x faster than fp32 on this CPU "
                       f"({bf16:.0f} vs {fp32:.0f} GFLOP/s); try --precision bf16")
    return out


THREAD_VARS = ("KDBENCH_THREADS", "OMP_NUM_THREADS")


def check_thread_env(environ: Mapping[str, str] | None = None) -> None:
    """``KDBENCH_THREADS`` and ``OMP_NUM_THREADS``, when set, must be positive integers."""
    env = os.environ if environ is None else environ
    for var in THREAD_VARS:
        value = env.get(var, "").strip()
        if not value:  # unset or empty: not a setting
            continue
        if not (value.isascii() and value.isdigit() and 0 < int(value) <= 4096):
            shown = " ".join(repr(env[var]).split())[:40]
            raise KDBenchError(f"{var}={shown} is not a positive integer (a number of threads); "
                               f"set it to e.g. 1, or unset it")


def cpu_threads() -> int:
    """Threads for CPU work: ``KDBENCH_THREADS``, else ``OMP_NUM_THREADS``, else the usable cores.

    An explicit setting wins because several kdbench processes on one box (Ray workers, a user's
    parallel jobs) each taking every core oversubscribe it: a measured tiny step went from 0.12 s
    to 3.0 s when two 2-thread processes shared 2 cores. Invalid values are refused
    (:func:`check_thread_env`), not ignored.
    """
    check_thread_env()
    for var in THREAD_VARS:
        value = os.environ.get(var, "").strip()
        if value:
            return int(value)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, cores or 1)


def setup(device: torch.device) -> None:
    """Process-wide speed settings: TF32 matmuls on CUDA, :func:`cpu_threads` threads on CPU."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    else:
        torch.set_num_threads(cpu_threads())


def compile_model(model: torch.nn.Module, backend: str = "inductor") -> None:
    """``torch.compile`` the module in place (its state_dict keys stay as they are), once.

    ``dynamic=True`` because dynamic padding gives every batch its own sequence length: without it
    each new length would trigger a recompilation.
    """
    if not getattr(model, "_kdbench_compiled", False):
        model.compile(dynamic=True, backend=backend)
        model._kdbench_compiled = True  # type: ignore[assignment]


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager[Any]:
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def to_device(batch: Mapping[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    """Copy a batch; on CUDA from pinned memory without blocking the host."""
    if device.type == "cuda":
        return {k: v.pin_memory().to(device, non_blocking=True) for k, v in batch.items()}
    return {k: v.to(device) for k, v in batch.items()}


def seed_everything(seed: int) -> None:
    """One place that seeds every RNG kdbench uses."""
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():  # pragma: no cover - no GPU in CI
        torch.cuda.manual_seed_all(seed)


@contextlib.contextmanager
def preserved_rng() -> Iterator[None]:
    """Restore every RNG :func:`seed_everything` seeds on exit.

    Getting a teacher (training it, or loading a stored one) must not change the random state of
    the cell that asked for it: otherwise a cell's result would depend on whether its teacher was
    already trained, by this process, by an earlier run or by another Ray worker.
    """
    import random

    import numpy as np

    py, npy = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=range(torch.cuda.device_count()) if torch.cuda.is_available() else []):
        try:
            yield
        finally:
            random.setstate(py)
            np.random.set_state(npy)


@contextlib.contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[None]:
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def release_memory(exc: BaseException) -> None:
    """After a CUDA out-of-memory error, free the cached blocks so the next cell can start clean."""
    if isinstance(exc, torch.cuda.OutOfMemoryError) and torch.cuda.is_available():
        torch.cuda.empty_cache()
