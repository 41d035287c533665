"""Mesh Export (reference §A, seeds 000 and 001): an iModel at one changeset as web tiles.

``POST /mesh-export`` (and the seed's ``POST /exports``) validates the request, finds or makes the
``MeshExport`` row and enqueues a durable ``mesh_export`` job in the same transaction. The job makes
the iModel's file at the export's changeset (``checkpoints.plan`` + ``build_file``: a stored checkpoint
at that index is simply downloaded), hands it to the tile pipeline (``twinbase.export.produce``) with
a sink that writes every file under ``bundles/<bundle_id>/`` and marks the export ``Complete`` with
its stats, or ``Invalid`` with a readable error and no files left behind.

Decisions the platform leaves open:

- **One export per iModel, changeset, type and configuration** (a unique index): a request equal to
  an existing export answers that export. An ``Invalid`` one is retried in place: same id, back to
  ``NotStarted``, its job enqueued again (CesiumJS reports an error while every export it finds is
  ``Invalid``, so a new request must be able to clear that).
- ``changesetId`` omitted: the iModel's tip when the request arrives; ``""``: the baseline. A
  changeset the iModel does not have (or has not completed) is a 422 ``InvalidMeshExportRequest``
  with target ``changesetId``: seed 001 documents no ``ChangesetNotFound`` for this API.
- ``lastModified`` in the request is validated (a date-time) and otherwise ignored: the export's
  ``lastModified`` is when its metadata last changed here, which is what lists order by.
- Access: the caller needs ``imodels_read`` on the iModel's iTwin. A non-member sees nothing (404),
  a member without the permission gets 403; lists show only exports of such iModels.

Every run writes a bundle of its own (a fresh ``bundle_id``, recorded before the first file), so an
attempt that lost its claim can never mix its files into the next attempt's, and a re-run (a worker
died, a new ``tilerConfig``) deletes the previous run's files first. Functions taking a session never
commit; the job owns its transactions, each fenced by its claim.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import re
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, Protocol, cast

import orjson
from sqlalchemy import Select, and_, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from twinbase.bim.changeset import ChangesetFormatError
from twinbase.bim.identity import BimFormatError
from twinbase.domain import access, checkpoints, mesh_tile_jobs
from twinbase.domain import imodels as imodels_domain
from twinbase.domain.itwins import iso
from twinbase.domain.listing import BadOrderBy, Page, fetch_page, parse_order_by, parse_paging
from twinbase.errors import (
    MESH_IMODEL_NOT_FOUND,
    BlobNotFound,
    ErrorDetail,
    IModelNotFound,
    MeshExportNotFound,
    ServiceUnavailable,
    invalid_mesh_export,
)
from twinbase.export.config import TilerConfig, TilerConfigError, config_key, parse_tiler_config
from twinbase.identity.tokens import Principal
from twinbase.jobs.context import JobContext, JobInterrupted
from twinbase.jobs.queue import JobQueue
from twinbase.store.blobs import BlobStore, check_key
from twinbase.store.blobs import keys as blob_keys
from twinbase.store.models import Changeset, ITwin, Member, MemberRole, MeshExport, Role, utcnow
from twinbase.store.scratch import scratch
from twinbase.tiles.imdl import IMDL_MESHOPT_VERSION, IMDL_VERSION

log = logging.getLogger("twinbase.mesh_export")

JOB_KIND = "mesh_export"
PRODUCE_MODULE = "twinbase.export.produce"

NOT_STARTED = "NotStarted"
IN_PROGRESS = "InProgress"
COMPLETE = "Complete"
INVALID = "Invalid"
RUNNING = (NOT_STARTED, IN_PROGRESS)

CREATE_MESSAGE = "Cannot create export job."
UPDATE_MESSAGE = "Cannot update export job."
DELETE_MESSAGE = "Cannot delete exported job."
QUERY_MESSAGE = "Cannot get exports."

# What a request may say, matched case-insensitively; stored and answered as the value.
EXPORT_TYPES: dict[str, str] = {
    "3DTILES": "3DTILES",
    "CESIUM": "CESIUM",
    "GLTF": "GLTF",
    "3TZ": "3TZ",
    "IMODEL": "IMODEL",
}
DEFAULT_EXPORT_TYPE = "3DTILES"
# Types the platform knows that twinbase does not make.
NOT_YET: dict[str, str] = {
    "3DFT": "exportType '3DFT' is not supported; use 3DTILES, CESIUM, GLTF, 3TZ or IMODEL.",
}

START_FIELDS = frozenset({"iModelId", "changesetId", "exportType", "tilerConfig", "lastModified"})
# Declared by frontend-tiles' MeshExport type for the 2022 exporter (reference A.2): accepted, ignored.
LEGACY_FIELDS = frozenset({"geometryOptions", "viewDefinitionFilter"})
UPDATE_FIELDS = frozenset({"displayName", "tilerConfig"})
MAX_DISPLAY_NAME = 255
MAX_ERROR = 2000

Mode = Literal["minimal", "representation"]


# What the job needs from ``api.deps.Services``: settings, db, blobs, jobs (structural typing).
MeshServices = imodels_domain.FileServices


# ------------------------------------------------------------------------------------------ inputs


def _body_detail(message: str, target: str | None) -> ErrorDetail:
    return ErrorDetail("InvalidRequestBody", message, target)


def canonical_type(value: str) -> str | None:
    """``3DTiles`` -> ``3DTILES``; None for a type twinbase does not know at all."""
    upper = value.strip().upper()
    if upper in EXPORT_TYPES or upper in NOT_YET:
        return upper
    return None


def tile_major(export_type: str, config: TilerConfig) -> int | None:
    """The iMdl major version an IMODEL export's tiles stamp (meshopt-encoded ones need a newer reader);
    None for the other types."""
    if export_type != "IMODEL":
        return None
    return (IMDL_MESHOPT_VERSION if config.compression else IMDL_VERSION)[0]


def config_hash(config: TilerConfig) -> str:
    """The stored dedupe key: SHA-256 of ``config_key`` (the canonical text can be long: id lists)."""
    return hashlib.sha256(config_key(config).encode()).hexdigest()


_DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}")


def _is_date_time(value: Any) -> bool:
    if not isinstance(value, str) or not _DATE_TIME.match(value):
        return False
    try:
        datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class StartRequest:
    """A start body, checked: canonical type and configuration; the changeset is resolved later."""

    imodel_id: str
    changeset_id: str | None
    export_type: str
    config: TilerConfig


def parse_start(data: Mapping[str, Any]) -> StartRequest:
    """Check a start body (a JSON object); every problem is one ``InvalidRequestBody`` detail."""
    details: list[ErrorDetail] = []
    for name in data:
        if name not in START_FIELDS and name not in LEGACY_FIELDS:
            details.append(_body_detail(f"Property '{name}' is not allowed.", name))
    imodel_id = data.get("iModelId")
    if "iModelId" not in data:
        details.append(_body_detail("iModelId is required.", "iModelId"))
    elif not isinstance(imodel_id, str):
        details.append(_body_detail("iModelId must be a string.", "iModelId"))
    elif not imodel_id.strip():
        details.append(_body_detail("iModelId cannot be empty.", "iModelId"))
    changeset_id = data.get("changesetId")
    if changeset_id is not None and not isinstance(changeset_id, str):
        details.append(_body_detail("changesetId must be a string.", "changesetId"))
    export_type = DEFAULT_EXPORT_TYPE
    raw_type = data.get("exportType")
    if raw_type is not None:
        found = canonical_type(raw_type) if isinstance(raw_type, str) else None
        if found is None:
            details.append(
                _body_detail(
                    f"exportType '{raw_type}' is not valid; "
                    "use 3DTILES (or 3DTiles), CESIUM, GLTF, 3TZ or IMODEL.",
                    "exportType",
                )
            )
        elif found in NOT_YET:
            details.append(_body_detail(NOT_YET[found], "exportType"))
        else:
            export_type = found
    config = TilerConfig()
    try:
        config = parse_tiler_config(data.get("tilerConfig"))
    except TilerConfigError as exc:
        details.extend(exc.details)
    if data.get("lastModified") is not None and not _is_date_time(data["lastModified"]):
        details.append(_body_detail("lastModified must be a date-time (RFC 3339).", "lastModified"))
    if details:
        raise invalid_mesh_export(CREATE_MESSAGE, *details)
    assert isinstance(imodel_id, str)
    return StartRequest(
        imodel_id=imodel_id.strip(),
        changeset_id=changeset_id if isinstance(changeset_id, str) else None,
        export_type=export_type,
        config=config,
    )


@dataclass(frozen=True)
class UpdateRequest:
    display_name: str | None = None
    config: TilerConfig | None = None
    has_config: bool = False


def parse_update(data: Mapping[str, Any]) -> UpdateRequest:
    """``PATCH`` body: ``displayName`` and/or ``tilerConfig`` (null: back to the defaults)."""
    details: list[ErrorDetail] = []
    for name in data:
        if name not in UPDATE_FIELDS:
            details.append(_body_detail(f"Property '{name}' is not allowed.", name))
    name_value = data.get("displayName")
    if "displayName" in data:
        if not isinstance(name_value, str) or not name_value.strip():
            details.append(_body_detail("displayName must be a non-empty string.", "displayName"))
        elif len(name_value) > MAX_DISPLAY_NAME:
            details.append(
                _body_detail(f"displayName has at most {MAX_DISPLAY_NAME} characters.", "displayName")
            )
    config: TilerConfig | None = None
    if "tilerConfig" in data:
        try:
            config = parse_tiler_config(data["tilerConfig"])
        except TilerConfigError as exc:
            details.extend(exc.details)
    if details:
        raise invalid_mesh_export(UPDATE_MESSAGE, *details)
    return UpdateRequest(
        display_name=name_value if isinstance(name_value, str) else None,
        config=config,
        has_config="tilerConfig" in data,
    )


# ------------------------------------------------------------------------------------------ access


def readable_imodel(session: Session, imodel_id: str, user_id: str) -> Any:
    """The iModel, when the caller holds ``imodels_read`` in its iTwin; 404 ``IModelNotFound`` (this
    API's spelling) when they cannot see it, 403 when they can but lack the permission."""
    try:
        imodel, _ = imodels_domain.visible_imodel(session, imodel_id, user_id, access.IMODELS_READ)
    except IModelNotFound as exc:
        raise IModelNotFound(code=MESH_IMODEL_NOT_FOUND) from exc
    return imodel


def visible_export(
    session: Session, principal: Principal, export_id: str, *, lock: bool = False
) -> MeshExport:
    """One export; 404 ``ExportNotFound`` for a non-member of its iTwin, 403 without ``imodels_read``."""
    export = session.get(MeshExport, export_id, with_for_update=lock) if access.is_uuid(export_id) else None
    if export is None:
        raise MeshExportNotFound()
    itwin = session.get(ITwin, export.itwin_id)
    perms = access.permissions_of(session, itwin, principal.user_id) if itwin is not None else None
    if perms is None:
        raise MeshExportNotFound()
    access.require(perms, access.IMODELS_READ)
    return export


def _readable_itwins(session: Session, user_id: str) -> Any:
    """A WHERE clause: exports of iTwins where the caller holds ``imodels_read`` (owners of the iTwin
    or of its Account hold everything; members hold their roles' permissions)."""
    owned = select(Member.itwin_id).where(Member.user_id == user_id, Member.is_owner.is_(True))
    by_role = session.execute(
        select(MemberRole.itwin_id, Role.permissions)
        .join(Role, Role.id == MemberRole.role_id)
        .join(Member, and_(Member.itwin_id == MemberRole.itwin_id, Member.user_id == MemberRole.user_id))
        .where(MemberRole.user_id == user_id)
    ).all()
    readable = sorted({itwin_id for itwin_id, perms in by_role if access.IMODELS_READ in (perms or ())})
    return or_(
        MeshExport.itwin_id.in_(owned),
        MeshExport.itwin_id.in_(select(ITwin.id).where(ITwin.itwin_account_id.in_(owned))),
        MeshExport.itwin_id.in_(readable),
    )


# ------------------------------------------------------------------------------------------ create


def resolve_changeset(session: Session, imodel: Any, changeset_id: str | None) -> tuple[int, str]:
    """(index, id) of the changeset to export: the tip when omitted, the baseline for ``""``."""
    if changeset_id is None:
        return int(imodel.tip_index), str(imodel.tip_changeset_id)
    if changeset_id == "":
        return 0, ""
    wanted = changeset_id.strip().lower()
    cs = session.get(Changeset, (imodel.id, wanted)) if 0 < len(wanted) <= 64 else None
    if cs is None or cs.state != "fileUploaded" or cs.index is None:
        raise invalid_mesh_export(
            CREATE_MESSAGE,
            _body_detail(
                f"Changeset '{changeset_id}' is not a completed changeset of the iModel.", "changesetId"
            ),
        )
    return int(cs.index), cs.id


def _find(
    session: Session, imodel_id: str, changeset_id: str, export_type: str, key: str, *, lock: bool = False
) -> MeshExport | None:
    stmt = select(MeshExport).where(
        MeshExport.imodel_id == imodel_id,
        MeshExport.changeset_id == changeset_id,
        MeshExport.export_type == export_type,
        MeshExport.config_key == key,
    )
    return session.scalar(stmt.with_for_update() if lock else stmt)


def _reset(export: MeshExport) -> str | None:
    """Back to ``NotStarted`` for a new run; returns the old run's bundle, to delete after commit."""
    stale = export.bundle_id
    export.status = NOT_STARTED
    export.error = None
    export.progress = None
    export.stats = None
    export.bundle_id = None
    export.started_at = None
    export.completed_at = None
    export.last_modified = utcnow()
    return stale


@dataclass
class Started:
    export: MeshExport
    stale_bundle: str | None = None  # files of a previous run, deleted once the transaction commits
    enqueued: bool = False


def start(session: Session, jobs: JobQueue, principal: Principal, request: StartRequest) -> Started:
    """Find or make the export the request names; enqueue its job when it has to run."""
    imodel = readable_imodel(session, request.imodel_id, principal.user_id)
    if imodel.state != "initialized":
        raise invalid_mesh_export(
            CREATE_MESSAGE, _body_detail("The iModel has no baseline file yet.", "iModelId")
        )
    index, changeset_id = resolve_changeset(session, imodel, request.changeset_id)
    key = config_hash(request.config)
    existing = _find(session, imodel.id, changeset_id, request.export_type, key, lock=True)
    if existing is not None:
        if existing.status != INVALID:
            return Started(existing)
        stale = _reset(existing)
        jobs.enqueue(session, JOB_KIND, {"export_id": existing.id})
        return Started(existing, stale, True)
    now = utcnow()
    export = MeshExport(
        id=str(uuid.uuid4()),
        imodel_id=imodel.id,
        itwin_id=imodel.itwin_id,
        changeset_id=changeset_id,
        changeset_index=index,
        export_type=request.export_type,
        tiler_config=request.config.wire(),
        config_key=key,
        tile_major=tile_major(request.export_type, request.config),
        display_name=imodel.name,
        status=NOT_STARTED,
        created_by=principal.user_id,
        created_at=now,
        last_modified=now,
    )
    try:
        with session.begin_nested():
            session.add(export)
            session.flush()
    except IntegrityError:  # an equal request won the race: answer its export
        found = _find(session, imodel.id, changeset_id, request.export_type, key)
        if found is None:
            raise
        return Started(found)
    jobs.enqueue(session, JOB_KIND, {"export_id": export.id})
    return Started(export, None, True)


# ------------------------------------------------------------------------------------ update, delete


def update(
    session: Session, jobs: JobQueue, principal: Principal, export_id: str, request: UpdateRequest
) -> Started:
    """Rename, and/or change the configuration: a finished export then runs again (``NotStarted``)."""
    export = visible_export(session, principal, export_id, lock=True)
    result = Started(export)
    if request.display_name is not None:
        export.display_name = request.display_name
    if request.has_config:
        config = request.config or TilerConfig()
        key = config_hash(config)
        if key != export.config_key:
            if export.status == IN_PROGRESS:
                raise invalid_mesh_export(
                    UPDATE_MESSAGE,
                    ErrorDetail(
                        "InvalidParameter",
                        "The export is in progress; its tilerConfig can change once it is Complete "
                        "or Invalid.",
                        "id",
                    ),
                )
            clash = _find(session, export.imodel_id, export.changeset_id, export.export_type, key)
            if clash is not None:
                raise invalid_mesh_export(
                    UPDATE_MESSAGE,
                    _body_detail(
                        f"Export {clash.id} already exports this changeset with this tilerConfig.",
                        "tilerConfig",
                    ),
                )
            export.tiler_config = config.wire()
            export.config_key = key
            export.tile_major = tile_major(export.export_type, config)
            if export.status != NOT_STARTED:  # a NotStarted export's queued job reads the new one
                result.stale_bundle = _reset(export)
                jobs.enqueue(session, JOB_KIND, {"export_id": export.id})
                result.enqueued = True
    export.last_modified = utcnow()
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError as exc:  # an equal export was made meanwhile
        raise invalid_mesh_export(
            UPDATE_MESSAGE, _body_detail("An export with this tilerConfig exists already.", "tilerConfig")
        ) from exc
    return result


def delete(session: Session, principal: Principal, export_id: str) -> str | None:
    """Delete a finished export; returns its bundle, to delete once the transaction commits."""
    if not access.is_uuid(export_id):
        raise invalid_mesh_export(
            DELETE_MESSAGE, ErrorDetail("InvalidParameter", f"'{export_id}' is not a valid export id.", "id")
        )
    export = visible_export(session, principal, export_id, lock=True)
    if export.status in RUNNING:
        raise invalid_mesh_export(
            DELETE_MESSAGE,
            ErrorDetail(
                "InvalidParameter",
                f"The export is {export.status}; it can be deleted once it is Complete or Invalid.",
                "id",
            ),
        )
    bundle = export.bundle_id
    session.delete(export)
    session.flush()
    return bundle


def bundles_of_imodel(session: Session, imodel_id: str) -> list[str]:
    """The bundles of an iModel's exports (deleting the iModel deletes the rows by cascade)."""
    return [
        str(b)
        for b in session.scalars(
            select(MeshExport.bundle_id).where(
                MeshExport.imodel_id == imodel_id, MeshExport.bundle_id.is_not(None)
            )
        )
    ]


def delete_bundle(blobs: BlobStore, bundle_id: str | None) -> None:
    """Remove a bundle's files; a failure leaves orphan files (logged), never a broken export."""
    if not bundle_id:
        return
    try:
        blobs.delete_prefix(blob_keys.bundle(bundle_id))
    except (OSError, ValueError):
        log.warning(
            "could not delete export files",
            extra={"action": "mesh_export_delete_failed", "bundle": bundle_id},
        )


# -------------------------------------------------------------------------------------------- lists


def _invalid_query(details: list[ErrorDetail]) -> Exception:
    # This API names a bad query parameter ``InvalidParameter`` (as delete does for its id).
    return invalid_mesh_export(
        QUERY_MESSAGE, *(ErrorDetail("InvalidParameter", d.message, d.target) for d in details)
    )


def query(session: Session, principal: Principal, params: Mapping[str, str]) -> Page[MeshExport]:
    """``GET /mesh-export``: the exports the caller may read, filtered, newest change first.

    ``tileVersion`` is the highest iMdl major version the asking frontend reads: IMODEL exports whose
    tiles stamp a higher one are left out. ``cdn``, ``iTwinJS``, ``client`` and ``clientVersion`` are the
    clients' other compatibility hints; every answer suits every client, so they are ignored."""
    details: list[ErrorDetail] = []
    paging = parse_paging(params, details, default_top=100, max_top=1000)
    order: list[Any] | None = None
    raw_order = params.get("$orderBy") or params.get("$orderby")
    try:
        # The platform's spelling is ``date:desc``; the toolkit's ``date desc``.
        order = parse_order_by(
            raw_order.replace(":", " ") if raw_order else None,
            {"date": MeshExport.last_modified, "lastmodified": MeshExport.last_modified},
            case_insensitive=True,
        )
    except BadOrderBy:
        details.append(ErrorDetail("InvalidValue", "$orderBy must be date:asc or date:desc.", "$orderBy"))
    tile_version = params.get("tileVersion")
    readable_major: int | None = None
    if tile_version is not None:
        try:
            readable_major = int(tile_version.strip())
        except ValueError:
            details.append(ErrorDetail("InvalidValue", "tileVersion must be a whole number.", "tileVersion"))
    if details:
        raise _invalid_query(details)
    stmt: Select[Any] = select(MeshExport)
    if readable_major is not None:
        stmt = stmt.where(or_(MeshExport.export_type != "IMODEL", MeshExport.tile_major <= readable_major))
    imodel_id = params.get("iModelId") or params.get("imodelId")
    if imodel_id:
        imodel = readable_imodel(session, imodel_id, principal.user_id)
        stmt = stmt.where(MeshExport.imodel_id == imodel.id)
    else:
        stmt = stmt.where(_readable_itwins(session, principal.user_id))
    changeset_id = params.get("changesetId")
    if changeset_id:
        stmt = stmt.where(MeshExport.changeset_id == changeset_id.strip().lower())
    export_type = params.get("exportType")
    if export_type:
        # An unknown or unsupported type matches nothing.
        stmt = stmt.where(MeshExport.export_type == (canonical_type(export_type) or export_type.upper()))
    order = order or [MeshExport.last_modified.desc()]
    return fetch_page(session, stmt.order_by(*order, MeshExport.id), paging)


# --------------------------------------------------------------------------------------------- wire


def mesh_href(blobs: BlobStore, lifetime: int, base: str, export: MeshExport) -> str | None:
    """``_links.mesh.href``: the bundle as a folder URL (no trailing slash) with its read query, which
    clients keep when they append ``/tileset.json`` to the path (reference A.4)."""
    if export.status != COMPLETE or not export.bundle_id:
        return None
    link = blobs.presign_prefix(blob_keys.bundle(export.bundle_id), "r", lifetime, base)
    return f"{link.base}?{link.query}"


def request_wire(export: MeshExport) -> dict[str, Any]:
    """The stored request, canonical (seed 001's ExportResultBody; ``changesetIndex`` is a string)."""
    wire: dict[str, Any] = {
        "iModelId": export.imodel_id,
        "iTwinId": export.itwin_id,
        "contextId": export.itwin_id,
        "changesetId": export.changeset_id,
        "changesetIndex": str(export.changeset_index),
        "exportType": export.export_type,
    }
    if export.tiler_config:
        wire["tilerConfig"] = export.tiler_config
    return wire


def to_wire(export: MeshExport, mode: Mode, href: str | None = None) -> dict[str, Any]:
    """Minimal: ``id, displayName, status, lastModified`` (and ``error`` of an Invalid export).
    Representation adds ``request``, ``stats`` and ``_links`` (``mesh`` only when Complete)."""
    wire: dict[str, Any] = {
        "id": export.id,
        "displayName": export.display_name,
        "status": export.status,
        "lastModified": iso(export.last_modified),
    }
    if export.status == INVALID and export.error:
        wire["error"] = export.error
    if mode == "representation":
        wire["request"] = request_wire(export)
        if export.stats is not None:
            wire["stats"] = export.stats
        wire["_links"] = {"mesh": {"href": href}} if href else {}
    return wire


# ---------------------------------------------------------------------------------------------- job


class OutputSink(Protocol):
    def put(self, relative_path: str, data: bytes) -> None: ...


Producer = Callable[[Path, str, TilerConfig, OutputSink, Callable[[float, str], None]], dict[str, Any]]


class ExportInvalid(Exception):
    """The export cannot be made; the message is what the export's ``error`` says."""


class ExportGone(BaseException):
    """The export was deleted (or handed to another run) while this run worked. A ``BaseException``
    so that the pipeline's own ``except Exception`` blocks cannot swallow it."""


def load_producer() -> Producer:
    """The tile pipeline's entry point, imported when a job runs: a server without it makes its
    exports ``Invalid`` with this message rather than failing to start."""
    try:
        module = importlib.import_module(PRODUCE_MODULE)
    except ModuleNotFoundError as exc:
        if exc.name == PRODUCE_MODULE:
            raise ExportInvalid(
                "Mesh export output is not available on this server yet: the tile pipeline "
                f"({PRODUCE_MODULE}) is not installed."
            ) from exc
        raise ExportInvalid(f"The tile pipeline could not be loaded: {exc}") from exc
    except ImportError as exc:
        raise ExportInvalid(f"The tile pipeline could not be loaded: {exc}") from exc
    produce = getattr(module, "produce", None)
    if not callable(produce):
        raise ExportInvalid(f"The tile pipeline ({PRODUCE_MODULE}) has no produce function.")
    return cast(Producer, produce)


@dataclass
class BundleSink:
    """Where the pipeline puts files: ``bundles/<bundle_id>/<relative path>``, each stored whole.

    ``check`` runs before every file (the job's cancellation point). Sizes are kept for the stats."""

    blobs: BlobStore
    bundle_id: str
    check: Callable[[], None] = lambda: None
    sizes: dict[str, int] = field(default_factory=dict)

    def put(self, relative_path: str, data: bytes) -> None:
        if not relative_path or relative_path.startswith("/") or "\\" in relative_path:
            raise ValueError(f"not a relative output path: {relative_path!r}")
        key = check_key(f"{blob_keys.bundle(self.bundle_id)}/{relative_path}")
        self.check()
        self.blobs.put(key, [bytes(data)])
        self.sizes[relative_path] = len(data)

    @property
    def total(self) -> int:
        return sum(self.sizes.values())

    def structure(self, limit: int = 100) -> list[dict[str, Any]]:
        """``exportDirStructure``: the bundle's top-level children with their sizes (folders summed).
        Past ``limit`` children, top-level files are grouped by extension (``*.glb``) with a count."""
        children: dict[str, list[int]] = {}
        folders: set[str] = set()
        for path, size in self.sizes.items():
            head, sep, _ = path.partition("/")
            if sep:
                folders.add(head)
            entry = children.setdefault(head, [0, 0])
            entry[0] += size
            entry[1] += 1
        if len(children) > limit:
            grouped: dict[str, list[int]] = {}
            for name, (size, count) in children.items():
                label = name if name in folders else "*" + (Path(name).suffix or name)
                entry = grouped.setdefault(label, [0, 0])
                entry[0] += size
                entry[1] += count
            children = grouped
        out = []
        for name in sorted(children):
            size, count = children[name]
            item: dict[str, Any] = {"name": name, "size": size}
            if name in folders or name.startswith("*"):
                item["files"] = count
            out.append(item)
        return out


@dataclass(frozen=True)
class Run:
    """One run of one export, as its first transaction left it."""

    export_id: str
    imodel_id: str
    changeset_index: int
    export_type: str
    tiler_config: list[dict[str, Any]] | None
    bundle_id: str
    stale_bundle: str | None
    started_at: datetime
    clock: float


PRODUCE_START = 0.1  # export progress when the pipeline starts (the iModel file is made before)
PRODUCE_END = 0.98
PROGRESS_WRITE_SECONDS = 1.0


def _begin(svc: MeshServices, export_id: str, ctx: JobContext | None) -> Run | None:
    with svc.db.write() as session:
        if ctx is not None:
            ctx.fence(session)
        export = session.get(MeshExport, export_id, with_for_update=True)
        if export is None or export.status in (COMPLETE, INVALID):
            return None  # deleted, or a re-delivered job whose export already finished
        stale = export.bundle_id  # a previous attempt's files (its worker died), or None
        mesh_tile_jobs.cancel_tile_jobs(svc, session, stale)  # and its tile jobs
        now = utcnow()
        export.status = IN_PROGRESS
        export.bundle_id = uuid.uuid4().hex
        export.error = None
        export.progress = 0.0
        export.stats = {"progress": 0.0}
        export.started_at = now
        export.completed_at = None
        export.last_modified = now
        return Run(
            export_id=export.id,
            imodel_id=export.imodel_id,
            changeset_index=export.changeset_index,
            export_type=export.export_type,
            tiler_config=list(export.tiler_config) if export.tiler_config else None,
            bundle_id=export.bundle_id,
            stale_bundle=stale,
            started_at=now,
            clock=time.monotonic(),
        )


class _Progress:
    """The pipeline's progress callback: the job's progress (a cancellation point) at once, the
    export's own ``progress`` at most every ``PROGRESS_WRITE_SECONDS`` (one short fenced write)."""

    def __init__(self, svc: MeshServices, run: Run, ctx: JobContext | None) -> None:
        self.svc = svc
        self.run = run
        self.ctx = ctx
        self.last_write = 0.0

    def __call__(self, fraction: float, message: str = "") -> None:
        value = min(1.0, max(0.0, float(fraction)))
        overall = PRODUCE_START + (PRODUCE_END - PRODUCE_START) * value
        if self.ctx is not None:
            self.ctx.progress(overall, message or None)
        if time.monotonic() - self.last_write >= PROGRESS_WRITE_SECONDS:
            self.record(overall)

    def record(self, overall: float) -> None:
        self.last_write = time.monotonic()
        with self.svc.db.write(invalidates_reads=False) as session:
            if self.ctx is not None:
                self.ctx.fence(session)
            export = session.get(MeshExport, self.run.export_id, with_for_update=True)
            if export is None or export.bundle_id != self.run.bundle_id:
                raise ExportGone()
            export.progress = round(overall, 4)
            export.stats = {"progress": round(overall, 4)}


def _jsonable(value: Any) -> dict[str, Any]:
    """The pipeline's stats as plain JSON (numpy numbers and the like become JSON numbers)."""
    if not isinstance(value, dict):
        return {}
    data = orjson.loads(
        orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS, default=str)
    )
    return data if isinstance(data, dict) else {}


#: Export types whose tiles a later export of the same iModel, type and configuration may copy.
REUSING_TYPES = ("3DTILES", "CESIUM", "IMODEL")
TILES_MANIFEST = "twinbase-tiles.json"


def _previous_tiles(svc: MeshServices, run: Run, config: TilerConfig, sink: BundleSink) -> Any | None:
    """The newest complete export of the same iModel, type and configuration (another changeset), as
    ``export.produce.PreviousTiles``: its tiles manifest and a server-side copy of one of its files into
    this run's bundle. None when there is none or its manifest cannot be read (then every tile is made)."""
    with svc.db.read() as session:
        old = session.scalar(
            select(MeshExport.bundle_id)
            .where(
                MeshExport.imodel_id == run.imodel_id,
                MeshExport.export_type == run.export_type,
                MeshExport.config_key == config_hash(config),
                MeshExport.status == "Complete",
                MeshExport.id != run.export_id,
                MeshExport.bundle_id.is_not(None),
            )
            .order_by(MeshExport.completed_at.desc())
            .limit(1)
        )
    if not old:
        return None
    from twinbase.export.produce import PreviousTiles

    old_prefix = blob_keys.bundle(str(old))
    new_prefix = blob_keys.bundle(run.bundle_id)
    try:
        key = f"{old_prefix}/{TILES_MANIFEST}"
        info = svc.blobs.stat(key)
        manifest = orjson.loads(b"".join(svc.blobs.open_range(key, 0, info.size - 1)))
    except (BlobNotFound, OSError, orjson.JSONDecodeError):
        return None
    if not isinstance(manifest, dict):
        return None

    def copy(old_name: str, new_name: str) -> int:
        sink.check()
        copied = svc.blobs.copy(check_key(f"{old_prefix}/{old_name}"), check_key(f"{new_prefix}/{new_name}"))
        sink.sizes[new_name] = copied.size
        return copied.size

    return PreviousTiles(manifest, copy)


def _produce(
    svc: MeshServices, run: Run, ctx: JobContext | None, producer: Producer | None
) -> dict[str, Any]:
    """Make the files; returns the stats. Raises ``ExportInvalid`` for what no retry can fix."""
    produce = producer or load_producer()
    try:
        config = parse_tiler_config(run.tiler_config)
    except TilerConfigError as exc:
        raise ExportInvalid(f"The stored tilerConfig is no longer valid: {exc}") from exc
    progress = _Progress(svc, run, ctx)
    with svc.db.read() as session:
        try:
            the_plan = checkpoints.plan(session, run.imodel_id, run.changeset_index)
        except checkpoints.CheckpointUnmakeable as exc:
            raise ExportInvalid(
                f"The iModel's file at changeset {run.changeset_index} cannot be made: {exc}."
            ) from exc
    sink = BundleSink(svc.blobs, run.bundle_id, ctx.raise_if_cancelled if ctx is not None else lambda: None)
    with scratch(svc.settings.data_dir, "export") as tmp:
        bim = Path(tmp) / "imodel.bim"
        if ctx is not None:
            ctx.progress(0.0, "Making the iModel's file")
        try:
            checkpoints.build_file(svc, the_plan, bim, ctx)
        except (ChangesetFormatError, BimFormatError) as exc:
            raise ExportInvalid(
                f"The iModel's file at changeset {run.changeset_index} cannot be made: {exc}"
            ) from exc
        imodel_size = bim.stat().st_size
        progress.record(PRODUCE_START)
        # Only the real pipeline copies an earlier export's tiles and spreads tile jobs (a pipeline
        # passed in, in tests, is called as the plain Producer).
        if producer is None and run.export_type in REUSING_TYPES:
            tiles = mesh_tile_jobs.DistributedTiles(
                svc,
                mesh_tile_jobs.ExportRun(
                    export_id=run.export_id,
                    bundle_id=run.bundle_id,
                    imodel_id=run.imodel_id,
                    changeset_index=run.changeset_index,
                    export_type=run.export_type,
                    tiler_config=run.tiler_config,
                ),
                fence=ctx.fence if ctx is not None else lambda session: None,
                sizes=sink.sizes,
                worker_name=ctx.claim.worker if ctx is not None else svc.jobs.process_id,
            )
            previous = _previous_tiles(svc, run, config, sink)
            produced = produce(bim, run.export_type, config, sink, progress, previous=previous, tiles=tiles)  # type: ignore[call-arg]
        else:
            produced = produce(bim, run.export_type, config, sink, progress)
    if not sink.sizes:
        raise ExportInvalid("The tile pipeline wrote no files.")
    stats = _jsonable(produced)
    stats.pop("progress", None)
    stats.setdefault("iModelSize", imodel_size)
    stats.setdefault("rawSize", sink.total)
    stats["exportDirSize"] = sink.total
    stats["exportDirStructure"] = sink.structure()
    stats["startTime"] = iso(run.started_at)
    stats["duration"] = int((time.monotonic() - run.clock) * 1000)
    return stats


def _finish(
    svc: MeshServices, run: Run, ctx: JobContext | None, stats: dict[str, Any] | None, error: str | None
) -> bool:
    """The run's last write: ``Complete`` with ``stats``, or ``Invalid`` with ``error``. False when
    the export is gone or another run owns it (then this run's files must go)."""
    with svc.db.write() as session:
        if ctx is not None:
            ctx.fence(session)
        export = session.get(MeshExport, run.export_id, with_for_update=True)
        if export is None or export.bundle_id != run.bundle_id or export.status != IN_PROGRESS:
            return False
        now = utcnow()
        export.completed_at = now
        export.last_modified = now
        if error is None:
            export.status = COMPLETE
            export.progress = 1.0
            export.stats = stats
        else:
            export.status = INVALID
            export.error = error[:MAX_ERROR]
            export.progress = None
            export.stats = {
                "startTime": iso(run.started_at),
                "duration": int((time.monotonic() - run.clock) * 1000),
            }
        return True


# Worth another attempt of the job: a stored file vanished meanwhile (a checkpoint evicted while
# replay read it: the next attempt plans from another one), the database was briefly unreachable.
RETRYABLE = (BlobNotFound, ServiceUnavailable)


def run_export(
    svc: MeshServices, export_id: str, ctx: JobContext | None = None, *, producer: Producer | None = None
) -> dict[str, Any] | None:
    """The job. ``producer``: the pipeline (default: ``twinbase.export.produce.produce``, imported now).

    Writes are fenced by the job's claim (``ctx``; None when called directly). Whatever ends the run
    early (a failure, a lost claim, the export deleted), this run's files are deleted before it ends.
    """
    run = _begin(svc, export_id, ctx)
    if run is None:
        return None
    delete_bundle(svc.blobs, run.stale_bundle)
    try:
        stats = _produce(svc, run, ctx, producer)
        done = _finish(svc, run, ctx, stats, None)
    except ExportGone:
        delete_bundle(svc.blobs, run.bundle_id)
        return {"status": "deleted"}
    except JobInterrupted:
        delete_bundle(svc.blobs, run.bundle_id)
        raise
    except RETRYABLE:
        delete_bundle(svc.blobs, run.bundle_id)
        raise
    except Exception as exc:
        delete_bundle(svc.blobs, run.bundle_id)
        if isinstance(exc, (ExportInvalid, mesh_tile_jobs.TileJobFailed)):
            error = str(exc)
        else:
            log.warning(
                "mesh export failed",
                exc_info=exc,
                extra={"action": "mesh_export_failed", "export": export_id},
            )
            error = f"The tile pipeline failed: {type(exc).__name__}: {exc}"
        _finish(svc, run, ctx, None, error)
        return {"status": INVALID}
    if not done:
        delete_bundle(svc.blobs, run.bundle_id)
        return {"status": "deleted"}
    return {"status": COMPLETE, "bundle": run.bundle_id}


def export_failed(svc: MeshServices, session: Session, payload: Mapping[str, Any], error: str) -> None:
    """The job gave up (its worker kept dying, or a retryable failure persisted): ``Invalid``, and the
    last run's files go."""
    export = session.get(MeshExport, str(payload["export_id"]), with_for_update=True)
    if export is None or export.status not in RUNNING:
        return
    bundle = export.bundle_id
    now = utcnow()
    export.status = INVALID
    export.error = f"The export job failed: {error}"[:MAX_ERROR]
    export.progress = None
    export.completed_at = now
    export.last_modified = now
    session.flush()
    delete_bundle(svc.blobs, bundle)


def register(svc: MeshServices) -> None:
    """Register the ``mesh_export`` job kind (CPU-heavy: ``twinbase worker`` processes may take it)."""

    def handler(ctx: JobContext) -> dict[str, Any] | None:
        return run_export(svc, str(ctx.payload["export_id"]), ctx)

    def failed(session: Session, payload: Mapping[str, Any], error: str) -> None:
        export_failed(svc, session, payload, error)

    svc.jobs.register(JOB_KIND, handler, on_failure=failed, cpu_heavy=True)
