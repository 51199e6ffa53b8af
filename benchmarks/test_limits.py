"""Issue #20: distance to the hardware limit, stage-1 reuse, and the 6-cell grid vs a hand-written loop.

The measuring functions live in kdbench/limits.py (tested in tests/test_limits.py); this file only
runs them on this machine and reports (see benchmarks/conftest.py). Absolute times on a shared
machine are noise: the ratios are what is reported.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
import torch
from conftest import SHARED, report

from kdbench import device as dev
from kdbench import limits, registry, runner
from kdbench.config import RunConfig, resolve_profile


def _hf_cache() -> bool:
    return (SHARED / "hf-home").is_dir()


def _device() -> torch.device:
    d = dev.resolve_device("auto")
    dev.setup(d)
    return d


@pytest.mark.parametrize("profile", ["tiny", "cpu"])
def test_limits(benchmark, profile):
    """1. GEMM rate at the run's thread count; FLOPs and achieved share of it for a teacher step, a
    student step and an evaluation batch of the profile (full batches of max_len tokens)."""
    if profile != "tiny" and not _hf_cache():
        pytest.skip("no HF cache at ../shared/hf-home")
    device = _device()
    prof = resolve_profile(profile)
    precisions = ["bf16", "tf32"] if device.type == "cuda" else ["fp32", "bf16"]
    rates = {p: limits.gemm_rate(device, p) for p in precisions}
    values: dict[str, float] = {f"{p}_gemm_gflops": r.gflops for p, r in rates.items()}
    values["threads"] = torch.get_num_threads()

    def run() -> None:
        for p, rate in rates.items():
            if device.type == "cpu" and p == "bf16" and profile != "tiny" and rate.flops_per_s < rates["fp32"].flops_per_s:
                continue  # emulated bf16: minutes per real-model step, and no one would use it
            with limits.matmul_precision(device, p):
                out = limits.profile_limits(prof, device, "bf16" if p == "bf16" else "fp32", rate)
            for name, a in out.items():
                values[f"{p}_{name}_gflop"] = a.flops / 1e9
                values[f"{p}_{name}_s"] = a.seconds
                values[f"{p}_{name}_of_limit"] = a.fraction

    benchmark.pedantic(run, rounds=1, iterations=1)
    report(benchmark, f"limits[{profile}] on {device.type}", "measure", **values)


def test_cell_outside_steps(benchmark, data_dir, tmp_path):
    """1. Share of a whole grid's wall time spent outside training steps: student,kd,teacher on
    books,kitchen (fraction 0.2), tiny profile, in this process (teachers trained inside)."""
    cfg = RunConfig.from_sources({"methods": "student,kd,teacher", "tasks": "amazon", "domains": "books,kitchen",
                                  "fractions": "0.2", "profile": "tiny", "data_dir": data_dir,
                                  "cache_dir": tmp_path / "cache", "results_dir": tmp_path / "r"})
    before = limits.STEP_TIMER.seconds
    wall = benchmark.pedantic(lambda: _timed(lambda: runner.run(cfg, registry.load())), rounds=1, iterations=1)
    steps = limits.STEP_TIMER.seconds - before
    report(benchmark, "outside steps [tiny grid]", "measure", wall_s=wall, steps_s=steps,
           outside_share=limits.outside_share(wall, steps))


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


TEMPERATURES = "tinybert[temperature=1],tinybert[temperature=2],tinybert[temperature=4]"


def test_stage_reuse(benchmark, data_dir, tmp_path, monkeypatch):
    """2. tinybert over 3 temperatures (tiny profile, books, fraction 0.5): stage 1 restored from
    kdbench/stagecache.py vs recomputed in every cell. Same trained teacher in both (copied)."""
    import kdbench.distill as tb  # run_stage1 calls cached_stage from here

    def cfg(name: str) -> RunConfig:
        return RunConfig.from_sources({"methods": TEMPERATURES, "tasks": "amazon", "domains": "books",
                                       "fractions": "0.5", "profile": "tiny", "data_dir": data_dir,
                                       "cache_dir": tmp_path / "cache", "results_dir": tmp_path / name})

    runner.run(RunConfig.from_sources({"methods": "tinybert", "tasks": "amazon", "domains": "books",
                                       "fractions": "0.5", "profile": "tiny", "data_dir": data_dir,
                                       "cache_dir": tmp_path / "cache", "results_dir": tmp_path / "warm"}),
               registry.load())  # teacher, tokenizer and imports out of the way
    for name in ("off", "on"):
        shutil.copytree(tmp_path / "warm" / "teachers", tmp_path / name / "teachers")
    with monkeypatch.context() as m:
        m.setattr(tb, "cached_stage", lambda ctx, student, params, *, compute, **kw: compute())
        off = _timed(lambda: runner.run(cfg("off"), registry.load()))
    on = benchmark.pedantic(lambda: _timed(lambda: runner.run(cfg("on"), registry.load())), rounds=1, iterations=1)
    assert len(list((tmp_path / "on" / "cache" / "stage1").iterdir())) == 1
    report(benchmark, "stage-1 reuse [tiny tinybert x3 temperatures]", "ratio <= 0.6", reuse_s=on, recompute_s=off,
           ratio=on / off)


# ------------------------------------------------------------------------ the 6-cell cpu grid
def hand_loop(data_dir: Path, fraction: float = 0.2, domains=("books", "kitchen")) -> dict[str, float]:
    """The grid's cells written as a user would, without kdbench's loop: per domain a teacher
    (fine-tuned, dev-selected per epoch, evaluated on test), a fine-tuned student, and a KD student
    (alpha 0.5, T 1, teacher run in every step). Same data subset, models, epochs, lr, schedule."""
    import random

    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        get_linear_schedule_with_warmup,
    )

    from kdbench.data import subsample
    from kdbench_tasks.amazon import AmazonTask

    prof = resolve_profile("cpu")
    tok = AutoTokenizer.from_pretrained(prof.student)
    data = AmazonTask(data_dir).load()
    acc: dict[str, float] = {}

    def encode(examples):
        enc = tok([e.text for e in examples], truncation=True, max_length=prof.max_len)
        return [(ids, e.label) for ids, e in zip(enc["input_ids"], examples, strict=True)]

    def batches(rows, bs, shuffle):
        order = list(range(len(rows)))
        if shuffle:
            random.shuffle(order)
        for i in range(0, len(order), bs):
            chunk = [rows[j] for j in order[i:i + bs]]
            b = tok.pad({"input_ids": [c[0] for c in chunk]}, return_tensors="pt")
            yield b["input_ids"], b["attention_mask"], torch.tensor([c[1] for c in chunk])

    @torch.no_grad()
    def evaluate(model, rows):
        model.eval()
        right = sum(int((model(input_ids=i, attention_mask=m).logits.argmax(-1) == y).sum())
                    for i, m, y in batches(rows, prof.eval_batch_size, False))
        return 100.0 * right / len(rows)

    def fit(name, train, dev_rows, teacher=None):
        torch.manual_seed(0)
        model = AutoModelForSequenceClassification.from_pretrained(name, num_labels=2)
        cfg = prof.teacher_train if teacher is None and name == prof.teacher else prof.student_train
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        total = cfg.epochs * -(-len(train) // prof.batch_size)
        sched = get_linear_schedule_with_warmup(opt, int(cfg.warmup * total), total)
        best, state = -1.0, None
        for _ in range(cfg.epochs):
            model.train()
            for i, m, y in batches(train, prof.batch_size, True):
                logits = model(input_ids=i, attention_mask=m).logits
                loss = torch.nn.functional.cross_entropy(logits, y)
                if teacher is not None:
                    with torch.no_grad():
                        t = teacher(input_ids=i, attention_mask=m).logits
                    loss = 0.5 * loss + 0.5 * torch.nn.functional.kl_div(
                        logits.log_softmax(-1), t.softmax(-1), reduction="batchmean")
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                sched.step()
                opt.zero_grad()
            a = evaluate(model, dev_rows)
            if a > best:
                best, state = a, {k: v.clone() for k, v in model.state_dict().items()}
        model.load_state_dict(state)
        model.eval()
        return model

    random.seed(0)
    for d in domains:
        dd = data[d]
        train, dev_rows, test = encode(subsample(dd.train, fraction, 0)), encode(dd.dev), encode(dd.test)
        teacher = fit(prof.teacher, train, dev_rows)
        acc[f"{d}/teacher"] = evaluate(teacher, test)
        acc[f"{d}/student"] = evaluate(fit(prof.student, train, dev_rows), test)
        acc[f"{d}/kd"] = evaluate(fit(prof.student, train, dev_rows, teacher), test)
    return acc


def test_grid_6cells(benchmark, data_dir, tmp_path):
    """3. kdbench's runner on student,kd,teacher × books,kitchen, fraction 0.2, cpu profile (fresh
    results directory) vs :func:`hand_loop` doing the same cells; both in this process."""
    if not _hf_cache():
        pytest.skip("no HF cache at ../shared/hf-home")
    cfg = RunConfig.from_sources({"methods": "student,kd,teacher", "tasks": "amazon", "domains": "books,kitchen",
                                  "fractions": "0.2", "profile": "cpu", "data_dir": data_dir,
                                  "cache_dir": tmp_path / "cache", "results_dir": tmp_path / "grid"})
    t_hand = _timed(lambda: hand_loop(data_dir))
    before = limits.STEP_TIMER.seconds
    ours = benchmark.pedantic(lambda: _timed(lambda: runner.run(cfg, registry.load())), rounds=1, iterations=1)
    steps = limits.STEP_TIMER.seconds - before
    report(benchmark, "6-cell cpu grid", "ratio <= 0.7", kdbench_s=ours, hand_loop_s=t_hand, ratio=ours / t_hand,
           steps_s=steps, outside_share=limits.outside_share(ours, steps))
