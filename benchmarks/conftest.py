"""Benchmarks measure and report; they assert nothing about speed.

Each benchmark runs two variants side by side in one process and reports their ratio (absolute times
on shared machines are noise). Ratios are printed and stored in pytest-benchmark's ``extra_info``.
Run: ``pytest benchmarks --benchmark-only`` (needs ../shared data and the HF cache, as the tests).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
SHARED = ROOT.parent / "shared"
DATA = Path(os.environ.get("KDBENCH_DATA_DIR", SHARED / "data"))
os.environ.setdefault("HF_HOME", str(SHARED / "hf-home"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPORT: list[str] = []


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not (DATA / "amazon").is_dir():
        pytest.skip(f"no data at {DATA}")
    return DATA


def report(benchmark, name: str, goal: str, **values: float) -> None:
    """Record the measured values; print them at the end of the session."""
    benchmark.extra_info.update(values)
    line = f"{name}: " + ", ".join(f"{k}={v:.3f}" for k, v in values.items()) + f" (goal: {goal})"
    REPORT.append(line)
    print("\n" + line)


def pytest_terminal_summary(terminalreporter):
    if REPORT:
        terminalreporter.write_sep("=", "kdbench measured ratios")
        for line in REPORT:
            terminalreporter.write_line(line)
