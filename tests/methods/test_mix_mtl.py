"""The mix and multi-task teachers: domains, heads, per-example head selection, dev scoring."""

from __future__ import annotations

import torch

from kdbench.api import DomainData, Example, TeacherContext
from kdbench.config import resolve_profile
from kdbench.data import Encoded, collate
from kdbench.device import Runtime
from kdbench.modeling import load_model
from kdbench.registry import load
from kdbench_methods.mix import MixTeacher, pooled
from kdbench_methods.mtl import MTLTeacher, per_domain_logits, pooled_dev_accuracy
from kdbench_tasks.amazon import AmazonTask

TINY = resolve_profile("tiny")
DOMAINS = ("books", "dvd", "kitchen")


def mtl_model(seed: int = 0):
    torch.manual_seed(seed)
    return load_model("tiny:L2-H32-A4", 2, DOMAINS, profile=TINY, role="test", vocab_size=40)


def enc(n: int, seed: int = 0) -> Encoded:
    g = torch.Generator().manual_seed(seed)
    ids = [[2, *torch.randint(5, 40, (int(k),), generator=g).tolist(), 3]
           for k in torch.randint(3, 10, (n,), generator=g)]
    return Encoded(ids=[f"x{i}" for i in range(n)], input_ids=ids, token_type_ids=[[0] * len(x) for x in ids],
                   labels=[i % 2 for i in range(n)])


def test_kinds_train_on_every_domain():
    assert MixTeacher().train_domains("dvd", list(DOMAINS)) == DOMAINS
    assert MixTeacher().heads(DOMAINS) == ("main",) and MixTeacher().head_for("dvd") == "main"
    mtl = MTLTeacher()
    assert mtl.train_domains("dvd", list(DOMAINS)) == DOMAINS
    assert mtl.heads(DOMAINS) == DOMAINS
    assert mtl.head_for("dvd") == "dvd"


def test_each_example_uses_its_own_domain_head():
    model = mtl_model().eval()
    e = enc(6).with_extra(domain=[0, 2, 1, 1, 0, 2])
    b = collate(e, list(range(6)))
    got = per_domain_logits(model, b, DOMAINS)
    for i, k in enumerate(b["domain"].tolist()):
        own = model(b["input_ids"], b["attention_mask"], b["token_type_ids"], head=DOMAINS[k]).logits[i]
        assert torch.allclose(got[i], own, atol=1e-6)
    assert not torch.allclose(got[1], model(b["input_ids"], b["attention_mask"], b["token_type_ids"],
                                            head="books").logits[1])


def test_gradient_reaches_only_the_heads_in_the_batch():
    model = mtl_model().train()
    b = collate(enc(4).with_extra(domain=[0, 0, 1, 1]), list(range(4)))
    torch.nn.functional.cross_entropy(per_domain_logits(model, b, DOMAINS), b["labels"]).backward()
    assert model.heads["books"].weight.grad.abs().sum() > 0
    assert model.heads["dvd"].weight.grad.abs().sum() > 0
    assert model.heads["kitchen"].weight.grad is None or model.heads["kitchen"].weight.grad.abs().sum() == 0


def _ctx(domains: dict[str, DomainData]) -> TeacherContext:
    def tokenize(examples):
        e = enc(len(examples), seed=len(examples))
        return Encoded(ids=[x.id for x in examples], input_ids=e.input_ids, token_type_ids=e.token_type_ids,
                       labels=[x.label for x in examples])

    return TeacherContext(task=AmazonTask(), target="dvd", train_domains=tuple(domains), domains=domains, seed=0,
                          profile=TINY, runtime=Runtime(torch.device("cpu"), "fp32", compile=False), tokenize=tokenize,
                          vocab_size=40)


def _data(name: str, n: int) -> DomainData:
    ex = tuple(Example(id=f"{name}/{i}", text="x", label=i % 2) for i in range(n))
    return DomainData(name, ex, ex[: n // 2], ex[:1])


def test_pooled_dev_accuracy_reads_each_domain_with_its_head():
    domains = {d: _data(d, n) for d, n in zip(DOMAINS, (4, 6, 8), strict=True)}
    ctx = _ctx(domains)
    assert [e.id for e in pooled(ctx, "train")][:5] == ["books/0", "books/1", "books/2", "books/3", "dvd/0"]
    model = mtl_model().eval()
    acc = pooled_dev_accuracy(model, ctx, DOMAINS)
    manual = 0
    for d in DOMAINS:
        dev = ctx.tokenize(domains[d].dev)
        b = collate(dev, list(range(len(dev))))
        pred = model(b["input_ids"], b["attention_mask"], b["token_type_ids"], head=d).logits.argmax(-1)
        manual += int((pred == b["labels"]).sum())
    assert abs(acc - 100.0 * manual / (2 + 3 + 4)) < 1e-9


def test_registered():
    reg = load()
    assert {"mix", "mtl"} <= set(reg.teachers.names())
    assert {"mix", "mtl", "teacher:mix", "teacher:mtl", "tinybert", "metakd", "teacher:meta"} <= set(reg.methods.names())
    assert reg.methods.get("teacher:mtl").teacher == "mtl" and reg.methods.get("mix").teacher == "mix"


def test_held_out_target_reads_the_mean_of_the_heads():
    """--teacher-domains others: the mtl teacher has no head of the target; its logits are the heads' mean."""
    from kdbench_methods.mtl import MeanOfHeads

    model = mtl_model()
    x = torch.randn(3, 32)
    model.heads["electronics"] = MeanOfHeads([model.heads[d] for d in DOMAINS])
    want = sum(model.heads[d](x) for d in DOMAINS) / len(DOMAINS)
    assert torch.allclose(model.heads["electronics"](x), want, atol=1e-6)
    assert not any(k.startswith("heads.electronics") for k in model.state_dict())  # the checkpoint is unchanged
    assert MTLTeacher().train_domains("dvd", ["books", "kitchen"]) == ("books", "kitchen")
