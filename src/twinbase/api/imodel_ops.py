"""HTTP for the iModel operations beyond CRUD (reference §5.1, §5.7, §5.8).

Favorites and recents, clone and fork (202 with ``Location``), the create operation's status,
thumbnails (raw image bytes, whatever the ``Accept`` header says), users and the caller's permissions.
This router is included before ``imodels``: ``/imodels/favorites`` and ``/imodels/recents`` share
their position with ``/imodels/{id}``.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from twinbase.api import schemas as s
from twinbase.api.deps import Context, Ctx
from twinbase.api.http import JSON, collection, no_content, parse_body, prefer
from twinbase.api.openapi import PREFER, Link, Op, Param, api_docs, enum, order_by, paging, string
from twinbase.api.routing import Body, both, in_thread, query_params
from twinbase.domain import imodel_ops as domain
from twinbase.domain.imodels import to_wire
from twinbase.domain.listing import Page
from twinbase.errors import INVALID_IMODELS, BlobNotFound, IModelNotFound, TwinbaseError
from twinbase.store.models import IModel

router = APIRouter()
log = logging.getLogger("twinbase.imodels")

# After a refusal, read and drop at most this much of a thumbnail upload still arriving, so that the
# client gets the error response rather than a reset connection.
_DRAIN_LIMIT = 64 * 1024 * 1024


def _imodel_list(ctx: Context, path: str, params: dict[str, str], page: Page[IModel]) -> Response:
    mode = prefer(ctx.request)
    items = [to_wire(r, ctx.base, mode) for r in page.rows]
    return collection("iModels", items, ctx.base, path, params, page)


# ---------------------------------------------------------------------------------------- favorites


@both(router, "/imodels/favorites", ["GET"])
def list_favorites(ctx: Ctx, request: Request) -> Response:
    params = query_params(request)
    with ctx.svc.db.read() as session:
        page = domain.favorites(session, ctx.principal, params)
        return _imodel_list(ctx, "/imodels/favorites", params, page)


@both(router, "/imodels/favorites/{imodel_id}", ["PUT"])
def add_favorite(ctx: Ctx, imodel_id: str) -> Response:
    with ctx.svc.db.write() as session:
        domain.add_favorite(session, ctx.principal, imodel_id)
    return no_content()


@both(router, "/imodels/favorites/{imodel_id}", ["DELETE"])
def remove_favorite(ctx: Ctx, imodel_id: str) -> Response:
    with ctx.svc.db.write() as session:
        domain.remove_favorite(session, ctx.principal, imodel_id)
    return no_content()


# ------------------------------------------------------------------------------------------ recents


@both(router, "/imodels/recents", ["GET"])
def list_recents(ctx: Ctx, request: Request) -> Response:
    params = query_params(request)
    with ctx.svc.db.read() as session:
        page = domain.recents(session, ctx.principal, params)
        return _imodel_list(ctx, "/imodels/recents", params, page)


@both(router, "/imodels/recents/{imodel_id}", ["POST"])
def add_recent(ctx: Ctx, imodel_id: str) -> Response:
    with ctx.svc.db.write() as session:
        domain.add_recent(session, ctx.principal, imodel_id)
    return no_content()


@both(router, "/imodels/recents/{imodel_id}", ["DELETE"])
def remove_recent(ctx: Ctx, imodel_id: str) -> Response:
    with ctx.svc.db.write() as session:
        domain.remove_recent(session, ctx.principal, imodel_id)
    return no_content()


# -------------------------------------------------------------------------------------------- copies


def _accepted(ctx: Context, imodel_id: str) -> Response:
    return JSON({}, status_code=202, headers={"Location": f"{ctx.base}/imodels/{imodel_id}"})


@both(router, "/imodels/{imodel_id}/clone", ["POST"])
def clone_imodel(ctx: Ctx, imodel_id: str, raw: Body) -> Response:
    body = parse_body(raw, domain.CloneRequest, code=INVALID_IMODELS, message=domain.COPY_MESSAGES["clone"])
    with ctx.svc.db.write() as session:
        new_id = domain.start_copy(session, ctx.principal, imodel_id, body, "clone").id
    ctx.svc.jobs.wake()
    return _accepted(ctx, new_id)


@both(router, "/imodels/{imodel_id}/fork", ["POST"])
def fork_imodel(ctx: Ctx, imodel_id: str, raw: Body) -> Response:
    body = parse_body(raw, domain.ForkRequest, code=INVALID_IMODELS, message=domain.COPY_MESSAGES["fork"])
    with ctx.svc.db.write() as session:
        new_id = domain.start_copy(session, ctx.principal, imodel_id, body, "fork").id
    ctx.svc.jobs.wake()
    return _accepted(ctx, new_id)


@both(router, "/imodels/{imodel_id}/operations/create", ["GET"])
def create_operation(ctx: Ctx, imodel_id: str) -> Response:
    with ctx.svc.db.read() as session:
        operation = domain.create_operation(session, ctx.principal, imodel_id)
    return JSON({"createOperation": operation})


# ---------------------------------------------------------------------------------------- thumbnails


@both(router, "/imodels/{imodel_id}/thumbnail", ["GET"])
def get_thumbnail(ctx: Ctx, imodel_id: str, request: Request) -> Response:
    size = domain.thumbnail_size(query_params(request))
    with ctx.svc.db.read() as session:
        found_id, content_type = domain.thumbnail_of(session, ctx.principal, imodel_id)
    if content_type is not None:
        try:
            data = b"".join(ctx.svc.blobs.open_range(domain.thumbnail_key(found_id, size)))
            return Response(data, media_type="image/png", headers={"Cache-Control": "no-cache"})
        except BlobNotFound:
            log.warning("thumbnail file missing", extra={"action": "thumbnail_missing", "imodel": found_id})
    return Response(
        domain.default_thumbnail(size), media_type="image/png", headers={"Cache-Control": "no-cache"}
    )


@both(router, "/imodels/{imodel_id}/thumbnail", ["PUT"])
async def put_thumbnail(ctx: Ctx, imodel_id: str, request: Request) -> Response:
    received = False
    try:
        await in_thread(_check_can_upload, ctx, imodel_id)
        content_type = domain.thumbnail_content_type(request.headers.get("content-type"))
        data = await _read_capped(request, domain.MAX_THUMBNAIL_BYTES)
        received = True
    except TwinbaseError:
        if not received:
            await _drain(request)
        raise
    domain.check_thumbnail(data, content_type)
    renditions = await in_thread(domain.render_thumbnails, data)
    await in_thread(_store_thumbnail, ctx, imodel_id, content_type, renditions)
    return no_content()


def _check_can_upload(ctx: Context, imodel_id: str) -> None:
    with ctx.svc.db.read() as session:
        domain.check_can_upload_thumbnail(session, ctx.principal, imodel_id)


async def _read_capped(request: Request, cap: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > cap:
        raise domain.ThumbnailTooLarge()
    buf = bytearray()
    async for chunk in request.stream():
        if len(buf) + len(chunk) > cap:
            raise domain.ThumbnailTooLarge()
        buf += chunk
    return bytes(buf)


async def _drain(request: Request) -> None:
    seen = 0
    with contextlib.suppress(Exception):  # already consumed, or the client went away: nothing to do
        async for chunk in request.stream():
            seen += len(chunk)
            if seen > _DRAIN_LIMIT:
                break


def _store_thumbnail(ctx: Context, imodel_id: str, content_type: str, renditions: dict[str, bytes]) -> None:
    keys = {size: domain.thumbnail_key(imodel_id, size) for size in renditions}
    for size, key in keys.items():
        ctx.svc.blobs.put(key, [renditions[size]])
    try:
        with ctx.svc.db.write() as session:
            domain.set_thumbnail(session, ctx.principal, imodel_id, content_type)
    except IModelNotFound:  # deleted meanwhile: do not leave its thumbnail behind
        for key in keys.values():
            ctx.svc.blobs.delete(key)
        raise


# --------------------------------------------------------------------------------- users, permissions


@both(router, "/imodels/{imodel_id}/users", ["GET"])
def list_users(ctx: Ctx, imodel_id: str, request: Request) -> Response:
    params = query_params(request)
    mode = prefer(request)
    with ctx.svc.db.read() as session:
        imodel, page = domain.users(session, ctx.principal, imodel_id, params)
        stats: dict[str, dict[str, Any]] = (
            domain.statistics(session, imodel.id, [u.id for u in page.rows])
            if mode == "representation"
            else {}
        )
        items = [domain.user_to_wire(u, ctx.base, imodel.id, mode, stats.get(u.id)) for u in page.rows]
        path = f"/imodels/{imodel.id}/users"
    return collection("users", items, ctx.base, path, params, page)


@both(router, "/imodels/{imodel_id}/users/{user_id}", ["GET"])
def get_user(ctx: Ctx, imodel_id: str, user_id: str) -> Response:
    with ctx.svc.db.read() as session:
        imodel, found = domain.user(session, ctx.principal, imodel_id, user_id)
        stats = domain.statistics(session, imodel.id, [found.id])[found.id]
        return JSON({"user": domain.user_to_wire(found, ctx.base, imodel.id, "representation", stats)})


@both(router, "/imodels/{imodel_id}/permissions", ["GET"])
def get_permissions(ctx: Ctx, imodel_id: str) -> Response:
    with ctx.svc.db.read() as session:
        permissions = domain.my_permissions(session, ctx.principal, imodel_id)
    return JSON({"permissions": permissions})


_ITWIN_ID = Param("iTwinId", string(36), "The iTwin whose iModels to list.", required=True)
_SCOPED = frozenset({403, 404})  # the iTwin named by iTwinId
_COPY_LINKS = {
    "GetCreateOperation": Link("imodel_ops.create_operation", {"imodel_id": "$response.header.Location"})
}

DOCS = api_docs(
    (
        list_favorites,
        Op("List my favorite iModels", s.IModelList, query=(_ITWIN_ID, *paging(), PREFER), errors=_SCOPED),
    ),
    (add_favorite, Op("Add an iModel to my favorites", status=204, media=None)),
    (remove_favorite, Op("Remove an iModel from my favorites", status=204, media=None)),
    (
        list_recents,
        Op(
            "List my recently used iModels",
            s.IModelList,
            query=(_ITWIN_ID, *paging(), PREFER),
            errors=_SCOPED,
        ),
    ),
    (add_recent, Op("Record an iModel as recently used", status=204, media=None)),
    (remove_recent, Op("Forget a recently used iModel", status=204, media=None)),
    (
        clone_imodel,
        Op(
            "Clone an iModel (up to a changeset) into an iTwin",
            s.Empty,
            status=202,
            body=domain.CloneRequest,
            errors=frozenset({403, 409}),
            headers={"Location": "The new iModel."},
        ),
    ),
    (
        fork_imodel,
        Op(
            "Fork an iModel (at a changeset) into an iTwin",
            s.Empty,
            status=202,
            body=domain.ForkRequest,
            errors=frozenset({403, 409}),
            headers={"Location": "The new iModel."},
        ),
    ),
    (create_operation, Op("State of an iModel's create operation", s.CreateOperationAnswer)),
    (
        get_thumbnail,
        Op("Get an iModel's thumbnail", media="image/png", query=(Param("size", enum("small", "large")),)),
    ),
    (
        put_thumbnail,
        Op(
            "Upload an iModel's thumbnail (PNG or JPEG)",
            status=204,
            media=None,
            body_media=("image/png", "image/jpeg"),
            errors=frozenset({403, 413, 422}),
        ),
    ),
    (
        list_users,
        Op(
            "List the users of an iModel",
            s.IModelUserList,
            query=(*paging(), order_by("givenName", "surname"), PREFER),
        ),
    ),
    (get_user, Op("Get a user of an iModel", s.IModelUserAnswer)),
    (get_permissions, Op("List my permissions on an iModel", s.PermissionNames)),
)
