"""The one training loop every model in kdbench goes through: teachers, students, every stage.

A method supplies ``loss_fn(batch) -> scalar``; the loop owns batching, the optimiser, the
schedule, precision, logging, dev-based checkpoint selection and the non-finite-loss guard.
"""

from __future__ import annotations

import math
import random
import time
from typing import TYPE_CHECKING, Any

import torch

from kdbench import device as dev
from kdbench.api import FitResult, TrainConfig
from kdbench.data import Encoded, batches
from kdbench.limits import STEP_TIMER
from kdbench.modeling import ModelOutput

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

    from kdbench.api import FitContext, Method, ProgressFn, TeacherContext
    from kdbench.device import Runtime
    from kdbench.modeling import KDModel

LOG_EVERY = 10  # steps between host syncs (loss.item()); each sync stalls a GPU pipeline


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or inf; the cell is recorded as failed."""


INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def forward(model: KDModel, batch: Mapping[str, torch.Tensor], head: str = "main",
            output_hidden: bool = False) -> ModelOutput:
    """Run ``model`` on a batch; ``output_hidden`` also returns hidden states and attention scores."""
    return model(**{k: batch[k] for k in INPUTS}, head=head, output_hidden=output_hidden,
                 output_scores=output_hidden)


def predict(model: KDModel, enc: Encoded, head: str, device: torch.device, precision: str,
            batch_size: int) -> torch.Tensor:
    """Logits (N, C) in the order of ``enc``; batches are sorted by length to pad little."""
    head_layer: Any = model.heads[head]
    out = torch.empty((len(enc), int(head_layer.out_features)))  # a normal tensor: usable as a loss target
    with dev.eval_mode(model), torch.inference_mode():  # no autograd bookkeeping at all
        for batch in batches(enc, batch_size):
            b = dev.to_device(batch, device)
            with dev.autocast(device, precision):
                logits = forward(model, b, head).logits
            out[batch["index"]] = logits.float().cpu()
    return out


def accuracy(logits: torch.Tensor, labels: Iterable[int]) -> float:
    gold = torch.tensor(list(labels))
    return 100.0 * (logits.argmax(-1) == gold).float().mean().item() if len(gold) else float("nan")


def train(model: KDModel, train_data: Encoded, loss_fn: Callable[[dict[str, torch.Tensor]], torch.Tensor],
          cfg: TrainConfig, *, runtime: Runtime, batch_size: int, eval_batch_size: int, seed: int,
          dev_data: Encoded | None = None, head: str = "main",
          params: Iterable[torch.nn.Parameter] | None = None, progress: ProgressFn | None = None,
          stage: str = "train", score_fn: Callable[[KDModel], float] | None = None) -> FitResult:
    """Train ``model`` by minimising ``loss_fn``; return it with its best dev checkpoint loaded.

    ``runtime``: the device, the precision (autocast) and whether to ``torch.compile`` the model.

    ``params`` (default: all of the model's) lets a loss own extra trainable modules, such as the
    projection that maps student hidden states to the teacher's width.

    Checkpoint selection keeps the checkpoint with the highest score: ``score_fn(model)`` when given
    (e.g. a multi-head model scored with each example's own head), else the accuracy on ``dev_data``
    with ``head``. It runs once per epoch, or every ``cfg.eval_every`` optimiser steps and at the last
    step when that is set (the official TinyBERT / Meta-KD code evaluates every 50 steps); ties keep
    the earlier checkpoint. With neither (``dev_data=None``), nothing is selected and the last weights
    are returned (e.g. TinyBERT's stage 1, which has no classifier signal).

    Schedule (``cfg.schedule``): Hugging Face's ``get_linear_schedule_with_warmup`` (lr ``s/warmup·lr``
    at step s during warmup, then linear decay to 0 at the last step), or ``get_constant_schedule``.
    """
    device, precision = runtime.device, runtime.precision
    model.to(device).train()
    if runtime.compile:
        dev.compile_model(model)
    # Order of batches is drawn from its own RNG so that data order is identical across methods.
    rng = random.Random(f"kdbench-batches/{seed}/{stage}")
    steps_per_epoch = math.ceil(len(train_data) / batch_size)
    total = max(1, steps_per_epoch * cfg.epochs)

    # AdamW without weight decay on biases and LayerNorm weights, as in BERT fine-tuning.
    params = list(params if params is not None else model.parameters())
    decay = [p for p in params if p.requires_grad and p.ndim >= 2]
    no_decay = [p for p in params if p.requires_grad and p.ndim < 2]
    optim = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                               {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)
    sched = lr_schedule(optim, cfg, total)
    selecting = score_fn is not None or (dev_data is not None and len(dev_data) > 0)
    best_acc, best_state, best_epoch, best_step = -1.0, None, -1, -1

    def select(epoch: int) -> None:
        """Score the current weights on dev; keep them if they beat the best so far."""
        nonlocal best_acc, best_state, best_epoch, best_step
        if score_fn is not None:
            acc = score_fn(model)
        else:
            assert dev_data is not None
            acc = accuracy(predict(model, dev_data, head, device, precision, eval_batch_size), dev_data.labels)
        model.train()
        if progress:  # one dev evaluation: for the kdbench_dev_eval hook
            progress(step=step, total=total, epoch=epoch, loss=logged[-1] if logged else math.nan,
                     stage=stage, lr=optim.param_groups[0]["lr"], dev_accuracy=acc)
        if acc > best_acc:
            best_acc, best_epoch, best_step = acc, epoch, step
            best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}

    logged: list[float] = []
    pending: list[torch.Tensor] = []  # losses not yet synced to the host
    step = 0
    for epoch in range(cfg.epochs):
        model.train()
        for batch in batches(train_data, batch_size, rng):
            t_step = time.perf_counter()  # for STEP_TIMER: the share of a cell outside steps
            b = dev.to_device(batch, device)
            with dev.autocast(device, precision):
                loss = loss_fn(b)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
            optim.step()
            sched.step()
            # free the gradients right away; set_to_none also skips a memset
            optim.zero_grad(set_to_none=True)
            STEP_TIMER.add(time.perf_counter() - t_step)
            pending.append(loss.detach())
            step += 1
            if step % LOG_EVERY == 0 or step == total:
                logged.append(_sync(pending, step))
                if progress:
                    progress(step=step, total=total, epoch=epoch + 1, loss=logged[-1], stage=stage,
                             lr=optim.param_groups[0]["lr"])
            if selecting and cfg.eval_every and (step % cfg.eval_every == 0 or step == total):
                select(epoch + 1)
        if pending:
            logged.append(_sync(pending, step))
        # Checkpoint selection on dev accuracy, once per epoch unless eval_every is set (test is
        # evaluated once, at the end).
        if selecting and not cfg.eval_every:
            select(epoch + 1)
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return FitResult(model=model, head=head, losses=logged,
                     info={"stage": stage, "steps": step, "best_dev": best_acc, "best_epoch": best_epoch,
                           "best_step": best_step})


def lr_schedule(optim: torch.optim.Optimizer, cfg: TrainConfig, total: int) -> torch.optim.lr_scheduler.LambdaLR:
    """The learning-rate schedule of ``cfg`` over ``total`` optimiser steps (Hugging Face's functions).

    ``linear``: ``get_linear_schedule_with_warmup`` with ``int(cfg.warmup · total)`` warmup steps; its
    first step runs at lr 0 (``s / warmup`` at step s), as the official code's ``BertAdam`` warmup does.
    ``constant``: ``get_constant_schedule``, no warmup and no decay (official TinyBERT / Meta-KD
    stage 1, huawei-noah/Pretrained-Language-Model ``TinyBERT/task_distill.py``: ``schedule='none'``
    unless ``--pred_distill``).
    """
    from transformers import get_constant_schedule, get_linear_schedule_with_warmup

    if cfg.schedule == "constant":
        return get_constant_schedule(optim)
    return get_linear_schedule_with_warmup(optim, int(cfg.warmup * total), total)


def _sync(pending: list[torch.Tensor], step: int) -> float:
    """Move the pending losses to the host in one sync; fail on the first non-finite one."""
    values = torch.stack(pending).float().cpu()
    first = step - len(pending) + 1
    pending.clear()
    bad = (~torch.isfinite(values)).nonzero()
    if len(bad):
        raise NonFiniteLossError(f"non-finite loss at step {first + int(bad[0])}")
    return float(values.mean())


# -------------------------------------------------------------------------- one-stage distillation
def distill(ctx: FitContext, method: Method) -> FitResult:
    """Train a fresh student on the target domain with ``method.loss`` (the default ``Method.fit``)."""
    from kdbench.teachers import cached_teacher, teacher_logits

    teacher = ctx.teacher(method.teacher) if method.teacher is not None else None
    student = ctx.build_student()
    need = method.needs_hidden
    train_data = ctx.tokenize(ctx.data.train)
    # A frozen teacher's logits never change: compute them once (cached on disk) instead of
    # running the teacher in every step of every epoch. Its hidden states and attention scores
    # are kept in memory when they fit --teacher-cache-mb (else recomputed in every step).
    cached = teacher_logits(ctx, teacher, train_data) if teacher is not None and not need else None
    layers = cached_teacher(ctx, teacher, train_data) if teacher is not None and need else None

    def loss_fn(batch: dict[str, torch.Tensor]) -> torch.Tensor:
        if cached is not None:
            t_out: ModelOutput | None = ModelOutput(logits=cached[batch["index"].cpu()].to(ctx.device))
        else:
            t_out = layers(batch, output_hidden=True) if layers is not None else None
        return method.loss(batch, forward(student, batch, output_hidden=need), t_out)

    return train_student(ctx, student, loss_fn, ctx.profile.student_train, stage=method.name,
                         train_data=train_data)


def train_student(ctx: FitContext, student: KDModel, loss_fn: Callable[[dict[str, torch.Tensor]], torch.Tensor],
                  cfg: TrainConfig, stage: str, params: Iterable[torch.nn.Parameter] | None = None,
                  train_data: Encoded | None = None, select_on_dev: bool = True, **kw: Any) -> FitResult:
    """:func:`train` on the target domain's train split, selecting on its dev split.

    ``select_on_dev=False`` skips checkpoint selection and keeps the last epoch (for stages whose
    model has no meaningful classifier yet, such as TinyBERT's intermediate-layer stage).
    """
    p = ctx.profile
    return train(student, train_data if train_data is not None else ctx.tokenize(ctx.data.train), loss_fn,
                 cfg, runtime=ctx.runtime, batch_size=p.batch_size, eval_batch_size=p.eval_batch_size,
                 seed=ctx.seed, dev_data=ctx.tokenize(ctx.data.dev) if select_on_dev else None,
                 params=params, progress=ctx.progress, stage=stage, **kw)


def cross_entropy(batch: Mapping[str, torch.Tensor], logits: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cross_entropy(logits.float(), batch["labels"])


def train_teacher(ctx: TeacherContext, model: KDModel,
                  loss_fn: Callable[[dict[str, torch.Tensor]], torch.Tensor], train_data: Encoded,
                  dev_data: Encoded, head: str = "main", stage: str = "teacher",
                  score_fn: Callable[[KDModel], float] | None = None) -> FitResult:
    """:func:`train` with the profile's teacher settings (``score_fn``: see :func:`train`)."""
    p = ctx.profile
    return train(model, train_data, loss_fn, p.teacher_train, runtime=ctx.runtime, batch_size=p.batch_size,
                 eval_batch_size=p.eval_batch_size, seed=ctx.seed, dev_data=dev_data, head=head,
                 progress=ctx.progress, stage=stage, score_fn=score_fn)
