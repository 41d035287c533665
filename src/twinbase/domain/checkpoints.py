"""Checkpoints: the whole .bim of an iModel at exactly one changeset. Index 0 is the baseline.

Every other checkpoint is *materialized* by the ``checkpoint`` job: it takes the nearest successful
checkpoint below the target, replays the changesets after it with the file engine
(``bim.replay``), stamps the result as a checkpoint of that changeset (``parentChangeset``,
briefcase id 0, the iModel's and iTwin's ids) and stores it. A request for an index that has no
checkpoint creates one in state ``scheduled`` and answers it; ``successful`` when stored;
``failed`` with the file engine's message (e.g. a changeset that does not apply to its parent).

The stored checkpoints are also the cache replay starts from. Completing a changeset schedules the
new tip's checkpoint (cheap: one changeset on top of the previous tip). Kept whatever the disk
budget (``pinned``): the baseline, named versions, and every ``checkpoint_interval``-th changeset,
so reaching any index replays at most that many changesets. The rest are evicted least recently
used first when the unpinned ones exceed ``checkpoint_budget_bytes``.

The job's file work runs outside any transaction; its bookkeeping is one short write fenced by the
job's claim. Functions taking a session never commit.
"""

from __future__ import annotations

import bisect
import logging
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import apsw
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from twinbase.bim.changeset import ChangesetFile, ChangesetFormatError
from twinbase.bim.identity import BimFormatError
from twinbase.bim.replay import ReplayError, apply_changeset, make_checkpoint, open_for_replay, replay
from twinbase.domain import containers, summaries
from twinbase.domain.imodels import FileServices
from twinbase.errors import BlobNotFound, CheckpointNotFound
from twinbase.jobs.context import JobContext
from twinbase.jobs.queue import JobQueue
from twinbase.store.blobs import keys as blob_keys
from twinbase.store.models import Changeset, ChangesetElement, Checkpoint, IModel, utcnow
from twinbase.store.scratch import scratch

log = logging.getLogger(__name__)

CHECKPOINT_JOB = "checkpoint"
SCHEDULED = "scheduled"
SUCCESSFUL = "successful"
FAILED = "failed"
PIN_BASELINE = "baseline"
PIN_NAMED_VERSION = "namedVersion"
PIN_INTERVAL = "interval"


# ------------------------------------------------------------------------------------ look-ups


def at_or_before(session: Session, imodel_id: str, index: int) -> Checkpoint:
    """The newest successful checkpoint at or before ``index``; 404 ``CheckpointNotFound`` if none."""
    checkpoint = session.scalar(
        select(Checkpoint)
        .where(
            Checkpoint.imodel_id == imodel_id,
            Checkpoint.changeset_index <= index,
            Checkpoint.state == SUCCESSFUL,
        )
        .order_by(Checkpoint.changeset_index.desc())
        .limit(1)
    )
    if checkpoint is None:
        raise CheckpointNotFound()
    return checkpoint


def successful_indexes(session: Session, imodel_id: str) -> list[int]:
    """Indexes of the iModel's successful checkpoints, ascending (for many look-ups in one list page)."""
    return list(
        session.scalars(
            select(Checkpoint.changeset_index)
            .where(Checkpoint.imodel_id == imodel_id, Checkpoint.state == SUCCESSFUL)
            .order_by(Checkpoint.changeset_index)
        )
    )


def nearest(indexes: list[int], index: int) -> int | None:
    """The greatest of the ascending ``indexes`` that is ``<= index``; None when there is none."""
    pos = bisect.bisect_right(indexes, index)
    return indexes[pos - 1] if pos else None


# ------------------------------------------------------------------------------------ scheduling


def pin_for(index: int, interval: int) -> str | None:
    return PIN_INTERVAL if interval > 0 and index % interval == 0 else None


def require_baseline(session: Session, imodel_id: str) -> None:
    """A client asking for a checkpoint of an iModel without its baseline yet (waiting for its file, or a
    failed copy): 404 ``CheckpointNotFound``, rather than a checkpoint job bound to fail. (Copies
    schedule their own checkpoints before they are initialized: this is for the API only.)"""
    imodel = session.get(IModel, imodel_id)
    if imodel is None or imodel.state != "initialized":
        raise CheckpointNotFound()


def exact(
    session: Session,
    jobs: JobQueue,
    imodel_id: str,
    index: int,
    changeset_id: str,
    *,
    pinned: str | None = None,
) -> Checkpoint:
    """The checkpoint at exactly ``index``: the existing row (any state), else a new ``scheduled`` one
    whose job is enqueued in the same transaction. ``pinned`` marks it as kept (a named version)."""
    row = session.get(Checkpoint, (imodel_id, index))
    if row is None:
        row = Checkpoint(
            imodel_id=imodel_id,
            changeset_index=index,
            changeset_id=changeset_id,
            state=SCHEDULED,
            blob_key=blob_keys.checkpoint(imodel_id, index),
            size=0,
            pinned=pinned,
        )
        try:
            with session.begin_nested():
                session.add(row)
                session.flush()
                jobs.enqueue(session, CHECKPOINT_JOB, {"imodel_id": imodel_id, "index": index})
        except IntegrityError:  # another request scheduled it at the same moment
            row = session.get(Checkpoint, (imodel_id, index), populate_existing=True)
            assert row is not None
    if pinned is not None and row.pinned is None:
        row.pinned = pinned
    return row


def regenerate(session: Session, jobs: JobQueue, row: Checkpoint) -> Checkpoint:
    """Make a failed checkpoint again (``PUT .../namedversions/{id}/checkpoint``); others stay."""
    if row.state == FAILED:
        row.state = SCHEDULED
        row.error = None
        jobs.enqueue(session, CHECKPOINT_JOB, {"imodel_id": row.imodel_id, "index": row.changeset_index})
    return row


def checkpoint_failed(session: Session, payload: Mapping[str, Any], error: str) -> None:
    """The job gave up (its handler kept raising, or its worker kept dying)."""
    row = session.get(Checkpoint, (str(payload["imodel_id"]), int(payload["index"])), with_for_update=True)
    if row is not None and row.state == SCHEDULED:
        row.state = FAILED
        row.error = f"The checkpoint could not be made: {error}"


# --------------------------------------------------------------------------------- materializing


@dataclass(frozen=True)
class Plan:
    """How to make the file at ``index``: the base checkpoint and the changesets after it."""

    itwin_id: str
    index: int
    changeset_id: str
    base_index: int
    base_key: str
    changesets: list[tuple[int, str, str]]  # (index, id, blob key) after the base, ascending


class CheckpointUnmakeable(Exception):
    """The file cannot be made from the stored ones; the message says why (a user can read it)."""


def plan(session: Session, imodel_id: str, index: int) -> Plan:
    """Read what making the file at ``index`` needs (a read; the file work comes after)."""
    imodel = session.get(IModel, imodel_id)
    if imodel is None:
        raise CheckpointUnmakeable("the iModel was deleted")
    try:
        base = at_or_before(session, imodel_id, index)
    except CheckpointNotFound as exc:
        raise CheckpointUnmakeable("the iModel has no baseline checkpoint to start from") from exc
    rows = session.execute(
        select(Changeset.index, Changeset.id, Changeset.blob_key)
        .where(
            Changeset.imodel_id == imodel_id,
            Changeset.state == "fileUploaded",
            Changeset.index > base.changeset_index,
            Changeset.index <= index,
        )
        .order_by(Changeset.index)
    ).all()
    changesets = [(int(i or 0), str(cs_id), str(key)) for i, cs_id, key in rows]
    if [c[0] for c in changesets] != list(range(base.changeset_index + 1, index + 1)):
        raise CheckpointUnmakeable(f"changeset {index} is not in the timeline")
    changeset_id = changesets[-1][1] if changesets else base.changeset_id
    return Plan(imodel.itwin_id, index, changeset_id, base.changeset_index, base.blob_key, changesets)


def build_file(
    svc: FileServices,
    the_plan: Plan,
    dest: Path,
    ctx: JobContext | None = None,
    *,
    models_of: list[int] | None = None,
) -> dict[int, int]:
    """Write the iModel's file at ``the_plan.index`` to ``dest``: the base checkpoint, then each
    changeset after it applied by the file engine (not yet stamped as a checkpoint).

    Returns ``bis_Element.ModelId`` of the (signed) element ids in ``models_of`` that the file holds.
    Raises ``ChangesetFormatError`` / ``BimFormatError`` (``ReplayError`` among them: a changeset that
    does not apply) with a message naming the changeset, and ``BlobNotFound`` when a file vanished.
    """
    svc.blobs.download_to(the_plan.base_key, dest)
    folder = dest.parent / f"{dest.stem}-changesets"
    folder.mkdir()
    total = len(the_plan.changesets)

    def files() -> Iterator[Path]:
        # Fetched one by one as the engine asks for them; kept to the end, since the engine re-reads
        # the good ones of a group it rolled back after a failure.
        for done, (cs_index, cs_id, cs_key) in enumerate(the_plan.changesets, start=1):
            if ctx is not None:
                ctx.raise_if_cancelled()
                ctx.progress(done / (total + 1), f"Applying changeset {cs_index} ({done} of {total})")
            path = folder / f"changeset-{cs_index}-{cs_id}.cs"
            svc.blobs.download_to(cs_key, path)
            yield path

    try:
        # The engine's own loop (grouped commits, no fsync on the scratch copy); each file must hash to
        # its timeline id on the position the file is at, so a misplaced one can never be applied.
        replay(dest, files(), expected_ids=[cs_id for _, cs_id, _ in the_plan.changesets])
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    if not models_of:
        return {}
    db = open_for_replay(dest)
    try:
        return _models_of(db, models_of)
    finally:
        db.close()


class ChangesetDoesNotApply(Exception):
    """The changeset does not apply to the state of its parent; the message is the engine's."""


@dataclass(frozen=True)
class MadeCheckpoint:
    """A checkpoint file stored before its row exists (a completion's new tip)."""

    index: int
    changeset_id: str
    key: str
    size: int
    # The models of the elements the changeset updated, read from the file it made (signed ids).
    updated_models: dict[int, int]
    blocks: bytes  # its CloudSqlite block ids (domain.containers)


def next_checkpoint(
    svc: FileServices, imodel_id: str, parent_index: int, changeset_id: str, changeset: ChangesetFile
) -> MadeCheckpoint | None:
    """Apply ``changeset`` to the iModel's state at ``parent_index`` and store the result as the
    checkpoint at ``parent_index + 1``, under a key of its own (two completions racing on one parent
    never share a file). This is how a completion proves that a changeset applies to its parent.

    Raises ``ChangesetDoesNotApply``. Returns None when the parent's state cannot be made (no base,
    a stored file missing): the completion then goes on and the checkpoint job does the work later.
    """
    with svc.db.read() as session:
        try:
            the_plan = plan(session, imodel_id, parent_index)
        except CheckpointUnmakeable:
            return None
    index = parent_index + 1
    key = blob_keys.checkpoint_of(imodel_id, index, changeset_id)
    with scratch(svc.settings.data_dir, "checkpoint") as tmp:
        work = Path(tmp) / "next.bim"
        try:
            build_file(svc, the_plan, work)
        except (ChangesetFormatError, BimFormatError, BlobNotFound) as exc:
            log.warning(
                "parent state unavailable",
                extra={"action": "checkpoint_parent_unavailable", "imodel": imodel_id, "why": str(exc)},
            )
            return None
        db = open_for_replay(work)
        try:
            apply_changeset(db, changeset, label=f"{changeset_id} (on changeset {parent_index})")
            updated = [e - (1 << 64) if e >= 1 << 63 else e for e in changeset.summary.elements_updated]
            updated_models = _models_of(db, updated)
        except (ReplayError, ChangesetFormatError) as exc:
            raise ChangesetDoesNotApply(str(exc)) from exc
        finally:
            db.close()
        make_checkpoint(
            work,
            imodel_id=imodel_id,
            itwin_id=the_plan.itwin_id,
            changeset_id=changeset_id,
            changeset_index=index,
        )
        info = svc.blobs.upload_from(key, work)
        blocks = containers.checkpoint_blocks(svc, imodel_id, work)
    return MadeCheckpoint(index, changeset_id, key, info.size, updated_models, blocks)


def record_made(session: Session, made: MadeCheckpoint, imodel_id: str, *, pinned: str | None) -> None:
    """The row of a checkpoint ``next_checkpoint`` stored, in the completion's transaction."""
    now = utcnow()
    session.merge(
        Checkpoint(
            imodel_id=imodel_id,
            changeset_index=made.index,
            changeset_id=made.changeset_id,
            state=SUCCESSFUL,
            blob_key=made.key,
            size=made.size,
            pinned=pinned,
            created_at=now,
            used_at=now,
            blocks=made.blocks,
        )
    )


def materialize(svc: FileServices, imodel_id: str, index: int, ctx: JobContext | None = None) -> None:
    """The ``checkpoint`` job: make the checkpoint at ``index`` from the nearest one below it.

    A changeset that is not a valid file or does not apply to its parent fails the checkpoint with
    the engine's message (and every later one that needs it). A base checkpoint evicted meanwhile
    raises ``BlobNotFound``, so the job's next attempt plans again from another base.
    """
    with svc.db.read() as session:
        target = session.get(Checkpoint, (imodel_id, index))
        if target is None or target.state != SCHEDULED:
            return  # deleted, or finished by an earlier attempt
        try:
            # The target itself is not successful yet, so the base is the nearest one below it.
            the_plan = plan(session, imodel_id, index)
        except CheckpointUnmakeable as exc:
            _finish_failed(svc, imodel_id, index, str(exc), ctx)
            return
        missing = list(
            session.scalars(
                select(ChangesetElement.element_id)
                .where(ChangesetElement.imodel_id == imodel_id, ChangesetElement.model_id.is_(None))
                .distinct()
            )
        )
        key = target.blob_key
    try:
        with scratch(svc.settings.data_dir, "checkpoint") as tmp:
            work = Path(tmp) / "checkpoint.bim"
            models = build_file(svc, the_plan, work, ctx, models_of=missing)
            make_checkpoint(
                work,
                imodel_id=imodel_id,
                itwin_id=the_plan.itwin_id,
                changeset_id=the_plan.changeset_id,
                changeset_index=index,
            )
            info = svc.blobs.upload_from(key, work)
            blocks = containers.checkpoint_blocks(svc, imodel_id, work)
    except (ChangesetFormatError, BimFormatError, CheckpointUnmakeable) as exc:
        _finish_failed(svc, imodel_id, index, str(exc), ctx)
        return
    evicted: list[str] = []
    gone = False
    with svc.db.write() as session:
        if ctx is not None:
            ctx.fence(session)
        row = session.get(Checkpoint, (imodel_id, index), with_for_update=True)
        if row is None:
            gone = True
        elif row.state == SCHEDULED:
            now = utcnow()
            row.state, row.size, row.error, row.created_at, row.used_at, row.blocks = (
                SUCCESSFUL,
                info.size,
                None,
                now,
                now,
                blocks,
            )
            base = session.get(Checkpoint, (imodel_id, the_plan.base_index))
            if base is not None:
                base.used_at = now
            if models:
                summaries.fill_models(session, imodel_id, models)
            evicted = evict(
                session,
                svc.settings.checkpoint_budget_bytes,
                keep=(imodel_id, index),
                grace=svc.settings.checkpoint_block_grace_seconds,
            )
    if gone:
        svc.blobs.delete(key)
    for old in evicted:
        svc.blobs.delete(old)


def _finish_failed(
    svc: FileServices, imodel_id: str, index: int, reason: str, ctx: JobContext | None
) -> None:
    log.warning(
        "checkpoint failed",
        extra={"action": "checkpoint_failed", "imodel": imodel_id, "index": index, "why": reason},
    )
    with svc.db.write() as session:
        if ctx is not None:
            ctx.fence(session)
        row = session.get(Checkpoint, (imodel_id, index), with_for_update=True)
        if row is not None and row.state == SCHEDULED:
            row.state = FAILED
            row.error = reason


def _models_of(db: apsw.Connection, element_ids: list[int]) -> dict[int, int]:
    """``bis_Element.ModelId`` of the given (signed) ids that the replayed file holds."""
    found: dict[int, int] = {}
    for start in range(0, len(element_ids), 500):
        chunk = element_ids[start : start + 500]
        marks = ",".join("?" * len(chunk))
        for element, model in db.execute(f"SELECT Id, ModelId FROM bis_Element WHERE Id IN ({marks})", chunk):
            found[int(element)] = int(model)
    return found


def evict(session: Session, budget: int, *, keep: tuple[str, int], grace: float) -> list[str]:
    """Delete the least recently used unpinned checkpoints until the unpinned ones fit in ``budget``
    bytes (all iModels together); never ``keep``. Returns the blob keys to delete after commit."""
    total = session.scalar(
        select(func.coalesce(func.sum(Checkpoint.size), 0)).where(
            Checkpoint.pinned.is_(None), Checkpoint.state == SUCCESSFUL
        )
    )
    excess = int(total or 0) - budget
    if excess <= 0:
        return []
    candidates = session.execute(
        select(
            Checkpoint.imodel_id,
            Checkpoint.changeset_index,
            Checkpoint.size,
            Checkpoint.blob_key,
            Checkpoint.blocks,
        )
        .where(Checkpoint.pinned.is_(None), Checkpoint.state == SUCCESSFUL)
        .order_by(func.coalesce(Checkpoint.used_at, Checkpoint.created_at), Checkpoint.changeset_index)
    ).all()
    keys: list[str] = []
    for imodel_id, index, size, key, blocks in candidates:
        if excess <= 0:
            break
        if (imodel_id, index) == keep:
            continue
        session.execute(
            delete(Checkpoint).where(Checkpoint.imodel_id == imodel_id, Checkpoint.changeset_index == index)
        )
        keys.append(str(key))
        if blocks:
            containers.schedule_sweep(session, imodel_id, blocks, grace)
        excess -= int(size)
    return keys


def register(svc: FileServices) -> None:
    def handler(ctx: JobContext) -> None:
        materialize(svc, str(ctx.payload["imodel_id"]), int(ctx.payload["index"]), ctx)

    svc.jobs.register(CHECKPOINT_JOB, handler, on_failure=checkpoint_failed, cpu_heavy=True)


# ------------------------------------------------------------------------------------------ wire


def to_wire(
    checkpoint: Checkpoint, download: dict[str, str] | None, directory: dict[str, Any] | None = None
) -> dict[str, Any]:
    """``directoryAccessInfo``: where the checkpoint is as a CloudSqlite container
    (``containers.directory_access``), null when it is not one or the site serves none; the plain
    ``.bim`` link (``_links.download``) stays for every other client. Only a successful checkpoint has
    either; a failed one says why in ``error``."""
    successful = checkpoint.state == SUCCESSFUL
    wire: dict[str, Any] = {
        "changesetId": checkpoint.changeset_id,
        "changesetIndex": checkpoint.changeset_index,
        "size": checkpoint.size,
        "state": checkpoint.state,
        "dbName": containers.db_name(checkpoint.changeset_id),
        "directoryAccessInfo": directory if successful else None,
        "containerAccessInfo": None,
        "_links": {"download": download if successful else None},
    }
    if checkpoint.state == FAILED:
        wire["error"] = {"code": "CheckpointGenerationFailed", "message": checkpoint.error or "Unknown."}
    return wire
