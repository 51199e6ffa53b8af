"""The five performance measurements of the README's table (see benchmarks/conftest.py)."""

from __future__ import annotations

import json
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch
from conftest import report

from kdbench import registry, runner
from kdbench.api import TrainConfig
from kdbench.config import RunConfig, resolve_profile
from kdbench.data import batch_order, batches, collate, encode, load_tokenizer
from kdbench.device import Runtime
from kdbench.distill import pad_to
from kdbench.losses import hinton_kd_loss
from kdbench.modeling import load_model
from kdbench.teachers import TeacherHandle
from kdbench.trainer import forward, train
from kdbench_tasks.amazon import AmazonTask
from kdbench_tasks.mnli import MnliTask

CPU = torch.device("cpu")


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def cpu_models(num_labels: int = 2):
    prof = resolve_profile("cpu")
    torch.manual_seed(0)
    teacher = load_model(prof.teacher, num_labels, profile=prof, role="teacher")
    student = load_model(prof.student, num_labels, profile=prof, role="student")
    return prof, teacher, student


def test_step_overhead(benchmark, data_dir, tmp_path):
    """1. A kdbench KD training step vs a bare PyTorch loop: same models, same batches."""
    prof, teacher, student = cpu_models()
    domains = AmazonTask(data_dir).load()
    tok = load_tokenizer(prof, domains, tmp_path)
    enc = encode(tok, domains["books"].train[:320], prof.max_len)  # 10 steps of 32
    cfg = TrainConfig(epochs=1, lr=1e-4, warmup=0.0)
    handle = TeacherHandle(teacher)
    order = batch_order([len(x) for x in enc.input_ids], 32, random.Random("kdbench-batches/0/bench"))
    state = {k: v.clone() for k, v in student.state_dict().items()}

    def kdbench_loop():
        student.load_state_dict(state)
        train(student, enc, lambda b: hinton_kd_loss(forward(student, b).logits, handle(b).logits, b["labels"], 0.5, 1.0),
              cfg, batch_size=32, eval_batch_size=64, runtime=Runtime(CPU, "fp32", compile=False), seed=0,
              stage="bench")

    def bare_loop():
        student.load_state_dict(state)
        student.train()
        opt = torch.optim.AdamW(student.parameters(), lr=1e-4)
        for idx in order:  # the same batches, collated the same way
            b = collate(enc, idx)
            inputs = {k: b[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
            with torch.no_grad():
                t = teacher(**inputs).logits
            loss = hinton_kd_loss(student(**inputs).logits, t, b["labels"], 0.5, 1.0)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)

    bare_loop()  # warm-up (allocator, threads)
    bare = min(timed(bare_loop) for _ in range(3))
    benchmark.pedantic(kdbench_loop, rounds=3, iterations=1)
    ours = benchmark.stats.stats.min
    report(benchmark, "step overhead", "ratio <= 1.05", kdbench_s=ours, bare_s=bare, ratio=ours / bare)


def _grid(tmp: Path, data_dir: Path, reuse: bool) -> float:
    cfg = RunConfig.from_sources({"methods": "kd,pkd,tinybert", "tasks": "amazon", "domains": "books,kitchen",
                                  "fractions": "0.5", "profile": "tiny", "data_dir": data_dir,
                                  "cache_dir": tmp / "cache", "results_dir": tmp / ("reuse" if reuse else "none"),
                                  "reuse": reuse})
    return timed(lambda: runner.run(cfg, registry.load()))


def test_grid_reuse(benchmark, data_dir, tmp_path):
    """2. kd,pkd,tinybert on 2 Amazon domains (tiny): teacher sharing + logits cache vs neither."""
    _grid(tmp_path / "warm", data_dir, True)  # tokenizer training and imports out of the way
    off = _grid(tmp_path, data_dir, False)
    on = benchmark.pedantic(lambda: _grid(tmp_path, data_dir, True), rounds=1, iterations=1)
    report(benchmark, "grid reuse", "ratio <= 0.4", reuse_s=on, no_reuse_s=off, ratio=on / off)


def test_mnli_padding(benchmark, data_dir, tmp_path):
    """3. One MNLI training epoch (cpu student, 640 fiction pairs): dynamic padding + length grouping
    vs every batch padded to 128."""
    prof, _, student = cpu_models(3)
    domains = MnliTask(data_dir).load()
    tok = load_tokenizer(prof, domains, tmp_path)
    enc = encode(tok, domains["fiction"].train[:640], prof.max_len)
    state = {k: v.clone() for k, v in student.state_dict().items()}

    def epoch(batch_iter):
        student.load_state_dict(state)
        student.train()
        opt = torch.optim.AdamW(student.parameters(), lr=1e-4)
        for b in batch_iter:
            loss = torch.nn.functional.cross_entropy(forward(student, b).logits, b["labels"])
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

    def padded():
        idx = random.Random(0).sample(range(len(enc)), len(enc))
        epoch(pad_to(collate(enc, idx[i:i + 32]), 128) for i in range(0, len(idx), 32))

    pad128 = timed(padded)
    dyn = benchmark.pedantic(lambda: timed(lambda: epoch(batches(enc, 32, random.Random(0)))), rounds=1,
                             iterations=1)
    tokens = sum(len(x) for x in enc.input_ids)
    report(benchmark, "MNLI padding", "ratio <= 0.5", dynamic_s=dyn, pad128_s=pad128, ratio=dyn / pad128,
           real_token_share=tokens / (128 * len(enc)))


def _cell(tmp: Path, data_dir: Path, precision: str, methods: str = "student") -> tuple[float, dict]:
    out = tmp / precision
    cmd = [sys.executable, "-m", "kdbench.cli", "run", "--methods", methods, "--tasks", "amazon",
           "--domains", "books", "--fractions", "0.2", "--profile", "cpu", "--precision", precision,
           "--data-dir", str(data_dir), "--results-dir", str(out)]
    t = timed(lambda: subprocess.run(cmd, check=True, capture_output=True))
    cell = json.loads(next((out / "cells").glob(f"*{methods}*.json")).read_text())
    return t, cell


def test_memory(benchmark, data_dir, tmp_path):
    """4. Peak RSS of one cpu-profile kd cell (teacher training + distillation) in its own process."""
    benchmark.pedantic(lambda: _cell(tmp_path, data_dir, "fp32", "kd"), rounds=1, iterations=1)
    peak_gib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
    report(benchmark, "memory", "< 4 GiB", peak_rss_gib=peak_gib)


def test_cpu_precision(benchmark, data_dir, tmp_path):
    """5. One cpu-profile student cell, bf16 autocast vs fp32: time ratio and accuracy difference."""
    t32, c32 = _cell(tmp_path, data_dir, "fp32")
    t16, c16 = benchmark.pedantic(lambda: _cell(tmp_path, data_dir, "bf16"), rounds=1, iterations=1)
    report(benchmark, "CPU precision", "bf16 faster, accuracy within noise", bf16_s=t16, fp32_s=t32,
           ratio=t16 / t32, acc_fp32=c32["metrics"]["test_accuracy"], acc_bf16=c16["metrics"]["test_accuracy"],
           acc_diff=c16["metrics"]["test_accuracy"] - c32["metrics"]["test_accuracy"])
