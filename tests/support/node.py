"""Running the repo's Node scripts from the tests: the compat scripts and the browser drivers.

A script that does not finish in time fails the test with what it printed so far; a driver's answer is
the JSON object on its last stdout line."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest


def run_node(
    node: str,
    script: Path,
    *,
    cwd: Path,
    env: dict[str, str],
    timeout: float,
    wrap: tuple[str, ...] = (),
) -> subprocess.CompletedProcess[str]:
    """``node script`` in ``cwd`` (run through ``wrap``, e.g. ``ip netns exec <name>``); a timeout fails
    the test with the partial output."""
    try:
        return subprocess.run(
            [*wrap, node, str(script)],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        partial = "\n".join(
            out.decode(errors="replace") if isinstance(out, bytes) else out
            for out in (exc.stdout, exc.stderr)
            if out
        )
        pytest.fail(f"{script.name} did not finish in {timeout:g} s:\n{partial}")


def run_json_driver(
    node: str, driver: Path, *, cwd: Path, env: dict[str, str], timeout: float
) -> dict[str, Any]:
    """A driver's JSON answer (its last stdout line); none fails the test with everything it printed."""
    proc = run_node(node, driver, cwd=cwd, env=env, timeout=timeout)
    lines = proc.stdout.strip().splitlines()
    try:
        out: dict[str, Any] = json.loads(lines[-1])
    except (ValueError, IndexError):
        pytest.fail(f"{driver.name} exited {proc.returncode} without its JSON:\n{proc.stdout}\n{proc.stderr}")
    return out
