"""The teacher store: trained teachers keyed by content, kept on disk and in a small LRU in memory.

A teacher is trained once per distinct key (its kind, options and version, the profile's teacher model and
training settings, the ids of the data it trains and selects on, the seed and the precision) and
shared by every cell and method that asks for it. The store is used the same way by the runner, the
Ray executor and the conformance kit:

* :meth:`TeacherStore.spec` keys the teacher of a :class:`~kdbench.api.TeacherRequest` (kind,
  target domain, the kind's options) as a :class:`TeacherSpec` (kind, context, key, head);
* :meth:`TeacherStore.get` returns it (from memory, from disk, or trained now) and records it in the
  cell's :class:`TeacherUsage`: what the cell used, how many teachers it trained and how long
  acquiring them took (training and loading, subtracted from the method's own train time);
* :meth:`TeacherStore.cell` opens that usage record for one cell; while it is open, the LRU never
  evicts a teacher the cell uses (``multiteacher`` on MNLI holds 5 at once).

It also holds the frozen :class:`TeacherHandle` every teacher call goes through and the two output
caches: the teacher's logits on a training set (on disk, :func:`teacher_logits`) and its hidden
states and attention scores (in memory, :class:`CachedTeacher`, within ``--teacher-cache-mb``).
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from kdbench import device as dev
from kdbench import results as res
from kdbench.api import TeacherContext, TeacherRequest
from kdbench.data import batches
from kdbench.errors import KDBenchError
from kdbench.modeling import ModelOutput, count_parameters
from kdbench.trainer import forward, predict

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping, Sequence
    from pathlib import Path

    from kdbench.api import DomainData, FitContext, Method, ProgressFn, Task, Teacher
    from kdbench.config import Profile
    from kdbench.data import Encoded
    from kdbench.device import Runtime
    from kdbench.modeling import KDModel
    from kdbench.registry import Registry

#: loaded teachers kept in memory beyond those the current cell uses
LRU_SIZE = 4


# ------------------------------------------------------------------------------------------ store
def requests_of(method: Method[Any], target: str, domains: Sequence[str]) -> list[TeacherRequest]:
    """``method.teacher_requests(target, domains)`` as :class:`~kdbench.api.TeacherRequest` s; a plugin
    written before teachers had options may still return ``(kind, domain)`` pairs."""
    return [r if isinstance(r, TeacherRequest) else TeacherRequest(*r)
            for r in method.teacher_requests(target, domains)]


def teacher_of(registry: Registry, request: TeacherRequest) -> Teacher[Any]:
    """The teacher kind of ``request``, configured with its options (an unknown option: one line)."""
    cls = registry.teachers.get(request.kind)
    fields = {f.name for f in dataclasses.fields(cls.Config)}
    unknown = sorted(set(request.options) - fields)
    if unknown:
        from kdbench.errors import did_you_mean

        raise KDBenchError(f"teacher {request.kind}: " + did_you_mean("option", unknown[0], sorted(fields)))
    try:
        return cls(cls.Config(**request.options))
    except (TypeError, ValueError) as exc:
        raise KDBenchError(f"teacher {request.kind}: {exc}") from None


@dataclass(frozen=True)
class TeacherSpec:
    """One teacher as a cell asks for it: its kind (with its options), the context it trains in, its
    key and head."""

    kind_name: str
    kind: Teacher[Any]
    context: TeacherContext
    key: str
    head: str
    request: TeacherRequest
    #: the kind's options that differ from their defaults (part of the key)
    options: dict[str, Any]

    @property
    def label(self) -> str:
        """The kind as a person reads it: ``meta`` or ``meta[use_domain_corruption=False]``."""
        opts = ",".join(f"{k}={v}" for k, v in sorted(self.options.items()))
        return f"{self.kind_name}[{opts}]" if opts else self.kind_name


@dataclass
class TeacherUsage:
    """What one cell used: its teachers (by key, as recorded in the cell's result), how many of them
    were trained for it, and the seconds spent training them and acquiring them (training + loading)."""

    used: dict[str, dict[str, Any]] = field(default_factory=dict)
    trained: int = 0
    trained_seconds: float = 0.0
    acquire_seconds: float = 0.0

    @property
    def records(self) -> list[dict[str, Any]]:
        return list(self.used.values())


class TeacherStore:
    """Trained teachers under ``root/<key>/`` (``model.safetensors`` + ``meta.json`` with its sha256)
    and the last :data:`LRU_SIZE` loaded ones in memory."""

    def __init__(self, root: Path, registry: Registry, profile: Profile, *, runtime: Runtime, reuse: bool,
                 teacher_domains: str, progress: ProgressFn,
                 message: Callable[[str], None] | None = None) -> None:
        #: where trained teachers live; a Ray worker points it at its own scratch or a shared path
        self.root = root
        self.registry, self.profile, self.runtime = registry, profile, runtime
        self.reuse, self.teacher_domains = reuse, teacher_domains
        self.progress = progress
        self.message = message or (lambda text: None)
        self.loaded: OrderedDict[str, TeacherHandle] = OrderedDict()
        self._pinned: set[str] = set()  # keys the open cell uses: never evicted
        self._usage: TeacherUsage | None = None

    # --------------------------------------------------------------------------------- keys
    def spec(self, request: TeacherRequest, task: Task, tokenize: Callable[..., Any], vocab_size: int,
             domains: Mapping[str, DomainData], seed: int, pool: list[str] | None = None) -> TeacherSpec:
        """The teacher of ``request`` (kind, target domain, options), trained on ``domains`` with ``seed``.

        ``pool``: the domains a cross-domain teacher may train on (default: all of ``domains``); a
        teacher whose target is not among its training domains is keyed as held out. The kind's
        options that differ from their defaults are part of the key (:meth:`Teacher.key_options`).
        """
        kind_name, domain = request.kind, request.domain
        kind = teacher_of(self.registry, request)
        options = kind.key_options()
        train_domains = kind.train_domains(domain, list(domains) if pool is None else pool)
        ctx = TeacherContext(task=task, target=domain, train_domains=train_domains, domains=domains, seed=seed,
                             profile=self.profile, runtime=self.runtime, tokenize=tokenize,
                             vocab_size=vocab_size, progress=self.progress)
        p = self.profile
        held_out = ({"teacher_domains": "others", "target": domain}
                    if self.teacher_domains == "others" and domain not in train_domains else {})
        key = res.config_hash({**held_out, **({"options": options} if options else {}),
            "kind": kind_name, "version": kind.version, "model": p.teacher, "train": dataclasses.asdict(p.teacher_train),
            "max_len": p.max_len, "batch_size": p.batch_size, "precision": self.runtime.precision, "seed": seed,
            "task": task.name, "task_version": task.version,
            "data": {d: domains[d].split_hash() + res.config_hash([e.id for e in domains[d].train])
                     for d in train_domains}})
        return TeacherSpec(kind_name, kind, ctx, key, kind.head_for(domain), request, options)

    # ------------------------------------------------------------------------------- cells
    @contextmanager
    def cell(self) -> Iterator[TeacherUsage]:
        """Record what one cell uses; its teachers stay loaded until the block ends."""
        usage = TeacherUsage()
        self._usage = usage
        try:
            yield usage
        finally:
            self._usage = None
            self._pinned.clear()
            self._evict()

    def get(self, spec: TeacherSpec) -> TeacherHandle:
        """The trained teacher of ``spec``: from memory, from disk, or trained now; recorded in the
        open cell's usage (see :meth:`cell`) with the time it took."""
        key, folder = spec.key, self.root / spec.key
        usage = self._usage
        t0 = time.perf_counter()
        meta = res.read_json(folder / "meta.json")
        if key in self.loaded and self.reuse:
            self.loaded.move_to_end(key)
            handle = self.loaded[key]
        else:
            handle = None
            with dev.preserved_rng():  # the cell's random state must not depend on where the teacher came from
                if meta is not None and (folder / "model.safetensors").exists() and self.reuse:
                    handle = self._load(spec, folder, meta)
                if handle is None:
                    handle, meta, seconds = self._train(spec, folder)
                    if usage is not None:
                        usage.trained += 1
                        usage.trained_seconds += seconds
            self.loaded[key] = handle
        if usage is not None:
            self._pinned.add(key)
            usage.acquire_seconds += time.perf_counter() - t0
        self._evict()
        assert meta is not None and handle is not None
        if usage is not None:
            options = spec.options
            usage.used[key] = {"key": key, "kind": spec.kind_name, **({"options": options} if options else {}),
                               "domains": list(spec.context.train_domains),
                               "train_seconds": meta["train_seconds"], "params": meta["params"],
                               "dev_accuracy": meta.get("dev_accuracy"), "head": spec.head}
        return TeacherHandle(handle.model, spec.head, key)

    def handle(self, key: str) -> TeacherHandle | None:
        """The loaded teacher of ``key``, if it is in memory."""
        return self.loaded.get(key)

    def holds(self, model: Any) -> bool:
        """Whether ``model`` is one of the loaded teachers (a teacher row's result is no student)."""
        return any(h.model is model for h in self.loaded.values())

    def _evict(self) -> None:
        """Keep :data:`LRU_SIZE` teachers besides the pinned ones; the oldest unpinned go first."""
        spare = [k for k in self.loaded if k not in self._pinned]
        for k in spare[:max(0, len(self.loaded) - max(LRU_SIZE, len(self._pinned)))]:
            del self.loaded[k]

    # ------------------------------------------------------------------------- disk / training
    def _load(self, spec: TeacherSpec, folder: Path, meta: Mapping[str, Any]) -> TeacherHandle | None:
        """The stored teacher, or None (it is then retrained) when its checkpoint is unreadable or its
        sha256 differs from the one recorded in ``meta.json`` when it was written."""
        from safetensors.torch import load

        try:
            data = (folder / "model.safetensors").read_bytes()
        except OSError as exc:
            self.message(f"teacher {folder.name}: unreadable checkpoint ({type(exc).__name__}); retraining")
            return None
        if meta.get("sha256") != res.sha256_bytes(data):
            why = "has no recorded sha256" if not meta.get("sha256") else "does not match its recorded sha256"
            self.message(f"warning: teacher {folder.name}: checkpoint {why}; retraining")
            return None
        try:
            dev.seed_everything(spec.context.seed)
            model = spec.kind.build(spec.context)
            model.load_state_dict(load(data))
        except Exception as exc:  # noqa: BLE001 - a corrupt checkpoint is retrained, not fatal
            self.message(f"teacher {folder.name}: unreadable checkpoint ({type(exc).__name__}); retraining")
            return None
        return TeacherHandle(model.to(self.runtime.device))

    def _train(self, spec: TeacherSpec, folder: Path) -> tuple[TeacherHandle, dict[str, Any], float]:
        from safetensors.torch import save

        ctx = spec.context
        self.message(f"training teacher {spec.label} on {'+'.join(ctx.train_domains)} "
                     f"(seed {ctx.seed}) [{spec.key}]")
        dev.seed_everything(ctx.seed)
        t0 = time.perf_counter()
        fit = spec.kind.fit(ctx)
        model = fit.model
        seconds = time.perf_counter() - t0
        state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
        # Checkpoint first, metadata last: meta.json's presence marks a complete teacher.
        weights = save(state)
        res.atomic_write_bytes(folder / "model.safetensors", weights)
        meta = {"key": spec.key, "sha256": res.sha256_bytes(weights), "kind": spec.kind_name,
                **({"options": spec.options} if spec.options else {}),
                "domains": list(ctx.train_domains), "seed": ctx.seed,
                "train_seconds": round(seconds, 3), "params": count_parameters(model),
                "dev_accuracy": fit.info.get("best_dev"),
                "profile": self.profile.name, "model": self.profile.teacher, "versions": res.versions()}
        res.atomic_write_json(folder / "meta.json", meta)
        return TeacherHandle(model.to(self.runtime.device)), meta, seconds


# ---------------------------------------------------------------------------------- handles, caches
@dataclass
class TeacherHandle:
    """A trained teacher, frozen: always in eval mode and without gradients.

    Leaving the teacher in train mode (dropout on while producing targets) is a known defect of a
    public Meta-KD re-implementation; routing every teacher call through here rules it out.
    """

    model: KDModel
    head: str = "main"
    key: str = ""  # content hash of the trained teacher ("" = not cacheable)

    def __post_init__(self) -> None:
        self.model.eval()
        self.model.requires_grad_(False)

    @torch.no_grad()
    def __call__(self, batch: Mapping[str, torch.Tensor], output_hidden: bool = False,
                 head: str | None = None) -> ModelOutput:
        return forward(self.model, batch, head or self.head, output_hidden)


def layer_outputs_bytes(model: KDModel, enc: Encoded, bytes_per_value: int = 4) -> int:
    """Estimated size of a teacher's hidden states and attention scores on every example of ``enc``."""
    layers, hidden = model.num_layers, model.hidden_size
    heads = int(model.config.num_attention_heads)
    return sum(((layers + 1) * n * hidden + layers * heads * n * n) * bytes_per_value
               for n in map(len, enc.input_ids))


class CachedTeacher(TeacherHandle):
    """A :class:`TeacherHandle` whose layer outputs on one training set are computed once.

    Intermediate-layer losses (TinyBERT's stage 1, PKD) read the teacher's hidden states and
    attention scores in every step of every epoch. A frozen eval-mode teacher returns the same values
    each time, so they are computed in one pass and kept in memory, each example trimmed to its own
    length and zero-padded to the batch's width when served: the losses mask padding, so the padded
    values never count. This happens only when :func:`layer_outputs_bytes` fits the budget
    (``--teacher-cache-mb``); otherwise, and for anything but this set's layer outputs, every call
    runs the teacher. Served values equal recomputed ones up to float noise (tested to 1e-5).
    """

    def __init__(self, handle: TeacherHandle, enc: Encoded, *, runtime: Runtime, batch_size: int,
                 budget_mb: float) -> None:
        super().__init__(handle.model, handle.head, handle.key)
        self.enc, self.runtime, self.batch_size = enc, runtime, batch_size
        self.bytes = layer_outputs_bytes(handle.model, enc)
        self.enabled = self.bytes <= budget_mb * 2**20
        self._rows: list[tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor]] | None = None

    def __call__(self, batch: Mapping[str, torch.Tensor], output_hidden: bool = False,
                 head: str | None = None) -> ModelOutput:
        if not (output_hidden and self.enabled and (head or self.head) == self.head):
            return super().__call__(batch, output_hidden, head)
        rows = self._fill()
        width = batch["input_ids"].shape[1]
        picked = [rows[i] for i in batch["index"].tolist()]

        hidden = torch.stack([torch.nn.functional.pad(r[2], (0, 0, 0, width - r[2].shape[1])) for r in picked])
        scores = torch.stack([torch.nn.functional.pad(r[3], (0, width - r[3].shape[-1], 0, width - r[3].shape[-2]))
                              for r in picked])
        pooled = [r[1] for r in picked]
        device = self.runtime.device
        return ModelOutput(
            logits=torch.stack([r[0] for r in picked]).to(device),
            pooled=None if pooled[0] is None else torch.stack(pooled).to(device),
            hidden_states=tuple(hidden.to(device).unbind(1)),
            attention_scores=list(scores.to(device).unbind(1)))

    @torch.no_grad()
    def _fill(self) -> list[tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor]]:
        if self._rows is not None:
            return self._rows
        rows: list[Any] = [None] * len(self.enc)
        for batch in batches(self.enc, self.batch_size):
            b = dev.to_device(batch, self.runtime.device)
            with dev.autocast(self.runtime.device, self.runtime.precision):
                out = super().__call__(b, output_hidden=True)
            assert out.hidden_states is not None and out.attention_scores is not None
            lengths = batch["attention_mask"].sum(1).tolist()  # padding is on the right
            for j, (i, n) in enumerate(zip(batch["index"].tolist(), lengths, strict=True)):
                rows[i] = (out.logits[j].cpu(), None if out.pooled is None else out.pooled[j].cpu(),
                           torch.stack([h[j, :n] for h in out.hidden_states]).cpu(),
                           torch.stack([a[j, :, :n, :n] for a in out.attention_scores]).cpu())
        self._rows = rows
        return rows


def cached_teacher(ctx: FitContext, teacher: TeacherHandle, enc: Encoded) -> TeacherHandle:
    """``teacher`` with its layer outputs on ``enc`` cached in memory when they fit the budget."""
    if not ctx.reuse:
        return teacher
    return CachedTeacher(teacher, enc, runtime=ctx.runtime, batch_size=ctx.profile.eval_batch_size,
                         budget_mb=ctx.teacher_cache_mb)


def teacher_logits(ctx: FitContext, teacher: TeacherHandle, enc: Encoded) -> torch.Tensor:
    """Logits (N, C) of a frozen teacher on ``enc``, computed once and memory-mapped from disk.

    The file name hashes the teacher's content key, its head, the precision and the token ids, so a
    changed teacher or tokenization can never be served stale logits. Stored as ``.npy`` (no pickle).
    """
    import io

    import numpy as np

    def compute() -> torch.Tensor:
        return predict(teacher.model, enc, teacher.head, ctx.device, ctx.precision, ctx.profile.eval_batch_size)

    if not ctx.reuse or not teacher.key or ctx.workdir is None:
        return compute()
    key = res.config_hash([teacher.key, teacher.head, ctx.precision, enc.input_ids, enc.token_type_ids])
    path = ctx.workdir / "cache" / "teacher-logits" / f"{key}.npy"
    # Integrity: the sha256 of the .npy bytes is written beside it (after it) and checked on every
    # read; a file that does not match (tampered, or half-replaced by hand) is recomputed with a warning.
    digest_path = path.with_suffix(".sha256")
    try:
        data = path.read_bytes()
    except OSError:
        data = None  # missing: compute it
    if data is not None:
        try:
            recorded = digest_path.read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError):
            recorded = ""
        if recorded == res.sha256_bytes(data):
            try:
                cached = np.load(io.BytesIO(data), allow_pickle=False)
                if cached.shape == (len(enc.labels), cached.shape[-1]) and np.isfinite(cached).all():
                    return torch.from_numpy(np.array(cached))
            except (OSError, ValueError):
                pass
        print(f"kdbench: warning: teacher-logits cache {path.name} does not match its recorded sha256 "
              "(or is unreadable); recomputing it", file=sys.stderr)
    logits = compute()
    buf = io.BytesIO()
    np.save(buf, logits.numpy(), allow_pickle=False)
    res.atomic_write_bytes(path, buf.getvalue())
    res.atomic_write_bytes(digest_path, (res.sha256_bytes(buf.getvalue()) + "\n").encode())
    return logits


