"""A third-party method plugin used by the tests: label smoothing on the student, no teacher."""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F

from kdbench import hookimpl
from kdbench.api import Method, MethodConfig


@dataclass(frozen=True)
class SmoothConfig(MethodConfig):
    smoothing: float = 0.1


class LabelSmoothing(Method):
    name = "smooth"
    description = "Student with label-smoothed cross-entropy (test plugin)"
    Config = SmoothConfig

    def loss(self, batch, student, teacher):
        return F.cross_entropy(student.logits.float(), batch["labels"], label_smoothing=self.config.smoothing)


@hookimpl
def kdbench_register_methods():
    return [LabelSmoothing]
