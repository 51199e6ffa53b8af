"""BERT-PKD: loss composition on hand-built tensors, layer selection, options."""

from __future__ import annotations

import math

import pytest
import torch

from kdbench.api import KDBenchError
from kdbench.config import method_config, resolve_profile
from kdbench.modeling import ModelOutput
from kdbench_methods.pkd import PKD, PKDConfig, pkd_loss

# Two examples, C = 2. CE by hand: log(1 + e^-2) and log(1 + e^-1).
S_LOGITS = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
LABELS = torch.tensor([0, 1])
CE = (math.log(1 + math.exp(-2)) + math.log(1 + math.exp(-1))) / 2
# One layer pair of (B=2, H=2) [CLS] vectors. Normalised: s = [.6, .8], [1, 0]; t = [0, 1], [0, 1].
S_CLS = [torch.tensor([[3.0, 4.0], [1.0, 0.0]])]
T_CLS = [torch.tensor([[0.0, 2.0], [0.0, 5.0]])]
# per example mean over H of the squared difference: (.36 + .04) / 2 = .2 and (1 + 1) / 2 = 1
PATIENT = (0.2 + 1.0) / 2


def loss(**kw):
    args = {"alpha": 0.0, "temperature": 1.0, "beta": 0.0, "kd_reduction": "official"}
    args.update(kw)
    t_logits = args.pop("t_logits", torch.zeros(2, 2))
    return pkd_loss(S_LOGITS, t_logits, LABELS, S_CLS, T_CLS, **args).item()


def test_alpha_zero_is_ce_plus_beta_patient():
    assert loss(beta=10.0) == pytest.approx(CE + 10.0 * PATIENT, abs=1e-6)
    assert loss(beta=0.0) == pytest.approx(CE, abs=1e-6)


def test_beta_term_is_linear_in_beta_and_uses_normalised_vectors():
    assert loss(beta=500.0) - loss(beta=0.0) == pytest.approx(500.0 * PATIENT, rel=1e-5)
    # without normalisation: ((3-0)^2 + (4-2)^2)/2 = 6.5 and ((1-0)^2 + (0-5)^2)/2 = 13
    assert loss(beta=1.0, normalize=False) - loss() == pytest.approx((6.5 + 13.0) / 2, rel=1e-5)


def test_kd_term_official_reduction_divides_by_classes_and_keeps_t_squared():
    # student [0, 0] vs teacher softmax [.75, .25]: KL = .75 ln 1.5 + .25 ln .5
    kl = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)
    s = torch.zeros(1, 2)
    for temp in (1.0, 2.0):
        t = torch.tensor([[temp * math.log(3.0), 0.0]])  # the same teacher distribution at every T
        batchmean = pkd_loss(s, t, torch.tensor([0]), [], [], alpha=1.0, temperature=temp, beta=0.0,
                             kd_reduction="batchmean").item()
        official = pkd_loss(s, t, torch.tensor([0]), [], [], alpha=1.0, temperature=temp, beta=0.0).item()
        assert batchmean == pytest.approx(temp**2 * kl, rel=1e-5)
        assert official == pytest.approx(temp**2 * kl / 2, rel=1e-5)  # C = 2


def test_alpha_mixes_kd_and_ce():
    t = torch.tensor([[1.0, -1.0], [0.5, 0.0]])
    full_kd = loss(alpha=1.0, t_logits=t)
    assert loss(alpha=0.7, t_logits=t) == pytest.approx(0.3 * CE + 0.7 * full_kd, rel=1e-6)


def test_variant_validation():
    with pytest.raises(ValueError, match="variant"):
        PKDConfig(variant="middle")
    with pytest.raises(KDBenchError, match="variant"):
        method_config(PKDConfig, "pkd", {"variant": "first"})
    with pytest.raises(KDBenchError, match="kd_reduction"):
        method_config(PKDConfig, "pkd", {"kd_reduction": "sum"})
    assert method_config(PKDConfig, "pkd", {"variant": "last"}).variant == "last"


def test_defaults_follow_the_official_example_run_and_profiles_agree():
    c = PKDConfig()
    assert (c.variant, c.alpha, c.temperature, c.beta, c.normalize) == ("skip", 0.7, 10.0, 500.0, True)
    for name in ("paper", "cpu", "tiny"):
        prof = resolve_profile(name)
        cfg = method_config(PKDConfig, "pkd", prof.methods.get("pkd", {}))
        assert (cfg.variant, cfg.alpha, cfg.temperature, cfg.beta) == ("skip", 0.7, 10.0, 500.0)


def _outputs(n_teacher: int, n_student: int, match_layer: int):
    """Student [CLS] of every layer = e0; teacher [CLS] = e0 only at ``match_layer``, else e1."""
    e0, e1 = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])

    def states(n, cls_of):
        return tuple(torch.stack([cls_of(i), torch.zeros(2)]).unsqueeze(0).repeat(2, 1, 1) for i in range(n + 1))

    logits = torch.zeros(2, 2)
    student = ModelOutput(logits=logits, pooled=torch.zeros(2, 2), hidden_states=states(n_student, lambda i: e0))
    teacher = ModelOutput(logits=logits, pooled=torch.zeros(2, 2),
                          hidden_states=states(n_teacher, lambda i: e0 if i == match_layer else e1))
    return student, teacher


@pytest.mark.parametrize(("variant", "layer"), [("skip", 2), ("last", 3)])
def test_loss_reads_the_mapped_teacher_layer(variant, layer):
    # 4-layer teacher, 2-layer student: student layer 1 learns from teacher layer 2 (skip) or 3 (last)
    method = PKD(PKDConfig(variant=variant, alpha=0.0, beta=1.0))
    batch = {"labels": torch.tensor([0, 1])}
    student, teacher = _outputs(4, 2, match_layer=layer)
    assert method.loss(batch, student, teacher).item() == pytest.approx(math.log(2), abs=1e-6)  # patient 0
    other = 3 if layer == 2 else 2
    student, teacher = _outputs(4, 2, match_layer=other)
    # orthogonal unit vectors: mean over H=2 of (1 + 1) = 1
    assert method.loss(batch, student, teacher).item() == pytest.approx(math.log(2) + 1.0, abs=1e-6)


def test_loss_applies_the_projection_and_requires_hidden_states():
    method = PKD(PKDConfig(alpha=0.0, beta=1.0))
    batch = {"labels": torch.tensor([0, 1])}
    student, teacher = _outputs(4, 2, match_layer=2)
    swap = torch.nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        swap.weight.copy_(torch.tensor([[0.0, 1.0], [1.0, 0.0]]))  # e0 -> e1
    # projected student [CLS] is e1 and no longer matches the teacher's e0 at layer 2
    assert method.loss(batch, student, teacher, swap).item() == pytest.approx(math.log(2) + 1.0, abs=1e-6)
    with pytest.raises(ValueError, match="hidden states"):
        method.loss(batch, ModelOutput(logits=torch.zeros(2, 2), pooled=torch.zeros(2, 2)), teacher)


def test_method_declares_single_teacher_and_hidden_states():
    assert PKD.teacher == "single" and PKD.needs_hidden is True
