"""The job queue's rules, driven in process against a real SQLite file and a real PostgreSQL database:
fencing, attempts, failure callbacks, the heartbeat under database errors, cancellation, pruning, and
no SQLite write lock held while job files are copied.

Process-level behaviour (SIGKILL, SIGSTOP, SIGTERM of ``twinbase worker``) is in test_jobs_processes.py.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy import event, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from conftest import SAMPLE_BIM, _backends, create_pg_database, drop_pg_database, pg_url
from support.changesets import make_changeset
from twinbase.api.deps import Services
from twinbase.app import build_services
from twinbase.domain import imodel_ops, imodels, itwin_exports, itwins
from twinbase.identity.tokens import Principal
from twinbase.jobs.context import ClaimLost, JobContext, JobStatus, JobView
from twinbase.jobs.queue import JobQueue, job_status, stalled_error
from twinbase.jobs.worker import WorkerPool
from twinbase.settings import Settings
from twinbase.store.db import Database, upgrade
from twinbase.store.models import BaselineFile, IModel, ITwinExport, Job, utcnow

T = TypeVar("T")


@pytest.fixture(params=_backends())
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    pg_name = create_pg_database() if request.param == "postgres" else None
    url = pg_url(pg_name) if pg_name else f"sqlite:///{tmp_path / 'jobs.db'}"
    upgrade(url)
    database = Database(url)
    try:
        yield database
    finally:
        database.dispose()
        if pg_name:
            drop_pg_database(pg_name)


def wait_until(what: str, probe: Callable[[], T | None], timeout: float = 60.0) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value is not None and value is not False:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def enqueue(db: Database, kind: str, payload: dict[str, Any] | None = None, max_attempts: int = 3) -> str:
    with db.write() as session:
        return JobQueue.enqueue(session, kind, payload or {}, max_attempts=max_attempts).id


def view(db: Database, job_id: str) -> JobView:
    with db.read() as session:
        found = job_status(session, job_id)
    assert found is not None
    return found


def age_heartbeat(db: Database, job_id: str, seconds: float) -> None:
    """What a dead worker leaves behind: a heartbeat that stopped ``seconds`` ago."""
    with db.write() as session:
        session.execute(
            update(Job).where(Job.id == job_id).values(heartbeat_at=utcnow() - timedelta(seconds=seconds))
        )


class Failures:
    """A failure callback that records its calls and what the job row looked like in its transaction."""

    def __init__(self) -> None:
        self.calls: list[tuple[dict[str, Any], str, str]] = []

    def __call__(self, session: Session, payload: Mapping[str, Any], error: str) -> None:
        job = session.get(Job, payload["me"]) if "me" in payload else None
        self.calls.append((dict(payload), error, job.status if job is not None else ""))


# ------------------------------------------------------------------------------------------ fencing


def test_a_worker_that_lost_its_claim_changes_nothing(db: Database) -> None:
    queue = JobQueue(db, stall_after=60)
    queue.register("work", lambda ctx: None)
    job_id = enqueue(db, "work")
    first = queue.claim(["work"], "A")
    assert first is not None and first.attempt == 1
    age_heartbeat(db, job_id, 120)  # worker A stalls past the timeout
    second = queue.claim(["work"], "B")
    assert second is not None and second.id == job_id and second.attempt == 2
    assert second.token != first.token

    # Every write of A's attempt is fenced out...
    assert queue.beat(first, (0.9, "late progress")) == (False, False)
    assert queue.succeed(first, {"by": "A"}) is False
    assert queue.fail(first, "RuntimeError: late") is None
    assert queue.cancelled(first) is False
    assert queue.release(first) is False
    ctx = JobContext(queue, first, stopping=threading.Event(), progress_interval=0)
    with db.write() as session, pytest.raises(ClaimLost):
        ctx.fence(session)
    assert ctx.lost and ctx.cancelled
    # ...while B's count.
    assert queue.beat(second, (0.5, "half way")) == (True, False)
    assert view(db, job_id).progress_message == "half way"
    assert queue.succeed(second, {"by": "B"}) is True
    done = view(db, job_id)
    assert done.status == JobStatus.SUCCEEDED and done.result == {"by": "B"} and done.attempts == 2
    assert done.worker == "B" and done.error is None


# ----------------------------------------------------------------------------------------- attempts


def test_a_handler_that_always_raises_ends_failed_with_its_error(db: Database) -> None:
    queue = JobQueue(db, retry_base_seconds=0)
    failures = Failures()

    def broken(ctx: JobContext) -> None:
        raise RuntimeError(f"cannot work (attempt {ctx.attempt})")

    queue.register("broken", broken, on_failure=failures)
    job_id = enqueue(db, "broken")
    with db.write() as session:
        session.execute(update(Job).where(Job.id == job_id).values(payload={"me": job_id}))
    pool = WorkerPool(queue, 0)
    for attempt in (1, 2, 3):
        claim = queue.claim(["broken"], "W")
        assert claim is not None and claim.attempt == attempt
        pool.run(claim)
        assert failures.calls == [] or attempt == 3
    assert queue.claim(["broken"], "W") is None
    done = view(db, job_id)
    assert done.status == JobStatus.FAILED and done.attempts == 3
    assert done.error == "RuntimeError: cannot work (attempt 3)"
    # Called once, in the transaction that ended the job.
    assert failures.calls == [({"me": job_id}, done.error, "failed")]


def test_a_job_whose_worker_keeps_dying_ends_failed_after_its_attempts(db: Database) -> None:
    queue = JobQueue(db, stall_after=30)
    failures = Failures()
    queue.register("doomed", lambda ctx: None, on_failure=failures)
    job_id = enqueue(db, "doomed", {"me": ""}, max_attempts=2)
    for attempt in (1, 2):
        claim = queue.claim(["doomed"], f"W{attempt}")
        assert claim is not None and claim.attempt == attempt
        age_heartbeat(db, job_id, 60)  # the worker died: no finish, no heartbeat
    assert queue.claim(["doomed"], "W3") is None  # recovers it: its attempts are used
    done = view(db, job_id)
    assert done.status == JobStatus.FAILED and done.attempts == 2
    assert (
        done.error
        == stalled_error(2, 2)
        == ("The worker running this job stopped responding (attempt 2 of 2).")
    )
    assert [call[1] for call in failures.calls] == [done.error]


# -------------------------------------------------------------------------------------- heartbeat


class Outage:
    """Makes every write to the jobs table fail, as while the database is unreachable."""

    def __init__(self, db: Database) -> None:
        self.on = False
        self.failures = 0
        event.listen(db.engine, "before_cursor_execute", self._hook)

    def _hook(self, conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool) -> None:
        if self.on and statement.lstrip().upper().startswith("UPDATE JOBS"):
            self.failures += 1
            raise OperationalError(statement, params, Exception("injected: the database is unreachable"))


def test_the_heartbeat_survives_database_errors(db: Database) -> None:
    # Beats every 2.5 s; the outage below lasts two failed beats (well under the 10 s stall timeout).
    queue = JobQueue(db, stall_after=10)
    outage = Outage(db)
    seen: dict[str, JobContext] = {}
    finish = threading.Event()

    def hold(ctx: JobContext) -> dict[str, bool]:
        seen["ctx"] = ctx
        finish.wait(60)
        return {"ok": True}

    queue.register("hold", hold)
    pool = WorkerPool(queue, 1)
    pool.start()
    try:
        job_id = enqueue(db, "hold")
        running = wait_until("the job to run", lambda: (v := view(db, job_id)).started_at and v)
        assert running.started_at is not None
        wait_until("a first heartbeat", lambda: heartbeat_at(db, job_id) > running.started_at)
        outage.on = True
        wait_until("two failed heartbeats", lambda: outage.failures >= 2)
        outage.on = False
        last = heartbeat_at(db, job_id)
        wait_until("the heartbeat to beat again", lambda: heartbeat_at(db, job_id) > last)
        assert not seen["ctx"].lost
        finish.set()
        done = wait_until("success", lambda: (v := view(db, job_id)).status == JobStatus.SUCCEEDED and v)
        assert done.attempts == running.attempts == 1 and done.result == {"ok": True}
    finally:
        finish.set()
        pool.stop()


def heartbeat_at(db: Database, job_id: str) -> Any:
    with db.read() as session:
        job = session.get(Job, job_id)
        assert job is not None
        return job.heartbeat_at


def test_the_heartbeat_gives_up_the_claim_when_the_database_stays_unreachable(db: Database) -> None:
    queue = JobQueue(db, stall_after=1)
    outage = Outage(db)
    stopped = threading.Event()
    seen: dict[str, Any] = {}

    def patient(ctx: JobContext) -> None:
        seen["ctx"] = ctx
        try:
            while True:
                # A cancellation point; under the outage it raises no database error, only ClaimLost
                # once the heartbeat has given up.
                ctx.progress(0.5, "working")
                time.sleep(0.02)
        except ClaimLost:
            seen["lost"] = ctx.lost
            stopped.set()
            raise

    queue.register("patient", patient)
    pool = WorkerPool(queue, 1)
    pool.start()
    try:
        job_id = enqueue(db, "patient")
        wait_until("the job to run", lambda: "ctx" in seen)
        outage.on = True
        assert stopped.wait(60), "the handler was never told its claim was gone"
        assert seen["lost"] is True
        pool.request_stop()  # or this worker would claim the released job again at once
        outage.on = False
        # Nobody took the job over, so the worker hands it back without using the attempt.
        released = wait_until("the release", lambda: (v := view(db, job_id)).status == JobStatus.QUEUED and v)
        assert released.attempts == 0
    finally:
        outage.on = False
        pool.stop()


# ------------------------------------------------------------------------------ cancel, prune, kinds


def test_cancel_a_queued_job_at_once_and_leave_finished_ones(db: Database) -> None:
    queue = JobQueue(db)
    failures = Failures()
    queue.register("idle", lambda ctx: None, on_failure=failures)
    job_id = enqueue(db, "idle")
    with db.write() as session:
        assert queue.cancel(session, job_id) == JobStatus.CANCELLED
        assert queue.cancel(session, "no-such-job") is None
    assert queue.claim(["idle"], "W") is None
    done = view(db, job_id)
    assert done.status == JobStatus.CANCELLED and done.error == "Cancelled before it started."
    assert [call[1] for call in failures.calls] == ["Cancelled before it started."]

    other = enqueue(db, "idle")
    claim = queue.claim(["idle"], "W")
    assert claim is not None
    assert queue.succeed(claim, None)
    with db.write() as session:
        assert queue.cancel(session, other) == JobStatus.SUCCEEDED


def test_prune_deletes_only_old_finished_jobs(db: Database) -> None:
    queue = JobQueue(db, retention=3600)
    old_done, recent_done, old_queued = (enqueue(db, "k") for _ in range(3))
    long_ago = utcnow() - timedelta(hours=2)
    with db.write() as session:
        session.execute(
            update(Job).where(Job.id == old_done).values(status="succeeded", finished_at=long_ago)
        )
        session.execute(
            update(Job).where(Job.id == recent_done).values(status="failed", finished_at=utcnow())
        )
        session.execute(update(Job).where(Job.id == old_queued).values(created_at=long_ago))
    assert queue.prune() == 1
    with db.read() as session:
        assert job_status(session, old_done) is None
        assert job_status(session, recent_done) is not None and job_status(session, old_queued) is not None


def test_cpu_heavy_kinds_can_be_left_out(tmp_path: Path) -> None:
    queue = JobQueue(Database(f"sqlite:///{tmp_path / 'kinds.db'}"))
    queue.register("light", lambda ctx: None)
    queue.register("heavy", lambda ctx: None, cpu_heavy=True)
    assert queue.kind_names() == ["heavy", "light"]
    assert queue.kind_names(include_heavy=False) == ["light"]
    queue.db.dispose()


# ------------------------------------------------------------------- no write lock during file work


class WriteLockProbe:
    """Wraps the blob store: before each file is stored, checks that another connection can take
    SQLite's write lock at once (``BEGIN IMMEDIATE`` with no busy wait)."""

    def __init__(self, inner: Any, db_path: Path) -> None:
        self.inner = inner
        self.db_path = db_path
        self.checks: list[str] = []

    def _check(self, key: str) -> None:
        conn = sqlite3.connect(self.db_path, timeout=0, isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("ROLLBACK")
            self.checks.append("free")
        except sqlite3.OperationalError as exc:
            self.checks.append(f"{key}: {exc}")
        finally:
            conn.close()

    def put(self, key: str, chunks: Any) -> Any:
        self._check(key)
        return self.inner.put(key, chunks)

    def upload_from(self, key: str, path: Path) -> Any:
        self._check(key)
        return self.inner.upload_from(key, path)

    def download_to(self, key: str, path: Path) -> Any:
        self._check(key)
        return self.inner.download_to(key, path)

    def promote(self, source: str, target: str) -> Any:
        self._check(target)
        return self.inner.promote(source, target)

    def open_range(self, key: str, *args: Any, **kwargs: Any) -> Any:
        self._check(key)
        return self.inner.open_range(key, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    svc = build_services(Settings(data_dir=tmp_path / "data"))  # SQLite file; no workers started
    yield svc
    svc.db.dispose()


PRINCIPAL = Principal(user_id="job-tester", client_id="app")


def scheduled_baseline(svc: Services, *, upload: bool = True) -> tuple[str, str]:
    """An iTwin and an iModel whose uploaded baseline waits for its initialization job: their ids."""
    with svc.db.write() as session:
        itwins.ensure_user(session, PRINCIPAL)
        itwin = itwins.create(
            session,
            PRINCIPAL,
            itwins.ITwinCreate.model_validate(
                {"class": "Endeavor", "subClass": "Project", "displayName": "J"}
            ),
        )
        size = SAMPLE_BIM.stat().st_size
        body = imodels.IModelCreate.model_validate(
            {"iTwinId": itwin.id, "name": "Big", "baselineFile": {"size": size}}
        )
        imodel, baseline = imodels.create_from_baseline(session, PRINCIPAL, body)
        baseline.state = "initializationScheduled"
        baseline.file_size = size
        JobQueue.enqueue(session, imodels.BASELINE_JOB, {"imodel_id": imodel.id})
        itwin_id, imodel_id, key = itwin.id, imodel.id, baseline.blob_key
    if upload:
        with open(SAMPLE_BIM, "rb") as fh:
            svc.blobs.put(key, iter(lambda: fh.read(1 << 20), b""))
    return itwin_id, imodel_id


def run_next(svc: Services, kind: str) -> None:
    claim = svc.jobs.claim([kind], "W")
    assert claim is not None
    WorkerPool(svc.jobs, 0).run(claim)


def kill_attempts(svc: Services, kind: str, attempts: int) -> None:
    """Each attempt claimed by a worker that dies at once (no finish, no heartbeat)."""
    for _ in range(attempts):
        claim = svc.jobs.claim([kind], "doomed")
        assert claim is not None
        age_heartbeat(svc.db, claim.id, 3600)
    assert svc.jobs.claim([kind], "finder") is None  # finds it stalled with its attempts used


def test_a_baseline_whose_file_is_gone_ends_initialization_failed(services: Services) -> None:
    services.jobs.retry_base_seconds = 0
    _, imodel_id = scheduled_baseline(services, upload=False)  # the handler raises BlobNotFound
    for _ in range(3):
        run_next(services, imodels.BASELINE_JOB)
    with services.db.read() as session:
        baseline = session.get(BaselineFile, imodel_id)
        imodel = session.get(IModel, imodel_id)
        assert baseline is not None and baseline.state == "initializationFailed"
        assert imodel is not None and imodel.create_state == "failed"


def test_copies_and_exports_whose_workers_keep_dying_end_failed(services: Services) -> None:
    itwin_id, source_id = scheduled_baseline(services)
    run_next(services, imodels.BASELINE_JOB)
    with services.db.write() as session:
        request = imodel_ops.CloneRequest.model_validate({"iTwinId": itwin_id, "name": "Copy"})
        clone_id = imodel_ops.start_copy(session, PRINCIPAL, source_id, request, "clone").id
        export = itwin_exports.create(
            session,
            services.jobs,
            PRINCIPAL,
            itwin_exports.ExportBody.model_validate({"outputFormat": "Csv"}),
            base_url="http://x",
        )
    kill_attempts(services, imodel_ops.COPY_JOB, 3)
    kill_attempts(services, itwin_exports.JOB_KIND, 3)
    with services.db.read() as session:
        clone = session.get(IModel, clone_id)
        assert clone is not None and clone.create_state == "failed"
        assert imodel_ops.create_operation(session, PRINCIPAL, clone_id)["state"] == "failed"
        failed = session.get(ITwinExport, export.id)
        assert failed is not None and itwin_exports.to_wire(failed, None)["status"] == "Failed"


def test_baseline_and_copy_jobs_store_files_without_holding_the_write_lock(services: Services) -> None:
    svc = services
    itwin_id, imodel_id = scheduled_baseline(svc)
    probe = WriteLockProbe(svc.blobs, svc.settings.data_dir / "twinbase.db")
    with svc.db.write() as session:  # the probe sees a held write lock
        session.execute(update(Job).where(Job.id == "none").values(error=None))
        probe.put("probe/check", [b"x"])
    assert probe.checks == ["probe/check: database is locked"]
    probe.checks.clear()
    svc.blobs = probe
    run_next(svc, imodels.BASELINE_JOB)
    with svc.db.read() as session:
        initialized = session.get(BaselineFile, imodel_id)
        assert initialized is not None and initialized.state == "initialized"
    assert len(probe.checks) >= 2 and set(probe.checks) == {"free"}, probe.checks

    probe.checks.clear()
    with svc.db.write() as session:
        request = imodel_ops.CloneRequest.model_validate({"iTwinId": itwin_id, "name": "Copy"})
        clone_id = imodel_ops.start_copy(session, PRINCIPAL, imodel_id, request, "clone").id
    run_next(svc, imodel_ops.COPY_JOB)
    with svc.db.read() as session:
        clone = session.get(IModel, clone_id)
        assert clone is not None and clone.create_state == "successful"
    assert len(probe.checks) >= 2 and set(probe.checks) == {"free"}, probe.checks


def test_completing_uploads_holds_no_write_lock_while_the_file_is_sealed(tmp_path: Path) -> None:
    """Completing a baseline or a changeset promotes and hashes the uploaded file (a rename and a
    full read locally, a server-side copy and a download on Azure): outside any write transaction."""
    from fastapi.testclient import TestClient

    from twinbase.app import create_app

    settings = Settings(data_dir=tmp_path / "data", job_workers=0, rate_limit_per_minute=0)
    svc = build_services(settings)
    store = svc.blobs
    # The probe wraps the store only while completing (the blob route serves the local store itself).
    probe = WriteLockProbe(store, settings.data_dir / "twinbase.db")
    token = svc.issuer.issue("sealer", email="sealer@example.com") if svc.issuer else ""
    with TestClient(create_app(settings, services=svc)) as client:
        client.headers["Authorization"] = f"Bearer {token}"
        itwin = client.post("/itwins", json={"class": "Endeavor", "subClass": "Project", "displayName": "S"})
        data = SAMPLE_BIM.read_bytes()
        made = client.post(
            "/imodels",
            json={
                "iTwinId": itwin.json()["iTwin"]["id"],
                "name": "Sealed",
                "baselineFile": {"size": len(data)},
            },
        ).json()["iModel"]
        assert client.put(made["_links"]["upload"]["href"], content=data).status_code == 201
        svc.blobs = probe
        done = client.post(f"/imodels/{made['id']}/baselinefile", json={})
        svc.blobs = store
        assert done.status_code == 200, done.text
        assert len(probe.checks) >= 2 and set(probe.checks) == {"free"}, probe.checks
        run_next(svc, imodels.BASELINE_JOB)

        briefcase = client.post(f"/imodels/{made['id']}/briefcases", json={}).json()["briefcase"]
        pushed = make_changeset("", payload=1000)
        body = {"id": pushed.id, "briefcaseId": briefcase["briefcaseId"], "fileSize": len(pushed.data)}
        changeset = client.post(f"/imodels/{made['id']}/changesets", json=body).json()["changeset"]
        assert client.put(changeset["_links"]["upload"]["href"], content=pushed.data).status_code == 201
        probe.checks.clear()
        svc.blobs = probe
        done = client.patch(
            f"/imodels/{made['id']}/changesets/{pushed.id}",
            json={"state": "fileUploaded", "briefcaseId": briefcase["briefcaseId"]},
        )
        svc.blobs = store
        assert done.status_code == 200, done.text
        assert done.json()["changeset"]["index"] == 1
        assert len(probe.checks) >= 2 and set(probe.checks) == {"free"}, probe.checks
    svc.db.dispose()
