"""``--save-students`` and ``kdbench export``: students as Hugging Face folders with a model card."""

from __future__ import annotations

import json
import shlex

import pytest
import torch
from huggingface_hub import ModelCard
from transformers import AutoModelForSequenceClassification

from kdbench import cli, export_model, registry, runner
from kdbench.api import KDBenchError
from kdbench.config import RunConfig, resolve_profile
from kdbench.data import encode
from kdbench.modeling import KDModel, load_model
from kdbench.testing import ToyTask, toy_plugin

KEYS = ["toy__garden__kd__f1__s0", "toy__garden__kd__f1__s1"]


def run_toy(out, save: str) -> None:
    reg = registry.load([toy_plugin()])
    config = RunConfig.from_sources({"methods": "kd", "tasks": "toy", "domains": "garden", "profile": "tiny",
                                     "seeds": "2", "results_dir": str(out), "cache_dir": str(out / "cache"),
                                     "save_students": save})
    assert runner.run(config, reg, command="kdbench run --methods kd --tasks toy").ok >= 0


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    out = tmp_path_factory.mktemp("saved")
    run_toy(out, "all")
    return out


def hf_predictions(folder, examples, max_len=None):
    """What a user of the exported folder gets: transformers alone, no kdbench."""
    from transformers import AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    tok = AutoTokenizer.from_pretrained(folder)
    enc = tok([ex.text for ex in examples], truncation=True, padding=True, return_tensors="pt",
              **({"max_length": max_len} if max_len else {}))
    with torch.no_grad():
        return model(**enc).logits.argmax(-1).tolist()


def test_saved_students_load_with_transformers_and_give_the_cells_predictions(saved):
    test = ToyTask().load()["garden"].test
    for key in KEYS:
        folder = saved / "students" / key
        assert {"config.json", "model.safetensors", "tokenizer.json", "README.md"} <= {p.name for p in folder.iterdir()}
        cell = json.loads((saved / "cells" / f"{key}.json").read_text())
        by_id = dict(zip(cell["predictions"]["ids"], cell["predictions"]["pred"], strict=True))
        assert hf_predictions(folder, test) == [by_id[ex.id] for ex in test]  # truncation from the tokenizer
        config = json.loads((folder / "config.json").read_text())
        assert config["id2label"] == {"0": "negative", "1": "positive"}
        from transformers import AutoTokenizer

        assert AutoTokenizer.from_pretrained(folder).model_max_length == 64  # the tiny profile's max_len
    assert not list((saved / "students").glob(".*"))  # no temporary folder left


def test_model_card_metadata_is_in_the_hubs_format(saved):
    key = KEYS[1]
    cell = json.loads((saved / "cells" / f"{key}.json").read_text())
    card = ModelCard.load(saved / "students" / key / "README.md")  # strict: refuses a bad model-index
    data = card.data.to_dict()
    assert data["library_name"] == "transformers" and data["pipeline_tag"] == "text-classification"
    (result,) = card.data.eval_results
    assert result.metric_type == "accuracy" and result.dataset_split == "test"
    assert result.metric_value == pytest.approx(cell["metrics"]["test_accuracy"], abs=1e-4)
    k = data["kdbench"]
    assert (k["method"], k["task"], k["domain"], k["fraction"], k["seed"]) == ("kd", "toy", "garden", 1.0, 1)
    assert k["method_options"] == cell["config"]["method_options"]
    assert k["teacher"]["model"] == "tiny:L4-H64-A4" and k["teacher"]["keys"] == [t["key"] for t in cell["teachers"]]
    lo, hi = k["test_accuracy_ci95"]
    assert lo <= k["test_accuracy"] <= hi and k["ci_method"].startswith("percentile bootstrap")
    assert k["parameters"] == cell["params"]["model"] and k["version"] == cell["versions"]["kdbench"]
    assert k["command"] == "kdbench run --methods kd --tasks toy"
    # the metadata round-trips through huggingface_hub's parser unchanged
    from huggingface_hub import ModelCardData

    assert ModelCardData(**data).to_dict() == data


def test_export_copies_a_kept_student_and_refuses_in_one_line(saved, tmp_path, capsys):
    out = tmp_path / "exported"
    assert cli.main(["export", str(saved), "--cell", KEYS[0], "-o", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in (saved / "students" / KEYS[0]).iterdir())
    assert (out / "model.safetensors").read_bytes() == (saved / "students" / KEYS[0] / "model.safetensors").read_bytes()
    capsys.readouterr()
    for argv, words in [(["--cell", KEYS[0], "-o", str(out)], "not an empty folder"),
                        (["--cell", "toy__garden__kd__f1__s9", "-o", str(tmp_path / "x")], "unknown cell"),
                        ]:
        assert cli.main(["export", str(saved), *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and words in err, err


def test_best_keeps_the_seed_with_the_best_dev_accuracy(saved, tmp_path, capsys):
    import shutil

    out = tmp_path / "best"
    shutil.copytree(saved, out)
    run_toy(out, "best")  # every cell is done: the rerun only picks the best student per group
    dev = {k: json.loads((out / "cells" / f"{k}.json").read_text())["metrics"]["dev_accuracy"] for k in KEYS}
    best = max(KEYS, key=lambda k: (dev[k], -KEYS.index(k)))
    assert sorted(p.name for p in (out / "students").iterdir()) == [best]
    other = next(k for k in KEYS if k != best)
    assert cli.main(["export", str(out), "--cell", other, "-o", str(tmp_path / "x")]) == 2
    assert "has no kept student" in capsys.readouterr().err


def test_a_student_with_another_head_is_refused(tmp_path):
    profile = resolve_profile("tiny")
    tok_examples = ToyTask().load()["garden"]
    from kdbench.data import train_wordpiece

    tok = train_wordpiece([ex.text for ex in tok_examples.train], tmp_path)
    check = encode(tok, tok_examples.test, profile.max_len)

    class ReluHead(KDModel):
        def head_input(self, pooled):
            return torch.relu(super().head_input(pooled))

    torch.manual_seed(0)
    standard = load_model(profile.student, 2, profile=profile, role="student", vocab_size=len(tok))
    assert export_model.to_hf(standard, "main", check) is not None
    torch.manual_seed(0)
    relu = load_model(profile.student, 2, profile=profile, role="student", vocab_size=len(tok), model_cls=ReluHead)
    with pytest.raises(KDBenchError, match="not the standard classifier"):
        export_model.to_hf(relu, "main", check)


def test_bad_save_students_value_is_one_line(tmp_path, capsys):
    assert cli.main(["run", "--save-students", "some", "--results-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--save-students: 'some' is not one of none, best, all" in err
    assert cli.main(["run", "--save-students", "all", "--executor", "ray", "--results-dir", str(tmp_path)]) == 2
    assert "--executor local only" in capsys.readouterr().err


def test_a_student_older_than_its_cell_is_not_exported(saved, tmp_path, capsys):
    """A cell recomputed without --save-students leaves a stale student: export refuses it."""
    import shutil

    out = tmp_path / "stale"
    shutil.copytree(saved, out)
    path = out / "cells" / f"{KEYS[0]}.json"
    cell = json.loads(path.read_text())
    assert export_model.kept_for(out, KEYS[0], cell)
    cell["created"] = "2099-01-01T00:00:00+0000"
    path.write_text(json.dumps(cell))
    assert not export_model.kept_for(out, KEYS[0], cell)
    assert cli.main(["export", str(out), "--cell", KEYS[0], "-o", str(tmp_path / "x")]) == 2
    assert "earlier computation of the cell" in capsys.readouterr().err


def test_cli_run_saves_a_student_whose_card_holds_the_exact_command(tmp_path, data_dir, cache_dir, capsys):
    """The command-line path: kdbench run --save-students all (real data, tiny profile), then export."""
    results = tmp_path / "r"
    argv = ["run", "--methods", "kd", "--tasks", "amazon", "--domains", "books", "--fractions", "0.1",
            "--profile", "tiny", "--data-dir", str(data_dir), "--cache-dir", str(cache_dir),
            "--results-dir", str(results), "--save-students", "all"]
    assert cli.main(argv) == 0
    key = "amazon__books__kd__f0.1__s0"
    card = ModelCard.load(results / "students" / key / "README.md")
    assert card.data.to_dict()["kdbench"]["command"] == shlex.join(["kdbench", *argv])
    assert cli.main(["export", str(results), "--cell", key, "-o", str(tmp_path / "out")]) == 0
    assert AutoModelForSequenceClassification.from_pretrained(tmp_path / "out").num_labels == 2
