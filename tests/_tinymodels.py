"""A tiny random-init model and a learnable synthetic encoded set, shared by the trainer and
teacher-store tests (no data, no tokenizer: token ids drawn directly)."""

from __future__ import annotations

import torch

from kdbench.config import resolve_profile
from kdbench.data import Encoded
from kdbench.modeling import KDModel, load_model


def tiny(seed: int = 0) -> KDModel:
    torch.manual_seed(seed)
    return load_model("tiny:L2-H32-A2", 2, profile=resolve_profile("tiny"), role="t", vocab_size=60)


def enc(n: int = 40, seed: int = 0, shift: int = 0) -> Encoded:
    g = torch.Generator().manual_seed(seed)
    ids = [[2, *(torch.randint(5, 60, (int(k),), generator=g) - shift).clamp(5).tolist(), 3]
           for k in torch.randint(3, 12, (n,), generator=g)]
    labels = [int(x[1] > 30) for x in ids]  # learnable
    return Encoded([str(i) for i in range(n)], ids, [[0] * len(x) for x in ids], labels)
