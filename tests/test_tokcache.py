"""Tokenized splits cached across runs (kdbench/tokcache.py)."""

from __future__ import annotations

import pytest

from kdbench import tokcache
from kdbench.api import Example
from kdbench.data import encode, train_wordpiece

TEXTS = ["a good pan", "an awful kettle that leaked", "great", "the knife was sharp and shiny"]


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return train_wordpiece(TEXTS * 5, tmp_path_factory.mktemp("tok"), vocab_size=60)


def examples(texts=TEXTS):
    return tuple(Example(id=f"x{i}", text=t, label=i % 2, text_pair="pair" if i == 1 else None)
                 for i, t in enumerate(texts))


def test_cached_equals_fresh_and_is_read_back_without_tokenizing(tok, tmp_path, monkeypatch):
    first = tokcache.encode_cached(tok, examples(), 8, tmp_path)
    assert first == encode(tok, examples(), 8)
    assert len(list((tmp_path / "tokenized").glob("*.npz"))) == 1
    monkeypatch.setattr(tokcache, "encode", lambda *a: pytest.fail("re-tokenized"))
    again = tokcache.encode_cached(tok, examples(), 8, tmp_path)
    assert again == first and isinstance(again.input_ids[0][0], int)


def test_the_key_covers_text_max_len_and_tokenizer(tok, tmp_path):
    tokcache.encode_cached(tok, examples(), 8, tmp_path)
    tokcache.encode_cached(tok, examples(), 16, tmp_path)
    tokcache.encode_cached(tok, examples([*TEXTS[:3], "changed"]), 8, tmp_path)
    other = train_wordpiece(TEXTS, tmp_path / "other", vocab_size=40)
    assert tokcache.tokenizer_fingerprint(other) != tokcache.tokenizer_fingerprint(tok)
    tokcache.encode_cached(other, examples(), 8, tmp_path)
    assert len(list((tmp_path / "tokenized").glob("*.npz"))) == 4


def test_a_tampered_file_is_retokenized(tok, tmp_path, capsys):
    first = tokcache.encode_cached(tok, examples(), 8, tmp_path)
    (path,) = (tmp_path / "tokenized").glob("*.npz")
    path.write_bytes(path.read_bytes()[:-3] + b"xyz")
    assert tokcache.encode_cached(tok, examples(), 8, tmp_path) == first
    assert "does not match its recorded sha256" in capsys.readouterr().err


def test_no_cache_dir_writes_nothing(tok, tmp_path):
    assert tokcache.encode_cached(tok, examples(), 8, None) == encode(tok, examples(), 8)
