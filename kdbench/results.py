"""Result files: atomic writes, tolerant reads, and the results-directory layout.

```
<results-dir>/
  run.json                      the last invocation (config, versions)
  cells/<task>__<domain>__<method>__f<fraction>__s<seed>.json   one per cell
  teachers/<hash>/model.safetensors, meta.json                 trained teachers, content-keyed
```
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import tempfile
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterator

SCHEMA_VERSION = 1


def config_hash(obj: Any) -> str:
    """Stable hash of a JSON-able object (keys sorted, floats in repr)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of ``data``: recorded when kdbench stores a file, checked when it reads it back."""
    return hashlib.sha256(data).hexdigest()


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@cache
def file_mode() -> int:
    """The mode ``open()`` gives a new file under the process umask (mkstemp's own is 0600)."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same directory, fsync, rename: readers never see half a file.

    The file gets the ordinary permissions of a new file, so a results directory shared with
    colleagues (or Ray workers under another user) stays readable.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=1, sort_keys=True) + "\n").encode())


def read_json(path: Path) -> dict[str, Any] | None:
    """The parsed file, or None when it is missing or corrupt (it is then recomputed)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):  # RecursionError: JSON nested too deep to parse
        return None
    return data if isinstance(data, dict) else None


def cells_dir(results_dir: Path) -> Path:
    return results_dir / "cells"


def iter_cells(results_dir: Path) -> Iterator[tuple[Path, dict[str, Any] | None]]:
    for path in sorted(cells_dir(results_dir).glob("*.json")):
        yield path, read_json(path)


def load_cells(results_dir: Path) -> list[dict[str, Any]]:
    """Every readable cell result of a run (failed ones included, with their status)."""
    return [c for _, c in iter_cells(results_dir) if c is not None and c.get("schema") == SCHEMA_VERSION]


@cache
def git_sha() -> str | None:
    """The commit of the kdbench checkout, when it is one."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def versions() -> dict[str, str | None]:
    import platform

    import torch
    import transformers

    import kdbench

    return {"kdbench": kdbench.__version__, "torch": torch.__version__,
            "transformers": transformers.__version__, "python": platform.python_version(),
            "git_sha": git_sha()}
