"""Typed configuration: profiles (models + training settings) and the run configuration.

Precedence, in one place: **command line > config file (``--config run.yaml``) > defaults**.
Each default is written once: ``kdbench run``'s options are generated from :class:`RunConfig`'s fields
(:func:`option`: help, flag, choices), a method option's default lives in its ``Config`` dataclass.
Profiles come from the packaged ``profiles.yaml``, overridable with ``--profiles FILE``.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kdbench.api import KDBenchError, MethodConfig, TrainConfig

if TYPE_CHECKING:
    from collections.abc import Callable

PROFILES_FILE = Path(__file__).with_name("profiles.yaml")
PRECISIONS = ("auto", "fp32", "bf16")


@dataclass(frozen=True)
class Profile:
    """Models and training settings shared by every cell of a run."""

    name: str
    teacher: str
    student: str
    max_len: int = 128
    batch_size: int = 32
    eval_batch_size: int = 64
    teacher_train: TrainConfig = field(default_factory=TrainConfig)
    student_train: TrainConfig = field(default_factory=TrainConfig)
    methods: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _read_yaml(path: Path) -> Any:
    import yaml

    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise KDBenchError(f"config file not found: {path}") from None
    except UnicodeDecodeError as exc:
        raise KDBenchError(f"cannot read {path}: not UTF-8 text (byte {exc.start}); "
                           "pass a YAML file") from None
    except (OSError, yaml.YAMLError) as exc:
        raise KDBenchError(f"cannot read {path}: {' '.join(str(exc).split())}") from None


def load_profiles(extra: Path | None = None) -> dict[str, dict[str, Any]]:
    """Built-in profiles, with the profiles of ``extra`` replacing those of the same name.

    Every profile of ``extra`` is validated (:func:`validate_profile`), so a broken file is refused
    up front even when the run picks another of its profiles.
    """
    profiles: dict[str, dict[str, Any]] = dict(_read_yaml(PROFILES_FILE))
    if extra is not None:
        data = _read_yaml(extra)
        if not isinstance(data, dict):
            raise KDBenchError(f"{extra}: expected a mapping of profile names to settings")
        for name, raw in data.items():
            if not isinstance(name, str) or not name:
                raise KDBenchError(f"{extra}: profile name {name!r} is not a non-empty string")
            validate_profile(name, raw, where=f"{extra}: ")
        profiles.update(data)
    return profiles


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_real(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


#: profile key -> (check, what it must be); a key not listed here is refused as unknown
_PROFILE_CHECKS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "teacher": (lambda v: isinstance(v, str) and bool(v.strip()), "a model (hub id, path or tiny:L…-H…-A…)"),
    "student": (lambda v: isinstance(v, str) and bool(v.strip()), "a model (hub id, path or tiny:L…-H…-A…)"),
    "max_len": (lambda v: _is_int(v) and 8 <= v <= 100_000, "an integer from 8 to 100000"),
    "batch_size": (lambda v: _is_int(v) and 1 <= v <= 1_000_000, "a positive integer"),
    "eval_batch_size": (lambda v: _is_int(v) and 1 <= v <= 1_000_000, "a positive integer"),
    "methods": (lambda v: isinstance(v, dict) and all(isinstance(k, str) and isinstance(o, dict)
                                                      for k, o in v.items()),
                "a mapping of method names to option mappings"),
}
#: TrainConfig key -> (check, what it must be)
_TRAIN_CHECKS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "epochs": (lambda v: _is_int(v) and 1 <= v <= 100_000, "a positive integer"),
    "lr": (lambda v: _is_real(v) and 0 < v < 1e3, "a positive number"),
    "warmup": (lambda v: _is_real(v) and 0 <= v < 1, "a fraction of the steps in [0, 1)"),
    "weight_decay": (lambda v: _is_real(v) and v >= 0, "a number >= 0"),
    "max_grad_norm": (lambda v: _is_real(v) and v > 0, "a positive number"),
}


def validate_profile(name: str, raw: Any, where: str = "") -> None:
    """Types and ranges of every profile setting; one-line :class:`KDBenchError` on the first bad one."""
    from kdbench.errors import did_you_mean

    head = f"{where}profile {name!r}"
    if not isinstance(raw, dict):
        raise KDBenchError(f"{head}: expected a mapping of settings, got {type(raw).__name__}")
    for key in ("teacher", "student"):
        if key not in raw:
            raise KDBenchError(f"{head}: missing {key!r}")
    train_keys = {f.name for f in dataclasses.fields(TrainConfig)}
    for key, val in raw.items():
        if key in ("teacher_train", "student_train"):
            if not isinstance(val, dict):
                raise KDBenchError(f"{head}: {key} must be a mapping of {', '.join(sorted(train_keys))}")
            for tkey, tval in val.items():
                if tkey not in train_keys:
                    raise KDBenchError(f"{head}: {key}: " + did_you_mean("setting", str(tkey), sorted(train_keys)))
                check, what = _TRAIN_CHECKS.get(tkey, (lambda v: True, ""))
                if not check(tval):
                    raise KDBenchError(f"{head}: {key}.{tkey} = {_short(tval)} must be {what}")
            continue
        if key not in _PROFILE_CHECKS:
            known = sorted([*_PROFILE_CHECKS, "teacher_train", "student_train"])
            raise KDBenchError(f"{head}: " + did_you_mean("setting", str(key), known))
        check, what = _PROFILE_CHECKS[key]
        if not check(val):
            raise KDBenchError(f"{head}: {key} = {_short(val)} must be {what}")


def _short(value: Any, width: int = 60) -> str:
    """``repr`` of a user value, on one line and cut to ``width`` characters."""
    text = " ".join(repr(value).split())
    return text if len(text) <= width else text[: width - 1] + "…"


def resolve_profile(name: str, extra: Path | None = None, teacher: str | None = None,
                    student: str | None = None) -> Profile:
    from kdbench.errors import did_you_mean

    profiles = load_profiles(extra)
    if name not in profiles:
        raise KDBenchError(did_you_mean("profile", name, [str(p) for p in profiles]))
    validate_profile(name, profiles[name])
    raw = dict(profiles[name])
    try:
        for key in ("teacher_train", "student_train"):
            raw[key] = TrainConfig(**raw.get(key, {}))
        prof = Profile(name=name, **raw)
    except TypeError as exc:
        raise KDBenchError(f"profile {name!r}: {exc}") from None
    return dataclasses.replace(prof, teacher=teacher or prof.teacher, student=student or prof.student)


# ------------------------------------------------------------------------------------ parsing
def parse_list(value: str | list[str] | tuple[str, ...], what: str) -> tuple[str, ...]:
    if not isinstance(value, (str, list, tuple)) or not all(isinstance(v, str) for v in
                                                             ([] if isinstance(value, str) else value)):
        raise KDBenchError(f"--{what}: {_short(value)} is not a list of names; give comma-separated names")
    items = [v.strip() for v in (value.split(",") if isinstance(value, str) else value)]
    items = [v for v in items if v]
    if not items:
        raise KDBenchError(f"--{what}: empty list; give at least one name, comma-separated")
    if len(set(items)) != len(items):
        raise KDBenchError(f"--{what}: duplicate entries in {','.join(items)}")
    return tuple(items)


def split_top(text: str) -> list[str]:
    """Split on commas outside ``[...]``: ``"kd,kd[temperature=4,alpha=0.5]"`` → two items."""
    out, depth, cur = [], 0, ""
    for ch in text:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
            if depth < 0:
                raise KDBenchError(f"--methods {text!r}: ']' without '['")
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    if depth:
        raise KDBenchError(f"--methods {text!r}: '[' without ']'")
    return [*out, cur]


def parse_methods(value: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Method rows: names, ``METHOD[KEY=VALUE,...]`` variants and named variants (commas inside
    ``[...]`` do not split)."""
    items = split_top(value) if isinstance(value, str) else [str(v) for v in value]
    return parse_list([v.strip() for v in items], "methods")


def parse_fractions(value: str | float | list[Any] | tuple[Any, ...]) -> tuple[float, ...]:
    if _is_real(value):
        value = [value]
    if not isinstance(value, (str, list, tuple)) or any(isinstance(v, bool) or not isinstance(v, (str, int, float))
                                                         for v in ([] if isinstance(value, str) else value)):
        raise KDBenchError(f"--fractions: {_short(value)} is not a list of numbers; use values in (0, 1], "
                           "e.g. 0.1,1.0")
    raw = value.split(",") if isinstance(value, str) else list(value)
    out: list[float] = []
    for item in raw:
        text = str(item).strip()
        try:
            f = float(text)
        except ValueError:
            raise KDBenchError(f"--fractions: {_short(text)} is not a number; use values in (0, 1], e.g. 0.1,1.0") \
                from None
        if math.isnan(f) or not 0.0 < f <= 1.0:
            raise KDBenchError(f"--fractions: {_short(text)} is outside (0, 1]; use values such as 0.1,0.5,1.0")
        out.append(f)
    if not out:
        raise KDBenchError("--fractions: empty list; use values in (0, 1], e.g. 0.1,1.0")
    if len(set(out)) != len(out):
        raise KDBenchError("--fractions: duplicate values")
    return tuple(out)


def parse_seeds(value: int | str, flag: str = "--seeds") -> int:
    if not (_is_int(value) or isinstance(value, str)):
        raise KDBenchError(f"{flag}: {_short(value)} is not an integer; {flag} N uses seeds 0..N-1")
    try:
        n = int(str(value).strip())
    except ValueError:
        raise KDBenchError(f"{flag}: {_short(value)} is not an integer; {flag} N uses seeds 0..N-1") from None
    if n < 1:
        raise KDBenchError(f"{flag}: {n} < 1; {flag} N uses seeds 0..N-1, so N must be at least 1")
    return n


EXECUTORS = ("local", "ray")
SAVE_STUDENTS = ("none", "best", "all")
TRACKERS = ("tensorboard", "mlflow")


def _flag(key: str) -> str:
    return "--" + key.replace("_", "-")


def _number(value: Any, key: str, kind: type, minimum: float) -> Any:
    flag = _flag(key)
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise KDBenchError(f"{flag}: {_short(value)} is not a number")
    try:
        out = kind(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError, OverflowError):
        raise KDBenchError(f"{flag}: {_short(value)} is not {'an integer' if kind is int else 'a number'}") \
            from None
    if kind is int and isinstance(value, float) and value != out:
        raise KDBenchError(f"{flag}: {_short(value)} is not an integer")
    if not out >= minimum:  # also refuses NaN
        raise KDBenchError(f"{flag}: {_short(value)} must be at least {minimum:g}")
    if not math.isfinite(out):
        raise KDBenchError(f"{flag}: {_short(value)} must be finite")
    return out


def parse_assignments(items: list[str] | tuple[str, ...]) -> dict[str, dict[str, str]]:
    """``["kd.alpha=0.7", "pkd.variant=last"]`` → ``{"kd": {"alpha": "0.7"}, ...}``."""
    out: dict[str, dict[str, str]] = {}
    for item in items:
        if not isinstance(item, str):
            raise KDBenchError(f"--set {_short(item)}: expected METHOD.KEY=VALUE, e.g. kd.alpha=0.7")
        key, sep, val = item.partition("=")
        method, dot, opt = key.partition(".")
        if not sep or not dot or not method or not opt:
            raise KDBenchError(f"--set {_short(item)}: expected METHOD.KEY=VALUE, e.g. kd.alpha=0.7")
        out.setdefault(method.strip(), {})[opt.strip()] = val.strip()
    return out


def parse_sweeps(items: list[str] | tuple[str, ...] | dict[str, Any]) -> tuple[tuple[str, str, tuple[str, ...]], ...]:
    """``["kd.temperature=1,2,4", "kd.alpha=0.5,0.9"]`` → ``(("kd", "temperature", ("1", "2", "4")), ...)``.

    A config file may also give a mapping ``{kd: {temperature: [1, 2, 4]}}``.
    """
    if isinstance(items, dict):
        flat = []
        for method, opts in items.items():
            if not isinstance(opts, dict):
                raise KDBenchError(f"sweep: {method}: expected a mapping of option names to value lists")
            for key, vals in opts.items():
                vals = vals if isinstance(vals, (list, tuple)) else [vals]
                flat.append(f"{method}.{key}=" + ",".join(str(v) for v in vals))
        items = flat
    if not isinstance(items, (str, list, tuple)):
        raise KDBenchError(f"--sweep: {_short(items)} is not a list of METHOD.KEY=V1,V2,... items")
    out: list[tuple[str, str, tuple[str, ...]]] = []
    for item in ([items] if isinstance(items, str) else items):
        key, sep, val = str(item).partition("=")
        method, dot, opt = key.partition(".")
        values = tuple(v.strip() for v in val.split(","))
        if not sep or not dot or not method.strip() or not opt.strip() or not all(values):
            raise KDBenchError(f"--sweep {item!r}: expected METHOD.KEY=V1,V2,..., e.g. kd.temperature=1,2,4")
        if len(set(values)) != len(values):
            raise KDBenchError(f"--sweep {item!r}: duplicate values")
        if any((m, k) == (method.strip(), opt.strip()) for m, k, _ in out):
            raise KDBenchError(f"--sweep {method.strip()}.{opt.strip()} given twice")
        out.append((method.strip(), opt.strip(), values))
    return tuple(out)


def parse_variants(value: Any) -> dict[str, dict[str, Any]]:
    """Named variants from a config file: ``{kd-T4: {method: kd, temperature: 4}}``."""
    if not isinstance(value, dict):
        raise KDBenchError("variants: expected a mapping NAME: {method: METHOD, OPTION: VALUE, ...}")
    out: dict[str, dict[str, Any]] = {}
    for name, spec in value.items():
        if not isinstance(spec, dict) or not isinstance(spec.get("method"), str):
            raise KDBenchError(f"variants: {name}: expected a mapping with 'method' and its options")
        if any(ch in str(name) for ch in ",[]/\\ "):
            raise KDBenchError(f"variants: {name!r}: a variant name may not contain ',', '[', ']', '/' or spaces")
        out[str(name)] = dict(spec)
    return out


TEACHER_DOMAINS = ("all", "others")


def option_text(value: Any) -> str:
    """Canonical text of an option value in a variant's name: ``4`` not ``4.0``, ``false``, exact floats."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        short = f"{value:g}"
        return short if float(short) == value else repr(value)
    return str(value)


def coerce_option(cls: type[MethodConfig], method: str, key: str, value: Any, where: str) -> Any:
    """``value`` converted to the type of option ``key`` of ``cls`` (one-line error otherwise)."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    if key not in fields:
        from kdbench.errors import did_you_mean

        raise KDBenchError(f"{where}: method {method}: " + did_you_mean("option", key, list(fields)))
    f = fields[key]
    default = f.default if f.default is not dataclasses.MISSING else None
    out = _coerce(value, default, where)
    if isinstance(default, float) and isinstance(out, int) and not isinstance(out, bool):
        out = float(out)
    if default is not None and not isinstance(out, type(default)):
        raise KDBenchError(f"{where}: {value!r} is not a valid {type(default).__name__}")
    return out


def _coerce(value: Any, default: Any, where: str) -> Any:
    """Convert a value from the command line or a config file to the type of the option's default."""
    if default is None:
        return value
    if isinstance(value, str) and not isinstance(default, str):
        try:
            if isinstance(default, bool):
                if value.lower() in ("1", "true", "yes", "on"):
                    return True
                if value.lower() in ("0", "false", "no", "off"):
                    return False
                raise ValueError(value)
            if isinstance(default, int):
                return int(value)
            if isinstance(default, float):
                return float(value)
        except ValueError:
            raise KDBenchError(f"{where}: {_short(value)} is not a valid {type(default).__name__}") from None
        return value
    ok = (isinstance(value, bool) if isinstance(default, bool)
          else _is_int(value) if isinstance(default, int)
          else (_is_int(value) or isinstance(value, float)) if isinstance(default, float)
          else isinstance(value, str) if isinstance(default, str) else True)
    if not ok:
        raise KDBenchError(f"{where}: {_short(value)} is not a valid {type(default).__name__}")
    return float(value) if isinstance(default, float) else value


def method_config(cls: type[MethodConfig], method: str, *layers: dict[str, Any]) -> MethodConfig:
    """Build a method's config from option layers (profile, then ``--set``), checking every key."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for layer in layers:
        for key, val in layer.items():
            if key not in fields:
                from kdbench.errors import did_you_mean

                raise KDBenchError(f"method {method}: " + did_you_mean("option", key, list(fields)))
            f = fields[key]
            default = f.default if f.default is not dataclasses.MISSING else None
            values[key] = _coerce(val, default, f"--set {method}.{key}")
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise KDBenchError(f"method {method}: {exc}") from None


# ---------------------------------------------------------------------------------- run config
#: where downloads and tokenizers go without --cache-dir or $KDBENCH_CACHE_DIR
CACHE_HOME = "~/.cache/kdbench"


def option(default: Any = dataclasses.MISSING, *, help: str, flag: str | None = None,
           metavar: str | None = None, action: str | None = None, none: str | None = None,
           choices: tuple[str, ...] | None = None, cli: bool = True,
           default_factory: Any = dataclasses.MISSING) -> Any:
    """A :class:`RunConfig` field together with its ``kdbench run`` option (lm-eval style).

    ``help`` says what the option does, never its default: :func:`kdbench.cli.option_help` appends the field's
    default (or ``none``, what ``None`` means), so each default is written once, here.
    ``flag`` (default ``--<name-with-dashes>``), ``metavar`` and ``action`` (``store_true`` /
    ``store_false`` switches, ``append`` for repeatable options) go to argparse; ``cli=False`` keeps a
    field to the config file. ``choices``: the only values accepted (shown as the metavar, checked by
    :func:`validate_option`). Values are parsed in :meth:`RunConfig.from_sources`, by
    :data:`VALIDATORS`, the field's ``choices`` or its default's type, one line on a bad one.
    """
    meta = {"help": help, "flag": flag, "metavar": metavar, "action": action, "none": none,
            "choices": choices, "cli": cli}
    if default_factory is not dataclasses.MISSING:
        return field(default_factory=default_factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class RunConfig:
    """Everything ``kdbench run`` needs; every field is also an option of ``kdbench run`` (see
    :func:`option`). ``seeds`` is a count: seeds 0..seeds-1 run."""

    methods: tuple[str, ...] = option(
        ("student", "kd", "teacher"),
        help="comma-separated rows: methods, variants METHOD[KEY=VALUE,...], named variants of --config, "
        "or metakd-ablation")
    tasks: tuple[str, ...] = option(("amazon",), help="comma-separated task names")
    domains: tuple[str, ...] | None = option(None, help="comma-separated domains", none="every domain of each task")
    fractions: tuple[float, ...] = option((1.0,), help="fractions of the target train split in (0, 1]")
    seeds: int = option(1, help="number of seeds N: runs seeds 0..N-1")
    profile: str = option("cpu", help="model profile: paper, cpu, tiny or one of --profiles")
    profiles_file: Path | None = option(None, flag="--profiles", help="YAML file of extra or replacement profiles")
    teacher: str | None = option(None, help="override the profile's teacher (HF hub id or tiny:L4-H64-A4)")
    student: str | None = option(None, help="override the profile's student")
    results_dir: Path = option(Path("results/latest"), help="where cells and teachers go")
    data_dir: Path | None = option(None, help="local data root", none="$KDBENCH_DATA_DIR, else download")
    cache_dir: Path | None = option(None, help="downloads and tokenizers",
                                    none=f"$KDBENCH_CACHE_DIR, else {CACHE_HOME}")
    device: str = option("auto", help="auto (cuda if available), cpu or cuda[:N]")
    precision: str = option("auto", choices=PRECISIONS, help="auto: bf16 autocast on cuda, fp32 on cpu")
    fraction_all_domains: bool = option(
        False, action="store_true",
        help="apply the fraction to every domain, not only the target (cross-domain teachers)")
    options: dict[str, dict[str, Any]] = option(
        default_factory=dict, flag="--set", action="append", metavar="METHOD.KEY=VALUE",
        help="method option, e.g. --set kd.alpha=0.7 (repeatable)")
    strict_plugins: bool = option(False, action="store_true", help="fail if any plugin fails to load")
    #: share trained teachers across cells and cache teacher logits; off only to measure the saving
    reuse: bool = option(True, flag="--no-reuse", action="store_false",
                         help="retrain teachers in every cell and cache nothing (to measure what reuse saves)")
    #: no change to results, so not part of the cell hash
    compile: bool = option(False, action="store_true",
                           help="torch.compile the models being trained (worth it on GPU for long runs)")
    #: a teacher's hidden states and attention scores on a cell's train set are kept in memory when
    #: their estimated size fits this budget (MiB), else recomputed in every step
    teacher_cache_mb: float = option(
        2048.0, help="memory budget (MiB) for caching a teacher's hidden states and attention scores within "
        "a cell; 0 turns it off")
    #: see kdbench.ray_executor
    executor: str = option("local", choices=EXECUTORS,
                           help="local: in this process; ray: teachers and cells as Ray tasks")
    ray_address: str | None = option(None, help="Ray cluster to join: auto, or ray://HOST:PORT",
                                     none="start one here")
    ray_num_cpus: float = option(1.0, help="CPUs per Ray task")
    ray_num_gpus: float | None = option(None, help="GPUs per Ray task", none="1 when the cluster has GPUs, else 0")
    ray_max_retries: int = option(2, help="retries of a Ray task whose worker died")
    ray_shared_dir: Path | None = option(
        None, help="path every Ray node mounts: teachers go there, not through the object store")
    #: see kdbench.export_model
    save_students: str = option(
        "none", choices=SAVE_STUDENTS, help="keep trained students as Hugging Face folders with a model card "
        "in RESULTS/students/: all, or best (each method, task, domain and fraction: the seed with the best "
        "dev accuracy)")
    #: fed from the hooks (kdbench.tracking)
    log: tuple[str, ...] = option((), help="experiment trackers, comma-separated: tensorboard, mlflow "
                                  "(optional extras)")
    log_dir: Path | None = option(None, help="TensorBoard event files", none="RESULTS/tensorboard")
    mlflow_tracking_uri: str | None = option(None, help="MLflow tracking server or store",
                                             none="the file store RESULTS/mlruns")
    variants: dict[str, dict[str, Any]] = option(
        default_factory=dict, cli=False,
        help="named variants usable in methods: {name: {method: m, option: value, ...}}")
    #: ``(method, option, values)``
    sweep: tuple[tuple[str, str, tuple[str, ...]], ...] = option(
        (), action="append", metavar="METHOD.KEY=V1,V2,...",
        help="a variant row per value (repeatable: the product per method), e.g. --sweep kd.temperature=1,2,4")
    teacher_seeds: int | None = option(None, help="K: student seed s uses the teachers of seed s mod K",
                                       none="--seeds, one teacher per seed")
    teacher_domains: str = option(
        "all", choices=TEACHER_DOMAINS, help="others: cross-domain teachers (mix, mtl, meta, multiteacher's) "
        "train on every domain but the target")

    @classmethod
    def from_sources(cls, cli: dict[str, Any], config_file: Path | None = None) -> RunConfig:
        """Merge defaults < config file < command line (``None`` on the CLI means "not given").

        Every value, from either source, goes through its key's validator (:data:`VALIDATORS`, or
        one inferred from the field's default) before anything runs. Method options merge per key:
        ``--set kd.alpha=…`` overrides the file's ``kd.alpha`` and keeps its other options.
        """
        merged: dict[str, Any] = {}
        known = {f.name for f in dataclasses.fields(cls)}
        if config_file is not None:
            data = _read_yaml(config_file) or {}
            if not isinstance(data, dict):
                raise KDBenchError(f"{config_file}: expected a mapping of run options")
            for k, v in data.items():
                if not isinstance(k, str):
                    raise KDBenchError(f"{config_file}: option name {_short(k)} is not a string")
                merged[k.replace("-", "_")] = v
            unknown = sorted(set(merged) - known)
            if unknown:
                from kdbench.errors import did_you_mean

                raise KDBenchError(f"{config_file}: " + did_you_mean("option", unknown[0], sorted(known)))
            # Every value of the file is checked, also those the command line overrides.
            file_defaults = {f.name: f.default for f in dataclasses.fields(cls)}
            for k, v in merged.items():
                validate_option(k, v, file_defaults[k])
            if "options" in merged:
                merged["options"] = _options(merged["options"], "options")
        for k, v in cli.items():
            if v is None:
                continue
            if k == "options" and "options" in merged:  # per key, not the whole mapping
                file_opts = merged["options"]
                for method, opts in _options(v, "--set").items():
                    file_opts[method] = {**file_opts.get(method, {}), **opts}
                continue
            merged[k] = v
        unknown = sorted(set(merged) - known)
        if unknown:
            from kdbench.errors import did_you_mean

            raise KDBenchError("run config: " + did_you_mean("option", unknown[0], sorted(known)))
        if "data_dir" not in merged and os.environ.get("KDBENCH_DATA_DIR"):
            merged["data_dir"] = os.environ["KDBENCH_DATA_DIR"]
        defaults = {f.name: f.default for f in dataclasses.fields(cls)}
        out = {key: validate_option(key, val, defaults[key]) for key, val in merged.items()}
        given = {**defaults, **out}
        ray_options = sorted(k for k in out if k.startswith("ray_") and out[k] is not None)
        if ray_options and given["executor"] != "ray":
            flag = _flag(ray_options[0])
            raise KDBenchError(f"{flag} only applies with --executor ray; add --executor ray or drop {flag}")
        if given["save_students"] != "none" and given["executor"] == "ray":
            raise KDBenchError("--save-students works with --executor local only (under ray the students "
                               "stay on the workers); run the cells to keep locally")
        for key, tracker in (("log_dir", "tensorboard"), ("mlflow_tracking_uri", "mlflow")):
            if out.get(key) is not None and tracker not in given["log"]:
                flag = "--" + key.replace("_", "-")
                raise KDBenchError(f"{flag} only applies with --log {tracker}; add it to --log or drop {flag}")
        return cls(**out)

    def cache_path(self) -> Path:
        if self.cache_dir is not None:
            return self.cache_dir
        return Path(os.environ.get("KDBENCH_CACHE_DIR", Path(CACHE_HOME).expanduser()))


# ------------------------------------------------------------------------------- validators
def _options(value: Any, where: str) -> dict[str, dict[str, Any]]:
    """Method options as ``{method: {key: value}}``, from ``--set`` items or a config mapping."""
    if isinstance(value, (list, tuple)):
        return parse_assignments(value)
    if isinstance(value, str):
        return parse_assignments([value])
    if not isinstance(value, dict):
        raise KDBenchError(f"{where}: expected a mapping of method names to options, e.g. kd: {{alpha: 0.7}}")
    out: dict[str, dict[str, Any]] = {}
    for method, opts in value.items():
        if not isinstance(method, str) or not isinstance(opts, dict) or \
                not all(isinstance(k, str) for k in opts):
            raise KDBenchError(f"{where}: {_short(method)}: expected a mapping of option names to values, "
                               "e.g. kd: {alpha: 0.7}")
        bad = [k for k, v in opts.items() if not isinstance(v, (str, int, float, bool))]
        if bad:
            raise KDBenchError(f"{where}: {method}.{bad[0]} = {_short(opts[bad[0]])} is not a single value")
        out[method] = dict(opts)
    return out


def _choice(choices: tuple[str, ...]) -> Callable[[Any, str], Any]:
    def check(value: Any, key: str) -> Any:
        if value not in choices:
            raise KDBenchError(f"{_flag(key)}: {_short(value)} is not one of {', '.join(choices)}")
        return value
    return check


def _text(value: Any, key: str) -> str:
    if not isinstance(value, str) or not value.strip() or "\0" in value:
        raise KDBenchError(f"{_flag(key)}: {_short(value)} is not a non-empty name")
    return value.strip()


def _path(value: Any, key: str) -> Path:
    if not isinstance(value, (str, Path)) or not str(value).strip() or "\0" in str(value):
        raise KDBenchError(f"{_flag(key)}: {_short(value)} is not a path; give a non-empty path")
    return Path(value)


def _bool(value: Any, key: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "yes", "on", "1", "false", "no", "off", "0"):
        return value.strip().lower() in ("true", "yes", "on", "1")
    raise KDBenchError(f"{_flag(key)}: {_short(value)} is not true or false")


def _trackers(value: Any, key: str) -> tuple[str, ...]:
    if value in ("", "none", [], ()):
        return ()
    names = parse_list(value, key)
    bad = [t for t in names if t not in TRACKERS]
    if bad:
        from kdbench.errors import did_you_mean

        raise KDBenchError(f"{_flag(key)}: " + did_you_mean("tracker", bad[0], list(TRACKERS)))
    return names


def _device(value: Any, key: str) -> str:
    from kdbench.device import check_device_name

    return check_device_name(_text(value, key))


def _model(value: Any, key: str) -> str:
    from kdbench.modeling import check_spec_syntax

    return check_spec_syntax(_text(value, key), _flag(key))


#: One validator per RunConfig key: ``f(value, key) -> validated value``, raising a one-line
#: :class:`KDBenchError`. A key that is not listed gets one inferred from its default's type
#: (:func:`validate_option`), so new keys are validated too; list one here for anything finer.
VALIDATORS: dict[str, Callable[[Any, str], Any]] = {
    "methods": lambda v, k: parse_methods(v) if isinstance(v, (str, list, tuple)) else parse_list(v, k),
    "tasks": lambda v, k: parse_list(v, k),
    "domains": lambda v, k: parse_list(v, k),
    "fractions": lambda v, k: parse_fractions(v),
    "seeds": lambda v, k: parse_seeds(v),
    "profile": _text,
    "profiles_file": _path,
    "teacher": _model,
    "student": _model,
    "results_dir": _path,
    "data_dir": _path,
    "cache_dir": _path,
    "device": _device,
    "options": lambda v, k: _options(v, "options (--set)"),
    "teacher_cache_mb": lambda v, k: _number(v, k, float, minimum=0.0),
    "ray_address": _text,
    "ray_num_cpus": lambda v, k: _number(v, k, float, minimum=0.0),
    "ray_num_gpus": lambda v, k: _number(v, k, float, minimum=0.0),
    "ray_max_retries": lambda v, k: _number(v, k, int, minimum=0.0),
    "ray_shared_dir": _path,
    "log": _trackers,
    "log_dir": _path,
    "mlflow_tracking_uri": _text,
    "variants": lambda v, k: parse_variants(v),
    "sweep": lambda v, k: parse_sweeps(v),
    "teacher_seeds": lambda v, k: parse_seeds(v, "--teacher-seeds"),
}


def validate_option(key: str, value: Any, default: Any = None) -> Any:
    """The validated value of RunConfig ``key``; ``None`` is accepted where the default is ``None``."""
    if value is None:
        if default is None:
            return None
        raise KDBenchError(f"{_flag(key)}: needs a value (the default is {_short(default)})")
    check = VALIDATORS.get(key)
    if check is not None:
        return check(value, key)
    choices = _FIELDS[key].metadata.get("choices") if key in _FIELDS else None
    if choices:
        return _choice(choices)(value, key)
    if isinstance(default, bool):
        return _bool(value, key)
    if isinstance(default, int):
        return _number(value, key, int, minimum=-math.inf)
    if isinstance(default, float):
        return _number(value, key, float, minimum=-math.inf)
    if isinstance(default, Path):
        return _path(value, key)
    if isinstance(default, str):
        return _text(value, key)
    if isinstance(default, tuple):
        return parse_list(value, key)
    return value


_FIELDS = {f.name: f for f in dataclasses.fields(RunConfig)}
