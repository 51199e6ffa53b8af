"""``mtl``: the BERT_B-mtl teacher (shared encoder, one head per domain) distilled with TinyBERT.

* Teacher kind ``mtl``: one encoder shared by all domains of the task and one classification head
  per domain, named after the domain. It trains on the pooled train splits of every domain; each
  example's loss is the cross-entropy of ITS OWN domain's head (mini-batches mix domains; every
  head sees only its domain's examples, the encoder sees all). Checkpoint selection uses the pooled
  dev splits of every domain, each dev example scored with its own domain's head, so the selected
  teacher does not depend on which target asked for it and is shared across targets.
* Held-out target (``--teacher-domains others``): the teacher trains on the other domains only, so
  it has no head of the target's own. It is then read through the MEAN of its heads' logits
  (:class:`MeanOfHeads`, registered under the target's name, with no parameters of its own): the
  target is treated as an unknown domain to which every trained domain's head contributes equally.
* Method ``mtl``: a fresh student distilled on the target domain with the TinyBERT objective from
  the mtl teacher read through the TARGET domain's head (the runner's handle carries that head).
* Row ``teacher:mtl`` (derived by the registry from the kind): the mtl teacher's target head
  evaluated on the target test set.

Where the stages differ from the official code, and the options that switch them: the README's
"Fidelity to the official code" table (``#fidelity-to-the-official-code``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from kdbench import hookimpl
from kdbench.api import FitResult, Method, Teacher, TeacherConfig, TeacherContext
from kdbench.distill import TinyBERT, pooled
from kdbench.losses import cross_entropy_per_example
from kdbench.trainer import forward, predict, train_teacher

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from kdbench.modeling import KDModel


def per_domain_logits(model: KDModel, batch: Mapping[str, torch.Tensor], heads: Sequence[str]) -> torch.Tensor:
    """Logits of each example from its own domain's head; ``batch["domain"]`` indexes ``heads``."""
    x = model.dropout(forward(model, batch, head=heads[0]).pooled)
    every = torch.stack([model.heads[h](x) for h in heads], dim=1)  # (B, K, C)
    return every[torch.arange(every.shape[0], device=every.device), batch["domain"]]


def pooled_dev_accuracy(model: KDModel, ctx: TeacherContext, heads: Sequence[str]) -> float:
    """Accuracy on the dev splits of all domains pooled, each example read through its domain's head."""
    correct = total = 0
    p = ctx.profile
    for d in heads:
        dev = ctx.tokenize(ctx.domains[d].dev)
        if not len(dev):
            continue
        logits = predict(model, dev, d, ctx.device, ctx.precision, p.eval_batch_size)
        correct += int((logits.argmax(-1) == torch.tensor(dev.labels)).sum())
        total += len(dev)
    return 100.0 * correct / total if total else float("nan")


class MeanOfHeads(torch.nn.Module):
    """The mean of other heads' logits; holds them outside its own parameters (no state of its own)."""

    def __init__(self, heads: Sequence[torch.nn.Module]) -> None:
        super().__init__()
        self._heads = list(heads)  # a plain list: not registered, so the checkpoint does not change
        self.out_features = int(self._heads[0].out_features)  # what kdbench.trainer.predict reads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([h(x) for h in self._heads]).mean(dim=0)


class MTLTeacher(Teacher[TeacherConfig]):
    name = "mtl"
    description = "Multi-task teacher: shared encoder, one head per domain (BERT_B-mtl)"

    def train_domains(self, target: str, all_domains: Sequence[str]) -> tuple[str, ...]:
        return tuple(all_domains)

    def heads(self, train_domains: Sequence[str]) -> tuple[str, ...]:
        return tuple(train_domains)

    def head_for(self, target: str) -> str:
        return target

    def build(self, ctx: TeacherContext) -> KDModel:
        model = super().build(ctx)
        if ctx.target not in ctx.train_domains:  # held out: read through the mean of the heads
            model.heads[ctx.target] = MeanOfHeads([model.heads[d] for d in ctx.train_domains])
        return model

    def fit(self, ctx: TeacherContext) -> FitResult:
        heads = self.heads(ctx.train_domains)
        model = self.build(ctx).to(ctx.device)
        domain_ids = [i for i, d in enumerate(heads) for _ in ctx.domains[d].train]
        train = ctx.tokenize(pooled(ctx, "train")).with_extra(domain=domain_ids)

        def loss_fn(batch: dict[str, torch.Tensor]) -> torch.Tensor:
            return cross_entropy_per_example(per_domain_logits(model, batch, heads).float(),
                                             batch["labels"]).mean()

        return train_teacher(ctx, model, loss_fn, train, ctx.tokenize(pooled(ctx, "dev")), stage="teacher:mtl",
                             score_fn=lambda m: pooled_dev_accuracy(m, ctx, heads))


class MTL(TinyBERT):
    """TinyBERT's task distillation, unchanged, from another teacher."""

    name = "mtl"
    description = "TinyBERT distillation from the multi-task teacher's target head (BERT_B-mtl → student)"
    teacher = "mtl"


@hookimpl
def kdbench_register_teachers() -> list[type[Teacher]]:
    return [MTLTeacher]


@hookimpl
def kdbench_register_methods() -> list[type[Method]]:
    return [MTL]
