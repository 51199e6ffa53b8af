"""Teacher and student models: a BERT-family encoder with one or more classification heads.

Models are loaded from HF hub ids through ``AutoModelForSequenceClassification`` (so the standard
HF cache and ``HF_HUB_OFFLINE=1`` work offline), or built from a ``tiny:L<layers>-H<hidden>-A<heads>``
spec (optionally ``-I<intermediate size>``, default 4·hidden) with random weights for tests, e.g.
``tiny:L4-H312-A12-I1200``, the shape of General TinyBERT 4L-312D.

:class:`KDModel` exposes what distillation needs in one forward pass: logits, all hidden states
(index 0 = embeddings) and, on request, the *pre-softmax* attention scores. The scores are rebuilt
from the query/key projections with forward hooks, so they are exactly ``q·kᵀ/√d`` as TinyBERT
distils them, and attention itself keeps running through fast SDPA kernels: no eager attention is
needed even for methods that distil attention.
"""

from __future__ import annotations

import copy
import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from kdbench.errors import KDBenchError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from kdbench.config import Profile

TINY_SPEC = re.compile(r"^tiny:L(\d+)-H(\d+)-A(\d+)(?:-I(\d+))?$")
#: what a classification head reads: BERT's ``classifier(dropout(pooled))`` (kdbench's default, what a
#: Hugging Face ``AutoModelForSequenceClassification`` computes) or the official TinyBERT / Meta-KD
#: student's ``classifier(relu(pooled))`` without dropout
HEAD_INPUTS = ("dropout", "relu")


@dataclass
class ModelOutput:
    logits: torch.Tensor  # (B, C)
    pooled: torch.Tensor | None = None  # (B, H): the input of the classification head
    hidden_states: tuple[torch.Tensor, ...] | None = None  # (L+1) × (B, T, H); 0 = embeddings
    attention_scores: list[torch.Tensor] | None = None  # L × (B, heads, T, T), pre-softmax, unmasked


class KDModel(nn.Module):
    """Encoder + pooler + dropout + named classification heads.

    ``heads`` holds one linear layer per name: ``main`` for ordinary models, one per domain for a
    multi-task teacher. Subclasses (e.g. Meta-KD's meta-teacher) add branches.
    """

    def __init__(self, seqcls: Any, heads: Sequence[str] = ("main",)) -> None:
        super().__init__()
        self.config: Any = seqcls.config
        self.backbone: Any = seqcls.base_model  # BertModel, with its pooler
        self.dropout = nn.Dropout(self.config.hidden_dropout_prob)
        base_head: nn.Linear = seqcls.classifier
        self.heads = nn.ModuleDict()
        for i, name in enumerate(heads):
            head = base_head if i == 0 else copy.deepcopy(base_head)
            if i > 0:
                head.reset_parameters()
            self.heads[name] = head
        self._scores: list[torch.Tensor] | None = None
        self._hooks_installed = False
        self.head_input_kind = "dropout"  # see set_head_input

    @property
    def num_layers(self) -> int:
        return int(self.config.num_hidden_layers)

    @property
    def hidden_size(self) -> int:
        return int(self.config.hidden_size)

    def _install_score_hooks(self) -> None:
        """Capture q and k per layer; scores are formed in :meth:`forward` only when requested."""
        layers = self.backbone.encoder.layer
        self._qk: list[dict[str, torch.Tensor]] = [{} for _ in layers]
        for i, layer in enumerate(layers):
            attn = layer.attention.self
            for part in ("query", "key"):
                def hook(_m: nn.Module, _inp: Any, out: torch.Tensor, i: int = i, part: str = part) -> None:
                    if self._scores is not None:  # only while scores were asked for
                        self._qk[i][part] = out
                getattr(attn, part).register_forward_hook(hook)
        self._hooks_installed = True

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
               token_type_ids: torch.Tensor | None = None, output_hidden: bool = False,
               output_scores: bool = False) -> tuple[Any, list[torch.Tensor] | None]:
        if output_scores and not self._hooks_installed:
            self._install_score_hooks()
        self._scores = [] if output_scores else None
        try:
            out = self.backbone(input_ids=input_ids, attention_mask=attention_mask,
                                token_type_ids=token_type_ids, output_hidden_states=output_hidden)
            scores = None
            if output_scores:
                n_heads = self.config.num_attention_heads
                scores = []
                for qk in self._qk:
                    q, k = qk.pop("query"), qk.pop("key")
                    b, t, h = q.shape
                    q = q.view(b, t, n_heads, h // n_heads).transpose(1, 2)
                    k = k.view(b, t, n_heads, h // n_heads).transpose(1, 2)
                    scores.append(q @ k.transpose(-1, -2) / math.sqrt(h // n_heads))
        finally:
            self._scores = None
        return out, scores

    def set_head_input(self, kind: str) -> None:
        """``"dropout"`` (default, as BERT) or ``"relu"`` (official TinyBERT / Meta-KD student).

        huawei-noah/Pretrained-Language-Model ``TinyBERT/transformer/modeling.py``
        (``TinyBertForSequenceClassification``) and EasyTransfer ``scripts/metaKD/transformer/modeling.py``
        (``MetaStudentForSequenceClassification``) compute ``classifier(relu(pooled))``. A model
        exported as a plain Hugging Face model reproduces only the default.
        """
        if kind not in HEAD_INPUTS:
            raise ValueError(f"head input {kind!r}: expected one of {', '.join(HEAD_INPUTS)}")
        self.head_input_kind = kind

    def head_input(self, pooled: torch.Tensor) -> torch.Tensor:
        """What the classification heads read: dropout of the pooled output, as in BERT (or relu)."""
        if self.head_input_kind == "relu":
            return torch.relu(pooled)
        return self.dropout(pooled)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor | None = None, head: str = "main",
                output_hidden: bool = False, output_scores: bool = False) -> ModelOutput:
        out, scores = self.encode(input_ids, attention_mask, token_type_ids, output_hidden, output_scores)
        pooled = out.pooler_output if out.pooler_output is not None else out.last_hidden_state[:, 0]
        logits = self.heads[head](self.head_input(pooled))
        return ModelOutput(logits=logits, pooled=pooled,
                           hidden_states=out.hidden_states if output_hidden else None,
                           attention_scores=scores)


#: bounds of a ``tiny:`` spec: enough for any test model, small enough not to exhaust memory by a typo
TINY_MAX_LAYERS, TINY_MAX_HIDDEN = 48, 4096


def parse_tiny(spec: str) -> tuple[int, int, int] | None:
    """``(layers, hidden, heads)`` of a ``tiny:`` spec, else None (see :func:`tiny_intermediate`)."""
    m = TINY_SPEC.match(spec)
    return (int(m.group(1)), int(m.group(2)), int(m.group(3))) if m else None


def check_spec_syntax(spec: str, role: str = "model") -> str:
    """A ``tiny:L<layers>-H<hidden>-A<heads>`` spec must be well formed and buildable: layers >= 1,
    heads >= 1, hidden a multiple of heads. Other specs (hub ids, paths) are checked by
    :func:`check_model_available`, which needs the files."""
    if not spec.startswith("tiny:"):
        return spec
    tiny = parse_tiny(spec)
    shown = " ".join(repr(spec).split())[:60]
    if tiny is None:
        raise KDBenchError(f"{role} {shown}: a tiny model is written tiny:L<layers>-H<hidden>-A<heads>, "
                           "e.g. tiny:L2-H32-A2 (optionally -I<intermediate size>)")
    layers, hidden, heads = tiny
    if not 1 <= layers <= TINY_MAX_LAYERS:
        raise KDBenchError(f"{role} {spec}: {layers} layers; use 1 to {TINY_MAX_LAYERS}")
    if not 1 <= heads <= hidden <= TINY_MAX_HIDDEN:
        raise KDBenchError(f"{role} {spec}: needs 1 <= heads <= hidden <= {TINY_MAX_HIDDEN}")
    if hidden % heads:
        raise KDBenchError(f"{role} {spec}: hidden size {hidden} is not a multiple of {heads} heads")
    return spec


def check_model_available(spec: str, role: str) -> None:
    """Refuse, in one line naming it, a model spec that is not a model: a malformed tiny spec, a path
    without a model config, a hub id that is not in the cache (offline) or on the hub.

    Only the model's config is read (a few KB), so this runs before the grid starts.
    """
    from pathlib import Path

    check_spec_syntax(spec, role)
    if spec.startswith("tiny:"):
        return
    shown = " ".join(repr(spec).split())[:80]
    local = Path(spec).expanduser()
    if local.exists() and not (local / "config.json").is_file():
        raise KDBenchError(f"{role} {shown}: {local} is not a model directory (no config.json in it)")
    from transformers import AutoConfig

    try:
        AutoConfig.from_pretrained(spec)
    except Exception as exc:  # noqa: BLE001 - anything that is not a model gets the same one line
        msg = " ".join(str(exc).split())[:160]
        raise KDBenchError(f"{role} {shown} is not a model kdbench can load ({type(exc).__name__}: {msg}); "
                           "give a hub id, a model directory or tiny:L…-H…-A…; offline, set HF_HOME to a "
                           "cache that holds it and HF_HUB_OFFLINE=1") from None


def tiny_intermediate(spec: str) -> int | None:
    """The feed-forward width of a ``tiny:`` spec: its ``-I`` part, else 4·hidden; None if not tiny."""
    m = TINY_SPEC.match(spec)
    if m is None:
        return None
    return int(m.group(4)) if m.group(4) else 4 * int(m.group(2))


def load_model(spec: str, num_labels: int, heads: Sequence[str] = ("main",), *,
               profile: Profile, role: str, vocab_size: int | None = None,
               model_cls: type[KDModel] | None = None, **model_kwargs: Any) -> KDModel:
    """Build a :class:`KDModel` from a hub id or a ``tiny:`` spec. Seed the RNG before calling.

    ``model_cls`` (a :class:`KDModel` subclass, e.g. Meta-KD's meta-teacher) is constructed as
    ``model_cls(seqcls, heads=heads, **model_kwargs)`` instead of a plain :class:`KDModel`.
    """
    from transformers import AutoModelForSequenceClassification, BertConfig

    tiny = parse_tiny(spec)
    if tiny is not None:
        layers, hidden, n_heads = tiny
        if vocab_size is None:
            raise KDBenchError(f"{role} {spec!r}: a tiny model needs the tokenizer's vocabulary size")
        config = BertConfig(vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=layers,
                            num_attention_heads=n_heads, intermediate_size=tiny_intermediate(spec) or 4 * hidden,
                            max_position_embeddings=max(512, profile.max_len), num_labels=num_labels,
                            hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)  # type: ignore[call-arg]
        config._attn_implementation = "sdpa"
        seqcls = AutoModelForSequenceClassification.from_config(config)
    else:
        try:
            seqcls = AutoModelForSequenceClassification.from_pretrained(
                spec, num_labels=num_labels, attn_implementation="sdpa")
        except OSError as exc:
            raise KDBenchError(
                f"{role} model {spec!r} could not be loaded ({str(exc).splitlines()[0]}); offline, set "
                "HF_HOME to a cache that holds it and HF_HUB_OFFLINE=1") from exc
    return (model_cls or KDModel)(seqcls, heads=heads, **model_kwargs)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
