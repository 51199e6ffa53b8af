"""Dev-based selection: the best mean dev configuration per method × domain × fraction; test data unseen."""

from __future__ import annotations

import copy
import random

from kdbench.selection import annotate, choose, render, select_dev
from kdbench.tables import build_tables


def cell(method: str, domain: str, seed: int, dev: float, test: float, base: str | None = None,
         n: int = 20) -> dict:
    rng = random.Random(f"{method}/{domain}/{seed}")
    gold = [rng.randint(0, 1) for _ in range(n)]
    k = round(test / 100 * n)
    pred = [g if i < k else 1 - g for i, g in enumerate(gold)]
    return {"status": "ok", "task": "toy", "domain": domain, "fraction": 1.0, "seed": seed, "method": method,
            "variant": {"method": base or method, "options": {}},
            "metrics": {"dev_accuracy": dev, "test_accuracy": 100 * k / n},
            "predictions": {"ids": [f"{domain}/{i}" for i in range(n)], "pred": pred, "gold": gold},
            "split_hash": f"h-{domain}"}


def grid() -> list[dict]:
    # kd: three configurations; on garden T=4 has the best mean dev, on kitchen the plain kd row.
    dev = {("kd", "garden"): (70, 72), ("kd[temperature=4]", "garden"): (80, 78), ("kd[temperature=2]", "garden"): (75, 90),
           ("kd", "kitchen"): (85, 85), ("kd[temperature=4]", "kitchen"): (60, 62), ("kd[temperature=2]", "kitchen"): (84, 86),
           ("student", "garden"): (65, 66), ("student", "kitchen"): (70, 71)}
    out = []
    for (m, d), devs in dev.items():
        for seed, v in enumerate(devs):
            out.append(cell(m, d, seed, v, test=60 + 5 * seed, base=m.split("[")[0]))
    return out


def test_choice_is_the_best_mean_dev_configuration():
    sel = select_dev(grid())
    chosen = {(c.method, c.domain): (c.configuration, c.dev_mean, c.n_seeds, c.budget) for c in sel.choices}
    assert chosen[("kd", "garden")] == ("kd[temperature=2]", 82.5, 2, 3)  # (75+90)/2 beats (80+78)/2
    assert chosen[("kd", "kitchen")] == ("kd", 85.0, 2, 3)  # ties at 85 with T=2: the plain row wins
    assert chosen[("student", "garden")][0] == "student"
    assert sel.budgets == {"kd": 3, "student": 1} and sel.unequal
    assert {c["method"] for c in sel.cells} == {"kd", "student"}
    assert choose({"a": [{"metrics": {"dev_accuracy": 50}}], "b": [{"metrics": {}}]}, "x") == ("a", 50.0, 1)


def test_test_labels_and_predictions_never_change_the_choice():
    cells = grid()
    before = [(c.method, c.domain, c.configuration) for c in select_dev(cells).choices]
    rng = random.Random(0)
    for trial in range(20):
        changed = copy.deepcopy(cells)
        for c in changed:  # scramble everything about the test set, keep dev
            c["metrics"]["test_accuracy"] = rng.uniform(0, 100)
            p = c["predictions"]
            p["gold"] = [rng.randint(0, 1) for _ in p["gold"]]
            p["pred"] = [rng.randint(0, 1) for _ in p["pred"]]
        assert [(c.method, c.domain, c.configuration) for c in select_dev(changed).choices] == before, trial
    # ... while changing a dev accuracy does change it
    for c in cells:
        if c["method"] == "kd[temperature=4]" and c["domain"] == "kitchen":
            c["metrics"]["dev_accuracy"] = 99.0
    assert ("kd", "kitchen", "kd[temperature=4]") in [(c.method, c.domain, c.configuration)
                                                        for c in select_dev(cells).choices]


def test_selected_tables_show_test_accuracy_budget_and_choices():
    sel = select_dev(grid())
    tables = build_tables(sel.cells, n_boot=200)
    annotate(tables, sel)
    main = tables[0]
    assert {r.method for r in main.rows} == {"kd", "student"}
    kd = next(r for r in main.rows if r.method == "kd")
    garden = kd.entries[main.columns.index("garden")].summary
    assert garden is not None and garden.mean == (60 + 65) / 2  # the test accuracy of kd[temperature=2]'s cells
    assert any("UNEQUAL budgets" in line and "kd 3" in line for line in main.legend)
    text = render(sel, "markdown")
    assert "| kd | 3 | kd[temperature=2] (dev 82.5, n=2) | kd (dev 85.0, n=2) |" in text
    assert "| student | 1 |" in text


def test_held_out_and_all_teacher_cells_are_never_pooled():
    a = cell("mix", "garden", 0, 90, 70)
    b = cell("mix[x=1]", "garden", 0, 95, 70, base="mix")
    a["teacher_domains"], b["teacher_domains"] = "all", "others"
    sel = select_dev([a, b])
    assert sorted((c.configuration, c.teacher_domains, c.budget) for c in sel.choices) == [
        ("mix", "all", 1), ("mix[x=1]", "others", 1)]
