"""Issue #15 §3: every student-side method, a few steps, with random-initialised models of the paper's shapes.

The ``paper`` profile's models (BERT-base, General TinyBERT 4L-312D) cannot be downloaded here, but
their shapes can be built: teacher ``tiny:L12-H768-A12``, student ``tiny:L4-H312-A12-I1200``. Each
method runs on a hand-built context (two domains of 8 / 4 / 4 short examples, batch 4, max_len 16,
one epoch per stage, teachers random-initialised and frozen) with the ``paper`` profile's method
options, i.e. the official behaviours of the README's fidelity table. The test checks the 12 → 4 layer
map (hidden 0, 3, 6, 9, 12), the 312 → 768 projection, the Meta-KD domain-branch widths, and that
checkpoints round-trip through safetensors, and prints the peak memory of one TinyBERT stage-1
training step at batch 32 × 128 (the paper's batch and length).
"""

from __future__ import annotations

import dataclasses
import resource
import sys
import time

import pytest
import torch
from safetensors.torch import load, save

from kdbench.api import DomainData, Example, FitContext, TeacherRequest, TrainConfig
from kdbench.config import method_config, resolve_profile
from kdbench.data import Encoded, collate
from kdbench.device import Runtime
from kdbench.modeling import load_model
from kdbench.registry import load as load_registry
from kdbench.teachers import TeacherHandle
from kdbench.testing import ToyTask
from kdbench.trainer import forward
from kdbench_methods import metakd
from kdbench_methods.metakd import MetaTeacherModel
from kdbench_methods.tinybert import LayerDistiller, TinyBERTConfig, distiller_for, pad_to

TEACHER = "tiny:L12-H768-A12"
STUDENT = "tiny:L4-H312-A12-I1200"
VOCAB = 200
DOMAINS = ("garden", "kitchen")  # ToyTask's, so that Meta-KD's prototype table has a real task
METHODS = ("student", "kd", "pkd", "tinybert", "mix", "mtl", "multiteacher", "metakd")
PAPER = resolve_profile("paper")
PROFILE = dataclasses.replace(
    PAPER, name="paper-shapes", teacher=TEACHER, student=STUDENT, max_len=16, batch_size=4, eval_batch_size=8,
    student_train=dataclasses.replace(PAPER.student_train, epochs=1, eval_every=2))


def _examples(domain: str, split: str, n: int) -> tuple[Example, ...]:
    return tuple(Example(f"{domain}/{split}/{i}", f"{domain} w{i % 7} w{(3 * i) % 5} w{i % 4}", i % 2)
                 for i in range(n))


def _tokenize(examples) -> Encoded:
    ids = [[2, *(5 + sum(map(ord, w)) % (VOCAB - 5) for w in ex.text.split()), 3] for ex in examples]
    return Encoded(ids=[ex.id for ex in examples], input_ids=ids, token_type_ids=[[0] * len(x) for x in ids],
                   labels=[ex.label for ex in examples])


def _model(spec: str, seed: int, **kw):
    torch.manual_seed(seed)
    return load_model(spec, 2, profile=PROFILE, role="test", vocab_size=VOCAB, **kw)


@pytest.fixture(scope="module")
def teachers() -> dict[str, object]:
    return {
        "single": _model(TEACHER, 1),
        "mtl": _model(TEACHER, 2, heads=DOMAINS),
        "meta": _model(TEACHER, 3, model_cls=MetaTeacherModel, n_domains=len(DOMAINS)),
    }


def _context(teachers) -> FitContext:
    domains = {d: DomainData(d, _examples(d, "train", 8), _examples(d, "dev", 4), _examples(d, "test", 4))
               for d in DOMAINS}

    def get_teacher(request: TeacherRequest) -> TeacherHandle:
        if request.kind == "mtl":
            return TeacherHandle(teachers["mtl"], head=request.domain)
        if request.kind == "meta":
            return TeacherHandle(teachers["meta"])
        return TeacherHandle(teachers["single"])  # single and mix: one plain BERT-base-shaped model

    return FitContext(task=ToyTask(), target="garden", domains=domains, seed=0, profile=PROFILE,
                      runtime=Runtime(torch.device("cpu"), "fp32", compile=False), get_teacher=get_teacher,
                      build_student=lambda: _model(STUDENT, 0), tokenize=_tokenize, reuse=False)


def _one_epoch(cfg):
    """The paper profile's options for ``cfg``, with one epoch per stage."""
    changes = {k: 1 for k in ("stage1_epochs", "stage2_epochs") if hasattr(cfg, k)}
    return dataclasses.replace(cfg, **changes)


def test_paper_shapes(teachers, monkeypatch, capsys):
    t0 = time.perf_counter()
    student = _model(STUDENT, 0)
    teacher = teachers["single"]
    assert (student.num_layers, student.hidden_size, student.config.num_attention_heads,
            student.config.intermediate_size) == (4, 312, 12, 1200)
    assert (teacher.num_layers, teacher.hidden_size, teacher.config.num_attention_heads,
            teacher.config.intermediate_size) == (12, 768, 12, 3072)

    # TinyBERT's 12 -> 4 map and the 312 -> 768 projection (official fit_dense, as the paper profile sets)
    d = distiller_for(student, teacher, method_config(TinyBERTConfig, "tinybert", PAPER.methods["tinybert"]))
    assert d.layer_map == [0, 3, 6, 9, 12]
    assert d.projection is not None and tuple(d.projection.weight.shape) == (768, 312)

    # Meta-KD's domain branches: the teacher's at 768, the student's (built inside fit) at 312
    meta = teachers["meta"]
    assert tuple(meta.domain_branch.dense.weight.shape) == (768, 768)
    assert tuple(meta.domain_branch.embedding.weight.shape) == (len(DOMAINS), 768)
    assert tuple(meta.domain_classifier.weight.shape) == (len(DOMAINS), 768)
    branches: list[tuple[int, int]] = []
    real_branch = metakd.DomainBranch

    class SpyBranch(real_branch):  # type: ignore[misc, valid-type]
        def __init__(self, hidden: int, n_domains: int, init_std: float = 0.02) -> None:
            super().__init__(hidden, n_domains, init_std)
            branches.append((hidden, n_domains))

    monkeypatch.setattr(metakd, "DomainBranch", SpyBranch)

    # every student-side method, a few steps, with the paper profile's (official) options
    reg = load_registry()
    fits = {}
    for name in METHODS:
        cls = reg.methods.get(name)
        cfg = _one_epoch(method_config(cls.Config, name, PAPER.methods.get(name, {})))
        fit = cls(cfg).fit(_context(teachers))
        assert fit.losses and all(map(torch.isfinite, torch.tensor(fit.losses))), name
        assert int(fit.info["steps"]) >= 2, name
        fits[name] = fit
    assert branches == [(312, len(DOMAINS))]
    for name in ("tinybert", "mix", "mtl", "metakd"):
        assert fits[name].info["projection"] is True, name
        assert [s["stage"].split(":")[-1] for s in fits[name].info["stages"]] == ["stage1", "stage2"], name
    assert fits["pkd"].info["layer_map"] == [3, 6, 9] and fits["pkd"].info["projection"] is True

    # checkpoints round-trip through safetensors (as the runner stores teachers): same logits
    b = collate(_tokenize(_examples("garden", "test", 4)), [0, 1, 2, 3])
    for model, build in ((fits["metakd"].model, lambda: _model(STUDENT, 9)),
                         (meta, lambda: _model(TEACHER, 9, model_cls=MetaTeacherModel, n_domains=len(DOMAINS)))):
        state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
        fresh = build()
        fresh.load_state_dict(load(save(state)))
        model.eval()
        fresh.eval()
        fresh.set_head_input(model.head_input_kind)
        with torch.no_grad():
            assert torch.allclose(forward(fresh, b).logits, forward(model, b).logits, atol=1e-6)

    # peak memory of one TinyBERT stage-1 step at batch 32 x 128 (the paper's batch and length)
    enc = _tokenize(tuple(Example(f"m/{i}", " ".join(f"w{(i * j) % 97}" for j in range(126)), i % 2)
                          for i in range(32)))
    big = pad_to(collate(enc, list(range(32))), 128)
    assert tuple(big["input_ids"].shape) == (32, 128)
    student = _model(STUDENT, 0).train()
    d = LayerDistiller(student, teacher, projection="always", normalisation="padded")
    optim = torch.optim.AdamW([*student.parameters(), *d.parameters()], lr=TrainConfig().lr)
    cuda = torch.cuda.is_available()
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    s0 = time.perf_counter()
    with torch.no_grad():
        t_out = TeacherHandle(teacher)(big, output_hidden=True)
    hid, att = d.terms(forward(student, big, output_hidden=True), t_out, big["attention_mask"])
    (hid + att).mean().backward()
    optim.step()
    step_s = time.perf_counter() - s0
    scale = 1024 if sys.platform != "darwin" else 1024 * 1024  # ru_maxrss: KiB on Linux, bytes on macOS
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with capsys.disabled():
        print(f"\npaper shapes ({TEACHER} -> {STUDENT}), one TinyBERT stage-1 step at batch 32 x 128 on CPU: "
              f"{step_s:.1f} s; process peak RSS {peak / scale / 1024:.2f} GiB "
              f"(+{(peak - rss0) / scale:.0f} MiB during the step; peak RSS only grows, so this is a lower "
              f"bound of the step's own need){'' if not cuda else ' [CUDA present: not used by this test]'}; "
              f"whole test {time.perf_counter() - t0:.1f} s")
