"""HTTP for Mesh Export (reference §A, seeds 000 and 001): ``/mesh-export`` as the platform and its
clients (CesiumJS, frontend-tiles, the Unreal plugin) spell it, and the seed's ``/exports``.

``POST /mesh-export`` answers 202, ``POST /exports`` 201; both answer an equal earlier request's
export. Lists, get and delete are on both paths; ``PATCH`` (rename, new ``tilerConfig``) on
``/exports/{id}``. ``Prefer: return=representation`` adds ``request``, ``stats`` and
``_links.mesh.href`` (a signed folder URL; clients append ``/tileset.json`` to its path).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from starlette.responses import Response

from twinbase.api import schemas as s
from twinbase.api.deps import Context, Ctx
from twinbase.api.http import JSON, collection, json_object, no_content, prefer
from twinbase.api.openapi import PREFER, SKIP, Op, Param, api_docs, enum, integer, string
from twinbase.api.routing import Body, both, query_params
from twinbase.domain import mesh_exports as domain
from twinbase.errors import ErrorDetail, invalid_mesh_export
from twinbase.store.models import MeshExport

router = APIRouter()

HOST_AND_ROOT = "x-api-host-and-root"


def _json_object(raw: bytes, message: str) -> dict[str, Any]:
    """The body as a JSON object; anything else is this API's 422 with an ``InvalidRequestBody`` detail."""
    return json_object(raw, lambda detail: invalid_mesh_export(message, detail))


def _href(ctx: Context, export: MeshExport) -> str | None:
    lifetime = ctx.svc.settings.signed_url_lifetime_seconds
    return domain.mesh_href(ctx.svc.blobs, lifetime, ctx.base, export)


def _wire(ctx: Context, export: MeshExport, mode: domain.Mode) -> dict[str, Any]:
    href = _href(ctx, export) if mode == "representation" else None
    return domain.to_wire(export, mode, href)


def _answer(ctx: Context, export: MeshExport, status: int = 200) -> Response:
    return JSON({"export": _wire(ctx, export, prefer(ctx.request))}, status_code=status)


def _start(ctx: Context, raw: Body, status: int) -> Response:
    request = domain.parse_start(_json_object(raw, domain.CREATE_MESSAGE))
    with ctx.svc.db.write() as session:
        started = domain.start(session, ctx.svc.jobs, ctx.principal, request)
        wire = _wire(ctx, started.export, prefer(ctx.request))
        # Seed 001's answer carries the request even in the minimal shape.
        wire.setdefault("request", domain.request_wire(started.export))
    domain.delete_bundle(ctx.svc.blobs, started.stale_bundle)
    if started.enqueued:
        ctx.svc.jobs.wake()
    return JSON({"export": wire}, status_code=status)


def _links_base(ctx: Context, request: Request) -> str:
    """The prefix of the list's ``self``/``prev``/``next``: ``x-api-host-and-root`` when a gateway sends
    one (reference A.3), else the server's own base. The header must be an absolute http(s) URL with no
    credentials, query or fragment (a path is the root the gateway mounts twinbase under); anything else
    is a 422, so a misconfigured gateway is found at once rather than handing out broken links."""
    raw = request.headers.get(HOST_AND_ROOT)
    if raw is None:
        return ctx.base
    value = raw.strip().rstrip("/")
    valid = False
    try:
        parts = urlsplit(value)
        valid = (
            parts.scheme in ("http", "https")
            and bool(parts.hostname)
            and "@" not in parts.netloc
            and not parts.query
            and not parts.fragment
            and "?" not in value
            and "#" not in value
            and value.isprintable()
            and " " not in value
        )
        parts.port  # noqa: B018 - raises ValueError for a port out of range or not a number
    except ValueError:
        valid = False
    if not valid:
        raise invalid_mesh_export(
            domain.QUERY_MESSAGE,
            ErrorDetail(
                "InvalidHeaderValue",
                f"Header '{HOST_AND_ROOT}' must be an http(s) URL prefix such as https://host/root.",
                HOST_AND_ROOT,
            ),
        )
    return value


def _list(ctx: Context, request: Request, path: str) -> Response:
    params = query_params(request)
    base = _links_base(ctx, request)
    mode = prefer(request)
    with ctx.svc.db.read() as session:
        page = domain.query(session, ctx.principal, params)
        items = [_wire(ctx, export, mode) for export in page.rows]
    return collection("exports", items, base, path, params, page)


def _get(ctx: Context, export_id: str) -> Response:
    with ctx.svc.db.read() as session:
        export = domain.visible_export(session, ctx.principal, export_id)
        return _answer(ctx, export)


def _delete(ctx: Context, export_id: str) -> Response:
    with ctx.svc.db.write() as session:
        bundle = domain.delete(session, ctx.principal, export_id)
    domain.delete_bundle(ctx.svc.blobs, bundle)
    return no_content()


@both(router, "/mesh-export", ["POST"])
def start_mesh_export(ctx: Ctx, raw: Body) -> Response:
    return _start(ctx, raw, 202)


@both(router, "/exports", ["POST"])
def create_export(ctx: Ctx, raw: Body) -> Response:
    return _start(ctx, raw, 201)


@both(router, "/mesh-export", ["GET"])
def list_mesh_exports(ctx: Ctx, request: Request) -> Response:
    return _list(ctx, request, "/mesh-export")


@both(router, "/exports", ["GET"])
def list_exports(ctx: Ctx, request: Request) -> Response:
    return _list(ctx, request, "/exports")


@both(router, "/mesh-export/{export_id}", ["GET"])
def get_mesh_export(ctx: Ctx, export_id: str) -> Response:
    return _get(ctx, export_id)


@both(router, "/exports/{export_id}", ["GET"])
def get_export(ctx: Ctx, export_id: str) -> Response:
    return _get(ctx, export_id)


@both(router, "/exports/{export_id}", ["PATCH"])
def update_export(ctx: Ctx, export_id: str, raw: Body) -> Response:
    request = domain.parse_update(_json_object(raw, domain.UPDATE_MESSAGE))
    with ctx.svc.db.write() as session:
        updated = domain.update(session, ctx.svc.jobs, ctx.principal, export_id, request)
        response = _answer(ctx, updated.export)
    domain.delete_bundle(ctx.svc.blobs, updated.stale_bundle)
    if updated.enqueued:
        ctx.svc.jobs.wake()
    return response


@both(router, "/mesh-export/{export_id}", ["DELETE"])
def delete_mesh_export(ctx: Ctx, export_id: str) -> Response:
    return _delete(ctx, export_id)


@both(router, "/exports/{export_id}", ["DELETE"])
def delete_export(ctx: Ctx, export_id: str) -> Response:
    return _delete(ctx, export_id)


_LIST_QUERY = (
    Param("iModelId", string(36), "Only this iModel's exports (else every export the caller may read)."),
    Param("changesetId", string(64), "Only exports of this changeset."),
    Param("exportType", string(16), "Only this type (case-insensitive): 3DTILES, CESIUM, GLTF, 3TZ, IMODEL."),
    Param("$orderBy", enum("date:asc", "date:desc"), "By lastModified; newest first by default."),
    Param("$top", integer(1, 1000), "Page size."),
    SKIP,
    Param("cdn", string(8), "Ignored (every link is direct)."),
    Param(
        "tileVersion",
        string(32),
        "The highest iMdl major version the frontend reads (frontend-tiles sends it): IMODEL exports of a "
        "higher one are left out; not a whole number: 422.",
    ),
    Param("iTwinJS", string(32), "Ignored (compatibility hint of frontend-tiles)."),
    Param("client", string(64), "Ignored (CesiumJS, Unreal)."),
    Param("clientVersion", string(64), "Ignored."),
    PREFER,
    Param(
        HOST_AND_ROOT,
        string(2048),
        "Prefix of the `self`/`prev`/`next` links instead of the server's base URL (set by a gateway), "
        "e.g. `https://gateway.example/twinbase`; not an http(s) URL prefix: 422.",
        location="header",
    ),
)
_START = (
    "Representation-style answer: `request` is always included (as seed 001 shows); "
    "`Prefer: return=representation` adds `stats` and `_links`. An equal earlier request "
    "(iModel, changeset, type, tilerConfig) answers its export; an Invalid one is retried in place."
)

DOCS = api_docs(
    (
        start_mesh_export,
        Op(
            "Start a mesh export",
            s.MeshExportAnswer,
            status=202,
            body=s.StartMeshExport,
            query=(PREFER,),
            errors=frozenset({403, 404}),
            description=_START,
        ),
    ),
    (
        create_export,
        Op(
            "Start a mesh export (the seed's /exports path)",
            s.MeshExportAnswer,
            status=201,
            body=s.StartMeshExport,
            query=(PREFER,),
            errors=frozenset({403, 404}),
            description=_START,
        ),
    ),
    (
        list_mesh_exports,
        Op("List mesh exports", s.MeshExportList, query=_LIST_QUERY, errors=frozenset({403, 404})),
    ),
    (
        list_exports,
        Op(
            "List mesh exports (the seed's /exports path)",
            s.MeshExportList,
            query=_LIST_QUERY,
            errors=frozenset({403, 404}),
        ),
    ),
    (get_mesh_export, Op("Get a mesh export", s.MeshExportAnswer, query=(PREFER,), errors=frozenset({403}))),
    (
        get_export,
        Op(
            "Get a mesh export (the seed's /exports path)",
            s.MeshExportAnswer,
            query=(PREFER,),
            errors=frozenset({403}),
        ),
    ),
    (
        update_export,
        Op(
            "Rename a mesh export or change its tilerConfig (a finished export then runs again)",
            s.MeshExportAnswer,
            body=s.UpdateMeshExport,
            query=(PREFER,),
            errors=frozenset({403}),
        ),
    ),
    (
        delete_mesh_export,
        Op(
            "Delete a Complete or Invalid mesh export and its files",
            status=204,
            media=None,
            errors=frozenset({403, 422}),
        ),
    ),
    (
        delete_export,
        Op(
            "Delete a Complete or Invalid mesh export and its files (the seed's /exports path)",
            status=204,
            media=None,
            errors=frozenset({403, 422}),
        ),
    ),
)
