"""Scratch folders of killed processes are removed when a twinbase process starts on the same host.

A job killed with SIGKILL (or by the OOM killer) leaves its scratch folder, a whole checkpoint or export
being made; the next start removes the folders whose process is gone, and only those.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import start_server
from twinbase.store import scratch


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_sweep_removes_only_folders_of_dead_processes(tmp_path: Path) -> None:
    live = scratch.make_scratch(tmp_path, "checkpoint")  # this test's own process: alive
    (live / "checkpoint.bim").write_bytes(b"x" * 1024)
    root = scratch.scratch_root(tmp_path)
    dead = root / f"{scratch._host()}-{_dead_pid()}-export-abc123"
    (dead / "tiles").mkdir(parents=True)
    (dead / "tiles" / "0.glb").write_bytes(b"y" * 1024)
    other_host = root / f"otherhost-{_dead_pid()}-copy-def456"
    other_host.mkdir()
    stranger = root / "not-ours"
    stranger.mkdir()

    assert scratch.sweep(tmp_path) == 1
    assert not dead.exists()
    assert live.exists() and other_host.exists() and stranger.exists()


def test_scratch_folder_goes_with_its_block(tmp_path: Path) -> None:
    with scratch.scratch(tmp_path, "copy") as folder:
        (folder / "baseline.bim").write_bytes(b"z")
        assert folder.parent == scratch.scratch_root(tmp_path)
    assert not folder.exists()


def test_server_start_sweeps_what_a_killed_process_left(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    left = scratch.scratch_root(data_dir) / f"{scratch._host()}-{_dead_pid()}-checkpoint-k1ll3d"
    left.mkdir(parents=True)
    (left / "checkpoint.bim").write_bytes(b"half a checkpoint")
    server = start_server(data_dir, f"sqlite:///{data_dir / 'twinbase.db'}", "sqlite")
    try:
        assert not left.exists()
    finally:
        server.stop()
