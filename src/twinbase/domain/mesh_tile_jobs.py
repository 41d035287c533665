"""Tile jobs: a large 3D Tiles export split over every worker process, on every host.

The ``mesh_export`` job plans the tileset (``export.tiling``). When the plan is estimated at more than
``export_tile_job_triangles``, its tiles are dealt into batches, each a durable ``mesh_tiles`` job in the
jobs table. Any worker that runs the kind takes them: the web process's workers, ``twinbase worker``
processes, on this host or another sharing the database and the blob store. The planning job (the
*coordinator*) takes its own batches too, on a pool of its host's cores kept for the whole export, while
it waits for the rest; then it writes ``tileset.json`` from what the batches report.

- A batch writes its tiles straight into the export's bundle (``bundles/<id>/``) and reports, as its job
  result, what the tileset needs of each tile. Tiles are a pure function of the file, the plan and the
  configuration, so a batch run twice (its worker stalled, another took over) writes the same bytes;
  only the attempt that still holds the claim records the result (fencing, ``jobs.queue``).
- A worker that is not the coordinator makes the iModel's file at the export's changeset itself (exact
  checkpoints: a download, or a replay from the nearest one), plans again and checks its plan is the
  coordinator's (``plan_digest``), and keeps that workshop for the export's next batches.
- A batch whose worker dies is recovered by stall recovery and retried; a batch that fails all its
  attempts makes the export ``Invalid``. A coordinator that dies leaves its batches to end quickly
  (their export has moved to a new run) and the export's job runs again from the start.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from twinbase.bim.imodel import IModelFile
from twinbase.domain import checkpoints
from twinbase.domain import imodels as imodels_domain
from twinbase.export.config import TilerConfig, for_export_type, parse_tiler_config
from twinbase.export.tiling import (
    MadeTiles,
    TileWorkshop,
    default_workers,
    make_tiles,
    plan_digest,
    plan_from_file,
    tile_batches,
)
from twinbase.jobs.context import JobContext, JobStatus
from twinbase.jobs.worker import WorkerPool
from twinbase.store.blobs import check_key
from twinbase.store.blobs import keys as blob_keys
from twinbase.store.models import Job, MeshExport
from twinbase.store.scratch import make_scratch
from twinbase.tiles.tiler import TilePlan

log = logging.getLogger("twinbase.mesh_export")

TILE_JOB_KIND = "mesh_tiles"
TILE_JOB_ATTEMPTS = 3
#: How often the coordinator looks at its batches' states while others make them.
POLL_SECONDS = 0.25
#: A worker's workshop for an export it is not coordinating closes after this long without a batch.
IDLE_SECONDS = 120.0
#: Batches the coordinator runs at once on its pool: two, so one batch's last tiles overlap the next.
COORDINATOR_RUNNERS = 2

Services = imodels_domain.FileServices
Progress = Callable[[float, str], None]


class TileJobFailed(Exception):
    """A batch of the export used all its attempts; the message says why (the export's ``error``)."""


# ----------------------------------------------------------------------------------- workshops


@dataclass
class _Held:
    workshop: TileWorkshop
    folder: Path | None  # the file this worker made for the export (None: the coordinator's own)
    last_used: float
    users: int = 0


class _Workshops:
    """This process's workshops by bundle: the coordinator's (registered for the export's life) and the
    ones this worker made for other coordinators' exports (closed when idle)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: dict[str, _Held] = {}

    def register(self, bundle_id: str, workshop: TileWorkshop) -> None:
        with self._lock:
            self._held[bundle_id] = _Held(workshop, None, time.monotonic())

    def forget(self, bundle_id: str) -> None:
        with self._lock:
            self._held.pop(bundle_id, None)

    @contextlib.contextmanager
    def use(self, bundle_id: str, make: Callable[[], tuple[TileWorkshop, Path]]) -> Iterator[TileWorkshop]:
        """The bundle's workshop (made now if this process has none), held for the ``with`` block."""
        with self._lock:
            held = self._held.get(bundle_id)
            if held is None:
                workshop, folder = make()
                held = self._held[bundle_id] = _Held(workshop, folder, time.monotonic())
            held.users += 1
        try:
            yield held.workshop
        finally:
            with self._lock:
                held.users -= 1
                held.last_used = time.monotonic()

    def close_idle(self, idle: float = IDLE_SECONDS) -> None:
        """Close the workshops this worker made that no batch used for ``idle`` seconds."""
        now = time.monotonic()
        with self._lock:
            gone = [
                key
                for key, held in self._held.items()
                if held.folder is not None and held.users == 0 and now - held.last_used >= idle
            ]
            closing = [self._held.pop(key) for key in gone]
        for held in closing:
            held.workshop.close()
            if held.folder is not None:
                shutil.rmtree(held.folder, ignore_errors=True)


WORKSHOPS = _Workshops()


# --------------------------------------------------------------------------------- the batches


def _bundle_jobs(session: Session, bundle_id: str) -> list[Job]:
    return list(
        session.scalars(
            select(Job).where(Job.kind == TILE_JOB_KIND, Job.payload["bundle_id"].as_string() == bundle_id)
        )
    )


def cancel_tile_jobs(svc: Services, session: Session, bundle_id: str | None) -> int:
    """Cancel the unfinished batches of a bundle (its run ended, or a new run replaced it)."""
    if not bundle_id:
        return 0
    cancelled = 0
    for job in _bundle_jobs(session, bundle_id):
        if job.status in (JobStatus.QUEUED.value, JobStatus.RUNNING.value):
            svc.jobs.cancel(session, job.id)
            cancelled += 1
    return cancelled


@dataclass(frozen=True)
class ExportRun:
    """What a batch needs to know of the run it serves (its job payload carries the same)."""

    export_id: str
    bundle_id: str
    imodel_id: str
    changeset_index: int
    export_type: str
    tiler_config: list[dict[str, Any]] | None


class DistributedTiles:
    """``export.produce.TileMaker`` for a run: small plans on this host, large ones as tile jobs.

    ``progress`` is the run's (a cancellation point: it raises when the export is gone or the job is
    cancelled); ``fence`` opens the run's fenced write transaction; ``sizes`` receives the size of
    every tile the batches wrote (the export's directory stats)."""

    def __init__(
        self,
        svc: Services,
        run: ExportRun,
        *,
        fence: Callable[[Session], None],
        sizes: dict[str, int],
        worker_name: str,
    ) -> None:
        self.svc = svc
        self.run = run
        self.fence = fence
        self.sizes = sizes
        self.worker_name = worker_name

    def __call__(
        self,
        bim: Path,
        plan: TilePlan,
        config: TilerConfig,
        order: list[int],
        put: Callable[[str, bytes], None],
        progress: Progress,
    ) -> MadeTiles:
        per_batch = self.svc.settings.export_tile_job_triangles
        batches = tile_batches(plan, order, per_batch) if per_batch > 0 else [order]
        if len(batches) <= 1:
            return make_tiles(bim, plan, config, put, progress, order=order)
        digest = plan_digest(plan)
        with self.svc.db.write() as session:
            self.fence(session)
            for nodes in batches:
                self.svc.jobs.enqueue(
                    session,
                    TILE_JOB_KIND,
                    {**asdict(self.run), "nodes": nodes, "plan_digest": digest},
                    max_attempts=TILE_JOB_ATTEMPTS,
                )
        self.svc.jobs.wake()
        workshop = TileWorkshop(bim, plan, config, processes=default_workers())
        WORKSHOPS.register(self.run.bundle_id, workshop)
        finished = threading.Event()
        runners: list[threading.Thread] = []
        pool = WorkerPool(self.svc.jobs, 0, kinds=[TILE_JOB_KIND])
        ok = False
        try:
            if self.svc.settings.export_coordinator_makes_tiles:
                for n in range(COORDINATOR_RUNNERS):
                    runner = threading.Thread(
                        target=self._take_batches,
                        args=(pool, finished, f"{self.worker_name}/tiles-{n}"),
                        name=f"twinbase-tiles-{n}",
                        daemon=True,
                    )
                    runner.start()
                    runners.append(runner)
            made = self._wait(plan, order, len(batches), progress)
            ok = True
            return made
        finally:
            finished.set()
            pool.request_stop()  # a batch this process is still making goes back to the queue
            for runner in runners:
                runner.join()
            WORKSHOPS.forget(self.run.bundle_id)
            workshop.close()
            if not ok:
                try:
                    with self.svc.db.write() as session:
                        cancel_tile_jobs(self.svc, session, self.run.bundle_id)
                except Exception:  # the first error is the one to report; a later run cancels them too
                    log.exception("cancelling tile jobs failed", extra={"action": "mesh_tiles_cancel_error"})

    def _take_batches(self, pool: WorkerPool, finished: threading.Event, worker: str) -> None:
        """One of the coordinator's runners: this export's batches, one at a time, until all are taken."""
        while not finished.is_set():
            try:
                claim = self.svc.jobs.claim([TILE_JOB_KIND], worker, match={"bundle_id": self.run.bundle_id})
            except Exception:
                log.exception("claiming a tile job failed", extra={"action": "mesh_tiles_claim_error"})
                claim = None
            if claim is None:
                finished.wait(POLL_SECONDS * 4)
                continue
            pool.run(claim)

    def _wait(self, plan: TilePlan, order: list[int], count: int, progress: Progress) -> MadeTiles:
        """Until every batch succeeded (their reports merged) or one failed for good."""
        while True:
            with self.svc.db.read() as session:
                rows = session.execute(
                    select(Job.status, Job.error).where(
                        Job.kind == TILE_JOB_KIND, Job.payload["bundle_id"].as_string() == self.run.bundle_id
                    )
                ).all()
            done = sum(1 for status, _ in rows if status == JobStatus.SUCCEEDED.value)
            for status, error in rows:
                if status in (JobStatus.FAILED.value, JobStatus.CANCELLED.value):
                    raise TileJobFailed(f"A tile job of the export failed: {error or status}")
            progress(done / count, f"{done} of {count} tile jobs done")
            if done >= count:
                break
            time.sleep(POLL_SECONDS)
        made = MadeTiles()
        with self.svc.db.read() as session:
            for job in _bundle_jobs(session, self.run.bundle_id):
                made.update(MadeTiles.from_records(plan, dict((job.result or {}).get("tiles") or {})))
        missing = set(order) - set(made.results)
        if missing:
            raise TileJobFailed(f"The tile jobs did not report {len(missing)} of the export's tiles.")
        self.sizes.update(made.sizes)
        return made


# ------------------------------------------------------------------------------- the job itself


def _owns(svc: Services, export_id: str, bundle_id: str) -> bool:
    """Whether the export is still being made into ``bundle_id`` (else the batch's work is moot)."""
    with svc.db.read() as session:
        export = session.get(MeshExport, export_id)
        return export is not None and export.bundle_id == bundle_id and export.status == "InProgress"


def _make_workshop(svc: Services, payload: Mapping[str, Any], ctx: JobContext) -> tuple[TileWorkshop, Path]:
    """The export's file, plan and a pool of this host's cores, made here (another host, or a worker
    process of this one): the file at the export's changeset through exact checkpoints, and the plan
    checked against the coordinator's."""
    folder = make_scratch(svc.settings.data_dir, "tiles")
    try:
        config = for_export_type(parse_tiler_config(payload["tiler_config"]), str(payload["export_type"]))
        with svc.db.read() as session:
            the_plan = checkpoints.plan(session, str(payload["imodel_id"]), int(payload["changeset_index"]))
        bim = folder / "imodel.bim"
        checkpoints.build_file(svc, the_plan, bim, ctx)
        with IModelFile.open(bim) as imodel:
            plan = plan_from_file(imodel, config)
        if plan_digest(plan) != payload["plan_digest"]:
            raise TileJobFailed("This worker planned the export's tiles differently from its coordinator.")
        return TileWorkshop(bim, plan, config, processes=default_workers()), folder
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


def run_tile_job(svc: Services, ctx: JobContext) -> dict[str, Any]:
    """One batch: its tiles written into the export's bundle, their records as the job's result."""
    payload = ctx.payload
    export_id, bundle_id = str(payload["export_id"]), str(payload["bundle_id"])
    if not _owns(svc, export_id, bundle_id):
        return {"status": "gone"}
    prefix = blob_keys.bundle(bundle_id)

    def put(name: str, data: bytes) -> None:
        ctx.raise_if_cancelled()
        svc.blobs.put(check_key(f"{prefix}/{name}"), [bytes(data)])

    nodes = [int(n) for n in payload["nodes"]]
    try:
        with WORKSHOPS.use(bundle_id, lambda: _make_workshop(svc, payload, ctx)) as workshop:
            made = workshop.make(nodes, put, lambda f, m: ctx.progress(f, m))
            records = made.to_records(workshop.plan)
    finally:
        janitor = threading.Timer(IDLE_SECONDS + 1, WORKSHOPS.close_idle)
        janitor.daemon = True
        janitor.start()
    if not _owns(svc, export_id, bundle_id):
        # The export was deleted or restarted while this batch ran: what it wrote must not stay.
        try:
            svc.blobs.delete_prefix(prefix)
        except OSError:
            log.warning("could not delete export files", extra={"action": "mesh_tiles_cleanup_failed"})
        return {"status": "gone"}
    return {"status": "done", "tiles": records}


def register(svc: Services) -> None:
    """Register the ``mesh_tiles`` job kind (CPU-heavy, like the export it serves)."""

    def handler(ctx: JobContext) -> dict[str, Any] | None:
        return run_tile_job(svc, ctx)

    svc.jobs.register(TILE_JOB_KIND, handler, cpu_heavy=True)
