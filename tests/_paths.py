"""Where the tests find real data: ../shared, or $KDBENCH_DATA_DIR and $HF_HOME."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
DATA = Path(os.environ.get("KDBENCH_DATA_DIR", SHARED / "data"))
HF_HOME = Path(os.environ.get("HF_HOME", SHARED / "hf-home"))


def need(path: Path, what: str) -> Path:
    """``path``, or skip the test when it is missing; under CI (``CI`` set) fail instead."""
    if not path.exists():
        msg = f"{what} not found at {path} (set KDBENCH_DATA_DIR / HF_HOME)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return path
