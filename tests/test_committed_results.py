"""The committed runs under ``results/``: every tool-made table regenerates byte for byte from the
folder's cell files, as its README promises a reader with a fresh clone.

Which command made a file is read from its name, the convention the READMEs use:
``table[-<layout>][-vs-<baseline>][-within-<margin>][-select-dev].<md|csv>`` (``table-paper.md``:
``--layout paper``; ``table-vs-kd.md``: ``--baseline kd``; ``table-ablation-within-1.md``: ``--layout
ablation --equivalence-margin 1``; ``table-select-dev.md``: ``--select dev``, whose list of the
configurations chosen goes to ``table-select-dev-selection.md`` beside it; ``table.csv``: the default
layout as CSV). Folders are found at any depth (a study's pilot lives inside the study).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from kdbench.cli import main

RESULTS = Path(__file__).resolve().parents[1] / "results"
NAME = re.compile(r"table(?:-(?P<layout>default|paper|ablation))?(?:-vs-(?P<baseline>[\w:.-]+?))?"
                  r"(?:-within-(?P<margin>\d+(?:\.\d+)?))?(?P<select>-select-dev)?\.(?P<ext>md|csv)")
FORMATS = {"md": "markdown", "csv": "csv"}
# Folders kept as a record although their cells were never committed (their README says so): their
# tables cannot be regenerated. Every other folder with a tool-made table must carry its cells.
WITHOUT_CELLS = {"amazon-cpu-student-kd"}


def committed_tables() -> list[Path]:
    return sorted(p for p in RESULTS.glob("**/table*.*")
                  if NAME.fullmatch(p.name) and p.parent.name not in WITHOUT_CELLS)


def command(path: Path) -> list[str]:
    """The ``kdbench table`` arguments that the file's name stands for."""
    m = NAME.fullmatch(path.name)
    assert m is not None
    args = ["table", str(path.parent), "--format", FORMATS[m["ext"]]]
    if m["layout"]:
        args += ["--layout", m["layout"]]
    if m["baseline"]:
        args += ["--baseline", m["baseline"]]
    if m["margin"]:
        args += ["--equivalence-margin", m["margin"]]
    if m["select"]:
        args += ["--select", "dev"]
    return args


def test_the_name_convention() -> None:
    assert command(Path("r/table-paper.md"))[2:] == ["--format", "markdown", "--layout", "paper"]
    assert command(Path("r/table-vs-kd.md"))[2:] == ["--format", "markdown", "--baseline", "kd"]
    assert command(Path("r/table.csv"))[2:] == ["--format", "csv"]
    assert command(Path("r/table-ablation-within-1.md"))[2:] == ["--format", "markdown", "--layout", "ablation",
                                                                "--equivalence-margin", "1"]
    assert command(Path("r/table-vs-kd-within-0.5.csv"))[2:] == ["--format", "csv", "--baseline", "kd",
                                                                 "--equivalence-margin", "0.5"]
    assert command(Path("r/table-select-dev.md"))[2:] == ["--format", "markdown", "--select", "dev"]
    assert NAME.fullmatch("table-notes.md") is None  # not a tool-made table: not checked
    found = {p.parent.name for p in committed_tables()}
    assert {"amazon-cpu-all", "pilot", "amazon-scarce-5seeds", "mnli-scarce-5seeds"} <= found


@pytest.mark.parametrize("folder", sorted({p.parent for p in committed_tables()}), ids=lambda p: p.name)
def test_a_committed_table_has_its_cells_in_git(folder: Path) -> None:
    """A study whose cells git ignores looks complete in its own checkout and has no cells in a clone
    (this happened to #21's MNLI cells): the cells must be there, and not ignored."""
    cells = sorted((folder / "cells").glob("*.json"))
    assert cells, f"{folder} has tables but no cells/: commit them (its own .gitignore holds `!/cells/`)"
    if shutil.which("git") and (RESULTS.parent / ".git").exists():
        ignored = subprocess.run(["git", "check-ignore", "-q", "--no-index", str(cells[0])], cwd=RESULTS.parent).returncode == 0
        assert not ignored, f"git ignores {cells[0]}: add a .gitignore holding `!/cells/` to {folder}"


@pytest.mark.parametrize("path", committed_tables(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_committed_table_regenerates_byte_for_byte(path: Path, tmp_path: Path) -> None:
    out = tmp_path / path.name
    assert main([*command(path), "-o", str(out)]) == 0
    assert out.read_bytes() == path.read_bytes(), f"kdbench {' '.join(command(path))} differs from {path}"
    chosen = path.with_name(f"{path.stem}-selection{path.suffix}")  # --select dev: the configurations chosen
    if chosen.exists():
        assert out.with_name(chosen.name).read_bytes() == chosen.read_bytes(), f"{chosen} differs"
