from __future__ import annotations

import pytest
import torch
from _tinymodels import enc, tiny

from kdbench import trainer
from kdbench.api import TrainConfig
from kdbench.device import Runtime


def test_training_reduces_loss_and_keeps_best_dev_checkpoint():
    model = tiny()
    data, dev = enc(200, seed=1), enc(60, seed=2)
    fit = trainer.train(model, data, lambda b: trainer.cross_entropy(b, trainer.forward(model, b).logits),
                        TrainConfig(epochs=4, lr=3e-3), batch_size=16, eval_batch_size=64,
                        runtime=Runtime(torch.device("cpu"), "fp32", compile=False), seed=0, dev_data=dev)
    assert fit.losses[-1] < fit.losses[0]
    acc = trainer.accuracy(trainer.predict(model, dev, "main", torch.device("cpu"), "fp32", 64), dev.labels)
    assert acc == pytest.approx(fit.info["best_dev"])


def test_non_finite_loss_names_the_step():
    pending = [torch.tensor(1.0), torch.tensor(float("inf")), torch.tensor(2.0)]
    with pytest.raises(trainer.NonFiniteLossError, match="non-finite loss at step 9"):
        trainer._sync(pending, step=10)


def test_compile_flag_compiles_the_trained_model_once(monkeypatch):
    seen = []
    monkeypatch.setattr(trainer.dev, "compile_model", lambda m: seen.append(m))
    model = tiny()
    cpu = torch.device("cpu")
    trainer.train(model, enc(), lambda b: trainer.cross_entropy(b, trainer.forward(model, b).logits),
                  TrainConfig(epochs=1, lr=1e-3), batch_size=8, eval_batch_size=16,
                  runtime=Runtime(cpu, "fp32", compile=True), seed=0)
    assert seen == [model]
    trainer.train(model, enc(), lambda b: trainer.cross_entropy(b, trainer.forward(model, b).logits),
                  TrainConfig(epochs=1, lr=1e-3), batch_size=8, eval_batch_size=16,
                  runtime=Runtime(cpu, "fp32", compile=False), seed=0)
    assert seen == [model]  # compile=False (--compile not given) leaves the model alone


# ------------------------------------------------------------------------ schedule and eval_every
def _lrs(cfg: TrainConfig, total: int) -> list[float]:
    p = torch.nn.Parameter(torch.zeros(1))
    optim = torch.optim.AdamW([p], lr=cfg.lr)
    sched = trainer.lr_schedule(optim, cfg, total)
    out = []
    for _ in range(total):
        out.append(optim.param_groups[0]["lr"])
        optim.step()
        sched.step()
    return out


def test_linear_schedule_is_hugging_faces_warmup_then_decay():
    # 20 steps, warmup 0.1 -> 2 warmup steps: lr(s) = s/2 for s < 2, then (20 - s)/18, by hand
    got = _lrs(TrainConfig(lr=1.0, warmup=0.1), 20)
    want = [0.0, 0.5] + [(20 - s) / 18 for s in range(2, 20)]
    assert got == pytest.approx(want)


def test_constant_schedule_has_no_warmup_and_no_decay():
    # official TinyBERT/Meta-KD stage 1 (BertAdam schedule='none'): lr at every step
    assert _lrs(TrainConfig(lr=3.0, warmup=0.1, schedule="constant"), 7) == [3.0] * 7
    with pytest.raises(ValueError, match="schedule"):
        TrainConfig(schedule="cosine")
    with pytest.raises(ValueError, match="eval_every"):
        TrainConfig(eval_every=-1)


def test_eval_every_selects_among_step_checkpoints(monkeypatch):
    # 40 examples, batch 8 -> 5 steps per epoch, 2 epochs = 10 steps; eval_every 3 -> steps 3, 6, 9, 10
    seen = []
    scores = iter([50.0, 70.0, 60.0, 70.0])

    def score(model):
        seen.append(model.training)
        return next(scores)

    model = tiny()
    steps_at_eval = []

    def loss_fn(b):
        return trainer.cross_entropy(b, trainer.forward(model, b).logits)

    res = trainer.train(model, enc(), loss_fn, TrainConfig(epochs=2, lr=1e-3, eval_every=3), batch_size=8,
                        eval_batch_size=8, runtime=Runtime(torch.device("cpu"), "fp32", compile=False), seed=0,
                        score_fn=lambda m: (steps_at_eval.append(1), score(m))[1])
    assert len(steps_at_eval) == 4 and res.info["steps"] == 10
    assert res.info["best_step"] == 6 and res.info["best_epoch"] == 2 and res.info["best_dev"] == 70.0
    # per epoch (eval_every 0): one evaluation per epoch
    scores = iter([1.0, 2.0])
    model = tiny()  # loss_fn reads the name `model`
    res = trainer.train(model, enc(), loss_fn, TrainConfig(epochs=2, lr=1e-3), batch_size=8, eval_batch_size=8,
                        runtime=Runtime(torch.device("cpu"), "fp32", compile=False), seed=0, score_fn=score)
    assert res.info["best_step"] == 10 and res.info["best_epoch"] == 2
