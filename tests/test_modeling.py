from __future__ import annotations

import pytest
import torch

from kdbench.config import resolve_profile
from kdbench.data import Encoded, collate
from kdbench.modeling import load_model
from kdbench.trainer import forward, predict


def tiny(spec="tiny:L2-H32-A2", heads=("main",)):
    torch.manual_seed(0)
    return load_model(spec, 3, heads, profile=resolve_profile("tiny"), role="test", vocab_size=50).eval()


def enc(n=6):
    g = torch.Generator().manual_seed(0)
    ids = [[2, *torch.randint(5, 50, (int(k),), generator=g).tolist(), 3] for k in torch.randint(3, 20, (n,), generator=g)]
    return Encoded(ids=[str(i) for i in range(n)], input_ids=ids, token_type_ids=[[0] * len(x) for x in ids],
                   labels=[i % 3 for i in range(n)])


def test_attention_scores_match_eager_attention():
    """Scores rebuilt from q/k hooks give exactly the eager attention probabilities after masking."""
    model = tiny()
    e = enc()
    batch = collate(e, list(range(len(e))))
    out = forward(model, batch, output_hidden=True)
    model.backbone.config._attn_implementation = "eager"
    ref = model.backbone(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                         token_type_ids=batch["token_type_ids"], output_attentions=True)
    mask = batch["attention_mask"][:, None, None, :].bool()
    for scores, probs in zip(out.attention_scores, ref.attentions, strict=True):
        mine = scores.masked_fill(~mask, float("-inf")).softmax(-1)
        assert torch.allclose(mine, probs, atol=1e-5)
    assert len(out.hidden_states) == 3 and len(out.attention_scores) == 2


def test_dynamic_padding_gives_pad_to_max_logits():
    model = tiny()
    e = enc(10)
    dyn = predict(model, e, "main", torch.device("cpu"), "fp32", batch_size=4)
    full = []
    for i in range(len(e)):
        n = len(e.input_ids[i])
        ids = torch.zeros((1, 64), dtype=torch.long)
        ids[0, :n] = torch.tensor(e.input_ids[i])
        mask = torch.zeros_like(ids)
        mask[0, :n] = 1
        with torch.no_grad():
            full.append(model(ids, mask, torch.zeros_like(ids)).logits)
    assert torch.allclose(dyn, torch.cat(full), atol=1e-5)


def test_extra_heads_are_independent():
    model = tiny(heads=("books", "dvd"))
    assert set(model.heads) == {"books", "dvd"}
    assert not torch.equal(model.heads["books"].weight, model.heads["dvd"].weight)


# ------------------------------------------------------------------ model specs (#18 §1)
@pytest.mark.parametrize(("spec", "message"), [
    ("tiny:L0-H0-A0", "0 layers"), ("tiny:L2-H30-A4", "not a multiple of 4 heads"),
    ("tiny:L2-H0-A0", "heads <= hidden"), ("tiny:L2-H4-A8", "heads <= hidden"), ("tiny:L2-H32", "tiny:L<layers>"),
    ("tiny:L99-H32-A2", "99 layers"), ("tiny:L2-H99999-A1", "hidden <= 4096"),
])
def test_bad_tiny_specs_are_refused(spec, message):
    from kdbench.api import KDBenchError
    from kdbench.modeling import check_model_available

    with pytest.raises(KDBenchError, match=message.replace("<", ".").replace(">", ".")) as info:
        check_model_available(spec, "teacher")
    assert "\n" not in str(info.value) and "teacher" in str(info.value)


def test_a_path_or_hub_id_that_is_not_a_model_is_named(tmp_path, monkeypatch):
    from kdbench.api import KDBenchError
    from kdbench.modeling import check_model_available

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(KDBenchError, match="is not a model directory") as info:
        check_model_available(str(tmp_path), "student")
    assert str(tmp_path) in str(info.value)
    with pytest.raises(KDBenchError, match="'no-org/no-such-model' is not a model") as info:
        check_model_available("no-org/no-such-model", "student")
    assert "\n" not in str(info.value)
    check_model_available("tiny:L2-H32-A4", "student")  # fine
