"""Every registered method passes the conformance kit (:mod:`kdbench.testing`).

* ``test_method_conforms``: one case per method registered at collection time (built-ins and any
  installed third-party plugin), on the ``tiny`` profile with two Amazon domains (books, dvd) at
  train fraction 0.1 of every domain. All cases share ONE results directory for their first run, so
  each teacher (single per domain, mix, mtl, meta) is trained once for the whole file, exactly as
  a grid shares it. The determinism rerun of each case goes to its own fresh directory: students are
  retrained there from the same teacher checkpoints (copied in, loaded from disk), teacher rows
  retrain their teacher (see ``kdbench.testing``). Needs the real data (skipped without it, a
  failure under ``CI``).
* The kit itself is tested on its in-memory toy task: it passes a plain method and catches a
  non-deterministic one, one whose loss does not decrease and one that misreports its teacher.
"""

from __future__ import annotations

import random

import pytest
import torch

from kdbench import hookimpl, registry
from kdbench.api import FitContext, FitResult, Method
from kdbench.testing import ToyTask, check_method
from kdbench.trainer import cross_entropy, forward, train_student

METHODS = registry.load().methods.names()
AMAZON = {"task": "amazon", "domains": ("books", "dvd"), "fraction": 0.1}


@pytest.fixture(scope="session")
def shared_results(tmp_path_factory):
    """First-run results of every case: teachers are trained once and shared, as in a real grid."""
    return tmp_path_factory.mktemp("conformance")


@pytest.mark.realdata
@pytest.mark.parametrize("method", METHODS)
def test_method_conforms(method, shared_results, data_dir, cache_dir, tmp_path):
    report = check_method(method, results_dir=shared_results, data_dir=data_dir, cache_dir=cache_dir,
                          rerun_dir=tmp_path / "rerun", **AMAZON)
    print(report.summary())
    report.assert_ok()
    assert {c.name for c in report.checks} == {"result", "deterministic", "loss-decreases", "teacher-requests"}


def test_every_builtin_method_is_collected():
    builtin = {"student", "teacher", "kd", "pkd", "multiteacher"}
    assert builtin <= set(METHODS)


# ------------------------------------------------------------------------------- the kit itself
def test_toy_task_is_deterministic_balanced_and_two_domain():
    a, b = ToyTask().load(), ToyTask().load()
    assert set(a) == {"garden", "kitchen"}
    for d in a:
        assert a[d] == b[d] and a[d].split_hash() == b[d].split_hash()
        for split, n in ToyTask.SIZES.items():
            examples = getattr(a[d], split)
            assert len(examples) == n and sum(ex.label for ex in examples) == n // 2
        ids = [ex.id for s in ("train", "dev", "test") for ex in getattr(a[d], s)]
        assert len(set(ids)) == len(ids)


class _Flaky(Method):
    """Reseeds from OS entropy after building the student: dropout differs run to run."""

    name = "conformance-flaky"
    description = "non-deterministic on purpose"

    def fit(self, ctx: FitContext) -> FitResult:
        student = ctx.build_student()
        torch.manual_seed(random.SystemRandom().randrange(2**31))
        return train_student(ctx, student, lambda b: cross_entropy(b, forward(student, b).logits),
                             ctx.profile.student_train, stage=self.name)


class _Stuck(Method):
    """A loss that grows every step."""

    name = "conformance-stuck"
    description = "loss increases on purpose"

    def fit(self, ctx: FitContext) -> FitResult:
        student = ctx.build_student()
        step = [0]

        def loss_fn(b):
            step[0] += 1
            return cross_entropy(b, forward(student, b).logits) * 0.0 + float(step[0])

        return train_student(ctx, student, loss_fn, ctx.profile.student_train, stage=self.name)


class _Liar(Method):
    """Declares a single teacher but never asks for one."""

    name = "conformance-liar"
    description = "misreports its teacher on purpose"
    teacher = "single"

    def loss(self, batch, student, teacher):
        return cross_entropy(batch, student.logits)

    def fit(self, ctx: FitContext) -> FitResult:
        student = ctx.build_student()
        return train_student(ctx, student, lambda b: self.loss(b, forward(student, b), None),
                             ctx.profile.student_train, stage=self.name)


class _Greedy(Method):
    """Also asks for another domain's teacher without declaring it in teacher_requests()."""

    name = "conformance-greedy"
    description = "uses an undeclared teacher on purpose"
    teacher = "single"

    def fit(self, ctx: FitContext) -> FitResult:
        own = ctx.teacher()
        other = ctx.teacher("single", next(d for d in ctx.domains if d != ctx.target))
        student = ctx.build_student()

        def loss_fn(b):
            with torch.no_grad():
                target = (own(b).logits + other(b).logits).softmax(-1)
            return torch.nn.functional.cross_entropy(forward(student, b).logits, target)

        return train_student(ctx, student, loss_fn, ctx.profile.student_train, stage=self.name)


class _Plugin:
    @hookimpl
    def kdbench_register_methods(self):
        return [_Flaky, _Stuck, _Liar, _Greedy]


@pytest.fixture(scope="module")
def toy_results(tmp_path_factory):
    return tmp_path_factory.mktemp("toy-conformance")


def run_toy(method, toy_results, cache_dir, **kw):
    return check_method(method, results_dir=toy_results, cache_dir=cache_dir, extra_plugins=[_Plugin()], **kw)


def by_name(report):
    return {(c.name, c.cell.split("__")[1]): c for c in report.checks}


def test_kit_passes_the_student_on_the_toy_task(toy_results, cache_dir, tmp_path):
    report = run_toy("student", toy_results, cache_dir, rerun_dir=tmp_path / "rerun")
    report.assert_ok()
    assert len(report.checks) == 7  # result, loss, teacher-requests for 2 domains; determinism for the first
    assert all(r["metrics"]["test_accuracy"] > 75 for r in report.results.values())  # it is learnable


def test_kit_catches_nondeterminism(toy_results, cache_dir):
    checks = by_name(run_toy("conformance-flaky", toy_results, cache_dir))
    assert checks[("result", "garden")].ok and checks[("loss-decreases", "garden")].ok
    assert not checks[("deterministic", "garden")].ok
    assert "differs" in checks[("deterministic", "garden")].detail


def test_kit_catches_a_loss_that_does_not_decrease(toy_results, cache_dir):
    report = run_toy("conformance-stuck", toy_results, cache_dir, determinism=False)
    checks = by_name(report)
    assert checks[("result", "garden")].ok
    assert not checks[("loss-decreases", "garden")].ok and not checks[("loss-decreases", "kitchen")].ok
    with pytest.raises(AssertionError, match="loss-decreases"):
        report.assert_ok()


def test_kit_catches_a_misdeclared_teacher(toy_results, cache_dir):
    checks = by_name(run_toy("conformance-liar", toy_results, cache_dir, domains=("garden",), determinism=False))
    assert not checks[("result", "garden")].ok
    assert "declares teacher 'single' but used none" in checks[("result", "garden")].detail


def test_kit_catches_an_undeclared_teacher(toy_results, cache_dir):
    checks = by_name(run_toy("conformance-greedy", toy_results, cache_dir, domains=("garden",), determinism=False))
    assert checks[("result", "garden")].ok
    assert not checks[("teacher-requests", "garden")].ok
    assert "override Method.teacher_requests" in checks[("teacher-requests", "garden")].detail
