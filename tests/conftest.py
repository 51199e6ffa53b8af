"""Shared fixtures. Real data comes from ../shared (or $KDBENCH_DATA_DIR / $HF_HOME).

Under CI (``CI`` set) missing real data is a failure, not a skip: CI must exercise it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from _paths import DATA, HF_HOME, need


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return need(DATA / "amazon" / "sorted_data_acl", "Amazon data").parents[1]


@pytest.fixture(scope="session")
def hf_home(monkeypatch_session: pytest.MonkeyPatch) -> Path:
    home = need(HF_HOME / "hub", "HF cache").parent
    monkeypatch_session.setenv("HF_HOME", str(home))
    monkeypatch_session.setenv("HF_HUB_OFFLINE", "1")
    return home


@pytest.fixture(scope="session")
def monkeypatch_session():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tokenizer/download cache for the whole session (tiny tokenizers are trained once)."""
    return tmp_path_factory.mktemp("kdcache")
