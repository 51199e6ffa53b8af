"""Seeded, stratified hold-out splits shared by the built-in tasks.

Why not scikit-learn's ``StratifiedKFold``? It would add a heavy dependency for twenty lines, and its
fold assignment is an implementation detail that has changed between releases. A benchmark's split
must be reproducible from this file alone, on any machine, forever: so the procedure is spelled out
here in pure Python (``random.Random`` is specified to give the same shuffle for the same seed).

Procedure of :func:`stratified_holdout` (``n`` items, ``k`` folds, ``seed``):

1. ``order = list(range(n)); random.Random(seed).shuffle(order)``.
2. Walk ``order``; the j-th item (0-based) *of its label* met on the walk goes to fold ``j % k``.
3. Fold 0 is held out; everything else is kept. Both lists keep the shuffled order.

So each label contributes ``ceil(count / k)`` items to the held-out fold: exactly ``count / k`` when
``k`` divides the count, which makes the held-out fold exactly label-balanced on balanced data.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Hashable, Sequence

__all__ = ["stratified_holdout"]


def stratified_holdout(labels: Sequence[Hashable], n_folds: int, seed: int) -> tuple[list[int], list[int]]:
    """Split indices ``0..len(labels)-1`` into ``(kept, held_out)``; held_out is one stratified fold.

    Both lists are in the seeded shuffled order (not sorted), so callers that build splits from them
    get a deterministic, already-shuffled order.
    """
    if n_folds < 2:
        raise ValueError(f"n_folds must be at least 2, got {n_folds}")
    order = list(range(len(labels)))
    random.Random(seed).shuffle(order)
    seen: dict[Hashable, int] = {}
    kept: list[int] = []
    held: list[int] = []
    for i in order:
        j = seen.get(labels[i], 0)
        seen[labels[i]] = j + 1
        (held if j % n_folds == 0 else kept).append(i)
    return kept, held
