"""``multiteacher``: multi-teacher KD from the single-domain teachers of ALL domains.

The student (trained on the target domain, as every student) learns from one target distribution
built from the teachers ``ctx.teacher("single", d)`` of every domain ``d`` of the task:

    L = α·T²·KL(p̄ ‖ softmax(s/T)) (batchmean) + (1 − α)·CE(s, y)

the vanilla-KD objective of the ``kd`` method with the single teacher replaced by the ensemble.

How the teachers are combined (option ``average``)
--------------------------------------------------
* ``"logits"`` (default): ``p̄ = softmax(mean_k z_k / T)``, the mean of the teachers' LOGITS turned
  into one soft target. This is what TextBrewer's ``MultiTeacherDistiller`` (the anchor named for
  this row) does: ``train_on_batch`` forms ``mean_l_T = sum(l_T) / len(l_T)`` over the teachers'
  logits and applies the KD loss to it (``src/textbrewer/distiller_multiteacher.py``).
* ``"probs"``: ``p̄ = mean_k softmax(z_k / T)``, the mean of the teachers' soft targets (the ensemble
  of Hinton et al. 2015, §2), offered as an option.

Why logits by default: Meta-KD's official code has no multi-teacher baseline (alibaba/EasyTransfer
``scripts/metaKD/`` at 05d2b48 holds the meta-teacher, meta-distillation and TinyBERT scripts only;
alibaba/EasyNLP's ``examples/knowledge_distillation/metakd/`` likewise), so there is no official
behaviour to reproduce, and the row follows its named anchor, TextBrewer. The two differ when the
teachers disagree: logit averaging lets the most confident teacher dominate (binary logit margins +8
and −1 give p̄ = sigmoid(3.5) = 0.97; averaging probabilities gives (0.9997 + 0.269) / 2 = 0.63).
Every profile sets ``average`` explicitly; see the README's
`Fidelity to the official code <../README.md#fidelity-to-the-official-code>`_.

:func:`ensemble_logits` returns, for either mode, logits ``z̄`` with ``softmax(z̄ / T) = p̄``, so the
loss is computed by the same tested :func:`kdbench.losses.hinton_kd_loss` as ``kd``, with ``kd``'s
options and defaults (:class:`kdbench.distill.KDConfig`), so that the two rows differ only in their teachers.

Which teachers
--------------
The runner keys teachers by content (kind, model, settings, the ids of their data, seed), so each
single-domain teacher is trained once and shared with ``kd``, ``pkd``, ``teacher`` and this method in
every cell that sees the same data. With the default fraction semantics only the TARGET domain's
train split is subsampled: the target's teacher here is the very teacher ``kd`` uses at that fraction,
while the teacher of every other domain d trains on d's FULL train split, i.e. it is the teacher of
d's fraction-1.0 cell. That is intended (the other domains are not data-scarce) and costs no extra
training when fraction-1.0 cells are in the grid. With ``--fraction-all-domains`` all teachers see
the subsampled splits. With ``--teacher-domains others`` the target's own teacher is left out: the
ensemble is that of the other domains' teachers (a held-out target). All teachers are used in the cell's result (its ``teachers`` list names one
``single`` teacher per domain).

Teachers are frozen and run in eval mode, so their logits on a training example never change: they
are computed once per teacher over the target's train split (sorted batches, as at evaluation)
instead of once per step and epoch, which saves (epochs − 1)/epochs of the teachers' compute.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from kdbench import hookimpl
from kdbench.api import FitContext, FitResult, Method, TeacherRequest
from kdbench.distill import KDConfig
from kdbench.losses import hinton_kd_loss
from kdbench.trainer import forward, predict, train_student

if TYPE_CHECKING:
    from collections.abc import Sequence

AVERAGES = ("logits", "probs")


@dataclass(frozen=True)
class MultiTeacherConfig(KDConfig):
    """``kd``'s alpha and temperature, and how the teachers are averaged."""

    average: str = "logits"  # "logits" (TextBrewer) or "probs" (mean of the soft targets)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.average not in AVERAGES:
            raise ValueError(f"average={self.average!r}: expected one of {', '.join(AVERAGES)}")


def ensemble_logits(teacher_logits: Sequence[torch.Tensor], temperature: float,
                    average: str = "logits") -> torch.Tensor:
    """Logits ``z̄`` (B, C) whose tempered softmax ``softmax(z̄/T)`` is the teachers' averaged target.

    ``average="logits"``: ``z̄ = mean_k z_k`` (TextBrewer). ``average="probs"``:
    ``z̄ = T · log mean_k softmax(z_k/T)``, computed with logsumexp so that tiny probabilities do not
    underflow. Any ``z̄ + c`` gives the same distribution; these are the canonical choices.
    """
    if not teacher_logits:
        raise ValueError("ensemble_logits needs at least one teacher")
    if average not in AVERAGES:
        raise ValueError(f"average={average!r}: expected one of {', '.join(AVERAGES)}")
    z = torch.stack([t.float() for t in teacher_logits])  # (K, B, C)
    if average == "logits":
        return z.mean(dim=0)
    log_p = torch.log_softmax(z / temperature, dim=-1)
    return temperature * (torch.logsumexp(log_p, dim=0) - math.log(len(teacher_logits)))


class MultiTeacher(Method[MultiTeacherConfig]):
    name = "multiteacher"
    description = "KD from the averaged soft targets of the single-domain teachers of all domains"
    teacher = "single"  # the single-domain teacher of every domain in the pool: see teacher_requests
    Config = MultiTeacherConfig

    def teacher_requests(self, target: str, domains: Sequence[str]) -> list[TeacherRequest]:
        return [TeacherRequest("single", d) for d in domains]

    def fit(self, ctx: FitContext) -> FitResult:
        c = self.config
        train = ctx.tokenize(ctx.data.train)
        p = ctx.profile
        per_teacher = []
        # every domain of the task, the target included; with --teacher-domains others, all but the target
        pool = list(ctx.teacher_pool or ctx.domains)
        for domain in pool:
            handle = ctx.teacher("single", domain)
            per_teacher.append(predict(handle.model, train, handle.head, ctx.device, ctx.precision,
                                       p.eval_batch_size))
        targets = ensemble_logits(per_teacher, c.temperature, c.average).to(ctx.device)  # (N, C), train order
        student = ctx.build_student()

        def loss_fn(batch: dict[str, torch.Tensor]) -> torch.Tensor:
            s = forward(student, batch).logits.float()
            return hinton_kd_loss(s, targets[batch["index"]], batch["labels"], alpha=c.alpha,
                                  temperature=c.temperature)

        fit = train_student(ctx, student, loss_fn, p.student_train, stage=self.name, train_data=train)
        fit.info["teacher_domains"] = list(pool)
        return fit


@hookimpl
def kdbench_register_methods() -> list[type[Method]]:
    return [MultiTeacher]
