"""``tinybert``: TinyBERT task-specific distillation (Jiao et al., Findings of EMNLP 2020).

Two stages, from the target domain's single-domain teacher, on the target domain's train split:

* **Stage 1, intermediate layers.** Per example, the sum over the mapped hidden states (the
  embedding output included) of the MSE between the projected student state and the teacher state,
  plus the sum over the mapped layers of the MSE between pre-softmax attention scores. Layer map
  ``g(m) = m · L_T / L_S``: student ``hidden_states[m]`` ↔ teacher ``hidden_states[g(m)]``
  (m = 0..L_S, 0 = embeddings) and student attention layer m ↔ teacher layer g(m) (m = 1..L_S).
  ONE learned linear projection W_h (student width → teacher width), shared by every hidden state,
  exists only when the widths differ (official ``fit_dense``); it is trained with the student and
  discarded after the stage. Stage 1 has no classifier signal, so no dev-based checkpoint
  selection happens here: the last epoch is kept.
* **Stage 2, prediction layer.** Soft cross-entropy ``−Σ_c softmax(z_T/T)_c · log_softmax(z_S/T)_c``
  (T = 1 as in the official code), no hard-label term; the best dev-accuracy epoch is kept.

Attention distillation matches heads one to one, so teacher and student must have the same number
of attention heads (12 and 12 in the paper's BERT-base → TinyBERT-4L setup).

Out of scope: TinyBERT's *general* distillation (pre-training-stage distillation on a corpus; the
``paper`` profile starts from the released General TinyBERT instead) and its *data augmentation*
(GloVe/BERT word replacement that enlarges each task's train set ~20×). Both belong to TinyBERT's
recipe but would confound a comparison of distillation objectives on identical data.

Where kdbench's default differs from the official code (huawei-noah/Pretrained-Language-Model
``TinyBERT/task_distill.py``), an option restores the official behaviour and the ``paper`` profile
sets it; the README's "Fidelity to the official code" table gives each point, its reason and its
option. In short:

* ``stage1_schedule``: ``"linear"`` (default: the profile's warmup and linear decay) or
  ``"constant"`` (official: ``BertAdam(schedule='none')`` in stage 1, no warmup, no decay).
* ``mse_normalisation``: ``"real_tokens"`` (default: each example averaged over its own real tokens,
  so that dynamic padding cannot change the loss) or ``"padded"`` (official: every batch padded to
  ``max_len`` and averaged over the whole tensor, :func:`kdbench.losses.hidden_mse_padded`,
  :func:`kdbench.losses.attention_mse_padded`).
* ``projection``: ``"when_needed"`` (default: W_h only when the widths differ, PyTorch's Linear init)
  or ``"always"`` (official ``fit_dense``: always present, BERT init N(0, 0.02), zero bias).
* ``student_head``: ``"dropout"`` (default: ``classifier(dropout(pooled))``, what an exported Hugging
  Face model computes) or ``"relu"`` (official ``classifier(relu(pooled))``, no dropout).
* ``soft_ce_reduction``: ``"sum"`` (default: the cross-entropy, summed over classes) or ``"mean"``
  (official ``(−p·log q).mean()``, i.e. divided by the number of classes C).

The implementation is in the core, :mod:`kdbench.distill`: :func:`~kdbench.distill.tinybert_distill`
is reused by ``mix`` and ``mtl`` (same objective, other teachers), and the stage helpers by ``metakd``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kdbench import hookimpl

# the toolkit lives in the core (mix, mtl and metakd reuse it); re-exported for existing imports
from kdbench.distill import (  # noqa: F401
    STAGE2_ONLY,
    LayerDistiller,
    TinyBERT,
    TinyBERTConfig,
    combine,
    distiller_for,
    pad_to,
    run_stage1,
    run_stage2,
    stage1_batch,
    stage_config,
    tinybert_distill,
)

if TYPE_CHECKING:
    from kdbench.api import Method


@hookimpl
def kdbench_register_methods() -> list[type[Method]]:
    return [TinyBERT]
