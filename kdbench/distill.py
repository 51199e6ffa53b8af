"""The distillation toolkit that several methods share (TinyBERT's two stages and the teacher rows).

* TinyBERT's task distillation (Jiao et al., Findings of EMNLP 2020; official code
  huawei-noah/Pretrained-Language-Model ``TinyBERT/task_distill.py``): :class:`TinyBERTConfig`,
  :class:`LayerDistiller` (intermediate layers), :func:`run_stage1` / :func:`run_stage2` /
  :func:`combine` (the two stages) and :func:`tinybert_distill`; the method ``tinybert``
  (:class:`TinyBERT`) and the ``mix`` / ``mtl`` methods (the same objective from other teachers)
  are this, and ``metakd`` reuses the stage helpers. The objective and its options are documented
  in the ``tinybert`` plugin (``methods/tinybert.py``).
* :func:`pooled`: the examples of every training domain of a teacher (the mix and meta teachers).
* :class:`KDConfig`: the options of Hinton KD, shared by ``kd`` and ``multiteacher`` (written once).

Plugins import these from here (the core), never from another plugin.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from kdbench.api import FitContext, FitResult, Method, MethodConfig, TeacherContext
from kdbench.losses import (
    attention_mse,
    attention_mse_padded,
    hidden_mse,
    hidden_mse_padded,
    soft_cross_entropy,
    tinybert_layer_map,
)
from kdbench.stagecache import cached_stage
from kdbench.teachers import cached_teacher, teacher_logits
from kdbench.trainer import INPUTS, forward, train_student

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from kdbench.api import Example, TrainConfig
    from kdbench.data import Encoded
    from kdbench.modeling import KDModel, ModelOutput
    from kdbench.teachers import TeacherHandle


_CHOICES = {
    "stage1_schedule": ("linear", "constant"),
    "mse_normalisation": ("real_tokens", "padded"),
    "projection": ("when_needed", "always"),
    "student_head": ("dropout", "relu"),
    "soft_ce_reduction": ("sum", "mean"),
}


@dataclass(frozen=True)
class TinyBERTConfig(MethodConfig):
    """Epochs and learning rates default to the official task-distillation settings (profiles scale
    them down); the string options default to kdbench's choices, their second value is the official
    behaviour (see the module docstring)."""

    stage1_epochs: int = 10  # intermediate-layer distillation (0 skips the stage)
    stage2_epochs: int = 3  # prediction-layer distillation
    lr_stage1: float = 5e-5
    lr_stage2: float = 3e-5
    temperature: float = 1.0
    stage1_schedule: str = "linear"
    mse_normalisation: str = "real_tokens"
    projection: str = "when_needed"
    student_head: str = "dropout"
    soft_ce_reduction: str = "sum"

    def __post_init__(self) -> None:
        for key, allowed in _CHOICES.items():
            if getattr(self, key) not in allowed:
                raise ValueError(f"{key}={getattr(self, key)!r}: expected one of {', '.join(allowed)}")
        if self.stage1_epochs < 0 or self.stage2_epochs < 1:
            raise ValueError(f"need stage1_epochs >= 0 and stage2_epochs >= 1, got "
                             f"{self.stage1_epochs} and {self.stage2_epochs}")
        if self.lr_stage1 <= 0 or self.lr_stage2 <= 0:
            raise ValueError("learning rates must be positive")
        if self.temperature <= 0:
            raise ValueError(f"temperature={self.temperature} must be positive")


#: options that only stage 2 reads: a sweep over them reuses stage 1 (see :func:`run_stage1`)
STAGE2_ONLY = frozenset({"stage2_epochs", "lr_stage2", "temperature", "soft_ce_reduction"})


class LayerDistiller(nn.Module):
    """TinyBERT's intermediate-layer objective between one student and one teacher architecture.

    Holds the layer map and the shared projection W_h (``None`` when the widths are equal, unless
    ``projection="always"``: the official ``fit_dense``, BERT-initialised). ``normalisation`` picks
    the MSE form: ``"real_tokens"`` (kdbench) or ``"padded"`` (official; inputs padded to max_len).
    """

    def __init__(self, student: KDModel, teacher: KDModel, *, projection: str = "when_needed",
                 normalisation: str = "real_tokens") -> None:
        super().__init__()
        s_heads = int(student.config.num_attention_heads)
        t_heads = int(teacher.config.num_attention_heads)
        if s_heads != t_heads:
            raise ValueError(f"attention distillation pairs heads one to one: the student has {s_heads} "
                             f"heads, the teacher {t_heads}; choose models with equal head counts")
        self.layer_map = tinybert_layer_map(teacher.num_layers, student.num_layers)
        self.normalisation = normalisation
        self.projection: nn.Linear | None = None
        if projection == "always" or student.hidden_size != teacher.hidden_size:
            self.projection = nn.Linear(student.hidden_size, teacher.hidden_size)
        if projection == "always":
            # TinyBERT/transformer/modeling.py: fit_dense is a BertPreTrainedModel Linear, initialised by
            # init_bert_weights: normal(0, initializer_range = 0.02), zero bias
            assert self.projection is not None
            nn.init.normal_(self.projection.weight, std=float(getattr(student.config, "initializer_range", 0.02)))
            nn.init.zeros_(self.projection.bias)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """W_h·x in float32 (identity when the widths are equal)."""
        return (self.projection(x) if self.projection is not None else x).float()

    def terms(self, student: ModelOutput, teacher: ModelOutput,
              attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-example ``(hidden, attention)`` losses, each summed over the mapped layers: ``(B,), (B,)``."""
        s_h, t_h = student.hidden_states, teacher.hidden_states
        s_a, t_a = student.attention_scores, teacher.attention_scores
        if s_h is None or t_h is None or s_a is None or t_a is None:
            raise ValueError("layer distillation needs hidden states and attention scores (output_hidden=True)")
        if self.normalisation == "padded":
            hid = sum(hidden_mse_padded(self.project(s_h[m]), t_h[g].float()) for m, g in enumerate(self.layer_map))
            att = sum(attention_mse_padded(s_a[m - 1].float(), t_a[g - 1].float(), attention_mask)
                      for m, g in enumerate(self.layer_map) if m > 0)
        else:
            hid = sum(hidden_mse(self.project(s_h[m]), t_h[g].float(), attention_mask)
                      for m, g in enumerate(self.layer_map))
            att = sum(attention_mse(s_a[m - 1].float(), t_a[g - 1].float(), attention_mask)
                      for m, g in enumerate(self.layer_map) if m > 0)
        assert isinstance(hid, torch.Tensor) and isinstance(att, torch.Tensor)
        return hid, att


def stage_config(ctx: FitContext, epochs: int, lr: float, **changes: Any) -> TrainConfig:
    """The profile's student optimiser settings with a stage's epochs and learning rate."""
    return ctx.profile.student_train.replace(epochs=epochs, lr=lr, **changes)


def pad_to(batch: dict[str, torch.Tensor], length: int) -> dict[str, torch.Tensor]:
    """Pad a collated batch's token tensors on the right to ``length`` (pad id 0, mask 0)."""
    out = dict(batch)
    for k in INPUTS:
        x = batch[k]
        out[k] = torch.nn.functional.pad(x, (0, max(0, length - x.shape[1])), value=0)
    return out


def distiller_for(student: KDModel, teacher: KDModel, config: TinyBERTConfig) -> LayerDistiller:
    """The :class:`LayerDistiller` the options of ``config`` ask for; also sets the student's head."""
    student.set_head_input(config.student_head)
    return LayerDistiller(student, teacher, projection=config.projection, normalisation=config.mse_normalisation)


def stage1_batch(ctx: FitContext, batch: dict[str, torch.Tensor], config: TinyBERTConfig) -> dict[str, torch.Tensor]:
    """The batch stage 1 runs on: padded to ``max_len`` for the official normalisation, else as is."""
    return pad_to(batch, ctx.profile.max_len) if config.mse_normalisation == "padded" else batch


def run_stage1(ctx: FitContext, student: KDModel, loss_fn: Callable[[dict[str, torch.Tensor]], torch.Tensor],
               params: Iterable[nn.Parameter], config: TinyBERTConfig, *, stage: str,
               train_data: Encoded | None = None, teacher_key: str = "") -> FitResult | None:
    """Intermediate-layer stage: no dev selection (no classifier signal); ``None`` when 0 epochs.

    With ``teacher_key`` (the teacher's content hash), an identical stage computed before (e.g. by a
    cell of a temperature sweep) is restored instead of recomputed (:mod:`kdbench.stagecache`).
    """
    if config.stage1_epochs == 0:
        return None
    cfg = stage_config(ctx, config.stage1_epochs, config.lr_stage1, schedule=config.stage1_schedule)
    data, params = train_data if train_data is not None else ctx.tokenize(ctx.data.train), list(params)
    options = {k: v for k, v in dataclasses.asdict(config).items() if k not in STAGE2_ONLY}
    return cached_stage(ctx, student, params, teacher_key=teacher_key, data=data, train=cfg,
                        options={"config": type(config).__name__, **options}, stage=f"{stage}:stage1",
                        compute=lambda: train_student(ctx, student, loss_fn, cfg, stage=f"{stage}:stage1",
                                                      params=params, train_data=data, select_on_dev=False))


def run_stage2(ctx: FitContext, student: KDModel, teacher: TeacherHandle, config: TinyBERTConfig, *,
               stage: str, train_data: Encoded | None = None) -> FitResult:
    """Prediction-layer stage: soft CE at ``config.temperature``; keeps the best dev epoch.

    The frozen teacher's logits are computed once (and cached on disk by the core) rather than in
    every step: the teacher is in eval mode, so they are the same values.
    """
    T = config.temperature
    data = train_data if train_data is not None else ctx.tokenize(ctx.data.train)
    t_logits = teacher_logits(ctx, teacher, data)
    # official (.mean() over batch AND classes): the class-summed cross-entropy divided by C
    scale = 1.0 / t_logits.shape[-1] if config.soft_ce_reduction == "mean" else 1.0

    def loss_fn(batch: dict[str, torch.Tensor]) -> torch.Tensor:
        target = t_logits[batch["index"].cpu()].to(ctx.device)
        return soft_cross_entropy(forward(student, batch).logits.float(), target, T).mean() * scale

    return train_student(ctx, student, loss_fn, stage_config(ctx, config.stage2_epochs, config.lr_stage2),
                         stage=f"{stage}:stage2", train_data=data)


def combine(student: KDModel, stage1: FitResult | None, stage2: FitResult, *, stage: str,
            **info: Any) -> FitResult:
    """One result for a two-stage run: losses of both stages in order, selection info of stage 2.

    ``info["stages"]`` keeps each stage's own record (its losses included), so the intermediate-layer
    and prediction-layer curves, which are on different scales, can be told apart.
    """
    stages = [r for r in (stage1, stage2) if r is not None]
    return FitResult(model=student, head="main", losses=[x for r in stages for x in r.losses],
                     info={**stage2.info, "stage": stage, "steps": sum(int(r.info["steps"]) for r in stages),
                           "stages": [{**r.info, "losses": r.losses} for r in stages], **info})


def tinybert_distill(ctx: FitContext, teacher: TeacherHandle, config: TinyBERTConfig, *,
                     stage: str = "tinybert") -> FitResult:
    """TinyBERT task distillation of a fresh student from ``teacher`` on the target domain."""
    student = ctx.build_student()
    distiller = distiller_for(student, teacher.model, config).to(ctx.device)
    # stage 1 reads the teacher's layers every epoch: cache them, except for the official padded
    # normalisation, which needs the teacher's states at the padded positions too
    layers = (teacher if config.mse_normalisation == "padded"
              else cached_teacher(ctx, teacher, ctx.tokenize(ctx.data.train)))

    def loss1(batch: dict[str, torch.Tensor]) -> torch.Tensor:
        batch = stage1_batch(ctx, batch, config)
        t_out = layers(batch, output_hidden=True)
        s_out = forward(student, batch, output_hidden=True)
        hid, att = distiller.terms(s_out, t_out, batch["attention_mask"])
        return (hid + att).mean()

    r1 = run_stage1(ctx, student, loss1, [*student.parameters(), *distiller.parameters()], config, stage=stage,
                    teacher_key=teacher.key and f"{teacher.key}/{teacher.head}")
    r2 = run_stage2(ctx, student, teacher, config, stage=stage)
    return combine(student, r1, r2, stage=stage, projection=distiller.projection is not None)


class TinyBERT(Method[TinyBERTConfig]):
    """TinyBERT task distillation; options and their official values: see the module docstring and
    the README's `Fidelity to the official code <../README.md#fidelity-to-the-official-code>`_."""

    name = "tinybert"
    description = "TinyBERT task distillation (layers, then predictions) from the single-domain teacher"
    teacher = "single"
    needs_hidden = True
    Config = TinyBERTConfig

    def fit(self, ctx: FitContext) -> FitResult:
        return tinybert_distill(ctx, ctx.teacher(self.teacher), self.config, stage=self.name)


def pooled(ctx: TeacherContext, split: str) -> tuple[Example, ...]:
    """The ``split`` examples of every training domain, domain after domain."""
    return tuple(ex for d in ctx.train_domains for ex in getattr(ctx.domains[d], split))


@dataclass(frozen=True)
class KDConfig(MethodConfig):
    """Options of vanilla KD (:func:`kdbench.losses.hinton_kd_loss`): ``kd``'s, and ``multiteacher``'s
    (which adds its own), so that the two rows differ only in their teachers."""

    alpha: float = 0.5  # weight of the soft-target term
    temperature: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha={self.alpha} must lie in [0, 1]")
        if not self.temperature > 0:
            raise ValueError(f"temperature={self.temperature} must be positive")
