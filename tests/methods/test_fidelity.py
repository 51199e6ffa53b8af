"""Issue #15 §2: every option that restores the official code's behaviour, against a hand computation
of the official formula, and the ``paper`` profile setting them (README "Fidelity to the official code")."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from kdbench import distill
from kdbench.api import DomainData, Example, FitContext, FitResult
from kdbench.config import method_config, resolve_profile
from kdbench.data import Encoded, collate
from kdbench.device import Runtime
from kdbench.modeling import load_model
from kdbench.registry import load
from kdbench.teachers import TeacherHandle
from kdbench.trainer import forward
from kdbench_methods import metakd, pkd
from kdbench_methods.metakd import DomainBranch, MetaKDConfig, MetaTeacherModel, stage1_terms
from kdbench_methods.multiteacher import ensemble_logits
from kdbench_methods.pkd import PKD, PKDConfig
from kdbench_methods.tinybert import LayerDistiller, TinyBERT, TinyBERTConfig, distiller_for, pad_to

TINY = resolve_profile("tiny")
VOCAB = 60


def tiny(spec: str, seed: int = 0, **kw):
    torch.manual_seed(seed)
    return load_model(spec, 2, profile=TINY, role="test", vocab_size=VOCAB, **kw)


def batch(n: int = 3, seed: int = 0, **extra) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    lengths = [3, 9, 6][:n]
    ids = [[2, *torch.randint(5, VOCAB, (k,), generator=g).tolist(), 3] for k in lengths]
    enc = Encoded(ids=[f"x{i}" for i in range(n)], input_ids=ids, token_type_ids=[[0] * len(x) for x in ids],
                  labels=[i % 2 for i in range(n)])
    if extra:
        enc = enc.with_extra(**extra)
    return collate(enc, list(range(n)))


def _examples(split: str, n: int) -> tuple[Example, ...]:
    return tuple(Example(f"{split}/{i}", f"w{i % 7} w{(3 * i) % 5} w{i % 3}", i % 2) for i in range(n))


def _tokenize(examples) -> Encoded:
    ids = [[2, *(5 + sum(map(ord, w)) % (VOCAB - 5) for w in ex.text.split()), 3] for ex in examples]
    return Encoded(ids=[ex.id for ex in examples], input_ids=ids, token_type_ids=[[0] * len(x) for x in ids],
                   labels=[ex.label for ex in examples])


def _context(teacher_model=None) -> FitContext:
    prof = dataclasses.replace(TINY, batch_size=4)
    dd = DomainData("a", _examples("train", 8), _examples("dev", 4), _examples("test", 4))
    teacher = teacher_model if teacher_model is not None else tiny("tiny:L4-H64-A4", 7)

    def build_student():
        return tiny("tiny:L2-H32-A4", 3)

    return FitContext(task=None, target="a", domains={"a": dd, "b": dd}, seed=0, profile=prof,  # type: ignore[arg-type]
                      runtime=Runtime(torch.device("cpu"), "fp32", compile=False),
                      get_teacher=lambda request: TeacherHandle(teacher), build_student=build_student,
                      tokenize=_tokenize, reuse=False)


def _capture(monkeypatch, module) -> list[dict]:
    """Replace ``module.train_student`` by a spy that records each stage's loss and config."""
    calls: list[dict] = []

    def spy(ctx, student, loss_fn, cfg, stage, params=None, train_data=None, select_on_dev=True, **kw):
        calls.append({"loss_fn": loss_fn, "cfg": cfg, "stage": stage, "student": student, "params": params,
                      "train": train_data if train_data is not None else ctx.tokenize(ctx.data.train)})
        return FitResult(model=student, info={"steps": 0})

    monkeypatch.setattr(module, "train_student", spy)
    return calls


# ------------------------------------------------------------------------- (1) stage-1 schedule
@pytest.mark.parametrize("schedule", ["linear", "constant"])
def test_stage1_schedule_reaches_the_trainer(monkeypatch, schedule):
    calls = _capture(monkeypatch, distill)
    TinyBERT(TinyBERTConfig(stage1_epochs=1, stage2_epochs=1, stage1_schedule=schedule)).fit(_context())
    stage1, stage2 = calls
    assert stage1["cfg"].schedule == schedule
    assert stage2["cfg"].schedule == "linear"  # official stage 2 is warmup_linear


# ------------------------------------------------------------- (3) padded MSE normalisation
def test_padded_normalisation_is_the_official_mse_over_the_padded_tensor(monkeypatch):
    """Stage 1 with mse_normalisation="padded" equals TinyBERT's task_distill.py formula, by hand."""
    calls = _capture(monkeypatch, distill)
    teacher = tiny("tiny:L4-H64-A4", 7).eval()
    cfg = TinyBERTConfig(stage1_epochs=1, stage2_epochs=1, mse_normalisation="padded")
    TinyBERT(cfg).fit(_context(teacher))
    stage1 = calls[0]
    student = stage1["student"].eval()
    proj = [p for p in stage1["params"] if p.shape == (64, 32)][0]
    bias = [p for p in stage1["params"] if p.shape == (64,)][-1]
    b = collate(stage1["train"], [0, 1, 2])
    got = stage1["loss_fn"](b)

    # by hand, as the official code: inputs padded to max_len, MSELoss over whole tensors
    p = pad_to(b, TINY.max_len)
    s = forward(student, p, output_hidden=True)
    with torch.no_grad():
        t = forward(teacher, p, output_hidden=True)
    mask = p["attention_mask"][:, None, None, :].float()
    rep = sum(F.mse_loss(s.hidden_states[m] @ proj.T + bias, t.hidden_states[2 * m]) for m in range(3))
    att = 0.0
    for m in (1, 2):
        # official scores carry the -10000 mask and are zeroed where <= -1e2
        sa = torch.where(s.attention_scores[m - 1] + (1 - mask) * -10000 <= -1e2, 0.0, s.attention_scores[m - 1])
        ta = torch.where(t.attention_scores[2 * m - 1] + (1 - mask) * -10000 <= -1e2, 0.0,
                         t.attention_scores[2 * m - 1])
        att = att + F.mse_loss(sa, ta)
    assert got.item() == pytest.approx((rep + att).item(), rel=1e-5)
    # and it differs from kdbench's default normalisation on the same batch
    d = LayerDistiller(student, teacher)
    d.projection.load_state_dict({"weight": proj, "bias": bias})
    hid, at = d.terms(forward(student, b, output_hidden=True), forward(teacher, b, output_hidden=True),
                      b["attention_mask"])
    assert abs((hid + at).mean().item() - got.item()) > 1e-3


# ------------------------------------------------------------------------------ (4) projection
def test_projection_always_is_a_bert_initialised_fit_dense_even_at_equal_widths():
    s, t = tiny("tiny:L2-H64-A4", 1), tiny("tiny:L4-H64-A4", 2)
    assert LayerDistiller(s, t).projection is None
    torch.manual_seed(0)
    d = LayerDistiller(s, t, projection="always")
    assert d.projection is not None and d.projection.weight.shape == (64, 64)
    assert torch.equal(d.projection.bias, torch.zeros(64))
    assert 0.017 < d.projection.weight.std().item() < 0.023  # N(0, 0.02) over 4,096 weights
    assert abs(d.projection.weight.mean().item()) < 0.002


# ---------------------------------------------------------------------------- (5) student head
def test_relu_head_is_classifier_of_relu_pooled_without_dropout():
    model = tiny("tiny:L2-H32-A4", 1).train()  # train mode: dropout would be active
    b = batch()
    model.set_head_input("relu")
    out = forward(model, b)
    want = model.heads["main"](torch.relu(out.pooled))
    assert torch.allclose(out.logits, want)
    model.eval()
    model.set_head_input("dropout")
    out = forward(model, b)
    assert torch.allclose(out.logits, model.heads["main"](out.pooled))  # eval: dropout is identity
    with pytest.raises(ValueError):
        model.set_head_input("gelu")
    student = tiny("tiny:L2-H32-A4", 1)
    distiller_for(student, tiny("tiny:L4-H64-A4"), TinyBERTConfig(student_head="relu"))
    assert student.head_input_kind == "relu"


# --------------------------------------------------------------------------- (6) soft CE scale
@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_stage2_soft_ce_scale(monkeypatch, reduction):
    calls = _capture(monkeypatch, distill)
    teacher = tiny("tiny:L4-H64-A4", 7).eval()
    TinyBERT(TinyBERTConfig(stage1_epochs=0, stage2_epochs=1, soft_ce_reduction=reduction)).fit(_context(teacher))
    (stage2,) = calls
    student = stage2["student"].eval()
    b = collate(stage2["train"], [0, 1, 2, 3])
    got = stage2["loss_fn"](b).item()
    with torch.no_grad():
        p = forward(teacher, b).logits.softmax(-1)
    log_q = forward(student, b).logits.log_softmax(-1)
    official = (-p * log_q).mean().item()  # task_distill.py: .mean() over batch and classes
    summed = (-p * log_q).sum(-1).mean().item()
    assert got == pytest.approx(official if reduction == "mean" else summed, rel=1e-5)
    assert summed == pytest.approx(2 * official)  # exactly C = 2 times


# ------------------------------------------------------------------- (2) transferable knowledge
def _meta_stage1(tkd_form: str, normalisation: str = "real_tokens"):
    torch.manual_seed(0)
    meta = load_model("tiny:L4-H64-A4", 2, profile=TINY, role="test", vocab_size=VOCAB,
                      model_cls=MetaTeacherModel, n_domains=2)
    teacher = TeacherHandle(meta)
    s = tiny("tiny:L2-H32-A4", 1).eval()
    d = LayerDistiller(s, meta, normalisation=normalisation)
    branch = DomainBranch(32, 2)
    b = batch(3, seed=5, t=[0.2, 0.5, -0.1], domain=[1, 1, 1])
    return stage1_terms(s, teacher, d, branch, b, tkd_form=tkd_form), teacher, s, d, branch, b


def test_official_tkd_compares_features_before_tanh_by_hand():
    terms, teacher, s, d, branch, b = _meta_stage1("official")
    meta = teacher.model
    mask = b["attention_mask"].float()
    with torch.no_grad():
        t_last = forward(meta, b, output_hidden=True).hidden_states[-1]
    s_last = forward(s, b, output_hidden=True).hidden_states[-1]

    def pre_tanh(last, emb, dense):  # corrupt_dense(domain_embedding + mean over real tokens after [CLS])
        m = mask[:, 1:, None]
        content = (last[:, 1:] * m).sum(1) / m.sum(1)
        return dense(emb(b["domain"]) + content)

    g_t = pre_tanh(t_last, meta.domain_branch.embedding, meta.domain_branch.dense)
    g_s = d.projection(pre_tanh(s_last, branch.embedding, branch.dense))
    assert torch.allclose(terms["tkd"], (g_s - g_t).pow(2).mean(-1), atol=1e-6)
    paper, *_ = _meta_stage1("paper")
    assert not torch.allclose(paper["tkd"], terms["tkd"])  # the paper form has tanh on both sides


def test_official_tkd_pools_padding_in_with_the_padded_normalisation():
    terms, teacher, s, d, branch, b = _meta_stage1("official", "padded")
    with torch.no_grad():
        t_last = forward(teacher.model, b, output_hidden=True).hidden_states[-1]
    br = teacher.model.domain_branch
    want = br.dense(br.embedding(b["domain"]) + t_last[:, 1:].mean(1))  # torch.mean(H[:, 1:], dim=1)
    got = teacher.model.domain_features(t_last, b["attention_mask"], b["domain"], activation=False,
                                        include_padding=True)
    assert torch.allclose(got, want, atol=1e-6)
    assert terms["tkd"].shape == (3,)


def test_tkd_term_is_not_switched_off_its_gradient_reaches_the_student_encoder():
    terms, _, s, _, branch, _ = _meta_stage1("paper")
    terms["tkd"].mean().backward()
    enc_grad = s.backbone.encoder.layer[-1].output.dense.weight.grad
    assert enc_grad is not None and enc_grad.abs().sum() > 0
    assert branch.dense.weight.grad.abs().sum() > 0


def test_metakd_uses_the_batch_mean_of_lambda_for_the_official_tkd(monkeypatch):
    seen = {}
    real = metakd.meta_distill_stage1_loss

    def spy(*args, **kw):
        seen.update(kw)
        return real(*args, **kw)

    monkeypatch.setattr(metakd, "meta_distill_stage1_loss", spy)
    calls = _capture(monkeypatch, distill)
    torch.manual_seed(0)
    meta = load_model("tiny:L4-H64-A4", 2, profile=TINY, role="test", vocab_size=VOCAB,
                      model_cls=MetaTeacherModel, n_domains=2)
    ctx = _context(meta)
    cfg = MetaKDConfig(stage1_epochs=1, stage2_epochs=1, tkd_form="official", use_prototype_weights=False)
    metakd.MetaKD(cfg).fit(ctx)
    b = collate(calls[0]["train"], [0, 1])
    calls[0]["loss_fn"](b)
    assert seen == {"tkd_batch_mean": True}


# ------------------------------------------------------------------------ (8) multi-teacher mean
def test_multiteacher_logit_mean_lets_the_confident_teacher_dominate_by_hand():
    z = [torch.tensor([[0.0, 8.0]]), torch.tensor([[0.0, -1.0]])]
    p_logits = ensemble_logits(z, 1.0, "logits").softmax(-1)[0, 1].item()
    p_probs = ensemble_logits(z, 1.0, "probs").softmax(-1)[0, 1].item()
    sigmoid = lambda x: 1 / (1 + torch.exp(-torch.tensor(x))).item()  # noqa: E731
    assert p_logits == pytest.approx(sigmoid(3.5))  # 0.971
    assert p_probs == pytest.approx((sigmoid(8.0) + sigmoid(-1.0)) / 2)  # 0.634
    assert round(p_logits, 2) == 0.97 and round(p_probs, 2) == 0.63


# ---------------------------------------------------------------------------------- (9) PKD lr
def test_pkd_lr_option_overrides_the_profile(monkeypatch):
    calls = _capture(monkeypatch, pkd)
    PKD(PKDConfig(lr=1e-5)).fit(_context())
    PKD(PKDConfig()).fit(_context())
    assert calls[0]["cfg"].lr == 1e-5
    assert calls[1]["cfg"].lr == TINY.student_train.lr


# --------------------------------------------------------------------------- the paper profile
def test_paper_profile_sets_the_official_options():
    prof = resolve_profile("paper")
    reg = load()
    cfgs = {name: method_config(reg.methods.get(name).Config, name, prof.methods.get(name, {}))
            for name in ("tinybert", "mix", "mtl", "metakd", "pkd", "multiteacher", "teacher:meta")}
    for name in ("tinybert", "mix", "mtl", "metakd"):
        c = cfgs[name]
        assert (c.stage1_schedule, c.mse_normalisation, c.projection, c.soft_ce_reduction) == (
            "constant", "padded", "always", "mean"), name
        assert c.student_head == "dropout", name  # kept standard on purpose: exported students
    assert cfgs["metakd"].tkd_form == "official" and cfgs["metakd"].prototype_include_padding
    assert cfgs["metakd"].teacher_options == {"prototype_include_padding": True}
    assert cfgs["teacher:meta"].prototype_include_padding  # the row evaluates the same meta-teacher
    assert cfgs["pkd"].lr == 1e-5
    assert prof.student_train.eval_every == 50
    # the cpu profile keeps kdbench's defaults (the committed reference runs)
    cpu = resolve_profile("cpu")
    c = method_config(TinyBERTConfig, "tinybert", cpu.methods["tinybert"])
    assert (c.stage1_schedule, c.mse_normalisation, c.projection, c.student_head, c.soft_ce_reduction) == (
        "linear", "real_tokens", "when_needed", "dropout", "sum")
    assert cpu.student_train.eval_every == 0
