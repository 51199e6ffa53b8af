"""``mix``: the BERT_B-mix teacher (one head, pooled data of all domains) distilled with TinyBERT.

* Teacher kind ``mix``: the teacher fine-tuned on the train splits of every domain of the task
  pooled together, with one classification head, selected on the pooled dev splits of every domain.
  Its training data are those of the cell (the target's train split carries the cell's fraction),
  so the runner trains one mix teacher per distinct pooled data set and shares it across methods.
* Method ``mix``: a fresh student distilled from that teacher on the target domain with the TinyBERT
  objective (:func:`kdbench.distill.tinybert_distill`); options as ``tinybert``.
* Row ``teacher:mix`` (derived by the registry from the kind): the mix teacher itself evaluated on
  the target test set (the paper's BERT_B-mix row).

Where the stages differ from the official code, and the options that switch them: the README's
"Fidelity to the official code" table (``#fidelity-to-the-official-code``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kdbench import hookimpl
from kdbench.api import FitResult, Method, Teacher, TeacherConfig, TeacherContext
from kdbench.distill import TinyBERT, pooled
from kdbench.trainer import cross_entropy, forward, train_teacher

if TYPE_CHECKING:
    from collections.abc import Sequence


class MixTeacher(Teacher[TeacherConfig]):
    name = "mix"
    description = "Teacher fine-tuned on the pooled data of all domains, one head (BERT_B-mix)"

    def train_domains(self, target: str, all_domains: Sequence[str]) -> tuple[str, ...]:
        return tuple(all_domains)

    def fit(self, ctx: TeacherContext) -> FitResult:
        model = self.build(ctx).to(ctx.device)
        return train_teacher(ctx, model, lambda b: cross_entropy(b, forward(model, b).logits),
                             ctx.tokenize(pooled(ctx, "train")), ctx.tokenize(pooled(ctx, "dev")),
                             stage="teacher:mix")


class Mix(TinyBERT):
    """TinyBERT's task distillation, unchanged, from another teacher."""

    name = "mix"
    description = "TinyBERT distillation from the mix teacher (BERT_B-mix → student)"
    teacher = "mix"


@hookimpl
def kdbench_register_teachers() -> list[type[Teacher]]:
    return [MixTeacher]


@hookimpl
def kdbench_register_methods() -> list[type[Method]]:
    return [Mix]
