"""Helpers the benchmark scripts share (each script runs as ``python bench/<name>.py``, so this
module is importable as ``common``)."""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def api(
    base: str, token: str, method: str, path: str, body: dict[str, object] | None = None
) -> dict[str, object]:
    """One JSON call to the API with a bearer token; the decoded answer."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"{base}{path}", data=data, method=method)
    req.add_header("Authorization", f"Bearer {token}")
    req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=60) as resp:
        payload: dict[str, object] = json.loads(resp.read() or b"{}")
        return payload


def wait_for(url: str, proc: subprocess.Popen[bytes], what: str) -> None:
    """Until ``url`` answers (any HTTP status); fail if ``proc`` exits or 60 s pass."""
    for _ in range(600):
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{what} did not start in 60 s")


def run_json(
    command: Sequence[str],
    what: str,
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
) -> dict[str, Any]:
    """Run a measuring child (a Python child of the bench, or a compat script) and answer the JSON object
    on its last stdout line; a failure raises with everything it printed."""
    proc = subprocess.run(
        list(command), cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    figures: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return figures
