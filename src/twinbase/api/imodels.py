"""HTTP for ``/imodels``: iModels and their baseline file (reference §5.1, §5.2).

Create (empty, from a baseline file, from a template), get, list, update, delete. The other
operations on an iModel (clone, fork, favorites, thumbnails, users, ...) are in ``imodel_ops``.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from starlette.responses import Response

from twinbase.api import schemas as s
from twinbase.api.deps import Context, Ctx
from twinbase.api.http import JSON, collection, no_content, parse_body, prefer
from twinbase.api.openapi import PREFER, SEARCH, Link, Op, Param, api_docs, enum, order_by, paging, string
from twinbase.api.routing import Body, both, query_params
from twinbase.domain import imodel_ops as ops
from twinbase.domain import imodels as domain
from twinbase.domain import mesh_exports
from twinbase.errors import INVALID_IMODELS, BaselineFileNotFound
from twinbase.store.models import BaselineFile, IModel

router = APIRouter()
log = logging.getLogger("twinbase.imodels")


def imodel_response(ctx: Context, imodel: IModel, status: int = 200, **extra_links: object) -> Response:
    wire = domain.to_wire(imodel, ctx.base)
    wire["_links"].update(extra_links)
    return JSON({"iModel": wire}, status_code=status)


@both(router, "/imodels/", ["GET"])
def list_imodels(ctx: Ctx, request: Request) -> Response:
    params = query_params(request)
    with ctx.svc.db.read() as session:
        page = domain.query(session, ctx.principal, params)
        mode = prefer(request)
        items = [domain.to_wire(r, ctx.base, mode) for r in page.rows]
    return collection("iModels", items, ctx.base, "/imodels", params, page)


@both(router, "/imodels/", ["POST"])
def create_imodel(ctx: Ctx, raw: Body) -> Response:
    body = parse_body(raw, domain.IModelCreate, code=INVALID_IMODELS, message="Cannot create iModel.")
    domain.validate_create(body)
    if body.baselineFile is not None:
        with ctx.svc.db.write() as session:
            imodel, baseline = domain.create_from_baseline(session, ctx.principal, body)
            upload = ctx.svc.storage_link(ctx.base, baseline.blob_key, "w")
            complete = {"href": f"{domain.links_base(ctx.base, imodel.id)}/baselinefile"}
            return imodel_response(ctx, imodel, 201, upload=upload, complete=complete)
    if body.template is not None:
        with ctx.svc.db.write() as session:
            imodel = ops.create_from_template(session, ctx.principal, body)
            response = imodel_response(ctx, imodel, 201)
        ctx.svc.jobs.wake()
        return response
    with ctx.svc.db.write() as session:
        imodel = domain.create_empty(ctx.svc, session, ctx.principal, body)
        return imodel_response(ctx, imodel, 201)


@both(router, "/imodels/{imodel_id}", ["GET"])
def get_imodel(ctx: Ctx, imodel_id: str) -> Response:
    with ctx.svc.db.read() as session:
        imodel, _ = domain.visible_imodel(session, imodel_id, ctx.principal.user_id)
        return imodel_response(ctx, imodel)


@both(router, "/imodels/{imodel_id}", ["PATCH"])
def update_imodel(ctx: Ctx, imodel_id: str, raw: Body) -> Response:
    body = parse_body(raw, ops.IModelUpdate, code=INVALID_IMODELS, message="Cannot update iModel.")
    with ctx.svc.db.write() as session:
        imodel = ops.update_imodel(session, ctx.principal, imodel_id, body)
        return imodel_response(ctx, imodel)


@both(router, "/imodels/{imodel_id}", ["DELETE"])
def delete_imodel(ctx: Ctx, imodel_id: str) -> Response:
    with ctx.svc.db.write() as session:
        # Read first: deleting the iModel deletes its exports' rows by cascade.
        bundles = mesh_exports.bundles_of_imodel(session, imodel_id)
        prefixes = ops.delete_imodel(session, ctx.principal, imodel_id)
    for bundle in bundles:  # a running export's job notices the row is gone and drops its own files
        mesh_exports.delete_bundle(ctx.svc.blobs, bundle)
    try:
        for each in prefixes:  # its files, its checkpoint container, uploads never completed
            ctx.svc.blobs.delete_prefix(each)
    except OSError:  # the rows are gone: orphan files at worst, never a half-deleted iModel
        log.warning(
            "could not delete iModel files",
            extra={"action": "imodel_blobs_delete_failed", "key": prefixes[0]},
        )
    return no_content()


def _baseline_response(ctx: Context, baseline: BaselineFile) -> Response:
    download = ctx.svc.storage_link(ctx.base, baseline.blob_key) if baseline.state == "initialized" else None
    return JSON({"baselineFile": domain.baseline_to_wire(baseline, ctx.base, download)})


@both(router, "/imodels/{imodel_id}/baselinefile", ["GET"])
def get_baseline(ctx: Ctx, imodel_id: str) -> Response:
    with ctx.svc.db.read() as session:
        imodel, _ = domain.visible_imodel(session, imodel_id, ctx.principal.user_id)
        baseline = session.get(BaselineFile, imodel.id)
        if baseline is None:
            raise BaselineFileNotFound()
        return _baseline_response(ctx, baseline)


@both(router, "/imodels/{imodel_id}/baselinefile", ["POST", "PATCH"])
def complete_baseline(ctx: Ctx, imodel_id: str) -> Response:
    # Three steps, so that no write transaction is open while the file is promoted and hashed.
    with ctx.svc.db.read() as session:
        pending = domain.baseline_to_seal(session, ctx.principal, imodel_id)
    sealed = domain.seal_baseline(ctx.svc.blobs, pending)
    with ctx.svc.db.write() as session:
        baseline = domain.complete_baseline(ctx.svc, session, ctx.principal, imodel_id, sealed)
        response = _baseline_response(ctx, baseline)
    ctx.svc.jobs.wake()
    return response


_IMODEL_LINKS = {"GetIModel": Link("imodels.get_imodel", {"imodel_id": "$response.body#/iModel/id"})}

DOCS = api_docs(
    (
        list_imodels,
        Op(
            "List an iTwin's iModels",
            s.IModelList,
            query=(
                Param("iTwinId", string(36), "The iTwin whose iModels to list.", required=True),
                *paging(),
                Param("name", string(255)),
                Param("state", enum("initialized", "notInitialized")),
                SEARCH,
                order_by("name", "createdDateTime"),
                PREFER,
            ),
            errors=frozenset({403, 404}),
        ),
    ),
    (
        create_imodel,
        Op(
            "Create an iModel: empty, from a baseline file or from a template",
            s.IModelAnswer,
            status=201,
            body=domain.IModelCreate,
            errors=frozenset({403, 404, 409}),
            links=_IMODEL_LINKS,
        ),
    ),
    (get_imodel, Op("Get an iModel", s.IModelAnswer, query=(PREFER,))),
    (
        update_imodel,
        Op("Update an iModel", s.IModelAnswer, body=ops.IModelUpdate, errors=frozenset({403, 409})),
    ),
    (delete_imodel, Op("Delete an iModel", status=204, media=None, errors=frozenset({403, 409}))),
    (get_baseline, Op("Get an iModel's baseline file", s.BaselineFileAnswer)),
    (
        complete_baseline,
        Op("Complete the baseline file upload", s.BaselineFileAnswer, errors=frozenset({403, 409, 422})),
    ),
)
