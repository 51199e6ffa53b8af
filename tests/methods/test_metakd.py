"""Meta-KD: meta-teacher model and loss, prototype table, per-example stage-1 weighting, ablation keys."""

from __future__ import annotations

import math

import pytest
import torch

from kdbench.api import DomainData, Example, TeacherContext, TeacherRequest
from kdbench.config import method_config, resolve_profile
from kdbench.data import Encoded, collate
from kdbench.device import Runtime
from kdbench.losses import (
    cross_entropy_per_example,
    expertise_weights,
    masked_mean_pool,
    meta_distill_stage1_loss,
    prototype_scores,
)
from kdbench.modeling import load_model
from kdbench.registry import load
from kdbench.teachers import TeacherHandle
from kdbench.trainer import forward
from kdbench_methods import metakd
from kdbench_methods.metakd import (
    DomainBranch,
    MetaKD,
    MetaKDConfig,
    MetaTeacher,
    MetaTeacherConfig,
    MetaTeacherModel,
    meta_teacher_batch_loss,
    pad_to,
    prototype_table,
    stage1_terms,
)
from kdbench_methods.tinybert import LayerDistiller
from kdbench_tasks.amazon import AmazonTask

TINY = resolve_profile("tiny")
VOCAB = 60


def meta_teacher(n_domains: int = 4, seed: int = 0) -> MetaTeacherModel:
    torch.manual_seed(seed)
    model = load_model("tiny:L4-H64-A4", 2, profile=TINY, role="test", vocab_size=VOCAB,
                       model_cls=MetaTeacherModel, n_domains=n_domains)
    assert isinstance(model, MetaTeacherModel)
    return model


def student(seed: int = 1):
    torch.manual_seed(seed)
    return load_model("tiny:L2-H32-A4", 2, profile=TINY, role="test", vocab_size=VOCAB)


def batch(n: int = 4, seed: int = 0, domains=(0, 1, 2, 3), t=None) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(3, 12, (n,), generator=g).tolist()
    ids = [[2, *torch.randint(5, VOCAB, (k,), generator=g).tolist(), 3] for k in lengths]
    enc = Encoded(ids=[f"x{i}" for i in range(n)], input_ids=ids, token_type_ids=[[0] * len(x) for x in ids],
                  labels=[i % 2 for i in range(n)])
    enc = enc.with_extra(domain=[domains[i % len(domains)] for i in range(n)],
                         t=t if t is not None else [0.5 + 0.1 * i for i in range(n)])
    return collate(enc, list(range(n)))


# ------------------------------------------------------------------------------------ meta-teacher
def test_domain_branch_formula_and_shapes():
    model = meta_teacher(n_domains=3).eval()
    b = batch(5, domains=(0, 2, 1))
    out = model(b["input_ids"], b["attention_mask"], b["token_type_ids"], output_hidden=True)
    last = out.hidden_states[-1]
    feats = model.domain_features(last, b["attention_mask"], b["domain"])
    assert feats.shape == (5, 64)
    br = model.domain_branch
    want = torch.tanh(br.dense(br.embedding(b["domain"]) + masked_mean_pool(last, b["attention_mask"])))
    assert torch.allclose(feats, want)
    assert model.domain_logits(feats).shape == (5, 3)
    assert br.embedding.weight.shape == (3, 64) and br.dense.weight.shape == (64, 64)


def test_label_head_reads_relu_of_pooled():
    model = meta_teacher().eval()
    b = batch()
    out = forward(model, b)
    assert torch.allclose(out.logits, model.heads["main"](torch.relu(out.pooled)))


def test_meta_teacher_round_trips_through_build():
    ctx = TeacherContext(task=AmazonTask(), target="books", train_domains=("books", "dvd", "electronics", "kitchen"),
                         domains={}, seed=0, profile=TINY, runtime=Runtime(torch.device("cpu"), "fp32", compile=False),
                         tokenize=lambda ex: None, vocab_size=VOCAB)
    kind = MetaTeacher()
    assert kind.train_domains("books", ["books", "dvd", "electronics", "kitchen"]) == ctx.train_domains
    a, b = kind.build(ctx), kind.build(ctx)
    assert isinstance(a, MetaTeacherModel) and a.domain_branch.embedding.num_embeddings == 4
    b.load_state_dict(a.state_dict())  # the runner's checkpoint reload
    assert any(k.startswith("domain_branch.") for k in a.state_dict())


def test_corruption_term_uses_permuted_domain_labels():
    model = meta_teacher().eval()  # no dropout: exact values
    b = batch(6, domains=(0, 0, 1, 1, 2, 3))
    loss = meta_teacher_batch_loss(model, b, gamma1=0.5, use_domain_corruption=True,
                                   generator=torch.Generator().manual_seed(7))
    perm = torch.randperm(6, generator=torch.Generator().manual_seed(7))
    assert not torch.equal(b["domain"][perm], b["domain"])
    with torch.no_grad():
        out = model(b["input_ids"], b["attention_mask"], b["token_type_ids"], output_hidden=True)
        dl = model.domain_logits(model.domain_features(out.hidden_states[-1], b["attention_mask"], b["domain"]))
        ce = cross_entropy_per_example(out.logits, b["labels"])

        def expect(targets):
            return (b["t"] * (ce + 0.5 * torch.nn.functional.cross_entropy(dl, targets, reduction="none"))).mean()

    assert torch.allclose(loss, expect(b["domain"][perm]))
    assert not torch.allclose(loss, expect(b["domain"]))
    # without corruption only the t-weighted CE remains
    plain = meta_teacher_batch_loss(model, b, gamma1=0.5, use_domain_corruption=False)
    assert torch.allclose(plain, (b["t"] * ce).mean())


# ------------------------------------------------------------------------------ prototype scores
def _domains(n_per: int = 6) -> dict[str, DomainData]:
    words = ["good", "bad", "book", "film", "plot", "story", "great", "boring", "read", "watch"]
    out = {}
    for k, name in enumerate(("books", "dvd", "kitchen")):
        train = tuple(Example(id=f"{name}/{i}", text=" ".join(words[(i * 3 + j + k) % 10] for j in range(3 + i % 5)),
                              label=i % 2) for i in range(n_per))
        out[name] = DomainData(name, train, train[:2], train[:2])
    return out


def _tokenize(examples) -> Encoded:
    ids = [[2, *(5 + sum(map(ord, w)) % (VOCAB - 5) for w in ex.text.split()), 3] for ex in examples]
    return Encoded(ids=[ex.id for ex in examples], input_ids=ids, token_type_ids=[[0] * len(x) for x in ids],
                   labels=[ex.label for ex in examples])


@pytest.mark.parametrize("include_padding", [False, True])
def test_prototype_table_matches_the_formula_and_keeps_the_rng(include_padding):
    domains = _domains()
    metakd._PROTOTYPES.clear()
    state = torch.get_rng_state()
    table = prototype_table(task=AmazonTask(), domains=domains, profile=TINY, device=torch.device("cpu"),
                            tokenize=_tokenize, vocab_size=VOCAB, seed=3, include_padding=include_padding)
    assert torch.equal(torch.get_rng_state(), state)  # memoised or not, training RNG is untouched
    # by hand: the pretrained (here: seed-3 random) teacher encoder, one batch per domain
    torch.manual_seed(3)
    enc_model = load_model(TINY.teacher, 2, profile=TINY, role="teacher", vocab_size=VOCAB).eval()
    embs, dom = [], []
    with torch.no_grad():
        for k, dd in enumerate(domains.values()):
            b = collate(_tokenize(dd.train), list(range(len(dd.train))))
            if include_padding:  # the original pads every text to max_seq_length
                b = pad_to(b, TINY.max_len)
                assert b["input_ids"].shape[1] == TINY.max_len
            last = enc_model.backbone(input_ids=b["input_ids"], attention_mask=b["attention_mask"],
                                      token_type_ids=b["token_type_ids"]).last_hidden_state
            embs.append(masked_mean_pool(last, b["attention_mask"], include_padding=include_padding))
            dom += [k] * len(dd.train)
    want = prototype_scores(torch.cat(embs), torch.tensor(dom))
    got = torch.tensor([table[(d, ex.id)] for d, dd in domains.items() for ex in dd.train])
    assert torch.allclose(got, want, atol=1e-5)
    again = prototype_table(task=AmazonTask(), domains=domains, profile=TINY, device=torch.device("cpu"),
                            tokenize=_tokenize, vocab_size=VOCAB, seed=3, include_padding=include_padding)
    assert again is table  # memoised


def test_padding_option_changes_the_scores():
    domains = _domains()
    kw = {"task": AmazonTask(), "domains": domains, "profile": TINY, "device": torch.device("cpu"),
          "tokenize": _tokenize, "vocab_size": VOCAB, "seed": 3}
    a, b = prototype_table(**kw), prototype_table(**kw, include_padding=True)
    assert a.keys() == b.keys() and any(abs(a[k] - b[k]) > 1e-6 for k in a)


# ------------------------------------------------------------------------------- stage 1 weights
def _stage1(t, **kw):
    teacher = TeacherHandle(meta_teacher(seed=4))
    s = student().eval()  # eval: deterministic terms
    d = LayerDistiller(s, teacher.model)
    branch = DomainBranch(32, 4)
    b = batch(2, seed=5, domains=(1,), t=t)
    return stage1_terms(s, teacher, d, branch, b, **kw), teacher, b


def test_expertise_weight_is_per_example():
    terms, teacher, b = _stage1([0.9, -0.4])
    p = forward(teacher.model, b).logits.softmax(-1)[torch.arange(2), b["labels"]]
    lam = terms["lam"]
    assert torch.allclose(lam, expertise_weights(torch.tensor([0.9, -0.4]), p))
    assert torch.allclose(lam, (1 + torch.tensor([0.9, -0.4])) / (torch.exp((1 - p) ** 2) + 1))
    assert not torch.isclose(lam[0], lam[1])
    per_example = terms["hidden"] + terms["attention"] + 0.5 * terms["tkd"]
    loss = meta_distill_stage1_loss(terms["hidden"], terms["attention"], terms["tkd"], lam, 0.5)
    assert torch.allclose(loss, (lam * per_example).mean())
    assert not torch.allclose(loss, lam.mean() * per_example.mean())  # the batch-averaged bug differs
    # each example's gradient share is its own λ: d loss / d l_i = λ_i / B
    li = per_example.detach().requires_grad_()
    meta_distill_stage1_loss(li, torch.zeros(2), torch.zeros(2), lam.detach(), 0.5).backward()
    assert torch.allclose(li.grad, lam.detach() / 2)


def test_stage1_ablations():
    off, _, _ = _stage1([0.9, -0.4], use_expertise_weights=False)
    assert torch.equal(off["lam"], torch.ones(2))
    noproto, teacher, b = _stage1([0.9, -0.4], use_prototype_weights=False)
    p = forward(teacher.model, b).logits.softmax(-1)[torch.arange(2), b["labels"]]
    assert torch.allclose(noproto["lam"], 2 / (torch.exp((1 - p) ** 2) + 1))


def test_tkd_term_compares_projected_student_branch_with_teacher_branch():
    terms, teacher, b = _stage1([0.5, 0.5])
    assert terms["tkd"].shape == (2,) and (terms["tkd"] > 0).all()
    assert terms["tkd"].requires_grad  # trains the student's branch and W_h


def test_lambda_bounds():
    t = torch.tensor([0.3, 0.3])
    lam = expertise_weights(t, torch.tensor([1.0, 0.0]))
    assert torch.allclose(lam, torch.tensor([1.3 / 2, 1.3 / (math.e + 1)]))


# ----------------------------------------------------------------------------------- ablation keys
def test_ablations_ask_for_the_meta_teacher_with_options():
    """One teacher kind, ``meta``; the ablations that change the meta-teacher are its options."""
    assert MetaKDConfig().teacher_options == {}
    options = [method_config(MetaKDConfig, "metakd", {k: "false"}).teacher_options
               for k in ("use_prototype_weights", "use_domain_corruption")]
    assert options == [{"use_prototype_weights": False}, {"use_domain_corruption": False}]
    # expertise weights only act in distillation: same teacher
    assert method_config(MetaKDConfig, "metakd", {"use_expertise_weights": "false"}).teacher_options == {}
    assert MetaKDConfig(prototype_include_padding=True).teacher_options == {"prototype_include_padding": True}
    # padding is moot without t_i: the same teacher as without prototype weights
    assert MetaKDConfig(use_prototype_weights=False, prototype_include_padding=True).teacher_options == {
        "use_prototype_weights": False}
    assert MetaKD(MetaKDConfig(use_domain_corruption=False)).teacher_requests("a", ["a", "b"]) == [
        TeacherRequest("meta", "a", {"use_domain_corruption": False})]
    reg = load()
    assert [n for n in reg.teachers.names() if n.startswith("meta")] == ["meta"]
    assert reg.teachers.get("meta").Config is MetaTeacherConfig


def test_unknown_domain_uses_the_mean_embedding():
    """--teacher-domains others: the meta-teacher never saw the target; id −1 reads the mean embedding."""
    model = meta_teacher(n_domains=3).eval()
    b = batch(4, domains=(0, 1))
    last = model(b["input_ids"], b["attention_mask"], b["token_type_ids"], output_hidden=True).hidden_states[-1]
    br = model.domain_branch
    ids = torch.tensor([-1, 0, -1, 2])
    got = br(last, b["attention_mask"], ids)
    emb = torch.stack([br.embedding.weight.mean(0), br.embedding.weight[0], br.embedding.weight.mean(0),
                       br.embedding.weight[2]])
    assert torch.allclose(got, torch.tanh(br.dense(emb + masked_mean_pool(last, b["attention_mask"]))))
