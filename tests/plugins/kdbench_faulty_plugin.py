"""Test plugin: methods that fail mid-training (NaN loss, injected CUDA out-of-memory)."""

from __future__ import annotations

import torch

from kdbench import hookimpl
from kdbench.api import Method
from kdbench.trainer import cross_entropy


class NaNAtStep3(Method):
    name = "nan3"
    description = "loss becomes NaN at step 3"

    def __init__(self, config=None):
        super().__init__(config)
        self.calls = 0

    def loss(self, batch, student, teacher):
        self.calls += 1
        loss = cross_entropy(batch, student.logits)
        return loss * float("nan") if self.calls == 3 else loss


class OOM(Method):
    name = "oom"
    description = "raises CUDA out-of-memory"

    def loss(self, batch, student, teacher):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")


@hookimpl
def kdbench_register_methods():
    return [NaNAtStep3, OOM]
