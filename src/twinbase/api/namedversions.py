"""HTTP for named versions and their checkpoints (reference §5.5).

Reading needs ``imodels_webview``, checkpoints ``imodels_read``, creating and updating
``imodels_write``.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from twinbase.api import schemas as s
from twinbase.api.changesets import checkpoint_response
from twinbase.api.deps import Ctx
from twinbase.api.http import JSON, collection, parse_body, prefer
from twinbase.api.openapi import PREFER, SEARCH, Op, Param, api_docs, enum, order_by, paging, string
from twinbase.api.routing import Body, both, query_params
from twinbase.domain import access, checkpoints, imodels
from twinbase.domain import namedversions as domain
from twinbase.errors import INVALID_IMODELS

router = APIRouter()

NAMED_VERSIONS = "/imodels/{imodel_id}/namedversions"
NAMED_VERSION = NAMED_VERSIONS + "/{nv_id}"


@both(router, NAMED_VERSIONS, ["POST"])
def create_named_version(ctx: Ctx, imodel_id: str, raw: Body) -> Response:
    with ctx.svc.db.write() as session:
        imodel, _ = imodels.visible_imodel(session, imodel_id, ctx.principal.user_id, access.IMODELS_WRITE)
        body = parse_body(raw, domain.NamedVersionCreate, code=INVALID_IMODELS, message=domain.CREATE_MESSAGE)
        nv = domain.create(session, ctx.svc.jobs, ctx.principal, imodel, body)
        wire = domain.to_wire(nv, ctx.base)
    ctx.svc.jobs.wake()  # its checkpoint may have been scheduled
    return JSON({"namedVersion": wire}, status_code=201)


@both(router, NAMED_VERSIONS, ["GET"])
def list_named_versions(ctx: Ctx, request: Request, imodel_id: str) -> Response:
    params = query_params(request)
    mode = prefer(request)
    with ctx.svc.db.read() as session:
        imodel, _ = imodels.visible_imodel(session, imodel_id, ctx.principal.user_id)
        page = domain.query(session, imodel.id, params)
        iid = imodel.id
        items = [domain.to_wire(nv, ctx.base, mode) for nv in page.rows]
    return collection("namedVersions", items, ctx.base, f"/imodels/{iid}/namedversions", params, page)


@both(router, NAMED_VERSION, ["GET"])
def get_named_version(ctx: Ctx, imodel_id: str, nv_id: str) -> Response:
    with ctx.svc.db.read() as session:
        imodel, _ = imodels.visible_imodel(session, imodel_id, ctx.principal.user_id)
        nv = domain.find(session, imodel.id, nv_id)
        return JSON({"namedVersion": domain.to_wire(nv, ctx.base)})


@both(router, NAMED_VERSION, ["PATCH"])
def update_named_version(ctx: Ctx, imodel_id: str, nv_id: str, raw: Body) -> Response:
    with ctx.svc.db.write() as session:
        imodel, _ = imodels.visible_imodel(session, imodel_id, ctx.principal.user_id, access.IMODELS_WRITE)
        body = parse_body(raw, domain.NamedVersionUpdate, code=INVALID_IMODELS, message=domain.UPDATE_MESSAGE)
        nv = domain.update(session, imodel, nv_id, body)
        wire = domain.to_wire(nv, ctx.base)
    return JSON({"namedVersion": wire})


@both(router, NAMED_VERSION + "/checkpoint", ["GET"])
def get_named_version_checkpoint(ctx: Ctx, imodel_id: str, nv_id: str) -> Response:
    # A write: a named version whose checkpoint was never made (or evicted) schedules it.
    with ctx.svc.db.write() as session:
        imodel, _ = imodels.visible_imodel(session, imodel_id, ctx.principal.user_id, access.IMODELS_READ)
        nv = domain.find(session, imodel.id, nv_id)
        answer = checkpoint_response(ctx, session, domain.checkpoint(session, ctx.svc.jobs, nv))
    ctx.svc.jobs.wake()
    return answer


@both(router, NAMED_VERSION + "/checkpoint", ["PUT"])
def regenerate_named_version_checkpoint(ctx: Ctx, imodel_id: str, nv_id: str) -> Response:
    """Regeneration: a failed checkpoint is scheduled again; a scheduled or successful one is the answer."""
    with ctx.svc.db.write() as session:
        imodel, _ = imodels.visible_imodel(
            session, imodel_id, ctx.principal.user_id, access.IMODELS_READ, access.IMODELS_WRITE
        )
        nv = domain.find(session, imodel.id, nv_id)
        row = checkpoints.regenerate(session, ctx.svc.jobs, domain.checkpoint(session, ctx.svc.jobs, nv))
        answer = checkpoint_response(ctx, session, row)
    ctx.svc.jobs.wake()
    return answer


DOCS = api_docs(
    (
        create_named_version,
        Op(
            "Create a named version",
            s.NamedVersionAnswer,
            status=201,
            body=domain.NamedVersionCreate,
            errors=frozenset({403, 409}),
        ),
    ),
    (
        list_named_versions,
        Op(
            "List named versions",
            s.NamedVersionList,
            query=(
                *paging(),
                Param("name", string(255)),
                Param("state", enum("visible", "hidden")),
                SEARCH,
                order_by("changesetIndex", "createdDateTime"),
                PREFER,
            ),
        ),
    ),
    (get_named_version, Op("Get a named version", s.NamedVersionAnswer)),
    (
        update_named_version,
        Op(
            "Update a named version",
            s.NamedVersionAnswer,
            body=domain.NamedVersionUpdate,
            errors=frozenset({403, 409}),
        ),
    ),
    (get_named_version_checkpoint, Op("Get a named version's checkpoint", s.CheckpointAnswer)),
    (
        regenerate_named_version_checkpoint,
        Op("Regenerate a named version's checkpoint", s.CheckpointAnswer, errors=frozenset({403})),
    ),
)
