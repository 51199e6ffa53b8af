from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kdbench.api import KDBenchError
from kdbench.config import RunConfig, method_config, parse_fractions, parse_seeds, resolve_profile
from kdbench_methods.kd import KDConfig


def test_precedence_cli_over_file_over_defaults(tmp_path: Path):
    f = tmp_path / "run.yaml"
    f.write_text("methods: student,kd\nseeds: 3\nprofile: tiny\n")
    cfg = RunConfig.from_sources({"seeds": "2", "methods": None}, f)
    assert cfg.seeds == 2  # CLI wins
    assert cfg.methods == ("student", "kd")  # from the file
    assert cfg.fractions == (1.0,)  # default
    assert cfg.profile == "tiny"


def test_unknown_config_key_suggests(tmp_path: Path):
    f = tmp_path / "run.yaml"
    f.write_text("seed: 3\n")
    with pytest.raises(KDBenchError, match="did you mean 'seeds'"):
        RunConfig.from_sources({}, f)


@pytest.mark.parametrize("bad", ["0", "-0.1", "1.5", "nan", "abc", "", ","])
def test_bad_fractions(bad):
    with pytest.raises(KDBenchError):
        parse_fractions(bad)


@given(st.lists(st.floats(min_value=1e-6, max_value=1.0), min_size=1, max_size=5, unique=True))
def test_fraction_lists_roundtrip(values):
    text = ",".join(repr(v) for v in values)
    assert parse_fractions(text) == tuple(values)


@given(st.text(max_size=12))
def test_fraction_parser_never_crashes(text):
    try:
        out = parse_fractions(text)
    except KDBenchError as exc:
        assert "\n" not in str(exc)
    else:
        assert all(0 < f <= 1 and not math.isnan(f) for f in out)


@given(st.integers())
def test_seeds(n):
    if n >= 1:
        assert parse_seeds(str(n)) == n
    else:
        with pytest.raises(KDBenchError):
            parse_seeds(str(n))


def test_profiles_and_overrides(tmp_path: Path):
    p = resolve_profile("cpu", student="tiny:L2-H32-A2")
    assert p.teacher == "sentence-transformers/all-MiniLM-L6-v2" and p.student == "tiny:L2-H32-A2"
    extra = tmp_path / "profiles.yaml"
    extra.write_text("mine: {teacher: tiny:L2-H32-A2, student: tiny:L1-H32-A2, max_len: 32}\n")
    assert resolve_profile("mine", extra).max_len == 32
    with pytest.raises(KDBenchError, match="did you mean 'tiny'"):
        resolve_profile("tinny")


def test_method_options_are_typed_and_checked():
    cfg = method_config(KDConfig, "kd", {"alpha": 0.5}, {"alpha": "0.9", "temperature": "4"})
    assert cfg == KDConfig(alpha=0.9, temperature=4.0)
    with pytest.raises(KDBenchError, match="did you mean 'alpha'"):
        method_config(KDConfig, "kd", {"alpah": "1"})
    with pytest.raises(KDBenchError, match="not a valid float"):
        method_config(KDConfig, "kd", {"alpha": "high"})
    with pytest.raises(KDBenchError, match="alpha"):
        method_config(KDConfig, "kd", {"alpha": "2"})


# ------------------------------------------------------------------ validation of every key (#18 §1)
def test_every_run_config_key_is_validated():
    """Each RunConfig field refuses a value of no sensible type, in one line: a key added later gets
    a validator from its default's type, or needs an entry in config.VALIDATORS (this test says so)."""
    import dataclasses

    from kdbench.config import validate_option

    for f in dataclasses.fields(RunConfig):
        with pytest.raises(KDBenchError) as info:
            validate_option(f.name, object(), f.default)
        assert "\n" not in str(info.value), f.name


@pytest.mark.parametrize(("text", "message"), [
    ("results_dir: 123\n", "--results-dir: 123 is not a path"),
    ("methods: 5\n", "--methods: 5 is not a list"),
    ("profile: null\n", "--profile: needs a value"),
    ("compile: maybe\n", "--compile: 'maybe' is not true or false"),
    ("seeds: 2.5\n", "not an integer"),
    ("teacher_cache_mb: abc\n", "not a number"),
    ("executor: ray\nray_num_gpus: -1\n", "must be at least 0"),
    ("device: 3\n", "--device"),
])
def test_config_file_values_are_typed(tmp_path: Path, text, message):
    f = tmp_path / "run.yaml"
    f.write_text(text)
    with pytest.raises(KDBenchError, match=message.replace("(", r"\(").replace(".", r"\.")):
        RunConfig.from_sources({}, f)


def test_config_file_value_is_checked_even_when_the_cli_overrides_it(tmp_path: Path):
    f = tmp_path / "run.yaml"
    f.write_text("seeds: many\n")
    with pytest.raises(KDBenchError, match="--seeds"):
        RunConfig.from_sources({"seeds": "2"}, f)


def test_config_values_of_the_right_type_are_accepted(tmp_path: Path):
    f = tmp_path / "run.yaml"
    f.write_text("methods: [student, kd]\nfractions: 0.5\nseeds: 2\ncompile: true\nreuse: no\n"
                 "teacher_cache_mb: 16\nteacher: tiny:L2-H32-A2\ndevice: cpu\ndomains: null\n")
    cfg = RunConfig.from_sources({}, f)
    assert (cfg.methods, cfg.fractions, cfg.seeds, cfg.compile, cfg.reuse) == (("student", "kd"), (0.5,), 2, True,
                                                                                False)
    assert cfg.teacher_cache_mb == 16.0 and cfg.teacher == "tiny:L2-H32-A2" and cfg.domains is None


def test_non_utf8_config_file_is_one_line(tmp_path: Path):
    f = tmp_path / "run.yaml"
    f.write_bytes(b"seeds: 1\n\xff\xfe\n")
    with pytest.raises(KDBenchError, match="not UTF-8") as info:
        RunConfig.from_sources({}, f)
    assert "\n" not in str(info.value)


def test_set_merges_per_key_with_the_config_file(tmp_path: Path):
    f = tmp_path / "run.yaml"
    f.write_text("options: {kd: {alpha: 0.3}}\n")
    assert RunConfig.from_sources({"options": ["kd.temperature=2"]}, f).options == {
        "kd": {"alpha": 0.3, "temperature": "2"}}
    assert RunConfig.from_sources({"options": ["kd.alpha=0.9"]}, f).options == {"kd": {"alpha": "0.9"}}


@pytest.mark.parametrize(("setting", "message"), [
    ("batch_size: 0", "batch_size = 0"), ("eval_batch_size: -4", "eval_batch_size = -4"),
    ("max_len: 0", "max_len = 0"), ("max_len: '64'", "max_len = '64'"),
    ("student_train: {lr: abc}", "student_train.lr = 'abc'"), ("teacher_train: {epochs: 0}", "teacher_train.epochs = 0"),
    ("student_train: {epochs: 1.5}", "student_train.epochs = 1.5"), ("student_train: {lr: -0.1}", "student_train.lr = -0.1"),
    ("student_train: {warmup: -0.1}", "student_train.warmup = -0.1"),
    ("teacher_train: {max_grad_norm: .inf}", "teacher_train.max_grad_norm = inf"),
    ("methods: {kd: 3}", "methods = "),
])
def test_profile_settings_are_validated(tmp_path: Path, setting, message):
    extra = tmp_path / "profiles.yaml"
    extra.write_text(f"mine:\n  teacher: tiny:L2-H32-A2\n  student: tiny:L1-H32-A2\n  {setting}\n")
    with pytest.raises(KDBenchError, match=f"profile 'mine': {message.replace('.', '[.]')}"):
        resolve_profile("mine", extra)


def test_builtin_profiles_are_valid():
    from kdbench.config import load_profiles, validate_profile

    for name, raw in load_profiles().items():
        validate_profile(name, raw)


def test_variant_sweep_and_teacher_options_parse(tmp_path: Path):
    from kdbench.config import parse_sweeps

    cfg = RunConfig.from_sources({"methods": "kd,kd[temperature=4,alpha=0.5]", "sweep": ["kd.temperature=1,2"],
                                  "teacher_seeds": "1", "teacher_domains": "others"})
    assert cfg.methods == ("kd", "kd[temperature=4,alpha=0.5]")
    assert cfg.sweep == (("kd", "temperature", ("1", "2")),)
    assert cfg.teacher_seeds == 1 and cfg.teacher_domains == "others"
    assert parse_sweeps({"kd": {"alpha": [0.5, 0.9]}}) == (("kd", "alpha", ("0.5", "0.9")),)
    f = tmp_path / "run.yaml"
    f.write_text("variants:\n  kd-T4: {method: kd, temperature: 4}\nmethods: [kd, kd-T4]\n")
    assert RunConfig.from_sources({}, f).variants == {"kd-T4": {"method": "kd", "temperature": 4}}
    for bad in ({"teacher_seeds": "0"}, {"teacher_domains": "some"}, {"sweep": ["kd.temperature"]},
                {"sweep": ["kd.temperature=1,1"]}, {"methods": "kd[alpha=0.5"}):
        with pytest.raises(KDBenchError):
            RunConfig.from_sources(bad)


def test_profiles_do_not_restate_method_defaults():
    """#14 §5: a method option's default is written once, in its Config dataclass; a built-in profile
    lists only the options it changes (a value equal to the default would hide a later change of it)."""
    from kdbench import registry
    from kdbench.config import load_profiles

    reg = registry.load()
    for name, raw in load_profiles().items():
        for method, opts in raw.get("methods", {}).items():
            cls = reg.methods.get(method).Config
            cfg, default = method_config(cls, method, opts), cls()
            same = [k for k in opts if getattr(cfg, k) == getattr(default, k)]
            assert not same, f"profile {name}: {method}.{same} restate the default of {cls.__name__}"


def test_choices_are_written_once_in_the_field():
    """A RunConfig field with ``choices`` is checked against them (no VALIDATORS entry restating
    them) and its default is one of them (``kdbench run --help`` shows them: tests/test_cli.py)."""
    import dataclasses

    from kdbench.config import VALIDATORS, validate_option

    with_choices = [f for f in dataclasses.fields(RunConfig) if f.metadata["choices"]]
    assert {f.name for f in with_choices} >= {"precision", "executor", "save_students", "teacher_domains"}
    for f in with_choices:
        assert f.name not in VALIDATORS and f.default in f.metadata["choices"]
        for ok in f.metadata["choices"]:
            assert validate_option(f.name, ok, f.default) == ok
        with pytest.raises(KDBenchError, match=f"is not one of {', '.join(f.metadata['choices'])}"):
            validate_option(f.name, "nope", f.default)
