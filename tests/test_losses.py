"""Tests for kdbench.losses: hand-worked values on tiny tensors (the arithmetic is in the comments)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from kdbench import losses as L

LN2 = math.log(2.0)
E = math.e


def approx(x: torch.Tensor | float, expected: float | list[float], tol: float = 1e-6) -> None:
    got = torch.as_tensor(x, dtype=torch.float64)
    want = torch.as_tensor(expected, dtype=torch.float64)
    assert got.shape == want.shape, (got.shape, want.shape)
    assert torch.allclose(got, want, atol=tol, rtol=tol), (got, want)


# ------------------------------------------------------------------------------------------ vanilla KD
def test_cross_entropy_per_example_hand_value() -> None:
    # row 0: uniform over 2 classes -> -log(1/2) = ln 2; row 1: logits [ln 3, 0] -> p = [3/4, 1/4];
    # label 1 -> -log(1/4) = ln 4.
    logits = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]])
    labels = torch.tensor([0, 1])
    approx(L.cross_entropy_per_example(logits, labels), [LN2, math.log(4.0)])


def test_alpha_zero_is_plain_cross_entropy() -> None:
    s = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]])
    t = torch.tensor([[5.0, -5.0], [-1.0, 2.0]])  # any teacher: alpha = 0 ignores it
    y = torch.tensor([0, 1])
    # mean(ln 2, ln 4) = 1.5 ln 2
    approx(L.hinton_kd_loss(s, t, y, alpha=0.0, temperature=4.0), 1.5 * LN2)


def test_t_squared_factor_hand_computed() -> None:
    # student uniform q = [1/2, 1/2]; teacher logits [ln 3, 0].
    s = torch.tensor([[0.0, 0.0]])
    t = torch.tensor([[math.log(3.0), 0.0]])
    y = torch.tensor([0])
    # T = 1: p = [3/4, 1/4]; KL = 3/4 ln(3/4 / 1/2) + 1/4 ln(1/4 / 1/2) = 3/4 ln 1.5 - 1/4 ln 2.
    kl_t1 = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)
    # T = 2: t/T = [ln 3 / 2, 0] = [ln sqrt(3), 0] -> p = [sqrt3/(sqrt3+1), 1/(sqrt3+1)]; q still uniform.
    r3 = math.sqrt(3.0)
    p1, p2 = r3 / (r3 + 1.0), 1.0 / (r3 + 1.0)
    kl_t2 = p1 * math.log(p1 / 0.5) + p2 * math.log(p2 / 0.5)
    approx(L.kd_kl_per_example(s, t, 1.0), [kl_t1])
    approx(L.kd_kl_per_example(s, t, 2.0), [4.0 * kl_t2])  # T^2 = 4
    # alpha = 1 -> pure KD term, T^2 included
    approx(L.hinton_kd_loss(s, t, y, alpha=1.0, temperature=2.0), 4.0 * kl_t2)
    assert not math.isclose(4.0 * kl_t2, kl_t2)


def test_kl_uses_batchmean_not_elementwise_mean() -> None:
    # B = 2, C = 3, student uniform (q = 1/3 each).
    # row 0 teacher logits [ln 2, 0, 0] -> p = [1/2, 1/4, 1/4]
    #   KL = 1/2 ln(1/2 / 1/3) + 2 * 1/4 ln(1/4 / 1/3) = 1/2 ln 1.5 + 1/2 ln 0.75 = 1/2 ln 1.125
    # row 1 teacher uniform -> KL = 0
    s = torch.zeros(2, 3)
    t = torch.tensor([[math.log(2.0), 0.0, 0.0], [0.0, 0.0, 0.0]])
    y = torch.tensor([0, 0])
    kl_sum = 0.5 * math.log(1.125)
    batchmean = kl_sum / 2  # sum / B
    elementwise_mean = kl_sum / 6  # sum / (B * C): the PKD code's reduction='mean'
    approx(L.kd_kl_per_example(s, t, 1.0), [kl_sum, 0.0])
    got = L.hinton_kd_loss(s, t, y, alpha=1.0, temperature=1.0)
    approx(got, batchmean)
    assert abs(got.item() - elementwise_mean) > 1e-3
    # and it agrees with torch's own batchmean reduction
    ref = F.kl_div(F.log_softmax(s, -1), F.softmax(t, -1), reduction="batchmean")
    approx(got, ref.item())


def test_kd_mixture_of_terms() -> None:
    s = torch.tensor([[0.0, 0.0]])
    t = torch.tensor([[math.log(3.0), 0.0]])
    y = torch.tensor([1])
    kl_t1 = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)
    # alpha = 0.25: 0.25 * 1 * KL + 0.75 * ln 2
    approx(L.hinton_kd_loss(s, t, y, alpha=0.25, temperature=1.0), 0.25 * kl_t1 + 0.75 * LN2)


def test_kd_rejects_bad_arguments() -> None:
    s = torch.zeros(1, 2)
    with pytest.raises(ValueError):
        L.hinton_kd_loss(s, s, torch.tensor([0]), alpha=1.5, temperature=1.0)
    with pytest.raises(ValueError):
        L.kd_kl_per_example(s, s, 0.0)
    with pytest.raises(ValueError):
        L.kd_kl_per_example(s, torch.zeros(1, 3), 1.0)


# ----------------------------------------------------------------------------------------- soft CE
def test_soft_cross_entropy_hand_value_and_no_t_squared() -> None:
    # student logits [ln 3, 0] -> q = [3/4, 1/4]; teacher uniform p = [1/2, 1/2]
    # loss = -(1/2 ln 3/4 + 1/2 ln 1/4) = 1/2 ln(16/3)
    s = torch.tensor([[math.log(3.0), 0.0]])
    t = torch.tensor([[0.0, 0.0]])
    expected = 0.5 * math.log(16.0 / 3.0)
    approx(L.soft_cross_entropy(s, t, 1.0), [expected])
    # T = 2 with doubled student logits gives the same softmaxes: same value, so no T^2 factor.
    approx(L.soft_cross_entropy(2 * s, t, 2.0), [expected])


def test_soft_cross_entropy_is_per_example() -> None:
    s = torch.tensor([[math.log(3.0), 0.0], [0.0, 0.0]])
    t = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]])
    # row 1: q uniform -> -(3/4 + 1/4) ln(1/2) = ln 2
    approx(L.soft_cross_entropy(s, t, 1.0), [0.5 * math.log(16.0 / 3.0), LN2])


# -------------------------------------------------------------------------------------------- PKD
@pytest.mark.parametrize(
    ("n_t", "n_s", "strategy", "expected"),
    [
        (12, 6, "skip", [2, 4, 6, 8, 10]),
        (12, 4, "skip", [3, 6, 9]),
        (6, 3, "skip", [2, 4]),
        (12, 6, "last", [7, 8, 9, 10, 11]),
        (12, 4, "last", [9, 10, 11]),
        (6, 3, "last", [4, 5]),
        (12, 3, "last", [10, 11]),  # the official run_student_patience.py choice for 12 -> 3
        (12, 1, "skip", []),
    ],
)
def test_pkd_layer_map(n_t: int, n_s: int, strategy: str, expected: list[int]) -> None:
    assert L.pkd_layer_map(n_t, n_s, strategy) == expected


def test_pkd_layer_map_errors() -> None:
    with pytest.raises(ValueError):
        L.pkd_layer_map(12, 6, "middle")
    with pytest.raises(ValueError):
        L.pkd_layer_map(4, 6, "skip")
    with pytest.raises(ValueError):
        L.pkd_layer_map(12, 0, "last")


def test_pkd_patient_loss_hand_value() -> None:
    # example 0, layer 1: [3,4] vs [4,3] -> normalised [0.6,0.8] vs [0.8,0.6]
    #   squared diffs [0.04, 0.04] -> mean over H = 0.04
    # example 0, layer 2: [1,0] vs [0,2] -> [1,0] vs [0,1] -> squared diffs [1, 1] -> mean 1
    # per example: mean over layers = (0.04 + 1) / 2 = 0.52
    # example 1: identical directions in both layers ([6,8] vs [3,4]; [5,0] vs [1,0]) -> 0
    s1 = torch.tensor([[3.0, 4.0], [6.0, 8.0]])
    t1 = torch.tensor([[4.0, 3.0], [3.0, 4.0]])
    s2 = torch.tensor([[1.0, 0.0], [5.0, 0.0]])
    t2 = torch.tensor([[0.0, 2.0], [1.0, 0.0]])
    got = L.pkd_patient_loss([s1, s2], [t1, t2])
    approx(got, [0.52, 0.0])
    # .mean() equals the official patience_loss: F.mse_loss on the stacked normalised (B, L, H) tensors
    s = F.normalize(torch.stack([s1, s2], 1), p=2, dim=2)
    t = F.normalize(torch.stack([t1, t2], 1), p=2, dim=2)
    approx(got.mean(), F.mse_loss(s, t).item())


def test_pkd_patient_loss_unnormalised_and_errors() -> None:
    # [3,4] vs [4,3] raw: squared diffs [1, 1] -> mean 1
    got = L.pkd_patient_loss([torch.tensor([[3.0, 4.0]])], [torch.tensor([[4.0, 3.0]])], normalize=False)
    approx(got, [1.0])
    with pytest.raises(ValueError):
        L.pkd_patient_loss([torch.zeros(1, 2)], [])
    with pytest.raises(ValueError):
        L.pkd_patient_loss([], [])


# --------------------------------------------------------------------------------------- TinyBERT
def test_tinybert_layer_map() -> None:
    assert L.tinybert_layer_map(12, 4) == [0, 3, 6, 9, 12]
    assert L.tinybert_layer_map(6, 3) == [0, 2, 4, 6]
    assert L.tinybert_layer_map(4, 4) == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="divisible"):
        L.tinybert_layer_map(12, 5)
    with pytest.raises(ValueError):
        L.tinybert_layer_map(12, 0)


def test_attention_mse_hand_value_with_mask() -> None:
    # one head, T = 2, second token is padding: only the (q=0, k=0) pair is real.
    # student 1 vs teacher 3 there -> (1 - 3)^2 = 4, averaged over 1 head * 1^2 pairs -> 4
    s = torch.tensor([[[[1.0, 7.0], [-2.0, 5.0]]]])
    t = torch.tensor([[[[3.0, 0.0], [0.0, 0.0]]]])
    mask = torch.tensor([[1, 0]])
    approx(L.attention_mse(s, t, mask), [4.0])
    # values at masked positions (padded key column, padded query row) do not matter
    s2 = s.clone()
    s2[0, 0, 0, 1] = -10000.0
    s2[0, 0, 1, :] = torch.tensor([123.0, -50.0])
    t2 = t.clone()
    t2[0, 0, 1, 0] = 9.0
    approx(L.attention_mse(s2, t2, mask), [4.0])


def test_attention_mse_unmasked_hand_value() -> None:
    # no padding: ((1-0)^2 + (2-0)^2 + (3-0)^2 + (4-0)^2) / 4 = 30 / 4 = 7.5
    s = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    t = torch.zeros_like(s)
    approx(L.attention_mse(s, t, torch.tensor([[1, 1]])), [7.5])
    approx(L.attention_mse(s, t, None), [7.5])


def test_attention_mse_independent_of_padding_length() -> None:
    g = torch.Generator().manual_seed(0)
    s = torch.randn(1, 2, 3, 3, generator=g)
    t = torch.randn(1, 2, 3, 3, generator=g)
    alone = L.attention_mse(s, t, torch.ones(1, 3))
    # the same example padded to T = 5 with garbage in the padded rows/columns
    s5 = torch.randn(1, 2, 5, 5, generator=g) * 100
    t5 = torch.randn(1, 2, 5, 5, generator=g) * 100
    s5[..., :3, :3] = s
    t5[..., :3, :3] = t
    padded = L.attention_mse(s5, t5, torch.tensor([[1, 1, 1, 0, 0]]))
    approx(padded, alone.tolist(), tol=1e-5)


def test_hidden_mse_hand_value_ignores_padding() -> None:
    # B = 1, T = 3, H = 2; third token is padding.
    # token 0: ((1-0)^2 + (1-0)^2) / 2 = 1; token 1: ((0-0)^2 + (0-2)^2) / 2 = 2 -> mean over 2 tokens = 1.5
    s = torch.tensor([[[1.0, 1.0], [0.0, 0.0], [9.0, 9.0]]])
    t = torch.tensor([[[0.0, 0.0], [0.0, 2.0], [-5.0, 5.0]]])
    approx(L.hidden_mse(s, t, torch.tensor([[1, 1, 0]]), None), [1.5])
    # per example, with a different number of real tokens each
    s_b = torch.cat([s, s])
    t_b = torch.cat([t, t])
    approx(L.hidden_mse(s_b, t_b, torch.tensor([[1, 1, 0], [1, 0, 0]]), None), [1.5, 1.0])


class _CountingLinear(nn.Linear):
    calls: int = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return super().forward(x)


def test_hidden_mse_projection_required_and_called_when_widths_differ() -> None:
    s = torch.tensor([[[1.0], [3.0]]])  # H_S = 1
    t = torch.zeros(1, 2, 2)  # H_T = 2
    mask = torch.ones(1, 2)
    with pytest.raises(ValueError, match="projection"):
        L.hidden_mse(s, t, mask, None)
    proj = _CountingLinear(1, 2, bias=False)
    with torch.no_grad():
        proj.weight.copy_(torch.tensor([[2.0], [-1.0]]))
    # projected: token 0 -> [2, -1], token 1 -> [6, -3]
    # per token vs 0: (4 + 1) / 2 = 2.5, (36 + 9) / 2 = 22.5 -> mean 12.5
    approx(L.hidden_mse(s, t, mask, proj), [12.5])
    assert proj.calls == 1
    # a projection to the wrong width is rejected
    with pytest.raises(ValueError):
        L.hidden_mse(s, t, mask, nn.Linear(1, 3))


def test_hidden_mse_equal_widths_identity_and_gradient() -> None:
    s = torch.tensor([[[1.0, 2.0]]], requires_grad=True)
    t = torch.tensor([[[0.0, 0.0]]])
    out = L.hidden_mse(s, t, None, None)
    approx(out.detach(), [2.5])  # (1 + 4) / 2
    out.sum().backward()
    assert s.grad is not None
    approx(s.grad, [[[1.0, 2.0]]])  # d/ds of (s1^2 + s2^2) / 2 = s


# ---------------------------------------------------------------------------------------- Meta-KD
def test_masked_mean_pool() -> None:
    # row 0: states [10, 1, 3, 100] (H = 1), mask [1, 1, 1, 0]
    #   skip_cls: mean(1, 3) = 2; with padding (original bug): mean(1, 3, 100) = 104/3;
    #   keep [CLS]: mean(10, 1, 3) = 14/3
    # row 1: mask [1, 0, 0, 0]: nothing real after [CLS] -> zero vector
    h = torch.tensor([[10.0, 1.0, 3.0, 100.0], [4.0, 8.0, 8.0, 8.0]]).unsqueeze(-1)
    m = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0]])
    approx(L.masked_mean_pool(h, m).squeeze(-1), [2.0, 0.0])
    approx(L.masked_mean_pool(h, m, include_padding=True).squeeze(-1), [104.0 / 3.0, 8.0])
    approx(L.masked_mean_pool(h, m, skip_cls=False).squeeze(-1), [14.0 / 3.0, 4.0])
    approx(L.masked_mean_pool(h, None).squeeze(-1), [104.0 / 3.0, 8.0])


def test_prototype_scores_hand_values() -> None:
    # Domain 7: h1 = (2,0), h2 = (0,2) -> c7 = (1,1); domain 8: h3 = (1,0) -> c8 = (1,0);
    # domain 9: h4 = (0,1) -> c9 = (0,1).
    # h1: cos(h1, c7) = 2 / (2 * sqrt2) = 1/sqrt2; other centroids' mean = (0.5, 0.5) -> cos 1/sqrt2
    #     t1 = 1/sqrt2.  (The mean of cosines, (cos(h1,c8) + cos(h1,c9))/2 = (1 + 0)/2 = 0.5,
    #     would give 0.5/sqrt2 + 0.25 = 0.604 instead.)
    # h2: symmetric -> 1/sqrt2.
    # h3: cos(h3, c8) = 1; others' mean = ((1,1) + (0,1))/2 = (0.5, 1) -> cos = 0.5/sqrt(1.25) = 1/sqrt5
    #     t3 = 0.5 + 0.5/sqrt5.  h4: symmetric -> same.
    emb = torch.tensor([[2.0, 0.0], [0.0, 2.0], [1.0, 0.0], [0.0, 1.0]])
    dom = torch.tensor([7, 7, 8, 9])
    r2, r5 = 1 / math.sqrt(2.0), 1 / math.sqrt(5.0)
    got = L.prototype_scores(emb, dom)
    approx(got, [r2, r2, 0.5 + 0.5 * r5, 0.5 + 0.5 * r5])
    assert abs(got[0].item() - (0.5 * r2 + 0.25)) > 0.05


def test_prototype_scores_two_domains_and_single_domain_error() -> None:
    # domain 0: (1,0) -> c0 = (1,0); domain 1: (3,4) -> c1 = (3,4)
    # x0: 0.5 * 1 + 0.5 * cos((1,0),(3,4)) = 0.5 + 0.5 * 0.6 = 0.8; x1 likewise 0.8
    emb = torch.tensor([[1.0, 0.0], [3.0, 4.0]])
    approx(L.prototype_scores(emb, torch.tensor([0, 1])), [0.8, 0.8])
    with pytest.raises(ValueError, match="2 domains"):
        L.prototype_scores(emb, torch.tensor([0, 0]))


def test_expertise_weights_bounds() -> None:
    t = torch.tensor([0.2, -0.4, 0.9])
    one = torch.ones(3)
    zero = torch.zeros(3)
    approx(L.expertise_weights(t, one), ((1 + t) / 2).tolist())
    approx(L.expertise_weights(t, zero), ((1 + t) / (E + 1)).tolist())
    # p = 0.5: (1 + t) / (exp(0.25) + 1)
    approx(L.expertise_weights(t, torch.full((3,), 0.5)), ((1 + t) / (math.exp(0.25) + 1)).tolist())


def test_stage1_loss_weights_per_example() -> None:
    # per-example terms: hidden + att + 0.5 * tkd = [0.5 + 0.5 + 0, 1 + 1 + 0.5*2] = [1, 3]
    # lambda = [2, 0] -> mean(lambda_i * l_i) = (2 + 0) / 2 = 1
    # whereas mean(lambda) * mean(l) = 1 * 2 = 2 (the EasyNLP behaviour)
    hidden = torch.tensor([0.5, 1.0])
    att = torch.tensor([0.5, 1.0])
    tkd = torch.tensor([0.0, 2.0])
    lam = torch.tensor([2.0, 0.0])
    got = L.meta_distill_stage1_loss(hidden, att, tkd, lam, gamma2=0.5)
    approx(got, 1.0)
    assert abs(got.item() - lam.mean().item() * torch.tensor([1.0, 3.0]).mean().item()) > 0.5
    with pytest.raises(ValueError):
        L.meta_distill_stage1_loss(hidden, att, tkd, torch.ones(3), gamma2=0.5)


def test_meta_teacher_loss() -> None:
    # t = [1, 0.5]; CE = [2, 4]; dom = [2, 0]; gamma1 = 0.5 -> per example [1*(2+1), 0.5*(4+0)] = [3, 2]
    got = L.meta_teacher_loss(
        torch.tensor([2.0, 4.0]), torch.tensor([2.0, 0.0]), torch.tensor([1.0, 0.5]), gamma1=0.5
    )
    approx(got, 2.5)


def test_domain_corruption_uses_permuted_labels() -> None:
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 2.0]])
    dom = torch.tensor([0, 1, 2])
    perm = torch.tensor([2, 0, 1])
    loss, used = L.domain_corruption_loss(logits, dom, permutation=perm)
    assert torch.equal(used, perm)
    # permuted targets [2, 0, 1] are never the argmax: each CE = -log(1 / (e^2 + 2)) = log(e^2 + 2)
    approx(loss, [math.log(E**2 + 2)] * 3)
    true_ce = F.cross_entropy(logits, dom, reduction="none")  # log(e^2 + 2) - 2 each
    assert torch.all((loss - true_ce).abs() > 1.0)
    approx(loss, F.cross_entropy(logits, dom[perm], reduction="none").tolist())


def test_domain_corruption_generator_and_validation() -> None:
    logits = torch.randn(6, 3, generator=torch.Generator().manual_seed(1))
    dom = torch.tensor([0, 1, 2, 0, 1, 2])
    l1, p1 = L.domain_corruption_loss(logits, dom, torch.Generator().manual_seed(5))
    l2, p2 = L.domain_corruption_loss(logits, dom, torch.Generator().manual_seed(5))
    assert torch.equal(p1, p2) and torch.equal(l1, l2)
    assert sorted(p1.tolist()) == list(range(6))
    approx(l1, F.cross_entropy(logits, dom[p1], reduction="none").tolist())
    with pytest.raises(ValueError):
        L.domain_corruption_loss(logits, dom, permutation=torch.tensor([0, 0, 1, 2, 3, 4]))


# ------------------------------------------------------------- official (padded) normalisations, #15
def test_hidden_mse_padded_averages_over_every_position_by_hand():
    # B=1, T=3 (last position padding), H=2: official MSELoss over the whole (B, T, H) tensor
    s = torch.tensor([[[1.0, 2.0], [0.0, 0.0], [5.0, 5.0]]], dtype=torch.float64)
    t = torch.tensor([[[0.0, 0.0], [1.0, 1.0], [3.0, 5.0]]], dtype=torch.float64)
    # squared differences: 1, 4 | 1, 1 | 4, 0 -> sum 11 over 6 entries, padding included
    assert L.hidden_mse_padded(s, t).tolist() == pytest.approx([11 / 6])
    # kdbench's default drops the padded position: (1 + 4 + 1 + 1) / 4
    assert L.hidden_mse(s, t, torch.tensor([[1, 1, 0]])).tolist() == pytest.approx([7 / 4])
    assert torch.allclose(L.hidden_mse_padded(s, t).mean(), torch.nn.functional.mse_loss(s, t))


def test_attention_mse_padded_zeroes_key_columns_keeps_query_rows_by_hand():
    # B=1, heads=1, T=2, the second token is padding
    s = torch.tensor([[[[1.0, 7.0], [2.0, 9.0]]]], dtype=torch.float64)
    t = torch.tensor([[[[0.0, 1.0], [5.0, 3.0]]]], dtype=torch.float64)
    mask = torch.tensor([[1, 0]])
    # key column 1 zeroed in both; query row 1 (padding) kept: (1-0)² + (2-5)² = 10, over heads·T² = 4
    assert L.attention_mse_padded(s, t, mask).tolist() == pytest.approx([10 / 4])
    # the official code: add the -10000 mask, zero every entry <= -1e2, MSELoss over the tensor
    add = (1.0 - mask[:, None, None, :].double()) * -10000.0
    zs, zt = [torch.where(x + add <= -1e2, torch.zeros_like(x), x + add) for x in (s, t)]
    assert L.attention_mse_padded(s, t, mask).mean().item() == pytest.approx(
        torch.nn.functional.mse_loss(zs, zt).item())
    # kdbench's default: only the real pair (0, 0): 1 / (heads · 1²)
    assert L.attention_mse(s, t, mask).tolist() == pytest.approx([1.0])


def test_meta_distill_tkd_batch_mean_by_hand():
    hid = torch.tensor([1.0, 2.0], dtype=torch.float64)
    att = torch.tensor([3.0, 0.0], dtype=torch.float64)
    tkd = torch.tensor([4.0, 0.0], dtype=torch.float64)
    lam = torch.tensor([0.5, 0.25], dtype=torch.float64)
    # per example (kdbench): mean(0.5·(1+3+0.5·4), 0.25·(2+0+0)) = mean(3, 0.5) = 1.75
    assert L.meta_distill_stage1_loss(hid, att, tkd, lam, 0.5).item() == pytest.approx(1.75)
    # official: mean(λ·(hid+att)) + γ2·mean(λ)·mean(tkd) = mean(2, 0.5) + 0.5·0.375·2 = 1.25 + 0.375
    got = L.meta_distill_stage1_loss(hid, att, tkd, lam, 0.5, tkd_batch_mean=True).item()
    assert got == pytest.approx(1.625)
