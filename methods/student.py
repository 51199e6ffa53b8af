"""``student``: the student fine-tuned on the target domain alone, no teacher (the paper's BERT_S row)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kdbench import hookimpl
from kdbench.api import Method, MethodConfig
from kdbench.trainer import cross_entropy

if TYPE_CHECKING:
    from collections.abc import Mapping

    import torch

    from kdbench.modeling import ModelOutput


class Student(Method[MethodConfig]):
    name = "student"
    description = "Student fine-tuned on the target domain without a teacher (BERT_S)"

    def loss(self, batch: Mapping[str, torch.Tensor], student: ModelOutput,
             teacher: ModelOutput | None) -> torch.Tensor:
        return cross_entropy(batch, student.logits)


@hookimpl
def kdbench_register_methods() -> list[type[Method]]:
    return [Student]
