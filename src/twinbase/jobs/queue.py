"""Durable jobs kept in the metadata database (the ``jobs`` table): every database verb of the queue.

- ``enqueue`` adds a job inside the caller's transaction: the job exists exactly when the request's
  other writes do.
- ``claim`` takes one due job (PostgreSQL: ``FOR UPDATE SKIP LOCKED``; SQLite: the single writer lock
  of ``BEGIN IMMEDIATE``), counts the attempt and hands out a fresh claim token. Every later write of
  that attempt (heartbeat, progress, finish, the handler's own ``ctx.fence``) is an ``UPDATE ... WHERE
  id = :id AND claim_token = :token AND status = 'running'``: once another worker holds the job, the
  old worker's writes change nothing (fencing).
- A ``running`` job whose heartbeat is older than ``stall_after`` lost its worker. ``claim`` first
  recovers such jobs: back to ``queued`` while attempts remain (the dead attempt counts), else
  ``failed`` with an error, and the kind's failure callback runs in that same transaction.
- ``cancel``: a queued job ends ``cancelled`` at once; a running one gets ``cancel_requested`` and its
  handler stops at its next cancellation point.
- ``prune`` deletes finished jobs older than the retention period, a bounded batch at a time.

The worker threads that call these verbs live in ``twinbase.jobs.worker``.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from twinbase.jobs.context import (
    FINISHED,
    Claim,
    FailureHandler,
    JobHandler,
    JobKind,
    JobResult,
    JobStatus,
    JobView,
)
from twinbase.store.db import Database
from twinbase.store.models import Job, utcnow

log = logging.getLogger("twinbase.jobs")

MAX_ERROR = 2000
MAX_RETRY_DELAY = 300.0
RECOVER_BATCH = 20
PRUNE_BATCH = 500


def stalled_error(attempt: int, max_attempts: int) -> str:
    return f"The worker running this job stopped responding (attempt {attempt} of {max_attempts})."


class JobQueue:
    def __init__(
        self,
        db: Database,
        *,
        stall_after: float = 60.0,
        retention: float = 7 * 24 * 3600,
        retry_base_seconds: float = 2.0,
    ) -> None:
        self.db = db
        self.stall_after = timedelta(seconds=stall_after)
        self.retention = timedelta(seconds=retention)
        self.retry_base_seconds = retry_base_seconds
        self.kinds: dict[str, JobKind] = {}
        self.process_id = f"{socket.gethostname()}:{os.getpid()}"
        self._wake = threading.Event()

    # ------------------------------------------------------------------------------- registry

    def register(
        self,
        kind: str,
        handler: JobHandler,
        *,
        on_failure: FailureHandler | None = None,
        cpu_heavy: bool = False,
    ) -> None:
        self.kinds[kind] = JobKind(kind, handler, on_failure, cpu_heavy)

    def kind_names(self, *, include_heavy: bool = True) -> list[str]:
        return sorted(name for name, kind in self.kinds.items() if include_heavy or not kind.cpu_heavy)

    # -------------------------------------------------------------------------------- enqueue

    @staticmethod
    def enqueue(session: Session, kind: str, payload: dict[str, Any], *, max_attempts: int = 3) -> Job:
        job = Job(kind=kind, payload=payload, max_attempts=max_attempts, status=JobStatus.QUEUED.value)
        session.add(job)
        session.flush()
        return job

    def wake(self) -> None:
        """Tell this process's idle workers a job was just enqueued (others find it by polling)."""
        self._wake.set()

    def wait_for_work(self, seconds: float) -> None:
        self._wake.wait(seconds)
        self._wake.clear()

    # ---------------------------------------------------------------------------------- claim

    @staticmethod
    def _matching(match: Mapping[str, str] | None) -> list[Any]:
        """``payload[key] == value`` for every item of ``match`` (a coordinator taking its own jobs)."""
        return [Job.payload[key].as_string() == value for key, value in (match or {}).items()]

    def _due(self, kinds: Iterable[str], match: Mapping[str, str] | None = None) -> Any:
        """Jobs a worker of ``kinds`` should act on now: due queued ones and stalled running ones."""
        names = list(kinds)
        now = utcnow()
        return (
            *self._matching(match),
            Job.kind.in_(names),
            or_(
                (Job.status == JobStatus.QUEUED.value) & (Job.run_after <= now),
                (Job.status == JobStatus.RUNNING.value)
                & or_(Job.heartbeat_at.is_(None), Job.heartbeat_at < now - self.stall_after),
            ),
        )

    def claim(
        self, kinds: Iterable[str], worker: str, *, match: Mapping[str, str] | None = None
    ) -> Claim | None:
        """One due job of ``kinds`` (and, with ``match``, whose payload has those string values)."""
        names = [name for name in kinds if name in self.kinds]
        if not names:
            return None
        # A cheap read first: an idle worker must not take SQLite's write lock every poll.
        with self.db.read() as session:
            if session.scalar(select(Job.id).where(*self._due(names, match)).limit(1)) is None:
                return None
        with self.db.write(invalidates_reads=False) as session:
            self.recover_stalled(session, names)
            stmt = (
                select(Job)
                .where(
                    Job.status == JobStatus.QUEUED.value,
                    Job.run_after <= utcnow(),
                    Job.kind.in_(names),
                    *self._matching(match),
                )
                .order_by(Job.run_after, Job.created_at)
                .limit(1)
            )
            if not self.db.is_sqlite:
                stmt = stmt.with_for_update(skip_locked=True)
            job = session.scalar(stmt)
            if job is None:
                return None
            now = utcnow()
            job.status = JobStatus.RUNNING.value
            job.attempts += 1
            job.claim_token = secrets.token_hex(16)
            job.locked_by = worker
            job.heartbeat_at = now
            job.started_at = now
            job.progress = None
            job.progress_message = None
            session.flush()
            return Claim(
                id=job.id,
                kind=job.kind,
                payload=dict(job.payload),
                attempt=job.attempts,
                max_attempts=job.max_attempts,
                token=job.claim_token,
                worker=worker,
            )

    def recover_stalled(self, session: Session, kinds: Iterable[str]) -> int:
        """Jobs of ``kinds`` whose worker stopped beating: retried while attempts remain, else failed.

        Only kinds this process knows, so the failure callback of each is at hand.
        """
        now = utcnow()
        stmt = (
            select(Job)
            .where(
                Job.kind.in_(list(kinds)),
                Job.status == JobStatus.RUNNING.value,
                or_(Job.heartbeat_at.is_(None), Job.heartbeat_at < now - self.stall_after),
            )
            .limit(RECOVER_BATCH)
        )
        if not self.db.is_sqlite:
            stmt = stmt.with_for_update(skip_locked=True)
        jobs = list(session.scalars(stmt))
        for job in jobs:
            error = stalled_error(job.attempts, job.max_attempts)
            log.warning(
                "job %s (%s): %s", job.id, job.kind, error, extra={"action": "job_stalled", "job": job.id}
            )
            if job.cancel_requested:
                self._end(session, job, JobStatus.CANCELLED, "Cancelled on request.")
            elif job.attempts >= job.max_attempts:
                self._end(session, job, JobStatus.FAILED, error)
            else:
                job.status = JobStatus.QUEUED.value
                job.claim_token = None
                job.locked_by = None
                job.error = error
                job.run_after = now
        session.flush()
        return len(jobs)

    def _end(self, session: Session, job: Job, status: JobStatus, error: str) -> None:
        """End ``job`` failed or cancelled, and let its kind record that on the entity it serves."""
        job.status = status.value
        job.error = error[:MAX_ERROR]
        job.finished_at = utcnow()
        kind = self.kinds.get(job.kind)
        if kind is None or kind.on_failure is None:
            return
        try:
            with session.begin_nested():
                kind.on_failure(session, dict(job.payload), job.error)
        except Exception:
            # The job still ends: a broken callback must not keep a dead job alive forever.
            log.exception(
                "job %s: failure callback raised", job.id, extra={"action": "job_failure_callback_error"}
            )

    # ------------------------------------------------------------- writes of a claimed attempt

    @staticmethod
    def _fenced(claim: Claim) -> Any:
        return (
            update(Job)
            .where(Job.id == claim.id, Job.claim_token == claim.token, Job.status == JobStatus.RUNNING.value)
            .execution_options(synchronize_session=False)
        )

    def beat(self, claim: Claim, progress: tuple[float, str | None] | None) -> tuple[bool, bool]:
        """Refresh the heartbeat (and progress). Returns (still held, cancel requested)."""
        values: dict[str, Any] = {"heartbeat_at": utcnow()}
        if progress is not None:
            values["progress"], values["progress_message"] = progress
        with self.db.write(invalidates_reads=False) as session:
            stmt = self._fenced(claim).values(**values).returning(Job.cancel_requested)
            row = session.execute(stmt).first()
        return (row is not None, bool(row[0]) if row is not None else False)

    def _locked(self, session: Session, claim: Claim) -> Job | None:
        """The job row if this attempt still holds it, locked for the rest of the transaction."""
        job = session.get(Job, claim.id, with_for_update=True)
        if job is None or job.claim_token != claim.token or job.status != JobStatus.RUNNING.value:
            return None
        return job

    def succeed(self, claim: Claim, result: JobResult | None) -> bool:
        """Record success. False: the claim was lost, the result is dropped (another worker owns it)."""
        with self.db.write(invalidates_reads=False) as session:
            done = session.execute(
                self._fenced(claim).values(
                    status=JobStatus.SUCCEEDED.value,
                    result=result,
                    error=None,
                    progress=1.0,
                    heartbeat_at=utcnow(),
                    finished_at=utcnow(),
                )
            )
            return bool(done.rowcount)  # type: ignore[attr-defined]

    def fail(self, claim: Claim, error: str) -> JobStatus | None:
        """The handler raised: retry later while attempts remain, else end failed. None: claim lost."""
        with self.db.write() as session:
            job = self._locked(session, claim)
            if job is None:
                return None
            if job.attempts < job.max_attempts:
                job.status = JobStatus.QUEUED.value
                job.claim_token = None
                job.locked_by = None
                job.error = error[:MAX_ERROR]
                delay = min(MAX_RETRY_DELAY, self.retry_base_seconds * 2 ** (job.attempts - 1))
                job.run_after = utcnow() + timedelta(seconds=delay)
            else:
                self._end(session, job, JobStatus.FAILED, error)
            return JobStatus(job.status)

    def cancelled(self, claim: Claim) -> bool:
        """The handler stopped on a cancel request: end cancelled. False: claim lost."""
        with self.db.write() as session:
            job = self._locked(session, claim)
            if job is None:
                return False
            self._end(session, job, JobStatus.CANCELLED, "Cancelled on request.")
            return True

    def release(self, claim: Claim) -> bool:
        """Give the job back without using an attempt (worker shutting down, database unreachable)."""
        with self.db.write(invalidates_reads=False) as session:
            done = session.execute(
                self._fenced(claim).values(
                    status=JobStatus.QUEUED.value,
                    attempts=Job.attempts - 1,
                    claim_token=None,
                    locked_by=None,
                    run_after=utcnow(),
                )
            )
            return bool(done.rowcount)  # type: ignore[attr-defined]

    # ------------------------------------------------------------------------ management verbs

    def cancel(self, session: Session, job_id: str) -> JobStatus | None:
        """Cancel a job in the caller's transaction; its status afterwards (None: no such job).

        Queued: ``cancelled`` at once (and the kind's failure callback runs). Running: the handler is
        asked to stop (``cancel_requested``) and ends ``cancelled`` at its next cancellation point.
        Finished jobs are left as they are.
        """
        job = session.get(Job, job_id, with_for_update=True)
        if job is None:
            return None
        if job.status == JobStatus.QUEUED.value:
            self._end(session, job, JobStatus.CANCELLED, "Cancelled before it started.")
        elif job.status == JobStatus.RUNNING.value:
            job.cancel_requested = True
        session.flush()
        return JobStatus(job.status)

    def prune(self) -> int:
        """Delete a bounded batch of jobs finished longer than the retention period ago."""
        cutoff = utcnow() - self.retention
        old = (
            select(Job.id)
            .where(Job.status.in_([s.value for s in FINISHED]), Job.finished_at < cutoff)
            .limit(PRUNE_BATCH)
        )
        with self.db.write(invalidates_reads=False) as session:
            ids = list(session.scalars(old))
            if ids:
                session.execute(
                    delete(Job).where(Job.id.in_(ids)).execution_options(synchronize_session=False)
                )
        return len(ids)


def job_status(session: Session, job_id: str) -> JobView | None:
    """A job's status, attempts, progress, result and error, as any API may report them."""
    job = session.get(Job, job_id)
    if job is None:
        return None
    return JobView(
        id=job.id,
        kind=job.kind,
        status=JobStatus(job.status),
        attempts=job.attempts,
        max_attempts=job.max_attempts,
        progress=job.progress,
        progress_message=job.progress_message,
        cancel_requested=job.cancel_requested,
        result=job.result,
        error=job.error,
        worker=job.locked_by,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
    )
