"""The single-domain teacher (BERT_B-single): the teacher kind ``single``.

The ``single`` teacher is the large model fine-tuned on the target domain's (subsampled) train
split, selected on its dev split. Its evaluation row is named ``teacher`` (``row``; the registry
derives it, :class:`kdbench.api.TeacherRow`): it evaluates that same trained teacher on the target
test set, so the table's teacher row costs no extra training.
"""

from __future__ import annotations

from kdbench import hookimpl
from kdbench.api import FitResult, Teacher, TeacherConfig, TeacherContext
from kdbench.trainer import cross_entropy, forward, train_teacher


class SingleTeacher(Teacher[TeacherConfig]):
    name = "single"
    description = "Teacher fine-tuned on the target domain only (BERT_B-single)"
    row = "teacher"

    def fit(self, ctx: TeacherContext) -> FitResult:
        model = self.build(ctx).to(ctx.device)
        data = ctx.domains[ctx.target]
        return train_teacher(ctx, model, lambda b: cross_entropy(b, forward(model, b).logits),
                             ctx.tokenize(data.train), ctx.tokenize(data.dev), stage=f"teacher:{ctx.target}")


@hookimpl
def kdbench_register_teachers() -> list[type[Teacher]]:
    return [SingleTeacher]
