"""Distillation losses for Vanilla KD, BERT-PKD, TinyBERT and Meta-KD, as pure torch functions.

Every function here is stateless: no modules are created, nothing is cached, no randomness is
drawn except where a :class:`torch.Generator` is passed (or, if none is passed, torch's global RNG in
:func:`domain_corruption_loss`).

Conventions shared with the rest of kdbench
-------------------------------------------
* ``logits``: ``(B, C)``; ``labels``: ``(B,)`` long.
* hidden states: a sequence of ``(B, T, H)`` tensors; index 0 is the embedding output and index ``i``
  the output of layer ``i`` (the Hugging Face ``output_hidden_states`` convention).
* attention scores: a list of ``(B, heads, T, T)`` PRE-softmax scores ``q·kᵀ/√d`` per layer, with no
  mask added; list index 0 is layer 1.
* ``attention_mask``: ``(B, T)``, 1 for real tokens and 0 for padding.

Per-example losses
------------------
Most functions return a PER-EXAMPLE loss vector of shape ``(B,)`` (their docstrings say so, and the
names of their outputs end in "per example"). WHY: Meta-KD weights each example by its own
domain-expertise weight λ_i, so the batch loss must be ``mean_i(λ_i · l_i)``. Returning a scalar that
was already averaged over the batch (as EasyNLP's re-implementation does with ``reduction='mean'``)
silently turns this into ``mean(λ) · mean(l)``. Callers that need no weights simply call ``.mean()``.

Sources read for this module (for understanding only; nothing is copied):

* Hinton et al. 2015, "Distilling the Knowledge in a Neural Network".
* BERT-PKD, Sun et al. EMNLP 2019; official code intersun/PKD-for-BERT-Model-Compression
  (``src/KD_loss.py``, ``src/utils.py``, ``src/nli_data_processing.py``, ``scripts/run_student_patience.py``,
  ``src/argument_parser.py``).
* TinyBERT, Jiao et al. 2020; official code huawei-noah/Pretrained-Language-Model
  ``TinyBERT/task_distill.py`` and ``TinyBERT/transformer/modeling.py``.
* Meta-KD, Pan et al. ACL 2021; alibaba/EasyNLP ``easynlp/distillation/distill_metakd_application.py``,
  ``easynlp/utils/losses.py``, ``examples/knowledge_distillation/metakd/{extract_embeddings,
  generate_meta_weights}.py``; alibaba/EasyTransfer ``scripts/metaKD/meta_distill.py`` (at 05d2b48).

Where kdbench's default differs from the official code, the official form is an option; the README's
"Fidelity to the official code" table lists every such point.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from collections.abc import Sequence

    from torch import Tensor, nn

__all__ = [
    "attention_mse",
    "attention_mse_padded",
    "cross_entropy_per_example",
    "domain_corruption_loss",
    "expertise_weights",
    "hidden_mse",
    "hidden_mse_padded",
    "hinton_kd_loss",
    "kd_kl_per_example",
    "masked_mean_pool",
    "meta_distill_stage1_loss",
    "meta_teacher_loss",
    "pkd_layer_map",
    "pkd_patient_loss",
    "prototype_scores",
    "soft_cross_entropy",
    "tinybert_layer_map",
]


# ------------------------------------------------------------------------------------------ helpers
def _check_temperature(temperature: float) -> None:
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}")


def _check_logits_pair(student_logits: Tensor, teacher_logits: Tensor) -> None:
    if student_logits.dim() != 2 or student_logits.shape != teacher_logits.shape:
        raise ValueError(
            "student and teacher logits must both be (B, C) with the same shape; got "
            f"{tuple(student_logits.shape)} and {tuple(teacher_logits.shape)}"
        )


def _mask_or_ones(attention_mask: Tensor | None, batch: int, length: int, like: Tensor) -> Tensor:
    """The (B, T) mask as ``like``'s float dtype; all ones when ``attention_mask`` is None."""
    if attention_mask is None:
        return torch.ones(batch, length, dtype=like.dtype, device=like.device)
    if attention_mask.shape != (batch, length):
        raise ValueError(f"attention_mask must be ({batch}, {length}), got {tuple(attention_mask.shape)}")
    return attention_mask.to(device=like.device, dtype=like.dtype)


def _check_per_example(name: str, value: Tensor, batch: int) -> None:
    if value.shape != (batch,):
        raise ValueError(f"{name} must be a per-example vector of shape ({batch},), got {tuple(value.shape)}")


# ---------------------------------------------------------------------------- vanilla KD (Hinton)
def cross_entropy_per_example(logits: Tensor, labels: Tensor) -> Tensor:
    """Hard-label cross-entropy per example: ``l_i = -log softmax(z_i)[y_i]``.

    Returns the ``(B,)`` per-example vector; ``.mean()`` equals ``F.cross_entropy(logits, labels)``.
    """
    return F.cross_entropy(logits, labels, reduction="none")


def kd_kl_per_example(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    """Temperature-scaled KL divergence per example, including the T² factor.

    ``l_i = T² · KL(softmax(t_i/T) ‖ softmax(s_i/T)) = T² · Σ_c p_c (log p_c − log q_c)``
    with ``p = softmax(t/T)`` (teacher) and ``q = softmax(s/T)`` (student).

    Returns the ``(B,)`` per-example vector. Its ``.mean()`` equals
    ``T² · F.kl_div(log_softmax(s/T), softmax(t/T), reduction="batchmean")``: the KL is summed over
    classes and averaged over examples only (WHY: ``reduction="mean"`` would also divide by C, a
    class-count-dependent rescaling that is not the KL divergence; PyTorch documents ``batchmean`` as
    the mathematically correct reduction).

    The T² factor (Hinton et al. 2015, §2) keeps the soft-target gradients at the same magnitude as
    the hard-label gradients when T changes, so α keeps its meaning across temperatures.
    ``F.kl_div`` treats ``0·log 0`` as 0, so a teacher probability that underflows to 0 is safe.
    """
    _check_logits_pair(student_logits, teacher_logits)
    _check_temperature(temperature)
    log_q = F.log_softmax(student_logits / temperature, dim=-1)
    p = F.softmax(teacher_logits / temperature, dim=-1)
    return F.kl_div(log_q, p, reduction="none").sum(dim=-1) * (temperature * temperature)


def hinton_kd_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    labels: Tensor,
    alpha: float,
    temperature: float,
) -> Tensor:
    """Vanilla KD (Hinton et al. 2015), a SCALAR batch loss.

    ``L = α · T² · KL_batchmean(softmax(t/T) ‖ softmax(s/T)) + (1 − α) · CE(s, y)``

    where the KL is ``F.kl_div(log_softmax(s/T), softmax(t/T), reduction="batchmean")`` (sum over
    classes, mean over the batch) and CE is the mean hard-label cross-entropy at T = 1. α = 0 is plain
    fine-tuning; α = 1 is pure soft-target training.

    Source note: this is Hinton et al.'s form (KL summed over classes) and EasyNLP's ``vanilla_loss``.
    The official BERT-PKD code (``src/KD_loss.py::distillation_loss``) instead uses
    ``nn.KLDivLoss(reduction='mean')``, i.e. it divides the summed KL by B·C rather than B: its KD term
    is this one divided by the number of classes C. A PKD method that wants to reproduce the PKD
    hyper-parameters (α, β, T) exactly must account for that factor.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")
    kd = kd_kl_per_example(student_logits, teacher_logits, temperature).mean()
    ce = cross_entropy_per_example(student_logits, labels).mean()
    return alpha * kd + (1.0 - alpha) * ce


def soft_cross_entropy(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    """Prediction-layer soft cross-entropy per example (TinyBERT stage 2, Meta-KD stage 2).

    ``l_i = −Σ_c softmax(t_i/T)_c · log_softmax(s_i/T)_c``

    Returns the ``(B,)`` per-example vector; ``.mean()`` is the cross-entropy averaged over the batch.

    No T² factor, deliberately: neither official code multiplies by T² (TinyBERT uses T = 1, where it
    makes no difference; Meta-KD's original used T = 1 and EasyNLP T = 2 without T²).

    Reduction note: the official TinyBERT ``task_distill.py`` and Meta-KD's (EasyTransfer
    ``scripts/metaKD/task_distill.py``, the stage 2 of ``run_meta_distill.sh``) average over ALL B·C
    elements (``(−p·log q).mean()``), i.e. their loss is this one divided by the number of classes C.
    The two-stage methods' option ``soft_ce_reduction="mean"`` divides by C to reproduce that scale.
    """
    _check_logits_pair(student_logits, teacher_logits)
    _check_temperature(temperature)
    log_q = F.log_softmax(student_logits / temperature, dim=-1)
    p = F.softmax(teacher_logits / temperature, dim=-1)
    return -(p * log_q).sum(dim=-1)


# ----------------------------------------------------------------------------------------- BERT-PKD
def pkd_layer_map(n_teacher: int, n_student: int, strategy: str) -> list[int]:
    """Teacher layer for each of the student's first ``n_student − 1`` layers (BERT-PKD).

    Returns 1-based teacher layer numbers, which are also the HF ``hidden_states`` indices (index 0 is
    the embedding output, never used by PKD). Entry ``m − 1`` is the teacher layer that student layer
    ``m`` (m = 1..n_student−1) learns from. The student's LAST layer is not in the map: PKD covers it
    with the prediction-layer KD term, not the patient loss.

    * ``"skip"`` (PKD-Skip): every k-th teacher layer, ``k = n_teacher // n_student``:
      ``[k, 2k, ..., (n_student−1)k]``. 12→6: [2, 4, 6, 8, 10]; 12→4: [3, 6, 9]; 6→3: [2, 4].
    * ``"last"`` (PKD-Last): the ``n_student − 1`` teacher layers just below the top:
      ``[n_teacher − n_student + 1, ..., n_teacher − 1]``. 12→6: [7, 8, 9, 10, 11]; 12→4: [9, 10, 11];
      6→3: [4, 5].

    Checked against the official code (intersun/PKD-for-BERT-Model-Compression): the teacher's
    ``feature_maps`` list holds the [CLS] vector of encoder layer ``i + 1`` at index ``i``
    (``src/utils.py::eval_model_dataloader``), and the student uses ``full_output[:-1]``, i.e. its
    layers 1..n_student−1 (``NLI_KD_training.py``). ``scripts/run_student_patience.py`` selects
    ``fc_layer_idx='1,3,5,7,9'`` for 12→6 (= layers 2,4,6,8,10, PKD-Skip, matching the paper's
    {2,4,6,8,10}) and ``'9,10'`` for 12→3 (= layers 10, 11, which is the "last" rule for 12→3). For a
    24-layer teacher it pre-selects layers 4,8,12,16,20 and uses them all for 6 layers (= skip with
    k = 4) and layers 8, 16 for 3 layers (= skip with k = 8). The paper's PKD-Last for 12→6 is
    {7,8,9,10,11}. All of these agree with the two rules above.

    Raises ``ValueError`` for an unknown strategy, ``n_student < 1`` or ``n_student > n_teacher``.
    """
    if n_student < 1 or n_teacher < 1:
        raise ValueError(f"layer counts must be >= 1, got n_teacher={n_teacher}, n_student={n_student}")
    if n_student > n_teacher:
        raise ValueError(f"student ({n_student} layers) cannot be deeper than the teacher ({n_teacher})")
    if strategy == "skip":
        k = n_teacher // n_student
        return [k * m for m in range(1, n_student)]
    if strategy == "last":
        return [n_teacher - n_student + m for m in range(1, n_student)]
    raise ValueError(f"unknown PKD strategy {strategy!r}; expected 'skip' or 'last'")


def pkd_patient_loss(
    student_cls: Sequence[Tensor],
    teacher_cls: Sequence[Tensor],
    normalize: bool = True,
) -> Tensor:
    """BERT-PKD patient loss per example, on [CLS] vectors of the mapped layers.

    ``l_i = mean_{j, h} ( v̂_S[j]_{i,h} − v̂_T[j]_{i,h} )²``,  ``v̂ = v / ‖v‖₂`` (when ``normalize``)

    ``student_cls[j]`` and ``teacher_cls[j]`` are ``(B, H)`` [CLS] vectors of the j-th mapped layer
    pair (see :func:`pkd_layer_map`). Returns the ``(B,)`` per-example vector.

    Reduction, checked against the official code (``src/KD_loss.py::patience_loss``): the student and
    teacher [CLS] vectors are stacked into ``(B, n_layers, H)``, L2-normalised along H
    (``F.normalize(p=2, dim=2)``, when ``--normalize_patience True``, the setting of the paper and of
    the example run) and compared with ``F.mse_loss`` at its default ``reduction='mean'``, i.e. a MEAN
    over the batch, the layers AND the hidden dimension. This function keeps the mean over layers and
    H per example, so ``.mean()`` over the batch reproduces the official value exactly. WHY follow the
    code and not the paper's formula (a sum of squared L2 distances over layers, i.e. a sum over H):
    the published β (e.g. 500, grid {10, 100, 500, 1000}) was tuned for the code's mean; the paper's
    sum is ``n_layers · H`` times larger. ``normalize=False`` reproduces the code's un-normalised
    variant (also part of its search grid).
    """
    if len(student_cls) != len(teacher_cls):
        raise ValueError(f"got {len(student_cls)} student layers but {len(teacher_cls)} teacher layers")
    if len(student_cls) == 0:
        raise ValueError("pkd_patient_loss needs at least one layer pair (a 1-layer student has none)")
    s = torch.stack(list(student_cls), dim=1)  # (B, L, H)
    t = torch.stack(list(teacher_cls), dim=1).to(dtype=s.dtype)
    if s.shape != t.shape or s.dim() != 3:
        raise ValueError(f"[CLS] stacks must both be (B, L, H); got {tuple(s.shape)} and {tuple(t.shape)}")
    if normalize:
        s = F.normalize(s, p=2.0, dim=-1)
        t = F.normalize(t, p=2.0, dim=-1)
    return (s - t).pow(2).mean(dim=(1, 2))


# ----------------------------------------------------------------------------------------- TinyBERT
def tinybert_layer_map(n_teacher: int, n_student: int) -> list[int]:
    """TinyBERT's uniform layer map ``g(m) = m · L_T / L_S`` for ``m = 0..n_student``.

    Entry ``m`` is the teacher ``hidden_states`` index that student ``hidden_states[m]`` learns from
    (m = 0 is the embedding output, mapped to the teacher's embedding output). 12→4: [0, 3, 6, 9, 12];
    6→3: [0, 2, 4, 6].

    The same map gives the attention pairs: student layer m (attention list index ``m − 1``) learns
    from teacher layer ``g(m)`` (list index ``g(m) − 1``), m = 1..n_student. This matches the official
    ``task_distill.py``: ``teacher_atts[i·k + k − 1]`` and ``teacher_reps[i·k]`` with
    ``k = L_T / L_S``.

    Raises ``ValueError`` unless ``n_teacher`` is a positive multiple of ``n_student``: the official
    code asserts ``teacher_layer_num % student_layer_num == 0`` and a non-integer ratio has no
    uniform map.
    """
    if n_student < 1 or n_teacher < 1:
        raise ValueError(f"layer counts must be >= 1, got n_teacher={n_teacher}, n_student={n_student}")
    if n_teacher % n_student != 0:
        raise ValueError(
            f"TinyBERT's layer map g(m) = m*L_T/L_S needs L_T divisible by L_S; got L_T={n_teacher}, "
            f"L_S={n_student}"
        )
    k = n_teacher // n_student
    return [m * k for m in range(n_student + 1)]


def hidden_mse(
    student_h: Tensor,
    teacher_h: Tensor,
    attention_mask: Tensor | None,
    projection: nn.Module | None = None,
) -> Tensor:
    """Hidden-state (or embedding) MSE per example, over real tokens only (TinyBERT / Meta-KD).

    ``l_i = Σ_t m_{i,t} · mean_h (W·s_{i,t} − t_{i,t})²_h / Σ_t m_{i,t}``

    ``student_h``: ``(B, T, H_S)``; ``teacher_h``: ``(B, T, H_T)``; ``m``: the attention mask. ``W`` is
    ``projection`` (TinyBERT's ``fit_dense``, Meta-KD's shared W_h). Returns the ``(B,)`` vector.

    Projection: when given it is always applied (the official TinyBERT student applies ``fit_dense``
    to every hidden state whenever it exists); its output width must equal H_T. When ``H_S != H_T``
    a projection is required (``ValueError`` otherwise); when the widths are equal it may be None
    (identity). Creating the projection only when widths differ is the caller's choice.

    Deliberate deviation from the official code: TinyBERT and EasyNLP call ``MSELoss()`` on the whole
    ``(B, 128, H)`` tensor padded to max_seq_length, so padding positions are averaged in. kdbench
    pads dynamically (to the longest sequence of the batch), so averaging padding in would make an
    example's loss depend on which other examples share its batch. Averaging over that example's real
    tokens (and H) makes the value batch-independent. An example with no real token gets loss 0.
    The official form is :func:`hidden_mse_padded` (option ``mse_normalisation="padded"``).
    """
    if student_h.dim() != 3 or teacher_h.dim() != 3 or student_h.shape[:2] != teacher_h.shape[:2]:
        raise ValueError(
            "hidden states must be (B, T, H) with matching B and T; got "
            f"{tuple(student_h.shape)} and {tuple(teacher_h.shape)}"
        )
    if projection is None:
        if student_h.shape[-1] != teacher_h.shape[-1]:
            raise ValueError(
                f"student width {student_h.shape[-1]} != teacher width {teacher_h.shape[-1]}: "
                "a projection (student width -> teacher width) is required"
            )
        projected = student_h
    else:
        projected = projection(student_h)
        if projected.shape != teacher_h.shape:
            raise ValueError(
                f"projected student states {tuple(projected.shape)} do not match teacher states "
                f"{tuple(teacher_h.shape)}"
            )
    b, t, _ = teacher_h.shape
    mask = _mask_or_ones(attention_mask, b, t, projected)
    per_token = (projected - teacher_h.to(projected.dtype)).pow(2).mean(dim=-1)  # (B, T)
    return (per_token * mask).sum(dim=-1) / mask.sum(dim=-1).clamp_min(1.0)


def attention_mse(student_scores: Tensor, teacher_scores: Tensor, attention_mask: Tensor | None) -> Tensor:
    """Attention-score MSE per example over real query×key pairs (TinyBERT / Meta-KD).

    ``l_i = Σ_{h,q,k} M_{i,q,k} (A^S_{i,h,q,k} − A^T_{i,h,q,k})² / (heads · n_i²)``,
    ``M_{i,q,k} = m_{i,q} · m_{i,k}``, ``n_i = Σ_t m_{i,t}``.

    Inputs are ``(B, heads, T, T)`` RAW pre-softmax scores ``q·kᵀ/√d``, not probabilities (WHY: that is
    what TinyBERT's official code distils, huawei-noah/Pretrained-Language-Model
    ``TinyBERT/task_distill.py``; EasyNLP's ``output_attentions`` would give softmax probabilities). Student and teacher must
    have the same number of heads (TinyBERT matches heads one to one). Returns the ``(B,)`` vector.

    Masking: entries whose query OR key is padding are set to 0 in BOTH tensors before the squared
    difference, so they contribute nothing, and the mean runs over heads and the ``n_i²`` real pairs.
    Official TinyBERT (``task_distill.py``) gets its scores with the −10000 mask already added and
    zeroes every entry ``<= −1e2`` (``torch.where(att <= -1e2, 0, att)``), which zeroes padded KEY
    columns; it then averages over all B·heads·128·128 entries, padded query rows and zeroed
    columns included. We also drop padded query rows and average over real pairs only, for the same
    reason as :func:`hidden_mse`: with dynamic padding the official average would depend on the
    batch's padding length. Scores that already carry an additive mask are handled too, since
    every masked entry is zeroed from ``attention_mask`` regardless of its value. The official form
    is :func:`attention_mse_padded` (option ``mse_normalisation="padded"``).
    """
    if student_scores.shape != teacher_scores.shape or student_scores.dim() != 4:
        raise ValueError(
            "attention scores must both be (B, heads, T, T) with the same shape; got "
            f"{tuple(student_scores.shape)} and {tuple(teacher_scores.shape)}"
        )
    b, heads, t, t2 = student_scores.shape
    if t != t2:
        raise ValueError(f"attention scores must be square in the last two dims, got {t}x{t2}")
    mask = _mask_or_ones(attention_mask, b, t, student_scores)
    pair = (mask[:, None, :, None] * mask[:, None, None, :]).bool()  # (B, 1, T, T)
    zero = student_scores.new_zeros(())
    s = torch.where(pair, student_scores, zero)
    tt = torch.where(pair, teacher_scores.to(student_scores.dtype), zero)
    n_real = mask.sum(dim=-1)
    denom = (heads * n_real * n_real).clamp_min(1.0)
    return (s - tt).pow(2).sum(dim=(1, 2, 3)) / denom


def hidden_mse_padded(student_h: Tensor, teacher_h: Tensor) -> Tensor:
    """The official hidden-state MSE per example on inputs padded to ``max_len``: ``(B,)``.

    ``l_i = mean_{t, h} (s_{i,t,h} − t_{i,t,h})²`` over EVERY position of the padded tensor, padding
    included (huawei-noah/Pretrained-Language-Model ``TinyBERT/task_distill.py``: ``MSELoss()`` on
    ``(B, 128, H)``; EasyTransfer ``scripts/metaKD/meta_distill.py``: ``MSELoss(reduction='none')``
    then ``.mean(-1).mean(-1)`` per example). ``.mean()`` over the batch is TinyBERT's value. The
    student states must already be projected to the teacher's width. Only meaningful when every batch
    is padded to the same fixed length (the option ``mse_normalisation="padded"`` does that).
    """
    if student_h.shape != teacher_h.shape or student_h.dim() != 3:
        raise ValueError(f"hidden states must both be (B, T, H); got {tuple(student_h.shape)} and "
                         f"{tuple(teacher_h.shape)}")
    return (student_h - teacher_h.to(student_h.dtype)).pow(2).mean(dim=(1, 2))


def attention_mse_padded(student_scores: Tensor, teacher_scores: Tensor, attention_mask: Tensor) -> Tensor:
    """The official attention-score MSE per example on inputs padded to ``max_len``: ``(B,)``.

    ``l_i = Σ_{h,q,k} m_{i,k} (A^S − A^T)²_{i,h,q,k} / (heads · T²)``: padded KEY columns are zeroed
    in both tensors (the official code zeroes every score ``<= −1e2``, i.e. those carrying the −10000
    mask), padded QUERY rows are kept, and the sum is divided by all ``heads·T²`` entries
    (``TinyBERT/task_distill.py``; EasyTransfer ``scripts/metaKD/meta_distill.py``). kdbench's scores
    carry no additive mask, so the key columns are zeroed from ``attention_mask``; the official code
    would also zero a real score below −100, which does not occur in practice.
    """
    if student_scores.shape != teacher_scores.shape or student_scores.dim() != 4:
        raise ValueError(f"attention scores must both be (B, heads, T, T); got {tuple(student_scores.shape)} "
                         f"and {tuple(teacher_scores.shape)}")
    b, heads, t, _ = student_scores.shape
    keys = _mask_or_ones(attention_mask, b, t, student_scores)[:, None, None, :]  # (B, 1, 1, T)
    diff = (student_scores - teacher_scores.to(student_scores.dtype)) * keys
    return diff.pow(2).sum(dim=(1, 2, 3)) / (heads * t * t)


# ------------------------------------------------------------------------------------------ Meta-KD
def masked_mean_pool(
    hidden: Tensor,
    attention_mask: Tensor | None,
    skip_cls: bool = True,
    include_padding: bool = False,
) -> Tensor:
    """Mean of token states, Meta-KD's prototype embedding h_i; returns ``(B, H)``.

    ``h_i = Σ_{t∈P} m_{i,t} x_{i,t} / Σ_{t∈P} m_{i,t}``, ``P = {1..T−1}`` with ``skip_cls`` (drops
    position 0, the [CLS] token, as the original ``torch.mean(last_hidden_state[:, 1:, :], dim=1)``
    does), ``P = {0..T−1}`` without.

    ``include_padding=True`` reproduces the original code's bug: it averages over every position in
    P, padding included (``extract_embeddings.py`` pads to max_seq_length 128, so short texts are
    pulled towards the padding states). The default averages over real tokens only. A row with no
    real token in P (e.g. only [CLS]) gets the zero vector. The same pooling feeds Meta-KD's domain
    branch (``meanpool(H_last[:, 1:])``).
    """
    if hidden.dim() != 3:
        raise ValueError(f"hidden must be (B, T, H), got {tuple(hidden.shape)}")
    b, t, _ = hidden.shape
    mask = _mask_or_ones(attention_mask, b, t, hidden)
    start = 1 if skip_cls else 0
    if start >= t:
        raise ValueError("skip_cls=True needs at least 2 positions")
    x = hidden[:, start:, :]
    if include_padding:
        return x.mean(dim=1)
    m = mask[:, start:].unsqueeze(-1)  # (B, T', 1)
    return (x * m).sum(dim=1) / m.sum(dim=1).clamp_min(1.0)


def prototype_scores(embeddings: Tensor, domain_ids: Tensor) -> Tensor:
    """Meta-KD prototype (domain-transferability) score t_i per example; returns ``(N,)``.

    ``c_k = mean_{j: k_j = k} h_j`` (one centroid per domain present in ``domain_ids``);
    ``t_i = ½·cos(h_i, c_{k_i}) + ½·cos(h_i, mean_{k' ≠ k_i} c_{k'})``.

    The second term is the cosine to the MEAN of the other domains' centroids, not the mean of the
    cosines to each of them: checked against ``generate_meta_weights.py::compute_weight``
    (``other_centroid_mean = np.mean(other_centroids)``, then one ``1 − cosine distance``). Centroids
    are computed over all N embeddings given (the original uses the whole training file).
    "Other domains" are the other domains present in ``domain_ids``.

    A single domain raises ``ValueError``: the cross-domain term is undefined (the original code
    would average an empty list into NaN), and Meta-KD is a multi-domain method. Cosine uses
    ``F.cosine_similarity`` (eps 1e-8), so a zero vector scores 0 rather than NaN.
    """
    if embeddings.dim() != 2:
        raise ValueError(f"embeddings must be (N, H), got {tuple(embeddings.shape)}")
    if domain_ids.shape != (embeddings.shape[0],):
        raise ValueError(f"domain_ids must be ({embeddings.shape[0]},), got {tuple(domain_ids.shape)}")
    domains, inverse = torch.unique(domain_ids, sorted=True, return_inverse=True)
    n_domains = int(domains.numel())
    if n_domains < 2:
        raise ValueError("prototype_scores needs embeddings from at least 2 domains")
    x = embeddings
    sums = x.new_zeros(n_domains, x.shape[1]).index_add_(0, inverse, x)
    counts = torch.bincount(inverse, minlength=n_domains).to(x.dtype)
    centroids = sums / counts.unsqueeze(-1)  # (K, H)
    own = centroids[inverse]  # (N, H)
    others = (centroids.sum(dim=0, keepdim=True) - own) / (n_domains - 1)  # mean of the other K-1
    return 0.5 * F.cosine_similarity(x, own, dim=-1) + 0.5 * F.cosine_similarity(x, others, dim=-1)


def expertise_weights(prototype_scores: Tensor, p_true: Tensor) -> Tensor:
    """Meta-KD domain-expertise weight λ_i per example; returns ``(B,)``.

    ``λ_i = (1 + t_i) / (exp((1 − p_i)²) + 1)``

    ``t_i`` is the prototype score (:func:`prototype_scores`) and ``p_i = p_T(y_i | x_i)`` the meta-
    teacher's probability of the TRUE label. λ lies in ``[(1+t_i)/(e+1), (1+t_i)/2]``: examples the
    teacher gets right and that are typical across domains weigh most. Source: the paper's λ and
    EasyNLP's ``final_sample_weights = (1 + sample_weights) * grt_sample_weights``.
    Callers should pass ``p_true`` detached (the teacher is frozen in stage 1).
    """
    if prototype_scores.shape != p_true.shape:
        raise ValueError(
            f"prototype_scores {tuple(prototype_scores.shape)} and p_true {tuple(p_true.shape)} differ"
        )
    return (1.0 + prototype_scores) / (torch.exp((1.0 - p_true).pow(2)) + 1.0)


def domain_corruption_loss(
    domain_logits: Tensor,
    domain_ids: Tensor,
    generator: torch.Generator | None = None,
    *,
    permutation: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Meta-teacher "domain corruption" term per example; returns ``(loss (B,), permutation (B,))``.

    ``l_i = CE(domain_logits_i, domain_ids[π(i)])`` for a random permutation π of the batch.

    Training the domain classifier against SHUFFLED domain labels pushes the domain branch towards
    domain-invariant (transferable) features; it is the γ1 term of the meta-teacher loss (see
    :func:`meta_teacher_loss`). Source: EasyNLP ``MetaTeacherForSequenceClassification.compute_loss``
    (``domain_ids[torch.randperm(B)]``, CE with ``reduction='none'``).

    π is drawn with ``torch.randperm(B, generator=generator)`` on the generator's device (CPU by
    default) and moved to the logits' device, unless ``permutation`` is passed (tests, or callers that
    manage their own randomness). The permutation used is returned.
    """
    if domain_logits.dim() != 2 or domain_ids.shape != (domain_logits.shape[0],):
        raise ValueError(
            f"expected domain_logits (B, K) and domain_ids (B,); got {tuple(domain_logits.shape)} "
            f"and {tuple(domain_ids.shape)}"
        )
    batch = domain_ids.shape[0]
    if permutation is None:
        gen_device = generator.device if generator is not None else torch.device("cpu")
        permutation = torch.randperm(batch, generator=generator, device=gen_device)
    elif permutation.shape != (batch,) or not torch.equal(
        torch.sort(permutation.cpu()).values, torch.arange(batch)
    ):
        raise ValueError(f"permutation must be a permutation of range({batch})")
    permutation = permutation.to(domain_ids.device)
    shuffled = domain_ids[permutation]
    return F.cross_entropy(domain_logits, shuffled.to(domain_logits.device), reduction="none"), permutation


def meta_teacher_loss(
    ce_terms: Tensor,
    domain_terms: Tensor,
    prototype_scores: Tensor,
    gamma1: float,
) -> Tensor:
    """Meta-teacher batch loss, a SCALAR: ``mean_i t_i · (CE_i + γ1 · dom_i)``.

    ``ce_terms`` are :func:`cross_entropy_per_example` values, ``domain_terms`` the
    :func:`domain_corruption_loss` values and ``prototype_scores`` the t_i (all ``(B,)``); γ1 = 0.5 in
    the paper. Weighting per example before the mean follows EasyNLP's
    ``torch.mean(per_instance_loss * sample_weights)`` (``easynlp/distillation/distill_metakd_application.py``).
    """
    batch = ce_terms.shape[0]
    for name, value in (
        ("ce_terms", ce_terms),
        ("domain_terms", domain_terms),
        ("prototype_scores", prototype_scores),
    ):
        _check_per_example(name, value, batch)
    return (prototype_scores * (ce_terms + gamma1 * domain_terms)).mean()


def meta_distill_stage1_loss(
    hidden_terms: Tensor,
    att_terms: Tensor,
    tkd_terms: Tensor,
    weights: Tensor,
    gamma2: float,
    *,
    tkd_batch_mean: bool = False,
) -> Tensor:
    """Meta-distillation stage-1 batch loss, a SCALAR: ``mean_i λ_i · (hid_i + att_i + γ2 · tkd_i)``.

    All inputs are ``(B,)`` per-example vectors: ``hidden_terms`` (summed over the mapped hidden
    states, embeddings included, from :func:`hidden_mse`), ``att_terms`` (summed over mapped layers,
    :func:`attention_mse`), ``tkd_terms`` (transferable-knowledge MSE on the domain-branch features)
    and ``weights`` λ_i (:func:`expertise_weights`). γ2 = 0.5 in the paper.

    The weights are applied PER EXAMPLE before averaging. EasyNLP's re-implementation computes each
    MSE with ``reduction='mean'`` (already a batch scalar) and then multiplies by λ, which yields
    ``mean(λ) · (batch losses)``: the per-example expertise weighting, the point of Meta-KD, is lost.

    ``tkd_batch_mean=True`` reproduces how BOTH official codes weight the transferable-knowledge term:
    ``mean_i λ_i·(hid_i + att_i) + γ2 · mean(λ) · mean(tkd)``. EasyTransfer
    ``scripts/metaKD/meta_distill.py`` reduces its ``(B, H)`` domain MSE with ``.mean(-1).mean(-1)``
    to a batch scalar before multiplying by the per-example weights (its hidden and attention terms
    stay per example); EasyNLP ``distill_metakd_application.py`` does the same.
    """
    batch = weights.shape[0]
    for name, value in (
        ("hidden_terms", hidden_terms),
        ("att_terms", att_terms),
        ("tkd_terms", tkd_terms),
        ("weights", weights),
    ):
        _check_per_example(name, value, batch)
    if tkd_batch_mean:
        return (weights * (hidden_terms + att_terms)).mean() + gamma2 * weights.mean() * tkd_terms.mean()
    return (weights * (hidden_terms + att_terms + gamma2 * tkd_terms)).mean()
