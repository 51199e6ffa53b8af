"""The real ``cpu`` profile (MiniLM-L6 teacher → MiniLM-L3 student from the HF cache), small fraction."""

from __future__ import annotations

import json

import pytest

from kdbench.cli import main


@pytest.mark.slow
@pytest.mark.realdata
def test_cpu_profile_student_and_kd(tmp_path, data_dir, hf_home, cache_dir, capsys):
    results = tmp_path / "r"
    code = main(["run", "--methods", "student,kd,teacher", "--tasks", "amazon", "--domains", "kitchen",
                 "--fractions", "0.05", "--profile", "cpu", "--data-dir", str(data_dir),
                 "--cache-dir", str(cache_dir), "--results-dir", str(results)])
    out = capsys.readouterr().out
    assert code == 0, out
    cells = {c["method"]: c for c in (json.loads(p.read_text()) for p in (results / "cells").glob("*.json"))}
    assert set(cells) == {"student", "kd", "teacher"}
    assert all(c["status"] == "ok" for c in cells.values())
    assert cells["teacher"]["params"]["model"] > cells["student"]["params"]["model"]  # 22.7M vs 17.4M
    assert cells["kd"]["config"]["profile"]["teacher"] == "sentence-transformers/all-MiniLM-L6-v2"
    for c in cells.values():
        assert 0 <= c["metrics"]["test_accuracy"] <= 100 and len(c["predictions"]["pred"]) == 203  # kitchen, official split
    assert cells["kd"]["teachers"][0]["key"] == cells["teacher"]["teachers"][0]["key"]
