"""Typed configuration: profiles (models + training settings) and the run configuration.

Precedence, in one place: **command line > config file (``--config run.yaml``) > defaults**.
Profiles come from the packaged ``profiles.yaml``, overridable with ``--profiles FILE``.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kdbench.api import KDBenchError, MethodConfig, TrainConfig

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
    except (OSError, yaml.YAMLError) as exc:
        raise KDBenchError(f"cannot read {path}: {' '.join(str(exc).split())}") from None


def load_profiles(extra: Path | None = None) -> dict[str, dict[str, Any]]:
    """Built-in profiles, with the profiles of ``extra`` replacing those of the same name."""
    profiles: dict[str, dict[str, Any]] = dict(_read_yaml(PROFILES_FILE))
    if extra is not None:
        data = _read_yaml(extra)
        if not isinstance(data, dict):
            raise KDBenchError(f"{extra}: expected a mapping of profile names to settings")
        profiles.update(data)
    return profiles


def resolve_profile(name: str, extra: Path | None = None, teacher: str | None = None,
                    student: str | None = None) -> Profile:
    from kdbench.registry import did_you_mean

    profiles = load_profiles(extra)
    if name not in profiles:
        raise KDBenchError(did_you_mean("profile", name, list(profiles)))
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


def parse_fractions(value: str | list[Any] | tuple[Any, ...]) -> tuple[float, ...]:
    raw = value.split(",") if isinstance(value, str) else list(value)
    out: list[float] = []
    for item in raw:
        text = str(item).strip()
        try:
            f = float(text)
        except ValueError:
            raise KDBenchError(f"--fractions: {text!r} is not a number; use values in (0, 1], e.g. 0.1,1.0") \
                from None
        if math.isnan(f) or not 0.0 < f <= 1.0:
            raise KDBenchError(f"--fractions: {text} is outside (0, 1]; use values such as 0.1,0.5,1.0")
        out.append(f)
    if not out:
        raise KDBenchError("--fractions: empty list; use values in (0, 1], e.g. 0.1,1.0")
    if len(set(out)) != len(out):
        raise KDBenchError("--fractions: duplicate values")
    return tuple(out)


def parse_seeds(value: int | str, flag: str = "--seeds") -> int:
    try:
        n = int(str(value).strip())
    except ValueError:
        raise KDBenchError(f"{flag}: {value!r} is not an integer; {flag} N uses seeds 0..N-1") from None
    if n < 1:
        raise KDBenchError(f"{flag}: {n} < 1; {flag} N uses seeds 0..N-1, so N must be at least 1")
    return n


EXECUTORS = ("local", "ray")


def _number(value: Any, key: str, kind: type, minimum: float) -> Any:
    flag = "--" + key.replace("_", "-")
    try:
        out = kind(value)
    except (TypeError, ValueError):
        raise KDBenchError(f"{flag}: {value!r} is not a number") from None
    if not out >= minimum:  # also refuses NaN
        raise KDBenchError(f"{flag}: {value!r} must be at least {minimum:g}")
    return out


def parse_assignments(items: list[str] | tuple[str, ...]) -> dict[str, dict[str, str]]:
    """``["kd.alpha=0.7", "pkd.variant=last"]`` → ``{"kd": {"alpha": "0.7"}, ...}``."""
    out: dict[str, dict[str, str]] = {}
    for item in items:
        key, sep, val = item.partition("=")
        method, dot, opt = key.partition(".")
        if not sep or not dot or not method or not opt:
            raise KDBenchError(f"--set {item!r}: expected METHOD.KEY=VALUE, e.g. kd.alpha=0.7")
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
        from kdbench.registry import did_you_mean

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
    """Convert a string from the command line to the type of the option's default."""
    if not isinstance(value, str) or isinstance(default, str):
        return value
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
        raise KDBenchError(f"{where}: {value!r} is not a valid {type(default).__name__}") from None
    return value


def method_config(cls: type[MethodConfig], method: str, *layers: dict[str, Any]) -> MethodConfig:
    """Build a method's config from option layers (profile, then ``--set``), checking every key."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for layer in layers:
        for key, val in layer.items():
            if key not in fields:
                from kdbench.registry import did_you_mean

                raise KDBenchError(f"method {method}: " + did_you_mean("option", key, list(fields)))
            f = fields[key]
            default = f.default if f.default is not dataclasses.MISSING else None
            values[key] = _coerce(val, default, f"--set {method}.{key}")
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise KDBenchError(f"method {method}: {exc}") from None


# ---------------------------------------------------------------------------------- run config
@dataclass(frozen=True)
class RunConfig:
    """Everything ``kdbench run`` needs. ``seeds`` is a count: seeds 0..seeds-1 run."""

    methods: tuple[str, ...] = ("student", "kd", "teacher")
    tasks: tuple[str, ...] = ("amazon",)
    domains: tuple[str, ...] | None = None  # None: every domain of each task
    fractions: tuple[float, ...] = (1.0,)
    seeds: int = 1
    profile: str = "cpu"
    profiles_file: Path | None = None
    teacher: str | None = None
    student: str | None = None
    results_dir: Path = Path("results/latest")
    data_dir: Path | None = None
    cache_dir: Path | None = None
    device: str = "auto"
    precision: str = "auto"
    fraction_all_domains: bool = False
    options: dict[str, dict[str, Any]] = field(default_factory=dict)
    strict_plugins: bool = False
    #: share trained teachers across cells and cache teacher logits; off only to measure the saving
    reuse: bool = True
    #: torch.compile the models being trained (no change to results, so not part of the cell hash)
    compile: bool = False
    #: a teacher's hidden states and attention scores on a cell's train set are kept in memory when
    #: their estimated size fits this budget (MiB), else recomputed in every step
    teacher_cache_mb: float = 2048.0
    #: ``local`` (this process) or ``ray`` (teachers and cells as Ray tasks; see kdbench.ray_executor)
    executor: str = "local"
    ray_address: str | None = None  # None: start a local Ray instance; "auto": join the running cluster
    ray_num_cpus: float = 1.0  # CPUs each Ray task asks for
    ray_num_gpus: float | None = None  # GPUs each Ray task asks for; None: 1 when the cluster has GPUs
    ray_max_retries: int = 2  # retries of a Ray task whose worker died
    ray_shared_dir: Path | None = None  # teachers on this shared path instead of Ray's object store
    #: named variants usable in ``methods``: ``{name: {"method": m, option: value, ...}}``
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: ``(method, option, values)``: the product per method expands into variant rows
    sweep: tuple[tuple[str, str, tuple[str, ...]], ...] = ()
    #: K: student seed s uses the teachers of seed s mod K (None: K = seeds, one teacher per seed)
    teacher_seeds: int | None = None
    #: ``all``: cross-domain teachers see every domain; ``others``: every domain but the target
    teacher_domains: str = "all"

    @classmethod
    def from_sources(cls, cli: dict[str, Any], config_file: Path | None = None) -> RunConfig:
        """Merge defaults < config file < command line (``None`` on the CLI means "not given")."""
        merged: dict[str, Any] = {}
        if config_file is not None:
            data = _read_yaml(config_file) or {}
            if not isinstance(data, dict):
                raise KDBenchError(f"{config_file}: expected a mapping of run options")
            merged.update({k.replace("-", "_"): v for k, v in data.items()})
        merged.update({k: v for k, v in cli.items() if v is not None})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(merged) - known)
        if unknown:
            from kdbench.registry import did_you_mean

            raise KDBenchError("run config: " + did_you_mean("option", unknown[0], sorted(known)))
        if "data_dir" not in merged and os.environ.get("KDBENCH_DATA_DIR"):
            merged["data_dir"] = os.environ["KDBENCH_DATA_DIR"]
        out: dict[str, Any] = {}
        for key, val in merged.items():
            if key == "methods":
                val = parse_methods(val)
            elif key in ("tasks", "domains"):
                val = parse_list(val, key)
            elif key == "sweep":
                val = parse_sweeps(val)
            elif key == "variants":
                val = parse_variants(val)
            elif key == "teacher_seeds":
                val = parse_seeds(val, "--teacher-seeds")
            elif key == "teacher_domains" and val not in TEACHER_DOMAINS:
                raise KDBenchError(f"--teacher-domains: {val!r} is not one of {', '.join(TEACHER_DOMAINS)}")
            elif key == "fractions":
                val = parse_fractions(val)
            elif key == "seeds":
                val = parse_seeds(val)
            elif key in ("results_dir", "data_dir", "cache_dir", "profiles_file", "ray_shared_dir"):
                val = Path(val)
            elif key == "options" and isinstance(val, (list, tuple)):
                val = parse_assignments(val)
            elif key == "precision" and val not in PRECISIONS:
                raise KDBenchError(f"--precision: {val!r} is not one of {', '.join(PRECISIONS)}")
            elif key == "executor" and val not in EXECUTORS:
                raise KDBenchError(f"--executor: {val!r} is not one of {', '.join(EXECUTORS)}")
            elif key in ("ray_num_cpus", "ray_num_gpus", "teacher_cache_mb"):
                val = _number(val, key, float, minimum=0.0)
            elif key == "ray_max_retries":
                val = _number(val, key, int, minimum=0.0)
            out[key] = val
        ray_options = sorted(k for k in out if k.startswith("ray_"))
        if ray_options and out.get("executor", "local") != "ray":
            flag = "--" + ray_options[0].replace("_", "-")
            raise KDBenchError(f"{flag} only applies with --executor ray; add --executor ray or drop {flag}")
        return cls(**out)

    def cache_path(self) -> Path:
        if self.cache_dir is not None:
            return self.cache_dir
        return Path(os.environ.get("KDBENCH_CACHE_DIR", Path.home() / ".cache" / "kdbench"))
