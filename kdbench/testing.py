"""Conformance kit for method plugins: run it on your own method before publishing it.

Every method registered with kdbench, built-in or third-party, should pass::

    from kdbench.testing import assert_conformance

    def test_my_method_conforms(tmp_path):
        assert_conformance("my-method", results_dir=tmp_path / "results",
                           extra_plugins=[my_plugin_module])

:func:`check_method` runs the method through the real :class:`~kdbench.runner.Runner` on the
``tiny`` profile (random-init models, seconds per cell on a CPU) and checks that

1. **it produces a valid result** in every cell: status ``ok``; ``test_accuracy`` and
   ``dev_accuracy`` present, finite and in [0, 100]; predictions cover exactly the domain's test
   examples, each once, with the gold label of that example, predicted labels in range, and an
   accuracy that agrees with ``test_accuracy``; ``split_hash`` equal to the task's; a teacher used iff
   the method declares one (``Method.teacher is not None``).
2. **it is deterministic under a fixed seed on CPU**: the first domain's cell is run again, in a
   fresh results directory, and must give identical metrics, predictions and logged losses. What is
   compared is the *method*: the teachers the first run used are copied into the fresh directory, so
   the rerun loads exactly the same teacher weights from disk. This also checks that the method's
   result does not depend on whether its teacher was trained inside the cell or loaded from disk
   (e.g. a method drawing random numbers after fetching a teacher without reseeding would fail when
   the first run trained that teacher). A method that trains nothing itself (the teacher rows, see
   3.) is compared with its teachers *retrained* in the fresh directory instead: for those rows the
   check covers the teacher kind's training determinism.
3. **its training loss decreases**: the first logged loss (``train.losses``, the mean of the first
   logging window) is larger than the last one. Exempt: methods that declare a teacher and log no
   loss at all, i.e. rows that evaluate an already trained teacher (``teacher``, ``teacher:mix``, ...)
   and train nothing themselves. A method without a teacher that logs no loss fails.
4. **it declares the teachers it uses**: the teachers ``fit`` asked for are exactly those of
   ``Method.teacher_requests`` (which ``--executor ray`` trains before the cell starts).

The default task is :class:`ToyTask` (``task="toy"``): a synthetic two-domain sentiment task generated
in memory, learnable by the tiny models within a few dozen steps, so the whole kit runs in seconds
without any data. ``task="amazon"`` (with ``data_dir``) runs on two real Amazon domains at a small
train fraction instead. Every run uses ``fraction_all_domains`` so that multi-domain teachers train
on small subsets and are shared by both target domains.
"""

from __future__ import annotations

import dataclasses
import math
import random
import shutil
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from kdbench import hookimpl
from kdbench.api import DomainData, Example, KDBenchError, Task

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from kdbench.registry import Registry
    from kdbench.results import CellResult

__all__ = ["CheckResult", "ConformanceReport", "ToyTask", "assert_conformance", "check_method",
           "toy_plugin"]


# --------------------------------------------------------------------------------------- toy task
_SHARED_POS = ("good", "great", "lovely")
_SHARED_NEG = ("bad", "awful", "broken")
_FUNCTION = ("the", "a", "it", "was", "and", "this", "very", "with", "for", "of", "is", "my")
_TOPICS: dict[str, dict[str, tuple[str, ...]]] = {
    "garden": {"nouns": ("rose", "spade", "hose", "soil", "seed", "lawn", "hedge", "pot", "tulip", "rake"),
               "pos": ("blooming", "lush"), "neg": ("wilted", "rotten")},
    "kitchen": {"nouns": ("pan", "knife", "kettle", "oven", "bowl", "spoon", "toaster", "plate", "cup", "whisk"),
                "pos": ("sharp", "shiny"), "neg": ("rusty", "leaky")},
}


class ToyTask(Task):
    """A synthetic two-domain sentiment task, generated deterministically in memory.

    Each example is 6–12 words: filler (function words and the domain's nouns) with 2–4 sentiment
    cue words of its label, drawn from cues shared by both domains and cues specific to the domain
    (so domains differ in vocabulary and in part of their cues). Labels are balanced. Per domain:
    320 train / 64 dev / 64 test examples. Ids are ``toy/<domain>/<split>/<i>``.
    """

    name = "toy"
    description = "Synthetic two-domain sentiment task for conformance tests (generated in memory)"
    version = "1"
    domains = ("garden", "kitchen")
    labels = ("negative", "positive")
    SIZES: ClassVar[dict[str, int]] = {"train": 320, "dev": 64, "test": 64}

    def load(self) -> dict[str, DomainData]:
        return {d: DomainData(d, *(self._split(d, s) for s in ("train", "dev", "test"))) for d in self.domains}

    def _split(self, domain: str, split: str) -> tuple[Example, ...]:
        rng = random.Random(f"kdbench-toy/{domain}/{split}")
        topic = _TOPICS[domain]
        out = []
        for i in range(self.SIZES[split]):
            label = i % 2
            cues = (_SHARED_POS + topic["pos"]) if label else (_SHARED_NEG + topic["neg"])
            words = [rng.choice(_FUNCTION + topic["nouns"]) for _ in range(rng.randint(4, 8))]
            for _ in range(rng.randint(2, 4)):
                words.insert(rng.randrange(len(words) + 1), rng.choice(cues))
            out.append(Example(id=f"toy/{domain}/{split}/{i}", text=" ".join(words), label=label))
        rng.shuffle(out)
        return tuple(out)


class _ToyPlugin:
    @hookimpl
    def kdbench_register_tasks(self) -> list[type[Task]]:
        return [ToyTask]


def toy_plugin() -> Any:
    """A plugin object registering :class:`ToyTask` (pass it in ``extra_plugins``)."""
    return _ToyPlugin()


# ---------------------------------------------------------------------------------------- reports
@dataclass
class CheckResult:
    name: str  # "result", "deterministic", "loss-decreases", "teacher-requests"
    cell: str  # the cell key it was checked on
    ok: bool
    detail: str = ""


@dataclass
class ConformanceReport:
    """What :func:`check_method` found. ``ok`` is True when every check passed."""

    method: str
    task: str
    domains: tuple[str, ...]
    fraction: float
    seed: int
    checks: list[CheckResult] = field(default_factory=list)
    results: dict[str, CellResult] = field(default_factory=dict)  # domain -> cell result (run 1)
    rerun: CellResult | None = None  # the determinism rerun's cell result
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    @property
    def failures(self) -> list[CheckResult]:
        return [c for c in self.checks if not c.ok]

    def summary(self) -> str:
        head = (f"conformance of method {self.method!r} on {self.task}/{','.join(self.domains)} "
                f"(fraction {self.fraction:g}, seed {self.seed}, {self.seconds:.1f}s): "
                f"{'ok' if self.ok else 'FAILED'}")
        lines = [head] + [f"  [{'ok' if c.ok else 'FAIL'}] {c.name} ({c.cell}){': ' + c.detail if c.detail else ''}"
                          for c in self.checks]
        return "\n".join(lines)

    def assert_ok(self) -> None:
        if not self.ok:
            raise AssertionError(self.summary())


# ------------------------------------------------------------------------------------------ kit
def _load_registry(task: str, extra_plugins: Sequence[Any]) -> Registry:
    from kdbench import registry

    plugins = list(extra_plugins)
    reg = registry.load(plugins)
    if task == "toy" and "toy" not in reg.tasks:
        reg = registry.load([*plugins, toy_plugin()])
    return reg


def _run(config: Any, reg: Registry) -> Any:
    from kdbench.runner import Runner

    runner = Runner(config, reg)
    reg.pm.hook.kdbench_configure.call_historic(kwargs={"config": config})
    runner.run()
    return runner


def check_method(method_name: str, *, results_dir: Path | str, task: str = "toy",
                 domains: Sequence[str] | None = None, fraction: float | None = None,
                 profile: str = "tiny", extra_plugins: Sequence[Any] = (), data_dir: Path | str | None = None,
                 cache_dir: Path | str | None = None, rerun_dir: Path | str | None = None,
                 determinism: bool = True, options: Mapping[str, Any] | None = None) -> ConformanceReport:
    """Run the conformance checks on ``method_name``; never raises for a failing check (see the report).

    ``results_dir`` receives the first run; it may be shared by several calls (teachers are keyed by
    content, so methods checked one after another reuse them). ``domains`` defaults to the task's
    first two domains, ``fraction`` to 1.0 on ``toy`` and 0.2 elsewhere. ``rerun_dir`` (default: a
    temporary directory, removed afterwards) receives the determinism rerun and must not already hold
    results. ``options`` are the method's options (as ``--set``). Raises :class:`KDBenchError` when the
    method, the task or the data cannot be found.
    """
    from kdbench.config import RunConfig

    t0 = time.perf_counter()
    reg = _load_registry(task, extra_plugins)
    if method_name not in reg.methods:
        failed = "; ".join(f"{f.name}: {f.error}" for f in reg.failures)
        raise KDBenchError(f"method {method_name!r} is not registered" + (f" (plugins that failed to load: {failed})"
                                                                            if failed else ""))
    task_cls = reg.tasks.get(task)
    doms = tuple(domains) if domains is not None else tuple(task_cls.domains[:2])
    frac = fraction if fraction is not None else (1.0 if task == "toy" else 0.2)
    base = RunConfig(methods=(method_name,), tasks=(task,), domains=doms, fractions=(frac,), seeds=1,
                     profile=profile, results_dir=Path(results_dir),
                     data_dir=Path(data_dir) if data_dir is not None else None,
                     cache_dir=Path(cache_dir) if cache_dir is not None else None, device="cpu",
                     precision="fp32", fraction_all_domains=True,
                     options={method_name: dict(options)} if options else {})
    report = ConformanceReport(method_name, task, doms, frac, seed=0)
    method_cls = reg.methods.get(method_name)

    runner = _run(base, reg)
    state = runner.tasks[task]
    cells = {c.domain: c for c in runner.cells}
    for domain in doms:
        cell = cells[domain]
        result = _read(runner.cell_path(cell))
        report.results[domain] = result
        _check_result(report, cell.key, result, state.domains[domain], task_cls.labels, method_cls.teacher)
        _check_losses(report, cell.key, result, method_cls.teacher)
        _check_teacher_requests(report, runner, cell, result)

    first = cells[doms[0]]
    if determinism and report.results[doms[0]].get("status") == "ok":
        with tempfile.TemporaryDirectory(prefix="kdbench-conformance-") as tmp:
            out = Path(rerun_dir) if rerun_dir is not None else Path(tmp)
            if (out / "cells").exists() and any((out / "cells").iterdir()):
                raise KDBenchError(f"rerun_dir {out} already holds results; give an empty directory")
            old = report.results[doms[0]]
            trains_nothing = not old.get("train", {}).get("losses")
            if not trains_nothing:
                for t in old.get("teachers", []):
                    src = Path(results_dir) / "teachers" / t["key"]
                    if src.is_dir():
                        shutil.copytree(src, out / "teachers" / t["key"], dirs_exist_ok=True)
            rerun_cfg = dataclasses.replace(base, domains=(doms[0],), results_dir=out)
            rerunner = _run(rerun_cfg, reg)
            new = _read(rerunner.cell_path(first))
            report.rerun = new
            _check_same(report, first.key, old, new,
                        "teachers retrained" if trains_nothing else "same teachers, loaded from disk")
    report.seconds = time.perf_counter() - t0
    return report


def assert_conformance(method_name: str, **kwargs: Any) -> ConformanceReport:
    """:func:`check_method`, raising ``AssertionError`` with the report's summary when a check fails."""
    report = check_method(method_name, **kwargs)
    report.assert_ok()
    return report


# ---------------------------------------------------------------------------------------- checks
def _read(path: Path) -> CellResult:
    """The cell file as a :class:`~kdbench.results.CellResult` (values as stored: the checks below
    treat them as untrusted), or a ``missing`` result."""
    from kdbench import results as res

    data = res.read_json(path)
    return res.CellResult.from_json(data if isinstance(data, dict) else
                                    {"status": "missing", "error": f"no readable result at {path}"})


def _check_result(report: ConformanceReport, key: str, result: Mapping[str, Any], data: DomainData,
                  labels: Sequence[str], teacher_kind: str | None) -> None:
    problems = _result_problems(result, data, len(labels), teacher_kind)
    report.checks.append(CheckResult("result", key, not problems, "; ".join(problems)))


def _result_problems(result: Mapping[str, Any], data: DomainData, n_labels: int,
                     teacher_kind: str | None) -> list[str]:
    if result.get("status") != "ok":
        tb = str(result.get("traceback", "")).strip().splitlines()[-6:]
        return [f"status {result.get('status')!r}: {result.get('error')}" + ("\n    " + "\n    ".join(tb) if tb else "")]
    problems: list[str] = []
    metrics = result.get("metrics") or {}
    for name in ("test_accuracy", "dev_accuracy"):
        v = metrics.get(name)
        if not isinstance(v, (int, float)) or not math.isfinite(v) or not 0.0 <= v <= 100.0:
            problems.append(f"metrics.{name} = {v!r} is not a number in [0, 100]")
    preds = result.get("predictions") or {}
    ids, pred, gold = preds.get("ids"), preds.get("pred"), preds.get("gold")
    if not (isinstance(ids, list) and isinstance(pred, list) and isinstance(gold, list)):
        problems.append("predictions must hold lists ids, pred and gold")
    else:
        gold_of = {ex.id: ex.label for ex in data.test}
        if not len(ids) == len(pred) == len(gold):
            problems.append(f"predictions: {len(ids)} ids, {len(pred)} predictions, {len(gold)} gold labels")
        elif len(set(ids)) != len(ids) or set(ids) != set(gold_of):
            problems.append(f"predictions cover {len(set(ids))} distinct ids; the test split has {len(gold_of)}")
        else:
            wrong = [i for i, g in zip(ids, gold, strict=True) if gold_of[i] != g]
            if wrong:
                problems.append(f"{len(wrong)} gold labels do not match their example (e.g. {wrong[0]})")
            bad = [p for p in pred if not isinstance(p, int) or not 0 <= p < n_labels]
            if bad:
                problems.append(f"predicted labels outside 0..{n_labels - 1}: {bad[:3]}")
            acc = 100.0 * sum(p == g for p, g in zip(pred, gold, strict=True)) / max(1, len(gold))
            v = metrics.get("test_accuracy")
            if not bad and isinstance(v, (int, float)) and abs(acc - v) > 1e-3:
                problems.append(f"test_accuracy {v} disagrees with the predictions ({acc})")
    if result.get("split_hash") != data.split_hash():
        problems.append(f"split_hash {result.get('split_hash')!r} != the task's {data.split_hash()!r}")
    teachers = result.get("teachers")
    if not isinstance(teachers, list):
        problems.append("teachers must be a list")
    elif teacher_kind is None and teachers:
        problems.append(f"declares no teacher but used {len(teachers)} teacher(s)")
    elif teacher_kind is not None and not teachers:
        problems.append(f"declares teacher {teacher_kind!r} but used none")
    return problems


def _check_losses(report: ConformanceReport, key: str, result: Mapping[str, Any], teacher_kind: str | None) -> None:
    if result.get("status") != "ok":
        return  # already reported by the result check
    losses = list((result.get("train") or {}).get("losses") or [])
    if not losses:
        if teacher_kind is not None:
            report.checks.append(CheckResult("loss-decreases", key, True,
                                             "exempt: logs no loss (a teacher row that trains nothing itself)"))
        else:
            report.checks.append(CheckResult("loss-decreases", key, False,
                                             "no training loss logged, and no teacher to evaluate"))
        return
    if not all(isinstance(x, (int, float)) and math.isfinite(x) for x in losses):
        report.checks.append(CheckResult("loss-decreases", key, False, f"non-finite logged losses: {losses}"))
    elif len(losses) < 2:
        report.checks.append(CheckResult("loss-decreases", key, False, f"only one logged loss: {losses}"))
    else:
        ok = losses[0] > losses[-1]
        report.checks.append(CheckResult("loss-decreases", key, ok,
                                         f"first {losses[0]:.6g} {'>' if ok else '<='} last {losses[-1]:.6g}"))


def _check_teacher_requests(report: ConformanceReport, runner: Any, cell: Any, result: Mapping[str, Any]) -> None:
    """The teachers ``fit`` used are exactly the ones ``teacher_requests`` declares (Ray trains those first)."""
    if result.get("status") != "ok":
        return
    declared = {spec.key for spec in runner.teacher_specs(cell)}
    used = {t["key"] for t in result.get("teachers", [])}
    report.checks.append(CheckResult(
        "teacher-requests", cell.key, declared == used,
        f"{len(used)} teacher(s), as declared" if declared == used else
        f"teacher_requests() declares {sorted(declared)} but fit() used {sorted(used)}: override "
        "Method.teacher_requests to match"))


def _check_same(report: ConformanceReport, key: str, old: Mapping[str, Any], new: Mapping[str, Any],
                how: str) -> None:
    diffs: list[str] = []
    if new.get("status") != "ok":
        diffs.append(f"rerun status {new.get('status')!r}: {new.get('error')}")
    else:
        for path in _COMPARED:
            a, b = _get(old, path), _get(new, path)
            if a != b:
                diffs.append(f"{'.'.join(path)} differs: {_short(a)} vs {_short(b)}")
    report.checks.append(CheckResult("deterministic", key, not diffs, "; ".join(diffs) or how))


_COMPARED: tuple[tuple[str, ...], ...] = (
    ("metrics",), ("predictions",), ("train", "losses"), ("split_hash",), ("train_hash",), ("n_train",))


def _get(obj: Mapping[str, Any], path: Iterable[str]) -> Any:
    cur: Any = obj
    for p in path:
        cur = cur.get(p) if isinstance(cur, Mapping) else None
    return cur


def _short(value: Any, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"
