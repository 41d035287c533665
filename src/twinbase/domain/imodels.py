"""iModels: access, create (empty, from a baseline file), list, get, and the baseline file.

Access (reference part D): an iModel is visible to members of its iTwin holding ``imodels_webview``;
a non-member gets 404 ``iModelNotFound`` (never a hint it exists), a member without the needed
permission 403. Functions take the caller's session and never commit.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol
from urllib.parse import quote

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictInt, StrictStr, field_validator
from pydantic_core import PydanticCustomError
from sqlalchemy import Select, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from twinbase.bim.identity import BimFormatError, read_identity, stamp
from twinbase.bim.seed import SeedMissing, write_empty_seed
from twinbase.domain import access, containers, uploads
from twinbase.domain.itwins import iso
from twinbase.domain.listing import (
    BadOrderBy,
    Page,
    Paging,
    fetch_keyset_page,
    fetch_page,
    like_contains,
    order_by_param,
    paging_or_raise,
    parse_order_by,
    single_order,
)
from twinbase.errors import (
    BaselineFileNotFound,
    ErrorDetail,
    IModelExists,
    IModelNotFound,
    InsufficientPermissions,
    ITwinNotFound,
    ServiceUnavailable,
    invalid_imodels,
    invalid_value,
)
from twinbase.identity.tokens import Principal
from twinbase.jobs.context import JobContext
from twinbase.jobs.queue import JobQueue
from twinbase.settings import Settings
from twinbase.store.blobs import BlobStore
from twinbase.store.blobs import keys as blob_keys
from twinbase.store.db import Database
from twinbase.store.models import BaselineFile, Checkpoint, IModel, ITwin, new_id
from twinbase.store.scratch import scratch

BASELINE_JOB = "imodel_baseline"


# ------------------------------------------------------------------------------------------ access


def visible_imodel(
    session: Session, imodel_id: str, user_id: str, *needed: str, for_update: bool = False
) -> tuple[IModel, frozenset[str]]:
    """The iModel and the caller's permissions on it; 404 when invisible, 403 when a permission lacks."""
    imodel = session.get(IModel, imodel_id, with_for_update=for_update) if access.is_uuid(imodel_id) else None
    if imodel is None:
        raise IModelNotFound()
    itwin = session.get(ITwin, imodel.itwin_id)
    perms = access.permissions_of(session, itwin, user_id) if itwin is not None else None
    if perms is None:
        raise IModelNotFound()
    if access.IMODELS_WEBVIEW not in perms and access.IMODELS_READ not in perms:
        raise InsufficientPermissions()
    access.require(perms, *needed)
    return imodel, perms


def itwin_for_imodels(session: Session, itwin_id: str, user_id: str, *needed: str) -> ITwin:
    if not access.is_uuid(itwin_id):
        raise ITwinNotFound()
    itwin = session.get(ITwin, itwin_id)
    perms = access.permissions_of(session, itwin, user_id) if itwin is not None else None
    if itwin is None or perms is None:
        raise ITwinNotFound()
    access.require(perms, *needed)
    return itwin


# ------------------------------------------------------------------------------------------ inputs

MAX_TEXT = 255


def _at_most_255(value: str) -> str:
    # The platform's exact detail: "Provided 'description' value is not valid. The value exceeds allowed
    # 255 characters." (``api.http`` adds the prefix and the final period to pydantic's message).
    if len(value) > MAX_TEXT:
        raise PydanticCustomError(
            "string_too_long", "The value exceeds allowed {max_length} characters", {"max_length": MAX_TEXT}
        )
    return value


Text255 = Annotated[StrictStr, AfterValidator(_at_most_255)]
"""A string of at most 255 characters, refused with the platform's own message."""


def not_blank(value: str | None) -> str | None:
    if value is not None and not value.strip():
        raise ValueError("must not be blank")
    return value


class LatLong(BaseModel):
    model_config = ConfigDict(extra="forbid")
    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)


class Extent(BaseModel):
    model_config = ConfigDict(extra="forbid")
    southWest: LatLong
    northEast: LatLong


class BaselineFileSpec(BaseModel):
    model_config = ConfigDict(extra="ignore")
    size: StrictInt = Field(gt=0)


class TemplateSpec(BaseModel):
    model_config = ConfigDict(extra="ignore")
    iModelId: StrictStr
    changesetId: StrictStr | None = None


class GcsSpec(BaseModel):
    model_config = ConfigDict(extra="allow")
    horizontalCRSId: StrictStr | None = None


class IModelCreate(BaseModel):
    model_config = ConfigDict(extra="ignore")
    iTwinId: StrictStr
    name: Text255 = Field(min_length=1)
    description: Text255 | None = None
    extent: Extent | None = None
    containersEnabled: StrictInt | None = Field(default=None, ge=0, le=7)
    creationMode: StrictStr | None = None
    geographicCoordinateSystem: GcsSpec | None = None
    baselineFile: BaselineFileSpec | None = None
    template: TemplateSpec | None = None

    check_name = field_validator("name")(not_blank)

    @field_validator("creationMode")
    @classmethod
    def _mode(cls, value: str | None) -> str | None:
        if value is None:
            return None
        modes = {"empty": "empty", "frombaseline": "fromBaseline", "fromimodelversion": "fromIModelVersion"}
        if value.lower() not in modes:
            raise ValueError(f"'{value}' is not one of empty, fromBaseline, fromiModelVersion")
        return modes[value.lower()]


# ------------------------------------------------------------------------------------------ create


class FileServices(Protocol):
    settings: Settings
    db: Database
    blobs: BlobStore
    jobs: JobQueue


def baseline_key(imodel_id: str) -> str:
    return blob_keys.baseline(imodel_id)


def checkpoint_key(imodel_id: str, index: int) -> str:
    return blob_keys.checkpoint(imodel_id, index)


def name_taken(session: Session, itwin_id: str, name: str, except_id: str | None = None) -> bool:
    return (
        session.scalar(
            select(IModel.id).where(IModel.itwin_id == itwin_id, IModel.name == name, IModel.id != except_id)
        )
        is not None
    )


def _exists() -> IModelExists:
    return IModelExists()


def new_imodel(
    session: Session, principal: Principal, body: IModelCreate, *, state: str, create_state: str
) -> IModel:
    """Insert the iModel row (the caller fills in its files); ``iModelExists`` on a duplicate name."""
    itwin = itwin_for_imodels(session, body.iTwinId, principal.user_id, access.IMODELS_MANAGE)
    return insert_imodel(
        session,
        itwin,
        name=body.name,
        description=body.description,
        extent=body.extent.model_dump() if body.extent else None,
        containers_enabled=body.containersEnabled or 0,
        geographic_coordinate_system=body.geographicCoordinateSystem.model_dump(exclude_none=True)
        if body.geographicCoordinateSystem
        else None,
        creation_mode=body.creationMode,
        state=state,
        create_state=create_state,
        created_by=principal.user_id,
    )


def insert_imodel(
    session: Session,
    itwin: ITwin,
    *,
    name: str,
    description: str | None,
    extent: dict[str, Any] | None,
    containers_enabled: int,
    geographic_coordinate_system: dict[str, Any] | None,
    creation_mode: str | None,
    state: str,
    create_state: str,
    created_by: str,
    cloned_from: str | None = None,
    forked_from: str | None = None,
) -> IModel:
    """Insert an iModel row into ``itwin`` (access already checked); ``iModelExists`` on a duplicate name."""
    if name_taken(session, itwin.id, name):
        raise _exists()
    imodel = IModel(
        id=new_id(),
        itwin_id=itwin.id,
        name=name,
        description=description,
        state=state,
        create_state=create_state,
        creation_mode=creation_mode,
        cloned_from=cloned_from,
        forked_from=forked_from,
        extent=extent,
        containers_enabled=containers_enabled,
        geographic_coordinate_system=geographic_coordinate_system,
        data_center_location=itwin.data_center_location or "East US",
        created_by=created_by,
    )
    session.add(imodel)
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError as exc:
        raise _exists() from exc
    return imodel


def validate_create(body: IModelCreate) -> None:
    if not access.is_uuid(body.iTwinId):
        raise invalid_imodels("Cannot create iModel.", invalid_value("iTwinId"))
    if body.baselineFile is not None and body.template is not None:
        raise invalid_imodels(
            "Cannot create iModel.",
            ErrorDetail(
                "MutuallyExclusivePropertiesProvided",
                "Properties 'baselineFile' and 'template' cannot be used together.",
                "baselineFile",
            ),
        )


def create_from_baseline(
    session: Session, principal: Principal, body: IModelCreate
) -> tuple[IModel, BaselineFile]:
    assert body.baselineFile is not None
    imodel = new_imodel(session, principal, body, state="notInitialized", create_state="waitingForFile")
    baseline = BaselineFile(
        imodel_id=imodel.id,
        declared_size=body.baselineFile.size,
        blob_key=baseline_key(imodel.id),
        created_by=principal.user_id,
    )
    session.add(baseline)
    session.flush()
    return imodel, baseline


class SeedUnavailable(ServiceUnavailable):
    """503: this installation was built without the empty seed iModel (``make seed``)."""

    default_message = (
        "Empty iModels cannot be created right now: the server has no seed iModel. "
        "Create the iModel from a baseline file, or retry later."
    )


def create_empty(svc: FileServices, session: Session, principal: Principal, body: IModelCreate) -> IModel:
    """A real, valid empty iModel: a stamped copy of the seed as its baseline and checkpoint 0."""
    imodel = new_imodel(session, principal, body, state="initialized", create_state="successful")
    with scratch(svc.settings.data_dir, "baseline") as tmp:
        path = Path(tmp) / "empty.bim"
        try:
            write_empty_seed(path)
        except SeedMissing as exc:
            raise SeedUnavailable() from exc
        stamp(path, imodel_id=imodel.id, itwin_id=imodel.itwin_id)
        store_baseline(svc, session, imodel, path, principal.user_id)
    return imodel


def store_baseline(svc: FileServices, session: Session, imodel: IModel, path: Path, user_id: str) -> None:
    """Make the (stamped) file at ``path`` the iModel's baseline and its checkpoint 0."""
    record_baseline(session, imodel, stage_baseline(svc, imodel.id, path), user_id)


@dataclass(frozen=True)
class StagedBaseline:
    size: int
    sha256: str
    blocks: bytes  # its CloudSqlite block ids (domain.containers)


def stage_baseline(svc: FileServices, imodel_id: str, path: Path) -> StagedBaseline:
    """Store the file as checkpoint 0 and as the baseline (no transaction needed: nothing refers to
    the checkpoint until ``record_baseline`` commits, and the baseline key is the iModel's own)."""
    info = svc.blobs.upload_from(checkpoint_key(imodel_id, 0), path)
    svc.blobs.upload_from(baseline_key(imodel_id), path)
    blocks = containers.checkpoint_blocks(svc, imodel_id, path)
    return StagedBaseline(size=info.size, sha256=file_sha256(path), blocks=blocks)


def record_baseline(session: Session, imodel: IModel, staged: StagedBaseline, user_id: str) -> None:
    """The rows of a staged baseline: the baseline file initialized and checkpoint 0."""
    size = staged.size
    baseline = session.get(BaselineFile, imodel.id)
    if baseline is None:
        baseline = BaselineFile(
            imodel_id=imodel.id, declared_size=size, blob_key=baseline_key(imodel.id), created_by=user_id
        )
        session.add(baseline)
    baseline.file_size = size
    baseline.content_sha256 = staged.sha256  # the stamped file is what the baseline serves now
    baseline.state = "initialized"
    session.merge(
        Checkpoint(
            imodel_id=imodel.id,
            changeset_index=0,
            changeset_id="",
            state="successful",
            blob_key=checkpoint_key(imodel.id, 0),
            size=size,
            pinned="baseline",
            blocks=staged.blocks,
        )
    )
    session.flush()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


COMPLETE_BASELINE_MESSAGE = "Cannot complete Baseline File upload."


def _waiting_baseline(
    session: Session, principal: Principal, imodel_id: str, *, lock: bool
) -> tuple[IModel, BaselineFile]:
    imodel, _ = visible_imodel(session, imodel_id, principal.user_id, access.IMODELS_MANAGE, for_update=lock)
    baseline = session.get(BaselineFile, imodel.id)
    if baseline is None:
        raise BaselineFileNotFound()
    if baseline.state != "waitingForFile":
        raise invalid_imodels(
            COMPLETE_BASELINE_MESSAGE,
            ErrorDetail("InvalidChange", "Baseline File upload is not in progress.", "state"),
        )
    return imodel, baseline


def baseline_to_seal(session: Session, principal: Principal, imodel_id: str) -> uploads.PendingFile:
    """First step of completing a baseline upload (a read): the file to seal."""
    _, baseline = _waiting_baseline(session, principal, imodel_id, lock=False)
    return uploads.PendingFile(baseline.blob_key, baseline.declared_size)


def seal_baseline(blobs: BlobStore, pending: uploads.PendingFile) -> uploads.SealedFile[None]:
    """Second step, outside any transaction: promote the uploaded bytes and hash them."""
    try:
        return uploads.seal_upload(blobs, pending.key, pending.declared_size, uploads.no_inspection)
    except uploads.FileNotUploaded as exc:
        raise invalid_imodels(
            COMPLETE_BASELINE_MESSAGE,
            ErrorDetail("InvalidChange", "The Baseline File has not been uploaded.", "baselineFile"),
        ) from exc
    except uploads.FileSizeMismatch as exc:
        raise invalid_imodels(
            COMPLETE_BASELINE_MESSAGE,
            ErrorDetail(
                "DataConflict",
                f"The uploaded file has {exc.actual} bytes, but {pending.declared_size} were declared.",
                "baselineFile.size",
            ),
        ) from exc


def complete_baseline(
    svc: FileServices,
    session: Session,
    principal: Principal,
    imodel_id: str,
    sealed: uploads.SealedFile[None],
) -> BaselineFile:
    """Last step, a short write: record the sealed file and schedule its initialization."""
    imodel, baseline = _waiting_baseline(session, principal, imodel_id, lock=True)
    size = sealed.size
    baseline.content_sha256 = sealed.sha256
    baseline.file_size = size
    baseline.state = "initializationScheduled"
    imodel.create_state = "scheduled"
    svc.jobs.enqueue(session, BASELINE_JOB, {"imodel_id": imodel.id})
    session.flush()
    return baseline


def initialize_baseline(svc: FileServices, imodel_id: str, ctx: JobContext | None = None) -> None:
    """The job: check the uploaded file is an iModel, stamp it as checkpoint 0, mark it initialized.

    The file work (download, check, stamp, storing the two copies with their fsyncs) runs outside any
    write transaction; only the final bookkeeping is one short transaction, fenced by the job's claim
    (``ctx``; None when called directly), so a large baseline never holds SQLite's write lock.
    """
    with svc.db.read() as session:
        imodel = session.get(IModel, imodel_id)
        baseline = session.get(BaselineFile, imodel_id)
        if imodel is None or baseline is None or baseline.state != "initializationScheduled":
            return
        itwin_id, key, user_id = imodel.itwin_id, baseline.blob_key, baseline.created_by
    state = "initialized"
    staged: StagedBaseline | None = None
    with scratch(svc.settings.data_dir, "baseline") as tmp:
        path = Path(tmp) / "baseline.bim"
        svc.blobs.download_to(key, path)
        if ctx is not None:
            ctx.progress(0.3, "Checking the baseline file")
        try:
            identity = read_identity(path)
            if identity.briefcase_id != 0:
                state = "fileIsBriefcase"
            else:
                stamp(path, imodel_id=imodel_id, itwin_id=itwin_id)
        except BimFormatError:
            state = "initializationFailed"
        if state == "initialized":
            if ctx is not None:
                ctx.progress(0.6, "Storing the baseline file")
            staged = stage_baseline(svc, imodel_id, path)
    gone = False
    with svc.db.write() as session:
        if ctx is not None:
            ctx.fence(session)
        imodel = session.get(IModel, imodel_id, with_for_update=True)
        baseline = session.get(BaselineFile, imodel_id)
        if imodel is None or baseline is None:
            gone = True
        elif baseline.state != "initializationScheduled":
            pass  # finished by an earlier attempt
        elif staged is not None:
            record_baseline(session, imodel, staged, user_id)
            imodel.state = "initialized"
            imodel.create_state = "successful"
        else:
            baseline.state = state
            imodel.create_state = "failed"
    if gone and staged is not None:  # deleted while being initialized: drop what this job wrote
        svc.blobs.delete(checkpoint_key(imodel_id, 0))
        svc.blobs.delete(baseline_key(imodel_id))


def baseline_failed(session: Session, payload: Mapping[str, Any], error: str) -> None:
    """The initialization job gave up (its handler kept raising, or its worker kept dying)."""
    imodel = session.get(IModel, str(payload["imodel_id"]), with_for_update=True)
    baseline = session.get(BaselineFile, str(payload["imodel_id"]))
    if imodel is None or baseline is None or baseline.state != "initializationScheduled":
        return
    baseline.state = "initializationFailed"
    imodel.create_state = "failed"


def register(svc: FileServices) -> None:
    def handler(ctx: JobContext) -> None:
        initialize_baseline(svc, str(ctx.payload["imodel_id"]), ctx)

    svc.jobs.register(BASELINE_JOB, handler, on_failure=baseline_failed)


# ------------------------------------------------------------------------------------------- lists


def parse_paging(params: Mapping[str, str], *, default_top: int = 100, message: str) -> Paging:
    """The iModels API's paging: ``$top`` 1..1000, ``$skip``, ``$continuationToken``."""

    def invalid(details: list[ErrorDetail]) -> Exception:
        return invalid_imodels(message, *details)

    return paging_or_raise(params, invalid, default_top=default_top)


def order_clause(
    params: Mapping[str, str], columns: Mapping[str, Any], default: list[Any], message: str
) -> list[Any]:
    """``$orderBy`` over ``columns`` (the list's allow-list), else ``default``."""
    try:
        clauses = parse_order_by(order_by_param(params), columns)
    except BadOrderBy as exc:
        raise invalid_imodels(message, invalid_value("$orderBy")) from exc
    return default if clauses is None else clauses


def ordered_page(
    session: Session,
    stmt: Select[Any],
    params: Mapping[str, str],
    paging: Paging,
    columns: Mapping[str, Any],
    default: tuple[Any, bool],
    tiebreak: Any,
    message: str,
) -> Page[Any]:
    """One page of an iModels-API list in its ``$orderBy`` (one of ``columns``) or ``default`` (column,
    descending), then ``tiebreak`` (unique) in the same direction: by keyset behind the ``next`` links
    (the same few index pages at any depth); a several-term ``$orderBy`` pages by offset."""
    raw = order_by_param(params)
    try:
        single = single_order(raw, columns) if raw else default
    except BadOrderBy as exc:
        raise invalid_imodels(message, invalid_value("$orderBy")) from exc
    if single is None:
        order = order_clause(params, columns, [], message)
        return fetch_page(session, stmt.order_by(*order, tiebreak), paging)
    column, descending = single
    keys = [column] if column is tiebreak else [column, tiebreak]
    return fetch_keyset_page(session, stmt, paging, keys, descending=descending)


def query(session: Session, principal: Principal, params: Mapping[str, str]) -> Page[IModel]:
    message = "Cannot query iModels."
    itwin_id = params.get("iTwinId") or params.get("itwinId") or ""
    if not itwin_id:
        raise invalid_imodels(
            message,
            ErrorDetail("MissingRequiredParameter", "Required parameter 'iTwinId' is missing.", "iTwinId"),
        )
    itwin_for_imodels(session, itwin_id, principal.user_id, access.IMODELS_WEBVIEW)
    paging = parse_paging(params, message=message)
    stmt: Select[Any] = select(IModel).where(IModel.itwin_id == itwin_id)
    if params.get("name"):
        stmt = stmt.where(IModel.name == params["name"])
    state = params.get("state")
    if state:
        if state not in ("initialized", "notInitialized"):
            raise invalid_imodels(message, invalid_value("state"))
        stmt = stmt.where(IModel.state == state)
    search = params.get("$search")
    if search:
        stmt = stmt.where(or_(like_contains(IModel.name, search), like_contains(IModel.description, search)))
    columns = {"name": IModel.name, "createdDateTime": IModel.created_at}
    # Newest first by default, by keyset through ix_imodels_itwin_created.
    return ordered_page(session, stmt, params, paging, columns, (IModel.created_at, True), IModel.id, message)


# -------------------------------------------------------------------------------------------- wire


def links_base(base: str, imodel_id: str) -> str:
    return f"{base}/imodels/{imodel_id}"


def user_href(base: str, imodel_id: str, user_id: str) -> str:
    """``.../imodels/{iModelId}/users/{userId}``, as the clients parse it; user ids are token subjects."""
    return f"{links_base(base, imodel_id)}/users/{quote(user_id, safe='')}"


def to_wire(
    imodel: IModel, base: str, mode: Literal["minimal", "representation"] = "representation"
) -> dict[str, Any]:
    if mode == "minimal":
        return {"id": imodel.id, "displayName": imodel.name}
    root = links_base(base, imodel.id)
    return {
        "id": imodel.id,
        "displayName": imodel.name,
        "name": imodel.name,
        "description": imodel.description,
        "state": imodel.state,
        "createdDateTime": iso(imodel.created_at),
        "lastChangesetPushDateTime": iso(imodel.last_changeset_push_at),
        "iTwinId": imodel.itwin_id,
        "extent": imodel.extent,
        "containersEnabled": imodel.containers_enabled,
        "dataCenterLocation": imodel.data_center_location,
        "geographicCoordinateSystem": imodel.geographic_coordinate_system,
        "_links": {
            "creator": {"href": user_href(base, imodel.id, imodel.created_by)},
            "changesets": {"href": f"{root}/changesets"},
            "namedVersions": {"href": f"{root}/namedversions"},
        },
    }


def baseline_to_wire(baseline: BaselineFile, base: str, download: dict[str, str] | None) -> dict[str, Any]:
    return {
        "id": baseline.id,
        "displayName": "baseline.bim",
        "fileSize": baseline.file_size or baseline.declared_size,
        "state": baseline.state,
        "_links": {
            "creator": {"href": user_href(base, baseline.imodel_id, baseline.created_by)},
            "download": download,
        },
    }


def application_of(principal: Principal) -> dict[str, str] | None:
    """The client application behind the token, as iModels entities report it (``{id, name}``)."""
    client = principal.client_id or "twinbase"
    return {"id": client, "name": client}
