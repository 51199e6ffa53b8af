"""One ``kdbench run`` per results directory at a time.

The lock itself is `filelock <https://py-filelock.readthedocs.io>`_'s ``FileLock`` on
``.kdbench.lock.flock``: an OS lock (``flock``) that the kernel releases when its process dies, so a
killed run never leaves a lock that blocks the next one, and no pid is ever guessed to be alive (a
reused pid cannot keep a dead run's lock). Beside it, the holder writes an owner file,
``.kdbench.lock``, with its pid and host: it only words the message a second run gets ("in use by pid
N on host H") and is removed on release.

A run on another host (a shared filesystem) cannot be seen by this host's kernel on every
filesystem, so an owner file naming another host is respected even when the OS lock is free: the
message says to delete it when no run is alive there. An owner file of this host whose OS lock is
free belongs to a dead run: it is taken over.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from typing import TYPE_CHECKING

from kdbench.errors import KDBenchError

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

#: the owner file (pid and host of the run holding the lock); gone when no run holds it
LOCK_NAME = ".kdbench.lock"
#: the file filelock locks; it stays in the results directory (deleting it would open a race)
FLOCK_NAME = ".kdbench.lock.flock"


def _read(path: Path) -> dict[str, object] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _busy(results_dir: Path, owner: dict[str, object] | None, path: Path, same_host: bool) -> KDBenchError:
    owner = owner or {}
    pid = owner.get("pid")
    who = f"pid {pid}" if isinstance(pid, int) else "a process that did not say its pid yet"
    where = who + ("" if same_host else f" on {owner.get('host')}")
    # another host's process cannot be checked from here: say how to clear a dead one's owner file
    stale = "" if same_host else f" (if no run is alive there, delete {path})"
    return KDBenchError(f"results directory {results_dir} is in use by another kdbench run "
                        f"({where}); wait for it or use another --results-dir{stale}")


@contextlib.contextmanager
def run_lock(results_dir: Path) -> Iterator[None]:
    from filelock import FileLock, Timeout

    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / LOCK_NAME
    host = socket.gethostname()
    lock = FileLock(str(results_dir / FLOCK_NAME), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        owner = _read(path)
        raise _busy(results_dir, owner, path, owner is None or owner.get("host") == host) from None
    try:
        owner = _read(path)
        if owner is not None and "host" in owner and owner.get("host") != host:
            raise _busy(results_dir, owner, path, same_host=False)
        # this host's owner file with the OS lock free: its run is gone (stale), so it is replaced
        from kdbench.results import atomic_write_json

        me = {"pid": os.getpid(), "host": host}
        atomic_write_json(path, me)
        try:
            yield
        finally:
            if (_read(path) or {}).get("pid") == me["pid"]:
                path.unlink(missing_ok=True)
    finally:
        lock.release()
