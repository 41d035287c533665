"""iTwins export jobs (reference B.5): a query over the caller's iTwins, written to a file in the blob store.

``POST /itwins/exports`` validates the request, stores an ``ITwinExport`` row and enqueues a durable
``itwin_export`` job in the same transaction. The job handler (``register``) runs the query as the
creator, streams the selected properties batch by batch into ``itwin-exports/{id}.{ext}`` (JSON or CSV,
gzip or zip) and marks the export ``Completed`` (or ``Failed``). The ``request`` column keeps the six
request fields exactly as they were sent, plus ``$iTwinId`` for the per-iTwin alias route; everything
else (canonical values, the SQL) is derived from it again when the job runs.

Functions that take a session never commit; the handler owns its own transactions.
"""

from __future__ import annotations

import csv
import io
import logging
import time
import zipfile
import zlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal, Protocol, cast

import orjson
from pydantic import BaseModel, ConfigDict, StrictBool, StrictStr
from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session

from twinbase.domain import access
from twinbase.domain import itwins as itwins_domain
from twinbase.domain.odata import FilterSyntaxError, UnknownProperty, compile_filter
from twinbase.errors import ErrorDetail, ExportNotFound, InvalidRequest, invalid_value, missing_property
from twinbase.identity.tokens import Principal
from twinbase.jobs.context import JobContext
from twinbase.jobs.queue import JobQueue
from twinbase.settings import Settings
from twinbase.store.blobs import BlobStore
from twinbase.store.blobs import keys as blob_keys
from twinbase.store.db import Database
from twinbase.store.models import ITwin, ITwinExport, utcnow

log = logging.getLogger("twinbase.exports")

JOB_KIND = "itwin_export"
INVALID = itwins_domain.INVALID
QUERY_MESSAGE = "Cannot query iTwins."
BATCH_ROWS = 500

OutputFormat = Literal["JsonGZip", "JsonZipArchive", "CsvGZip", "Csv"]
OUTPUT_FORMATS: tuple[OutputFormat, ...] = ("JsonGZip", "JsonZipArchive", "CsvGZip", "Csv")
EXTENSIONS: dict[OutputFormat, str] = {
    "JsonGZip": "json.gz",
    "JsonZipArchive": "zip",
    "CsvGZip": "csv.gz",
    "Csv": "csv",
}
QUERY_SCOPES: dict[str, itwins_domain.QueryScope] = {
    "MemberOfiTwin": "memberOfItwin",
    "OrganizationAdmin": "OrganizationAdmin",
}
# What the client documents as the export's default: the minimal iTwin without iTwinAccountId.
DEFAULT_SELECT: tuple[str, ...] = ("id", "class", "subClass", "type", "number", "displayName")
REQUEST_FIELDS = ("queryScope", "subClass", "select", "filter", "includeInactive", "outputFormat")
ITWIN_KEY = "$iTwinId"  # internal: the per-iTwin alias route's restriction, never on the wire

Status = Literal["Queued", "InProgress", "Completed", "Failed"]


class ExportServices(Protocol):
    """What the job handler needs from ``api.deps.Services`` (kept structural: domain does not import api)."""

    settings: Settings
    db: Database
    blobs: BlobStore
    jobs: JobQueue

    def signed_url(self, base: str, key: str) -> str: ...


class ExportBody(BaseModel):
    """The request body; only types here, values are checked by ``parse_request`` with wire messages."""

    model_config = ConfigDict(extra="ignore")

    queryScope: StrictStr | None = None
    subClass: StrictStr | None = None
    select: StrictStr | None = None
    filter: StrictStr | None = None
    includeInactive: StrictBool | None = None
    outputFormat: StrictStr


@dataclass(frozen=True)
class ExportSpec:
    """A validated request in canonical form."""

    output_format: OutputFormat
    scope: itwins_domain.QueryScope
    sub_classes: list[str]
    select: list[str]
    filter: str | None
    include_inactive: bool
    itwin_id: str | None = None

    def query(self) -> itwins_domain.ITwinQuery:
        return itwins_domain.ITwinQuery(
            sub_classes=list(self.sub_classes),
            filter=self.filter,
            include_inactive=self.include_inactive,
            scope=self.scope,
        )


def _canonical(value: str, allowed: Iterable[str]) -> str | None:
    for candidate in allowed:
        if candidate.lower() == value.strip().lower():
            return candidate
    return None


def normalize_filter(text: str) -> str:
    """The client's documented filters use ``+`` for spaces (``status+eq+'Active'``): read them as spaces
    outside string literals. Same length, so syntax-error positions still point into the original."""
    out = []
    quoted = False
    for ch in text:
        if ch == "'":
            quoted = not quoted
        out.append(" " if ch == "+" and not quoted else ch)
    return "".join(out)


def parse_request(request: dict[str, Any]) -> ExportSpec:
    """Validate the stored/sent request fields; every problem is a 422 ``InvalidiTwinsRequest`` detail."""
    details: list[ErrorDetail] = []
    raw_format = request.get("outputFormat")
    output_format: OutputFormat = "JsonGZip"
    if raw_format is None:
        details.append(missing_property("outputFormat"))
    else:
        found = _canonical(str(raw_format), OUTPUT_FORMATS)
        if found is None:
            details.append(
                invalid_value(
                    "outputFormat",
                    f"Provided 'outputFormat' value '{raw_format}' is not valid; "
                    f"use one of {', '.join(OUTPUT_FORMATS)}.",
                )
            )
        else:
            output_format = cast(OutputFormat, found)
    scope: itwins_domain.QueryScope = "memberOfItwin"
    raw_scope = request.get("queryScope")
    if raw_scope is not None:
        found = _canonical(str(raw_scope), QUERY_SCOPES)
        if found is None:
            details.append(
                invalid_value(
                    "queryScope",
                    f"Provided 'queryScope' value '{raw_scope}' is not valid; "
                    "use MemberOfiTwin or OrganizationAdmin.",
                )
            )
        else:
            scope = QUERY_SCOPES[found]
    sub_classes: list[str] = []
    for part in str(request.get("subClass") or "").split(","):
        if not part.strip():
            continue
        found = _canonical(part, itwins_domain.SUBCLASSES)
        if found is None:
            details.append(
                invalid_value("subClass", f"Provided 'subClass' value '{part.strip()}' is not valid.")
            )
        elif found not in sub_classes:
            sub_classes.append(found)
    selected: list[str] = []
    for part in str(request.get("select") or "").split(","):
        name = part.strip()
        if not name:
            continue
        if name not in itwins_domain.WIRE_FIELDS:
            details.append(
                invalid_value("$select", f"The $select string contains an unknown property '{name}'.")
            )
            break  # like the list API: the first unknown property is reported
        if name not in selected:
            selected.append(name)
    filter_text = request.get("filter") or None
    syntax_error: FilterSyntaxError | None = None
    if filter_text is not None:
        filter_text = str(filter_text)
        try:
            compile_filter(normalize_filter(filter_text), itwins_domain.FILTER_COLUMNS)
        except FilterSyntaxError as exc:
            syntax_error = FilterSyntaxError(exc.position, filter_text)
            details.append(invalid_value("$filter", str(syntax_error)))
        except UnknownProperty as exc:
            details.append(invalid_value("$filter", str(exc)))
    if details:
        # A filter syntax error alone is reported with its own message, as the platform does.
        message = str(syntax_error) if syntax_error is not None and len(details) == 1 else QUERY_MESSAGE
        raise InvalidRequest(message, code=INVALID, details=details)
    itwin_id = request.get(ITWIN_KEY)
    return ExportSpec(
        output_format=output_format,
        scope=scope,
        sub_classes=sub_classes,
        select=selected or list(DEFAULT_SELECT),
        filter=normalize_filter(filter_text) if filter_text else None,
        include_inactive=bool(request.get("includeInactive")),
        itwin_id=str(itwin_id) if itwin_id else None,
    )


# ------------------------------------------------------------------------------------------ requests


def create(
    session: Session,
    jobs: JobQueue,
    principal: Principal,
    body: ExportBody,
    *,
    base_url: str,
    itwin_id: str | None = None,
) -> ITwinExport:
    """Record the export and enqueue its job in the caller's transaction. ``itwin_id``: the alias route."""
    if itwin_id is not None:
        itwins_domain.get_visible(session, itwin_id, principal.user_id)
    sent = body.model_dump(exclude_unset=True)
    request = {k: sent[k] for k in REQUEST_FIELDS if k in sent}  # verbatim, in a stable order
    parse_request(request)
    if itwin_id is not None:
        request[ITWIN_KEY] = itwin_id
    export = ITwinExport(
        user_id=principal.user_id,
        client_id=principal.client_id,
        request=request,
        status="Queued",
        created_at=utcnow(),
    )
    session.add(export)
    session.flush()
    jobs.enqueue(session, JOB_KIND, {"export_id": export.id, "base_url": base_url})
    return export


def _cutoff(settings: Settings) -> Any:
    return utcnow() - timedelta(seconds=settings.export_retention_seconds)


def list_mine(
    session: Session, principal: Principal, settings: Settings, *, itwin_id: str | None = None
) -> list[ITwinExport]:
    """The caller's (same user, same client) exports of the retention period, newest first."""
    if itwin_id is not None:
        itwins_domain.get_visible(session, itwin_id, principal.user_id)
    rows = session.scalars(
        select(ITwinExport)
        .where(
            ITwinExport.user_id == principal.user_id,
            ITwinExport.client_id == principal.client_id,
            ITwinExport.created_at >= _cutoff(settings),
        )
        .order_by(ITwinExport.created_at.desc(), ITwinExport.id.desc())
    )
    # The alias restriction lives in the JSON request column; filter it here, portably across backends.
    return [r for r in rows if itwin_id is None or (r.request or {}).get(ITWIN_KEY) == itwin_id]


def get_mine(
    session: Session, principal: Principal, settings: Settings, export_id: str, *, itwin_id: str | None = None
) -> ITwinExport:
    """One export; anyone but its creator (same user and client), or an expired one, is 404."""
    if itwin_id is not None:
        itwins_domain.get_visible(session, itwin_id, principal.user_id)
    export = session.get(ITwinExport, export_id) if access.is_uuid(export_id) else None
    if (
        export is None
        or export.user_id != principal.user_id
        or export.client_id != principal.client_id
        or export.created_at < _cutoff(settings)
        or (itwin_id is not None and (export.request or {}).get(ITWIN_KEY) != itwin_id)
    ):
        raise ExportNotFound()
    return export


def to_wire(export: ITwinExport, output_url: str | None) -> dict[str, Any]:
    return {
        "id": export.id,
        "request": {k: v for k, v in (export.request or {}).items() if k in REQUEST_FIELDS},
        "status": export.status,
        "outputUrl": output_url if export.status == "Completed" else None,
        "createdBy": export.user_id,
        "createdDateTime": itwins_domain.iso(export.created_at),
        "startedDateTime": itwins_domain.iso(export.started_at),
        "completedDateTime": itwins_domain.iso(export.completed_at),
    }


# ------------------------------------------------------------------------------------------- output


def output_key(export_id: str, output_format: OutputFormat) -> str:
    return blob_keys.itwin_export_output(export_id, EXTENSIONS[output_format])


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _json_chunks(batches: Iterable[list[dict[str, Any]]]) -> Iterator[bytes]:
    yield b'{"iTwins":['
    first = True
    for batch in batches:
        parts = []
        for row in batch:
            parts.append(orjson.dumps(row) if first else b"," + orjson.dumps(row))
            first = False
        if parts:
            yield b"".join(parts)
    yield b"]}"


def _csv_chunks(batches: Iterable[list[dict[str, Any]]], columns: list[str]) -> Iterator[bytes]:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(columns)
    for batch in batches:
        for row in batch:
            writer.writerow([_cell(row.get(c)) for c in columns])
        yield buf.getvalue().encode("utf-8")
        buf.seek(0)
        buf.truncate()
    yield buf.getvalue().encode("utf-8")


def _gzip(chunks: Iterable[bytes]) -> Iterator[bytes]:
    comp = zlib.compressobj(6, zlib.DEFLATED, 31)  # wbits 31: gzip container
    for chunk in chunks:
        out = comp.compress(chunk)
        if out:
            yield out
    yield comp.flush()


class _Sink:
    """A write-only, non-seekable file for ``zipfile``: what it is given is handed on as chunks."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    def take(self) -> bytes:
        out = b"".join(self.parts)
        self.parts.clear()
        return out


def _zip(chunks: Iterable[bytes], member: str) -> Iterator[bytes]:
    sink = _Sink()
    info = zipfile.ZipInfo(member, date_time=time.gmtime()[:6])
    info.compress_type = zipfile.ZIP_DEFLATED
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        # Size unknown up front: zip64 headers, so outputs over 4 GiB stay valid.
        with archive.open(info, "w", force_zip64=True) as entry:
            for chunk in chunks:
                entry.write(chunk)
                out = sink.take()
                if out:
                    yield out
        out = sink.take()
        if out:
            yield out
    yield sink.take()


def encode(
    output_format: OutputFormat, batches: Iterable[list[dict[str, Any]]], columns: list[str]
) -> Iterator[bytes]:
    """The export file as a stream of chunks, one batch of rows at a time."""
    if output_format == "JsonGZip":
        return _gzip(_json_chunks(batches))
    if output_format == "JsonZipArchive":
        return _zip(_json_chunks(batches), "iTwins.json")
    if output_format == "CsvGZip":
        return _gzip(_csv_chunks(batches, columns))
    return _csv_chunks(batches, columns)


def query_rows(session: Session, user_id: str, spec: ExportSpec) -> Iterator[ITwin]:
    """The iTwins the export covers, streamed from the database in batches."""
    stmt = itwins_domain.apply_query(
        select(ITwin).where(itwins_domain._visible_ids(user_id, spec.scope)), spec.query()
    )
    if spec.itwin_id is not None:
        stmt = stmt.where(or_(ITwin.id == spec.itwin_id, ITwin.parent_id == spec.itwin_id))
    stmt = stmt.order_by(ITwin.created_at.desc(), ITwin.id).execution_options(yield_per=BATCH_ROWS)
    yield from session.scalars(stmt)


def _batches(rows: Iterable[ITwin], spec: ExportSpec, image_url: Any) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    want_image = "image" in spec.select
    for itwin in rows:
        url = image_url(itwin) if want_image else None
        batch.append(
            itwins_domain.to_wire(itwin, mode="representation", image_url=url, select_fields=spec.select)
        )
        if len(batch) >= BATCH_ROWS:
            yield batch
            batch = []
    if batch:
        yield batch


# -------------------------------------------------------------------------------------------- the job


def register(svc: ExportServices) -> None:
    """Register the export job handler with the service's job queue."""

    def handler(ctx: JobContext) -> None:
        run_export(svc, str(ctx.payload["export_id"]), str(ctx.payload.get("base_url") or ""), ctx)

    svc.jobs.register(JOB_KIND, handler, on_failure=export_failed)


def export_failed(session: Session, payload: Mapping[str, Any], error: str) -> None:
    """The job gave up without recording an outcome (its worker kept dying): the export ``Failed``."""
    export = session.get(ITwinExport, str(payload["export_id"]))
    if export is not None and export.status not in ("Completed", "Failed"):
        export.status = "Failed"
        export.error = error[:2000]  # kept for operators, never on the wire
        export.completed_at = utcnow()


def run_export(svc: ExportServices, export_id: str, base_url: str, ctx: JobContext | None = None) -> None:
    """The job. Its writes are fenced by the job's claim (``ctx``; None when called directly)."""
    with svc.db.write() as session:
        if ctx is not None:
            ctx.fence(session)
        export = session.get(ITwinExport, export_id)
        if export is None or export.status in ("Completed", "Failed"):
            return  # deleted, or a re-delivered job that already finished
        export.status = "InProgress"
        export.started_at = export.started_at or utcnow()
        user_id = export.user_id
        request = dict(export.request or {})
    key: str | None = None
    try:
        spec = parse_request(request)
        key = output_key(export_id, spec.output_format)

        def image_url(itwin: ITwin) -> str | None:
            name = itwins_domain.image_name(itwin, "l")
            if not name or not base_url:
                return None
            return svc.signed_url(base_url, blob_keys.itwin_image(itwin.id, name))

        if ctx is not None:
            ctx.progress(0.1, "Writing the export file")
        with svc.db.read() as session:
            rows = query_rows(session, user_id, spec)
            svc.blobs.put(key, encode(spec.output_format, _batches(rows, spec, image_url), spec.select))
        with svc.db.write() as session:
            if ctx is not None:
                ctx.fence(session)
            export = session.get(ITwinExport, export_id)
            if export is None:
                svc.blobs.delete(key)
                return
            export.status = "Completed"
            export.output_key = key
            export.completed_at = utcnow()
    except Exception as exc:
        log.warning(
            "iTwin export failed", exc_info=exc, extra={"action": "itwin_export_failed", "export": export_id}
        )
        if key is not None:
            svc.blobs.delete(key)
        with svc.db.write() as session:
            if ctx is not None:
                ctx.fence(session)
            export = session.get(ITwinExport, export_id)
            if export is not None:
                export.status = "Failed"
                export.error = f"{type(exc).__name__}: {exc}"[:2000]  # kept for operators, never on the wire
                export.completed_at = utcnow()
    purge_expired(svc)


def purge_expired(svc: ExportServices, limit: int = 100) -> int:
    """Delete finished exports older than the retention period, rows first, then their files."""
    with svc.db.write() as session:
        rows = list(
            session.execute(
                select(ITwinExport.id, ITwinExport.output_key)
                .where(
                    ITwinExport.created_at < _cutoff(svc.settings),
                    ITwinExport.status.in_(("Completed", "Failed")),
                )
                .limit(limit)
            )
        )
        if rows:
            session.execute(delete(ITwinExport).where(ITwinExport.id.in_([r.id for r in rows])))
    for row in rows:
        if row.output_key:
            try:
                svc.blobs.delete(row.output_key)
            except OSError:
                log.warning("could not delete expired export", extra={"action": "export_purge_failed"})
    return len(rows)
