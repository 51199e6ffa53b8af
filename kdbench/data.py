"""Data owned by the core: fractions, tokenization and batching.

* :func:`subsample` makes the data-scarce subsets: stratified by label and *nested*, so with one seed
  the 0.1 subset is inside the 0.5 subset, which is inside the full split. Every method of a grid
  sees the identical subset because it is a pure function of (split, fraction, seed).
* :func:`batches` pads each batch only to its longest sequence and, for training, groups examples
  of similar length (as HF ``group_by_length``): far fewer padding tokens, same results.
"""

from __future__ import annotations

import hashlib
import os
import random
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import torch

from kdbench.api import DomainData, Example, KDBenchError

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence
    from pathlib import Path

    from kdbench.config import Profile


# ------------------------------------------------------------------------------------ fractions
def subsample(train: Sequence[Example], fraction: float, seed: int) -> tuple[Example, ...]:
    """A stratified, nested subset of ``train`` holding ``fraction`` of each label (at least one).

    Each label's examples are put in one seeded random order that does not depend on ``fraction``;
    a subset is a prefix of that order, hence nesting. The result keeps the original order.
    """
    if fraction >= 1.0:
        return tuple(train)
    by_label: dict[int, list[int]] = {}
    for i, ex in enumerate(train):
        by_label.setdefault(ex.label, []).append(i)
    keep: list[int] = []
    for label in sorted(by_label):
        idx = by_label[label]
        order = random.Random(f"kdbench-fraction/{seed}/{label}").sample(idx, len(idx))
        keep.extend(order[: max(1, round(fraction * len(idx)))])
    return tuple(train[i] for i in sorted(keep))


def apply_fraction(domains: Mapping[str, DomainData], target: str, fraction: float, seed: int,
                   all_domains: bool = False) -> dict[str, DomainData]:
    """Subsample the target domain's train split (every domain's with ``all_domains``)."""
    out = {}
    for name, dd in domains.items():
        if name == target or all_domains:
            dd = replace(dd, train=subsample(dd.train, fraction, seed))
        out[name] = dd
    return out


# --------------------------------------------------------------------------------- tokenization
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def train_wordpiece(texts: Sequence[str], cache_dir: Path, vocab_size: int = 4000) -> Any:
    """A small uncased WordPiece tokenizer for ``texts``, cached by content (tiny profile).

    Its vocabulary is built here rather than by the ``tokenizers`` trainer, whose merges break ties
    in a different order from one training to the next (two fresh caches gave different token ids,
    hence different results, for the same command): the special tokens, every character seen (word
    -initial and ``##`` continuation), then the most frequent words, ties broken alphabetically, up
    to ``vocab_size``. WordPiece's greedy longest match then reads a known word as one token and any
    other word character by character. ``v2`` in the file name retires the trainer-made files.
    """
    from collections import Counter

    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    digest = hashlib.sha256("\0".join(texts).encode()).hexdigest()[:16]
    path = cache_dir / "tokenizers" / f"wordpiece-v2-{vocab_size}-{digest}.json"
    if not path.exists():
        normalizer, pre = normalizers.BertNormalizer(lowercase=True), pre_tokenizers.BertPreTokenizer()
        words = Counter(w for t in texts for w, _ in pre.pre_tokenize_str(normalizer.normalize_str(t)))
        chars = sorted({w[0] for w in words} | {f"##{c}" for w in words for c in w[1:]})
        vocab = [*SPECIALS, *chars]
        by_count = sorted((w for w in words if len(w) > 1), key=lambda w: (-words[w], w))
        vocab += by_count[:max(0, vocab_size - len(vocab))]
        tok = Tokenizer(models.WordPiece({t: i for i, t in enumerate(vocab)}, unk_token="[UNK]"))
        tok.normalizer, tok.pre_tokenizer, tok.decoder = normalizer, pre, decoders.WordPiece()
        cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
            special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)])
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tok.save(str(tmp))
        tmp.replace(path)
    return PreTrainedTokenizerFast(tokenizer_file=str(path), unk_token="[UNK]", pad_token="[PAD]",
                                   cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")


def load_tokenizer(profile: Profile, domains: Mapping[str, DomainData], cache_dir: Path) -> Any:
    """The tokenizer shared by teacher and student.

    Distillation of hidden states and attention aligns teacher and student token by token, so both
    must tokenize identically; a profile whose models disagree is refused.
    """
    from kdbench.modeling import parse_tiny

    hub = [m for m in (profile.student, profile.teacher) if parse_tiny(m) is None]
    if not hub:
        texts = sorted({t for d in domains.values() for ex in d.train for t in (ex.text, ex.text_pair) if t})
        return train_wordpiece(texts, cache_dir)
    from transformers import AutoTokenizer

    try:
        toks = [AutoTokenizer.from_pretrained(m) for m in hub]
    except OSError as exc:
        raise KDBenchError(f"tokenizer of {hub[0]!r} could not be loaded ({str(exc).splitlines()[0]}); "
                           "offline, set HF_HOME to a cache that holds it and HF_HUB_OFFLINE=1") from exc
    if len(toks) == 2 and toks[0].get_vocab() != toks[1].get_vocab():
        raise KDBenchError(f"teacher {profile.teacher!r} and student {profile.student!r} use different "
                           "vocabularies; pick models that share a tokenizer")
    return toks[0]


@dataclass
class Encoded:
    """Token ids of a list of examples (unpadded), plus optional per-example values."""

    ids: list[str]
    input_ids: list[list[int]]
    token_type_ids: list[list[int]]
    labels: list[int]
    extra: dict[str, list[float]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)

    def with_extra(self, **values: Sequence[float]) -> Encoded:
        return replace(self, extra={**self.extra, **{k: list(v) for k, v in values.items()}})


def encode(tokenizer: Any, examples: Sequence[Example], max_len: int) -> Encoded:
    texts = [ex.text for ex in examples]
    pairs = [ex.text_pair or "" for ex in examples] if any(ex.text_pair for ex in examples) else None
    enc = tokenizer(texts, pairs, truncation=True, max_length=max_len, return_token_type_ids=True)
    return Encoded(ids=[ex.id for ex in examples], input_ids=enc["input_ids"],
                   token_type_ids=enc["token_type_ids"], labels=[ex.label for ex in examples])


# ------------------------------------------------------------------------------------- batching
def collate(enc: Encoded, idx: Sequence[int]) -> dict[str, torch.Tensor]:
    """Pad the selected examples to the longest of them (dynamic padding) with pad id 0 (BERT's ``[PAD]``)."""
    width = max(len(enc.input_ids[i]) for i in idx)
    ids = torch.zeros((len(idx), width), dtype=torch.long)
    types = torch.zeros((len(idx), width), dtype=torch.long)
    mask = torch.zeros((len(idx), width), dtype=torch.long)
    for row, i in enumerate(idx):
        n = len(enc.input_ids[i])
        ids[row, :n] = torch.tensor(enc.input_ids[i])
        types[row, :n] = torch.tensor(enc.token_type_ids[i])
        mask[row, :n] = 1
    batch = {"input_ids": ids, "token_type_ids": types, "attention_mask": mask,
             "labels": torch.tensor([enc.labels[i] for i in idx]),
             "index": torch.tensor(list(idx))}
    for key, values in enc.extra.items():
        batch[key] = torch.tensor([values[i] for i in idx])
    return batch


def batch_order(lengths: Sequence[int], batch_size: int, rng: random.Random | None) -> list[list[int]]:
    """Index lists of each batch.

    Evaluation (``rng=None``): sorted by length, so each batch pads little. Training: shuffled,
    then sorted by length within mega-batches of 50 batches, then the batches are shuffled, as HF
    ``group_by_length`` does: most padding is saved and training stays stochastic.
    """
    n = len(lengths)
    if rng is None:
        order = sorted(range(n), key=lambda i: (lengths[i], i))
        return [order[i:i + batch_size] for i in range(0, n, batch_size)]
    order = rng.sample(range(n), n)
    mega = 50 * batch_size
    out: list[list[int]] = []
    for start in range(0, n, mega):
        chunk = sorted(order[start:start + mega], key=lambda i: -lengths[i])
        out.extend(chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size))
    rng.shuffle(out)
    return out


def batches(enc: Encoded, batch_size: int, rng: random.Random | None = None) -> Iterator[dict[str, torch.Tensor]]:
    for idx in batch_order([len(x) for x in enc.input_ids], batch_size, rng):
        yield collate(enc, idx)
