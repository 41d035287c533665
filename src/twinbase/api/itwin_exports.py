"""HTTP for iTwins export jobs: ``/itwins/exports`` and the per-iTwin alias ``/itwins/{iTwinId}/exports``.

This router is included before the iTwins router, so the literal ``/itwins/exports`` paths win over
``/itwins/{itwin_id}``.
"""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from twinbase.api import schemas as s
from twinbase.api.deps import Context, Ctx
from twinbase.api.http import JSON, parse_body
from twinbase.api.openapi import Op, api_docs
from twinbase.api.routing import Body, both
from twinbase.domain import itwin_exports as domain
from twinbase.store.models import ITwinExport

router = APIRouter()


def _wire(ctx: Context, export: ITwinExport) -> dict[str, object]:
    url = ctx.svc.signed_url(ctx.base, export.output_key) if export.output_key else None
    return domain.to_wire(export, url)


def _create(ctx: Context, raw: bytes, itwin_id: str | None) -> Response:
    body = parse_body(raw, domain.ExportBody, code=domain.INVALID, message=domain.QUERY_MESSAGE)
    with ctx.svc.db.write() as session:
        export = domain.create(
            session, ctx.svc.jobs, ctx.principal, body, base_url=ctx.base, itwin_id=itwin_id
        )
        wire = _wire(ctx, export)
    ctx.svc.jobs.wake()
    return JSON({"export": wire}, status_code=201)


def _list(ctx: Context, itwin_id: str | None) -> Response:
    with ctx.svc.db.read() as session:
        rows = domain.list_mine(session, ctx.principal, ctx.svc.settings, itwin_id=itwin_id)
        return JSON({"exports": [_wire(ctx, r) for r in rows]})


def _get(ctx: Context, export_id: str, itwin_id: str | None) -> Response:
    with ctx.svc.db.read() as session:
        export = domain.get_mine(session, ctx.principal, ctx.svc.settings, export_id, itwin_id=itwin_id)
        return JSON({"export": _wire(ctx, export)})


@both(router, "/itwins/exports", ["POST"])
def create_export(ctx: Ctx, raw: Body) -> Response:
    return _create(ctx, raw, None)


@both(router, "/itwins/exports", ["GET"])
def list_exports(ctx: Ctx) -> Response:
    return _list(ctx, None)


@both(router, "/itwins/exports/{export_id}", ["GET"])
def get_export(ctx: Ctx, export_id: str) -> Response:
    return _get(ctx, export_id, None)


@both(router, "/itwins/{itwin_id}/exports", ["POST"])
def create_itwin_export(ctx: Ctx, itwin_id: str, raw: Body) -> Response:
    return _create(ctx, raw, itwin_id)


@both(router, "/itwins/{itwin_id}/exports", ["GET"])
def list_itwin_exports(ctx: Ctx, itwin_id: str) -> Response:
    return _list(ctx, itwin_id)


@both(router, "/itwins/{itwin_id}/exports/{export_id}", ["GET"])
def get_itwin_export(ctx: Ctx, itwin_id: str, export_id: str) -> Response:
    return _get(ctx, export_id, itwin_id)


DOCS = api_docs(
    (
        create_export,
        Op("Export my iTwins as JSON or CSV", s.ITwinExportAnswer, status=201, body=domain.ExportBody),
    ),
    (list_exports, Op("List my iTwin exports", s.ITwinExportList)),
    (get_export, Op("Get an iTwin export", s.ITwinExportAnswer)),
    (
        create_itwin_export,
        Op("Export my iTwins (iTwin-scoped alias)", s.ITwinExportAnswer, status=201, body=domain.ExportBody),
    ),
    (list_itwin_exports, Op("List my iTwin exports (iTwin-scoped alias)", s.ITwinExportList)),
    (get_itwin_export, Op("Get an iTwin export (iTwin-scoped alias)", s.ITwinExportAnswer)),
)
