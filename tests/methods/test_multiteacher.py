"""Multi-teacher KD: the averaged target by hand, and that every domain's single teacher is used."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from kdbench.api import DomainData, Example, FitContext, FitResult, KDBenchError, TeacherRequest
from kdbench.config import method_config, resolve_profile
from kdbench.data import Encoded, collate
from kdbench.device import Runtime
from kdbench.losses import hinton_kd_loss
from kdbench.modeling import load_model
from kdbench.teachers import TeacherHandle
from kdbench_methods import multiteacher as mt
from kdbench_methods.multiteacher import MultiTeacher, MultiTeacherConfig, ensemble_logits

LN3 = math.log(3.0)


@pytest.mark.parametrize("temp", [1.0, 2.0])
def test_probs_average_is_the_mean_of_the_soft_targets(temp):
    # teacher 1: softmax = [.75, .25]; teacher 2: [.5, .5]  (at every T: logits scaled by T)
    z1, z2 = torch.tensor([[temp * LN3, 0.0]]), torch.tensor([[0.0, 0.0]])
    z = ensemble_logits([z1, z2], temp, "probs")
    assert torch.softmax(z / temp, -1).tolist()[0] == pytest.approx([0.625, 0.375], abs=1e-6)


def test_logits_average_is_textbrewers_mean_of_logits():
    z1, z2 = torch.tensor([[LN3, 0.0]]), torch.tensor([[0.0, 0.0]])
    z = ensemble_logits([z1, z2], 1.0, "logits")
    assert z.tolist()[0] == pytest.approx([LN3 / 2, 0.0])
    r3 = math.sqrt(3.0)  # softmax([ln3/2, 0]) = [√3, 1] / (√3 + 1), not the probability mean [.625, .375]
    assert torch.softmax(z, -1).tolist()[0] == pytest.approx([r3 / (r3 + 1), 1 / (r3 + 1)], abs=1e-6)


def test_one_teacher_and_identical_teachers_give_that_teacher():
    z = torch.tensor([[1.0, -2.0, 0.5], [3.0, 0.0, 0.0]])
    for avg in ("logits", "probs"):
        for teachers in ([z], [z, z, z]):
            out = ensemble_logits(teachers, 2.0, avg)
            assert torch.allclose(torch.softmax(out / 2, -1), torch.softmax(z / 2, -1), atol=1e-6)


def test_loss_on_the_ensemble_equals_the_hand_computed_kd_loss():
    # student [0, 0]; averaged target [.625, .375]; alpha = 1, T = 1
    z = ensemble_logits([torch.tensor([[LN3, 0.0]]), torch.zeros(1, 2)], 1.0, "probs")
    kl = 0.625 * math.log(0.625 / 0.5) + 0.375 * math.log(0.375 / 0.5)
    got = hinton_kd_loss(torch.zeros(1, 2), z, torch.tensor([0]), alpha=1.0, temperature=1.0).item()
    assert got == pytest.approx(kl, abs=1e-6)


def test_options_are_validated():
    with pytest.raises(KDBenchError, match="average"):
        method_config(MultiTeacherConfig, "multiteacher", {"average": "median"})
    with pytest.raises(ValueError, match="at least one teacher"):
        ensemble_logits([], 1.0)
    # the single-domain teacher of every domain of the pool (no sentinel kind)
    assert MultiTeacher.teacher == "single"
    assert MultiTeacher().teacher_requests("b", DOMAINS) == [TeacherRequest("single", d) for d in "abc"]
    cfg = method_config(MultiTeacherConfig, "multiteacher", resolve_profile("tiny").methods.get("multiteacher", {}))
    assert (cfg.alpha, cfg.temperature, cfg.average) == (0.5, 1.0, "logits")


def test_alpha_and_temperature_are_kds_written_once():
    """#14 §5: kd's options and defaults are written once (kdbench.distill.KDConfig) and multiteacher
    extends them, so that the two rows differ only in their teachers; their checks still apply."""
    from kdbench.distill import KDConfig
    from kdbench_methods.kd import KD

    assert KD.Config is KDConfig and issubclass(MultiTeacherConfig, KDConfig)
    assert {f.name for f in dataclasses.fields(MultiTeacherConfig)} - {"average"} == \
        {f.name for f in dataclasses.fields(KDConfig)}
    for bad in ({"alpha": "2"}, {"temperature": "0"}, {"temperature": "nan"}):
        with pytest.raises(KDBenchError, match=next(iter(bad))):
            method_config(MultiTeacherConfig, "multiteacher", bad)
        with pytest.raises(KDBenchError, match=next(iter(bad))):
            method_config(KDConfig, "kd", bad)


# ------------------------------------------------------------------ fit: a spy FitContext, no data
DOMAINS = ("a", "b", "c")
VOCAB = 40


def _examples(domain: str, split: str, n: int) -> tuple[Example, ...]:
    return tuple(Example(f"{domain}/{split}/{i}", f"{domain} w{i % 7} w{(3 * i) % 5}", i % 2) for i in range(n))


def _tokenize(examples) -> Encoded:
    ids = [[2, *(5 + sum(map(ord, w)) % (VOCAB - 5) for w in ex.text.split()), 3] for ex in examples]
    return Encoded(ids=[ex.id for ex in examples], input_ids=ids, token_type_ids=[[0] * len(x) for x in ids],
                   labels=[ex.label for ex in examples])


def _context(get_teacher=None):
    prof = resolve_profile("tiny")
    prof = dataclasses.replace(prof, batch_size=8, student_train=prof.student_train.replace(epochs=1))
    domains = {d: DomainData(d, _examples(d, "train", 24), _examples(d, "dev", 8), _examples(d, "test", 8))
               for d in DOMAINS}
    teachers = {}
    for i, d in enumerate(DOMAINS):
        torch.manual_seed(100 + i)
        teachers[d] = load_model(prof.teacher, 2, profile=prof, role="teacher", vocab_size=VOCAB)
    calls: list[tuple[str, str]] = []

    def spy_get_teacher(request: TeacherRequest) -> TeacherHandle:
        calls.append((request.kind, request.domain))
        return TeacherHandle(teachers[request.domain])

    def build_student():
        torch.manual_seed(0)
        return load_model(prof.student, 2, profile=prof, role="student", vocab_size=VOCAB)

    ctx = FitContext(task=None, target="b", domains=domains, seed=0, profile=prof,
                     runtime=Runtime(torch.device("cpu"), "fp32", compile=False), get_teacher=spy_get_teacher,
                     build_student=build_student, tokenize=_tokenize)
    return ctx, teachers, calls


def test_fit_asks_for_the_single_teacher_of_every_domain():
    ctx, _, calls = _context()
    fit = MultiTeacher(MultiTeacherConfig()).fit(ctx)
    assert sorted(calls) == [("single", d) for d in DOMAINS]  # all domains, the target included, once each
    assert fit.info["teacher_domains"] == list(DOMAINS)
    assert fit.info["steps"] == 3 and len(fit.losses) >= 1 and all(math.isfinite(x) for x in fit.losses)


@pytest.mark.parametrize("average", ["probs", "logits"])
def test_the_loss_sees_the_average_of_all_teachers(monkeypatch, average):
    ctx, teachers, _ = _context()
    captured = {}

    def fake_train_student(ctx, student, loss_fn, cfg, stage, train_data=None, **kw):
        captured.update(loss_fn=loss_fn, train=train_data)
        return FitResult(model=student)

    def spy_loss(student_logits, teacher_logits, labels, alpha, temperature):
        captured["targets"] = teacher_logits.detach().clone()
        return hinton_kd_loss(student_logits, teacher_logits, labels, alpha, temperature)

    monkeypatch.setattr(mt, "train_student", fake_train_student)
    monkeypatch.setattr(mt, "hinton_kd_loss", spy_loss)
    MultiTeacher(MultiTeacherConfig(average=average, temperature=2.0)).fit(ctx)

    enc = captured["train"]
    assert enc.ids == [ex.id for ex in ctx.domains["b"].train]  # the target's train split
    full = collate(enc, list(range(len(enc))))
    captured["loss_fn"](full)
    with torch.no_grad():
        logits = [TeacherHandle(teachers[d])(full).logits for d in DOMAINS]
    if average == "probs":  # the mean of the three soft targets
        expected = sum(torch.softmax(z / 2.0, -1) for z in logits) / 3
    else:  # softmax of the mean of the three teachers' logits
        expected = torch.softmax((logits[0] + logits[1] + logits[2]) / 3 / 2.0, -1)
    got = torch.softmax(captured["targets"] / 2.0, -1)
    assert torch.allclose(got, expected, atol=1e-5)
    assert not torch.allclose(expected, torch.softmax(logits[1] / 2.0, -1), atol=1e-3)  # not the target's alone
