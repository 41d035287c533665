"""Changesets: the linear timeline of an iModel, its extended data and groups (reference §5.4, §6, §7.2).

A push is two steps. *Create* records the changeset as ``waitingForFile`` (no index yet) and hands
out an upload link; *complete* checks the uploaded file and moves the iModel's tip with one
compare-and-set::

    UPDATE imodels SET tip_index = tip_index + 1, tip_changeset_id = :cs
     WHERE id = :imodel AND tip_changeset_id = :parent

Exactly one of several changesets completed on the same parent updates a row; the others answer
``NewerChangesExist`` and change nothing, so indexes are 1, 2, 3, ... without gaps or forks on any
backend. Unfinished changesets never appear in lists.

Functions take the caller's session and never commit.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, BinaryIO, Literal, cast

import orjson
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, field_validator
from sqlalchemy import CursorResult, Select, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from twinbase.bim.changeset import ChangesetFormatError, ChangeSummary, read_changeset
from twinbase.domain import access, checkpoints, summaries, uploads
from twinbase.domain.imodels import (
    FileServices,
    Text255,
    application_of,
    links_base,
    order_clause,
    parse_paging,
    user_href,
    visible_imodel,
)
from twinbase.domain.itwins import iso
from twinbase.domain.listing import Page, fetch_page
from twinbase.errors import (
    BriefcaseNotFound,
    ChangesetExists,
    ChangesetExtendedDataNotFound,
    ChangesetGroupNotFound,
    ChangesetNotFound,
    Conflict,
    ConflictWithAnotherUser,
    ErrorDetail,
    InsufficientPermissions,
    NewerChangesExist,
    invalid_imodels,
    invalid_value,
)
from twinbase.identity.tokens import Principal
from twinbase.jobs.queue import JobQueue
from twinbase.store.blobs import keys as blob_keys
from twinbase.store.models import (
    Briefcase,
    Changeset,
    ChangesetExtendedData,
    ChangesetGroup,
    Checkpoint,
    IModel,
    NamedVersion,
    utcnow,
)

WAITING = "waitingForFile"
UPLOADED = "fileUploaded"

# Another briefcase's unfinished push on the current tip blocks new pushes for this long
# (ConflictWithAnotherUser); an abandoned push stops blocking after it.
PUSH_WINDOW = timedelta(minutes=5)
MAX_EXTENDED_DATA = 200 * 1024
MAX_INT32 = 2**31 - 1

CREATE_MESSAGE = "Cannot create Changeset."
UPDATE_MESSAGE = "Cannot update Changeset."
QUERY_MESSAGE = "Cannot query Changesets."
EXTENDED_DATA_MESSAGE = "Cannot create Changeset Extended Data."
GROUP_CREATE_MESSAGE = "Cannot create Changeset Group."
GROUP_UPDATE_MESSAGE = "Cannot update Changeset Group."
GROUP_QUERY_MESSAGE = "Cannot query Changeset Groups."

_HEX40 = re.compile(r"[0-9a-f]{40}")
_DIGITS = re.compile(r"[0-9]{1,39}")


class ChangesetExtendedDataExists(Conflict):
    code = "ChangesetExtendedDataExists"
    default_message = "Changeset Extended Data already exists for the Changeset."


def blob_key(imodel_id: str, changeset_id: str) -> str:
    return blob_keys.changeset(imodel_id, changeset_id)


# ------------------------------------------------------------------------------------------ inputs


def _changeset_id(value: str) -> str:
    if not _HEX40.fullmatch(value):
        raise ValueError("must be 40 lowercase hexadecimal characters")
    return value


class SynchronizationInfo(BaseModel):
    model_config = ConfigDict(extra="ignore")
    taskId: StrictStr = Field(min_length=1, max_length=255)
    changedFiles: list[StrictStr] | None = None


class ChangesetCreate(BaseModel):
    model_config = ConfigDict(extra="ignore")
    id: StrictStr
    description: Text255 | None = None
    parentId: StrictStr | None = None
    briefcaseId: StrictInt = Field(ge=1, le=MAX_INT32)
    containingChanges: StrictInt | None = Field(default=None, ge=0, le=MAX_INT32)
    fileSize: StrictInt = Field(gt=0, le=2**53)
    synchronizationInfo: SynchronizationInfo | None = None
    groupId: StrictStr | None = None

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        return _changeset_id(value)

    @field_validator("parentId")
    @classmethod
    def _parent(cls, value: str | None) -> str | None:
        return value if not value else _changeset_id(value)


class ChangesetUpdate(BaseModel):
    model_config = ConfigDict(extra="ignore")
    state: StrictStr
    briefcaseId: StrictInt = Field(ge=1, le=MAX_INT32)

    @field_validator("state")
    @classmethod
    def _state(cls, value: str) -> str:
        if value != UPLOADED:
            raise ValueError(f"only '{UPLOADED}' is supported")
        return value


class ExtendedDataCreate(BaseModel):
    model_config = ConfigDict(extra="ignore")
    data: StrictStr


class GroupCreate(BaseModel):
    model_config = ConfigDict(extra="ignore")
    description: Text255 | None = None


class GroupUpdate(BaseModel):
    model_config = ConfigDict(extra="ignore")
    state: StrictStr

    @field_validator("state")
    @classmethod
    def _state(cls, value: str) -> str:
        if value != "completed":
            raise ValueError("only 'completed' is supported")
        return value


# ------------------------------------------------------------------------------------------ lookup


def parse_ref(ref: str) -> int | str:
    """A path segment of only digits shorter than 40 characters is an index; anything else an id."""
    return int(ref) if _DIGITS.fullmatch(ref) else ref


def find(session: Session, imodel_id: str, ref: str, *, for_update: bool = False) -> Changeset:
    """The changeset named by id or index (completed ones only have an index); 404 otherwise."""
    key = parse_ref(ref)
    cs: Changeset | None = None
    if isinstance(key, int):
        if 0 < key <= MAX_INT32:
            stmt = select(Changeset).where(Changeset.imodel_id == imodel_id, Changeset.index == key)
            cs = session.scalar(stmt.with_for_update() if for_update else stmt)
    elif len(key) <= 64:
        cs = session.get(Changeset, (imodel_id, key), with_for_update=for_update)
    if cs is None:
        raise ChangesetNotFound()
    return cs


def find_completed(session: Session, imodel_id: str, ref: str) -> Changeset:
    cs = find(session, imodel_id, ref)
    if cs.state != UPLOADED:
        raise ChangesetNotFound()
    return cs


def index_of(session: Session, imodel_id: str, ref: str) -> int:
    """The timeline position ``ref`` names: 0 (the baseline) or a completed changeset's index."""
    if parse_ref(ref) == 0:
        return 0
    index = find_completed(session, imodel_id, ref).index
    assert index is not None
    return index


def checkpoint_at(session: Session, jobs: JobQueue, imodel_id: str, ref: str) -> Checkpoint:
    """``/changesets/{ref}/checkpoint``: the checkpoint at exactly that changeset (scheduled if new)."""
    checkpoints.require_baseline(session, imodel_id)
    if parse_ref(ref) == 0:
        return checkpoints.exact(session, jobs, imodel_id, 0, "")
    cs = find_completed(session, imodel_id, ref)
    assert cs.index is not None
    return checkpoints.exact(session, jobs, imodel_id, cs.index, cs.id)


# ------------------------------------------------------------------------------------------- write


def _owned_briefcase(session: Session, imodel_id: str, briefcase_id: int, user_id: str) -> Briefcase:
    """The caller's briefcase; someone else's is as good as missing to them."""
    briefcase = session.get(Briefcase, (imodel_id, briefcase_id))
    if briefcase is None or briefcase.owner_id != user_id:
        raise BriefcaseNotFound()
    return briefcase


def _open_group(session: Session, imodel_id: str, group_id: str) -> ChangesetGroup:
    group = session.get(ChangesetGroup, group_id) if access.is_uuid(group_id) else None
    if group is None or group.imodel_id != imodel_id:
        raise ChangesetGroupNotFound()
    if group.state != "inProgress":
        raise invalid_imodels(
            CREATE_MESSAGE,
            ErrorDetail(
                "InvalidChange", f"Changeset Group is {group.state}; it takes no Changesets.", "groupId"
            ),
        )
    return group


def writable_imodel(session: Session, imodel_id: str, principal: Principal, *, lock: bool = False) -> IModel:
    imodel, _ = visible_imodel(session, imodel_id, principal.user_id, access.IMODELS_WRITE, for_update=lock)
    return imodel


def create(session: Session, principal: Principal, imodel: IModel, body: ChangesetCreate) -> Changeset:
    """Record a pushed changeset as ``waitingForFile``; the caller holds ``imodel`` locked (``lock=True``)."""
    if imodel.state != "initialized":
        raise invalid_imodels(
            CREATE_MESSAGE, ErrorDetail("InvalidChange", "The iModel is not initialized.", "iModel")
        )
    parent = body.parentId or ""
    _owned_briefcase(session, imodel.id, body.briefcaseId, principal.user_id)
    if body.groupId is not None:
        _open_group(session, imodel.id, body.groupId)
    existing = session.get(Changeset, (imodel.id, body.id))
    # The same push sent again (a retry after a lost answer or a failed upload) is not a duplicate.
    retry = (
        existing is not None
        and existing.state == WAITING
        and existing.briefcase_id == body.briefcaseId
        and existing.parent_id == parent
    )
    if existing is not None and not retry:
        raise ChangesetExists()
    if parent != imodel.tip_changeset_id:
        raise NewerChangesExist()
    if existing is not None:
        _fill(existing, principal, body)  # the latest declaration wins; the caller hands out fresh links
        session.flush()
        return existing
    rival = session.scalar(
        select(Changeset.id)
        .where(
            Changeset.imodel_id == imodel.id,
            Changeset.state == WAITING,
            Changeset.parent_id == parent,
            Changeset.briefcase_id != body.briefcaseId,
            Changeset.created_at >= utcnow() - PUSH_WINDOW,
        )
        .limit(1)
    )
    if rival is not None:
        raise ConflictWithAnotherUser("Another Briefcase is pushing a Changeset on the same parent.")
    cs = Changeset(
        imodel_id=imodel.id,
        id=body.id,
        parent_id=parent,
        blob_key=blob_key(imodel.id, body.id),
        state=WAITING,
    )
    _fill(cs, principal, body)
    try:
        with session.begin_nested():
            session.add(cs)
            session.flush()
    except IntegrityError as exc:
        raise ChangesetExists() from exc
    return cs


def _fill(cs: Changeset, principal: Principal, body: ChangesetCreate) -> None:
    app = application_of(principal)
    cs.description = body.description
    cs.briefcase_id = body.briefcaseId
    cs.containing_changes = body.containingChanges or 0
    cs.file_size = body.fileSize
    cs.creator_id = principal.user_id
    cs.application_id = app["id"] if app else None
    cs.application_name = app["name"] if app else None
    cs.synchronization_info = body.synchronizationInfo.model_dump() if body.synchronizationInfo else None
    cs.group_id = body.groupId
    cs.created_at = utcnow()


def _check_completion(
    session: Session, principal: Principal, imodel: IModel, cs: Changeset, body: ChangesetUpdate
) -> None:
    if body.briefcaseId != cs.briefcase_id:
        raise invalid_imodels(
            UPDATE_MESSAGE,
            ErrorDetail("InvalidValue", "The Changeset was created by another Briefcase.", "briefcaseId"),
        )
    if cs.state != UPLOADED:
        _owned_briefcase(session, imodel.id, body.briefcaseId, principal.user_id)


@dataclass(frozen=True)
class PendingChangeset:
    """A completion's changeset before sealing: its file, and the id and parent its bytes must hash to."""

    file: uploads.PendingFile
    id: str
    parent_id: str
    parent_index: int | None  # None: the parent is not in the timeline (the completion will lose)


@dataclass(frozen=True)
class VerifiedChangeset:
    """What the completion learnt from the file: its change summary, and the checkpoint it makes on
    top of its parent (None when the parent's state was not at hand: the checkpoint job makes it)."""

    summary: ChangeSummary
    checkpoint: checkpoints.MadeCheckpoint | None


def file_to_seal(
    session: Session, principal: Principal, imodel: IModel, ref: str, body: ChangesetUpdate
) -> PendingChangeset | None:
    """First step of a completion (a read): the changeset's file to seal, or None when it is complete."""
    cs = find(session, imodel.id, ref)
    _check_completion(session, principal, imodel, cs, body)
    if cs.state == UPLOADED:
        return None
    parent_index: int | None = 0
    if cs.parent_id:
        parent = session.get(Changeset, (imodel.id, cs.parent_id))
        parent_index = parent.index if parent is not None and parent.state == UPLOADED else None
    return PendingChangeset(
        uploads.PendingFile(cs.blob_key, cs.file_size), cs.id, cs.parent_id or "", parent_index
    )


class _ChangesetRefused(Exception):
    def __init__(self, detail: ErrorDetail) -> None:
        super().__init__(detail.message)
        self.detail = detail


def _verify(
    svc: FileServices, imodel_id: str, pending: PendingChangeset
) -> Callable[[BinaryIO], VerifiedChangeset]:
    """The checks a changeset file passes before it joins the timeline, in one read of it:

    1. it is a changeset file twinbase reads whole (header, LZMA2, prefix, session changeset);
    2. its bytes hash to the declared id with the declared parent;
    3. it applies to its parent's state: applied there by the file engine, the result is stored as
       the new tip's checkpoint.

    So a truncated, damaged, mislabelled or foreign file never joins the timeline or reaches replay.
    """

    def inspect(stream: BinaryIO) -> VerifiedChangeset:
        try:
            with read_changeset(stream, spool_dir=svc.settings.data_dir) as changeset:
                actual = changeset.changeset_id(pending.parent_id)
                if actual != pending.id:
                    parent = f"parent {pending.parent_id}" if pending.parent_id else "no parent"
                    raise _ChangesetRefused(
                        ErrorDetail(
                            "DataConflict",
                            f"The uploaded file is changeset {actual} (with {parent}), not {pending.id}: "
                            "its bytes do not hash to the Changeset's id.",
                            "id",
                        )
                    )
                made = None
                if pending.parent_index is not None:
                    made = checkpoints.next_checkpoint(
                        svc, imodel_id, pending.parent_index, pending.id, changeset
                    )
                return VerifiedChangeset(changeset.summary, made)
        except ChangesetFormatError as exc:
            raise _ChangesetRefused(
                ErrorDetail("InvalidChange", f"The uploaded file is not a valid changeset: {exc}.", "file")
            ) from exc
        except checkpoints.ChangesetDoesNotApply as exc:
            where = f"changeset {pending.parent_index}" if pending.parent_index else "the baseline"
            raise _ChangesetRefused(
                ErrorDetail("InvalidChange", f"The Changeset does not apply to {where}: {exc}", "file")
            ) from exc

    return inspect


def seal(
    svc: FileServices, imodel_id: str, pending: PendingChangeset
) -> uploads.SealedFile[VerifiedChangeset]:
    """Second step, outside any transaction: promote the uploaded bytes, check and hash them (no
    database lock is held while a large file is renamed, copied, read or applied). A refused file
    is removed."""
    try:
        return uploads.seal_upload(
            svc.blobs, pending.file.key, pending.file.declared_size, _verify(svc, imodel_id, pending)
        )
    except _ChangesetRefused as exc:
        raise invalid_imodels(UPDATE_MESSAGE, exc.detail) from exc
    except uploads.FileNotUploaded as exc:
        raise invalid_imodels(
            UPDATE_MESSAGE, ErrorDetail("InvalidChange", "The Changeset file has not been uploaded.", "state")
        ) from exc
    except uploads.FileSizeMismatch as exc:
        raise invalid_imodels(
            UPDATE_MESSAGE,
            ErrorDetail(
                "DataConflict",
                f"The uploaded file has {exc.actual} bytes, but {pending.file.declared_size} were declared.",
                "fileSize",
            ),
        ) from exc


def complete(
    session: Session,
    principal: Principal,
    imodel: IModel,
    ref: str,
    body: ChangesetUpdate,
    sealed: uploads.SealedFile[VerifiedChangeset] | None,
    *,
    jobs: JobQueue,
    checkpoint_interval: int,
) -> Changeset:
    """Last step, a short write: append the changeset to the timeline (compare-and-set on the tip).

    ``sealed`` is what ``seal`` made of the file. Sealing a push that then loses the race promotes
    bytes to the final key of a changeset that stays waiting for its file: not history, and the id
    (a hash of the content) names the same bytes if it is ever completed.

    The new tip's checkpoint, made while the file was verified, is recorded in the same transaction
    (scheduled as a job when the parent's state was not at hand), so the most recent checkpoints are
    always at hand; it is kept for good (pinned) every ``checkpoint_interval`` changesets.
    """
    cs = find(session, imodel.id, ref, for_update=True)
    _check_completion(session, principal, imodel, cs, body)
    if cs.state == UPLOADED:
        return cs  # already complete: a retried (or concurrent) request gets the same answer
    if sealed is None:
        raise invalid_imodels(
            UPDATE_MESSAGE, ErrorDetail("InvalidChange", "The Changeset file has not been uploaded.", "state")
        )
    now = utcnow()
    moved = session.execute(
        update(IModel)
        .where(IModel.id == imodel.id, IModel.tip_changeset_id == cs.parent_id)
        .values(tip_index=IModel.tip_index + 1, tip_changeset_id=cs.id, last_changeset_push_at=now)
        .execution_options(synchronize_session=False)
    )
    if cast("CursorResult[Any]", moved).rowcount != 1:
        raise NewerChangesExist()
    cs.content_sha256 = sealed.sha256
    session.expire(imodel)
    cs.index = session.scalar(select(IModel.tip_index).where(IModel.id == imodel.id))
    cs.state = UPLOADED
    cs.pushed_at = now
    made = sealed.facts.checkpoint
    summaries.record(session, cs, sealed.facts.summary, made.updated_models if made is not None else None)
    index = cs.index
    assert index is not None
    pinned = checkpoints.pin_for(index, checkpoint_interval)
    if made is not None and made.index == index:
        checkpoints.record_made(session, made, imodel.id, pinned=pinned)
    else:
        checkpoints.exact(session, jobs, imodel.id, index, cs.id, pinned=pinned)
    session.flush()
    return cs


# -------------------------------------------------------------------------------------------- list


def _optional_index(params: Mapping[str, str], name: str) -> int | None:
    raw = params.get(name, "")
    if raw == "":
        return None
    if not _DIGITS.fullmatch(raw) or int(raw) > MAX_INT32:
        raise invalid_imodels(QUERY_MESSAGE, invalid_value(name))
    return int(raw)


def query(session: Session, imodel_id: str, params: Mapping[str, str]) -> Page[Changeset]:
    """Completed changesets, ``afterIndex`` exclusive, ``lastIndex`` inclusive, ordered by index."""
    paging = parse_paging(params, message=QUERY_MESSAGE)
    after = _optional_index(params, "afterIndex")
    last = _optional_index(params, "lastIndex")
    stmt: Select[Any] = select(Changeset).where(Changeset.imodel_id == imodel_id, Changeset.state == UPLOADED)
    if after is not None:
        stmt = stmt.where(Changeset.index > after)
    if last is not None:
        stmt = stmt.where(Changeset.index <= last)
    order = order_clause(params, {"index": Changeset.index}, [Changeset.index.asc()], QUERY_MESSAGE)
    return fetch_page(session, stmt.order_by(*order), paging)


@dataclass(frozen=True)
class Surroundings:
    """What a full changeset's links need: the iModel's checkpoints and its named versions by index."""

    checkpoint_indexes: list[int]
    named_versions: dict[int, str]


def surroundings(session: Session, imodel_id: str, changesets: list[Changeset]) -> Surroundings:
    indexes = [c.index for c in changesets if c.index is not None]
    named: dict[int, str] = {}
    if indexes:
        named = {
            index: nv_id
            for index, nv_id in session.execute(
                select(NamedVersion.changeset_index, NamedVersion.id).where(
                    NamedVersion.imodel_id == imodel_id, NamedVersion.changeset_index.in_(indexes)
                )
            )
        }
    return Surroundings(checkpoints.successful_indexes(session, imodel_id), named)


# -------------------------------------------------------------------------------------------- wire


def changeset_href(base: str, imodel_id: str, ref: str | int) -> str:
    return f"{links_base(base, imodel_id)}/changesets/{ref}"


def to_wire(
    cs: Changeset,
    base: str,
    mode: Literal["minimal", "representation"] = "representation",
    *,
    around: Surroundings | None = None,
    download: dict[str, str] | None = None,
) -> dict[str, Any]:
    root = links_base(base, cs.imodel_id)
    links: dict[str, Any] = {
        "self": {"href": changeset_href(base, cs.imodel_id, cs.id)},
        "creator": {"href": user_href(base, cs.imodel_id, cs.creator_id)},
    }
    out: dict[str, Any] = {
        "id": cs.id,
        "displayName": str(cs.index) if cs.index is not None else cs.id,
        "description": cs.description,
        "index": cs.index,
        "parentId": cs.parent_id,
        "creatorId": cs.creator_id,
        "pushDateTime": iso(cs.pushed_at or cs.created_at),
        "state": cs.state,
        "containingChanges": cs.containing_changes,
        "fileSize": cs.file_size,
        "briefcaseId": cs.briefcase_id,
        "groupId": cs.group_id,
        "_links": links,
    }
    if mode == "minimal":
        return out
    sync = cs.synchronization_info
    out["application"] = (
        {"id": cs.application_id, "name": cs.application_name or cs.application_id}
        if cs.application_id
        else None
    )
    out["synchronizationInfo"] = (
        {"taskId": sync.get("taskId"), "changedFiles": sync.get("changedFiles")} if sync else None
    )
    checkpoint_index = None
    named_version = None
    if around is not None and cs.index is not None:
        checkpoint_index = checkpoints.nearest(around.checkpoint_indexes, cs.index)
        named_version = around.named_versions.get(cs.index)
    links["namedVersion"] = (
        {"href": f"{root}/namedversions/{named_version}"} if named_version is not None else None
    )
    links["currentOrPrecedingCheckpoint"] = (
        {"href": f"{changeset_href(base, cs.imodel_id, checkpoint_index)}/checkpoint"}
        if checkpoint_index is not None
        else None
    )
    links["download"] = download if cs.state == UPLOADED else None
    return out


# ----------------------------------------------------------------------------------- extended data


def _decode_extended_data(data: str) -> None:
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise invalid_imodels(
            EXTENDED_DATA_MESSAGE, invalid_value("data", "Provided 'data' value is not valid base64.")
        ) from exc
    if len(raw) > MAX_EXTENDED_DATA:
        raise invalid_imodels(
            EXTENDED_DATA_MESSAGE,
            invalid_value("data", f"Provided 'data' value exceeds the allowed {MAX_EXTENDED_DATA} bytes."),
        )
    try:
        orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise invalid_imodels(
            EXTENDED_DATA_MESSAGE, invalid_value("data", "Provided 'data' value is not base64-encoded JSON.")
        ) from exc


def create_extended_data(
    session: Session, principal: Principal, imodel: IModel, ref: str, body: ExtendedDataCreate
) -> ChangesetExtendedData:
    """Once per changeset, by the user who pushed it."""
    cs = find(session, imodel.id, ref, for_update=True)
    if cs.state != UPLOADED or cs.index is None:
        raise invalid_imodels(
            EXTENDED_DATA_MESSAGE,
            ErrorDetail("InvalidChange", "The Changeset file upload is not complete.", "changeset"),
        )
    if cs.creator_id != principal.user_id:
        raise InsufficientPermissions("Only the creator of a Changeset may set its Extended Data.")
    _decode_extended_data(body.data)
    if session.get(ChangesetExtendedData, (imodel.id, cs.id)) is not None:
        raise ChangesetExtendedDataExists()
    row = ChangesetExtendedData(
        imodel_id=imodel.id, changeset_id=cs.id, changeset_index=cs.index, data=body.data
    )
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
    except IntegrityError as exc:
        raise ChangesetExtendedDataExists() from exc
    return row


def get_extended_data(session: Session, imodel_id: str, ref: str) -> ChangesetExtendedData:
    cs = find_completed(session, imodel_id, ref)
    row = session.get(ChangesetExtendedData, (imodel_id, cs.id))
    if row is None:
        raise ChangesetExtendedDataNotFound()
    return row


def query_extended_data(
    session: Session, imodel_id: str, params: Mapping[str, str]
) -> Page[ChangesetExtendedData]:
    paging = parse_paging(params, message="Cannot query Changeset Extended Data.")
    stmt = (
        select(ChangesetExtendedData)
        .where(ChangesetExtendedData.imodel_id == imodel_id)
        .order_by(ChangesetExtendedData.changeset_index)
    )
    return fetch_page(session, stmt, paging)


def extended_data_to_wire(row: ChangesetExtendedData) -> dict[str, Any]:
    return {"changesetId": row.changeset_id, "changesetIndex": row.changeset_index, "data": row.data}


# ---------------------------------------------------------------------------------- changeset groups


def create_group(session: Session, principal: Principal, imodel: IModel, body: GroupCreate) -> ChangesetGroup:
    group = ChangesetGroup(imodel_id=imodel.id, description=body.description, creator_id=principal.user_id)
    session.add(group)
    session.flush()
    return group


def find_group(
    session: Session, imodel_id: str, group_id: str, *, for_update: bool = False
) -> ChangesetGroup:
    group = (
        session.get(ChangesetGroup, group_id, with_for_update=for_update)
        if access.is_uuid(group_id)
        else None
    )
    if group is None or group.imodel_id != imodel_id:
        raise ChangesetGroupNotFound()
    return group


def update_group(session: Session, imodel: IModel, group_id: str, body: GroupUpdate) -> ChangesetGroup:
    group = find_group(session, imodel.id, group_id, for_update=True)
    if group.state not in ("inProgress", body.state):
        raise invalid_imodels(
            GROUP_UPDATE_MESSAGE,
            ErrorDetail("InvalidChange", f"Changeset Group is {group.state} and cannot be changed.", "state"),
        )
    group.state = body.state
    session.flush()
    return group


def query_groups(session: Session, imodel_id: str, params: Mapping[str, str]) -> Page[ChangesetGroup]:
    paging = parse_paging(params, message=GROUP_QUERY_MESSAGE)
    stmt = (
        select(ChangesetGroup)
        .where(ChangesetGroup.imodel_id == imodel_id)
        .order_by(ChangesetGroup.created_at, ChangesetGroup.id)
    )
    return fetch_page(session, stmt, paging)


def group_to_wire(group: ChangesetGroup, base: str) -> dict[str, Any]:
    return {
        "id": group.id,
        "description": group.description,
        "state": group.state,
        "creatorId": group.creator_id,
        "createdDateTime": iso(group.created_at),
        "_links": {"creator": {"href": user_href(base, group.imodel_id, group.creator_id)}},
    }
