"""HTTP for ``/imodels/{id}/locks`` (reference §5.6). Lock lists send no ``Prefer``: one shape."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from twinbase.api import schemas as s
from twinbase.api.deps import Ctx
from twinbase.api.http import JSON, collection, parse_body
from twinbase.api.openapi import Op, Param, api_docs, enum, integer, paging
from twinbase.api.routing import Body, both, query_params
from twinbase.domain import locks as domain
from twinbase.errors import INVALID_IMODELS

router = APIRouter()


# The literal segments come first: ``/locks/release-chunk`` and ``/locks/released-locks``.
@both(router, "/imodels/{imodel_id}/locks/release-chunk", ["POST"])
def release_chunk(ctx: Ctx, imodel_id: str, raw: Body) -> Response:
    body = parse_body(raw, domain.ReleaseChunk, code=INVALID_IMODELS, message="Cannot release Locks.")
    with ctx.svc.db.write() as session:
        last = domain.release_chunk(session, ctx.principal, imodel_id, body)
    return JSON({"isLastChunk": last})


@both(router, "/imodels/{imodel_id}/locks/released-locks", ["GET"])
def released_locks(ctx: Ctx, imodel_id: str, request: Request) -> Response:
    params = query_params(request)
    with ctx.svc.db.read() as session:
        imodel, page = domain.released(session, ctx.principal, imodel_id, params)
        path = f"/imodels/{imodel.id}/locks/released-locks"
    items = [{"lockLevel": domain.EXCLUSIVE, "objectIds": page.rows}] if page.rows else []
    # The released-locks list is the platform's newest: it pages with a continuation token.
    return collection(
        "releasedLocks", items, ctx.base, path, params, page, returned=len(page.rows), continuation=True
    )


@both(router, "/imodels/{imodel_id}/locks", ["PATCH"])
def update_locks(ctx: Ctx, imodel_id: str, raw: Body) -> Response:
    body = parse_body(raw, domain.LockUpdate, code=INVALID_IMODELS, message=domain.UPDATE_MESSAGE)
    with ctx.svc.db.write() as session:
        locked = domain.update_locks(session, ctx.principal, imodel_id, body)
    return JSON({"lock": {"briefcaseId": body.briefcaseId, "lockedObjects": locked}})


@both(router, "/imodels/{imodel_id}/locks", ["GET"])
def list_locks(ctx: Ctx, imodel_id: str, request: Request) -> Response:
    params = query_params(request)
    with ctx.svc.db.read() as session:
        imodel, page, object_count = domain.query(session, ctx.principal, imodel_id, params)
        path = f"/imodels/{imodel.id}/locks"
    return collection("locks", page.rows, ctx.base, path, params, page, returned=object_count)


DOCS = api_docs(
    (
        release_chunk,
        Op(
            "Release a chunk of a briefcase's locks",
            s.ReleaseChunkAnswer,
            body=domain.ReleaseChunk,
            errors=frozenset({403, 409}),
        ),
    ),
    (
        released_locks,
        Op(
            "Exclusive locks released with changesets after an index",
            s.ReleasedLocks,
            query=(*paging(), Param("afterChangesetIndex", integer(0), required=True)),
        ),
    ),
    (
        update_locks,
        Op("Acquire or release locks", s.LockAnswer, body=domain.LockUpdate, errors=frozenset({403, 409})),
    ),
    (
        list_locks,
        Op(
            "List locks",
            s.LockList,
            query=(
                *paging(),
                Param("briefcaseId", integer(1)),
                Param("lockLevel", enum("shared", "exclusive")),
            ),
        ),
    ),
)
