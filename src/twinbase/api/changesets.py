"""HTTP for changesets, their checkpoints and extended data, and changeset groups (reference §5.4).

Reading metadata needs ``imodels_webview``; file links (changeset downloads, checkpoints) need
``imodels_read``; pushing, extended data and groups need ``imodels_write``. The literal
``/changesets/extendeddata`` is registered before ``/changesets/{ref}``.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from sqlalchemy.orm import Session
from starlette.responses import Response

from twinbase.api import schemas as s
from twinbase.api.deps import Context, Ctx
from twinbase.api.http import JSON, collection, parse_body, prefer
from twinbase.api.openapi import PREFER, Link, Op, Param, api_docs, integer, order_by, paging
from twinbase.api.routing import Body, both, query_params
from twinbase.domain import access, checkpoints, containers, imodels
from twinbase.domain import changesets as domain
from twinbase.errors import INVALID_IMODELS
from twinbase.store.models import Changeset, Checkpoint

router = APIRouter()

CHANGESETS = "/imodels/{imodel_id}/changesets"
CHANGESET = CHANGESETS + "/{ref}"
GROUPS = "/imodels/{imodel_id}/changesetgroups"


def _full(ctx: Context, cs: Changeset, around: domain.Surroundings | None, can_read: bool) -> dict[str, Any]:
    download = ctx.svc.storage_link(ctx.base, cs.blob_key) if can_read else None
    return domain.to_wire(cs, ctx.base, around=around, download=download)


def _push_answer(wire: dict[str, Any]) -> dict[str, Any]:
    """The create (POST) and complete (PATCH) answers carry ``synchronizationInfo: null`` as the
    platform's do (Bentley's client tests assert it); a GET renders the stored value."""
    wire["synchronizationInfo"] = None
    return wire


def checkpoint_response(ctx: Context, session: Session, checkpoint: Checkpoint) -> Response:
    """Every checkpoint answer (in a write transaction): the plain ``.bim`` link, and the CloudSqlite
    container it is in when the site named the storage account an unmodified backend fetches
    containers from."""
    svc, settings = ctx.svc, ctx.svc.settings
    download = svc.storage_link(ctx.base, checkpoint.blob_key)
    directory = None
    if settings.checkpoint_storage_account and checkpoint.blocks is None and checkpoint.state == "successful":
        containers.schedule_container(session, svc.jobs, checkpoint)  # stored before containers were
    elif settings.checkpoint_storage_account and checkpoint.blocks is not None:
        containers.publish(session, svc.blobs, checkpoint.imodel_id)
        directory = containers.directory_access(
            settings.checkpoint_storage_account,
            svc.signer,
            svc.blobs,
            checkpoint.imodel_id,
            settings.signed_url_lifetime_seconds,
        )
    return JSON({"checkpoint": checkpoints.to_wire(checkpoint, download, directory)})


# -------------------------------------------------------------------------------------- changesets


@both(router, CHANGESETS, ["POST"])
def create_changeset(ctx: Ctx, imodel_id: str, raw: Body) -> Response:
    with ctx.svc.db.write() as session:
        imodel = domain.writable_imodel(session, imodel_id, ctx.principal, lock=True)
        body = parse_body(raw, domain.ChangesetCreate, code=INVALID_IMODELS, message=domain.CREATE_MESSAGE)
        cs = domain.create(session, ctx.principal, imodel, body)
        wire = _push_answer(domain.to_wire(cs, ctx.base))
        wire["_links"]["upload"] = ctx.svc.storage_link(ctx.base, cs.blob_key, "w")
        wire["_links"]["complete"] = {"href": domain.changeset_href(ctx.base, cs.imodel_id, cs.id)}
    return JSON({"changeset": wire}, status_code=201)


@both(router, CHANGESETS, ["GET"])
def list_changesets(ctx: Ctx, request: Request, imodel_id: str) -> Response:
    params = query_params(request)
    mode = prefer(request)
    with ctx.svc.db.read() as session:
        imodel, perms = imodels.visible_imodel(session, imodel_id, ctx.principal.user_id)
        page = domain.query(session, imodel.id, params)
        iid = imodel.id
        if mode == "minimal":
            items = [domain.to_wire(cs, ctx.base, "minimal") for cs in page.rows]
        else:
            around = domain.surroundings(session, imodel.id, page.rows)
            can_read = access.IMODELS_READ in perms
            items = [_full(ctx, cs, around, can_read) for cs in page.rows]
    return collection("changesets", items, ctx.base, f"/imodels/{iid}/changesets", params, page)


@both(router, CHANGESETS + "/extendeddata", ["GET"])
def list_extended_data(ctx: Ctx, request: Request, imodel_id: str) -> Response:
    params = query_params(request)
    with ctx.svc.db.read() as session:
        imodel, _ = imodels.visible_imodel(session, imodel_id, ctx.principal.user_id)
        page = domain.query_extended_data(session, imodel.id, params)
        iid = imodel.id
        items = [domain.extended_data_to_wire(row) for row in page.rows]
    return collection(
        "extendedData", items, ctx.base, f"/imodels/{iid}/changesets/extendeddata", params, page
    )


@both(router, CHANGESET, ["GET"])
def get_changeset(ctx: Ctx, imodel_id: str, ref: str) -> Response:
    with ctx.svc.db.read() as session:
        imodel, perms = imodels.visible_imodel(session, imodel_id, ctx.principal.user_id)
        cs = domain.find(session, imodel.id, ref)
        around = domain.surroundings(session, imodel.id, [cs])
        wire = _full(ctx, cs, around, access.IMODELS_READ in perms)
    return JSON({"changeset": wire})


@both(router, CHANGESET, ["PATCH"])
def complete_changeset(ctx: Ctx, imodel_id: str, ref: str, raw: Body) -> Response:
    # Three steps, so that no write transaction is open while the file is promoted and hashed.
    with ctx.svc.db.read() as session:
        imodel = domain.writable_imodel(session, imodel_id, ctx.principal)
        body = parse_body(raw, domain.ChangesetUpdate, code=INVALID_IMODELS, message=domain.UPDATE_MESSAGE)
        pending = domain.file_to_seal(session, ctx.principal, imodel, ref, body)
    sealed = domain.seal(ctx.svc, imodel_id, pending) if pending is not None else None
    made = sealed.facts.checkpoint if sealed is not None else None
    try:
        with ctx.svc.db.write() as session:
            imodel = domain.writable_imodel(session, imodel_id, ctx.principal)
            cs = domain.complete(
                session,
                ctx.principal,
                imodel,
                ref,
                body,
                sealed,
                jobs=ctx.svc.jobs,
                checkpoint_interval=ctx.svc.settings.checkpoint_interval,
            )
            around = domain.surroundings(session, cs.imodel_id, [cs])
            wire = _push_answer(domain.to_wire(cs, ctx.base, around=around))
            evicted = (
                checkpoints.evict(
                    session,
                    ctx.svc.settings.checkpoint_budget_bytes,
                    keep=(cs.imodel_id, made.index),
                    grace=ctx.svc.settings.checkpoint_block_grace_seconds,
                )
                if made is not None
                else []
            )
    except BaseException:
        if made is not None:  # lost the race (or failed): the checkpoint it made is no one's
            ctx.svc.blobs.delete(made.key)
        raise
    for key in evicted:  # after the commit: a reader sees the row gone before the file
        ctx.svc.blobs.delete(key)
    if made is None and sealed is not None:
        ctx.svc.jobs.wake()  # the tip's checkpoint was scheduled as a job
    return JSON({"changeset": wire})


@both(router, CHANGESET + "/checkpoint", ["GET"])
def get_changeset_checkpoint(ctx: Ctx, imodel_id: str, ref: str) -> Response:
    # A write: asking for a checkpoint that does not exist yet schedules it.
    with ctx.svc.db.write() as session:
        imodel, _ = imodels.visible_imodel(session, imodel_id, ctx.principal.user_id, access.IMODELS_READ)
        checkpoint = domain.checkpoint_at(session, ctx.svc.jobs, imodel.id, ref)
        answer = checkpoint_response(ctx, session, checkpoint)
    ctx.svc.jobs.wake()  # after the commit: this process's idle workers take a new job at once
    return answer


# ----------------------------------------------------------------------------------- extended data


@both(router, CHANGESET + "/extendeddata", ["POST"])
def create_extended_data(ctx: Ctx, imodel_id: str, ref: str, raw: Body) -> Response:
    with ctx.svc.db.write() as session:
        imodel = domain.writable_imodel(session, imodel_id, ctx.principal)
        body = parse_body(
            raw, domain.ExtendedDataCreate, code=INVALID_IMODELS, message=domain.EXTENDED_DATA_MESSAGE
        )
        row = domain.create_extended_data(session, ctx.principal, imodel, ref, body)
        wire = domain.extended_data_to_wire(row)
    return JSON({"extendedData": wire}, status_code=201)


@both(router, CHANGESET + "/extendeddata", ["GET"])
def get_extended_data(ctx: Ctx, imodel_id: str, ref: str) -> Response:
    with ctx.svc.db.read() as session:
        imodel, _ = imodels.visible_imodel(session, imodel_id, ctx.principal.user_id)
        row = domain.get_extended_data(session, imodel.id, ref)
        return JSON({"extendedData": domain.extended_data_to_wire(row)})


# -------------------------------------------------------------------------------- changeset groups


@both(router, GROUPS, ["POST"])
def create_group(ctx: Ctx, imodel_id: str, raw: Body) -> Response:
    with ctx.svc.db.write() as session:
        imodel = domain.writable_imodel(session, imodel_id, ctx.principal)
        body = parse_body(raw, domain.GroupCreate, code=INVALID_IMODELS, message=domain.GROUP_CREATE_MESSAGE)
        group = domain.create_group(session, ctx.principal, imodel, body)
        wire = domain.group_to_wire(group, ctx.base)
    return JSON({"changesetGroup": wire}, status_code=201)


@both(router, GROUPS, ["GET"])
def list_groups(ctx: Ctx, request: Request, imodel_id: str) -> Response:
    params = query_params(request)
    with ctx.svc.db.read() as session:
        imodel, _ = imodels.visible_imodel(session, imodel_id, ctx.principal.user_id)
        page = domain.query_groups(session, imodel.id, params)
        iid = imodel.id
        items = [domain.group_to_wire(g, ctx.base) for g in page.rows]
    return collection("changesetGroups", items, ctx.base, f"/imodels/{iid}/changesetgroups", params, page)


@both(router, GROUPS + "/{group_id}", ["GET"])
def get_group(ctx: Ctx, imodel_id: str, group_id: str) -> Response:
    with ctx.svc.db.read() as session:
        imodel, _ = imodels.visible_imodel(session, imodel_id, ctx.principal.user_id)
        group = domain.find_group(session, imodel.id, group_id)
        return JSON({"changesetGroup": domain.group_to_wire(group, ctx.base)})


@both(router, GROUPS + "/{group_id}", ["PATCH"])
def update_group(ctx: Ctx, imodel_id: str, group_id: str, raw: Body) -> Response:
    with ctx.svc.db.write() as session:
        imodel = domain.writable_imodel(session, imodel_id, ctx.principal)
        body = parse_body(raw, domain.GroupUpdate, code=INVALID_IMODELS, message=domain.GROUP_UPDATE_MESSAGE)
        group = domain.update_group(session, imodel, group_id, body)
        wire = domain.group_to_wire(group, ctx.base)
    return JSON({"changesetGroup": wire})


_CHANGESET_LINKS = {
    "GetChangeset": Link(
        "changesets.get_changeset",
        {"imodel_id": "$request.path.imodel_id", "ref": "$response.body#/changeset/id"},
    )
}

DOCS = api_docs(
    (
        create_changeset,
        Op(
            "Create a changeset (then upload its file and complete it)",
            s.ChangesetAnswer,
            status=201,
            body=domain.ChangesetCreate,
            errors=frozenset({403, 409}),
            links=_CHANGESET_LINKS,
        ),
    ),
    (
        list_changesets,
        Op(
            "List an iModel's changesets",
            s.ChangesetList,
            query=(
                *paging(),
                Param("afterIndex", integer(0)),
                Param("lastIndex", integer(0)),
                order_by("index"),
                PREFER,
            ),
        ),
    ),
    (list_extended_data, Op("List changeset extended data", s.ExtendedDataList, query=paging())),
    (get_changeset, Op("Get a changeset by id or index", s.ChangesetAnswer)),
    (
        complete_changeset,
        Op(
            "Complete a changeset's upload",
            s.ChangesetAnswer,
            body=domain.ChangesetUpdate,
            errors=frozenset({403, 409}),
        ),
    ),
    (
        get_changeset_checkpoint,
        Op("Get the checkpoint at exactly a changeset (scheduled if new)", s.CheckpointAnswer),
    ),
    (
        create_extended_data,
        Op(
            "Attach extended data to a changeset",
            s.ExtendedDataAnswer,
            status=201,
            body=domain.ExtendedDataCreate,
            errors=frozenset({403, 409}),
        ),
    ),
    (get_extended_data, Op("Get a changeset's extended data", s.ExtendedDataAnswer)),
    (
        create_group,
        Op(
            "Create a changeset group",
            s.ChangesetGroupAnswer,
            status=201,
            body=domain.GroupCreate,
            errors=frozenset({403}),
        ),
    ),
    (list_groups, Op("List changeset groups", s.ChangesetGroupList, query=paging())),
    (get_group, Op("Get a changeset group", s.ChangesetGroupAnswer)),
    (
        update_group,
        Op(
            "Close a changeset group",
            s.ChangesetGroupAnswer,
            body=domain.GroupUpdate,
            errors=frozenset({403}),
        ),
    ),
)
