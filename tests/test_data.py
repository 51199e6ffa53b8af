from __future__ import annotations

import random
from collections import Counter

from kdbench.api import DomainData, Example
from kdbench.data import apply_fraction, batch_order, subsample


def examples(n=200, labels=3):
    return tuple(Example(id=f"e{i}", text=f"t{i}", label=i % labels if i < 150 else 0) for i in range(n))


def test_fractions_are_nested_and_stratified():
    train = examples()
    counts = Counter(ex.label for ex in train)
    for seed in range(3):
        subsets = [set(subsample(train, f, seed)) for f in (0.1, 0.3, 0.5, 1.0)]
        assert subsets[0] <= subsets[1] <= subsets[2] <= subsets[3]
        assert subsets[3] == set(train)
        for f, sub in zip((0.1, 0.3, 0.5), subsets[:3], strict=True):
            got = Counter(ex.label for ex in sub)
            assert all(got[k] == max(1, round(f * counts[k])) for k in counts)


def test_subsample_is_a_pure_function_of_seed():
    train = examples()
    assert subsample(train, 0.2, 0) == subsample(train, 0.2, 0)
    assert subsample(train, 0.2, 0) != subsample(train, 0.2, 1)
    sub = subsample(train, 0.2, 0)
    order = [train.index(ex) for ex in sub]
    assert order == sorted(order)  # original order kept


def test_fraction_applies_to_target_only_by_default():
    d = {k: DomainData(k, examples(), (), ()) for k in ("a", "b")}
    out = apply_fraction(d, "a", 0.1, 0)
    assert len(out["a"].train) < 200 and len(out["b"].train) == 200
    out = apply_fraction(d, "a", 0.1, 0, all_domains=True)
    assert len(out["b"].train) < 200


def test_batch_order_covers_everything_once_and_groups_lengths():
    rng = random.Random(0)
    lengths = [rng.randint(5, 128) for _ in range(1000)]
    train = batch_order(lengths, 32, random.Random(1))
    assert sorted(i for b in train for i in b) == list(range(1000))
    assert train != batch_order(lengths, 32, random.Random(2))  # still shuffled
    # grouping: padding waste is far below random batching
    waste = sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in train)
    idx = list(range(1000))
    random.Random(1).shuffle(idx)
    rand = [idx[i:i + 32] for i in range(0, 1000, 32)]
    waste_rand = sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in rand)
    assert waste < 0.2 * waste_rand
    ev = batch_order(lengths, 32, None)
    flat = [i for b in ev for i in b]
    assert [lengths[i] for i in flat] == sorted(lengths)
