"""Durable jobs kept in the metadata database (the ``jobs`` table), run by in-process workers.

- ``enqueue`` adds a job inside the caller's transaction: the job exists exactly when the request's
  other writes do.
- A worker claims one due job at a time (PostgreSQL: ``FOR UPDATE SKIP LOCKED``; SQLite: the single
  writer lock of ``BEGIN IMMEDIATE``), runs its handler, and records success or failure.
- While a job runs its worker refreshes ``heartbeat_at``; a ``running`` job whose heartbeat is older
  than ``stall_after`` (its process died) goes back to ``queued`` and is retried, up to
  ``max_attempts``. So a restart loses nothing.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import traceback
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from twinbase.store.db import Database
from twinbase.store.models import Job, utcnow

log = logging.getLogger("twinbase.jobs")

Handler = Callable[[dict[str, Any]], None]


class JobQueue:
    def __init__(self, db: Database, *, poll_seconds: float = 0.5, stall_after: float = 60.0) -> None:
        self.db = db
        self.poll_seconds = poll_seconds
        self.stall_after = timedelta(seconds=stall_after)
        self.handlers: dict[str, Handler] = {}
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}"
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._threads: list[threading.Thread] = []

    def register(self, kind: str, handler: Handler) -> None:
        self.handlers[kind] = handler

    @staticmethod
    def enqueue(session: Session, kind: str, payload: dict[str, Any], *, max_attempts: int = 3) -> Job:
        job = Job(kind=kind, payload=payload, max_attempts=max_attempts)
        session.add(job)
        session.flush()
        return job

    def wake(self) -> None:
        self._wake.set()

    # ---------------------------------------------------------------------------------- workers

    def start(self, workers: int) -> None:
        for n in range(workers):
            t = threading.Thread(target=self._loop, name=f"twinbase-job-{n}", daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        for t in self._threads:
            t.join(timeout=10)
        self._threads.clear()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                ran = self.run_one()
            except Exception:  # the loop must survive a database hiccup
                log.exception("job loop error", extra={"action": "job_loop_error"})
                ran = False
            if not ran:
                self._wake.wait(self.poll_seconds)
                self._wake.clear()

    def recover_stalled(self, session: Session) -> int:
        cutoff = utcnow() - self.stall_after
        result = session.execute(
            update(Job)
            .where(Job.status == "running", or_(Job.heartbeat_at.is_(None), Job.heartbeat_at < cutoff))
            .values(status="queued", locked_by=None)
        )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]

    def claim(self) -> Job | None:
        with self.db.write(invalidates_reads=False) as session:
            self.recover_stalled(session)
            stmt = (
                select(Job)
                .where(Job.status == "queued", Job.run_after <= utcnow(), Job.kind.in_(list(self.handlers)))
                .order_by(Job.run_after, Job.created_at)
                .limit(1)
            )
            if not self.db.is_sqlite:
                stmt = stmt.with_for_update(skip_locked=True)
            job = session.scalar(stmt)
            if job is None:
                return None
            job.status = "running"
            job.attempts += 1
            job.locked_by = self.worker_id
            job.heartbeat_at = utcnow()
            session.flush()
            session.expunge(job)
            return job

    def run_one(self) -> bool:
        job = self.claim()
        if job is None:
            return False
        beat = threading.Event()
        heart = threading.Thread(target=self._heartbeat, args=(job.id, beat), daemon=True)
        heart.start()
        try:
            self.handlers[job.kind](dict(job.payload))
        except Exception as exc:
            log.warning("job failed", exc_info=exc, extra={"action": "job_failed", "job": job.id})
            beat.set()
            heart.join()
            self._finish(job, error="".join(traceback.format_exception_only(exc)).strip())
            return True
        beat.set()
        heart.join()
        self._finish(job, error=None)
        return True

    def _heartbeat(self, job_id: str, done: threading.Event) -> None:
        interval = max(1.0, self.stall_after.total_seconds() / 4)
        while not done.wait(interval):
            with self.db.write(invalidates_reads=False) as session:
                session.execute(update(Job).where(Job.id == job_id).values(heartbeat_at=utcnow()))

    def _finish(self, job: Job, *, error: str | None) -> None:
        with self.db.write(invalidates_reads=False) as session:
            row = session.get(Job, job.id)
            if row is None:
                return
            if error is None:
                row.status = "succeeded"
                row.finished_at = utcnow()
            elif row.attempts >= row.max_attempts:
                row.status = "failed"
                row.error = error
                row.finished_at = utcnow()
            else:
                row.status = "queued"
                row.error = error
                row.run_after = utcnow() + timedelta(seconds=2**row.attempts)
            row.locked_by = None
