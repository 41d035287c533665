"""Durable jobs across real ``twinbase worker`` processes, on SQLite and PostgreSQL.

Workers load the test job kinds of ``tests/support/jobkinds.py`` (``--import``); the stall timeout is
3 s. Each test kills, pauses or stops real processes and reads the outcome from the jobs table and
from the kinds' ledger file (one line per start and per finish, with the worker's pid). Nothing waits
for a fixed time: every wait polls a condition against a deadline.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from conftest import (
    ROOT,
    Server,
    _backends,
    create_pg_database,
    drop_pg_database,
    new_itwin,
    pg_url,
    running_server,
)
from twinbase.jobs.context import JobStatus, JobView
from twinbase.jobs.queue import JobQueue, job_status, stalled_error
from twinbase.store.db import Database, upgrade

STALL_SECONDS = "3"
DEADLINE = 90.0
T = TypeVar("T")


def worker_env(url: str, **extra: str) -> dict[str, str]:
    path = os.pathsep.join([str(ROOT / "src"), str(ROOT), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "TWINBASE_DATABASE_URL": url, "TWINBASE_JOB_STALL_SECONDS": STALL_SECONDS}
    env.pop("TWINBASE_CONFIG", None)
    return {**env, "PYTHONPATH": path, **extra}


@dataclass
class Worker:
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@dataclass
class Cluster:
    """One database and data folder, shared by the worker processes a test starts."""

    url: str
    data_dir: Path
    tmp: Path
    db: Database
    workers: list[Worker] = field(default_factory=list)

    def worker(
        self,
        *args: str,
        modules: tuple[str, ...] = ("tests.support.jobkinds",),
        env: dict[str, str] | None = None,
    ) -> Worker:
        log = self.tmp / f"worker-{len(self.workers)}.log"
        imports = [arg for name in modules for arg in ("--import", name)]
        command = [sys.executable, "-m", "twinbase", "worker", "--concurrency", "1", *imports, *args]
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [*command, "--data-dir", str(self.data_dir)],
                env=worker_env(self.url, **(env or {})),
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.tmp,
            )
        worker = Worker(proc, log)
        self.workers.append(worker)
        return worker

    def enqueue(self, kind: str, payload: dict[str, Any], *, max_attempts: int = 3) -> str:
        with self.db.write() as session:
            return JobQueue.enqueue(session, kind, payload, max_attempts=max_attempts).id

    def job(self, job_id: str) -> JobView:
        with self.db.read() as session:
            view = job_status(session, job_id)
        assert view is not None
        return view

    def wait_job(self, job_id: str, what: str, test: Callable[[JobView], bool]) -> JobView:
        return wait_until(what, lambda: (lambda v: v if test(v) else None)(self.job(job_id)))

    def stop(self) -> None:
        for worker in self.workers:
            if worker.process.poll() is None:
                worker.process.send_signal(signal.SIGCONT)
                worker.process.kill()
                worker.process.wait(10)
        self.db.dispose()


def wait_until(what: str, probe: Callable[[], T | None], timeout: float = DEADLINE) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value is not None and value is not False:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def pid_of(view: JobView) -> int:
    assert view.worker is not None
    return int(view.worker.split(":")[-1].split("/")[0])


def ledger(path: Path) -> list[tuple[str, int, int]]:
    """(event, pid, attempt) per line."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        event, pid, attempt = line.split()
        rows.append((event, int(pid.split("=")[1]), int(attempt.split("=")[1])))
    return rows


@pytest.fixture(params=_backends())
def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cluster]:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    pg_name = create_pg_database() if request.param == "postgres" else None
    url = pg_url(pg_name) if pg_name else f"sqlite:///{data_dir / 'twinbase.db'}"
    upgrade(url)
    cluster = Cluster(url, data_dir, tmp_path, Database(url))
    try:
        yield cluster
    finally:
        cluster.stop()
        if pg_name:
            drop_pg_database(pg_name)


def test_sigkill_mid_job_then_it_finishes_exactly_once_on_another_worker(cluster: Cluster) -> None:
    log, gate = cluster.tmp / "ledger", cluster.tmp / "gate"
    workers = {w.pid: w for w in (cluster.worker(), cluster.worker())}
    job_id = cluster.enqueue("test_gated", {"ledger": str(log), "gate": str(gate)})

    first = cluster.wait_job(job_id, "the first attempt", lambda v: v.status == JobStatus.RUNNING)
    victim = pid_of(first)
    wait_until("the handler to start", lambda: ("start", victim, 1) in ledger(log))
    workers[victim].process.kill()  # SIGKILL: no shutdown code runs, the claim is just abandoned
    workers[victim].process.wait(10)
    (survivor,) = set(workers) - {victim}

    second = cluster.wait_job(
        job_id,
        "the other worker to take it over",
        lambda v: v.status == JobStatus.RUNNING and v.attempts == 2,
    )
    assert pid_of(second) == survivor
    gate.touch()
    final = cluster.wait_job(job_id, "the job to succeed", lambda v: v.status == JobStatus.SUCCEEDED)

    assert final.attempts == 2 and final.result == {"pid": survivor, "attempt": 2}
    assert final.error is None and final.progress == 1.0 and final.finished_at is not None
    assert ledger(log) == [("start", victim, 1), ("start", survivor, 2), ("done", survivor, 2)]


def test_a_fenced_out_worker_s_late_finish_is_ignored(cluster: Cluster) -> None:
    log, gate = cluster.tmp / "ledger", cluster.tmp / "gate"
    paused = cluster.worker()
    # Unfenced handler that ignores cancellation: it will run to its end and return a result late.
    payload = {"ledger": str(log), "gate": str(gate), "fenced": False, "cooperative": False}
    job_id = cluster.enqueue("test_gated", payload)
    wait_until("the first attempt", lambda: ("start", paused.pid, 1) in ledger(log))
    paused.process.send_signal(signal.SIGSTOP)  # no heartbeats from now on, yet still alive

    other = cluster.worker()
    cluster.wait_job(
        job_id, "the other worker to take over", lambda v: v.attempts == 2 and pid_of(v) == other.pid
    )
    gate.touch()
    done = cluster.wait_job(job_id, "the job to succeed", lambda v: v.status == JobStatus.SUCCEEDED)
    assert done.result == {"pid": other.pid, "attempt": 2}

    paused.process.send_signal(signal.SIGCONT)
    wait_until("the paused worker's late finish", lambda: ("done", paused.pid, 1) in ledger(log))
    wait_until(
        "the late finish to be refused",
        lambda: f"job {job_id}: late finish ignored" in paused.output(),
    )
    after = cluster.job(job_id)
    assert after.status == JobStatus.SUCCEEDED and after.attempts == 2
    assert after.result == done.result and after.finished_at == done.finished_at


def test_progress_is_visible_while_the_job_runs(cluster: Cluster) -> None:
    gates = cluster.tmp / "gates"
    gates.mkdir()
    cluster.worker()
    job_id = cluster.enqueue("test_steps", {"steps": 2, "gates": str(gates)})

    first = cluster.wait_job(job_id, "step 1", lambda v: v.progress_message == "step 1 of 2")
    assert first.status == JobStatus.RUNNING and first.progress == 0.0
    (gates / "step-0").touch()
    second = cluster.wait_job(job_id, "step 2", lambda v: v.progress_message == "step 2 of 2")
    assert second.status == JobStatus.RUNNING and second.progress == 0.5
    (gates / "step-1").touch()
    done = cluster.wait_job(job_id, "the end", lambda v: v.status == JobStatus.SUCCEEDED)
    assert done.progress == 1.0 and done.result == {"steps": 2}


def test_a_running_job_stops_when_cancelled(cluster: Cluster) -> None:
    gates = cluster.tmp / "gates"
    gates.mkdir()
    cluster.worker()
    job_id = cluster.enqueue("test_steps", {"steps": 1, "gates": str(gates)})
    cluster.wait_job(job_id, "the job to run", lambda v: v.progress_message == "step 1 of 1")
    with cluster.db.write() as session:
        assert JobQueue(cluster.db).cancel(session, job_id) == JobStatus.RUNNING
    done = cluster.wait_job(job_id, "the cancellation", lambda v: v.status == JobStatus.CANCELLED)
    assert done.cancel_requested and done.error == "Cancelled on request." and done.result is None


def test_sigterm_releases_the_running_job_without_using_an_attempt(cluster: Cluster) -> None:
    gates = cluster.tmp / "gates"
    gates.mkdir()
    stopping = cluster.worker()
    job_id = cluster.enqueue("test_steps", {"steps": 1, "gates": str(gates)})
    cluster.wait_job(job_id, "the job to run", lambda v: v.progress_message == "step 1 of 1")

    stopping.process.send_signal(signal.SIGTERM)
    assert stopping.process.wait(30) == 0, stopping.output()
    released = cluster.job(job_id)
    assert released.status == JobStatus.QUEUED and released.attempts == 0, released

    cluster.worker()
    (gates / "step-0").touch()
    done = cluster.wait_job(job_id, "the job on a new worker", lambda v: v.status == JobStatus.SUCCEEDED)
    assert done.attempts == 1


def test_a_worker_runs_only_the_kinds_it_is_given(cluster: Cluster) -> None:
    echo_only = cluster.worker("--kinds", "test_echo")
    heavy = cluster.enqueue("test_heavy", {})
    echo = cluster.enqueue("test_echo", {"n": 1})
    done = cluster.wait_job(echo, "the echo job", lambda v: v.status == JobStatus.SUCCEEDED)
    assert done.result == {"pid": echo_only.pid, "payload": {"n": 1}}
    assert cluster.job(heavy).status == JobStatus.QUEUED  # enqueued first, but not this worker's kind

    bad = cluster.worker("--kinds", "no_such_kind")
    assert bad.process.wait(60) == 2
    assert "unknown job kind" in bad.output()


@pytest.mark.parametrize("backend", _backends())
def test_a_worker_waits_for_the_database_to_be_migrated(backend: str, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    pg_name = create_pg_database() if backend == "postgres" else None
    url = pg_url(pg_name) if pg_name else f"sqlite:///{data_dir / 'twinbase.db'}"
    cluster = Cluster(url, data_dir, tmp_path, Database(url))
    try:
        early = cluster.worker()  # starts on an empty database: it must wait, not migrate or crash
        upgrade(url)  # what `twinbase serve` or `twinbase db upgrade` does
        job_id = cluster.enqueue("test_echo", {})
        done = cluster.wait_job(job_id, "the early worker", lambda v: v.status == JobStatus.SUCCEEDED)
        assert done.result is not None and done.result["pid"] == early.pid
    finally:
        cluster.stop()
        if pg_name:
            drop_pg_database(pg_name)


# ----------------------------------------------------------------- with the web process, real kinds


def cluster_of(server: Server) -> Cluster:
    return Cluster(
        server.database_url, server.data_dir, server.data_dir.parent, Database(server.database_url)
    )


@pytest.mark.parametrize("backend", _backends())
def test_cpu_heavy_kinds_skip_the_web_process_when_it_is_told_so(
    backend: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    with running_server(
        backend,
        tmp_path_factory,
        PYTHONPATH=worker_env("")["PYTHONPATH"],
        TWINBASE_JOB_MODULES="tests.support.jobkinds",
        TWINBASE_JOB_HEAVY_IN_WEB="false",
    ) as server:
        cluster = cluster_of(server)
        try:
            heavy = cluster.enqueue("test_heavy", {})
            light = cluster.enqueue("test_echo", {})
            done = cluster.wait_job(
                light, "the web process's workers", lambda v: v.status == JobStatus.SUCCEEDED
            )
            assert done.result is not None and done.result["pid"] == server.process.pid
            assert cluster.job(heavy).status == JobStatus.QUEUED

            worker = cluster.worker("--kinds", "test_heavy")
            ran = cluster.wait_job(heavy, "the dedicated worker", lambda v: v.status == JobStatus.SUCCEEDED)
            assert ran.result is not None and ran.result["pid"] == worker.pid
        finally:
            cluster.stop()


@pytest.mark.parametrize("backend", _backends())
def test_a_baseline_whose_job_kills_every_worker_ends_initialization_failed(
    backend: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A poison job (SIGKILLs its worker on every attempt) ends ``failed`` after its 3 attempts, and the
    API that started it shows the failure: the baseline file is ``initializationFailed``."""
    # No workers in the web process: only the poisoned worker processes below run jobs.
    with running_server(
        backend, tmp_path_factory, TWINBASE_JOB_WORKERS="0", TWINBASE_JOB_STALL_SECONDS=STALL_SECONDS
    ) as server:
        cluster = cluster_of(server)
        try:
            with server.user() as alice:
                itwin = new_itwin(alice)
                body = {"iTwinId": itwin["id"], "name": "Poisoned", "baselineFile": {"size": 4}}
                created = alice.post("/imodels/", json=body).json()["iModel"]
                put = httpx.put(
                    created["_links"]["upload"]["href"],
                    content=b"data",
                    headers={"x-ms-blob-type": "BlockBlob"},
                )
                assert put.status_code == 201, put.text
                assert alice.post(created["_links"]["complete"]["href"], json={}).status_code == 200

                def job_id() -> str | None:
                    from sqlalchemy import select

                    from twinbase.store.models import Job

                    with cluster.db.read() as session:
                        return session.scalar(select(Job.id).where(Job.kind == "imodel_baseline"))

                job = wait_until("the baseline job", job_id)
                started: list[int] = []

                def failed() -> JobView | None:
                    if not any(w.process.poll() is None for w in cluster.workers):
                        started.append(cluster.worker(modules=("tests.support.poison_baseline",)).pid)
                    view = cluster.job(job)
                    return view if view.status == JobStatus.FAILED else None

                view = wait_until("the poison job to fail", failed)
                assert view.attempts == 3 and view.error == stalled_error(3, 3)
                assert len(started) >= 4  # three died running it; a fourth found it stalled
                baseline = alice.get(f"/imodels/{created['id']}/baselinefile")
                assert baseline.json()["baselineFile"]["state"] == "initializationFailed"
        finally:
            cluster.stop()
