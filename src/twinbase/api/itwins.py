"""HTTP for ``/itwins``: iTwins, accounts, favorites and recents (reference part B.2)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from twinbase.api import schemas as s
from twinbase.api.deps import Context, Ctx, context
from twinbase.api.http import JSON, collection, no_content, parse_body, prefer
from twinbase.api.openapi import (
    CONTINUATION,
    PREFER,
    SEARCH,
    SKIP,
    Link,
    Op,
    Param,
    api_docs,
    enum,
    string,
    top,
)
from twinbase.api.routing import Body, both, query_params
from twinbase.domain import itwins as domain
from twinbase.domain.listing import Page
from twinbase.store.blobs import keys as blob_keys
from twinbase.store.models import ITwin

router = APIRouter()


def image_url(ctx: Context, itwin: ITwin) -> str | None:
    name = domain.image_name(itwin, "l")
    if not name:
        return None
    return ctx.svc.signed_url(ctx.base, blob_keys.itwin_image(itwin.id, name))


def one(ctx: Context, itwin: ITwin, *, mode: Any = "representation", status: int = 200) -> Response:
    wire = domain.to_wire(
        itwin, mode=mode, image_url=image_url(ctx, itwin) if mode == "representation" else None
    )
    return JSON({"iTwin": wire}, status_code=status)


def many(ctx: Context, path: str, params: dict[str, str], q: domain.ITwinQuery, page: Page[Any]) -> Response:
    mode = prefer(ctx.request)
    items = [
        domain.to_wire(
            r,
            mode=mode,
            image_url=image_url(ctx, r) if (mode == "representation" or q.select) else None,
            select_fields=q.select,
        )
        for r in page.rows
    ]
    return collection("iTwins", items, ctx.base, path, params, page)


# Literal segments first: they share a position with {itwin_id}.


@both(router, "/itwins/favorites", ["GET"])
def list_favorites(ctx: Ctx, request: Request) -> Response:
    params = query_params(request)
    q = domain.parse_query(
        params, scope_header=request.headers.get("x-itwin-query-scope"), allow_filters=False
    )
    with ctx.svc.db.read() as session:
        page = domain.favorites(session, ctx.principal, q)
        return many(ctx, "/itwins/favorites", params, q, page)


@both(router, "/itwins/favorites/{itwin_id}", ["POST"])
def add_favorite(ctx: Ctx, itwin_id: str) -> Response:
    with ctx.svc.db.write() as session:
        domain.add_favorite(session, ctx.principal, itwin_id)
    return no_content()


@both(router, "/itwins/favorites/{itwin_id}", ["DELETE"])
def remove_favorite(ctx: Ctx, itwin_id: str) -> Response:
    with ctx.svc.db.write() as session:
        domain.remove_favorite(session, ctx.principal, itwin_id)
    return no_content()


@both(router, "/itwins/recents", ["GET"])
@both(router, "/itwins/myitwins/recents", ["GET"])
def list_recents(ctx: Ctx, request: Request) -> Response:
    params = query_params(request)
    q = domain.parse_query(
        params, scope_header=request.headers.get("x-itwin-query-scope"), allow_filters=False
    )
    with ctx.svc.db.read() as session:
        page = domain.recents(session, ctx.principal, q)
        return many(ctx, "/itwins/recents", params, q, page)


@both(router, "/itwins/recents/{itwin_id}", ["POST"])
@both(router, "/itwins/myitwins/recents/{itwin_id}", ["POST"])
def add_recent(ctx: Ctx, itwin_id: str) -> Response:
    with ctx.svc.db.write() as session:
        domain.add_recent(session, ctx.principal, itwin_id)
    return no_content()


@both(router, "/itwins/myprimaryaccount", ["GET"])
def my_primary_account(ctx: Ctx) -> Response:
    with ctx.svc.db.write() as session:
        account = domain.primary_account(session, ctx.principal)
        return one(
            ctx, account, mode=prefer(ctx.request) if "prefer" in ctx.request.headers else "representation"
        )


@both(router, "/itwins/", ["GET"])
async def list_itwins(request: Request) -> Response:
    # The two hottest routes take only the Request and authenticate inline: FastAPI's dependency
    # solving would cost as much as the cached answer itself.
    ctx = await context(request)
    params = query_params(request)
    scope = request.headers.get("x-itwin-query-scope")
    q = domain.parse_query(params, scope_header=scope)
    key = ("itwins", ctx.principal.user_id, tuple(sorted(params.items())), scope, prefer(request), ctx.base)

    def compute() -> Response:
        with ctx.svc.db.connect() as conn:
            minimal = prefer(request) == "minimal" and not q.select
            page = domain.query(conn, ctx.principal, q, minimal=minimal)
            return many(ctx, "/itwins/", params, q, page)

    return await ctx.svc.cache.respond(key, compute)


@both(router, "/itwins/", ["POST"])
def create_itwin(ctx: Ctx, raw: Body) -> Response:
    data = parse_body(raw, domain.ITwinCreate, code=domain.INVALID, message="Cannot create iTwin.")
    with ctx.svc.db.write() as session:
        itwin = domain.create(session, ctx.principal, data)
        return one(ctx, itwin, status=201)


@both(router, "/itwins/{itwin_id:itwinid}", ["GET"])
async def get_itwin(request: Request) -> Response:
    ctx = await context(request)
    itwin_id: str = request.path_params["itwin_id"]
    # Single GETs default to the full entity; an explicit Prefer: return=minimal trims it.
    mode = prefer(ctx.request) if "prefer" in ctx.request.headers else "representation"

    def compute() -> Response:
        with ctx.svc.db.connect() as conn:
            itwin, _ = domain.read_visible(conn, itwin_id, ctx.principal.user_id)
            return one(ctx, itwin, mode=mode)

    return await ctx.svc.cache.respond(("itwin", ctx.principal.user_id, itwin_id, mode, ctx.base), compute)


@both(router, "/itwins/{itwin_id:itwinid}", ["PATCH"])
def update_itwin(ctx: Ctx, itwin_id: str, raw: Body) -> Response:
    data = parse_body(raw, domain.ITwinUpdate, code=domain.INVALID, message="Cannot update iTwin.")
    with ctx.svc.db.write() as session:
        itwin = domain.update_itwin(session, ctx.principal, itwin_id, data)
        return one(ctx, itwin)


@both(router, "/itwins/{itwin_id:itwinid}", ["DELETE"])
def delete_itwin(ctx: Ctx, itwin_id: str) -> Response:
    with ctx.svc.db.write() as session:
        itwin = domain.delete_itwin(session, ctx.principal, itwin_id)
        image = domain.image_name(itwin, "l")
    if image:
        ctx.svc.blobs.delete_prefix(blob_keys.itwin_prefix(itwin_id))
    return no_content()


@both(router, "/itwins/{itwin_id}/account", ["GET"])
def get_account(ctx: Ctx, itwin_id: str) -> Response:
    with ctx.svc.db.read() as session:
        account = domain.account_of(session, ctx.principal, itwin_id)
        mode = prefer(ctx.request) if "prefer" in ctx.request.headers else "representation"
        return one(ctx, account, mode=mode)


_ITWIN_FILTERS = (
    Param("subClass", string(), "Comma-separated sub classes (Project, Asset, ...)."),
    Param("type", string(255)),
    Param("status", enum("Active", "Inactive", "Trial")),
    Param("includeInactive", enum("true", "false")),
    Param("number", string(255)),
    Param("displayName", string(255)),
    Param("parentId", string(36)),
    Param("iTwinAccountId", string(36)),
    SEARCH,
    Param("$filter", string(2048), "OData filter: eq, ne, in, and, or on iTwin properties."),
    Param("$orderby", string(255), "Property and direction, e.g. `displayName desc`."),
    Param("$select", string(1024), "Comma-separated properties to return."),
    Param("x-itwin-query-scope", string(64), "memberOfItwin (default) or all.", location="header"),
    PREFER,
)
_ITWIN_LIST = (top(1000, 0), SKIP, CONTINUATION, *_ITWIN_FILTERS)
_FAVORITES = (top(1000, 0), SKIP, CONTINUATION, Param("subClass", string()), PREFER)
_ITWIN_LINKS = {"GetITwin": Link("itwins.get_itwin", {"itwin_id": "$response.body#/iTwin/id"})}

DOCS = api_docs(
    (list_favorites, Op("List my favorite iTwins", s.ITwinList, query=_FAVORITES)),
    (add_favorite, Op("Add an iTwin to my favorites", status=204, media=None, errors=frozenset({403}))),
    (remove_favorite, Op("Remove an iTwin from my favorites", status=204, media=None)),
    (list_recents, Op("List my recently used iTwins", s.ITwinList, query=_FAVORITES)),
    (add_recent, Op("Record an iTwin as recently used", status=204, media=None, errors=frozenset({403}))),
    (my_primary_account, Op("Get my primary account", s.ITwinAnswer)),
    (list_itwins, Op("List the iTwins I can see", s.ITwinList, query=_ITWIN_LIST)),
    (
        create_itwin,
        Op(
            "Create an iTwin",
            s.ITwinAnswer,
            status=201,
            body=domain.ITwinCreate,
            errors=frozenset({403, 404, 409}),
            links=_ITWIN_LINKS,
        ),
    ),
    (get_itwin, Op("Get an iTwin", s.ITwinAnswer, query=(PREFER,))),
    (
        update_itwin,
        Op("Update an iTwin", s.ITwinAnswer, body=domain.ITwinUpdate, errors=frozenset({403, 409})),
    ),
    (delete_itwin, Op("Delete an iTwin", status=204, media=None, errors=frozenset({403, 409}))),
    (get_account, Op("Get the account an iTwin belongs to", s.ITwinAnswer, errors=frozenset({403}))),
)
