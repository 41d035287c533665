"""The official ``@itwin/itwins-client`` (npm, pinned in compat/package.json) against the live server.

``compat/itwins.mjs`` drives the unchanged client and asserts every answer; this test installs the
locked packages (``npm ci``, only when ``compat/node_modules`` is missing or differs from the lock file)
and runs the script against the ``server`` fixture. Node.js and npm are required: without them the
test fails, it never skips.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

from conftest import ROOT, Server
from support.node import run_node

COMPAT = ROOT / "compat"
LOCK_FILE = COMPAT / "package-lock.json"
INSTALLED_MARKER = COMPAT / "node_modules" / ".package-lock.json"  # written by npm on every install
NPM_TIMEOUT = 600
SCRIPT_TIMEOUT = 300


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"'{name}' is required for the client compatibility tests and is not on PATH")
    return path


def _install_needed() -> bool:
    """Whether what is installed differs from the lock file, by content: a fresh checkout or worktree
    (whose lock file is newer than any install) must not reinstall a ``node_modules`` it shares."""
    if not INSTALLED_MARKER.exists():
        return True
    wanted = json.loads(LOCK_FILE.read_text())["packages"]
    installed = json.loads(INSTALLED_MARKER.read_text()).get("packages", {})
    for name, entry in wanted.items():
        if not name:
            continue  # the project itself
        have = installed.get(name)
        if have is None:
            if not entry.get("optional"):  # optional ones for other platforms are never installed
                return True
        elif have.get("version") != entry.get("version"):
            return True
    return False


def ensure_node_modules() -> None:
    """``npm ci`` once, serialized across pytest-xdist workers by a file lock."""
    npm = _tool("npm")
    assert LOCK_FILE.exists(), (
        f"{LOCK_FILE} is missing: run 'npm install' in compat/ and commit the lock file"
    )
    lock_path = Path(tempfile.gettempdir()) / f"twinbase-compat-npm-{os.getuid()}.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not _install_needed():
                return
            proc = subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund"],
                cwd=COMPAT,
                capture_output=True,
                text=True,
                timeout=NPM_TIMEOUT,
                check=False,
            )
            assert proc.returncode == 0, f"npm ci failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
            assert INSTALLED_MARKER.exists(), (
                f"npm ci left no {INSTALLED_MARKER}:\n{proc.stdout}\n{proc.stderr}"
            )
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def test_itwins_client_1_6_1(server: Server) -> None:
    node = _tool("node")
    ensure_node_modules()  # a no-op once node_modules holds what the lock file names
    run = uuid.uuid4().hex[:8]
    env = {
        **os.environ,
        "TWINBASE_URL": server.base_url,
        "TWINBASE_TOKEN": server.token(f"compat-{run}-owner"),
        "TWINBASE_TOKEN_OTHER": server.token(f"compat-{run}-other"),
    }
    env.pop("COMPAT_KEEP_GOING", None)
    proc = run_node(node, COMPAT / "itwins.mjs", cwd=COMPAT, env=env, timeout=SCRIPT_TIMEOUT)
    output = f"{proc.stdout}\n{proc.stderr}".strip()
    assert proc.returncode == 0, f"compat/itwins.mjs exited {proc.returncode} ({server.backend}):\n{output}"
    assert "all " in proc.stdout and "steps passed" in proc.stdout, output
