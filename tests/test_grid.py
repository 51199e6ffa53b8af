"""Rows (methods, variants, aliases, sweeps) and cell keys: exact, unique, file-system safe."""

from __future__ import annotations

from pathlib import Path

import pytest

from kdbench import registry
from kdbench.api import KDBenchError
from kdbench.config import RunConfig, parse_methods
from kdbench.grid import ABLATION_ROWS, Cell, expand, fraction_text, method_slug, resolve_rows
from kdbench.testing import toy_plugin


@pytest.fixture(scope="module")
def reg():
    return registry.load([toy_plugin()])


def rows(reg, config_file: Path | None = None, **cli):
    return resolve_rows(RunConfig.from_sources({"tasks": "toy", "profile": "tiny", **cli}, config_file), reg)


def test_methods_split_outside_brackets():
    assert parse_methods("kd,kd[temperature=4,alpha=0.5], metakd[use_domain_corruption=false]") == (
        "kd", "kd[temperature=4,alpha=0.5]", "metakd[use_domain_corruption=false]")
    for bad in ("kd[temperature=4", "kd]", "kd,kd"):
        with pytest.raises(KDBenchError):
            parse_methods(bad)


def test_inline_variants_get_canonical_names_and_typed_options(reg):
    r = rows(reg, methods="kd,kd[temperature=4.0,alpha=.5],metakd[use_domain_corruption=off]")
    assert [v.name for v in r] == ["kd", "kd[alpha=0.5,temperature=4]", "metakd[use_domain_corruption=false]"]
    assert r[1].method == "kd" and r[1].options == (("alpha", 0.5), ("temperature", 4.0))
    assert not r[0].is_variant and r[1].is_variant


@pytest.mark.parametrize("bad, message", [
    ("kd[temprature=4]", "did you mean 'temperature'"),
    ("kd[temperature=hot]", "not a valid float"),
    ("kd[alpha=2]", "alpha"),  # the Config's own range check, up front
    ("kd[temperature]", "expected METHOD"),
    ("nosuch[temperature=4]", "nosuch"),
    ("kd[temperature=1],kd[temperature=1.0]", "appears twice"),
])
def test_bad_variants_are_one_line_errors(reg, bad, message):
    with pytest.raises(KDBenchError, match=message):
        rows(reg, methods=bad)


def test_named_variants_from_the_config_file(reg, tmp_path):
    f = tmp_path / "run.yaml"
    f.write_text("methods: kd,kd-T4\nvariants:\n  kd-T4: {method: kd, temperature: 4}\n")
    r = rows(reg, f)
    assert [(v.name, v.method, v.options) for v in r] == [("kd", "kd", ()), ("kd-T4", "kd", (("temperature", 4.0),))]
    f.write_text("methods: kd\nvariants:\n  kd: {method: kd, temperature: 4}\n")
    with pytest.raises(KDBenchError, match="already a method"):
        rows(reg, f, methods="kd")


def test_sweep_is_the_product_and_replaces_the_plain_row(reg):
    r = rows(reg, methods="student,kd,teacher", sweep=["kd.temperature=1,4", "kd.alpha=0.5,0.9"])
    assert [v.name for v in r] == ["student", "kd[alpha=0.5,temperature=1]", "kd[alpha=0.9,temperature=1]",
                                   "kd[alpha=0.5,temperature=4]", "kd[alpha=0.9,temperature=4]", "teacher"]
    with pytest.raises(KDBenchError, match="sweep"):
        rows(reg, methods="kd", sweep=["kd.temperature"])


def test_ablation_alias_expands_to_the_five_rows(reg):
    assert [v.name for v in rows(reg, methods="metakd-ablation")] == [m for m, _ in ABLATION_ROWS]
    assert rows(reg, methods="metakd-ablation")[-1].options == (("gamma2", 0.0),)


def test_cell_keys_are_exact_and_unique(reg):
    assert fraction_text(0.2) == "0.2" and fraction_text(1.0) == "1"  # old keys stay as they were
    assert fraction_text(0.1234567) == "0.1234567" != fraction_text(0.1234568)
    cfg = RunConfig.from_sources({"tasks": "toy", "profile": "tiny", "fractions": "0.1234567,0.1234568",
                                  "methods": "kd,kd[temperature=4],teacher:mix"})
    keys = [c.key for c in expand(cfg, reg)]
    assert len(keys) == len(set(keys)) == 2 * 2 * 3
    assert "toy__garden__kd__f0.1234567__s0" in keys and "toy__garden__teacher-mix__f0.1234568__s0" in keys
    assert Cell("amazon", 0.2, 0, "books", "kd").key == "amazon__books__kd__f0.2__s0"
    slug = method_slug("kd[temperature=4]")
    assert slug.startswith("kd-temperature-4-") and all(ch.isalnum() or ch in "-_." for ch in slug)
    assert method_slug("kd[temperature=4]") != method_slug("kd[temperature=4.5]")


def test_a_swept_method_passes_the_up_front_checks(reg, tmp_path):
    """The up-front checks walk the run's rows: a method replaced by its sweep is not looked up."""
    from kdbench.runner import Runner

    cfg = RunConfig.from_sources({"methods": "student,kd", "sweep": ["kd.temperature=1,4"], "tasks": "toy",
                                  "profile": "tiny", "results_dir": str(tmp_path / "r"),
                                  "cache_dir": str(tmp_path / "c")})
    runner = Runner(cfg, reg)
    runner.check_inputs()
    assert sorted(runner.methods) == ["kd[temperature=1]", "kd[temperature=4]", "student"]
