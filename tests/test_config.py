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
