"""HTTP for ``/imodels/{id}/briefcases`` (reference §5.3, §6)."""

from __future__ import annotations

import math

from fastapi import APIRouter, Request
from starlette.responses import Response

from twinbase.api import schemas as s
from twinbase.api.changesets import checkpoint_response
from twinbase.api.deps import Ctx
from twinbase.api.http import JSON, collection, no_content, parse_body, prefer
from twinbase.api.openapi import PREFER, Op, Param, api_docs, order_by, paging, string
from twinbase.api.routing import Body, both, query_params
from twinbase.domain import briefcases as domain
from twinbase.errors import INVALID_IMODELS, RateLimitExceeded

router = APIRouter()


@both(router, "/imodels/{imodel_id}/briefcases", ["POST"])
def acquire_briefcase(ctx: Ctx, imodel_id: str, raw: Body) -> Response:
    # iTwin.js sends ``{}``; a bare POST (no body at all) means the same.
    body = parse_body(
        raw if raw.strip() else b"{}",
        domain.BriefcaseAcquire,
        code=INVALID_IMODELS,
        message="Cannot acquire Briefcase.",
    )
    limit = ctx.svc.briefcase_limit
    if limit is not None:
        # The platform's per-user limit (MaximumNumberOfBriefcasesPerUserPerMinute in the clients).
        wait = limit.take_now(ctx.principal.user_id)
        if wait > 0:
            raise RateLimitExceeded(
                "The user acquired more briefcases in the last minute than the limit allows.",
                headers={"Retry-After": str(max(1, math.ceil(wait)))},
            )
    with ctx.svc.db.write() as session:
        briefcase = domain.acquire(session, ctx.principal, imodel_id, body)
        return JSON({"briefcase": domain.to_wire(briefcase, ctx.base)}, status_code=201)


@both(router, "/imodels/{imodel_id}/briefcases", ["GET"])
def list_briefcases(ctx: Ctx, imodel_id: str, request: Request) -> Response:
    params = query_params(request)
    mode = prefer(request)
    with ctx.svc.db.read() as session:
        imodel, page = domain.query(session, ctx.principal, imodel_id, params)
        items = [domain.to_wire(b, ctx.base, mode) for b in page.rows]
        path = f"/imodels/{imodel.id}/briefcases"
    return collection("briefcases", items, ctx.base, path, params, page)


# The literal ``checkpoint`` segment must be matched before ``{briefcase_id}``.
@both(router, "/imodels/{imodel_id}/briefcases/checkpoint", ["GET"])
def briefcase_checkpoint(ctx: Ctx, imodel_id: str) -> Response:
    with ctx.svc.db.write() as session:  # a tip without its checkpoint yet schedules it
        cp = domain.latest_checkpoint(session, ctx.svc.jobs, ctx.principal, imodel_id)
        answer = checkpoint_response(ctx, session, cp)
    ctx.svc.jobs.wake()
    return answer


@both(router, "/imodels/{imodel_id}/briefcases/{briefcase_id}", ["GET"])
def get_briefcase(ctx: Ctx, imodel_id: str, briefcase_id: str) -> Response:
    with ctx.svc.db.read() as session:
        briefcase = domain.get(session, ctx.principal, imodel_id, briefcase_id)
        return JSON({"briefcase": domain.to_wire(briefcase, ctx.base)})


@both(router, "/imodels/{imodel_id}/briefcases/{briefcase_id}", ["DELETE"])
def release_briefcase(ctx: Ctx, imodel_id: str, briefcase_id: str) -> Response:
    with ctx.svc.db.write() as session:
        domain.release(session, ctx.principal, imodel_id, briefcase_id)
    return no_content()


DOCS = api_docs(
    (
        acquire_briefcase,
        Op(
            "Acquire a briefcase",
            s.BriefcaseAnswer,
            status=201,
            body=domain.BriefcaseAcquire,
            errors=frozenset({403, 409}),
        ),
    ),
    (
        list_briefcases,
        Op(
            "List briefcases",
            s.BriefcaseList,
            query=(
                *paging(),
                Param("ownerId", string(255), "A user id, or `me`."),
                order_by("acquiredDateTime"),
                PREFER,
            ),
        ),
    ),
    (briefcase_checkpoint, Op("Get the checkpoint a new briefcase starts from", s.CheckpointAnswer)),
    (get_briefcase, Op("Get a briefcase", s.BriefcaseAnswer)),
    (release_briefcase, Op("Release a briefcase", status=204, media=None, errors=frozenset({403, 409}))),
)
