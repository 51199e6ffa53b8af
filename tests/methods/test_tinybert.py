"""TinyBERT task distillation: layer map, projection, attention masking, stage plumbing."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from kdbench.api import KDBenchError
from kdbench.config import method_config, resolve_profile
from kdbench.data import Encoded
from kdbench.device import Runtime
from kdbench.losses import attention_mse, hidden_mse
from kdbench.modeling import ModelOutput, load_model
from kdbench.teachers import TeacherHandle
from kdbench.trainer import forward, train
from kdbench_methods.tinybert import LayerDistiller, TinyBERTConfig

TINY = resolve_profile("tiny")


def tiny(spec: str, seed: int = 0):
    torch.manual_seed(seed)
    return load_model(spec, 2, profile=TINY, role="test", vocab_size=60)


def fake(layers: int, hidden: int, heads: int = 4):
    """Just what LayerDistiller reads from a model."""
    return SimpleNamespace(num_layers=layers, hidden_size=hidden, config=SimpleNamespace(num_attention_heads=heads))


def enc(n: int = 8, seed: int = 0) -> Encoded:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(4, 14, (n,), generator=g).tolist()
    ids = [[2, *torch.randint(5, 60, (k,), generator=g).tolist(), 3] for k in lengths]
    return Encoded(ids=[f"x{i}" for i in range(n)], input_ids=ids, token_type_ids=[[0] * len(x) for x in ids],
                   labels=[i % 2 for i in range(n)])


# ------------------------------------------------------------------------------------ projection
def test_projection_exists_only_when_widths_differ():
    narrow = LayerDistiller(fake(2, 32), fake(4, 64))
    assert isinstance(narrow.projection, torch.nn.Linear)
    assert (narrow.projection.in_features, narrow.projection.out_features) == (32, 64)
    same = LayerDistiller(fake(2, 64), fake(4, 64))
    assert same.projection is None
    assert list(same.parameters()) == []  # nothing extra to train


def test_real_models_pair_up():
    d = LayerDistiller(tiny("tiny:L2-H32-A4"), tiny("tiny:L4-H64-A4"))
    assert d.layer_map == [0, 2, 4]
    assert d.projection is not None
    assert LayerDistiller(tiny("tiny:L2-H64-A4"), tiny("tiny:L4-H64-A4")).projection is None


def test_head_counts_must_match():
    with pytest.raises(ValueError, match="heads"):
        LayerDistiller(fake(2, 32, heads=2), fake(4, 64, heads=4))


def test_layer_counts_must_divide():
    with pytest.raises(ValueError, match="divisible"):
        LayerDistiller(fake(3, 32), fake(4, 64))


# ------------------------------------------------------------------------------------- layer map
def _outputs(b=2, t=5, heads=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    s_h = tuple(torch.randn(b, t, 32, generator=g) for _ in range(3))  # L_S = 2: embeddings + 2 layers
    s_a = [torch.randn(b, heads, t, t, generator=g) for _ in range(2)]
    t_h = tuple(torch.randn(b, t, 64, generator=g) for _ in range(5))  # L_T = 4
    t_a = [torch.randn(b, heads, t, t, generator=g) for _ in range(4)]
    return s_h, s_a, t_h, t_a


def test_terms_follow_the_uniform_layer_map():
    """Teacher states equal to the projected student states at g(m) = 2m (and garbage elsewhere) give 0."""
    d = LayerDistiller(fake(2, 32), fake(4, 64))
    s_h, s_a, t_h, t_a = _outputs()
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    with torch.no_grad():
        t_h = list(t_h)
        for m, g in enumerate([0, 2, 4]):
            t_h[g] = d.projection(s_h[m])
        t_a = list(t_a)
        t_a[1], t_a[3] = s_a[0].clone(), s_a[1].clone()  # student layer 1 ↔ teacher layer 2, 2 ↔ 4
    hid, att = d.terms(ModelOutput(torch.zeros(2, 2), torch.zeros(2, 32), s_h, s_a),
                       ModelOutput(torch.zeros(2, 2), torch.zeros(2, 64), tuple(t_h), t_a), mask)
    assert hid.shape == att.shape == (2,)
    assert torch.allclose(hid, torch.zeros(2), atol=1e-6) and torch.allclose(att, torch.zeros(2))


def test_terms_are_sums_of_the_per_layer_losses():
    d = LayerDistiller(fake(2, 32), fake(4, 64))
    s_h, s_a, t_h, t_a = _outputs(seed=1)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    hid, att = d.terms(ModelOutput(torch.zeros(2, 2), torch.zeros(2, 32), s_h, s_a),
                       ModelOutput(torch.zeros(2, 2), torch.zeros(2, 64), t_h, t_a), mask)
    want_h = sum(hidden_mse(s_h[m], t_h[2 * m], mask, d.projection) for m in range(3))
    want_a = attention_mse(s_a[0], t_a[1], mask) + attention_mse(s_a[1], t_a[3], mask)
    assert torch.allclose(hid, want_h) and torch.allclose(att, want_a)


def test_attention_term_ignores_padding():
    """Changing scores at padded query or key positions leaves the attention term unchanged."""
    d = LayerDistiller(fake(2, 64), fake(4, 64))
    s_h, s_a, _, t_a = _outputs(seed=2)
    s_h = tuple(torch.randn(2, 5, 64) for _ in s_h)
    t_h = tuple(torch.randn(2, 5, 64) for _ in range(5))
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    out_s = ModelOutput(torch.zeros(2, 2), torch.zeros(2, 64), s_h, s_a)
    _, att = d.terms(out_s, ModelOutput(torch.zeros(2, 2), torch.zeros(2, 64), t_h, t_a), mask)
    t_a2 = [a.clone() for a in t_a]
    for a in t_a2:
        a[0, :, 3:, :] += 100.0
        a[0, :, :, 3:] -= 100.0
    _, att2 = d.terms(out_s, ModelOutput(torch.zeros(2, 2), torch.zeros(2, 64), t_h, t_a2), mask)
    assert torch.allclose(att, att2)


# --------------------------------------------------------------------------------------- training
def test_stage1_trains_the_projection_and_the_loss_falls():
    student, teacher = tiny("tiny:L2-H32-A4", 1), TeacherHandle(tiny("tiny:L4-H64-A4", 2))
    d = LayerDistiller(student, teacher.model)
    before = d.projection.weight.detach().clone()

    def loss_fn(batch):
        hid, att = d.terms(forward(student, batch, output_hidden=True), teacher(batch, output_hidden=True),
                           batch["attention_mask"])
        return (hid + att).mean()

    cfg = TINY.student_train.replace(epochs=5, lr=3e-3, warmup=0.0)
    res = train(student, enc(32), loss_fn, cfg, batch_size=16, eval_batch_size=64,
                runtime=Runtime(torch.device("cpu"), "fp32", compile=False), seed=0,
                params=[*student.parameters(), *d.parameters()], stage="t")
    assert not torch.equal(before, d.projection.weight)
    assert res.losses[-1] < 0.8 * res.losses[0]
    assert res.info["best_epoch"] == -1  # no dev data: no selection in stage 1


def test_teacher_handle_is_frozen():
    handle = TeacherHandle(tiny("tiny:L4-H64-A4").train())
    assert not handle.model.training
    assert not any(p.requires_grad for p in handle.model.parameters())


# ----------------------------------------------------------------------------------------- config
def test_config_defaults_are_the_official_ones():
    c = TinyBERTConfig()
    assert (c.stage1_epochs, c.stage2_epochs, c.lr_stage1, c.lr_stage2, c.temperature) == (10, 3, 5e-5, 3e-5, 1.0)


def test_config_from_profile_and_set():
    c = method_config(TinyBERTConfig, "tinybert", TINY.methods["tinybert"], {"temperature": "2"})
    assert c.temperature == 2.0 and c.stage1_epochs == TINY.methods["tinybert"]["stage1_epochs"]
    with pytest.raises(KDBenchError):
        method_config(TinyBERTConfig, "tinybert", {"stage2_epochs": 0})
    for profile in ("paper", "cpu", "tiny"):  # the two-stage methods share tinybert's settings
        methods = resolve_profile(profile).methods
        assert methods["tinybert"]
        for name in ("mix", "mtl", "metakd"):
            assert methods["tinybert"].items() <= methods[name].items(), (profile, name)

