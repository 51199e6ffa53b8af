"""Shared fixtures. Real data comes from ../shared (or $KDBENCH_DATA_DIR / $HF_HOME).

Under CI (``CI`` set) missing real data is a failure, not a skip: CI must exercise it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
DATA = Path(os.environ.get("KDBENCH_DATA_DIR", SHARED / "data"))
HF_HOME = Path(os.environ.get("HF_HOME", SHARED / "hf-home"))


def need(path: Path, what: str) -> Path:
    if not path.exists():
        msg = f"{what} not found at {path} (set KDBENCH_DATA_DIR / HF_HOME)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return path


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
