"""Tests of the MNLI task: counts checked against an independent read of the files, pinned splits,
the jsonl parser's errors (incl. fuzzing) and the Hugging Face fallback."""

from __future__ import annotations

import json
import math
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from _paths import DATA, need
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kdbench.api import DomainData, Example, KDBenchError
from kdbench_tasks.mnli import DEV_FILE, HF_REVISION, TRAIN_FILE, MnliFormatError, MnliTask, parse_jsonl

GENRES = ("fiction", "government", "slate", "telephone", "travel")
LABEL_IDS = {"entailment": 0, "neutral": 1, "contradiction": 2}

#: DomainData.split_hash() per genre on shared/data/mnli. A change means the data, the parser or the
#: split changed: bump MnliTask.version and re-pin, never just re-pin.
PINNED_HASHES = {
    "fiction": "07973c1c327151cd",
    "government": "db63579974538eea",
    "slate": "807eaf2be9d038f9",
    "telephone": "5f0272be7a321493",
    "travel": "f901140602b7c3bc",
}


@pytest.fixture(scope="module")
def data_dir() -> Path:
    return need(DATA / "mnli" / TRAIN_FILE, "MNLI data").parents[1]


@pytest.fixture(scope="module")
def data(data_dir: Path) -> dict[str, DomainData]:
    return MnliTask(data_dir).load()


def _file_rows(path: Path) -> list[dict[str, Any]]:
    """The file read the obvious way, independently of the task's parser."""
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _key(ex: Example) -> tuple[str, str | None, int]:
    return ex.text, ex.text_pair, ex.label


def _row_key(row: dict[str, Any]) -> tuple[str, str, int]:
    return row["sentence1"], row["sentence2"], LABEL_IDS[row["gold_label"]]


# ------------------------------------------------------------------------------------- real data
@pytest.mark.realdata
def test_counts_match_the_files(data_dir: Path, data: dict[str, DomainData]) -> None:
    train_rows = _file_rows(data_dir / "mnli" / TRAIN_FILE)
    dev_rows = _file_rows(data_dir / "mnli" / DEV_FILE)
    all_train = Counter(r["genre"] for r in train_rows)
    all_dev = Counter(r["genre"] for r in dev_rows)
    # the numbers shared/README.md documents
    assert all_train == {"fiction": 3835, "government": 3883, "slate": 4026, "telephone": 4270, "travel": 3985}
    assert all_dev == {"fiction": 993, "government": 1016, "slate": 1002, "telephone": 1005, "travel": 982}
    assert set(data) == set(GENRES)
    for genre, dd in data.items():
        labelled = [r for r in train_rows if r["genre"] == genre and r["gold_label"] != "-"]
        assert len(dd.train) + len(dd.dev) == len(labelled), genre
        per_label = Counter(r["gold_label"] for r in labelled)
        assert len(dd.dev) == sum(math.ceil(n / 10) for n in per_label.values()), genre
        assert Counter(ex.label for ex in dd.dev) == {LABEL_IDS[k]: math.ceil(n / 10) for k, n in per_label.items()}
        assert Counter(_key(ex) for ex in dd.train + dd.dev) == Counter(_row_key(r) for r in labelled)
        test_rows = [r for r in dev_rows if r["genre"] == genre and r["gold_label"] != "-"]
        assert [_key(ex) for ex in dd.test] == [_row_key(r) for r in test_rows], genre


@pytest.mark.realdata
def test_splits_are_disjoint_with_unique_ids(data: dict[str, DomainData]) -> None:
    ids = [ex.id for dd in data.values() for ex in dd.train + dd.dev + dd.test]
    assert len(ids) == len(set(ids))
    assert all(ex.text_pair for dd in data.values() for ex in dd.train)


@pytest.mark.realdata
def test_split_hash_is_stable_and_pinned(data_dir: Path) -> None:
    first = {g: dd.split_hash() for g, dd in MnliTask(data_dir).load().items()}
    second = {g: dd.split_hash() for g, dd in MnliTask(data_dir).load().items()}
    assert first == second == PINNED_HASHES


# ------------------------------------------------------------------------------------ synthetic
def _row(genre: str = "fiction", label: str = "neutral", **extra: Any) -> dict[str, Any]:
    return {"gold_label": label, "sentence1": f"p {genre} {label}", "sentence2": "h", "genre": genre, **extra}


def _write(root: Path, train: list[Any], dev: list[Any] | None = None) -> Path:
    d = root / "mnli"
    d.mkdir(parents=True, exist_ok=True)
    for name, rows in ((TRAIN_FILE, train), (DEV_FILE, dev if dev is not None else train)):
        (d / name).write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return root


def _all_genres(n: int) -> list[dict[str, Any]]:
    return [_row(g, lab) for g in GENRES for lab in LABEL_IDS for _ in range(n)]


def test_small_files_split_and_ids(tmp_path: Path) -> None:
    rows = _all_genres(10) + [_row("fiction", "-"), _row("nineeleven", "neutral")]
    data = MnliTask(_write(tmp_path, rows)).load()
    for genre, dd in data.items():
        assert (len(dd.train), len(dd.dev), len(dd.test)) == (27, 3, 30), genre
        assert Counter(ex.label for ex in dd.dev) == {0: 1, 1: 1, 2: 1}
    assert data["fiction"].test[0].id == "multinli_1.0_dev_matched:1"
    assert data["fiction"].test[0].text == "p fiction entailment" and data["fiction"].test[0].text_pair == "h"


def test_pair_id_is_the_example_id(tmp_path: Path) -> None:
    train = [_row(g, lab, pairID=f"{g}{lab}{i}t") for g in GENRES for lab in LABEL_IDS for i in range(3)]
    dev = [_row(g, lab, pairID=f"{g}{lab}{i}d", promptID=7) for g in GENRES for lab in LABEL_IDS for i in range(3)]
    data = MnliTask(_write(tmp_path, train, dev)).load()
    assert {ex.id for ex in data["slate"].test} == {f"slate{lab}{i}d" for lab in LABEL_IDS for i in range(3)}


def test_duplicate_pair_ids_are_an_error(tmp_path: Path) -> None:
    rows = [_row(g, lab, pairID="same") for g in GENRES for lab in LABEL_IDS]
    with pytest.raises(MnliFormatError, match="more than once"):
        MnliTask(_write(tmp_path, rows)).load()


def test_malformed_line_names_file_and_line(tmp_path: Path) -> None:
    rows: list[Any] = _all_genres(2)
    rows.insert(2, '{"gold_label": "neutral", "sentence1": ')
    root = _write(tmp_path, rows, _all_genres(2))
    with pytest.raises(MnliFormatError) as info:
        MnliTask(root).load()
    msg = str(info.value)
    assert f"{root / 'mnli' / TRAIN_FILE}:3:" in msg and "invalid JSON" in msg and "\n" not in msg


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        (b"[1, 2]", "expected a JSON object, got list"),
        (b'"text"', "expected a JSON object, got str"),
        (json.dumps({"gold_label": "neutral", "sentence1": "a", "genre": "slate"}).encode(), "'sentence2' missing"),
        (json.dumps(_row(label="maybe")).encode(), "unknown gold_label 'maybe'"),
        (json.dumps({**_row(), "sentence1": None}).encode(), "'sentence1' missing or not a string"),
        (json.dumps(_row(pairID=["x"])).encode(), "pairID must be"),
        (json.dumps(_row(pairID=True)).encode(), "pairID must be"),
        (b'{"gold_label": "neutral\xff"}', "not UTF-8"),
        (b"[" * 100_000, "invalid JSON"),
        (b"{}\n", "'gold_label' missing"),
    ],
)
def test_parse_errors(line: bytes, fragment: str) -> None:
    data = json.dumps(_row()).encode() + b"\n\n" + line + b"\n"
    with pytest.raises(MnliFormatError) as info:
        parse_jsonl(data, source="f.jsonl")
    assert "mnli: f.jsonl:3: " in str(info.value) and fragment in str(info.value)
    assert "\n" not in str(info.value)


def test_parse_drops_unlabelled_rows_and_blank_lines() -> None:
    data = b"\r\n".join(json.dumps(r).encode() for r in [_row(label="-"), _row(label="contradiction")]) + b"\n \n"
    (row,) = parse_jsonl(data, source="f.jsonl", id_prefix="f")
    assert (row.id, row.label, row.genre) == ("f:2", 2, "fiction")


def test_missing_data_dir_is_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(KDBenchError) as info:
        MnliTask(tmp_path / "nowhere").load()
    msg = str(info.value)
    assert str(tmp_path / "nowhere" / "mnli") in msg and TRAIN_FILE in msg and "\n" not in msg


def test_missing_dev_file_is_named(tmp_path: Path) -> None:
    root = _write(tmp_path, _all_genres(1))
    (root / "mnli" / DEV_FILE).unlink()
    with pytest.raises(KDBenchError, match=f"missing {DEV_FILE}"):
        MnliTask(root).load()


def test_genre_without_rows_is_an_error(tmp_path: Path) -> None:
    rows = [r for r in _all_genres(2) if r["genre"] != "travel"]
    with pytest.raises(KDBenchError, match="'travel' has no labelled rows in the train"):
        MnliTask(_write(tmp_path, rows)).load()


# ---------------------------------------------------------------------------------- HF fallback
def test_hub_failure_is_a_one_line_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    datasets = pytest.importorskip("datasets")

    def offline(*args: object, **kwargs: object) -> None:
        raise ConnectionError("no network\nhere")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(KDBenchError) as info:
        MnliTask(None, cache_dir=tmp_path).load()
    msg = str(info.value)
    assert "nyu-mll/multi_nli" in msg and "no network here" in msg and "KDBENCH_DATA_DIR" in msg
    assert "\n" not in msg


def test_hub_rows_are_mapped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    datasets = pytest.importorskip("datasets")

    def split(tag: str) -> Any:
        rows = [(g, lab, i) for g in GENRES for lab in range(3) for i in range(4)] + [("travel", -1, 99)]
        return datasets.Dataset.from_dict({
            "pairID": [f"{g}{lab}{i}{tag}" for g, lab, i in rows],
            "premise": [f"p{i}" for _, _, i in rows],
            "hypothesis": [f"h{i}" for _, _, i in rows],
            "label": [lab for _, lab, _ in rows],
            "genre": [g for g, _, _ in rows],
        })

    seen: dict[str, Any] = {}

    def fake_load(name: str, **kwargs: Any) -> Any:
        seen.update(name=name, **kwargs)
        return {"train": split("t"), "validation_matched": split("d")}

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    data = MnliTask(None, cache_dir=tmp_path).load()
    # the hub's commit "Convert dataset to Parquet (#5)", pinned: a new upload must not change the data
    assert seen == {"name": "nyu-mll/multi_nli", "revision": "da70db2af9d09693783c3320c4249840212ee221",
                    "cache_dir": str(tmp_path / "hf-datasets")}
    dd = data["travel"]
    assert (len(dd.train), len(dd.dev), len(dd.test)) == (9, 3, 12)
    assert dd.test[0] == Example(id="travel00d", text="p0", label=0, text_pair="h0")


def test_every_cell_records_the_pinned_revision(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    datasets = pytest.importorskip("datasets")
    from kdbench import registry, runner
    from kdbench.config import RunConfig

    words = ["good", "bad", "fine", "cat", "dog", "sun", "rain", "tree"]

    def split(tag: str) -> Any:
        rows = [(g, i % 3, i) for g in GENRES for i in range(12)]
        return datasets.Dataset.from_dict({
            "pairID": [f"{g}{i}{tag}" for g, _, i in rows],
            "premise": [f"{words[i % 8]} {words[(i + lab) % 8]}" for _, lab, i in rows],
            "hypothesis": [f"{words[lab]} {words[i % 5]}" for _, lab, i in rows],
            "label": [lab for _, lab, _ in rows], "genre": [g for g, _, _ in rows]})

    monkeypatch.delenv("KDBENCH_DATA_DIR", raising=False)  # load from the (faked) hub
    monkeypatch.setattr(datasets, "load_dataset",
                        lambda name, **kw: {"train": split("t"), "validation_matched": split("d")})
    config = RunConfig.from_sources({"profile": "tiny", "tasks": "mnli", "domains": "fiction,travel",
                                     "methods": "student", "results_dir": tmp_path / "r",
                                     "cache_dir": tmp_path / "cache", "device": "cpu"})
    summary = runner.run(config, registry.load())
    assert summary.ok == 2
    for f in (tmp_path / "r" / "cells").glob("*.json"):
        cell = json.loads(f.read_text())
        assert cell["data_revision"] == cell["config"]["data_revision"] == HF_REVISION


# ------------------------------------------------------------------------------------------ fuzz
_FUZZ = settings(max_examples=100, deadline=timedelta(seconds=2), suppress_health_check=[HealthCheck.too_slow])
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4),
    max_leaves=10,
)


def _parses_or_raises_format_error(data: bytes) -> None:
    try:
        rows = parse_jsonl(data, source="fuzz.jsonl")
    except MnliFormatError as e:
        assert "\n" not in str(e) and "fuzz.jsonl:" in str(e)
    else:
        assert all(r.label in (0, 1, 2) and isinstance(r.premise, str) for r in rows)


@_FUZZ
@given(st.binary(max_size=200))
def test_fuzz_random_bytes(data: bytes) -> None:
    _parses_or_raises_format_error(data)


@_FUZZ
@given(st.lists(_JSON, max_size=5))
def test_fuzz_random_json_lines(values: list[Any]) -> None:
    _parses_or_raises_format_error(b"\n".join(json.dumps(v).encode() for v in values))


@_FUZZ
@given(st.dictionaries(st.sampled_from(["gold_label", "sentence1", "sentence2", "genre", "pairID"]),
                       _JSON | st.sampled_from(["-", "neutral", "entailment", "fiction"]), max_size=5))
def test_fuzz_rows_with_random_field_values(row: dict[str, Any]) -> None:
    _parses_or_raises_format_error(json.dumps(row).encode())


@_FUZZ
@given(st.data())
def test_fuzz_truncated_and_spliced_lines(data: st.DataObject) -> None:
    line = json.dumps(_row(pairID="1a")).encode()
    i = data.draw(st.integers(0, len(line)))
    j = data.draw(st.integers(i, len(line)))
    _parses_or_raises_format_error(line[:i] + data.draw(st.binary(max_size=5)) + line[j:])


_TEXT = st.text(st.characters(blacklist_categories=["Cs"]), max_size=20)


@_FUZZ
@given(st.lists(st.tuples(st.sampled_from([*LABEL_IDS, "-"]), _TEXT, _TEXT, st.sampled_from(GENRES)), max_size=10))
def test_fuzz_well_formed_rows_are_never_dropped(rows: list[tuple[str, str, str, str]]) -> None:
    data = b"\n".join(json.dumps(dict(zip(("gold_label", "sentence1", "sentence2", "genre"), r, strict=True))).encode()
                      for r in rows)
    parsed = parse_jsonl(data, source="fuzz.jsonl", id_prefix="fuzz")
    kept = [(i + 1, r) for i, r in enumerate(rows) if r[0] != "-"]
    assert [(p.id, p.label, p.premise, p.hypothesis, p.genre) for p in parsed] == [
        (f"fuzz:{n}", LABEL_IDS[r[0]], r[1], r[2], r[3]) for n, r in kept
    ]
