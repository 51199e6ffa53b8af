"""Amazon multi-domain sentiment (Blitzer, Dredze & Pereira, ACL 2007): Meta-KD's split and a balanced one.

Data
    ``<data-dir>/amazon/sorted_data_acl/<dir>/{positive,negative}.review`` with ``<dir>`` one of
    ``books``, ``dvd``, ``electronics``, ``kitchen_&_housewares`` (the task calls the last one
    ``kitchen``): the layout of the original archive ``domain_sentiment_data.tar.gz``. Each file holds
    1,000 reviews, so 2,000 per domain. Positive (4-5 stars) is label 1, negative (1-2 stars) label 0.
    ``Example.text`` is the ``<review_text>`` field with runs of whitespace collapsed to one space.

    The files are pseudo-XML: no root element, unescaped ``&``, and (in dvd) about 500 bytes per file
    that are not valid UTF-8. So :func:`parse_reviews` parses ``<review>`` blocks, not the file, and
    bytes are decoded as UTF-8 with ``errors="replace"``. The parser is strict on purpose: a review it
    cannot read raises :class:`AmazonParseError`, never disappears silently, because a dropped review
    would silently change the benchmark's splits.

    148 texts repeat within their domain. That is a property of the published corpus (and of what
    Meta-KD trained on), so the duplicates are kept; a duplicate may land in two different splits.

    ``Example.id`` is ``"<domain>/<pos|neg>/<index in file>"``: the corpus' ``unique_id`` field is not
    unique, the position in the file is.

Splits
    ``amazon`` (the default) is **Meta-KD's official split, member for member**. The official
    preprocessing (alibaba/EasyNLP ``examples/knowledge_distillation/metakd/generate_senti_data.py``)
    pools the 8,000 reviews of the four domains, shuffles them with pandas and holds out fold 0 of a
    scikit-learn ``StratifiedKFold`` (stratified on sentiment only) as test, then fold 0 of the rest as
    dev. pandas and scikit-learn are not runtime dependencies: ``tasks/make_amazon_split.py`` ran that
    procedure once and wrote ``tasks/amazon_split.json`` (ids per split, library versions, sha256),
    and this task reads it, checking the sha256 against :data:`OFFICIAL_SPLIT_SHA256` every time.
    Totals are 6,480 / 720 / 800 as in the paper, but per domain the sizes are uneven (test
    199 / 185 / 213 / 203, dev 170 / 194 / 172 / 184 for books / dvd / electronics / kitchen) and the
    labels are not exactly balanced (books test: 105 negative, 94 positive). It needs the published
    corpus: every id of the file must exist, or loading fails with a one-line error.

    ``amazon-balanced`` is kdbench's own split, for equal domains: per domain, the 2,000 examples
    (negative file then positive file, each in file order) go through
    :func:`kdbench_tasks._split.stratified_holdout` twice: 10 stratified folds with seed 11111, fold
    0 is **test** (200 = 100/100); the remaining 1,800, again 10 folds with seed 11111, fold 0 is
    **dev** (180 = 90/90), the rest is **train** (1,620 = 810/810). It works on any corpus in the
    layout below (the tests use small synthetic ones).

Source
    ``data_dir`` when given (the CLI's ``--data-dir`` / ``KDBENCH_DATA_DIR``). Without it the original
    archive is downloaded once from the authors' page into ``cache_dir`` (default ``~/.cache/kdbench``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tarfile
import tempfile
from pathlib import Path
from typing import NoReturn

from kdbench import hookimpl
from kdbench.api import DomainData, Example, KDBenchError, Task

from ._split import stratified_holdout

__all__ = ["ARCHIVE_URL", "OFFICIAL_SPLIT_SHA256", "SEED", "AmazonBalancedTask", "AmazonParseError", "AmazonTask",
           "official_split", "parse_reviews"]

ARCHIVE_URL = "https://www.cs.jhu.edu/~mdredze/datasets/sentiment/domain_sentiment_data.tar.gz"
SEED = 11111
#: the official membership, written by tasks/make_amazon_split.py
SPLIT_FILE = Path(__file__).with_name("amazon_split.json")
#: sha256 of its id lists (make_amazon_split.splits_sha256); checked at every load
OFFICIAL_SPLIT_SHA256 = "ba61aed9c942e597752c6f8338917000a646d88099f0c0901a6f7f1d55c6d53b"
#: task domain name -> directory name in the archive
DOMAIN_DIRS = {
    "books": "books",
    "dvd": "dvd",
    "electronics": "electronics",
    "kitchen": "kitchen_&_housewares",
}
#: (file stem, label, id tag), in the order examples are concatenated before the split
_FILES = (("negative", 0, "neg"), ("positive", 1, "pos"))
_EXPECTED = (
    "expected <data-dir>/amazon/sorted_data_acl/<domain>/{positive,negative}.review for domains "
    + ", ".join(DOMAIN_DIRS.values())
    + "; pass --data-dir or set KDBENCH_DATA_DIR"
)


class AmazonParseError(KDBenchError):
    """A ``.review`` file that cannot be parsed without losing or inventing a review."""


# ------------------------------------------------------------------------------------------ parser
# Both patterns are free of nested quantifiers and are only ever searched forward from the end of the
# previous match, so parsing stays linear in the input however adversarial it is.
_REVIEW_TAG = re.compile(r"<(/?)review>")
_FIELD_OPEN = re.compile(r"<([A-Za-z_][A-Za-z0-9_]*)>")


def parse_reviews(text: str, source: str = "<text>") -> list[dict[str, str]]:
    """Parse every ``<review>...</review>`` block of ``text`` into a dict ``field -> stripped value``.

    Raises :class:`AmazonParseError` (naming ``source``, the block index and the line) for anything
    that could hide a review: an unclosed or stray ``<review>`` tag, non-blank text outside blocks or
    between fields, an unclosed or repeated field, or a block without ``review_text``.
    """
    text = text.removeprefix("\ufeff")
    records: list[dict[str, str]] = []
    pos = 0  # end of the last closed block
    open_tag: re.Match[str] | None = None
    for m in _REVIEW_TAG.finditer(text):
        if m.group(1) == "":
            if open_tag is not None:
                _fail(source, len(records), text, open_tag.start(), "<review> has no </review> before the next <review>")
            _check_blank(text, pos, m.start(), source, len(records), "text outside any <review> block")
            open_tag = m
        else:
            if open_tag is None:
                _fail(source, len(records), text, m.start(), "</review> without a matching <review>")
            records.append(_parse_block(text, open_tag.end(), m.start(), source, len(records)))
            open_tag = None
            pos = m.end()
    if open_tag is not None:
        _fail(source, len(records), text, open_tag.start(), "<review> has no </review> (truncated file?)")
    _check_blank(text, pos, len(text), source, len(records), "text outside any <review> block")
    return records


def _parse_block(text: str, start: int, end: int, source: str, index: int) -> dict[str, str]:
    fields: dict[str, str] = {}
    pos = start
    while True:
        m = _FIELD_OPEN.search(text, pos, end)
        if m is None:
            _check_blank(text, pos, end, source, index, "text outside any field")
            break
        _check_blank(text, pos, m.start(), source, index, "text outside any field")
        name = m.group(1)
        closing = f"</{name}>"
        close = text.find(closing, m.end(), end)
        if close < 0:
            _fail(source, index, text, m.start(), f"<{name}> has no {closing}")
        if name in fields:
            _fail(source, index, text, m.start(), f"field <{name}> appears twice")
        fields[name] = text[m.end():close].strip()
        pos = close + len(closing)
    if "review_text" not in fields:
        _fail(source, index, text, start, "block has no <review_text>")
    return fields


def _check_blank(text: str, start: int, end: int, source: str, index: int, what: str) -> None:
    chunk = text[start:end]
    if chunk.strip():
        offset = start + len(chunk) - len(chunk.lstrip())
        _fail(source, index, text, offset, f"{what}: {_snippet(chunk)}")


def _fail(source: str, index: int, text: str, offset: int, what: str) -> NoReturn:
    line = text.count("\n", 0, offset) + 1
    raise AmazonParseError(f"amazon: cannot parse {source}: review block {index} (line {line}): {what}")


def _snippet(s: str, width: int = 40) -> str:
    s = " ".join(s.split())
    return repr(s if len(s) <= width else s[:width] + "...")


def _one_line(s: object) -> str:
    return " ".join(str(s).split())


# ------------------------------------------------------------------------------------------- task
class AmazonTask(Task):
    """Binary sentiment over four product domains, Meta-KD's official split; see the module docstring."""

    name = "amazon"
    description = "Amazon reviews sentiment, 4 domains (Blitzer et al. 2007), Meta-KD's official split 6480/720/800"
    #: 1: kdbench's balanced per-domain split (now task amazon-balanced); 2: the official membership
    version = "2"
    domains = tuple(DOMAIN_DIRS)
    labels = ("negative", "positive")

    def __init__(self, data_dir: Path | None = None, cache_dir: Path | None = None) -> None:
        super().__init__(data_dir, cache_dir)
        self._data: dict[str, DomainData] | None = None

    def load(self) -> dict[str, DomainData]:
        """Parse and split every domain once per instance (~0.3 s for the whole corpus on 2 cores)."""
        if self._data is None:
            root = self._root()
            self._data = self._split({d: self._read_domain(d, root) for d in self.domains})
        return dict(self._data)

    def _split(self, examples: dict[str, list[Example]]) -> dict[str, DomainData]:
        by_id = {ex.id: ex for exs in examples.values() for ex in exs}
        splits = official_split()
        listed = {i for ids in splits.values() for i in ids}
        if listed != by_id.keys():
            missing = sorted(listed - by_id.keys())
            extra = sorted(by_id.keys() - listed)
            raise KDBenchError(
                "amazon: the official split needs the published corpus (1,000 reviews per file): "
                + (f"{len(missing)} of its reviews are missing (e.g. {missing[0]})" if missing
                   else f"{len(extra)} reviews are not in it (e.g. {extra[0]})")
                + "; task amazon-balanced splits any corpus"
            )
        return {
            d: DomainData(domain=d, **{name: tuple(by_id[i] for i in ids if i.startswith(f"{d}/"))
                                      for name, ids in splits.items()})
            for d in examples
        }

    # -- source
    def _root(self) -> Path:
        if self.data_dir is not None:
            root = Path(self.data_dir) / "amazon" / "sorted_data_acl"
            missing = _missing_files(root)
            if missing:
                raise KDBenchError(f"amazon: no data: looked in {root} (missing {_listing(missing)}); {_EXPECTED}")
            return root
        cache = Path(self.cache_dir) if self.cache_dir is not None else Path("~/.cache/kdbench").expanduser()
        root = cache / "amazon" / "sorted_data_acl"
        if not _missing_files(root):
            return root
        from http.client import HTTPException  # here, not at the top: it costs ~30 ms to import

        try:
            _download_and_extract(cache / "amazon", root)
        except (OSError, HTTPException, tarfile.TarError, ValueError) as e:
            raise KDBenchError(
                f"amazon: no data: looked in {root}; {_EXPECTED} "
                f"(download of {ARCHIVE_URL} failed: {_one_line(f'{type(e).__name__}: {e}')})"
            ) from e
        return root

    def _read_domain(self, domain: str, root: Path) -> list[Example]:
        """The domain's examples: the negative file's reviews, then the positive file's, in file order."""
        examples: list[Example] = []
        for stem, label, tag in _FILES:
            path = root / DOMAIN_DIRS[domain] / f"{stem}.review"
            try:
                raw = path.read_bytes()
            except OSError as e:
                raise KDBenchError(f"amazon: cannot read {path}: {_one_line(e)}") from e
            records = parse_reviews(raw.decode("utf-8", errors="replace"), source=str(path))
            if not records:
                raise AmazonParseError(f"amazon: cannot parse {path}: no <review> blocks")
            examples += [
                Example(id=f"{domain}/{tag}/{i}", text=" ".join(r["review_text"].split()), label=label)
                for i, r in enumerate(records)
            ]
        return examples


class AmazonBalancedTask(AmazonTask):
    """The same corpus, split per domain into balanced 1,620 / 180 / 200 (kdbench's own split)."""

    name = "amazon-balanced"
    description = "Amazon reviews sentiment, 4 domains, kdbench's balanced per-domain split 1620/180/200"
    version = "1"

    def _split(self, examples: dict[str, list[Example]]) -> dict[str, DomainData]:
        out = {}
        for domain, exs in examples.items():
            labels = [ex.label for ex in exs]
            rest, test = stratified_holdout(labels, n_folds=10, seed=SEED)
            train, dev = stratified_holdout([labels[i] for i in rest], n_folds=10, seed=SEED)
            out[domain] = DomainData(
                domain=domain,
                train=tuple(exs[rest[i]] for i in train),
                dev=tuple(exs[rest[i]] for i in dev),
                test=tuple(exs[i] for i in test),
            )
        return out


_OFFICIAL: dict[str, tuple[str, ...]] | None = None


def official_split() -> dict[str, tuple[str, ...]]:
    """The official ids per split (``train``, ``dev``, ``test``) from ``amazon_split.json``, verified.

    Raises :class:`KDBenchError` when the file is unreadable or its ids do not hash to
    :data:`OFFICIAL_SPLIT_SHA256` (an edited or corrupted file must not silently change the benchmark).
    """
    global _OFFICIAL
    if _OFFICIAL is None:
        try:
            doc = json.loads(SPLIT_FILE.read_text(encoding="utf-8"))
            splits = {name: tuple(str(i) for i in doc["splits"][name]) for name in ("train", "dev", "test")}
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise KDBenchError(f"amazon: cannot read the official split {SPLIT_FILE}: {_one_line(e)}") from e
        h = hashlib.sha256()
        for name in ("train", "dev", "test"):
            h.update(name.encode())
            for i in splits[name]:
                h.update(b"\0" + i.encode())
        if h.hexdigest() != OFFICIAL_SPLIT_SHA256:
            raise KDBenchError(f"amazon: {SPLIT_FILE} is corrupted: its ids hash to {h.hexdigest()[:16]}..., "
                               f"expected {OFFICIAL_SPLIT_SHA256[:16]}... (reinstall kdbench)")
        _OFFICIAL = splits
    return _OFFICIAL


#: sha256 of every file kdbench reads from the archive, checked after each download and extraction.
#: The archive itself could not be hashed where these were pinned (only its extracted
#: ``sorted_data_acl`` was available), so each extracted ``.review`` file is pinned instead; a download
#: whose files differ is deleted and refused.
REVIEW_SHA256 = {
    "books/negative.review": "562c58de7f739c9af2d62377ea2253ff73e89f69c84a332088f341cdb0e09660",
    "books/positive.review": "72c39d63dfd7edf77895de7c796f67e095f847f4b56bca0704aba3bbf57f23b9",
    "dvd/negative.review": "de1b539d29dc7edfbabf0ca4b1bce4e296d486533f3730012e4b49e36e762fa3",
    "dvd/positive.review": "fcf5207f79aa8af4910b5793c15fe90f25eb39501f9f4bdbd8f60a817224e28d",
    "electronics/negative.review": "571287120d63e289753231804f33169b2ec4348ca6d24fa0d781a3a08e6376ff",
    "electronics/positive.review": "98daefad1056ec8d98fe910bdb50ae282695b9c2b89c2bc1513b9d2203b38a11",
    "kitchen_&_housewares/negative.review": "0ad1fa1f4539b47933fcef01be674b1246d1dc01403197c1439004cbaf4b543e",
    "kitchen_&_housewares/positive.review": "90ebec2b5a6ac040e16836c32b8efbd92ce98804b916c6367f7ade3b8d536798",
}


def _checksum_mismatches(root: Path) -> list[str]:
    """The pinned files under ``root`` whose sha256 differs from :data:`REVIEW_SHA256`."""
    import hashlib

    bad = []
    for rel, digest in REVIEW_SHA256.items():
        try:
            actual = hashlib.sha256((root / rel).read_bytes()).hexdigest()
        except OSError:
            actual = ""
        if actual != digest:
            bad.append(rel)
    return bad


def _missing_files(root: Path) -> list[str]:
    return [f"{d}/{stem}.review" for d in DOMAIN_DIRS.values() for stem, _, _ in _FILES
            if not (root / d / f"{stem}.review").is_file()]


def _listing(items: list[str], limit: int = 3) -> str:
    shown = ", ".join(items[:limit])
    return shown if len(items) <= limit else f"{shown} and {len(items) - limit} more"


def _download_and_extract(amazon_dir: Path, root: Path) -> None:
    """Fetch the original archive (kept, so a re-extract needs no network) and install ``root``.

    Every step writes to a temporary name in the same directory and then renames, so an interrupted
    run never leaves a half-written archive or a half-extracted tree that looks complete.
    """
    import urllib.request

    amazon_dir.mkdir(parents=True, exist_ok=True)
    archive = amazon_dir / "domain_sentiment_data.tar.gz"
    if not archive.is_file():
        fd, tmp_name = tempfile.mkstemp(dir=amazon_dir, prefix=".download-", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(ARCHIVE_URL, timeout=60) as resp:
                shutil.copyfileobj(resp, out)
            os.replace(tmp_name, archive)
        finally:
            Path(tmp_name).unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(dir=amazon_dir, prefix=".extract-") as tmp:
        try:
            with tarfile.open(archive) as tf:
                members = [m for m in tf.getmembers() if _safe_member(m)]
                if hasattr(tarfile, "data_filter"):
                    tf.extractall(tmp, members=members, filter="data")
                else:  # pragma: no cover - Python < 3.10.12
                    tf.extractall(tmp, members=members)
        except tarfile.TarError:
            archive.unlink(missing_ok=True)  # a corrupt download must not be reused forever
            raise
        found = sorted(Path(tmp).rglob("sorted_data_acl"))
        if not found or _missing_files(found[0]):
            archive.unlink(missing_ok=True)
            raise ValueError(f"archive {archive} has no complete sorted_data_acl directory")
        bad = _checksum_mismatches(found[0])
        if bad:
            archive.unlink(missing_ok=True)  # a damaged or substituted download must not be reused
            raise ValueError(f"archive {archive} failed its sha256 check ({_listing(bad)} differ from the "
                             "pinned checksums); it was deleted, so the next run downloads it again")
        if root.exists():
            shutil.rmtree(root)  # an incomplete earlier extraction in our own cache
        try:
            os.replace(found[0], root)
        except OSError:
            if _missing_files(root):  # not a concurrent process that won the race
                raise


def _safe_member(m: tarfile.TarInfo) -> bool:
    """Only plain files and directories of ``sorted_data_acl``, with relative names, are extracted."""
    parts = Path(m.name).parts
    return ((m.isfile() or m.isdir()) and not Path(m.name).is_absolute() and ".." not in parts
            and "sorted_data_acl" in parts)


@hookimpl
def kdbench_register_tasks() -> list[type[Task]]:
    """Register :class:`AmazonTask` (``amazon``) and :class:`AmazonBalancedTask` (``amazon-balanced``)."""
    return [AmazonTask, AmazonBalancedTask]
