"""HTTP for iTwin repositories, their resources, and the global repositories (reference part B.2, B.6).

The global routes (``/itwins/repositories...``) share a path position with ``/itwins/{itwin_id}``;
``create_app`` includes this router before the iTwins one, so they win.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from twinbase.api import schemas as s
from twinbase.api.deps import Context, Ctx
from twinbase.api.http import JSON, collection, no_content, parse_body, prefer
from twinbase.api.openapi import CONTINUATION, PREFER, SEARCH, SKIP, Op, Param, api_docs, string, top
from twinbase.api.routing import Body, both, query_params
from twinbase.domain import repositories as domain
from twinbase.domain.listing import Page
from twinbase.errors import RepositoryResourceNotFound
from twinbase.store.models import Repository, RepositoryResource

router = APIRouter()

REPOSITORIES = "/itwins/{itwin_id}/repositories"
REPOSITORY = REPOSITORIES + "/{repository_id}"
RESOURCES = REPOSITORY + "/resources"
RESOURCE = RESOURCES + "/{resource_id}"


def one_repository(ctx: Context, repo: Repository, *, status: int = 200) -> Response:
    return JSON({"repository": domain.repository_to_wire(repo, ctx.base)}, status_code=status)


def one_resource(
    ctx: Context, repo: Repository, resource: RepositoryResource, *, status: int = 200
) -> Response:
    wire = domain.resource_to_wire(repo, resource, ctx.base, mode=prefer(ctx.request))
    return JSON({"resource": wire}, status_code=status)


def resource_page(
    ctx: Context, path: str, params: dict[str, str], items: list[dict[str, Any]], page: Page[Any]
) -> Response:
    return collection("resources", items, ctx.base, path, params, page)


# ------------------------------------------------------------------------------ global repositories


@both(router, "/itwins/repositories", ["GET"])
def list_global_repositories(ctx: Ctx, request: Request) -> Response:
    found = domain.global_repositories(query_params(request))
    return JSON({"repositories": [domain.global_repository_to_wire(g, ctx.base) for g in found]})


@both(router, "/itwins/repositories/{repository_id}", ["GET"])
def get_global_repository(ctx: Ctx, repository_id: str) -> Response:
    g = domain.global_repository(repository_id)
    return JSON({"repository": domain.global_repository_to_wire(g, ctx.base)})


@both(router, "/itwins/repositories/{repository_id}/resources", ["GET"])
def list_global_resources(ctx: Ctx, request: Request, repository_id: str) -> Response:
    g = domain.global_repository(repository_id)
    params = query_params(request)
    q = domain.parse_resource_query(params)
    # The global repositories hold no resources: every page is empty.
    return resource_page(ctx, f"/itwins/repositories/{g.id}/resources", params, [], Page([], q.paging, False))


@both(router, "/itwins/repositories/{repository_id}/resources/{resource_id}", ["GET"])
def get_global_resource(ctx: Ctx, repository_id: str, resource_id: str) -> Response:
    domain.global_repository(repository_id)
    raise RepositoryResourceNotFound()  # no curated content on this server yet


@both(router, "/itwins/repositories/{repository_id}/resources/{resource_id}/graphics", ["GET"])
def get_global_graphics(ctx: Ctx, repository_id: str, resource_id: str) -> Response:
    domain.global_repository(repository_id)
    return JSON({"graphics": []})


# ------------------------------------------------------------------------------------- repositories


@both(router, REPOSITORIES, ["GET"])
def list_repositories(ctx: Ctx, request: Request, itwin_id: str) -> Response:
    q = domain.parse_repository_query(query_params(request))
    with ctx.svc.db.read() as session:
        repos = domain.list_repositories(session, ctx.principal.user_id, itwin_id, q)
        return JSON({"repositories": [domain.repository_to_wire(r, ctx.base) for r in repos]})


@both(router, REPOSITORIES, ["POST"])
def create_repository(ctx: Ctx, itwin_id: str, raw: Body) -> Response:
    body = parse_body(raw, domain.RepositoryCreate, code=domain.INVALID, message=domain.CREATE_MESSAGE)
    with ctx.svc.db.write() as session:
        repo = domain.create_repository(session, ctx.principal.user_id, itwin_id, body)
        return one_repository(ctx, repo, status=201)


@both(router, REPOSITORY, ["GET"])
def get_repository(ctx: Ctx, itwin_id: str, repository_id: str) -> Response:
    with ctx.svc.db.read() as session:
        repo = domain.get_repository(session, ctx.principal.user_id, itwin_id, repository_id)
        return one_repository(ctx, repo)


@both(router, REPOSITORY, ["PATCH"])
def update_repository(ctx: Ctx, itwin_id: str, repository_id: str, raw: Body) -> Response:
    body = parse_body(raw, domain.RepositoryUpdate, code=domain.INVALID, message=domain.UPDATE_MESSAGE)
    with ctx.svc.db.write() as session:
        repo = domain.update_repository(session, ctx.principal.user_id, itwin_id, repository_id, body)
        return one_repository(ctx, repo)


@both(router, REPOSITORY, ["DELETE"])
def delete_repository(ctx: Ctx, itwin_id: str, repository_id: str) -> Response:
    with ctx.svc.db.write() as session:
        domain.delete_repository(session, ctx.principal.user_id, itwin_id, repository_id)
    return no_content()


# ---------------------------------------------------------------------------------------- resources


@both(router, RESOURCES, ["GET"])
def list_resources(ctx: Ctx, request: Request, itwin_id: str, repository_id: str) -> Response:
    params = query_params(request)
    q = domain.parse_resource_query(params)
    mode = prefer(request)
    with ctx.svc.db.read() as session:
        repo, page = domain.list_resources(session, ctx.principal.user_id, itwin_id, repository_id, q)
        items = [domain.resource_to_wire(repo, r, ctx.base, mode=mode) for r in page.rows]
        path = f"/itwins/{repo.itwin_id}/repositories/{repo.id}/resources"
    return resource_page(ctx, path, params, items, page)


@both(router, RESOURCES, ["POST"])
def create_resource(ctx: Ctx, itwin_id: str, repository_id: str, raw: Body) -> Response:
    body = parse_body(raw, domain.ResourceCreate, code=domain.INVALID, message=domain.RESOURCE_CREATE_MESSAGE)
    with ctx.svc.db.write() as session:
        repo, resource = domain.create_resource(session, ctx.principal.user_id, itwin_id, repository_id, body)
        return one_resource(ctx, repo, resource, status=201)


@both(router, RESOURCE, ["GET"])
def get_resource(ctx: Ctx, itwin_id: str, repository_id: str, resource_id: str) -> Response:
    with ctx.svc.db.read() as session:
        repo, resource = domain.get_resource(
            session, ctx.principal.user_id, itwin_id, repository_id, resource_id
        )
        return one_resource(ctx, repo, resource)


@both(router, RESOURCE, ["DELETE"])
def delete_resource(ctx: Ctx, itwin_id: str, repository_id: str, resource_id: str) -> Response:
    with ctx.svc.db.write() as session:
        domain.delete_resource(session, ctx.principal.user_id, itwin_id, repository_id, resource_id)
    return no_content()


@both(router, RESOURCE + "/graphics", ["GET"])
def get_graphics(ctx: Ctx, itwin_id: str, repository_id: str, resource_id: str) -> Response:
    with ctx.svc.db.read() as session:
        repo = domain.resource_graphics(session, ctx.principal.user_id, itwin_id, repository_id, resource_id)
        return JSON({"graphics": domain.graphics_to_wire(repo, ctx.base)})


_CLASS_FILTER = (Param("class", string(64)), Param("subClass", string(64)))
_RESOURCE_LIST = (top(), SKIP, CONTINUATION, SEARCH, PREFER)

DOCS = api_docs(
    (list_global_repositories, Op("List the global repositories", s.RepositoryList, query=_CLASS_FILTER)),
    (get_global_repository, Op("Get a global repository", s.RepositoryAnswer)),
    (list_global_resources, Op("List a global repository's resources", s.ResourceList, query=_RESOURCE_LIST)),
    (get_global_resource, Op("Get a global repository resource", s.ResourceAnswer)),
    (get_global_graphics, Op("Get a global resource's graphics", s.GraphicsList)),
    (list_repositories, Op("List an iTwin's repositories", s.RepositoryList, query=_CLASS_FILTER)),
    (
        create_repository,
        Op(
            "Create a repository",
            s.RepositoryAnswer,
            status=201,
            body=domain.RepositoryCreate,
            errors=frozenset({403, 409}),
        ),
    ),
    (get_repository, Op("Get a repository", s.RepositoryAnswer, errors=frozenset({403}))),
    (
        update_repository,
        Op(
            "Update a repository",
            s.RepositoryAnswer,
            body=domain.RepositoryUpdate,
            errors=frozenset({403, 409}),
        ),
    ),
    (delete_repository, Op("Delete a repository", status=204, media=None, errors=frozenset({403}))),
    (list_resources, Op("List a repository's resources", s.ResourceList, query=_RESOURCE_LIST)),
    (
        create_resource,
        Op(
            "Create a repository resource",
            s.ResourceAnswer,
            status=201,
            body=domain.ResourceCreate,
            errors=frozenset({403, 409}),
        ),
    ),
    (
        get_resource,
        Op("Get a repository resource", s.ResourceAnswer, query=(PREFER,), errors=frozenset({403})),
    ),
    (delete_resource, Op("Delete a repository resource", status=204, media=None, errors=frozenset({403}))),
    (get_graphics, Op("Get a resource's graphics", s.GraphicsList, errors=frozenset({403}))),
)
