"""Worker threads: claim a job, run its handler with a heartbeat beside it, record the outcome.

The same pool runs inside the web process (``TWINBASE_JOB_WORKERS`` threads) and in ``twinbase
worker`` processes. Threads, not processes, inside one worker process: the handlers spend their time
in files, SQLite and the database, which release the GIL; CPU-bound kinds scale out by running more
``twinbase worker`` processes (any number, on any machine sharing the database), which the queue's
claim tokens keep apart.

The heartbeat of a running job survives database errors: it retries with exponential backoff, and
when it has not reached the database for ``stall_after`` (by then another worker may have taken the
job over) it gives up the claim: the context is flagged lost, the handler stops at its next
cancellation point, and anything it still does is fenced out.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from functools import partial

from twinbase.jobs.context import (
    Claim,
    ClaimLost,
    JobCancelled,
    JobContext,
    JobInterrupted,
    JobResult,
)
from twinbase.jobs.queue import MAX_ERROR, JobQueue

log = logging.getLogger("twinbase.jobs")

POLL_SECONDS = 0.5
PRUNE_EVERY_SECONDS = 300.0
FINISH_RETRIES = 5


class WorkerPool:
    """``threads`` workers for ``kinds`` (default: every kind registered) of one queue."""

    def __init__(
        self,
        queue: JobQueue,
        threads: int,
        *,
        kinds: Iterable[str] | None = None,
        poll_seconds: float = POLL_SECONDS,
    ) -> None:
        self.queue = queue
        self.threads = threads
        self.kinds = list(kinds) if kinds is not None else queue.kind_names()
        self.poll_seconds = poll_seconds
        self.stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._last_prune = -PRUNE_EVERY_SECONDS  # the first idle moment prunes
        self._prune_lock = threading.Lock()
        stall = queue.stall_after.total_seconds()
        self.beat_interval = max(0.05, stall / 4)

    def start(self) -> None:
        for n in range(self.threads):
            thread = threading.Thread(target=self._loop, args=(n,), name=f"twinbase-job-{n}", daemon=True)
            thread.start()
            self._threads.append(thread)
        if self.threads:
            log.info(
                "job workers started: %d thread(s) for %s",
                self.threads,
                ", ".join(self.kinds) or "no kinds",
                extra={"action": "job_workers_started"},
            )

    def request_stop(self) -> None:
        """Stop claiming; running handlers see ``ctx.cancelled`` and their jobs are released."""
        self.stopping.set()
        self.queue.wake()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the threads; True when all ended."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in self._threads:
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return not any(thread.is_alive() for thread in self._threads)

    def stop(self, timeout: float = 10.0) -> None:
        self.request_stop()
        self.join(timeout)
        self._threads.clear()

    # --------------------------------------------------------------------------------- the loop

    def _loop(self, n: int) -> None:
        worker = f"{self.queue.process_id}/{n}"
        failures = 0
        while not self.stopping.is_set():
            try:
                claim = self.queue.claim(self.kinds, worker)
                failures = 0
            except Exception:  # the loop must survive a database outage
                failures += 1
                log.exception("job loop error", extra={"action": "job_loop_error"})
                self.stopping.wait(min(30.0, self.poll_seconds * 2**failures))
                continue
            if claim is None:
                self._maybe_prune()
                self.queue.wait_for_work(self.poll_seconds)
                continue
            self.run(claim)

    def _maybe_prune(self) -> None:
        with self._prune_lock:
            if time.monotonic() - self._last_prune < PRUNE_EVERY_SECONDS:
                return
            self._last_prune = time.monotonic()
        try:
            pruned = self.queue.prune()
        except Exception:
            log.exception("job pruning failed", extra={"action": "job_prune_error"})
            return
        if pruned:
            log.info("pruned %d finished job(s)", pruned, extra={"action": "job_pruned"})

    def run(self, claim: Claim) -> None:
        """Run one claimed attempt to its recorded end."""
        kind = self.queue.kinds[claim.kind]
        ctx = JobContext(
            self.queue, claim, stopping=self.stopping, progress_interval=min(1.0, self.beat_interval)
        )
        log.info(
            "job %s (%s) attempt %d of %d started on %s",
            claim.id,
            claim.kind,
            claim.attempt,
            claim.max_attempts,
            claim.worker,
            extra={"action": "job_started", "job": claim.id},
        )
        done = threading.Event()
        heart = threading.Thread(
            target=self._heartbeat, args=(ctx, done), name=f"job-{claim.id}-heartbeat", daemon=True
        )
        heart.start()
        outcome: Callable[[], object]
        try:
            result = kind.handler(ctx)
            outcome = self._success(claim, result)
        except JobCancelled:
            outcome = partial(self.queue.cancelled, claim)
        except ClaimLost as lost:
            log.warning(
                "job %s: claim lost (%s); stopped", claim.id, lost, extra={"action": "job_claim_lost"}
            )
            outcome = partial(self.queue.release, claim)  # changes nothing if another worker took it
        except JobInterrupted:  # the worker is stopping: back to the queue, the attempt not counted
            outcome = partial(self.queue.release, claim)
        except Exception as exc:
            error = "".join(traceback.format_exception_only(exc)).strip()[:MAX_ERROR]
            log.warning(
                "job %s (%s) attempt %d failed: %s",
                claim.id,
                claim.kind,
                claim.attempt,
                error,
                exc_info=exc,
                extra={"action": "job_failed", "job": claim.id},
            )
            outcome = partial(self.queue.fail, claim, error)
        finally:
            done.set()
            heart.join()
        self._record(claim, outcome)

    def _success(self, claim: Claim, result: JobResult | None) -> Callable[[], object]:
        try:
            json.dumps(result)
        except (TypeError, ValueError) as exc:
            return partial(self.queue.fail, claim, f"The job's result is not JSON: {exc}")

        def succeed() -> object:
            if self.queue.succeed(claim, result):
                log.info("job %s succeeded", claim.id, extra={"action": "job_succeeded", "job": claim.id})
            else:
                log.warning(
                    "job %s: late finish ignored, the claim was lost (another worker owns the job)",
                    claim.id,
                    extra={"action": "job_finish_fenced", "job": claim.id},
                )
            return None

        return succeed

    def _record(self, claim: Claim, outcome: Callable[[], object]) -> None:
        """Record the outcome, retrying database errors; if it cannot, stall recovery retries the job."""
        for attempt in range(FINISH_RETRIES):
            try:
                outcome()
                return
            except Exception:
                log.exception(
                    "job %s: could not record its outcome", claim.id, extra={"action": "job_finish_error"}
                )
                time.sleep(min(5.0, 0.2 * 2**attempt))

    def _heartbeat(self, ctx: JobContext, done: threading.Event) -> None:
        interval = self.beat_interval
        stall = self.queue.stall_after.total_seconds()
        last_ok = time.monotonic()
        delay = interval
        failures = 0
        while not done.wait(delay):
            try:
                ctx.beat()
            except Exception as exc:
                failures += 1
                silent = time.monotonic() - last_ok
                if silent >= stall:
                    ctx.mark_lost(f"The database could not be reached for {silent:.0f} s.")
                    log.error(
                        "job %s: heartbeat gave up after %.1f s of database errors; claim abandoned",
                        ctx.id,
                        silent,
                        extra={"action": "job_heartbeat_gave_up", "job": ctx.id},
                    )
                    return
                log.warning(
                    "job %s: heartbeat failed (%s), retrying",
                    ctx.id,
                    type(exc).__name__,
                    extra={"action": "job_heartbeat_retry", "job": ctx.id},
                )
                delay = min(interval, interval / 8 * 2**failures, max(0.01, stall - silent))
                continue
            failures = 0
            last_ok = time.monotonic()
            delay = interval
            if ctx.lost:
                return
