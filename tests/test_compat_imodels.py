"""The official iModels clients (npm, pinned in compat/package.json) against the live server.

- ``compat/imodels-management.mjs``: ``@itwin/imodels-client-management`` 6.2.2 (iModels, changesets,
  checkpoints, named versions, briefcases, locks, users, permissions, thumbnails, favorites, recents);
- ``compat/imodels-authoring.mjs``: ``@itwin/imodels-client-authoring`` 6.0.2 (create from a baseline,
  briefcases, changesets pushed from real changeset files, groups, extended data, locks, downloads).

Both make real changesets with the iTwin.js backend (HubMock) on the iModel's own checkpoint 0, so the
native library must be installed: ``ensure_native_modules`` runs ``npm ci`` when needed (serialized by a file
lock) and checks the addon. Node.js and npm are required: without them the tests fail, they never skip.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from conftest import SAMPLE_BIM, Server
from support.node import run_node
from test_compat_itwins import COMPAT, NPM_TIMEOUT, _tool, ensure_node_modules

SCRIPT_TIMEOUT = 240
NATIVE_DIR = COMPAT / "node_modules" / "@bentley" / "imodeljs-native"
NATIVE_ADDON = NATIVE_DIR / "imodeljs-linux-x64" / "imodeljs.node"


def ensure_native_modules() -> None:
    """``npm ci`` when needed, then make sure the iTwin.js native addon really landed (re-installing once)."""
    ensure_node_modules()
    if NATIVE_ADDON.exists():
        return
    npm = _tool("npm")
    lock_path = Path(tempfile.gettempdir()) / f"twinbase-compat-npm-{os.getuid()}.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if NATIVE_ADDON.exists():
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
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    assert NATIVE_ADDON.exists(), (
        f"{NATIVE_ADDON} is missing after npm ci: the install script of @bentley/imodeljs-native did not run"
    )


def run_compat_script(server: Server, script: str, *, wrap: tuple[str, ...] = (), **extra_env: str) -> str:
    """Run ``node compat/<script>`` against ``server`` with two fresh users; fail on a non-zero exit.
    ``wrap``: the command that runs node (``ip netns exec <name>``)."""
    node = _tool("node")
    ensure_native_modules()
    run = uuid.uuid4().hex[:8]
    env = {
        **os.environ,
        "TWINBASE_URL": server.base_url,
        "TWINBASE_TOKEN": server.token(f"compat-{run}-owner"),
        "TWINBASE_TOKEN_OTHER": server.token(f"compat-{run}-other"),
        **extra_env,
    }
    env.pop("COMPAT_KEEP_GOING", None)
    env.pop("COMPAT_WORK_DIR", None)
    started = time.monotonic()
    proc = run_node(node, COMPAT / script, cwd=COMPAT, env=env, timeout=SCRIPT_TIMEOUT, wrap=wrap)
    output = f"{proc.stdout}\n{proc.stderr}".strip()
    took = time.monotonic() - started
    where = f"{server.backend}, {took:.1f} s"
    assert proc.returncode == 0, f"compat/{script} exited {proc.returncode} ({where}):\n{output}"
    assert "all " in proc.stdout and "steps passed" in proc.stdout, output
    return proc.stdout


def test_imodels_client_management_6_2_2(server: Server) -> None:
    run_compat_script(server, "imodels-management.mjs")


def test_imodels_client_authoring_6_0_2(server: Server) -> None:
    assert SAMPLE_BIM.exists(), f"test data missing: {SAMPLE_BIM} (see ../shared/data/README.md)"
    run_compat_script(server, "imodels-authoring.mjs", TWINBASE_BASELINE=str(SAMPLE_BIM))


def test_imodels_clients_with_azure_blob_storage(azure_server: Server) -> None:
    """Once more with the Azure backend (Azurite): every file link is a SAS URL to the blob service."""
    run_compat_script(azure_server, "imodels-management.mjs")
    run_compat_script(azure_server, "imodels-authoring.mjs", TWINBASE_BASELINE=str(SAMPLE_BIM))
