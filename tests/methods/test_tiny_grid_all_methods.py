"""#3's acceptance command, verbatim (plus data/cache/results paths): every student-side method on two
Amazon domains, tiny profile, full train data, 2 seeds. Every cell must be ok."""

from __future__ import annotations

import json

import pytest

from kdbench.cli import main

METHODS = ["student", "kd", "pkd", "tinybert", "mix", "mtl", "multiteacher", "metakd"]


@pytest.mark.realdata
def test_every_method_on_books_and_dvd_with_two_seeds(tmp_path, data_dir, cache_dir, capsys):
    results = tmp_path / "grid"
    code = main(["run", "--methods", ",".join(METHODS), "--tasks", "amazon", "--domains", "books,dvd",
                 "--profile", "tiny", "--seeds", "2", "--data-dir", str(data_dir), "--cache-dir",
                 str(cache_dir), "--results-dir", str(results)])
    cells = [json.loads(p.read_text()) for p in (results / "cells").glob("*.json")]
    failed = {(c["method"], c["domain"], c["seed"]): c.get("error") for c in cells if c["status"] != "ok"}
    assert code == 0 and not failed, failed
    assert sorted((c["method"], c["domain"], c["seed"]) for c in cells) == sorted(
        (m, d, s) for m in METHODS for d in ("books", "dvd") for s in (0, 1))
    # the official Amazon split (#15): books 1,631 train, dvd 1,621
    assert all(c["fraction"] == 1.0 and c["n_train"] == {"books": 1631, "dvd": 1621}[c["domain"]] for c in cells)
    capsys.readouterr()
    assert main(["table", str(results), "--layout", "paper"]) == 0
    out = capsys.readouterr().out
    assert "metakd" in out and "multiteacher" in out
