"""iModels beyond create/get/list: update, delete, copies, favorites, recents, thumbnails, users.

- **Update** changes ``name``, ``description`` and ``extent`` (``imodels_manage``); **delete** removes the
  iModel and every row that hangs off it in one transaction (``imodels_delete``); the API layer deletes
  its blobs (``imodels/{id}/...``) once that transaction is committed.
- **Copies** (clone, fork, create from a template) answer at once with a ``notInitialized`` iModel whose
  create operation is ``scheduled``; a durable job (``imodel_copy``) then copies the source's checkpoint 0
  (stamped with the new identity) as baseline and checkpoint 0, and its changesets up to the requested
  one, rows and files, keeping their ids, indexes and parents. The changeset to copy up to is resolved
  when the request arrives, so later pushes to the source do not change what is copied.
- **Favorites** and **recents** (at most 25 per user and iTwin, newest first) of iModels.
- **Thumbnails**: a default PNG (plain, small 400x250 or large 800x500) until one is uploaded; an upload
  (PNG or JPEG) serves as both sizes (no imaging library here).
- **Users** of an iModel: the members of its iTwin, plus whoever created it or left work in it
  (changesets, named versions, briefcases), with their statistics in this iModel.
- **Permissions**: the caller's iModel permissions.

Functions take the caller's session and never commit.
"""

from __future__ import annotations

import functools
import io
import logging
import struct
import uuid
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, field_validator
from sqlalchemy import Select, case, delete, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from twinbase.bim.identity import BimFormatError, stamp
from twinbase.bim.replay import make_checkpoint
from twinbase.domain import access, checkpoints
from twinbase.domain.images import jpeg_size, png_size
from twinbase.domain.imodels import (
    Extent,
    FileServices,
    IModelCreate,
    Text255,
    insert_imodel,
    itwin_for_imodels,
    name_taken,
    not_blank,
    order_clause,
    parse_paging,
    record_baseline,
    stage_baseline,
    user_href,
    visible_imodel,
)
from twinbase.domain.itwins import iso
from twinbase.domain.listing import (
    BadOrderBy,
    Page,
    Paging,
    fetch_entities_by_key,
    fetch_keyset_page,
    fetch_page,
    order_by_param,
    single_order,
)
from twinbase.errors import (
    BlobNotFound,
    ChangesetNotFound,
    ErrorDetail,
    IModelExists,
    InvalidRequest,
    PayloadTooLarge,
    UserNotFound,
    invalid_imodels,
    invalid_value,
)
from twinbase.identity.tokens import Principal
from twinbase.jobs.context import JobContext
from twinbase.jobs.queue import JobQueue
from twinbase.store.blobs import keys as blob_keys
from twinbase.store.models import (
    BaselineFile,
    Briefcase,
    Changeset,
    ChangesetElement,
    ChangesetExtendedData,
    ChangesetGroup,
    Checkpoint,
    IModel,
    IModelFavorite,
    IModelRecent,
    ITwin,
    Job,
    Lock,
    Member,
    NamedVersion,
    ReleasedLock,
    User,
    new_id,
    utcnow,
)
from twinbase.store.scratch import scratch

log = logging.getLogger("twinbase.imodels")

COPY_JOB = "imodel_copy"
LIST_MESSAGE = "Cannot query iModels."
MAX_RECENTS = 25
ROOT_ELEMENT_ID = "0x1"


def blob_prefix(imodel_id: str) -> str:
    """Every file of an iModel lives under this prefix (baseline, checkpoints, changesets, thumbnail)."""
    return blob_keys.imodel_prefix(imodel_id)


# ------------------------------------------------------------------------------------------ update


class IModelUpdate(BaseModel):
    """PATCH body: only the properties present change; ``description`` and ``extent`` may be null."""

    model_config = ConfigDict(extra="ignore")

    name: Text255 | None = Field(default=None, min_length=1)
    description: Text255 | None = None
    extent: Extent | None = None

    check_name = field_validator("name")(not_blank)


def update_imodel(session: Session, principal: Principal, imodel_id: str, body: IModelUpdate) -> IModel:
    imodel, _ = visible_imodel(session, imodel_id, principal.user_id, access.IMODELS_MANAGE, for_update=True)
    present = body.model_fields_set
    if "name" in present:
        if body.name is None:
            raise invalid_imodels("Cannot update iModel.", invalid_value("name"))
        if body.name != imodel.name and name_taken(session, imodel.itwin_id, body.name, imodel.id):
            raise IModelExists()
        imodel.name = body.name
    if "description" in present:
        imodel.description = body.description
    if "extent" in present:
        imodel.extent = body.extent.model_dump() if body.extent is not None else None
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError as exc:  # a concurrent rename took the name first
        raise IModelExists() from exc
    return imodel


# ------------------------------------------------------------------------------------------ delete

# Every table that hangs off an iModel, children first.
IMODEL_TABLES: tuple[Any, ...] = (
    Lock,
    ReleasedLock,
    Briefcase,
    NamedVersion,
    Checkpoint,
    ChangesetExtendedData,
    Changeset,
    ChangesetGroup,
    BaselineFile,
    IModelFavorite,
    IModelRecent,
)


def delete_imodel(session: Session, principal: Principal, imodel_id: str) -> list[str]:
    """Delete the iModel's rows; returns the blob prefixes to delete once the transaction is committed."""
    imodel, _ = visible_imodel(session, imodel_id, principal.user_id, access.IMODELS_DELETE, for_update=True)
    for table in IMODEL_TABLES:
        session.execute(delete(table).where(table.imodel_id == imodel.id))
    session.delete(imodel)
    session.flush()
    return blob_keys.imodel_prefixes(imodel.id)


# ------------------------------------------------------------------------------------------ copies

CopyKind = Literal["clone", "fork", "template"]
COPY_MESSAGES: dict[str, str] = {
    "clone": "Cannot clone iModel.",
    "fork": "Cannot fork iModel.",
    "template": "Cannot create iModel.",
}


class CloneRequest(BaseModel):
    """``POST /imodels/{id}/clone``: where to, under which name, and up to which changeset."""

    model_config = ConfigDict(extra="ignore")

    iTwinId: StrictStr
    name: Text255 | None = Field(default=None, min_length=1)
    description: Text255 | None = None
    changesetId: StrictStr | None = Field(default=None, max_length=64)
    changesetIndex: StrictInt | None = Field(default=None, ge=0)
    containersEnabled: StrictInt | None = Field(default=None, ge=0, le=7)

    check_name = field_validator("name")(not_blank)


class ForkRequest(CloneRequest):
    """``POST /imodels/{id}/fork``: a clone that remembers its main iModel."""

    preserveHistory: StrictBool | None = None


@dataclass(frozen=True)
class SourcePoint:
    """The changeset of the source a copy goes up to (index 0 and id "" = the baseline alone)."""

    index: int
    changeset_id: str


def resolve_point(
    session: Session, source: IModel, changeset_id: str | None, changeset_index: int | None, message: str
) -> SourcePoint:
    if changeset_id is not None and changeset_index is not None:
        raise invalid_imodels(
            message,
            ErrorDetail(
                "MutuallyExclusivePropertiesProvided",
                "Properties 'changesetId' and 'changesetIndex' cannot be used together.",
                "changesetId",
            ),
        )
    if changeset_id == "" or changeset_index == 0:
        return SourcePoint(0, "")
    uploaded = select(Changeset.index, Changeset.id).where(
        Changeset.imodel_id == source.id, Changeset.state == "fileUploaded", Changeset.index.is_not(None)
    )
    if changeset_id is None and changeset_index is None:
        newest = session.execute(uploaded.order_by(Changeset.index.desc()).limit(1)).first()
        return SourcePoint(int(newest[0] or 0), str(newest[1])) if newest else SourcePoint(0, "")
    if changeset_id is not None:
        row = session.execute(uploaded.where(Changeset.id == changeset_id.lower())).first()
    else:
        row = session.execute(uploaded.where(Changeset.index == changeset_index)).first()
    if row is None:
        raise ChangesetNotFound()
    return SourcePoint(int(row[0] or 0), str(row[1]))


def _require_initialized(source: IModel, message: str) -> None:
    if source.state != "initialized":
        raise invalid_imodels(
            message, ErrorDetail("InvalidChange", "The source iModel is not initialized.", "iModelId")
        )


def _enqueue_copy(
    session: Session,
    imodel: IModel,
    source: IModel,
    point: SourcePoint,
    kind: CopyKind,
    user_id: str,
    *,
    squash: bool,
) -> None:
    imodel.source_changeset_id = point.changeset_id
    imodel.source_changeset_index = point.index
    JobQueue.enqueue(
        session,
        COPY_JOB,
        {
            "imodel_id": imodel.id,
            "source_id": source.id,
            "kind": kind,
            "changeset_index": point.index,
            "changeset_id": point.changeset_id,
            "user_id": user_id,
            "squash": squash,
        },
    )


def start_copy(
    session: Session, principal: Principal, source_id: str, body: CloneRequest, kind: Literal["clone", "fork"]
) -> IModel:
    """Insert the clone or fork (``notInitialized``, create operation ``scheduled``) and its copy job."""
    message = COPY_MESSAGES[kind]
    if not access.is_uuid(body.iTwinId):
        raise invalid_imodels(message, invalid_value("iTwinId"))
    source, _ = visible_imodel(session, source_id, principal.user_id, access.IMODELS_READ)
    itwin = itwin_for_imodels(session, body.iTwinId, principal.user_id, access.IMODELS_MANAGE)
    _require_initialized(source, message)
    point = resolve_point(session, source, body.changesetId, body.changesetIndex, message)
    imodel = insert_imodel(
        session,
        itwin,
        name=body.name if body.name is not None else source.name,
        description=body.description if body.description is not None else source.description,
        # The platform's own tests: a clone keeps the source's extent, a fork does not.
        extent=source.extent if kind == "clone" else None,
        containers_enabled=body.containersEnabled
        if body.containersEnabled is not None
        else source.containers_enabled,
        geographic_coordinate_system=source.geographic_coordinate_system,
        creation_mode=None,
        state="notInitialized",
        create_state="scheduled",
        created_by=principal.user_id,
        cloned_from=source.id if kind == "clone" else None,
        forked_from=source.id if kind == "fork" else None,
    )
    # A fork starts at the fork point: the source's file at that changeset is its baseline (history
    # squashed), unless it asks to preserve the history, as the platform does.
    squash = kind == "fork" and not getattr(body, "preserveHistory", False)
    _enqueue_copy(session, imodel, source, point, kind, principal.user_id, squash=squash)
    return imodel


def create_from_template(session: Session, principal: Principal, body: IModelCreate) -> IModel:
    """``POST /imodels`` with ``template``: a new iModel made of the template's files, up to a changeset."""
    assert body.template is not None
    message = COPY_MESSAGES["template"]
    itwin = itwin_for_imodels(session, body.iTwinId, principal.user_id, access.IMODELS_MANAGE)
    source, _ = visible_imodel(session, body.template.iModelId, principal.user_id, access.IMODELS_READ)
    _require_initialized(source, message)
    point = resolve_point(session, source, body.template.changesetId, None, message)
    imodel = insert_imodel(
        session,
        itwin,
        name=body.name,
        description=body.description,
        extent=body.extent.model_dump() if body.extent else None,
        containers_enabled=body.containersEnabled or 0,
        geographic_coordinate_system=body.geographicCoordinateSystem.model_dump(exclude_none=True)
        if body.geographicCoordinateSystem
        else source.geographic_coordinate_system,
        creation_mode=body.creationMode,
        state="notInitialized",
        create_state="scheduled",
        created_by=principal.user_id,
    )
    # A new iModel from a template starts with the template's file at that changeset, no history.
    _enqueue_copy(session, imodel, source, point, "template", principal.user_id, squash=True)
    return imodel


def _copied_key(key: str, source_id: str, imodel_id: str, changeset_id: str) -> str:
    old = blob_prefix(source_id) + "/"
    if key.startswith(old):
        return blob_prefix(imodel_id) + "/" + key[len(old) :]
    return blob_keys.changeset(imodel_id, changeset_id)


def _mark_failed(svc: FileServices, imodel_id: str, reason: str, ctx: JobContext | None) -> None:
    log.warning(
        "iModel copy failed", extra={"action": "imodel_copy_failed", "imodel": imodel_id, "why": reason}
    )
    with svc.db.write() as session:
        if ctx is not None:
            ctx.fence(session)
        copy_failed(session, {"imodel_id": imodel_id}, reason)


def copy_failed(session: Session, payload: Mapping[str, Any], error: str) -> None:
    """The copy's create operation ends ``failed`` (also when the job gives up: its handler kept
    raising, or its worker kept dying)."""
    imodel = session.get(IModel, str(payload["imodel_id"]), with_for_update=True)
    if imodel is not None and imodel.create_state == "scheduled":
        imodel.create_state = "failed"


def run_copy(svc: FileServices, payload: Mapping[str, Any], ctx: JobContext | None = None) -> None:
    """The ``imodel_copy`` job. Idempotent: a retry redoes the copy; a finished copy is left alone.

    A *squashing* copy (a fork without ``preserveHistory``, a template) gets the source's file at the
    chosen changeset as its baseline, made by the file engine, and no changesets. Otherwise the copy
    starts from the source's baseline and gets its changesets up to the chosen one, with their named
    versions (whose checkpoints are scheduled), changeset groups, extended data and change summaries.

    Every file is copied (and fsynced) before the one short write transaction that records the rows,
    fenced by the job's claim (``ctx``; None when called directly): no write lock is held meanwhile.
    """
    imodel_id = str(payload["imodel_id"])
    source_id = str(payload["source_id"])
    upto = int(payload["changeset_index"])
    squash = bool(payload.get("squash", False)) and upto > 0
    user_id = str(payload.get("user_id") or "")
    with svc.db.read() as session:
        imodel = session.get(IModel, imodel_id)
        if imodel is None or imodel.create_state != "scheduled":
            return
        itwin_id = imodel.itwin_id
        user_id = user_id or imodel.created_by
        if squash:
            try:
                squashed = checkpoints.plan(session, source_id, upto)
            except checkpoints.CheckpointUnmakeable as exc:
                _mark_failed(svc, imodel_id, str(exc), ctx)
                return
            history = _History([], [], [], [], [])
        else:
            squashed = None
            history = _read_history(session, source_id, upto)
        checkpoint = session.get(Checkpoint, (source_id, 0))
        checkpoint_key = (
            checkpoint.blob_key if checkpoint is not None and checkpoint.state == "successful" else None
        )
    if checkpoint_key is None:
        _mark_failed(svc, imodel_id, "the source has no baseline checkpoint", ctx)
        return
    if not squash and [c["index"] for c in history.changesets] != list(range(1, upto + 1)):
        _mark_failed(svc, imodel_id, "the source's changesets changed", ctx)
        return
    gone = False
    try:
        with scratch(svc.settings.data_dir, "copy") as tmp:
            path = Path(tmp) / "baseline.bim"
            if squashed is not None:
                checkpoints.build_file(svc, squashed, path, ctx)
                make_checkpoint(
                    path, imodel_id=imodel_id, itwin_id=itwin_id, changeset_id="", changeset_index=0
                )
            else:
                svc.blobs.download_to(checkpoint_key, path)
                stamp(path, imodel_id=imodel_id, itwin_id=itwin_id)
            staged = stage_baseline(svc, imodel_id, path)
            for done, item in enumerate(history.changesets, start=1):
                if ctx is not None:
                    ctx.progress(done / (len(history.changesets) + 1), f"Copying changeset {done}")
                new_key = _copied_key(item["blob_key"], source_id, imodel_id, item["id"])
                svc.blobs.copy(item["blob_key"], new_key)
                item["blob_key"] = new_key
        with svc.db.write() as session:
            if ctx is not None:
                ctx.fence(session)
            imodel = session.get(IModel, imodel_id, with_for_update=True)
            if imodel is None:
                gone = True
            elif imodel.create_state == "scheduled":
                record_baseline(session, imodel, staged, user_id)
                _write_history(session, svc, imodel, history)
                imodel.state = "initialized"
                imodel.create_state = "successful"
    except (BimFormatError, checkpoints.CheckpointUnmakeable) as exc:
        _mark_failed(svc, imodel_id, f"the source's file at changeset {upto} cannot be made: {exc}", ctx)
        return
    except BlobNotFound:
        _mark_failed(svc, imodel_id, "a file of the source is missing (was it deleted?)", ctx)
        return
    if gone:  # deleted while being copied: drop what this job wrote
        for prefix in blob_keys.imodel_prefixes(imodel_id):
            svc.blobs.delete_prefix(prefix)


@dataclass
class _History:
    """The source's rows a history-keeping copy takes, as column dicts (ids remapped on write)."""

    changesets: list[dict[str, Any]]
    groups: list[dict[str, Any]]
    named_versions: list[dict[str, Any]]
    extended_data: list[dict[str, Any]]
    elements: list[dict[str, Any]]


def _columns(model: Any, row: Any) -> dict[str, Any]:
    return {
        attr.key: getattr(row, attr.key) for attr in model.__mapper__.column_attrs if attr.key != "imodel_id"
    }


def _read_history(session: Session, source_id: str, upto: int) -> _History:
    changesets = session.scalars(
        select(Changeset)
        .where(
            Changeset.imodel_id == source_id,
            Changeset.state == "fileUploaded",
            Changeset.index >= 1,
            Changeset.index <= upto,
        )
        .order_by(Changeset.index)
    ).all()
    group_ids = {c.group_id for c in changesets if c.group_id}
    groups = (
        session.scalars(select(ChangesetGroup).where(ChangesetGroup.id.in_(group_ids))).all()
        if group_ids
        else []
    )
    named = session.scalars(
        select(NamedVersion).where(NamedVersion.imodel_id == source_id, NamedVersion.changeset_index <= upto)
    ).all()
    extended = session.scalars(
        select(ChangesetExtendedData).where(
            ChangesetExtendedData.imodel_id == source_id, ChangesetExtendedData.changeset_index <= upto
        )
    ).all()
    elements = session.scalars(
        select(ChangesetElement).where(
            ChangesetElement.imodel_id == source_id, ChangesetElement.changeset_index <= upto
        )
    ).all()
    return _History(
        [_columns(Changeset, c) for c in changesets],
        [_columns(ChangesetGroup, g) for g in groups],
        [_columns(NamedVersion, n) for n in named],
        [_columns(ChangesetExtendedData, e) for e in extended],
        [_columns(ChangesetElement, e) for e in elements],
    )


def _write_history(session: Session, svc: FileServices, imodel: IModel, history: _History) -> None:
    """Record the copied rows under the new iModel (new ids for groups and named versions)."""
    session.execute(delete(Changeset).where(Changeset.imodel_id == imodel.id))
    new_group = {g["id"]: new_id() for g in history.groups}
    for group in history.groups:
        session.add(ChangesetGroup(**{**group, "id": new_group[group["id"]]}, imodel_id=imodel.id))
    for item in history.changesets:
        group_id = new_group.get(item["group_id"]) if item["group_id"] else None
        session.add(Changeset(imodel_id=imodel.id, **{**item, "group_id": group_id}))
    for row in history.extended_data:
        session.add(ChangesetExtendedData(imodel_id=imodel.id, **row))
    if history.elements:
        session.execute(insert(ChangesetElement), [{**e, "imodel_id": imodel.id} for e in history.elements])
    if history.changesets:
        last = history.changesets[-1]
        imodel.tip_index = int(last["index"])
        imodel.tip_changeset_id = str(last["id"])
        pushed = [c["pushed_at"] or c["created_at"] for c in history.changesets]
        imodel.last_changeset_push_at = max(p for p in pushed if p is not None)
    session.flush()
    for named in history.named_versions:
        nv = NamedVersion(**{**named, "id": new_id()}, imodel_id=imodel.id)
        session.add(nv)
        session.flush()
        checkpoints.exact(
            session,
            svc.jobs,
            imodel.id,
            nv.changeset_index,
            nv.changeset_id or "",
            pinned=checkpoints.PIN_NAMED_VERSION,
        )


def register(svc: FileServices) -> None:
    def handler(ctx: JobContext) -> None:
        run_copy(svc, ctx.payload, ctx)

    svc.jobs.register(COPY_JOB, handler, on_failure=copy_failed)


def fork_relationship_id(source_id: str, imodel_id: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"twinbase:imodel-fork:{source_id}:{imodel_id}"))


def create_operation(session: Session, principal: Principal, imodel_id: str) -> dict[str, Any]:
    """``{state, clonedFrom, forkedFrom}`` of the iModel's create operation."""
    imodel, _ = visible_imodel(session, imodel_id, principal.user_id)
    state = imodel.create_state
    payload: dict[str, Any] = {}
    if imodel.cloned_from or imodel.forked_from or state == "scheduled":
        job = session.scalar(
            select(Job)
            .where(Job.kind == COPY_JOB, Job.payload["imodel_id"].as_string() == imodel.id)
            .order_by(Job.created_at.desc())
            .limit(1)
        )
        if job is not None:
            payload = dict(job.payload)
            if state == "scheduled" and job.status == "failed":  # it gave up after its retries
                state = "failed"
    # The row is the record; the job payload is only a fallback for rows made before it was kept.
    # The client's ClonedFrom/ForkedFrom carry the changeset id only (a deep-equality test compares
    # ``clonedFrom`` with ``{iModelId, changesetId}``), so the index is not rendered.
    origin = {
        "changesetId": imodel.source_changeset_id
        if imodel.source_changeset_id is not None
        else str(payload.get("changeset_id", "")),
    }
    cloned = {"iModelId": imodel.cloned_from, **origin} if imodel.cloned_from else None
    forked = (
        {
            "iModelId": imodel.forked_from,
            **origin,
            "relationshipId": fork_relationship_id(imodel.forked_from, imodel.id),
        }
        if imodel.forked_from
        else None
    )
    return {"state": state, "clonedFrom": cloned, "forkedFrom": forked}


# ------------------------------------------------------------------------------- favorites, recents


def _itwin_of_list(session: Session, principal: Principal, params: Mapping[str, str]) -> ITwin:
    itwin_id = params.get("iTwinId") or params.get("itwinId") or ""
    if not itwin_id:
        raise invalid_imodels(
            LIST_MESSAGE,
            ErrorDetail("MissingRequiredParameter", "Required parameter 'iTwinId' is missing.", "iTwinId"),
        )
    return itwin_for_imodels(session, itwin_id, principal.user_id, access.IMODELS_WEBVIEW)


def favorites(session: Session, principal: Principal, params: Mapping[str, str]) -> Page[IModel]:
    """The caller's favorite iModels of one iTwin, newest favorite first, by keyset through
    ix_imodel_favorites_user_created behind the next links."""
    itwin = _itwin_of_list(session, principal, params)
    paging = parse_paging(params, message=LIST_MESSAGE)
    stmt = (
        select(IModel, IModelFavorite.created_at)
        .join(IModelFavorite, IModelFavorite.imodel_id == IModel.id)
        .where(IModelFavorite.user_id == principal.user_id, IModel.itwin_id == itwin.id)
    )
    keys = [IModelFavorite.created_at, IModelFavorite.imodel_id]
    return fetch_entities_by_key(session, cast("Select[Any]", stmt), paging, keys, descending=True)


def add_favorite(session: Session, principal: Principal, imodel_id: str) -> None:
    imodel, _ = visible_imodel(session, imodel_id, principal.user_id)
    try:
        with session.begin_nested():  # the savepoint holds the insert: a clash must not spoil the rest
            if session.get(IModelFavorite, (principal.user_id, imodel.id)) is None:
                session.add(IModelFavorite(user_id=principal.user_id, imodel_id=imodel.id))
                session.flush()
    except IntegrityError:  # a concurrent request added it: the outcome is the same
        pass


def remove_favorite(session: Session, principal: Principal, imodel_id: str) -> None:
    imodel, _ = visible_imodel(session, imodel_id, principal.user_id)
    session.execute(
        delete(IModelFavorite).where(
            IModelFavorite.user_id == principal.user_id, IModelFavorite.imodel_id == imodel.id
        )
    )


def recents(session: Session, principal: Principal, params: Mapping[str, str]) -> Page[IModel]:
    itwin = _itwin_of_list(session, principal, params)
    paging = parse_paging(params, message=LIST_MESSAGE, default_top=MAX_RECENTS)
    paging = Paging(min(paging.top, MAX_RECENTS), paging.skip)
    stmt = (
        select(IModel)
        .join(IModelRecent, IModelRecent.imodel_id == IModel.id)
        .where(IModelRecent.user_id == principal.user_id, IModel.itwin_id == itwin.id)
        .order_by(IModelRecent.accessed_at.desc(), IModel.id)
    )
    return fetch_page(session, stmt, paging)


def add_recent(session: Session, principal: Principal, imodel_id: str) -> None:
    imodel, _ = visible_imodel(session, imodel_id, principal.user_id)
    try:
        with session.begin_nested():  # the savepoint holds the insert: a clash must not spoil the rest
            recent = session.get(IModelRecent, (principal.user_id, imodel.id))
            if recent is None:
                session.add(
                    IModelRecent(user_id=principal.user_id, imodel_id=imodel.id, accessed_at=utcnow())
                )
            else:
                recent.accessed_at = utcnow()
            session.flush()
    except IntegrityError:  # a concurrent first visit inserted it
        session.execute(
            update(IModelRecent)
            .where(IModelRecent.user_id == principal.user_id, IModelRecent.imodel_id == imodel.id)
            .values(accessed_at=utcnow())
        )
    stale = list(
        session.scalars(
            select(IModelRecent.imodel_id)
            .join(IModel, IModel.id == IModelRecent.imodel_id)
            .where(IModelRecent.user_id == principal.user_id, IModel.itwin_id == imodel.itwin_id)
            .order_by(IModelRecent.accessed_at.desc(), IModel.id)
            .offset(MAX_RECENTS)
        )
    )
    if stale:
        session.execute(
            delete(IModelRecent).where(
                IModelRecent.user_id == principal.user_id, IModelRecent.imodel_id.in_(stale)
            )
        )


def remove_recent(session: Session, principal: Principal, imodel_id: str) -> None:
    imodel, _ = visible_imodel(session, imodel_id, principal.user_id)
    session.execute(
        delete(IModelRecent).where(
            IModelRecent.user_id == principal.user_id, IModelRecent.imodel_id == imodel.id
        )
    )


# ---------------------------------------------------------------------------------------- thumbnails

THUMBNAIL_SIZES: dict[str, tuple[int, int]] = {"small": (400, 250), "large": (800, 500)}
THUMBNAIL_TYPES = ("image/png", "image/jpeg")
MAX_THUMBNAIL_BYTES = 5 * 1024 * 1024
THUMBNAIL_MESSAGE = "Cannot upload Thumbnail."
# A light grey-blue, the colour of an empty viewport.
_DEFAULT_RGB = bytes((0xD5, 0xDD, 0xE6))


class ThumbnailTooLarge(PayloadTooLarge):
    default_message = (
        f"The thumbnail is larger than the maximum of {MAX_THUMBNAIL_BYTES // (1024 * 1024)} MB."
    )


def thumbnail_key(imodel_id: str, size: str) -> str:
    return blob_keys.thumbnail(imodel_id, size)


def render_thumbnails(data: bytes) -> dict[str, bytes]:
    """The uploaded image scaled and centre-cropped to each size the API serves, as PNG.

    Raises ``InvalidThumbnailFormat`` when the bytes do not decode; the pixel limit keeps a small file
    that claims huge dimensions (a decompression bomb) from taking the server's memory.
    """
    from PIL import Image, ImageOps

    Image.MAX_IMAGE_PIXELS = 50_000_000
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            source = image.convert("RGBA" if "A" in image.getbands() else "RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise invalid_thumbnail("The image cannot be decoded.") from exc
    out: dict[str, bytes] = {}
    for size, box in THUMBNAIL_SIZES.items():
        fitted = ImageOps.fit(source, box, method=Image.Resampling.LANCZOS)
        buf = io.BytesIO()
        fitted.save(buf, format="PNG", optimize=True)
        out[size] = buf.getvalue()
    return out


def thumbnail_size(params: Mapping[str, str]) -> str:
    size = (params.get("size") or "small").lower()
    if size not in THUMBNAIL_SIZES:
        raise invalid_imodels(
            "Cannot download Thumbnail.", invalid_value("size", "Provided 'size' value is not valid.")
        )
    return size


@functools.cache
def default_thumbnail(size: str) -> bytes:
    """A plain PNG of the size's dimensions (RGB, 8 bits), built once per size."""
    width, height = THUMBNAIL_SIZES[size]

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" + _DEFAULT_RGB * width  # filter type 0, then the pixels
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(row * height, 9))
        + chunk(b"IEND", b"")
    )


def invalid_thumbnail(message: str) -> InvalidRequest:
    return invalid_imodels(THUMBNAIL_MESSAGE, ErrorDetail("InvalidThumbnailFormat", message))


def thumbnail_content_type(header: str | None) -> str:
    media = (header or "").split(";", 1)[0].strip().lower()
    if media not in THUMBNAIL_TYPES:
        raise invalid_thumbnail(
            f"Content-Type '{media or 'missing'}' is not a supported thumbnail format; "
            "use image/png or image/jpeg."
        )
    return media


def check_thumbnail(data: bytes, content_type: str) -> None:
    """The bytes must be an image of the declared type with a size (read from its header only)."""
    kind = "PNG" if content_type == "image/png" else "JPEG"
    if not data:
        raise invalid_thumbnail("The request body is empty; send the image bytes.")
    size = png_size(data) if content_type == "image/png" else jpeg_size(data)
    if size is None or size[0] <= 0 or size[1] <= 0:
        raise invalid_thumbnail(f"The request body is not a valid {kind} image.")


def check_can_upload_thumbnail(session: Session, principal: Principal, imodel_id: str) -> None:
    visible_imodel(session, imodel_id, principal.user_id, access.IMODELS_MANAGE)


def set_thumbnail(session: Session, principal: Principal, imodel_id: str, content_type: str) -> None:
    imodel, _ = visible_imodel(session, imodel_id, principal.user_id, access.IMODELS_MANAGE, for_update=True)
    imodel.thumbnail_content_type = content_type
    session.flush()


def thumbnail_of(session: Session, principal: Principal, imodel_id: str) -> tuple[str, str | None]:
    """The iModel's id and its uploaded thumbnail's media type (``None``: the default one)."""
    imodel, _ = visible_imodel(session, imodel_id, principal.user_id, access.IMODELS_WEBVIEW)
    return imodel.id, imodel.thumbnail_content_type


# --------------------------------------------------------------------------------------------- users

USER_ORDER_COLUMNS: dict[str, Any] = {"givenName": User.given_name, "surname": User.surname}


def _users_of(imodel: IModel) -> Select[Any]:
    return select(User).where(
        User.is_invited.is_(False),
        or_(
            User.id.in_(select(Member.user_id).where(Member.itwin_id == imodel.itwin_id)),
            User.id == imodel.created_by,
            User.id.in_(select(Changeset.creator_id).where(Changeset.imodel_id == imodel.id)),
            User.id.in_(select(NamedVersion.creator_id).where(NamedVersion.imodel_id == imodel.id)),
            User.id.in_(select(Briefcase.owner_id).where(Briefcase.imodel_id == imodel.id)),
        ),
    )


def users(
    session: Session, principal: Principal, imodel_id: str, params: Mapping[str, str]
) -> tuple[IModel, Page[User]]:
    message = "Cannot query Users."
    imodel, _ = visible_imodel(session, imodel_id, principal.user_id, access.IMODELS_WEBVIEW)
    paging = parse_paging(params, message=message)
    raw = order_by_param(params)
    try:
        single = single_order(raw, USER_ORDER_COLUMNS) if raw else None
    except BadOrderBy as exc:
        raise invalid_imodels(message, invalid_value("$orderBy")) from exc
    if raw and single is None:  # several terms: by offset
        order = order_clause(params, USER_ORDER_COLUMNS, [], message)
        return imodel, fetch_page(session, _users_of(imodel).order_by(*order, User.id), paging)
    # By keyset behind the next links (the name columns are never NULL): given name, surname, id by
    # default; the one column asked for, then id.
    if single is None:
        keys, descending = [User.given_name, User.surname, User.id], False
    else:
        keys, descending = [single[0], User.id], single[1]
    return imodel, fetch_keyset_page(session, _users_of(imodel), paging, keys, descending=descending)


def user(session: Session, principal: Principal, imodel_id: str, user_id: str) -> tuple[IModel, User]:
    imodel, _ = visible_imodel(session, imodel_id, principal.user_id, access.IMODELS_WEBVIEW)
    found = session.scalar(_users_of(imodel).where(User.id == user_id))
    if found is None:
        raise UserNotFound()
    return imodel, found


def statistics(session: Session, imodel_id: str, user_ids: list[str]) -> dict[str, dict[str, Any]]:
    """Per user: pushed changesets, last push, named versions, briefcases, and the applications used."""
    out: dict[str, dict[str, Any]] = {
        uid: {
            "pushedChangesetsCount": 0,
            "lastChangesetPushDate": None,
            "createdVersionsCount": 0,
            "briefcasesCount": 0,
            "applications": [],
        }
        for uid in user_ids
    }
    if not user_ids:
        return out
    for uid, count, last in session.execute(
        select(
            Changeset.creator_id,
            func.count(),
            func.max(func.coalesce(Changeset.pushed_at, Changeset.created_at)),
        )
        .where(
            Changeset.imodel_id == imodel_id,
            Changeset.state == "fileUploaded",
            Changeset.creator_id.in_(user_ids),
        )
        .group_by(Changeset.creator_id)
    ):
        out[uid]["pushedChangesetsCount"] = int(count)
        out[uid]["lastChangesetPushDate"] = iso(last)
    for uid, count in session.execute(
        select(NamedVersion.creator_id, func.count())
        .where(NamedVersion.imodel_id == imodel_id, NamedVersion.creator_id.in_(user_ids))
        .group_by(NamedVersion.creator_id)
    ):
        out[uid]["createdVersionsCount"] = int(count)
    briefcases = session.execute(
        select(
            Briefcase.owner_id, Briefcase.briefcase_id, Briefcase.application_id, Briefcase.application_name
        )
        .where(Briefcase.imodel_id == imodel_id, Briefcase.owner_id.in_(user_ids))
        .order_by(Briefcase.acquired_at, Briefcase.briefcase_id)
    ).all()
    locks: dict[int, tuple[bool, bool]] = {}
    if briefcases:
        root_exclusive = case(
            (
                (Lock.lock_level == "exclusive") & (func.lower(Lock.object_id) == ROOT_ELEMENT_ID),
                1,
            ),
            else_=0,
        )
        for briefcase_id, count, root in session.execute(
            select(Lock.briefcase_id, func.count(), func.max(root_exclusive))
            .where(Lock.imodel_id == imodel_id, Lock.briefcase_id.in_([b[1] for b in briefcases]))
            .group_by(Lock.briefcase_id)
        ):
            locks[int(briefcase_id)] = (int(count) > 0, bool(root))
    apps: dict[str, dict[tuple[str, str], dict[str, Any]]] = {}
    for owner, briefcase_id, app_id, app_name in briefcases:
        out[owner]["briefcasesCount"] += 1
        key = (app_id or app_name or "twinbase", app_name or app_id or "twinbase")
        entry = apps.setdefault(owner, {}).setdefault(
            key, {"id": key[0], "name": key[1], "ownsLocks": False, "ownsExclusiveRootElementLock": False}
        )
        owns, root_lock = locks.get(int(briefcase_id), (False, False))
        entry["ownsLocks"] = entry["ownsLocks"] or owns
        entry["ownsExclusiveRootElementLock"] = entry["ownsExclusiveRootElementLock"] or root_lock
    for owner, by_app in apps.items():
        out[owner]["applications"] = list(by_app.values())
    return out


def user_to_wire(
    found: User,
    base: str,
    imodel_id: str,
    mode: Literal["minimal", "representation"],
    stats: dict[str, Any] | None = None,
) -> dict[str, Any]:
    # The clients document displayName as the user's email (their tests look users up by it).
    minimal: dict[str, Any] = {
        "id": found.id,
        "displayName": found.email or found.display_name or found.id,
        "_links": {"self": {"href": user_href(base, imodel_id, found.id)}},
    }
    if mode == "minimal":
        return minimal
    return {
        "id": found.id,
        "displayName": minimal["displayName"],
        "givenName": found.given_name,
        "surname": found.surname,
        "email": found.email,
        "statistics": stats,
        "_links": minimal["_links"],
    }


# --------------------------------------------------------------------------------------- permissions

# What ``GET /imodels/{id}/permissions`` lists. ``imodels_delete`` is an iTwin-level permission only
# (the clients' docs), and the platform leaves it out here: its own test expects an administrator to
# get exactly these four.
IMODEL_PERMISSIONS = (
    access.IMODELS_WEBVIEW,
    access.IMODELS_READ,
    access.IMODELS_WRITE,
    access.IMODELS_MANAGE,
)


def my_permissions(session: Session, principal: Principal, imodel_id: str) -> list[str]:
    _, perms = visible_imodel(session, imodel_id, principal.user_id)
    return [p for p in IMODEL_PERMISSIONS if p in perms]
