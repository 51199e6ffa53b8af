"""The contracts plugins implement: :class:`Task`, :class:`Method` and :class:`Teacher`.

Everything here is light: torch is imported only for type checking, so ``kdbench list`` and
``kdbench --help`` stay fast.

* A **Task** loads every domain of a data set into :class:`DomainData` (train/dev/test lists of
  :class:`Example`).
* A **Teacher** knows how to build and train one kind of teacher model ("single", "mix", ...), with
  the options of its ``Config``. The runner trains each distinct teacher (kind, options, data, seed)
  once, stores it under the results directory keyed by a content hash, and hands it to every method
  that asks for it (a :class:`TeacherRequest`). Every kind also gets an evaluation row,
  ``teacher:<kind>``, derived by the registry (:class:`TeacherRow`).
* A **Method** turns a :class:`FitContext` (data of all domains, a lazy teacher getter, the profile)
  into a trained model. Simple KD methods override :meth:`Method.loss`; multi-stage methods override
  :meth:`Method.fit`.
"""

from __future__ import annotations

import dataclasses
import hashlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from kdbench.errors import KDBenchError as KDBenchError  # re-exported: plugins raise kdbench.api.KDBenchError

if TYPE_CHECKING:
    from pathlib import Path

    import torch

    from kdbench.config import Profile
    from kdbench.device import Runtime
    from kdbench.modeling import KDModel, ModelOutput
    from kdbench.teachers import TeacherHandle


# --------------------------------------------------------------------------------------------- data
@dataclass(frozen=True)
class Example:
    """One labelled example. ``id`` is stable across machines and used in split hashes."""

    id: str
    text: str
    label: int
    text_pair: str | None = None


@dataclass(frozen=True)
class DomainData:
    """The train/dev/test splits of one domain."""

    domain: str
    train: tuple[Example, ...]
    dev: tuple[Example, ...]
    test: tuple[Example, ...]

    def split_hash(self) -> str:
        """sha256 over the ordered example ids of each split: identical data gives the same hash."""
        h = hashlib.sha256()
        for split in ("train", "dev", "test"):
            h.update(split.encode())
            for ex in getattr(self, split):
                h.update(b"\0" + ex.id.encode())
        return h.hexdigest()[:16]


class Task(ABC):
    """A multi-domain classification data set.

    Subclasses set the class attributes and implement :meth:`load`. Bump ``version`` whenever the
    data, the split or the metric changes: it is part of every cell's config hash.
    """

    name: ClassVar[str]
    description: ClassVar[str]
    version: ClassVar[str] = "1"
    domains: ClassVar[tuple[str, ...]]
    labels: ClassVar[tuple[str, ...]]
    #: the pinned revision of the upstream data the task downloads (e.g. a Hugging Face dataset commit);
    #: when set, the runner records it in every cell (``data_revision``, also part of the config hash)
    revision: ClassVar[str | None] = None

    def __init__(self, data_dir: Path | None = None, cache_dir: Path | None = None) -> None:
        self.data_dir = data_dir
        self.cache_dir = cache_dir

    @abstractmethod
    def load(self) -> dict[str, DomainData]:
        """Return every domain's full splits. Raise :class:`KDBenchError` when data is missing."""

    @property
    def num_labels(self) -> int:
        return len(self.labels)


# ---------------------------------------------------------------------------------------- configs
@dataclass(frozen=True)
class TeacherConfig:
    """Options of a teacher kind; subclass it (frozen dataclass) and set ``Teacher.Config``.

    The options that differ from their defaults are part of the trained teacher's key
    (:meth:`Teacher.key_options`), so a teacher trained with other options is never reused.
    """


@dataclass(frozen=True)
class TeacherRequest:
    """One teacher a method uses: its kind, the target domain it is for, and the kind's options.

    ``options`` maps fields of the kind's ``Config`` to values (unset fields keep their defaults).
    """

    kind: str
    domain: str
    options: Mapping[str, Any] = field(default_factory=dict)

    def __hash__(self) -> int:
        return hash((self.kind, self.domain, tuple(sorted(self.options.items()))))


@dataclass(frozen=True)
class MethodConfig:
    """Options of a method; subclass it (frozen dataclass) and set ``Method.Config``.

    Values come from the profile's ``methods.<name>`` table, then ``--set name.key=value``.
    """


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings of one training phase (see ``profiles.yaml``)."""

    epochs: int = 3
    lr: float = 2e-5
    warmup: float = 0.1
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    #: "linear": warmup over ``warmup`` of the steps, then linear decay to 0
    #: (``transformers.get_linear_schedule_with_warmup``); "constant": ``lr`` at every step, no
    #: warmup (official TinyBERT / Meta-KD stage 1: ``BertAdam(schedule='none')``)
    schedule: str = "linear"
    #: 0: dev-based checkpoint selection once per epoch; N > 0: every N optimiser steps and at the last
    #: step (official TinyBERT / Meta-KD ``--eval_step 50``)
    eval_every: int = 0

    def __post_init__(self) -> None:
        if self.schedule not in ("linear", "constant"):
            raise ValueError(f"schedule={self.schedule!r}: expected 'linear' or 'constant'")
        if self.eval_every < 0:
            raise ValueError(f"eval_every={self.eval_every} must be >= 0")

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)


# ---------------------------------------------------------------------------------------- context
ProgressFn = Callable[..., None]


def _no_progress(**_: Any) -> None:
    return None


def _run_default(name: str) -> Any:
    """A context field whose default is the run's (``kdbench.config.RunConfig``), written once there."""
    def default() -> Any:
        from kdbench.config import RunConfig

        return getattr(RunConfig, name)
    return field(default_factory=default)


class _RuntimeView:
    """``ctx.device``, ``ctx.precision`` and ``ctx.compile``: read from ``ctx.runtime``
    (:class:`kdbench.device.Runtime`), so plugins written against them keep working."""

    runtime: Runtime

    @property
    def device(self) -> torch.device:
        return self.runtime.device

    @property
    def precision(self) -> str:
        return self.runtime.precision

    @property
    def compile(self) -> bool:
        return self.runtime.compile


@dataclass
class FitContext(_RuntimeView):
    """Everything a method may use to train one cell. Built by the runner.

    ``domains`` holds every domain of the task, with the cell's fraction already applied to the
    target domain's train split (and to the others when ``fraction_all_domains`` is set).
    ``runtime`` says where models run (``ctx.device``, ``ctx.precision`` and ``ctx.compile`` read it).
    """

    task: Task
    target: str
    domains: Mapping[str, DomainData]
    seed: int
    profile: Profile
    runtime: Runtime
    get_teacher: Callable[[TeacherRequest], TeacherHandle]
    build_student: Callable[[], KDModel]
    tokenize: Callable[..., Any]
    progress: ProgressFn = _no_progress
    workdir: Path | None = None
    #: share trained teachers across cells and cache their outputs (off only to measure the saving)
    reuse: bool = _run_default("reuse")
    #: memory budget for a teacher's cached hidden states and attention scores (``--teacher-cache-mb``)
    teacher_cache_mb: float = _run_default("teacher_cache_mb")
    #: the domains the cell's cross-domain teachers may train on (``--teacher-domains``): all
    #: domains (None), or all but the target (``others``)
    teacher_pool: Sequence[str] | None = None

    @property
    def data(self) -> DomainData:
        """The target domain's data."""
        return self.domains[self.target]

    def teacher(self, kind: str = "single", domain: str | None = None,
                options: Mapping[str, Any] | None = None) -> TeacherHandle:
        """The trained, frozen teacher ``kind`` for ``domain`` (default: the target), built with
        ``options`` (fields of the kind's ``Config``; default: its defaults).

        The runner trains it once per distinct (kind, options, data, seed, profile) and shares it
        across cells.
        """
        return self.get_teacher(TeacherRequest(kind, domain or self.target, dict(options or {})))


@dataclass
class FitResult:
    """What :meth:`Method.fit` returns: the model to evaluate and the head to read logits from."""

    model: KDModel
    head: str = "main"
    losses: list[float] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------- plugins
#: a teacher kind's option dataclass (``Teacher.Config``)
TC = TypeVar("TC", bound="TeacherConfig")


class Teacher(ABC, Generic[TC]):
    """A kind of teacher: which domains it trains on, how it is built, and how it is trained.

    The runner keys a trained teacher by a hash of its kind, its options (:meth:`key_options`), the
    ids of its training data and the seed, so identical teachers are trained once and reused across
    cells and methods. Options are a frozen dataclass, ``Config`` (generic like :class:`Method`).

    The registry derives the kind's evaluation row (the trained teacher tested on the target
    domain) under the name ``row`` (default ``teacher:<name>``); its options are the kind's.
    """

    name: ClassVar[str]
    description: ClassVar[str]
    version: ClassVar[str] = "1"
    Config: ClassVar[type[Any]] = TeacherConfig
    #: the name of the kind's evaluation row (None: ``teacher:<name>``)
    row: ClassVar[str | None] = None

    def __init__(self, config: TC | None = None) -> None:
        self.config: TC = config if config is not None else self.Config()

    def key_options(self) -> dict[str, Any]:
        """The options that determine the trained teacher, part of its key: by default every option
        that differs from its default (so a kind without options keys as before it had any)."""
        default = self.Config()
        return {f.name: getattr(self.config, f.name) for f in dataclasses.fields(self.config)
                if getattr(self.config, f.name) != getattr(default, f.name)}

    def train_domains(self, target: str, all_domains: Sequence[str]) -> tuple[str, ...]:
        """Domains whose train data the teacher sees. Single-domain by default."""
        return (target,)

    def heads(self, train_domains: Sequence[str]) -> tuple[str, ...]:
        """Classification heads of the model. One shared head by default."""
        return ("main",)

    def head_for(self, target: str) -> str:
        """Which head gives the target domain's logits."""
        return "main"

    @abstractmethod
    def fit(self, ctx: TeacherContext) -> FitResult:
        """Build and train the teacher; return it with the best dev checkpoint loaded."""

    def build(self, ctx: TeacherContext) -> KDModel:
        """Build an untrained model of the right shape (used to load a stored checkpoint)."""
        from kdbench.modeling import load_model

        return load_model(ctx.profile.teacher, ctx.task.num_labels, heads=self.heads(ctx.train_domains),
                          profile=ctx.profile, role="teacher", vocab_size=ctx.vocab_size)


@dataclass
class TeacherContext(_RuntimeView):
    """Everything a :class:`Teacher` needs to train (``ctx.device`` etc. read ``runtime``)."""

    task: Task
    target: str
    train_domains: tuple[str, ...]
    domains: Mapping[str, DomainData]
    seed: int
    profile: Profile
    runtime: Runtime
    tokenize: Callable[..., Any]
    vocab_size: int | None = None
    progress: ProgressFn = _no_progress


#: a method's option dataclass (``Method.Config``)
C = TypeVar("C", bound="MethodConfig")


class Method(ABC, Generic[C]):
    """A distillation method (or a baseline row such as ``student`` and ``teacher``).

    Generic over its options: ``class KD(Method[KDConfig])`` with ``Config = KDConfig``, so that
    ``self.config`` is a ``KDConfig`` (no ``isinstance`` check needed).

    Set ``name``, ``description`` and ``teacher``: the teacher kind it needs (``"single"``,
    ``"mix"``, ``"mtl"``, ``"meta"`` or a custom registered kind), ``None`` (the default) for none.
    A method that needs several teachers (e.g. ``multiteacher``: the single teacher of every domain),
    or a teacher with options (``metakd``'s ablations), overrides :meth:`teacher_requests`.
    Override :meth:`loss` for a one-stage method trained by the shared loop, or :meth:`fit` for
    anything else.
    """

    name: ClassVar[str]
    description: ClassVar[str]
    version: ClassVar[str] = "1"
    teacher: str | None = None
    #: set when the loss reads the teacher's hidden states / attention scores
    needs_hidden: ClassVar[bool] = False
    Config: ClassVar[type[Any]] = MethodConfig

    def __init__(self, config: C | None = None) -> None:
        self.config: C = config if config is not None else self.Config()

    def teacher_requests(self, target: str, domains: Sequence[str]) -> list[TeacherRequest]:
        """The teachers :meth:`fit` will ask ``ctx.teacher`` for.

        Distributed executors train these first, each once, and ship them to the cell. A request
        not declared here still works: that teacher is then trained inside the cell. The default
        is ``teacher`` on the target domain with default options (none when ``teacher`` is
        ``None``); override it when a method uses several teachers or teacher options.
        """
        return [] if self.teacher is None else [TeacherRequest(self.teacher, target)]

    def loss(self, batch: Mapping[str, torch.Tensor], student: ModelOutput,
             teacher: ModelOutput | None) -> torch.Tensor:
        """Per-batch training loss for the shared loop (used by the default :meth:`fit`)."""
        raise NotImplementedError(f"method {self.name!r} must override loss() or fit()")

    def fit(self, ctx: FitContext) -> FitResult:
        """Train a student on the target domain with :meth:`loss`. Override for multi-stage methods."""
        from kdbench.trainer import distill

        return distill(ctx, self)


# ------------------------------------------------------------------------------- teacher rows
class TeacherRow(Method[Any]):
    """A teacher kind evaluated on the target domain: the trained teacher itself is the model.

    Not written per kind: the registry derives one row per registered teacher kind
    (:class:`DerivedTeacherRow`), named by ``Teacher.row`` and taking the kind's options, so
    ``teacher:meta[use_domain_corruption=false]`` evaluates that meta-teacher ablation.
    """

    name = "teacher-row"
    description = "A trained teacher evaluated on the target domain"

    def __init__(self, kind: type[Teacher], config: Any = None) -> None:
        self.kind = kind
        self.teacher = kind.name
        self.name = kind.row or f"teacher:{kind.name}"  # type: ignore[misc]  # one row per kind
        super().__init__(config if config is not None else kind.Config())

    def _options(self) -> dict[str, Any]:
        return self.kind(self.config).key_options()

    def teacher_requests(self, target: str, domains: Sequence[str]) -> list[TeacherRequest]:
        return [TeacherRequest(self.kind.name, target, self._options())]

    def fit(self, ctx: FitContext) -> FitResult:
        handle = ctx.teacher(self.kind.name, options=self._options())
        return FitResult(model=handle.model, head=handle.head)


@dataclass(frozen=True)
class DerivedTeacherRow:
    """What the registry holds for the row of teacher kind ``kind``: it reads like a method class
    (``name``, ``description``, ``teacher``, ``Config``, ...) and calling it builds the row."""

    kind: type[Teacher]
    version: str = "1"
    needs_hidden: bool = False

    @property
    def name(self) -> str:
        return self.kind.row or f"teacher:{self.kind.name}"

    @property
    def description(self) -> str:
        return f"{self.kind.description}; evaluated on the target domain"

    @property
    def teacher(self) -> str:
        return self.kind.name

    @property
    def Config(self) -> type[Any]:  # noqa: N802 - mirrors Method.Config
        return self.kind.Config

    def __call__(self, config: Any = None) -> TeacherRow:
        return TeacherRow(self.kind, config)
