"""Scratch folders for file work (checkpoints, copies, exports) under ``<data_dir>/scratch``.

Each is named by the host and process that made it (``<host>-<pid>-<label>-<random>``) and removed when
its work ends. A process killed outright (SIGKILL, the OOM killer, a power cut) runs no ``finally``, so
its folders would stay, each possibly gigabytes: ``sweep`` removes those whose process no longer runs on
this host, and runs whenever a twinbase process starts (``app.build_services``). Folders of live
processes, and of other hosts sharing the folder, are left alone.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)

SCRATCH = "scratch"
_NAME = re.compile(r"^(?P<host>.+)-(?P<pid>\d+)-[a-z-]+-[^-]+$")


def _host() -> str:
    # A separator-free host name: the pid is found after the last of its own dashes.
    return socket.gethostname().replace("-", "_") or "host"


def scratch_root(data_dir: Path) -> Path:
    return data_dir / SCRATCH


def make_scratch(data_dir: Path, label: str) -> Path:
    """A new scratch folder the caller removes (``shutil.rmtree``) when done."""
    root = scratch_root(data_dir)
    root.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"{_host()}-{os.getpid()}-{label}-", dir=root))


@contextmanager
def scratch(data_dir: Path, label: str = "work") -> Iterator[Path]:
    """A scratch folder for the length of the block."""
    path = make_scratch(data_dir, label)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def sweep(data_dir: Path) -> int:
    """Remove the scratch folders of this host's processes that no longer run; answers how many."""
    root = scratch_root(data_dir)
    if not root.is_dir():
        return 0
    host, removed = _host(), 0
    for entry in root.iterdir():
        found = _NAME.match(entry.name)
        if found is None or found.group("host") != host or _alive(int(found.group("pid"))):
            continue
        shutil.rmtree(entry, ignore_errors=True)
        removed += 1
    if removed:
        log.info(
            "removed scratch folders of processes that died",
            extra={"action": "scratch_swept", "count": removed},
        )
    return removed
