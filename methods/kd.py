"""``kd``: vanilla knowledge distillation (Hinton, Vinyals & Dean 2015).

loss = α·T²·KL(softmax(t/T) ‖ softmax(s/T)) (batchmean) + (1−α)·CE(s, y), from the target domain's
single-domain teacher. The T² factor keeps the soft-target gradients on the scale of the hard ones.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kdbench import hookimpl
from kdbench.api import Method
from kdbench.distill import KDConfig  # alpha, temperature (shared with multiteacher)
from kdbench.losses import hinton_kd_loss

if TYPE_CHECKING:
    from collections.abc import Mapping

    import torch

    from kdbench.modeling import ModelOutput


class KD(Method[KDConfig]):
    name = "kd"
    description = "Vanilla KD (Hinton et al. 2015) from the single-domain teacher"
    teacher = "single"
    Config = KDConfig

    def loss(self, batch: Mapping[str, torch.Tensor], student: ModelOutput,
             teacher: ModelOutput | None) -> torch.Tensor:
        assert teacher is not None and isinstance(self.config, KDConfig)
        return hinton_kd_loss(student.logits.float(), teacher.logits.float(), batch["labels"],
                              alpha=self.config.alpha, temperature=self.config.temperature)


@hookimpl
def kdbench_register_methods() -> list[type[Method]]:
    return [KD]
