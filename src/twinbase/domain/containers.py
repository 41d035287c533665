"""Checkpoints as CloudSqlite containers, the only form an unmodified iTwin.js 5.x backend downloads or
attaches (reference ``cloudsqlite-checkpoints.md``).

Every iModel has one container, a bundle of the blob store (``keys.container_prefix``): one database per
stored checkpoint, named as the checkpoint's ``dbName``, whose blocks are the checkpoint file cut into
4 MiB blocks (``bim.cloudsqlite``). Block ids are content-addressed, so the same id never names different
bytes, which the backend's block cache relies on across containers. On the local folder no block is
stored: twinbase serves each from a checkpoint file that holds it (``find_block``). A blob service that
serves the container itself (Azure) needs the blocks as blobs: ``store_blocks`` writes those not there
already, so a block that several checkpoints share is stored once.

``manifest`` composes the manifest from the checkpoint rows that hold block lists, so it lists exactly
the checkpoints the API answers. On the local folder twinbase serves the container as ``tb-<iModelId>``
(``container_name``, ``api.containers``) and composes the manifest on each request: nothing to store or
race on. A blob service that serves containers itself (Azure: ``BlobStore.cloud_container``) needs it
stored: ``publish`` does so in each checkpoint answer's transaction. The blocks are written before the
row that names them commits, so a manifest never lists a block that is not there.

Access: ``directory_access`` answers the platform's ``directoryAccessInfo``; its ``azure.sasToken`` is
twinbase's own read-only token for the container (``sp=r``, an ``se=`` expiry in ISO form as the backend
parses it, ``sig``: an HMAC with the URL-signing key over the container's blob prefix and the expiry),
checked by ``token_valid`` (with Azure: the blob service's own container SAS). The backend then fetches
``https://<checkpoint_storage_account>.blob.core.windows.net/<container>/<file>?<token>``, which the site
resolves to twinbase (or to the blob service).

Checkpoints stored before containers existed have no blocks: the first answer about one schedules a
``checkpoint_container`` job (``schedule_container``) that cuts its file into the container, and the
answers carry ``directoryAccessInfo`` once it has.

Stored blocks of evicted checkpoints are collected an hour later (``checkpoint_block_grace_seconds``;
``schedule_sweep``, the ``container_sweep`` job), as the native writer does: readers that fetched a
manifest listing them may still be reading. A block is deleted only if no checkpoint row names it then
and it was not written within that time; ``store_blocks`` rewrites an old block it reuses, so a
checkpoint being made cannot lose one to a sweep.
"""

from __future__ import annotations

import re
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

from sqlalchemy import select
from sqlalchemy.orm import Session

from twinbase.bim.cloudsqlite import (
    BLOCK_SIZE,
    ID_BYTES,
    Manifest,
    ManifestDatabase,
    block_name,
    compose_manifest,
    split_file,
)
from twinbase.errors import BlobNotFound
from twinbase.jobs.context import JobContext, JobStatus
from twinbase.jobs.queue import JobQueue
from twinbase.settings import Settings
from twinbase.store.blobs import BlobStore, UrlSigner
from twinbase.store.blobs import keys as blob_keys
from twinbase.store.db import Database
from twinbase.store.models import Checkpoint, IModel, Job, utcnow
from twinbase.store.scratch import scratch

CONTAINER_PREFIX = "tb-"
_CONTAINER = re.compile(r"^tb-([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$")
#: The Azure REST version the token names (the one the native library sends in ``x-ms-version``).
SAS_VERSION = "2020-10-02"
MANIFEST = "manifest.bcv"
CONTAINER_JOB = "checkpoint_container"
SWEEP_JOB = "container_sweep"
#: How long the blocks of an evicted checkpoint are kept for readers still on its manifest, by default
#: (``checkpoint_block_grace_seconds``): the native writer's hour.
DEFAULT_GRACE = 3600.0


def container_name(imodel_id: str) -> str:
    return f"{CONTAINER_PREFIX}{imodel_id}"


def imodel_of(container: str) -> str | None:
    """The iModel id a container name stands for; None when it is not one of twinbase's."""
    found = _CONTAINER.match(container)
    return found.group(1) if found else None


def db_name(changeset_id: str) -> str:
    """The checkpoint's database in the container, also the API's ``dbName``."""
    return f"{changeset_id or 'baseline'}.bim"


# ------------------------------------------------------------------------------------------- writing


class ContainerServices(Protocol):
    settings: Settings
    db: Database
    blobs: BlobStore
    jobs: JobQueue


#: Blocks stored at once: a blob service answers each request after a round trip, so a few in flight keep
#: the link busy; memory stays bounded (each holds one 4 MiB block).
STORE_CONCURRENCY = 4


def store_blocks(blobs: BlobStore, imodel_id: str, path: Path, grace: float = DEFAULT_GRACE) -> bytes:
    """The file's block ids in file order, concatenated: the checkpoint row's ``blocks``. Where a blob
    service serves the container itself (``BlobStore.cloud_container``), the blocks not there already
    are stored too; otherwise twinbase serves each block from the checkpoint file (``find_block``), so
    nothing is stored twice. ``grace``: how long a sweep leaves an unused block (``sweep``)."""
    if blobs.cloud_container(blob_keys.container_prefix(imodel_id), 60) is None:
        return b"".join(block_id for block_id, _ in split_file(path))
    fresh_after = time.time() - grace / 2

    def store(block_id: bytes, data: bytes) -> None:
        key = blob_keys.container_block(imodel_id, block_name(block_id))
        try:
            if blobs.stat(key).modified > fresh_after:
                return  # stored recently: no sweep can take it before this checkpoint's row names it
        except BlobNotFound:
            pass
        # Content-addressed: a concurrent writer of the same key writes the same bytes.
        blobs.put(key, [data])

    ids = bytearray()
    with ThreadPoolExecutor(STORE_CONCURRENCY, thread_name_prefix="container-blocks") as pool:
        pending: deque[Future[None]] = deque()
        for block_id, data in split_file(path):
            if len(pending) >= STORE_CONCURRENCY:
                pending.popleft().result()  # raises the first failure
            pending.append(pool.submit(store, block_id, data))
            ids += block_id
        for each in pending:
            each.result()
    return bytes(ids)


def checkpoint_blocks(svc: ContainerServices, imodel_id: str, path: Path) -> bytes:
    """``store_blocks`` for a checkpoint file just stored, with the deployment's grace time."""
    return store_blocks(svc.blobs, imodel_id, path, svc.settings.checkpoint_block_grace_seconds)


@dataclass(frozen=True)
class BlockSource:
    """Where a block's bytes are: ``size`` bytes of the checkpoint file ``key`` from ``offset`` (fewer
    than ``BLOCK_SIZE`` for a file's last block, which readers get zero-padded)."""

    key: str
    offset: int
    size: int


def find_block(session: Session, imodel_id: str, block_id: bytes) -> BlockSource | None:
    """A stored checkpoint of the iModel that holds the block, and where; None when none does."""
    rows = session.execute(
        select(Checkpoint.blob_key, Checkpoint.size, Checkpoint.blocks).where(
            Checkpoint.imodel_id == imodel_id,
            Checkpoint.state == "successful",
            Checkpoint.blocks.is_not(None),
        )
    ).all()
    for key, size, blocks in rows:
        at = _find_aligned(blocks or b"", block_id)
        if at is not None:
            offset = at * BLOCK_SIZE
            return BlockSource(key, offset, max(0, min(BLOCK_SIZE, int(size) - offset)))
    return None


def _find_aligned(blocks: bytes, block_id: bytes) -> int | None:
    start = blocks.find(block_id)
    while start >= 0:
        if start % ID_BYTES == 0:
            return start // ID_BYTES
        start = blocks.find(block_id, start + 1)
    return None


def manifest(session: Session, imodel_id: str) -> bytes:
    """The container's ``manifest.bcv``: one database per successful checkpoint with blocks, its id the
    changeset index + 1 (stable, ascending, as the format requires)."""
    rows = session.execute(
        select(Checkpoint.changeset_index, Checkpoint.changeset_id, Checkpoint.blocks)
        .where(
            Checkpoint.imodel_id == imodel_id,
            Checkpoint.state == "successful",
            Checkpoint.blocks.is_not(None),
        )
        .order_by(Checkpoint.changeset_index)
    ).all()
    databases = tuple(
        ManifestDatabase(id=index + 1, name=db_name(changeset_id), block_ids=_ids(blocks or b""))
        for index, changeset_id, blocks in rows
    )
    return compose_manifest(Manifest(block_size=BLOCK_SIZE, databases=databases))


def schedule_container(session: Session, jobs: JobQueue, checkpoint: Checkpoint) -> None:
    """Schedule the container of a stored checkpoint that has none (made before containers were), once:
    not while such a job is queued or running."""
    imodel_id, index = checkpoint.imodel_id, str(checkpoint.changeset_index)
    pending = session.scalar(
        select(Job.id)
        .where(
            Job.kind == CONTAINER_JOB,
            Job.status.in_([JobStatus.QUEUED.value, JobStatus.RUNNING.value]),
            Job.payload["imodel_id"].as_string() == imodel_id,
            Job.payload["index"].as_string() == index,
        )
        .limit(1)
    )
    if pending is None:
        jobs.enqueue(session, CONTAINER_JOB, {"imodel_id": imodel_id, "index": index})


def make_container(svc: ContainerServices, imodel_id: str, index: int, ctx: JobContext | None = None) -> None:
    """The ``checkpoint_container`` job: the stored checkpoint's file cut into the iModel's container."""
    with svc.db.read() as session:
        row = session.get(Checkpoint, (imodel_id, index))
        if row is None or row.state != "successful" or row.blocks is not None:
            return  # gone, not made yet (its maker writes the blocks), or done
        key = row.blob_key
    with scratch(svc.settings.data_dir, "container") as tmp:
        path = Path(tmp) / "checkpoint.bim"
        try:
            svc.blobs.download_to(key, path)
        except BlobNotFound:
            return  # evicted meanwhile: nothing to serve
        blocks = checkpoint_blocks(svc, imodel_id, path)
    with svc.db.write() as session:
        if ctx is not None:
            ctx.fence(session)
        row = session.get(Checkpoint, (imodel_id, index), with_for_update=True)
        if row is not None and row.blob_key == key and row.blocks is None:
            row.blocks = blocks


def schedule_sweep(session: Session, imodel_id: str, blocks: bytes, grace: float) -> None:
    """After ``grace`` seconds, delete those of ``blocks`` (an evicted checkpoint's) no checkpoint uses."""
    job = JobQueue.enqueue(session, SWEEP_JOB, {"imodel_id": imodel_id, "blocks": blocks.hex()})
    job.run_after = utcnow() + timedelta(seconds=grace)


def sweep(svc: ContainerServices, imodel_id: str, candidates: bytes) -> int:
    """The ``container_sweep`` job: delete the candidate blocks that no checkpoint row names and that were
    not written within the grace time; answers how many were deleted (none where no block is stored)."""
    with svc.db.read() as session:
        used = {
            block
            for (blocks,) in session.execute(
                select(Checkpoint.blocks).where(
                    Checkpoint.imodel_id == imodel_id, Checkpoint.blocks.is_not(None)
                )
            )
            for block in _ids(blocks or b"")
        }
    cutoff = time.time() - svc.settings.checkpoint_block_grace_seconds
    deleted = 0
    for block in set(_ids(candidates)) - used:
        key = blob_keys.container_block(imodel_id, block_name(block))
        try:
            if svc.blobs.stat(key).modified > cutoff:
                continue  # written again since: a checkpoint being made may use it
        except BlobNotFound:
            continue
        svc.blobs.delete(key)
        deleted += 1
    return deleted


def register(svc: ContainerServices) -> None:
    def make(ctx: JobContext) -> None:
        make_container(svc, str(ctx.payload["imodel_id"]), int(ctx.payload["index"]), ctx)

    def collect(ctx: JobContext) -> None:
        sweep(svc, str(ctx.payload["imodel_id"]), bytes.fromhex(str(ctx.payload["blocks"])))

    svc.jobs.register(CONTAINER_JOB, make)
    svc.jobs.register(SWEEP_JOB, collect)


def _ids(blocks: bytes) -> tuple[bytes, ...]:
    return tuple(bytes(blocks[i : i + ID_BYTES]) for i in range(0, len(blocks), ID_BYTES))


# -------------------------------------------------------------------------------------------- access


def sas_token(signer: UrlSigner, imodel_id: str, lifetime: int, now: float | None = None) -> str:
    expires = int((now if now is not None else time.time()) + lifetime)
    stamp = datetime.fromtimestamp(expires, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    sig = signer.signature(blob_keys.container_prefix(imodel_id), expires, "r", scope="d")
    return f"sv={SAS_VERSION}&sr=c&sp=r&se={quote(stamp, safe='')}&sig={sig}"


def token_valid(signer: UrlSigner, imodel_id: str, params: dict[str, str], now: float | None = None) -> bool:
    """Whether the query of a container request carries an unexpired token for this container."""
    try:
        expires = datetime.strptime(params.get("se", ""), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return False
    if params.get("sp") != "r":
        return False
    prefix = blob_keys.container_prefix(imodel_id)
    return signer.verify_prefix(prefix, int(expires.timestamp()), params.get("sig"), now=now)


def directory_access(
    storage: str, signer: UrlSigner, blobs: BlobStore, imodel_id: str, lifetime: int
) -> dict[str, Any]:
    """The checkpoint answer's ``directoryAccessInfo``: where the backend finds the container. With a blob
    service that serves containers itself (Azure), its account, container and a read-only SAS; otherwise
    ``storage`` (the name the site resolves to twinbase) and twinbase's own token."""
    cloud = blobs.cloud_container(blob_keys.container_prefix(imodel_id), lifetime)
    if cloud is not None:
        storage, container, token = cloud.account, cloud.container, cloud.sas
    else:
        container, token = container_name(imodel_id), sas_token(signer, imodel_id, lifetime)
    return {
        "baseUrl": f"https://{storage}.blob.core.windows.net/{container}",
        "baseDirectory": container,
        "storage": storage,
        "storageType": "azure",
        "azure": {"sasToken": token},
    }


def publish(session: Session, blobs: BlobStore, imodel_id: str) -> None:
    """Store the container's manifest where a blob service serves it (Azure) when it differs from what
    the checkpoint rows say, before a checkpoint answer sends a backend there. Called in the answer's
    write transaction with the iModel's row locked, so two answers never store their manifests in the
    wrong order (a stale manifest would lack a database just answered)."""
    if blobs.cloud_container(blob_keys.container_prefix(imodel_id), 60) is None:
        return  # twinbase composes it on each request (api.containers)
    session.get(IModel, imodel_id, with_for_update=True)
    wanted = manifest(session, imodel_id)
    key = blob_keys.container_manifest(imodel_id)
    try:
        stored = b"".join(blobs.open_range(key))
    except BlobNotFound:
        stored = b""
    if stored != wanted:
        blobs.put(key, [wanted])
