"""Run a grid of cells: skip finished ones, train each teacher once, write one JSON per cell.

The runner knows nothing about particular methods or tasks: it looks them up in the registry,
builds a :class:`~kdbench.api.FitContext`, calls ``method.fit`` and records what comes back.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
import traceback
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kdbench import device as dev
from kdbench import results as res
from kdbench.api import (
    DomainData,
    Example,
    FitContext,
    FitResult,
    KDBenchError,
    Method,
    Task,
    TeacherRequest,
)
from kdbench.config import method_config, resolve_profile
from kdbench.data import Encoded, apply_fraction, load_tokenizer
from kdbench.grid import Cell, Variant, expand, resolve_rows
from kdbench.lock import run_lock
from kdbench.modeling import KDModel, count_parameters, load_model
from kdbench.results import CellResult
from kdbench.teachers import TeacherHandle, TeacherSpec, TeacherStore, TeacherUsage, requests_of, teacher_of
from kdbench.tokcache import encode_cached
from kdbench.trainer import accuracy, predict

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

    from kdbench.config import Profile, RunConfig
    from kdbench.registry import Registry


@dataclass
class RunSummary:
    total: int = 0
    skipped: int = 0
    ok: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    teachers_trained: int = 0
    #: earlier ok results whose configuration changed, moved to cells/superseded/: (key, path, why)
    superseded: list[tuple[str, str, str]] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0


#: a data fraction must leave at least this many training examples of each label in the target domain
MIN_TRAIN_PER_LABEL = 8


def _check_writable(folder: Path, make: Path, what: str, flag: str) -> None:
    """Create ``make`` (``folder`` or a folder inside it) and write a probe file into ``folder``."""
    try:
        make.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise KDBenchError(f"{what} {folder} is not writable ({exc.strerror or type(exc).__name__}); "
                           f"pass a writable {flag}") from None


def check_cache_dir(cache: Path) -> None:
    """The cache directory (downloads, tokenizers) must be a directory kdbench can create and write."""
    if cache.exists() and not cache.is_dir():
        raise KDBenchError(f"cache directory {cache} is not a directory; pass a directory with --cache-dir")
    _check_writable(cache, cache, "cache directory", "--cache-dir")


def check_writable(results_dir: Path) -> None:
    _check_writable(results_dir, res.cells_dir(results_dir), "results directory", "--results-dir")


@dataclass
class TaskState:
    """A task's data and tokenizer, loaded once per run."""

    task: Task
    domains: dict[str, DomainData]
    tokenizer: Any
    encoded: dict[tuple[str, ...], Encoded] = field(default_factory=dict)
    cache_dir: Path | None = None  # token ids cached across runs there (kdbench/tokcache.py)

    def tokenize(self, examples: tuple[Example, ...], max_len: int) -> Encoded:
        key = tuple(ex.id for ex in examples)
        if key not in self.encoded:
            self.encoded[key] = encode_cached(self.tokenizer, examples, max_len, self.cache_dir)
        return self.encoded[key]


class Runner:
    def __init__(self, config: RunConfig, registry: Registry) -> None:
        self.config = config
        self.registry = registry
        #: every event of the run goes out through these hooks (the terminal reporter is one plugin)
        self.hook = registry.pm.hook
        self.profile: Profile = resolve_profile(config.profile, config.profiles_file, config.teacher,
                                                config.student)
        #: the grid's rows (methods and variants) by name; a variant's options go on top of the
        #: profile's and --set's options of its method
        self.rows: dict[str, Variant] = {v.name: v for v in resolve_rows(config, registry)}
        self.cells = expand(config, registry, list(self.rows.values()))
        self.methods: dict[str, Method] = {}
        for name, row in self.rows.items():
            cls = registry.methods.get(row.method)
            self.methods[name] = cls(method_config(cls.Config, row.method, self.profile.methods.get(row.method, {}),
                                                   config.options.get(row.method, {}), row.options_dict()))
        for name in config.options:
            if name not in {r.method for r in self.rows.values()}:
                raise KDBenchError(f"--set {name}.…: method {name!r} is not in --methods")
        #: device, resolved precision and --compile, for every model of the run
        self.runtime = dev.Runtime.resolve(config.device, config.precision, config.compile)
        self.tasks: dict[str, TaskState] = {}
        #: trained teachers (``teachers.root``: a Ray worker points it at its scratch or a shared path)
        self.teachers = TeacherStore(config.results_dir / "teachers", registry, self.profile,
                                     runtime=self.runtime, reuse=config.reuse,
                                     teacher_domains=config.teacher_domains, progress=self.progress,
                                     message=lambda text: self.hook.kdbench_message(text=text))
        self.summary = RunSummary()
        #: the command line that started the run (for exported students' model cards); set by the CLI
        self.command: str | None = None
        self.current_cell: Cell | None = None  # the cell being computed here (for the per-step hooks)
        self._student: tuple[Cell, Any] | None = None  # (cell, what save_student needs) until recorded

    # ------------------------------------------------------------------------------------- config
    def cell_config(self, cell: Cell) -> dict[str, Any]:
        """Everything that determines a cell's result; its hash decides whether to recompute.

        Entries added for variants, shared teacher seeds and held-out-domain teachers appear only
        when they change something, so the cells of a plain run keep their config hash.
        """
        method = self.methods[cell.method]
        task_cls = self.registry.tasks.get(cell.task)
        out = {"cell": dataclasses.asdict(cell), "method_version": method.version,
               "method_options": dataclasses.asdict(method.config),
               "task_version": task_cls.version,
               # only when pinned, so that the hashes of cells of tasks without one do not change
               **({"data_revision": task_cls.revision} if task_cls.revision else {}),
               # other methods' options are not this cell's business: only its own (above) count
               "profile": {k: v for k, v in self.profile.to_dict().items() if k != "methods"},
               "precision": self.runtime.precision, "fraction_all_domains": self.config.fraction_all_domains,
               "schema": res.SCHEMA_VERSION}
        row = self.rows[cell.method]
        if row.is_variant:
            out["variant"] = {"method": row.method, "options": row.options_dict()}
        if self.teacher_seed(cell) != cell.seed:
            out["teacher_seed"] = self.teacher_seed(cell)
        if self.held_out_teachers(cell):
            out["teacher_domains"] = "others"
        return out

    # ------------------------------------------------------------------------- teacher settings
    def teacher_seed(self, cell: Cell) -> int:
        """Student seed s uses the teachers of seed s mod K (``--teacher-seeds K``; default K = seeds)."""
        k = self.config.teacher_seeds
        return cell.seed if k is None else cell.seed % k

    def teacher_pool(self, cell: Cell) -> list[str]:
        """Domains the cell's cross-domain teachers may train on: all, or all but the target."""
        domains = list(self.task_state(cell.task).domains)
        if self.config.teacher_domains == "others":
            return [d for d in domains if d != cell.domain]
        return domains

    def held_out_teachers(self, cell: Cell) -> bool:
        """Whether this cell's teachers are trained without the target (``--teacher-domains others``)."""
        return self.config.teacher_domains == "others" and self.cross_domain_teachers(cell)

    def cross_domain_teachers(self, cell: Cell) -> bool:
        """Whether ``--teacher-domains`` matters to this cell: not for single-domain teachers, so
        ``kd`` or ``student`` cells are the same in both settings."""
        method = self.methods[cell.method]
        every = list(self.task_state(cell.task).domains)
        pool = [d for d in every if d != cell.domain]
        reqs = requests_of(method, cell.domain, every)
        if reqs != requests_of(method, cell.domain, pool):
            return True
        kinds = [teacher_of(self.registry, r) for r in reqs]
        return any(k.train_domains(cell.domain, every) != k.train_domains(cell.domain, pool) for k in kinds)

    def teacher_data(self, cell: Cell) -> dict[str, DomainData]:
        """Every domain's splits as the cell's teachers see them: the fraction applied with the
        teacher's seed, so that cells sharing a teacher seed share the teacher."""
        seed = self.teacher_seed(cell)
        if seed == cell.seed:
            return self.cell_domains(cell)
        return apply_fraction(self.task_state(cell.task).domains, cell.domain, cell.fraction, seed,
                              self.config.fraction_all_domains)

    def cell_path(self, cell: Cell) -> Path:
        return res.cells_dir(self.config.results_dir) / f"{self.cell_key(cell)}.json"

    def cell_key(self, cell: Cell) -> str:
        """The cell's file name: held-out-domain teachers get their own file, so both settings coexist."""
        return cell.key + ("__teachers-others" if self.held_out_teachers(cell) else "")

    def is_done(self, cell: Cell) -> bool:
        old = res.read_json(self.cell_path(cell))
        return (old is not None and old.get("status") == "ok"
                and old.get("config_hash") == res.config_hash(self.cell_config(cell)))

    def supersede(self, cell: Cell, new_status: str) -> None:
        """Before a cell file is replaced: an ok result of another configuration is moved to
        ``cells/superseded/<key>.<config_hash>.json``, never lost (a failed one is just replaced)."""
        path = self.cell_path(cell)
        old = res.read_json(path)
        if old is None or old.get("status") != "ok":
            return
        old_hash = str(old.get("config_hash"))
        if old_hash == res.config_hash(self.cell_config(cell)) and new_status == "ok":
            return  # the same configuration recomputed (e.g. --no-reuse): nothing to keep apart
        dest = res.cells_dir(self.config.results_dir) / "superseded" / f"{self.cell_key(cell)}.{old_hash}.json"
        res.atomic_write_bytes(dest, path.read_bytes())
        why = "its recomputation failed" if new_status != "ok" else "its configuration changed"
        self.summary.superseded.append((self.cell_key(cell), str(dest), why))

    # ---------------------------------------------------------------------------------------- run
    def run(self) -> RunSummary:
        # Fail fast on bad input (missing data, unwritable results) before anything is written.
        if self.config.executor == "ray":
            from kdbench import ray_executor

            ray_executor.check_available()
        self.check_inputs()
        check_writable(self.config.results_dir)
        self.check_result_paths()
        with run_lock(self.config.results_dir):
            return self._run()

    def check_inputs(self) -> None:
        """Every check that needs more than the configuration, before anything is written: the
        thread settings, the models, the cache directory, each task's data and the fractions."""
        from kdbench.modeling import check_model_available

        dev.check_thread_env()
        methods = list(self.methods.values())  # one per row (variants and sweeps resolved)
        check_model_available(self.profile.student, "student")
        if any(m.teacher is not None for m in methods):
            check_model_available(self.profile.teacher, "teacher")
        check_cache_dir(self.config.cache_path())
        for task in dict.fromkeys(c.task for c in self.cells):
            self.task_state(task)
        self.check_fractions()

    def check_result_paths(self) -> None:
        """Refuse a results directory where a file this run writes is something else (a directory, a
        FIFO): the run would fail at its first write, after other files were already written."""
        paths = [self.config.results_dir / "run.json", *(self.cell_path(c) for c in self.cells)]
        for path in paths:
            if (path.exists() or path.is_symlink()) and not path.is_file():
                raise KDBenchError(f"{path} is not a regular file; move it away, then rerun")

    def check_fractions(self) -> None:
        """Refuse a fraction that would leave fewer than :data:`MIN_TRAIN_PER_LABEL` examples of a
        label (e.g. ``--fractions 1e-9`` would train on one example per label)."""
        from collections import Counter

        seen: set[tuple[str, str, float]] = set()
        for cell in self.cells:
            if cell.fraction >= 1.0 or (cell.task, cell.domain, cell.fraction) in seen:
                continue
            seen.add((cell.task, cell.domain, cell.fraction))
            domains = self.task_state(cell.task).domains
            names = list(domains) if self.config.fraction_all_domains else [cell.domain]
            for name in names:
                for label, n in sorted(Counter(ex.label for ex in domains[name].train).items()):
                    keep = max(1, round(cell.fraction * n))
                    if keep < min(MIN_TRAIN_PER_LABEL, n):
                        raise KDBenchError(
                            f"--fractions {cell.fraction:g} leaves {keep} training example(s) of label {label} "
                            f"in {cell.task}/{name} (of {n}); at least {MIN_TRAIN_PER_LABEL} are needed, so "
                            f"use a fraction of at least {MIN_TRAIN_PER_LABEL / n:.2g}")

    def _run(self) -> RunSummary:
        todo = [c for c in self.cells if not self.is_done(c)]
        for cell in todo:
            if self.cell_path(cell).exists() and res.read_json(self.cell_path(cell)) is None:
                self.hook.kdbench_message(text=f"{self.cell_path(cell)}: unreadable result file; recomputing the cell")
        self.summary.total, self.summary.skipped = len(self.cells), len(self.cells) - len(todo)
        res.atomic_write_json(self.config.results_dir / "run.json", {
            "config": json.loads(json.dumps(dataclasses.asdict(self.config), default=str)),
            "profile": self.profile.to_dict(), "cells": [self.cell_key(c) for c in self.cells],
            "rows": list(self.rows),
            "versions": res.versions(), "device": str(self.runtime.device)})
        dev.setup(self.runtime.device)
        probe = dev.precision_probe(self.config.precision, self.runtime.device) if todo else None
        if probe and "hint" in probe:
            self.hook.kdbench_message(text=f"precision: {probe['hint']}")
        self.hook.kdbench_grid_start(cells=self.cells, todo=len(todo))
        try:
            if self.config.executor == "ray":
                from kdbench import ray_executor

                ray_executor.run_grid(self, todo)
            else:
                for cell in todo:
                    self.run_cell(cell)
            if self.config.save_students == "best":
                from kdbench import export_model

                export_model.keep_best(self.config.results_dir, self.cells)
        finally:
            self.hook.kdbench_grid_finish()
        return self.summary

    def progress(self, **info: Any) -> None:
        """The trainer's progress, to the per-step hooks."""
        if "dev_accuracy" in info:
            self.hook.kdbench_dev_eval(cell=self.current_cell, stage=info.get("stage", ""), step=info["step"],
                                     epoch=info["epoch"], dev_accuracy=info["dev_accuracy"])
        else:
            self.hook.kdbench_train_step(cell=self.current_cell, stage=info.get("stage", ""), step=info["step"],
                                       total=info["total"], epoch=info["epoch"], loss=info["loss"],
                                       lr=info.get("lr", float("nan")))

    def run_cell(self, cell: Cell) -> None:
        """Compute one cell here and record it (the local executor)."""
        self.hook.kdbench_cell_start(cell=cell)
        start = time.perf_counter()
        self.record(cell, self.cell_result(cell), time.perf_counter() - start)

    def record(self, cell: Cell, result: CellResult, seconds: float) -> None:
        """Write a cell's result atomically (whoever computed it), then tell the hooks."""
        if result.ok:
            self.summary.ok += 1
        else:
            self.summary.failed.append((self.cell_key(cell), result.error or "failed"))
        if self._student is not None and self._student[0] == cell:
            self.save_student(cell, result)
        self.supersede(cell, result.status)
        res.atomic_write_json(self.cell_path(cell), result.to_json())
        self.hook.kdbench_cell_finish(cell=cell, result=result, seconds=seconds)

    def save_student(self, cell: Cell, result: CellResult) -> None:
        """``--save-students``: the cell's student as a Hugging Face folder (before its cell file, so
        that a finished cell never lacks its student)."""
        from kdbench import export_model

        assert self._student is not None
        model, head, tokenizer, check, labels = self._student[1]
        self._student = None
        if not result.ok:
            return
        try:
            card = export_model.card_text(result, self.profile.to_dict(), self.command)
            export_model.save_student(export_model.student_dir(self.config.results_dir, cell.key), model, head,
                                      tokenizer, check, labels, card, self.profile.max_len)
        except KDBenchError as exc:  # e.g. a student with a non-standard head: the cell itself is fine
            self.hook.kdbench_message(text=f"{cell.key}: student not saved: {exc}")

    def failed_result(self, cell: Cell, error: str, tb: str = "") -> CellResult:
        return CellResult(**self.result_header(cell), status="failed", error=error, traceback=tb)

    def result_header(self, cell: Cell) -> dict[str, Any]:
        config = self.cell_config(cell)
        row = self.rows[cell.method]
        return {"config": config, "config_hash": res.config_hash(config),
                "method": cell.method, "task": cell.task, "domain": cell.domain,
                "variant": {"method": row.method, "options": row.options_dict()},
                "teacher_seeds": self.config.teacher_seeds or self.config.seeds,
                "teacher_seed": self.teacher_seed(cell),
                # None: the setting does not matter to this cell (its teachers are single-domain)
                "teacher_domains": self.config.teacher_domains if self.cross_domain_teachers(cell) else None,
                "fraction": cell.fraction, "seed": cell.seed, "device": str(self.runtime.device),
                "precision": self.runtime.precision, "compile": self.runtime.compile,
                "teacher_cache_mb": self.config.teacher_cache_mb, "versions": res.versions(),
                # --precision auto on CPU: the measured fp32/bf16 GEMM rates behind the choice
                "precision_probe": dev.precision_probe(self.config.precision, self.runtime.device),
                "data_revision": self.registry.tasks.get(cell.task).revision,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}

    def cell_result(self, cell: Cell) -> CellResult:
        """Train and evaluate one cell; a failure becomes a ``failed`` result, not an exception."""
        self.current_cell = cell
        try:
            return CellResult(**self.result_header(cell), status="ok", **self.evaluate_cell(cell))
        except (KDBenchError, KeyboardInterrupt):
            raise
        except Exception as exc:  # noqa: BLE001 - a failing cell is recorded; the grid continues
            dev.release_memory(exc)
            return self.failed_result(cell, f"{type(exc).__name__}: {exc}".splitlines()[0],
                                      traceback.format_exc())
        finally:
            self.current_cell = None

    def task_state(self, name: str) -> TaskState:
        if name not in self.tasks:
            task = self.registry.tasks.get(name)(data_dir=self.config.data_dir,
                                                 cache_dir=self.config.cache_path())
            try:
                domains = task.load()
            except (KDBenchError, KeyboardInterrupt):
                raise
            except Exception as exc:  # noqa: BLE001 - a plugin's bug is reported in one line, exit 2
                msg = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
                raise KDBenchError(f"task {name!r} ({type(task).__module__}) failed to load its data: {msg}") \
                    from exc
            self.tasks[name] = TaskState(task, domains, load_tokenizer(self.profile, domains,
                                                                       self.config.cache_path()),
                                         cache_dir=self.config.cache_path())
        return self.tasks[name]

    def cell_domains(self, cell: Cell) -> dict[str, DomainData]:
        """Every domain's splits as the cell sees them (its fraction applied)."""
        return apply_fraction(self.task_state(cell.task).domains, cell.domain, cell.fraction, cell.seed,
                              self.config.fraction_all_domains)

    def teacher_requests(self, cell: Cell) -> list[TeacherRequest]:
        return requests_of(self.methods[cell.method], cell.domain, self.teacher_pool(cell))

    def teacher_spec(self, cell: Cell, request: TeacherRequest,
                     data: Mapping[str, DomainData] | None = None) -> TeacherSpec:
        """The teacher of ``request`` as ``cell`` gets it: trained on the cell's teacher data
        (``data``, default :meth:`teacher_data`) with its teacher seed, from its pool of domains."""
        state = self.task_state(cell.task)
        return self.teachers.spec(request, state.task,
                                  lambda ex: state.tokenize(tuple(ex), self.profile.max_len),
                                  len(state.tokenizer), self.teacher_data(cell) if data is None else data,
                                  self.teacher_seed(cell), self.teacher_pool(cell))

    def teacher_specs(self, cell: Cell) -> list[TeacherSpec]:
        """The teachers ``cell`` declares (``Method.teacher_requests``), each once, in order."""
        data = self.teacher_data(cell)
        specs = [self.teacher_spec(cell, request, data) for request in self.teacher_requests(cell)]
        return list({s.key: s for s in specs}.values())

    def evaluate_cell(self, cell: Cell) -> dict[str, Any]:
        state = self.task_state(cell.task)
        method = self.methods[cell.method]
        domains = self.cell_domains(cell)
        teacher_data = self.teacher_data(cell)
        specs: dict[TeacherRequest, TeacherSpec] = {}

        def get_handle(request: TeacherRequest) -> TeacherHandle:
            if request not in specs:
                specs[request] = self.teacher_spec(cell, request, teacher_data)
            return self.teachers.get(specs[request])

        def tokenize(examples: tuple[Example, ...]) -> Encoded:
            return state.tokenize(tuple(examples), self.profile.max_len)

        ctx = FitContext(task=state.task, target=cell.domain, domains=domains, seed=cell.seed,
                         profile=self.profile, runtime=self.runtime,
                         get_teacher=get_handle, build_student=lambda: self.build_student(state, cell.seed),
                         tokenize=tokenize, progress=self.progress,
                         workdir=self.config.results_dir, reuse=self.config.reuse,
                         teacher_cache_mb=self.config.teacher_cache_mb, teacher_pool=self.teacher_pool(cell))
        with self.teachers.cell() as usage:
            dev.seed_everything(cell.seed)
            t0 = time.perf_counter()
            fit = method.fit(ctx)
            # the method's own time: without acquiring its teachers (training or loading them)
            fit_seconds = time.perf_counter() - t0 - usage.acquire_seconds
            self.summary.teachers_trained += usage.trained
            return self.evaluate_fit(cell, state, domains, fit, fit_seconds, usage)

    def evaluate_fit(self, cell: Cell, state: TaskState, domains: Mapping[str, DomainData], fit: FitResult,
                     fit_seconds: float, usage: TeacherUsage) -> dict[str, Any]:
        """Test and dev accuracy, predictions and timings of a trained cell."""

        def tokenize(examples: tuple[Example, ...]) -> Encoded:
            return state.tokenize(tuple(examples), self.profile.max_len)

        test = tokenize(domains[cell.domain].test)
        dev_enc = tokenize(domains[cell.domain].dev)
        t1 = time.perf_counter()
        test_logits = predict(fit.model, test, fit.head, self.runtime.device, self.runtime.precision,
                              self.profile.eval_batch_size)
        infer_seconds = time.perf_counter() - t1
        dev_acc = accuracy(predict(fit.model, dev_enc, fit.head, self.runtime.device, self.runtime.precision,
                                   self.profile.eval_batch_size), dev_enc.labels)
        preds = test_logits.argmax(-1).tolist()
        if self.config.save_students != "none" and not self.teachers.holds(fit.model):  # a teacher row is no student
            self._student = (cell, (fit.model, fit.head, state.tokenizer, test, state.task.labels))
        teacher_infer = None
        used = usage.used
        if used:
            first = next(iter(used.values()))
            handle = self.teachers.handle(first["key"])
            if handle is not None and handle.model is not fit.model:
                t2 = time.perf_counter()
                predict(handle.model, test, first.get("head", handle.head), self.runtime.device,
                        self.runtime.precision, self.profile.eval_batch_size)
                teacher_infer = time.perf_counter() - t2
        return {
            "metrics": {"test_accuracy": accuracy(test_logits, test.labels), "dev_accuracy": dev_acc},
            "predictions": {"ids": test.ids, "pred": preds, "gold": test.labels},
            "split_hash": state.domains[cell.domain].split_hash(),
            "train_hash": res.config_hash([ex.id for ex in domains[cell.domain].train]),
            "n_train": len(domains[cell.domain].train),
            "timing": {"student_train_seconds": round(fit_seconds, 3),
                       "teacher_train_seconds": round(sum(t["train_seconds"] for t in used.values()), 3),
                       "teacher_trained_here_seconds": round(usage.trained_seconds, 3),
                       "student_inference_seconds": round(infer_seconds, 4),
                       "teacher_inference_seconds": None if teacher_infer is None else round(teacher_infer, 4)},
            "params": {"model": count_parameters(fit.model),
                       "teacher": max((t["params"] for t in used.values()), default=None)},
            "teachers": list(used.values()),
            "train": {"losses": [round(x, 6) for x in fit.losses], **fit.info},
        }

    # ------------------------------------------------------------------------------------ models
    def build_student(self, state: TaskState, seed: int) -> KDModel:
        # The classifier head's init must not depend on what ran before in this process.
        dev.seed_everything(seed)
        return load_model(self.profile.student, state.task.num_labels, profile=self.profile, role="student",
                          vocab_size=len(state.tokenizer)).to(self.runtime.device)


def run(config: RunConfig, registry: Registry, command: str | None = None) -> RunSummary:
    runner = Runner(config, registry)
    runner.command = command
    registry.pm.hook.kdbench_configure.call_historic(kwargs={"config": config})
    return runner.run()

