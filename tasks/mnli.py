"""MultiNLI as a five-domain task (one domain per matched genre), split as in Meta-KD.

Data
    ``<data-dir>/mnli/multinli_1.0_train.jsonl`` and ``<data-dir>/mnli/multinli_1.0_dev_matched.jsonl``
    in MultiNLI's own jsonl format. Fields used: ``gold_label``, ``sentence1`` (premise, the example's
    ``text``), ``sentence2`` (hypothesis, ``text_pair``), ``genre``; ``pairID`` when present gives the
    example id, otherwise ``"<file stem>:<line number>"`` (1-based) does. Rows whose ``gold_label`` is
    ``"-"`` (annotators did not agree) are dropped, as everyone does; rows of genres outside the five
    matched ones are ignored. Anything else that is not a well-formed row raises
    :class:`MnliFormatError` naming the file and line: a silently skipped row would change the split.

    Without ``data_dir`` the full corpus is fetched from the Hugging Face hub (``nyu-mll/multi_nli``
    at the pinned commit :data:`HF_REVISION`, ``label`` -1 meaning no gold label), so results match
    the paper's data size; the subset under ``shared/data`` is ~4k train rows per genre instead of
    ~77k. Every cell records the pinned revision (``data_revision``).

Split (per genre)
    train/dev: the genre's labelled train rows (in file order) through
    :func:`kdbench_tasks._split.stratified_holdout` with 10 folds and seed 11111; fold 0 (10%, one
    ``ceil(n_label / 10)`` share per label) is **dev**, the rest **train**. test: the genre's labelled
    ``dev_matched`` rows in file order (MultiNLI's test labels are not public).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from kdbench import hookimpl
from kdbench.api import DomainData, Example, KDBenchError, Task

from ._split import stratified_holdout

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["HF_DATASET", "HF_REVISION", "SEED", "MnliFormatError", "MnliRow", "MnliTask", "parse_jsonl"]

SEED = 11111
HF_DATASET = "nyu-mll/multi_nli"
#: the hub commit loaded without --data-dir: "Convert dataset to Parquet (#5)", 2024-01-04, the head of
#: ``main`` since (https://huggingface.co/datasets/nyu-mll/multi_nli/tree/main shows da70db2)
HF_REVISION = "da70db2af9d09693783c3320c4249840212ee221"
TRAIN_FILE = "multinli_1.0_train.jsonl"
DEV_FILE = "multinli_1.0_dev_matched.jsonl"
GENRES = ("fiction", "government", "slate", "telephone", "travel")
LABELS = ("entailment", "neutral", "contradiction")
_LABEL_IDS = {name: i for i, name in enumerate(LABELS)}
_FIELDS = ("gold_label", "sentence1", "sentence2", "genre")
_EXPECTED = (
    f"expected <data-dir>/mnli/{TRAIN_FILE} and <data-dir>/mnli/{DEV_FILE}; "
    "pass --data-dir or set KDBENCH_DATA_DIR"
)


class MnliFormatError(KDBenchError):
    """A MultiNLI jsonl line that is not a well-formed row (the message names file and line)."""


@dataclass(frozen=True)
class MnliRow:
    """One labelled MultiNLI pair; ``label`` indexes :data:`LABELS`."""

    id: str
    genre: str
    label: int
    premise: str
    hypothesis: str


def parse_jsonl(data: bytes, source: str = "<bytes>", id_prefix: str = "row") -> list[MnliRow]:
    """Parse MultiNLI jsonl bytes into labelled rows, dropping ``gold_label == "-"`` and blank lines.

    ``id_prefix`` (the file stem) builds ids for rows without ``pairID``. Raises
    :class:`MnliFormatError` for undecodable or invalid JSON, a non-object line, a missing or
    non-string field, an unknown ``gold_label`` or an unusable ``pairID``.
    """
    rows: list[MnliRow] = []
    for line_no, raw in enumerate(data.split(b"\n"), 1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as e:
            _fail(source, line_no, f"not UTF-8 ({e.reason} at byte {e.start})")
        except (ValueError, RecursionError) as e:  # JSONDecodeError is a ValueError; deep nesting recurses
            _fail(source, line_no, f"invalid JSON ({type(e).__name__}: {e})")
        if not isinstance(obj, dict):
            _fail(source, line_no, f"expected a JSON object, got {type(obj).__name__}")
        for key in _FIELDS:
            if not isinstance(obj.get(key), str):
                _fail(source, line_no, f"field {key!r} missing or not a string")
        gold = obj["gold_label"]
        if gold == "-":
            continue
        if gold not in _LABEL_IDS:
            _fail(source, line_no, f"unknown gold_label {gold[:40]!r}; expected one of {', '.join(LABELS)} or '-'")
        rows.append(MnliRow(id=_row_id(obj.get("pairID"), source, line_no, id_prefix), genre=obj["genre"],
                            label=_LABEL_IDS[gold], premise=obj["sentence1"], hypothesis=obj["sentence2"]))
    return rows


def _row_id(pair_id: Any, source: str, line_no: int, id_prefix: str) -> str:
    if pair_id is None:
        return f"{id_prefix}:{line_no}"
    if (isinstance(pair_id, str) and pair_id.strip()) or (isinstance(pair_id, int) and not isinstance(pair_id, bool)):
        return str(pair_id)
    _fail(source, line_no, f"pairID must be a non-empty string or an integer, got {pair_id!r:.40}")


def _fail(source: str, line_no: int, what: str) -> NoReturn:
    raise MnliFormatError(f"mnli: {source}:{line_no}: {' '.join(what.split())}")


class MnliTask(Task):
    """Natural language inference over five MultiNLI genres; see the module docstring."""

    name = "mnli"
    description = "MultiNLI, 5 matched genres as domains; train/dev 90/10 of train, test = dev_matched"
    version = "1"
    domains = GENRES
    labels = LABELS
    revision = HF_REVISION

    def __init__(self, data_dir: Path | None = None, cache_dir: Path | None = None) -> None:
        super().__init__(data_dir, cache_dir)
        self._data: dict[str, DomainData] | None = None

    def load(self) -> dict[str, DomainData]:
        """Read and split every genre once per instance."""
        if self._data is None:
            if self.data_dir is not None:
                train, test = _read_local(Path(self.data_dir) / "mnli")
            else:
                train, test = self._read_hf()
            _check_unique_ids(train + test)
            self._data = {g: _split_genre(g, train, test) for g in self.domains}
        return dict(self._data)

    def _read_hf(self) -> tuple[list[MnliRow], list[MnliRow]]:
        cache = str(Path(self.cache_dir) / "hf-datasets") if self.cache_dir is not None else None
        try:
            import datasets

            ds = datasets.load_dataset(HF_DATASET, revision=HF_REVISION, cache_dir=cache)
            return _hf_rows(ds["train"], "train"), _hf_rows(ds["validation_matched"], "validation_matched")
        except Exception as e:  # the hub, fsspec and datasets raise many unrelated types on failure
            where = cache or "the Hugging Face cache"
            reason = " ".join(f"{type(e).__name__}: {e}".split())
            raise KDBenchError(
                f"mnli: no data: looked in {where}; {_EXPECTED} (download of {HF_DATASET} failed: {reason})"
            ) from e


def _read_local(root: Path) -> tuple[list[MnliRow], list[MnliRow]]:
    paths = [root / TRAIN_FILE, root / DEV_FILE]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise KDBenchError(f"mnli: no data: looked in {root} (missing {', '.join(missing)}); {_EXPECTED}")
    out: list[list[MnliRow]] = []
    for path in paths:
        try:
            data = path.read_bytes()
        except OSError as e:
            raise KDBenchError(f"mnli: cannot read {path}: {' '.join(str(e).split())}") from e
        out.append(parse_jsonl(data, source=str(path), id_prefix=path.stem))
    return out[0], out[1]


def _hf_rows(split: Any, name: str) -> list[MnliRow]:
    """Map a ``nyu-mll/multi_nli`` split (premise, hypothesis, label, genre[, pairID]) to rows."""
    n = len(split)
    ids: Iterable[Any] = split["pairID"] if "pairID" in split.column_names else (f"{name}:{i}" for i in range(n))
    rows = []
    for pid, premise, hypothesis, label, genre in zip(
        ids, split["premise"], split["hypothesis"], split["label"], split["genre"], strict=True
    ):
        if label == -1:
            continue
        if label not in range(len(LABELS)):
            raise MnliFormatError(f"mnli: {HF_DATASET} {name}: unexpected label {label!r}")
        rows.append(MnliRow(id=str(pid), genre=genre, label=int(label), premise=premise, hypothesis=hypothesis))
    return rows


def _check_unique_ids(rows: list[MnliRow]) -> None:
    dupes = [i for i, c in Counter(r.id for r in rows).items() if c > 1]
    if dupes:
        raise MnliFormatError(f"mnli: {len(dupes)} example ids occur more than once (e.g. {dupes[0]!r:.60})")


def _split_genre(genre: str, train_rows: list[MnliRow], test_rows: list[MnliRow]) -> DomainData:
    pool = [_example(r) for r in train_rows if r.genre == genre]
    test = tuple(_example(r) for r in test_rows if r.genre == genre)
    if not pool or not test:
        raise KDBenchError(f"mnli: genre {genre!r} has no labelled rows in the {'train' if not pool else 'dev_matched'} data")
    train_idx, dev_idx = stratified_holdout([ex.label for ex in pool], n_folds=10, seed=SEED)
    return DomainData(domain=genre, train=tuple(pool[i] for i in train_idx),
                      dev=tuple(pool[i] for i in dev_idx), test=test)


def _example(r: MnliRow) -> Example:
    return Example(id=r.id, text=r.premise, label=r.label, text_pair=r.hypothesis)


@hookimpl
def kdbench_register_tasks() -> list[type[Task]]:
    """Register :class:`MnliTask` with kdbench's plugin manager."""
    return [MnliTask]
