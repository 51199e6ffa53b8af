"""Tests of the Amazon tasks: the real corpus, the official and the balanced split, the parser (incl. fuzzing)."""

from __future__ import annotations

import io
import json
import tarfile
import urllib.error
import urllib.request
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kdbench.api import DomainData, Example, KDBenchError
from kdbench_tasks import amazon as amazon_mod
from kdbench_tasks import make_amazon_split
from kdbench_tasks._split import stratified_holdout
from kdbench_tasks.amazon import (
    ARCHIVE_URL,
    DOMAIN_DIRS,
    OFFICIAL_SPLIT_SHA256,
    AmazonBalancedTask,
    AmazonParseError,
    AmazonTask,
    parse_reviews,
)

#: DomainData.split_hash() of every domain on the published corpus. A change means the data, the
#: parser or the split changed: bump the task's version and re-pin, never just re-pin.
PINNED_OFFICIAL_HASHES = {
    "books": "4c63ca064698049f",
    "dvd": "19a696d44e7bd8f7",
    "electronics": "7bfbd4921351c1ac",
    "kitchen": "9f209ea1525b1ed3",
}
#: the official split's per-domain sizes (test, dev), as EasyNLP's generate_senti_data.py prints them
OFFICIAL_SIZES = {"books": (199, 170), "dvd": (185, 194), "electronics": (213, 172), "kitchen": (203, 184)}
PINNED_BALANCED_HASHES = {
    "books": "bd3614776012b953",
    "dvd": "b79675860412cd5e",
    "electronics": "45f75b3ee7cd3ba3",
    "kitchen": "7377ac9f85870c56",
}
#: extra copies of repeated texts per domain (the README's "148 texts repeat within their domain")
DUPLICATE_COPIES = {"books": 44, "dvd": 46, "electronics": 35, "kitchen": 23}


@pytest.fixture(scope="module", params=[AmazonTask, AmazonBalancedTask], ids=["official", "balanced"])
def task(data_dir: Path, request: pytest.FixtureRequest) -> AmazonTask:
    return request.param(data_dir)


def splits(dd: DomainData) -> dict[str, tuple[Example, ...]]:
    return {"train": dd.train, "dev": dd.dev, "test": dd.test}


# ------------------------------------------------------------------------------------- real data
@pytest.mark.realdata
def test_every_review_is_loaded(task: AmazonTask) -> None:
    data = task.load()
    assert set(data) == {"books", "dvd", "electronics", "kitchen"} == set(task.domains)
    for domain, dd in data.items():
        examples = [ex for s in splits(dd).values() for ex in s]
        assert len(examples) == 2000, domain
        assert Counter(ex.label for ex in examples) == {0: 1000, 1: 1000}, domain
        assert len({ex.id for ex in examples}) == 2000, domain
        assert all(ex.id.startswith(f"{domain}/") for ex in examples)
        assert all(ex.text and ex.text_pair is None for ex in examples)


@pytest.mark.realdata
def test_balanced_split_sizes_and_label_balance(data_dir: Path) -> None:
    for domain, dd in AmazonBalancedTask(data_dir).load().items():
        for name, (size, per_label) in {"train": (1620, 810), "dev": (180, 90), "test": (200, 100)}.items():
            split = splits(dd)[name]
            assert len(split) == size, (domain, name)
            assert Counter(ex.label for ex in split) == {0: per_label, 1: per_label}, (domain, name)


@pytest.mark.realdata
def test_official_split_sizes(data_dir: Path) -> None:
    data = AmazonTask(data_dir).load()
    for domain, (n_test, n_dev) in OFFICIAL_SIZES.items():
        dd = data[domain]
        assert (len(dd.test), len(dd.dev), len(dd.train)) == (n_test, n_dev, 2000 - n_test - n_dev), domain
    assert sum(len(dd.test) for dd in data.values()) == 800
    assert sum(len(dd.dev) for dd in data.values()) == 720
    # stratified on sentiment over the pooled table: 400/400 overall, not per domain
    assert Counter(ex.label for dd in data.values() for ex in dd.test) == {0: 400, 1: 400}
    assert Counter(ex.label for ex in data["books"].test) == {0: 105, 1: 94}


@pytest.mark.realdata
def test_official_split_follows_the_file_order(data_dir: Path) -> None:
    ids = amazon_mod.official_split()
    data = AmazonTask(data_dir).load()
    for name in ("train", "dev", "test"):
        got = [ex.id for d in DOMAIN_DIRS for ex in splits(data[d])[name]]
        assert sorted(got) == sorted(ids[name])
        for d in DOMAIN_DIRS:  # each domain keeps the official (shuffled) order
            assert [ex.id for ex in splits(data[d])[name]] == [i for i in ids[name] if i.startswith(f"{d}/")]


@pytest.mark.realdata
def test_official_membership_is_rederived_with_pandas_and_sklearn(data_dir: Path) -> None:
    pytest.importorskip("pandas")
    pytest.importorskip("sklearn")
    made = make_amazon_split.build(data_dir / "amazon" / "sorted_data_acl")
    committed = json.loads(amazon_mod.SPLIT_FILE.read_text())
    assert made["splits"] == committed["splits"]
    assert made["sha256"] == committed["sha256"] == OFFICIAL_SPLIT_SHA256
    assert set(committed["versions"]) == {"pandas", "scikit-learn", "numpy"}


@pytest.mark.realdata
def test_official_reader_counts_the_same_reviews_in_the_same_order(data_dir: Path) -> None:
    """The official line-based reader and kdbench's block parser see the same 1,000 reviews per file.

    The official text joins a review's lines without a separator, repeats a line before each blank
    line, and drops a character after a leading tab, so texts are compared by the longest line of
    kdbench's review (whitespace removed, last character dropped), which must occur in the official
    text of the review at the same index. Shifted by one review, almost none match: the check can fail.
    """
    root = data_dir / "amazon" / "sorted_data_acl"

    def key(text: str) -> str:
        return max(("".join(line.split()) for line in text.split("\n")), key=len)[:-1]

    for directory in DOMAIN_DIRS.values():
        for stem in ("positive", "negative"):
            path = root / directory / f"{stem}.review"
            official = ["".join(t.split()) for t in make_amazon_split.official_reviews(path)]
            ours = [key(r["review_text"]) for r in parse_reviews(path.read_bytes().decode("utf-8", "replace"))]
            assert len(official) == len(ours) == 1000, path
            assert all(k in t for t, k in zip(official, ours, strict=True)), path
            assert sum(k in t for t, k in zip(official[1:], ours[:-1], strict=True)) < 50, path


def test_official_split_file_is_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    doc = json.loads(amazon_mod.SPLIT_FILE.read_text())
    assert doc["sha256"] == make_amazon_split.splits_sha256(doc["splits"]) == OFFICIAL_SPLIT_SHA256
    assert {k: len(v) for k, v in doc["splits"].items()} == {"train": 6480, "dev": 720, "test": 800}
    doc["splits"]["dev"][0], doc["splits"]["test"][0] = doc["splits"]["test"][0], doc["splits"]["dev"][0]
    bad = tmp_path / "amazon_split.json"
    bad.write_text(json.dumps(doc))
    monkeypatch.setattr(amazon_mod, "SPLIT_FILE", bad)
    monkeypatch.setattr(amazon_mod, "_OFFICIAL", None)
    with pytest.raises(KDBenchError, match="corrupted") as info:
        amazon_mod.official_split()
    assert "\n" not in str(info.value)
    bad.write_text("{")
    with pytest.raises(KDBenchError, match="cannot read the official split"):
        amazon_mod.official_split()


def test_official_split_needs_the_published_corpus(tmp_path: Path) -> None:
    _write_corpus(tmp_path / "amazon" / "sorted_data_acl", 20)
    with pytest.raises(KDBenchError, match="needs the published corpus.*amazon-balanced") as info:
        AmazonTask(tmp_path).load()
    assert "\n" not in str(info.value)


@pytest.mark.realdata
def test_splits_are_disjoint(task: AmazonTask) -> None:
    for dd in task.load().values():
        ids = [set(ex.id for ex in s) for s in splits(dd).values()]
        assert not ids[0] & ids[1] and not ids[0] & ids[2] and not ids[1] & ids[2]


@pytest.mark.realdata
@pytest.mark.parametrize(("cls", "pinned"), [(AmazonTask, PINNED_OFFICIAL_HASHES),
                                              (AmazonBalancedTask, PINNED_BALANCED_HASHES)])
def test_split_hash_is_stable_and_pinned(data_dir: Path, cls: type[AmazonTask], pinned: dict[str, str]) -> None:
    first = {d: dd.split_hash() for d, dd in cls(data_dir).load().items()}
    second = {d: dd.split_hash() for d, dd in cls(data_dir).load().items()}
    assert first == second == pinned


@pytest.mark.realdata
def test_text_is_review_text_with_whitespace_collapsed(task: AmazonTask) -> None:
    data = task.load()
    for dd in data.values():
        for ex in dd.train:
            assert ex.text == " ".join(ex.text.split())
    # dvd holds undecodable bytes: decoded with replacement, not dropped
    assert any("\ufffd" in ex.text for s in splits(data["dvd"]).values() for ex in s)
    first = next(ex for s in splits(data["books"]).values() for ex in s if ex.id == "books/pos/0")
    assert first.text.startswith("Sphere by Michael Crichton is an excellant novel.")
    assert first.label == 1


@pytest.mark.realdata
def test_repeated_texts_are_kept(task: AmazonTask) -> None:
    for domain, dd in task.load().items():
        counts = Counter(ex.text for s in splits(dd).values() for ex in s)
        assert sum(n - 1 for n in counts.values()) == DUPLICATE_COPIES[domain]
    assert sum(DUPLICATE_COPIES.values()) == 148


@pytest.mark.realdata
def test_load_is_cached_per_instance(task: AmazonTask) -> None:
    a, b = task.load(), task.load()
    assert a == b and a is not b  # a fresh dict, so callers cannot corrupt the cache
    assert all(a[d] is b[d] for d in a)


@pytest.mark.realdata
def test_load_parses_once_per_instance(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    task = AmazonTask(data_dir)
    first = task.load()
    monkeypatch.setattr(AmazonTask, "_read_domain", lambda *a: pytest.fail("parsed the corpus again"))
    second = task.load()
    assert second == first and all(second[d] is first[d] for d in first)
    second.pop("books")  # callers get their own dict: changing it changes nothing for the next one
    assert set(task.load()) == set(first)


# -------------------------------------------------------------------------------------- sources
def test_missing_data_dir_is_a_one_line_error(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(KDBenchError) as info:
        AmazonTask(missing).load()
    msg = str(info.value)
    assert "\n" not in msg
    assert str(missing / "amazon" / "sorted_data_acl") in msg
    assert "sorted_data_acl/<domain>/{positive,negative}.review" in msg


def test_wrong_layout_is_a_one_line_error(tmp_path: Path) -> None:
    # kitchen under its task name instead of the archive's directory name
    for d in ("books", "dvd", "electronics", "kitchen"):
        for stem in ("positive", "negative"):
            f = tmp_path / "amazon" / "sorted_data_acl" / d / f"{stem}.review"
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_text(_blocks(2))
    with pytest.raises(KDBenchError) as info:
        AmazonTask(tmp_path).load()
    msg = str(info.value)
    assert "\n" not in msg
    assert "kitchen_&_housewares/positive.review" in msg and str(tmp_path) in msg


def _write_corpus(root: Path, n: int) -> None:
    for d in DOMAIN_DIRS.values():
        for stem in ("positive", "negative"):
            f = root / d / f"{stem}.review"
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_text(_blocks(n, prefix=f"{d} {stem}"))


def test_small_corpus_split_sizes(tmp_path: Path) -> None:
    _write_corpus(tmp_path / "amazon" / "sorted_data_acl", 20)
    for dd in AmazonBalancedTask(tmp_path).load().values():
        assert (len(dd.train), len(dd.dev), len(dd.test)) == (32, 4, 4)
        assert Counter(ex.label for ex in dd.test) == {0: 2, 1: 2}


def test_a_bad_file_names_file_and_block(tmp_path: Path) -> None:
    root = tmp_path / "amazon" / "sorted_data_acl"
    _write_corpus(root, 3)
    bad = root / "dvd" / "negative.review"
    bad.write_text(_blocks(2) + "<review>\n<review_text>\ncut off")
    with pytest.raises(AmazonParseError) as info:
        AmazonTask(tmp_path).load()
    assert str(bad) in str(info.value) and "review block 2" in str(info.value)


def test_download_failure_is_a_one_line_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("no network\nat all")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(KDBenchError) as info:
        AmazonTask(None, cache_dir=tmp_path).load()
    msg = str(info.value)
    assert "\n" not in msg
    assert ARCHIVE_URL in msg and "no network at all" in msg and "KDBENCH_DATA_DIR" in msg
    assert str(tmp_path / "amazon" / "sorted_data_acl") in msg
    assert not list((tmp_path / "amazon").glob("*.part")) and not list((tmp_path / "amazon").glob(".download-*"))


def test_download_extracts_into_the_cache_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "src" / "sorted_data_acl"
    _write_corpus(src, 10)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        tf.add(src, arcname="sorted_data_acl")
        evil = tarfile.TarInfo("../evil.txt")
        evil.size = 4
        tf.addfile(evil, io.BytesIO(b"evil"))
    calls = []

    def fake_urlopen(url: str, timeout: float = 0) -> io.BytesIO:
        calls.append(url)
        return io.BytesIO(buf.getvalue())

    cache = tmp_path / "cache"
    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)
    monkeypatch.setattr(amazon_mod, "REVIEW_SHA256", _sha256s(src))  # the synthetic archive's own
    data = AmazonBalancedTask(None, cache_dir=cache).load()
    assert calls == [ARCHIVE_URL]
    assert {len(dd.train) + len(dd.dev) + len(dd.test) for dd in data.values()} == {20}
    assert (cache / "amazon" / "domain_sentiment_data.tar.gz").is_file()
    assert not (tmp_path / "evil.txt").exists() and not (cache / "evil.txt").exists()
    again = AmazonBalancedTask(None, cache_dir=cache).load()
    assert calls == [ARCHIVE_URL]  # served from the cache
    assert {d: dd.split_hash() for d, dd in again.items()} == {d: dd.split_hash() for d, dd in data.items()}


def _sha256s(root: Path) -> dict[str, str]:
    import hashlib

    return {rel: hashlib.sha256((root / rel).read_bytes()).hexdigest() for rel in amazon_mod.REVIEW_SHA256}


def test_download_with_wrong_checksums_is_refused_and_deleted(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A download whose files differ from the pinned sha256s is refused in one line, and deleted."""
    src = tmp_path / "src" / "sorted_data_acl"
    _write_corpus(src, 10)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        tf.add(src, arcname="sorted_data_acl")
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout=0: io.BytesIO(buf.getvalue()))
    cache = tmp_path / "cache"
    with pytest.raises(KDBenchError) as info:  # the real pins: the synthetic corpus does not match
        AmazonTask(None, cache_dir=cache).load()
    msg = str(info.value)
    assert "\n" not in msg and "sha256" in msg and "books/negative.review" in msg
    assert not (cache / "amazon" / "domain_sentiment_data.tar.gz").exists()
    assert not (cache / "amazon" / "sorted_data_acl").exists()


def test_pinned_checksums_match_the_shared_corpus(data_dir: Path) -> None:
    assert amazon_mod._checksum_mismatches(data_dir / "amazon" / "sorted_data_acl") == []


# ---------------------------------------------------------------------------------------- split
def test_stratified_holdout_is_deterministic_and_balanced() -> None:
    labels = [0] * 1000 + [1] * 1000
    kept, held = stratified_holdout(labels, n_folds=10, seed=11111)
    assert (kept, held) == stratified_holdout(labels, n_folds=10, seed=11111)
    assert sorted(kept + held) == list(range(2000))
    assert Counter(labels[i] for i in held) == {0: 100, 1: 100}
    assert held != stratified_holdout(labels, n_folds=10, seed=1)[1]
    # unbalanced labels: each label contributes ceil(count / k)
    labels = [0] * 11 + [1] * 9 + [2]
    _, held = stratified_holdout(labels, n_folds=10, seed=0)
    assert Counter(labels[i] for i in held) == {0: 2, 1: 1, 2: 1}
    with pytest.raises(ValueError):
        stratified_holdout([0, 1], n_folds=1, seed=0)


# --------------------------------------------------------------------------------------- parser
def _block(text: str = "Great product.", uid: str = "x:1", title: str = "t") -> str:
    return (f"<review>\n<unique_id>\n{uid}\n</unique_id>\n<title>\n{title}\n</title>\n"
            f"<review_text>\n{text}\n</review_text>\n</review>\n")


def _blocks(n: int, prefix: str = "text") -> str:
    return "".join(_block(f"{prefix} {i}") for i in range(n))


def test_parse_fields_and_unescaped_ampersand() -> None:
    recs = parse_reviews(_block("Tom & Jerry <3 & more", uid="a&b", title="Q&A") + _block("two"))
    assert recs == [
        {"unique_id": "a&b", "title": "Q&A", "review_text": "Tom & Jerry <3 & more"},
        {"unique_id": "x:1", "title": "t", "review_text": "two"},
    ]


def test_parse_keeps_multiline_text_for_the_task_to_collapse() -> None:
    (rec,) = parse_reviews(_block("line one\n\n  line\ttwo  "))
    assert rec["review_text"] == "line one\n\n  line\ttwo"
    assert " ".join(rec["review_text"].split()) == "line one line two"


def test_parse_empty_input() -> None:
    assert parse_reviews("") == [] and parse_reviews(" \n\n") == []


def test_undecodable_bytes_are_replaced(tmp_path: Path) -> None:
    raw = _block("caf\xe9 ok").encode("latin-1")  # \xe9 alone is not UTF-8
    (rec,) = parse_reviews(raw.decode("utf-8", errors="replace"))
    assert rec["review_text"] == "caf\ufffd ok"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (_block() + "<review>\n<unique_id>\nq\n</unique_id>\n</review>\n", "review block 1 (line 12): block has no <review_text>"),
        (_block() + "<review>\n<review_text>\ncut off\n", "review block 1 (line 12): <review> has no </review>"),
        (_block().replace("</review>\n", "") + _block(), "review block 0 (line 1): <review> has no </review> before"),
        ("</review>\n" + _block(), "review block 0 (line 1): </review> without"),
        (_block() + "stray words\n" + _block(), "review block 1 (line 12): text outside any <review> block"),
        (_block() + "<reveiw>\n<review_text>\nx\n</review_text>\n</review>", "</review> without"),
        (_block().replace("</title>", ""), "<title> has no </title>"),
        (_block().replace("<title>", "<title>\nx\n</title>\n<title>"), "field <title> appears twice"),
        (_block().replace("<title>", "junk <title>"), "text outside any field: 'junk'"),
    ],
)
def test_parse_errors_name_the_source_and_block(text: str, fragment: str) -> None:
    with pytest.raises(AmazonParseError) as info:
        parse_reviews(text, source="some/file.review")
    msg = str(info.value)
    assert "some/file.review" in msg and fragment in msg and "\n" not in msg


@pytest.mark.parametrize(
    "text",
    [
        "<review>" * 50_000,
        "<review>" + "<x>" * 50_000 + "</review>",
        "<review>" + "<a" * 100_000 + "</review>",
        "<review><review_text>" + "a" * 1_000_000,
        "</review_text>" * 50_000,
        (_block() * 3000)[:-12],
        "<review>" + "".join(f"<f{i}>x</f{i}>" for i in range(3000)) + "</review>",  # many fields, no review_text
    ],
)
def test_parse_is_linear_on_adversarial_input(text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Structural, not timed: the parser makes one pass for the review tags, and its field searches
    and blank checks move forward only, so the characters they scan add up to at most a few times
    the input (a backtracking or re-scanning parser would scan quadratically many)."""
    scanned: list[int] = []
    tag_passes: list[int] = []
    tags, fields, real_blank = amazon_mod._REVIEW_TAG, amazon_mod._FIELD_OPEN, amazon_mod._check_blank

    class Tags:
        def finditer(self, s: str):
            tag_passes.append(len(s))
            return tags.finditer(s)

    class Fields:
        def search(self, s: str, pos: int, end: int):
            m = fields.search(s, pos, end)
            scanned.append((m.end() if m else end) - pos)
            return m

    def blank(s: str, start: int, end: int, *args: object) -> None:
        scanned.append(end - start)
        real_blank(s, start, end, *args)

    monkeypatch.setattr(amazon_mod, "_REVIEW_TAG", Tags())
    monkeypatch.setattr(amazon_mod, "_FIELD_OPEN", Fields())
    monkeypatch.setattr(amazon_mod, "_check_blank", blank)
    with pytest.raises(AmazonParseError):
        parse_reviews(text)
    assert tag_passes == [len(text)]
    assert all(n >= 0 for n in scanned) and sum(scanned) <= 3 * len(text)


_FRAGMENTS = ["<review>", "</review>", "<review_text>", "</review_text>", "<title>", "</title>", "<", ">",
              "/", "&", "\n", " ", "text", "é", "\ufffd", "<review", "review>"]
_FUZZ = settings(max_examples=100, deadline=timedelta(seconds=2), suppress_health_check=[HealthCheck.too_slow])


def _parses_or_raises_parse_error(text: str) -> None:
    try:
        recs = parse_reviews(text)
    except AmazonParseError as e:
        assert "\n" not in str(e)
    else:
        assert all(isinstance(r["review_text"], str) for r in recs)


@_FUZZ
@given(st.text(max_size=300))
def test_fuzz_random_text(text: str) -> None:
    _parses_or_raises_parse_error(text)


@_FUZZ
@given(st.lists(st.sampled_from(_FRAGMENTS), max_size=60).map("".join))
def test_fuzz_tag_soup(text: str) -> None:
    _parses_or_raises_parse_error(text)


@_FUZZ
@given(st.data())
def test_fuzz_mutated_blocks(data: st.DataObject) -> None:
    text = _blocks(3)
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(text)))
        j = data.draw(st.integers(i, min(len(text), i + 12)))
        op = data.draw(st.sampled_from(["delete", "insert", "duplicate"]))
        if op == "delete":
            text = text[:i] + text[j:]
        elif op == "insert":
            text = text[:i] + data.draw(st.sampled_from(_FRAGMENTS)) + text[i:]
        else:
            text = text[:j] + text[i:j] + text[j:]
    _parses_or_raises_parse_error(text)


# Field values that cannot contain the markup delimiting them: no "review>" and no "<" at all.
_VALUE = st.text(st.characters(blacklist_characters="<", blacklist_categories=["Cs"]), max_size=40)


@_FUZZ
@given(st.lists(st.tuples(_VALUE, _VALUE), max_size=12), st.sampled_from(["\n", "\r\n", "\n\n", " "]))
def test_fuzz_well_formed_blocks_are_never_dropped(values: list[tuple[str, str]], sep: str) -> None:
    text = sep.join(
        f"<review>{sep}<title>{sep}{title}{sep}</title>{sep}<review_text>{sep}{body}{sep}</review_text>{sep}</review>"
        for title, body in values
    )
    recs = parse_reviews(text)
    assert len(recs) == len(values)
    assert [(r["title"], r["review_text"]) for r in recs] == [(t.strip(), b.strip()) for t, b in values]
