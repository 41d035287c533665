"""HTTP for the Export API (seed 004, reference §C): ``/export/connections`` and their ``runs``, and
``/export/authorizationinformation``.

A start answers 202 with the new run's ``Location``, or 303 See Other with the active run's when the
connection already has one (409 for the loser of two simultaneous starts). A run's one task links its
output file (``_links.output.href``, a signed download link: the blob service's SAS on Azure).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from starlette.responses import Response

from twinbase.api import schemas as s
from twinbase.api.deps import Context, Ctx
from twinbase.api.http import JSON, collection, json_object, no_content
from twinbase.api.openapi import SKIP, Op, Param, api_docs, string, top
from twinbase.api.routing import Body, both, query_params
from twinbase.domain import export_connections as domain
from twinbase.errors import ErrorDetail, InvalidRequest, invalid_export_connection
from twinbase.store.models import ExportConnection, ExportRun

router = APIRouter()

PATH = "/export/connections"


def _body(raw: bytes) -> dict[str, Any]:
    return json_object(raw, invalid_export_connection, "Error parsing JSON, malformed JSON.")


def _connection(ctx: Context, conn: ExportConnection, status: int = 200) -> Response:
    return JSON({"connection": domain.connection_wire(conn, ctx.base)}, status_code=status)


def _run_wire(ctx: Context, run: ExportRun) -> dict[str, object]:
    lifetime = ctx.svc.settings.signed_url_lifetime_seconds
    return domain.run_wire(run, domain.output_href(ctx.svc.blobs, lifetime, ctx.base, run))


@both(router, PATH, ["POST"])
def create_connection(ctx: Ctx, raw: Body) -> Response:
    request = domain.parse_connection(_body(raw))
    with ctx.svc.db.write() as session:
        conn = domain.create_connection(session, ctx.principal, request)
        return _connection(ctx, conn, 201)


@both(router, PATH, ["GET"])
def list_connections(ctx: Ctx, request: Request) -> Response:
    params = query_params(request)
    with ctx.svc.db.read() as session:
        page = domain.list_connections(session, ctx.principal, params)
        items = [domain.connection_wire(c, ctx.base) for c in page.rows]
    return collection("connections", items, ctx.base, PATH, params, page)


@both(router, PATH + "/{connection_id}", ["GET"])
def get_connection(ctx: Ctx, connection_id: str) -> Response:
    with ctx.svc.db.read() as session:
        return _connection(ctx, domain.visible_connection(session, ctx.principal, connection_id))


@both(router, PATH + "/{connection_id}", ["DELETE"])
def delete_connection(ctx: Ctx, connection_id: str) -> Response:
    with ctx.svc.db.write() as session:
        outputs = domain.delete_connection(session, ctx.svc.jobs, ctx.principal, connection_id)
    domain.delete_outputs(ctx.svc.blobs, outputs)
    return no_content()


@both(router, PATH + "/{connection_id}/runs", ["POST"])
def start_run(ctx: Ctx, connection_id: str, raw: Body) -> Response:
    # An empty body is the defaults (IFC, IFC4 RV 1.2, the latest changeset, every model).
    request = domain.parse_run(_body(raw) if raw.strip() else {})
    with ctx.svc.db.write() as session:
        started = domain.start_run(session, ctx.svc.jobs, ctx.principal, connection_id, request)
        location = domain.run_location(ctx.base, started.run)
    if not started.created:
        return Response(status_code=303, headers={"Location": location})
    ctx.svc.jobs.wake()
    return Response(status_code=202, headers={"Location": location})


@both(router, PATH + "/{connection_id}/runs", ["GET"])
def list_runs(ctx: Ctx, connection_id: str, request: Request) -> Response:
    params = query_params(request)
    with ctx.svc.db.read() as session:
        page = domain.list_runs(session, ctx.principal, connection_id, params)
        items = [_run_wire(ctx, r) for r in page.rows]
    return collection("runs", items, ctx.base, f"{PATH}/{connection_id}/runs", params, page)


@both(router, PATH + "/{connection_id}/runs/{run_id}", ["GET"])
def get_run(ctx: Ctx, connection_id: str, run_id: str) -> Response:
    with ctx.svc.db.read() as session:
        run = domain.visible_run(session, ctx.principal, connection_id, run_id)
        return JSON({"run": _run_wire(ctx, run)})


@both(router, "/export/authorizationinformation", ["GET"])
def authorization_information(ctx: Ctx, request: Request) -> Response:
    """Runs never need a user's stored refresh token here (they run as the starting user, checked by
    twinbase, or as its service identity): every caller is authorized, and the link just sends the
    browser back to ``redirectUrl``."""
    redirect = query_params(request).get("redirectUrl")
    parts = urlsplit(redirect) if redirect else None
    if redirect is not None and (parts is None or parts.scheme not in ("http", "https") or not parts.netloc):
        raise InvalidRequest(
            "Cannot perform operation.",
            code="InvalidAuthorizationInformationRequest",
            details=[ErrorDetail("InvalidValue", "Provided redirectUrl value is not valid.", "$redirectUrl")],
        )
    href = redirect or f"{ctx.base}/export/connections"
    return JSON(
        {
            "authorizationInformation": {
                "isUserAuthorized": True,
                "_links": {"authorizationUrl": {"href": href}},
            }
        }
    )


_PAGE = (top(1000), SKIP)
_RUN_LOCATION = {"Location": "The run: `/export/connections/{connectionId}/runs/{runId}`."}

DOCS = api_docs(
    (
        create_connection,
        Op(
            "Create an export connection", s.ExportConnectionAnswer, status=201, body=s.CreateExportConnection
        ),
    ),
    (
        list_connections,
        Op(
            "List an iModel's export connections",
            s.ExportConnectionList,
            query=(
                Param("imodelId", string(36), "The iModel (required; `iModelId` works too).", required=True),
                *_PAGE,
            ),
        ),
    ),
    (get_connection, Op("Get an export connection", s.ExportConnectionAnswer)),
    (delete_connection, Op("Delete an export connection, its runs and their files", status=204, media=None)),
    (
        start_run,
        Op(
            "Start a run (one export) of a connection",
            status=202,
            media=None,
            body=s.StartExportRun,
            body_required=False,
            headers=_RUN_LOCATION,
            errors=frozenset({409}),
            extra_responses={303: "A run of the connection is active already: `Location` names it."},
        ),
    ),
    (list_runs, Op("List a connection's runs, newest first", s.ExportRunList, query=_PAGE)),
    (get_run, Op("Get a run", s.ExportRunAnswer)),
    (
        authorization_information,
        Op(
            "Whether runs may act for the caller (always: twinbase needs no stored refresh token)",
            s.AuthorizationInformationAnswer,
            query=(Param("redirectUrl", string(2048), "Where the authorization link sends the browser."),),
        ),
    ),
)
