"""End to end through the CLI on the tiny profile: every method and teacher row of this package on two
Amazon domains, then the paper table. The one end-to-end "every method" suite (the conformance kit,
tests/methods/test_conformance.py, checks each method on its own)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kdbench.cli import main

METHODS = ("student,kd,pkd,tinybert,mix,mtl,multiteacher,metakd,"
           "teacher,teacher:mix,teacher:mtl,teacher:meta")


def run(results: Path, data_dir: Path, cache_dir: Path, *extra: str, domains: str = "books,dvd",
        methods: str = METHODS) -> int:
    # --fraction-all-domains: the pooled teachers then see the same data for both targets and are
    # trained once, which keeps this test fast.
    return main(["run", "--methods", methods, "--tasks", "amazon", "--domains", domains, "--profile", "tiny",
                 "--fractions", "0.05", "--seeds", "1", "--fraction-all-domains", "--device", "cpu",
                 "--results-dir", str(results), "--data-dir", str(data_dir), "--cache-dir", str(cache_dir),
                 *extra])


def cells(results: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted((results / "cells").glob("*.json"))}


@pytest.fixture(scope="module")
def grid(tmp_path_factory, data_dir, cache_dir) -> Path:
    results = tmp_path_factory.mktemp("grid")
    assert run(results, data_dir, cache_dir) == 0
    return results


@pytest.mark.realdata
def test_every_cell_is_ok(grid):
    got = cells(grid)
    assert len(got) == 2 * len(METHODS.split(","))
    bad = {k: c.get("error") for k, c in got.items() if c["status"] != "ok"}
    assert not bad
    for c in got.values():
        assert 0.0 <= c["metrics"]["test_accuracy"] <= 100.0


@pytest.mark.realdata
def test_rerun_recomputes_nothing(grid, data_dir, cache_dir):
    before = {p.name: p.stat().st_mtime_ns for p in (grid / "cells").glob("*.json")}
    teachers = sorted(p.name for p in (grid / "teachers").iterdir())
    assert run(grid, data_dir, cache_dir) == 0
    assert {p.name: p.stat().st_mtime_ns for p in (grid / "cells").glob("*.json")} == before
    assert sorted(p.name for p in (grid / "teachers").iterdir()) == teachers


@pytest.mark.realdata
def test_teachers_are_shared_and_of_the_right_kind(grid):
    got = cells(grid)
    kinds = {}
    for key, c in got.items():
        for t in c["teachers"]:
            kinds.setdefault(t["kind"], set()).add(t["key"])
            if t["kind"] in ("mix", "mtl", "meta"):
                assert t["domains"] == ["books", "dvd", "electronics", "kitchen"], key
    # fraction on all domains: one pooled teacher of each kind serves both targets and all methods;
    # multiteacher uses every domain's single teacher (the targets' ones shared with kd, pkd, tinybert)
    assert {k: len(v) for k, v in kinds.items()} == {"single": 4, "mix": 1, "mtl": 1, "meta": 1}
    assert len(list((grid / "teachers").iterdir())) == 7


@pytest.mark.realdata
def test_two_stage_results_record_both_stages(grid):
    for method in ("tinybert", "mix", "mtl", "metakd"):
        cell = cells(grid)[f"amazon__books__{method}__f0.05__s0"]
        stages = cell["train"]["stages"]
        assert [s["stage"] for s in stages] == [f"{method}:stage1", f"{method}:stage2"]
        assert stages[0]["best_epoch"] == -1 and stages[1]["best_epoch"] >= 1  # select in stage 2 only
        s1 = stages[0]["losses"]
        assert s1[-1] < s1[0], method  # the intermediate-layer loss decreases
        assert cell["train"]["losses"] == pytest.approx([*s1, *stages[1]["losses"]], abs=1e-5)
        assert cell["train"]["projection"] is True  # the tiny student is narrower than the teacher
    assert cells(grid)["amazon__books__metakd__f0.05__s0"]["train"]["teacher_options"] == {}


@pytest.mark.realdata
def test_mtl_row_reads_the_target_head(grid):
    got = cells(grid)
    books, dvd = got["amazon__books__teacher-mtl__f0.05__s0"], got["amazon__dvd__teacher-mtl__f0.05__s0"]
    assert books["teachers"][0]["key"] == dvd["teachers"][0]["key"]  # one model ...
    assert books["params"]["model"] == dvd["params"]["model"]
    assert books["predictions"]["ids"] != dvd["predictions"]["ids"]  # ... read on each target's test


@pytest.mark.realdata
def test_ablation_trains_its_own_meta_teacher(grid, data_dir, cache_dir, tmp_path):
    results = tmp_path / "ablation"
    assert run(results, data_dir, cache_dir, "--set", "metakd.use_domain_corruption=false",
               "--set", "metakd.use_expertise_weights=false", domains="books", methods="metakd") == 0
    cell = cells(results)["amazon__books__metakd__f0.05__s0"]
    assert cell["status"] == "ok"
    assert [(t["kind"], t["options"]) for t in cell["teachers"]] == [("meta", {"use_domain_corruption": False})]
    full = cells(grid)["amazon__books__metakd__f0.05__s0"]
    assert cell["teachers"][0]["key"] != full["teachers"][0]["key"]
    assert cell["config"]["method_options"]["use_domain_corruption"] is False


@pytest.mark.realdata
def test_paper_table_lists_every_method(grid, capsys):
    capsys.readouterr()
    assert main(["table", str(grid), "--layout", "paper"]) == 0
    out = capsys.readouterr().out
    assert all(m in out for m in ("metakd", "multiteacher", "tinybert", "pkd"))
