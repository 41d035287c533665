"""Job kinds for the job tests, loaded into real workers with ``twinbase worker --import
tests.support.jobkinds`` or ``TWINBASE_JOB_MODULES`` (test code never lives in ``src``).

Each kind appends what it does to a ledger file named in its payload (one line per event, with the
worker's pid), so a test sees every attempt, including those of processes it killed. Handlers wait
for gate files the test creates, never for a time, so tests need no timing assumptions.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from twinbase.jobs.context import JobContext

GATE_POLL_SECONDS = 0.05


def note(payload: dict[str, Any], event: str, ctx: JobContext) -> None:
    with open(payload["ledger"], "a") as fh:
        fh.write(f"{event} pid={os.getpid()} attempt={ctx.attempt}\n")
        fh.flush()
        os.fsync(fh.fileno())


def wait_for(path: str, ctx: JobContext, *, cooperative: bool) -> None:
    while not Path(path).exists():
        if cooperative:
            ctx.raise_if_cancelled()
        time.sleep(GATE_POLL_SECONDS)


def gated(ctx: JobContext) -> dict[str, Any]:
    """Starts, waits for ``gate``, then records ``done``. ``fenced`` (default): the ledger line is
    written inside a write transaction fenced by the claim, like a real handler's final write."""
    payload = ctx.payload
    note(payload, "start", ctx)
    wait_for(payload["gate"], ctx, cooperative=payload.get("cooperative", True))
    if payload.get("fenced", True):
        with SERVICES["svc"].db.write() as session:
            ctx.fence(session)
            note(payload, "done", ctx)
    else:
        note(payload, "done", ctx)
    return {"pid": os.getpid(), "attempt": ctx.attempt}


def steps(ctx: JobContext) -> dict[str, Any]:
    """Reports progress ``i/n`` with message ``step i+1 of n``, then waits for ``<gates>/step-i``."""
    payload = ctx.payload
    total = int(payload["steps"])
    for i in range(total):
        ctx.progress(i / total, f"step {i + 1} of {total}")
        wait_for(f"{payload['gates']}/step-{i}", ctx, cooperative=True)
    return {"steps": total}


def echo(ctx: JobContext) -> dict[str, Any]:
    return {"pid": os.getpid(), "payload": ctx.payload}


SERVICES: dict[str, Any] = {}


def register(svc: Any) -> None:
    SERVICES["svc"] = svc
    svc.jobs.register("test_gated", gated)
    svc.jobs.register("test_steps", steps)
    svc.jobs.register("test_echo", echo)
    svc.jobs.register("test_heavy", echo, cpu_heavy=True)
