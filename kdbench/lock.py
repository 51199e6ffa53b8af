"""One ``kdbench run`` per results directory at a time.

The lock is a file holding the owner's pid and host, created with O_EXCL. A lock whose process is
gone (a killed run) is stale and is taken over; a live one makes the second run fail with a message
naming the other process.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from typing import TYPE_CHECKING

from kdbench.api import KDBenchError

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

LOCK_NAME = ".kdbench.lock"


def _alive(pid: int) -> bool:
    if pid <= 0:  # 0 and negatives name process groups, not a run: a damaged lock file
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError, ValueError):
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _read(path: Path) -> dict[str, object] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


@contextlib.contextmanager
def run_lock(results_dir: Path) -> Iterator[None]:
    path = results_dir / LOCK_NAME
    me = {"pid": os.getpid(), "host": socket.gethostname()}
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            owner = _read(path)
            if owner is None:  # being written right now, or garbage: treat as stale only if still bad
                owner = {}
            pid = owner.get("pid")
            same_host = owner.get("host") == me["host"]
            if isinstance(pid, int) and (not same_host or _alive(pid)):
                where = f"pid {pid}" + ("" if same_host else f" on {owner.get('host')}")
                # another host's process cannot be checked from here: say how to clear a dead one's lock
                stale = "" if same_host else f" (if no run is alive there, delete {path})"
                raise KDBenchError(f"results directory {results_dir} is in use by another kdbench run "
                                   f"({where}); wait for it or use another --results-dir{stale}") from None
            path.unlink(missing_ok=True)  # stale: its process is gone
            continue
        with os.fdopen(fd, "w") as f:
            json.dump(me, f)
        break
    else:  # pragma: no cover - lost three races in a row
        raise KDBenchError(f"could not lock {results_dir}; retry")
    try:
        yield
    finally:
        if (_read(path) or {}).get("pid") == me["pid"]:
            path.unlink(missing_ok=True)
