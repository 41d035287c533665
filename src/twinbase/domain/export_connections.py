"""Export API (seed 004, reference §C): connections to iModels and their runs, which write IFC.

A *connection* links one iModel and can run again and again; a *run* is one export. On the wire a
run holds one job holding one task (the platform's shape); here a run is one row and one durable
``export_run`` job, and the job and task ids on the wire are stored with it.

Decisions the platform leaves open (documented in README):

- **One active run per connection.** A start while a run is active answers 303 See Other with the
  active run's ``Location``; two starts that race get one winner (202) and a 409 for the loser. The
  unique ``(connection_id, active_slot)`` constraint decides the race on every database.
- **Who a run runs as.** ``User`` connections run as the user who starts the run: the run checks
  again, when it starts working, that they still hold ``imodels_read``. ``Service`` connections run
  as twinbase's export service identity (``SERVICE_IDENTITY``): once started, the run does not depend
  on the starting user's access. Starting a run always needs ``imodels_read`` on the iModel.
- **Access.** A non-member of the iModel's iTwin gets 404 ``ConnectionNotFound`` for a connection and
  its runs; a member without ``imodels_read`` gets 403 ``InsufficientPermissions``. Creating or
  listing with an iModel the caller cannot see is a 422 ``InvalidValue`` on ``iModelId``/``imodelId``
  (the seed's "Provided imodelId value is not valid.").
- **A connection outlives its iModel**: a run started after the iModel was deleted is refused (422),
  and a run working when it is deleted ends ``Completed``/``Error`` with a message saying so.
- **Reuse.** A run at the same changeset with the same type, version and model selection as an
  earlier successful run copies that run's output instead of writing it again.
- **Options twinbase cannot honour are refused**, never ignored: a mapping file, a saved view, and
  output to a user's blob or an iTwin Storage folder are 422 ``InvalidValue`` naming the option.

Functions taking a session never commit (the caller owns the transaction); the job's writes are
fenced by its claim.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import re
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import orjson
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from twinbase.bim.changeset import ChangesetFormatError
from twinbase.bim.identity import BimFormatError
from twinbase.domain import access, checkpoints
from twinbase.domain import imodels as imodels_domain
from twinbase.domain.itwins import iso
from twinbase.domain.listing import Page, fetch_page, parse_paging
from twinbase.errors import (
    BlobNotFound,
    ConnectionNotFound,
    ErrorDetail,
    IModelNotFound,
    RunStarting,
    ServiceUnavailable,
    invalid_export_connection,
)
from twinbase.identity.tokens import Principal
from twinbase.jobs.context import JobContext, JobInterrupted
from twinbase.jobs.queue import JobQueue
from twinbase.store.blobs import BlobStore
from twinbase.store.blobs import keys as blob_keys
from twinbase.store.models import Changeset, ExportConnection, ExportRun, IModel, ITwin, utcnow
from twinbase.store.scratch import scratch

log = logging.getLogger("twinbase.export_connections")

JOB_KIND = "export_run"
WRITER_MODULE = "twinbase.export.ifc"
#: Who a ``Service`` connection's runs run as (recorded on the run).
SERVICE_IDENTITY = "twinbase-export-service"

AUTHENTICATION_TYPES = {"user": "User", "service": "Service"}
DEFAULT_AUTHENTICATION = "User"
EXPORT_TYPES = {"ifc": "IFC"}
NOT_YET_TYPES = {"pdf": "PDF", "landxml": "LandXML"}
#: The platform's ``ifcVersion`` values (case-insensitive), canonical spelling first.
IFC_VERSIONS = {
    "ifc4 rv 1.2": "IFC4 RV 1.2",
    "ifc4": "IFC4 RV 1.2",
    "ifc4.3": "IFC4.3",
    "ifc4.3_add2": "IFC4.3",
    "ifc4x3": "IFC4.3",
    "ifc4x3_add2": "IFC4.3",
    "ifc2x3": "IFC2x3",
    "ifc2x3 cv 2.0": "IFC2x3 CV 2.0",
}
DEFAULT_IFC_VERSION = "IFC4 RV 1.2"

# States and results, as the platform spells them.
QUEUED = "Queued"
EXECUTING = "Executing"
FINALIZING = "Finalizing"
COMPLETED = "Completed"
UNDETERMINED = "Undetermined"
SUCCESS = "Success"
PARTIAL = "PartialSuccess"
ERROR = "Error"

CONNECTION_FIELDS = frozenset({"iModelId", "displayName", "authenticationType"})
RUN_FIELDS = frozenset({"exportType", "ifcVersion", "inputOptions", "outputOptions"})
INPUT_FIELDS = frozenset({"changesetId", "modelIds", "mappingFileId", "mappingfileBlobUrl", "savedViewId"})
OUTPUT_FIELDS = frozenset({"location", "outputSasUrl", "logsSasUrl", "folderId"})
MAX_DISPLAY_NAME = 255
MAX_MODEL_IDS = 10_000
_HEX_ID = re.compile(r"^0x[0-9a-f]{1,16}$")

# What the job needs from ``api.deps.Services`` (structural typing).
RunServices = imodels_domain.FileServices


# ------------------------------------------------------------------------------------------ inputs


def _invalid(message: str, target: str | None) -> ErrorDetail:
    return ErrorDetail("InvalidValue", message, target)


def _missing(target: str) -> ErrorDetail:
    return ErrorDetail("MissingRequiredProperty", f"{target} was not provided.", target)


def _unknown_fields(data: Mapping[str, Any], allowed: frozenset[str], prefix: str = "") -> list[ErrorDetail]:
    return [
        _invalid(f"Property '{prefix}{name}' is not allowed.", f"{prefix}{name}")
        for name in data
        if name not in allowed
    ]


@dataclass(frozen=True)
class ConnectionRequest:
    imodel_id: str
    display_name: str | None
    authentication_type: str


def parse_connection(data: Mapping[str, Any]) -> ConnectionRequest:
    details = _unknown_fields(data, CONNECTION_FIELDS)
    imodel_id = data.get("iModelId")
    if imodel_id is None:
        details.append(_missing("iModelId"))
    elif not isinstance(imodel_id, str) or not access.is_uuid(imodel_id.strip()):
        details.append(_invalid("Provided iModelId value is not valid.", "iModelId"))
    name = data.get("displayName")
    if name is not None and (not isinstance(name, str) or len(name) > MAX_DISPLAY_NAME):
        details.append(
            _invalid(f"displayName must be a string of at most {MAX_DISPLAY_NAME} characters.", "displayName")
        )
    auth = data.get("authenticationType")
    authentication = DEFAULT_AUTHENTICATION
    if auth is not None:
        found = AUTHENTICATION_TYPES.get(auth.strip().lower()) if isinstance(auth, str) else None
        if found is None:
            details.append(_invalid("authenticationType must be 'User' or 'Service'.", "authenticationType"))
        else:
            authentication = found
    if details:
        raise invalid_export_connection(*details)
    assert isinstance(imodel_id, str)
    return ConnectionRequest(
        imodel_id=imodel_id.strip().lower(),
        display_name=name.strip() if isinstance(name, str) and name.strip() else None,
        authentication_type=authentication,
    )


@dataclass(frozen=True)
class RunRequest:
    export_type: str
    ifc_version: str
    changeset_id: str | None
    model_ids: tuple[str, ...] | None  # canonical hex, sorted; None: every model

    @property
    def options_key(self) -> str:
        text = orjson.dumps([self.export_type, self.ifc_version, list(self.model_ids or ())])
        return hashlib.sha256(text).hexdigest()


def _canonical_id(value: Any) -> str | None:
    """``0x20000000001`` (any case) or a decimal string -> lower-case hex; None when not an id."""
    if not isinstance(value, str):
        return None
    text = value.strip().lower()
    if _HEX_ID.match(text):
        number = int(text, 16)
    elif text.isdigit() and len(text) <= 20:
        number = int(text)
    else:
        return None
    return f"0x{number:x}" if 0 < number < 2**64 else None


def parse_run(data: Mapping[str, Any]) -> RunRequest:
    """A start-run body; every problem is one detail naming its ``target``."""
    details = _unknown_fields(data, RUN_FIELDS)
    export_type = "IFC"
    raw_type = data.get("exportType")
    if raw_type is not None:
        key = raw_type.strip().lower() if isinstance(raw_type, str) else ""
        if key in NOT_YET_TYPES:
            details.append(
                _invalid(
                    f"exportType '{NOT_YET_TYPES[key]}' is not supported by twinbase yet; use IFC.",
                    "exportType",
                )
            )
        elif key not in EXPORT_TYPES:
            details.append(_invalid("exportType must be 'IFC'.", "exportType"))
        else:
            export_type = EXPORT_TYPES[key]
    ifc_version = DEFAULT_IFC_VERSION
    raw_version = data.get("ifcVersion")
    if raw_version is not None:
        found = IFC_VERSIONS.get(raw_version.strip().lower()) if isinstance(raw_version, str) else None
        if found is None:
            details.append(
                _invalid(
                    "ifcVersion must be one of 'IFC4 RV 1.2', 'IFC4.3', 'IFC2x3', 'IFC2x3 CV 2.0'.",
                    "ifcVersion",
                )
            )
        else:
            ifc_version = found
    changeset_id: str | None = None
    model_ids: tuple[str, ...] | None = None
    inputs = data.get("inputOptions")
    if inputs is not None and not isinstance(inputs, dict):
        details.append(_invalid("inputOptions must be an object.", "inputOptions"))
    elif isinstance(inputs, dict):
        details.extend(_unknown_fields(inputs, INPUT_FIELDS, "inputOptions."))
        for unsupported in ("mappingFileId", "mappingfileBlobUrl", "savedViewId"):
            if inputs.get(unsupported) is not None:
                details.append(
                    _invalid(
                        f"inputOptions.{unsupported} is not supported by twinbase.",
                        f"inputOptions.{unsupported}",
                    )
                )
        raw_cs = inputs.get("changesetId")
        if raw_cs is not None:
            if not isinstance(raw_cs, str) or len(raw_cs) > 64:
                details.append(
                    _invalid("inputOptions.changesetId must be a changeset id.", "inputOptions.changesetId")
                )
            else:
                changeset_id = raw_cs.strip().lower()
        raw_models = inputs.get("modelIds")
        if raw_models is not None:
            ids = [_canonical_id(v) for v in raw_models] if isinstance(raw_models, list) else [None]
            if not ids or None in ids or len(ids) > MAX_MODEL_IDS:
                details.append(
                    _invalid(
                        "inputOptions.modelIds must be a non-empty list of model ids (like '0x20000000001').",
                        "inputOptions.modelIds",
                    )
                )
            else:
                model_ids = tuple(sorted({cast(str, i) for i in ids}, key=lambda h: int(h, 16)))
    outputs = data.get("outputOptions")
    if outputs is not None and not isinstance(outputs, dict):
        details.append(_invalid("outputOptions must be an object.", "outputOptions"))
    elif isinstance(outputs, dict):
        details.extend(_unknown_fields(outputs, OUTPUT_FIELDS, "outputOptions."))
        location = outputs.get("location")
        if location is not None and location != "ITWIN_STORAGE" and location != "":
            details.append(
                _invalid(
                    "outputOptions.location: twinbase keeps the output itself (a download link on the task); "
                    "USER_BLOB_STORAGE is not supported.",
                    "outputOptions.location",
                )
            )
        for unsupported in ("outputSasUrl", "logsSasUrl", "folderId"):
            if outputs.get(unsupported) is not None:
                details.append(
                    _invalid(
                        f"outputOptions.{unsupported} is not supported by twinbase: the output is kept by "
                        "twinbase and linked from the run's task.",
                        f"outputOptions.{unsupported}",
                    )
                )
    if details:
        raise invalid_export_connection(*details)
    return RunRequest(export_type, ifc_version, changeset_id, model_ids)


# ------------------------------------------------------------------------------------------ access


def _permissions(session: Session, itwin_id: str, user_id: str) -> frozenset[str] | None:
    itwin = session.get(ITwin, itwin_id)
    return access.permissions_of(session, itwin, user_id) if itwin is not None else None


def visible_connection(
    session: Session, principal: Principal, connection_id: str, *, lock: bool = False
) -> ExportConnection:
    """404 ``ConnectionNotFound`` for an unknown id or a non-member; 403 without ``imodels_read``."""
    conn = (
        session.get(ExportConnection, connection_id.lower(), with_for_update=lock)
        if access.is_uuid(connection_id)
        else None
    )
    if conn is None:
        raise ConnectionNotFound()
    perms = _permissions(session, conn.itwin_id, principal.user_id)
    if perms is None:
        raise ConnectionNotFound()
    access.require(perms, access.IMODELS_READ)
    return conn


def _readable_imodel(session: Session, imodel_id: str, principal: Principal, target: str) -> IModel:
    try:
        imodel, _ = imodels_domain.visible_imodel(session, imodel_id, principal.user_id, access.IMODELS_READ)
    except IModelNotFound as exc:
        raise invalid_export_connection(_invalid(f"Provided {target} value is not valid.", target)) from exc
    return imodel


# ------------------------------------------------------------------------------------- connections


def create_connection(session: Session, principal: Principal, request: ConnectionRequest) -> ExportConnection:
    imodel = _readable_imodel(session, request.imodel_id, principal, "iModelId")
    conn = ExportConnection(
        id=str(uuid.uuid4()),
        itwin_id=imodel.itwin_id,
        imodel_id=imodel.id,
        display_name=request.display_name or imodel.name,
        authentication_type=request.authentication_type,
        created_by=principal.user_id,
        created_at=utcnow(),
    )
    session.add(conn)
    session.flush()
    return conn


def list_connections(
    session: Session, principal: Principal, params: Mapping[str, str]
) -> Page[ExportConnection]:
    """``GET /export/connections?imodelId=`` (required; ``iModelId`` is accepted too)."""
    details: list[ErrorDetail] = []
    paging = parse_paging(params, details, default_top=100, max_top=1000)
    imodel_id = params.get("imodelId") or params.get("iModelId")
    if not imodel_id:
        details.append(_missing("imodelId"))
    elif not access.is_uuid(imodel_id.strip()):
        details.append(_invalid("Provided imodelId value is not valid.", "imodelId"))
    if details:
        raise invalid_export_connection(*details)
    assert imodel_id is not None
    imodel = _readable_imodel(session, imodel_id.strip().lower(), principal, "imodelId")
    stmt = (
        select(ExportConnection)
        .where(ExportConnection.imodel_id == imodel.id)
        .order_by(ExportConnection.created_at, ExportConnection.id)
    )
    return fetch_page(session, stmt, paging)


def delete_connection(
    session: Session, jobs: JobQueue, principal: Principal, connection_id: str
) -> list[str]:
    """Delete the connection and its runs (an active run stops at its next step); answers the output
    files to delete once the transaction commits."""
    conn = visible_connection(session, principal, connection_id, lock=True)
    runs = list(session.scalars(select(ExportRun).where(ExportRun.connection_id == conn.id)))
    outputs = [r.output_key for r in runs if r.output_key]
    for run in runs:
        session.delete(run)
    session.delete(conn)
    session.flush()
    return outputs


def delete_outputs(blobs: BlobStore, keys: list[str]) -> None:
    for key in keys:
        try:
            blobs.delete(key)
        except (OSError, ValueError):
            log.warning(
                "could not delete a run's output", extra={"action": "export_output_delete_failed", "key": key}
            )


# -------------------------------------------------------------------------------------------- runs


def _resolve_changeset(session: Session, imodel: IModel, changeset_id: str | None) -> tuple[int, str]:
    if changeset_id is None:
        return int(imodel.tip_index), str(imodel.tip_changeset_id)
    if changeset_id == "":
        return 0, ""
    cs = session.get(Changeset, (imodel.id, changeset_id))
    if cs is None or cs.state != "fileUploaded" or cs.index is None:
        raise invalid_export_connection(
            _invalid(
                f"Changeset '{changeset_id}' is not a completed changeset of the iModel.",
                "inputOptions.changesetId",
            )
        )
    return int(cs.index), cs.id


@dataclass
class StartedRun:
    run: ExportRun
    created: bool  # False: a run was already active (303 to it)


def start_run(
    session: Session, jobs: JobQueue, principal: Principal, connection_id: str, request: RunRequest
) -> StartedRun:
    conn = visible_connection(session, principal, connection_id)
    active = session.scalar(
        select(ExportRun).where(ExportRun.connection_id == conn.id, ExportRun.active_slot == 1)
    )
    if active is not None:
        return StartedRun(active, False)
    imodel = session.get(IModel, conn.imodel_id)
    if imodel is None:
        raise invalid_export_connection(
            _invalid("The connection's iModel no longer exists; delete the connection.", "iModelId")
        )
    if imodel.state != "initialized":
        raise invalid_export_connection(_invalid("The iModel has no baseline file yet.", "iModelId"))
    index, changeset_id = _resolve_changeset(session, imodel, request.changeset_id)
    now = utcnow()
    run = ExportRun(
        id=str(uuid.uuid4()),
        connection_id=conn.id,
        itwin_id=conn.itwin_id,
        imodel_id=conn.imodel_id,
        started_by=principal.user_id,
        run_as=principal.user_id if conn.authentication_type == "User" else SERVICE_IDENTITY,
        export_type=request.export_type,
        ifc_version=request.ifc_version,
        changeset_id=changeset_id,
        changeset_index=index,
        model_ids=list(request.model_ids) if request.model_ids is not None else None,
        options_key=request.options_key,
        active_slot=1,
        state=QUEUED,
        result=UNDETERMINED,
        job_id=str(uuid.uuid4()),
        task_id=str(uuid.uuid4()),
        retry_attempts=0,
        created_at=now,
    )
    try:
        with session.begin_nested():
            session.add(run)
            session.flush()
    except IntegrityError as exc:  # a simultaneous start of this connection won
        raise RunStarting() from exc
    conn.last_run_id = run.id
    jobs.enqueue(session, JOB_KIND, {"run_id": run.id})
    return StartedRun(run, True)


def visible_run(session: Session, principal: Principal, connection_id: str, run_id: str) -> ExportRun:
    conn = visible_connection(session, principal, connection_id)
    run = session.get(ExportRun, run_id.lower()) if access.is_uuid(run_id) else None
    if run is None or run.connection_id != conn.id:
        raise ConnectionNotFound("Requested Run is not available.")
    return run


def list_runs(
    session: Session, principal: Principal, connection_id: str, params: Mapping[str, str]
) -> Page[ExportRun]:
    details: list[ErrorDetail] = []
    paging = parse_paging(params, details, default_top=100, max_top=1000)
    if details:
        raise invalid_export_connection(*details)
    conn = visible_connection(session, principal, connection_id)
    stmt = (
        select(ExportRun)
        .where(ExportRun.connection_id == conn.id)
        .order_by(ExportRun.created_at.desc(), ExportRun.id)
    )
    return fetch_page(session, stmt, paging)


# --------------------------------------------------------------------------------------------- wire


def connection_wire(conn: ExportConnection, base: str) -> dict[str, Any]:
    links: dict[str, Any] = {
        "iModel": {"href": f"{base}/imodels/{conn.imodel_id}"},
        "iTwin": {"href": f"{base}/itwins/{conn.itwin_id}"},
    }
    if conn.last_run_id:
        links["lastRun"] = {"href": f"{base}/export/connections/{conn.id}/runs/{conn.last_run_id}"}
    return {
        "id": conn.id,
        "displayName": conn.display_name,
        "iModelId": conn.imodel_id,
        "iTwinId": conn.itwin_id,
        "authenticationType": conn.authentication_type,
        "_links": links,
    }


def run_location(base: str, run: ExportRun) -> str:
    return f"{base}/export/connections/{run.connection_id}/runs/{run.id}"


def run_wire(run: ExportRun, output_href: str | None) -> dict[str, Any]:
    """The platform's run: one job with one task. The task carries twinbase's additions: ``progress``
    while it works, ``stats`` when it ended, and ``_links.output`` (a signed download link)."""
    start = iso(run.started_at) if run.started_at else None
    end = iso(run.ended_at) if run.ended_at else None
    task: dict[str, Any] = {
        "id": run.task_id,
        "startDateTime": start,
        "endDateTime": end,
        "retryAttempts": run.retry_attempts,
        "state": run.state,
        "result": run.result,
        "exportOutputFileId": run.id if run.output_key else None,
    }
    if run.progress is not None and run.state != COMPLETED:
        task["progress"] = run.progress
    if run.error:
        task["error"] = run.error
    if run.stats:
        task["stats"] = run.stats
    if output_href:
        task["_links"] = {"output": {"href": output_href, "fileName": run.output_name}}
    inputs: dict[str, Any] = {"changesetId": run.changeset_id}
    if run.model_ids is not None:
        inputs["modelIds"] = list(run.model_ids)
    return {
        "id": run.id,
        "connectionId": run.connection_id,
        "startDateTime": start or iso(run.created_at),
        "endDateTime": end,
        "state": run.state,
        "result": run.result,
        "exportType": run.export_type,
        "ifcVersion": run.ifc_version,
        "inputOptions": inputs,
        "jobs": [
            {
                "id": run.job_id,
                "startDateTime": start,
                "endDateTime": end,
                "state": run.state,
                "result": run.result,
                "tasks": [task],
            }
        ],
    }


def output_href(blobs: BlobStore, lifetime: int, base: str, run: ExportRun) -> str | None:
    if run.state != COMPLETED or not run.output_key or run.result not in (SUCCESS, PARTIAL):
        return None
    return blobs.presign(run.output_key, "r", lifetime, base)


# ---------------------------------------------------------------------------------------------- job

Writer = Callable[..., dict[str, Any]]


class RunFailed(Exception):
    """The run cannot succeed; ``code`` and the message go into the task's ``error``."""

    def __init__(self, code: str, message: str, *, can_user_fix: bool = True) -> None:
        super().__init__(message)
        self.code = code
        self.can_user_fix = can_user_fix


class RunGone(BaseException):
    """The run (or its connection) was deleted while it worked. A ``BaseException`` so that no
    ``except Exception`` on the way swallows it."""


def load_writer() -> Writer:
    try:
        module = importlib.import_module(WRITER_MODULE)
    except ImportError as exc:
        raise RunFailed(
            "WriterUnavailable",
            f"The IFC writer could not be loaded on this server: {exc}",
            can_user_fix=False,
        ) from exc
    writer = getattr(module, "write_ifc", None)
    if not callable(writer):
        raise RunFailed("WriterUnavailable", "The IFC writer has no write_ifc function.", can_user_fix=False)
    return cast(Writer, writer)


def _error(code: str, message: str, *, phase: str, can_user_fix: bool) -> dict[str, Any]:
    return {
        "errorCode": code,
        "message": message,
        "details": None,
        "system": "twinbase",
        "phase": phase,
        "category": "UserError" if can_user_fix else "SystemError",
        "canUserFix": can_user_fix,
    }


@dataclass(frozen=True)
class _Work:
    run_id: str
    imodel_id: str
    itwin_id: str
    run_as: str
    authentication: str
    changeset_id: str
    changeset_index: int
    ifc_version: str
    model_ids: list[str] | None
    options_key: str
    name: str
    clock: float


def _fenced_run(session: Session, ctx: JobContext | None, run_id: str) -> ExportRun:
    if ctx is not None:
        ctx.fence(session)
    run = session.get(ExportRun, run_id, with_for_update=True)
    if run is None or run.active_slot != 1:
        raise RunGone()
    return run


def _begin(svc: RunServices, run_id: str, ctx: JobContext | None) -> _Work | None:
    with svc.db.write() as session:
        if ctx is not None:
            ctx.fence(session)
        run = session.get(ExportRun, run_id, with_for_update=True)
        if run is None or run.active_slot != 1:
            return None  # deleted, or a re-delivered job whose run already ended
        conn = session.get(ExportConnection, run.connection_id)
        if conn is None:
            return None
        run.state = EXECUTING
        run.started_at = run.started_at or utcnow()
        run.retry_attempts = max(0, (ctx.attempt if ctx is not None else 1) - 1)
        run.progress = 0.0
        run.error = None
        imodel = session.get(IModel, run.imodel_id)
        return _Work(
            run_id=run.id,
            imodel_id=run.imodel_id,
            itwin_id=run.itwin_id,
            run_as=run.run_as,
            authentication=conn.authentication_type,
            changeset_id=run.changeset_id,
            changeset_index=run.changeset_index,
            ifc_version=run.ifc_version,
            model_ids=list(run.model_ids) if run.model_ids is not None else None,
            options_key=run.options_key,
            name=imodel.name if imodel is not None else conn.display_name,
            clock=time.monotonic(),
        )


def _check_access(svc: RunServices, work: _Work) -> None:
    """What must still hold when the run works: the iModel exists, and a User connection's user may
    still read it."""
    with svc.db.read() as session:
        if session.get(IModel, work.imodel_id) is None:
            raise RunFailed("IModelNotFound", "The iModel was deleted; there is nothing to export.")
        if work.authentication == "User":
            perms = _permissions(session, work.itwin_id, work.run_as)
            if perms is None or access.IMODELS_READ not in perms:
                raise RunFailed(
                    "InsufficientPermissions",
                    "The user who started the run can no longer read the iModel (imodels_read); "
                    "ask an iTwin administrator for access, or use a Service connection.",
                )


def _file_name(name: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "imodel"
    return f"{safe[:120]}.ifc"


def _reusable(svc: RunServices, work: _Work) -> ExportRun | None:
    with svc.db.read() as session:
        previous = session.scalar(
            select(ExportRun)
            .where(
                ExportRun.imodel_id == work.imodel_id,
                ExportRun.changeset_id == work.changeset_id,
                ExportRun.options_key == work.options_key,
                ExportRun.state == COMPLETED,
                ExportRun.result.in_((SUCCESS, PARTIAL)),
                ExportRun.output_key.is_not(None),
                ExportRun.id != work.run_id,
            )
            .order_by(ExportRun.ended_at.desc())
            .limit(1)
        )
        if previous is not None:
            session.expunge(previous)
        return previous


class _Progress:
    def __init__(self, svc: RunServices, work: _Work, ctx: JobContext | None) -> None:
        self.svc, self.work, self.ctx = svc, work, ctx
        self.last = 0.0

    def __call__(self, fraction: float, message: str = "") -> None:
        value = 0.1 + 0.8 * min(1.0, max(0.0, float(fraction)))
        if self.ctx is not None:
            self.ctx.progress(value, message or None)
        if time.monotonic() - self.last >= 1.0:
            self.last = time.monotonic()
            with self.svc.db.write(invalidates_reads=False) as session:
                _fenced_run(session, self.ctx, self.work.run_id).progress = round(value, 4)


def _produce(
    svc: RunServices, work: _Work, ctx: JobContext | None, writer: Writer | None, out: Path
) -> dict[str, Any]:
    write = writer or load_writer()
    with svc.db.read() as session:
        try:
            the_plan = checkpoints.plan(session, work.imodel_id, work.changeset_index)
        except checkpoints.CheckpointUnmakeable as exc:
            raise RunFailed(
                "IModelFileUnavailable", f"The iModel's file at this changeset cannot be made: {exc}."
            ) from exc
    bim = out.with_suffix(".bim")
    if ctx is not None:
        ctx.progress(0.0, "Making the iModel's file")
    try:
        checkpoints.build_file(svc, the_plan, bim, ctx)
    except (ChangesetFormatError, BimFormatError) as exc:
        raise RunFailed("IModelFileUnreadable", f"The iModel's file cannot be made: {exc}") from exc
    module = importlib.import_module(WRITER_MODULE) if writer is None else None
    writer_error: type[Exception] = getattr(module, "IfcExportError", RunFailed) if module else RunFailed
    models = {int(m, 16) for m in work.model_ids} if work.model_ids is not None else None
    try:
        stats = write(
            bim, out, ifc_version=work.ifc_version, model_ids=models, progress=_Progress(svc, work, ctx)
        )
    except writer_error as exc:
        if isinstance(exc, RunFailed):
            raise
        raise RunFailed("IfcExportFailed", str(exc)) from exc
    finally:
        bim.unlink(missing_ok=True)
    if not out.exists():
        raise RunFailed("IfcExportFailed", "The IFC writer wrote no file.", can_user_fix=False)
    return stats


def _jsonable(value: Any) -> dict[str, Any]:
    data = orjson.loads(
        orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS, default=str)
    )
    return data if isinstance(data, dict) else {}


def _finish(
    svc: RunServices,
    work: _Work,
    ctx: JobContext | None,
    *,
    result: str,
    stats: dict[str, Any] | None = None,
    error: dict[str, Any] | None = None,
    output: tuple[str, str, int] | None = None,
) -> None:
    with svc.db.write() as session:
        run = _fenced_run(session, ctx, work.run_id)
        run.state = COMPLETED
        run.result = result
        run.active_slot = None
        run.ended_at = utcnow()
        run.progress = None
        run.stats = stats
        run.error = error
        if output is not None:
            run.output_key, run.output_name, run.output_size = output


RETRYABLE = (BlobNotFound, ServiceUnavailable)


def run_export(
    svc: RunServices, run_id: str, ctx: JobContext | None = None, *, writer: Writer | None = None
) -> dict[str, Any] | None:
    """The ``export_run`` job: make the iModel's file at the run's changeset, write the IFC, store it.
    Whatever ends the run early, its output is deleted; a task error says what a user can do."""
    work = _begin(svc, run_id, ctx)
    if work is None:
        return None
    key = blob_keys.export_run_output(work.run_id, _file_name(work.name))
    stored = False
    try:
        _check_access(svc, work)
        previous = _reusable(svc, work)
        if previous is not None and previous.output_key:
            try:
                info = svc.blobs.copy(previous.output_key, key)
            except BlobNotFound:
                previous = None  # its file is gone: write it again
            else:
                stored = True
                stats = dict(previous.stats or {})
                stats["reusedFromRunId"] = previous.id
                _finish(
                    svc,
                    work,
                    ctx,
                    result=previous.result,
                    stats=stats,
                    output=(key, _file_name(work.name), info.size),
                )
                return {"result": previous.result, "reused": previous.id}
        with scratch(svc.settings.data_dir, "ifc") as tmp:
            out = Path(tmp) / "export.ifc"
            produced = _jsonable(_produce(svc, work, ctx, writer, out))
            with svc.db.write() as session:
                run = _fenced_run(session, ctx, work.run_id)
                run.state = FINALIZING
                run.progress = 0.95
            if ctx is not None:
                ctx.raise_if_cancelled()
            info = svc.blobs.upload_from(key, out)
            stored = True
        produced["seconds"] = round(time.monotonic() - work.clock, 3)
        failed = int(produced.get("elementsWithErrors", 0) or 0) + sum(
            int(v) for v in (produced.get("fallbacks") or {}).values() if isinstance(v, int)
        )
        result = PARTIAL if failed else SUCCESS
        _finish(svc, work, ctx, result=result, stats=produced, output=(key, _file_name(work.name), info.size))
        return {"result": result}
    except RunGone:
        if stored:
            delete_outputs(svc.blobs, [key])
        return {"result": "deleted"}
    except (JobInterrupted, *RETRYABLE):
        if stored:
            delete_outputs(svc.blobs, [key])
        raise
    except Exception as exc:
        if stored:
            delete_outputs(svc.blobs, [key])
        if isinstance(exc, RunFailed):
            error = _error(exc.code, str(exc), phase="Export", can_user_fix=exc.can_user_fix)
        else:
            log.warning(
                "export run failed", exc_info=exc, extra={"action": "export_run_failed", "run": run_id}
            )
            error = _error(
                "ExportFailed",
                f"The export failed: {type(exc).__name__}: {exc}",
                phase="Export",
                can_user_fix=False,
            )
        try:
            _finish(svc, work, ctx, result=ERROR, error=error)
        except RunGone:
            return {"result": "deleted"}
        return {"result": ERROR}


def run_failed(session: Session, payload: Mapping[str, Any], message: str) -> None:
    """The job gave up (its worker kept dying): the run ends with an error."""
    run = session.get(ExportRun, str(payload["run_id"]), with_for_update=True)
    if run is None or run.active_slot != 1:
        return
    run.state = COMPLETED
    run.result = ERROR
    run.active_slot = None
    run.ended_at = utcnow()
    run.progress = None
    run.error = _error(
        "ExportFailed", f"The export job failed: {message}"[:2000], phase="Export", can_user_fix=False
    )


def register(svc: RunServices) -> None:
    """Register the ``export_run`` job kind (CPU-heavy: ``twinbase worker`` processes may take it)."""

    def handler(ctx: JobContext) -> dict[str, Any] | None:
        return run_export(svc, str(ctx.payload["run_id"]), ctx)

    def failed(session: Session, payload: Mapping[str, Any], error: str) -> None:
        run_failed(session, payload, error)

    svc.jobs.register(JOB_KIND, handler, on_failure=failed, cpu_heavy=True)
