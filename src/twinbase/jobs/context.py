"""What a job handler sees: its status vocabulary, its context, and the exceptions that stop it.

A handler is ``handler(ctx) -> dict | None``. ``ctx`` carries the job's id, kind, payload and attempt;
``ctx.progress(fraction, message)`` records progress (throttled, fenced by the claim token) and is also
the handler's cancellation point; ``ctx.fence(session)`` makes the handler's own final write
conditional on still holding the claim. The returned dict is stored as the job's ``result``.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import update
from sqlalchemy.orm import Session

from twinbase.store.models import Job, utcnow

if TYPE_CHECKING:
    from twinbase.jobs.queue import JobQueue

JobResult = dict[str, Any]


class JobStatus(StrEnum):
    QUEUED = "queued"  # waiting for a worker (new, retried, or recovered from a dead worker)
    RUNNING = "running"  # claimed by one worker, holding a fresh claim token
    SUCCEEDED = "succeeded"  # the handler returned; ``result`` holds what it returned
    FAILED = "failed"  # it used its attempts; ``error`` says why
    CANCELLED = "cancelled"  # cancelled before it started, or its handler honoured a cancel request


FINISHED = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


class JobInterrupted(BaseException):
    """The handler must stop now. A ``BaseException``, so handlers' ``except Exception`` blocks
    (which turn errors into a domain failure) do not swallow it."""


class JobCancelled(JobInterrupted):
    """Someone asked to cancel this job (``JobQueue.cancel``); it ends ``cancelled``."""


class ClaimLost(JobInterrupted):
    """This worker no longer holds the job: it stalled and another worker took it, or the heartbeat
    could not reach the database for longer than the stall timeout. Whatever it does now is ignored."""


class WorkerStopping(JobInterrupted):
    """The worker is shutting down; the job goes back to the queue without using an attempt."""


class JobHandler(Protocol):
    """Runs one job. Returns an optional JSON-serializable result; raises to fail the attempt."""

    def __call__(self, ctx: JobContext, /) -> JobResult | None: ...


class FailureHandler(Protocol):
    """Called in the same transaction that ends a job ``failed`` or ``cancelled`` (the handler raised
    on its last attempt, its worker died on its last attempt, or it was cancelled), so the entity the
    job works for shows the failure through the API that started it."""

    def __call__(self, session: Session, payload: Mapping[str, Any], error: str, /) -> None: ...


@dataclass(frozen=True)
class JobKind:
    name: str
    handler: JobHandler
    on_failure: FailureHandler | None = None
    # CPU-bound kinds: in-process web workers skip them when TWINBASE_JOB_HEAVY_IN_WEB is false, so
    # they run only in ``twinbase worker`` processes and never compete with requests for the GIL.
    cpu_heavy: bool = False


@dataclass(frozen=True)
class Claim:
    """One attempt of one job, held by one worker. ``token`` fences every write of the attempt."""

    id: str
    kind: str
    payload: dict[str, Any]
    attempt: int
    max_attempts: int
    token: str
    worker: str


@dataclass(frozen=True)
class JobView:
    """A job as ``job_status`` reports it."""

    id: str
    kind: str
    status: JobStatus
    attempts: int
    max_attempts: int
    progress: float | None
    progress_message: str | None
    cancel_requested: bool
    result: dict[str, Any] | None
    error: str | None
    worker: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class JobContext:
    """Handed to every handler. Thread-safe: the worker's heartbeat thread flags it."""

    def __init__(
        self, queue: JobQueue, claim: Claim, *, stopping: threading.Event, progress_interval: float
    ) -> None:
        self.queue = queue
        self.claim = claim
        self._stopping = stopping
        self._progress_interval = progress_interval
        self._lock = threading.Lock()
        self._cancel_requested = False
        self._lost_reason: str | None = None
        self._pending: tuple[float, str | None] | None = None
        self._last_write = 0.0

    @property
    def id(self) -> str:
        return self.claim.id

    @property
    def kind(self) -> str:
        return self.claim.kind

    @property
    def payload(self) -> dict[str, Any]:
        return self.claim.payload

    @property
    def attempt(self) -> int:
        return self.claim.attempt

    # ------------------------------------------------------------------------------ cancellation

    @property
    def lost(self) -> bool:
        return self._lost_reason is not None

    @property
    def cancelled(self) -> bool:
        """True once the handler should stop: cancel requested, claim lost, or worker stopping."""
        return self._cancel_requested or self.lost or self._stopping.is_set()

    def raise_if_cancelled(self) -> None:
        if self._lost_reason is not None:
            raise ClaimLost(self._lost_reason)
        if self._cancel_requested:
            raise JobCancelled("Cancelled on request.")
        if self._stopping.is_set():
            raise WorkerStopping("The worker is shutting down.")

    def mark_lost(self, reason: str) -> None:
        with self._lock:
            if self._lost_reason is None:
                self._lost_reason = reason

    def mark_cancel_requested(self) -> None:
        self._cancel_requested = True

    # ---------------------------------------------------------------------------------- progress

    def progress(self, fraction: float, message: str | None = None) -> None:
        """Record progress (0..1) and a short message; a cancellation point.

        Written at most every ``progress_interval`` seconds from here; in between, the latest value
        waits for the next heartbeat.
        """
        value = (min(1.0, max(0.0, float(fraction))), message[:512] if message else None)
        with self._lock:
            self._pending = value
            due = time.monotonic() - self._last_write >= self._progress_interval
        if due:
            # A database error here is left to the heartbeat, which retries with backoff.
            with contextlib.suppress(Exception):
                self.beat()
        self.raise_if_cancelled()

    def take_pending(self) -> tuple[float, str | None] | None:
        with self._lock:
            pending, self._pending = self._pending, None
            return pending

    def restore_pending(self, value: tuple[float, str | None] | None) -> None:
        with self._lock:
            if self._pending is None:
                self._pending = value

    def beat(self) -> None:
        """One fenced heartbeat carrying any pending progress. Raises on a database error (the
        pending progress is kept for the next try); flags the context when the claim is gone."""
        pending = self.take_pending()
        try:
            held, cancel = self.queue.beat(self.claim, pending)
        except BaseException:
            self.restore_pending(pending)
            raise
        with self._lock:
            self._last_write = time.monotonic()
        if not held:
            self.mark_lost("Another worker took over this job (this worker stalled).")
        elif cancel:
            self.mark_cancel_requested()

    # ---------------------------------------------------------------------------------- fencing

    def fence(self, session: Session) -> None:
        """Inside the handler's own write transaction: go on only if this worker still holds the job.

        The fenced UPDATE also refreshes the heartbeat and, on PostgreSQL, locks the job row until the
        transaction ends, so stall recovery cannot hand the job to another worker in between: the
        handler's writes commit exactly when its claim was valid.
        """
        outcome = session.execute(
            update(Job)
            .where(Job.id == self.claim.id, Job.claim_token == self.claim.token, Job.status == "running")
            .values(heartbeat_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        if not outcome.rowcount:  # type: ignore[attr-defined]
            self.mark_lost("Another worker took over this job (this worker stalled).")
            raise ClaimLost(self._lost_reason)
