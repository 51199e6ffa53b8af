"""Exported students: a trained student as a Hugging Face model directory with a model card.

kdbench's students are :class:`~kdbench.modeling.KDModel`: a BERT-family backbone (with its pooler),
dropout and the linear head ``heads["main"]``. At evaluation that is exactly what
``BertForSequenceClassification`` computes (``classifier(dropout(pooler_output))``), so a student is
exported by building the backbone's ``AutoModelForSequenceClassification`` from the student's own
config and copying the backbone and head weights into it. :func:`to_hf` then *checks* that both
models give the same logits on real inputs and refuses a student whose head computes something else
(a head on another activation, several heads, a student class with extra branches).

A saved student is a folder that ``AutoModelForSequenceClassification.from_pretrained(folder)`` and
``AutoTokenizer.from_pretrained(folder)`` load::

    <results-dir>/students/<cell key>/
      config.json, model.safetensors      the student (transformers' save_pretrained)
      tokenizer.json, tokenizer_config.json, ...   the run's tokenizer (save_pretrained)
      README.md                           model card: YAML metadata in the Hub's format, then prose

Folders are written to a temporary sibling and renamed into place, so a reader never sees half a
student. ``kdbench run --save-students all|best`` writes them; ``kdbench export RUN --cell KEY -o DIR``
copies a kept one elsewhere.
"""

from __future__ import annotations

import copy
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kdbench.errors import KDBenchError

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from kdbench.data import Encoded
    from kdbench.grid import Cell
    from kdbench.modeling import KDModel

STUDENTS = "students"
#: logits of the exported model may differ from the student's by float noise only
TOLERANCE = 1e-4


def students_dir(results_dir: Path) -> Path:
    return results_dir / STUDENTS


def student_dir(results_dir: Path, key: str) -> Path:
    return students_dir(results_dir) / key


def to_hf(model: KDModel, head: str, check: Encoded, labels: Iterable[str] | None = None) -> Any:
    """The student as a ``transformers`` sequence-classification model, checked on ``check``.

    Raises :class:`KDBenchError` (one line) when the student is not the standard
    encoder → pooler → dropout → linear head, i.e. when the rebuilt model's logits differ.
    """
    import torch
    from transformers import AutoModelForSequenceClassification

    from kdbench.data import batches

    layer = model.heads[head]
    if not isinstance(layer, torch.nn.Linear):
        raise KDBenchError(f"cannot export the student: its head {head!r} is not one linear layer")
    config = copy.deepcopy(model.config)
    config.num_labels = int(layer.out_features)
    if labels is not None:
        names = list(labels)
        if len(names) == config.num_labels:
            config.id2label = dict(enumerate(names))
            config.label2id = {n: i for i, n in enumerate(names)}
    hf = AutoModelForSequenceClassification.from_config(config)
    classifier = getattr(hf, "classifier", None)
    if not isinstance(classifier, torch.nn.Linear):
        raise KDBenchError(f"cannot export the student: {type(hf).__name__} has no linear classifier")
    try:
        hf.base_model.load_state_dict(model.backbone.state_dict())
        classifier.load_state_dict(layer.state_dict())
    except RuntimeError as exc:
        raise KDBenchError(f"cannot export the student: {str(exc).splitlines()[0]}") from None
    device = next(model.parameters()).device
    hf.to(device).eval()
    was_training = model.training
    model.eval()
    try:
        batch = next(iter(batches(check, 32)))
        inputs = {k: batch[k].to(device) for k in ("input_ids", "attention_mask", "token_type_ids")}
        with torch.no_grad():
            ours = model(**inputs, head=head).logits.float()
            theirs = hf(**inputs).logits.float()
    finally:
        model.train(was_training)
    diff = float((ours - theirs).abs().max())
    if not diff <= TOLERANCE:
        raise KDBenchError(f"cannot export the student: {type(hf).__name__} gives other logits (max "
                           f"difference {diff:.3g}); its head is not the standard classifier(dropout(pooled))")
    return hf.cpu()


# ----------------------------------------------------------------------------------- model card
def card_metadata(result: Mapping[str, Any], profile: Mapping[str, Any], command: str | None) -> dict[str, Any]:
    """The card's YAML metadata: the Hub's standard keys, plus everything about the cell under ``kdbench``."""
    from kdbench import stats

    metrics = result["metrics"]
    pred, gold = result["predictions"]["pred"], result["predictions"]["gold"]
    summary = stats.summarize([metrics["test_accuracy"]], [[p == g for p, g in zip(pred, gold, strict=True)]])
    teachers = result.get("teachers") or []
    student_model = profile.get("student", "")
    cell = f"{result['task']}/{result['domain']}"
    meta: dict[str, Any] = {
        "library_name": "transformers",
        "pipeline_tag": "text-classification",
        "tags": ["kdbench", "knowledge-distillation", result["method"], result["task"]],
        "metrics": ["accuracy"],
        "model-index": [{
            "name": f"kdbench {result['method']} {cell} f{result['fraction']:g} s{result['seed']}",
            "results": [{
                "task": {"type": "text-classification", "name": "Text Classification"},
                "dataset": {"type": result["task"], "name": f"{result['task']} ({result['domain']})",
                            "config": result["domain"], "split": "test"},
                "metrics": [{"type": "accuracy", "name": "Test accuracy (%)",
                             "value": round(float(metrics["test_accuracy"]), 4)}],
            }],
        }],
        "kdbench": {
            "version": (result.get("versions") or {}).get("kdbench"),
            "git_sha": (result.get("versions") or {}).get("git_sha"),
            "method": result["method"],
            "method_options": result["config"].get("method_options", {}),
            "teacher": ({"model": profile.get("teacher"), "keys": [t["key"] for t in teachers],
                         "kinds": sorted({t["kind"] for t in teachers})} if teachers else None),
            "student_model": student_model,
            "profile": profile.get("name"),
            "task": result["task"], "domain": result["domain"],
            "fraction": result["fraction"], "seed": result["seed"],
            "test_accuracy": round(float(metrics["test_accuracy"]), 4),
            "test_accuracy_ci95": [round(summary.ci_low, 4), round(summary.ci_high, 4)],
            "ci_method": "percentile bootstrap over the test examples (10,000 resamples)",
            "dev_accuracy": round(float(metrics["dev_accuracy"]), 4),
            "n_test": len(gold),
            "parameters": (result.get("params") or {}).get("model"),
            "config_hash": result.get("config_hash"),
            "created": result.get("created"),
            "command": command,
        },
    }
    if student_model and not student_model.startswith("tiny:"):
        meta["base_model"] = student_model
    return meta


def card_text(result: Mapping[str, Any], profile: Mapping[str, Any], command: str | None) -> str:
    """A model card (README.md): metadata as ``huggingface_hub.ModelCardData`` writes it, then prose."""
    from huggingface_hub import ModelCardData

    meta = card_metadata(result, profile, command)
    data = ModelCardData(**meta)  # parses model-index: refuses metadata the Hub would not read
    k = meta["kdbench"]
    lo, hi = k["test_accuracy_ci95"]
    teacher = (f"`{k['teacher']['model']}` ({', '.join(k['teacher']['kinds'])}; key "
               f"{', '.join(k['teacher']['keys'])})" if k["teacher"] else "none (trained on the labels only)")
    options = ", ".join(f"{a}={b}" for a, b in sorted(k["method_options"].items())) or "none"
    body = f"""
# kdbench student: {k['method']} on {k['task']}/{k['domain']}

A student distilled by kdbench {k['version']} (a knowledge-distillation benchmark) with the method
**{k['method']}** (options: {options}), trained on fraction {k['fraction']:g} of the
{k['task']}/{k['domain']} train split with seed {k['seed']}.

| | |
|---|---|
| student model | `{k['student_model']}` (profile `{k['profile']}`), {k['parameters']:,} parameters |
| teacher | {teacher} |
| test accuracy | {k['test_accuracy']:.2f} % (95% CI {lo:.2f}–{hi:.2f}, {k['ci_method']}; n = {k['n_test']}) |
| dev accuracy | {k['dev_accuracy']:.2f} % |

## Use

```python
from transformers import AutoModelForSequenceClassification, AutoTokenizer

model = AutoModelForSequenceClassification.from_pretrained("PATH")
tokenizer = AutoTokenizer.from_pretrained("PATH")
```

## Reproduce

```bash
{command or '(run from Python, not from the kdbench command)'}
```

The cell's full result (predictions, timings, loss curve) is `cells/{result['task']}__{result['domain']}__\
{result['method'].replace(':', '-')}__f{result['fraction']:g}__s{result['seed']}.json` of that run.
"""
    return f"---\n{data.to_yaml()}\n---\n{body}"


# -------------------------------------------------------------------------------------- writing
def _replace_dir(tmp: Path, folder: Path) -> None:
    """Move the finished ``tmp`` folder to ``folder``, replacing an older one (never half of one)."""
    old = None
    if folder.exists():
        old = folder.with_name(f".{folder.name}.old-{os.getpid()}")
        os.replace(folder, old)
    os.replace(tmp, folder)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def save_student(folder: Path, model: KDModel, head: str, tokenizer: Any, check: Encoded,
                 labels: Iterable[str], card: str, max_len: int | None = None) -> None:
    """Write the student, its tokenizer and its card to ``folder`` atomically (temp folder, rename).

    The tokenizer's ``model_max_length`` is set to the run's ``max_len``, so that
    ``tokenizer(text, truncation=True)`` truncates as the cell did.
    """
    hf = to_hf(model, head, check, labels)
    if max_len is not None:
        tokenizer = copy.deepcopy(tokenizer)
        tokenizer.model_max_length = max_len
    folder.parent.mkdir(parents=True, exist_ok=True)
    for stale in folder.parent.glob(f".{folder.name}.*"):  # left by a killed run
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.tmp-"))
    try:
        hf.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / "README.md").write_text(card, encoding="utf-8")
        _ordinary_modes(tmp)
        _replace_dir(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _ordinary_modes(folder: Path) -> None:
    """The modes of a new folder and files under the umask (mkdtemp's and some writers' are 0700/0600)."""
    from kdbench.results import file_mode

    os.chmod(folder, 0o777 & ~_umask())
    for path in folder.iterdir():
        if path.is_file():
            os.chmod(path, file_mode())


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def kept_for(results_dir: Path, key: str, result: Mapping[str, Any]) -> bool:
    """Whether ``students/<key>`` holds the student of this very result: its card names the result's
    config hash and creation time (a cell recomputed later without ``--save-students`` has a stale one)."""
    from huggingface_hub import metadata_load

    card = student_dir(results_dir, key) / "README.md"
    if not (card.parent / "config.json").exists() or not card.exists():
        return False
    try:
        meta = (metadata_load(card) or {}).get("kdbench") or {}
    except (OSError, ValueError):
        return False
    return bool(meta.get("config_hash") == result.get("config_hash") and meta.get("created") == result.get("created"))


def keep_best(results_dir: Path, cells: Iterable[Cell]) -> list[str]:
    """``--save-students best``: per method, task, domain and fraction, keep the saved student whose
    seed has the best dev accuracy (ties: the lowest seed) and delete the others. Returns the kept keys."""
    from kdbench import results as res

    groups: dict[tuple[str, str, str, float], list[tuple[float, int, str]]] = {}
    for cell in cells:
        result = res.read_json(res.cells_dir(results_dir) / f"{cell.key}.json")
        if result is None or result.get("status") != "ok" or not kept_for(results_dir, cell.key, result):
            continue
        groups.setdefault((cell.method, cell.task, cell.domain, cell.fraction), []).append(
            (-float(result["metrics"]["dev_accuracy"]), cell.seed, cell.key))
    kept = []
    for candidates in groups.values():
        candidates.sort()
        kept.append(candidates[0][2])
        for _, _, key in candidates[1:]:
            shutil.rmtree(student_dir(results_dir, key), ignore_errors=True)
    return kept


def export(results_dir: Path, key: str, out: Path) -> Path:
    """``kdbench export``: copy the kept student of cell ``key`` to ``out`` (a new folder)."""
    from kdbench import results as res

    result = res.read_json(res.cells_dir(results_dir) / f"{key}.json")
    if result is None:
        from kdbench.errors import did_you_mean

        keys = [p.stem for p, _ in res.iter_cells(results_dir)]
        raise KDBenchError(f"{results_dir}: " + did_you_mean("cell", key, keys))
    if result.get("status") != "ok":
        raise KDBenchError(f"cell {key} failed ({result.get('error', 'no error recorded')}); it has no student")
    src = student_dir(results_dir, key)
    if not (src / "config.json").exists():
        raise KDBenchError(f"cell {key} has no kept student in {students_dir(results_dir)}: rerun it with "
                           "--save-students all (best keeps only each group's best seed; teacher rows are never saved)")
    if not kept_for(results_dir, key, result):
        raise KDBenchError(f"the kept student of cell {key} is from an earlier computation of the cell, not "
                           "from its current result; delete the cell file and rerun it with --save-students all")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise KDBenchError(f"{out} exists and is not an empty folder; choose a new output folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-"))
    try:
        shutil.copytree(src, tmp, dirs_exist_ok=True)
        _ordinary_modes(tmp)
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
