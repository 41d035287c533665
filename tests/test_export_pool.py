"""The tile processes a host keeps (``export.tiling._SharedPool``): started once and shared by exports
and batches, closed when idle, replaced when one of them died."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from twinbase.export.tiling import _SharedPool


def _wait(what: str, probe: object, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if probe():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_the_pool_is_kept_between_uses_and_closed_when_idle() -> None:
    shared = _SharedPool()
    shared.IDLE_SECONDS = 1.0
    with shared.use(2) as first:
        pids = {first.submit(os.getpid).result() for _ in range(8)}
        assert os.getpid() not in pids and 1 <= len(pids) <= 2
    with shared.use(2) as again:
        assert again is first  # warm: no new processes
        assert again.submit(os.getpid).result() in pids
    _wait("the idle pool to close", lambda: shared._pool is None)
    for pid in pids:
        _wait(f"tile process {pid} to end", lambda pid=pid: not _running(pid))


def test_a_pool_whose_process_died_is_replaced() -> None:
    shared = _SharedPool()
    try:
        with shared.use(1) as first:
            pid = first.submit(os.getpid).result()
        os.kill(pid, signal.SIGKILL)
        _wait("the pool to notice", lambda: bool(getattr(first, "_broken", False)))
        with shared.use(1) as second:
            assert second is not first
            assert second.submit(os.getpid).result() != pid
    finally:
        shared.shutdown()


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
