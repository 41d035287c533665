"""Briefcases: a user's writable copy of an iModel, identified by a small integer (reference §5.3, §6).

Ids run from 2 to 16777205 (iTwin.js reserves 0 for "unassigned" and 1 for standalone files), are
allocated from ``IModel.next_briefcase_id`` under the iModel's row lock and are never reused. A user
holds at most 100 briefcases per iModel. Acquiring and releasing needs ``imodels_write``; releasing
someone else's briefcase is administration and needs ``imodels_manage``. Releasing a briefcase
releases its locks. Functions take the caller's session and never commit.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictStr
from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from twinbase.domain import access, checkpoints, locks
from twinbase.domain.imodels import application_of, links_base, ordered_page, parse_paging, visible_imodel
from twinbase.domain.itwins import iso
from twinbase.domain.listing import Page
from twinbase.errors import (
    BriefcaseNotFound,
    ErrorDetail,
    InsufficientPermissions,
    ResourceQuotaExceeded,
    invalid_imodels,
)
from twinbase.identity.tokens import Principal
from twinbase.jobs.queue import JobQueue
from twinbase.store.models import Briefcase, Checkpoint, IModel

FIRST_ID = 2
LAST_ID = 16_777_205
MAX_PER_USER = 100


class BriefcaseQuotaExceeded(ResourceQuotaExceeded):
    default_message = (
        f"The maximum number of Briefcases per user per iModel ({MAX_PER_USER}) has been reached."
    )


class BriefcaseIdsExhausted(ResourceQuotaExceeded):
    default_message = "All Briefcase ids of this iModel have been used."


class BriefcaseAcquire(BaseModel):
    model_config = ConfigDict(extra="ignore")
    deviceName: StrictStr | None = Field(default=None, max_length=255)


# --------------------------------------------------------------------------------------------- rules


def parse_id(raw: str) -> int | None:
    """The briefcase id in a path or query value; ``None`` when it cannot name a briefcase."""
    if not raw.isascii() or not raw.isdigit() or len(raw) > 9:
        return None
    value = int(raw)
    return value if FIRST_ID <= value <= LAST_ID else None


def acquire(session: Session, principal: Principal, imodel_id: str, body: BriefcaseAcquire) -> Briefcase:
    imodel, _ = visible_imodel(session, imodel_id, principal.user_id, access.IMODELS_WRITE, for_update=True)
    if imodel.state != "initialized":
        raise invalid_imodels(
            "Cannot acquire Briefcase.",
            ErrorDetail("InvalidChange", "The iModel is not initialized.", "iModel"),
        )
    owned = session.scalar(
        select(func.count())
        .select_from(Briefcase)
        .where(Briefcase.imodel_id == imodel.id, Briefcase.owner_id == principal.user_id)
    )
    if (owned or 0) >= MAX_PER_USER:
        raise BriefcaseQuotaExceeded()
    briefcase_id = max(imodel.next_briefcase_id or FIRST_ID, FIRST_ID)
    if briefcase_id > LAST_ID:
        raise BriefcaseIdsExhausted()
    imodel.next_briefcase_id = briefcase_id + 1
    start = checkpoints.at_or_before(session, imodel.id, imodel.tip_index)
    app = application_of(principal)
    briefcase = Briefcase(
        imodel_id=imodel.id,
        briefcase_id=briefcase_id,
        owner_id=principal.user_id,
        device_name=body.deviceName,
        application_id=app["id"] if app else None,
        application_name=app["name"] if app else None,
        file_size=start.size,
    )
    session.add(briefcase)
    session.flush()
    return briefcase


def _readable(session: Session, imodel_id: str, principal: Principal) -> IModel:
    imodel, _ = visible_imodel(session, imodel_id, principal.user_id, access.IMODELS_READ)
    return imodel


def get(session: Session, principal: Principal, imodel_id: str, raw_id: str) -> Briefcase:
    imodel = _readable(session, imodel_id, principal)
    briefcase_id = parse_id(raw_id)
    briefcase = session.get(Briefcase, (imodel.id, briefcase_id)) if briefcase_id is not None else None
    if briefcase is None:
        raise BriefcaseNotFound()
    return briefcase


def release(session: Session, principal: Principal, imodel_id: str, raw_id: str) -> None:
    """Delete the briefcase and release its locks (exclusive ones are recorded at the current tip)."""
    imodel, perms = visible_imodel(session, imodel_id, principal.user_id, for_update=True)
    briefcase_id = parse_id(raw_id)
    briefcase = session.get(Briefcase, (imodel.id, briefcase_id)) if briefcase_id is not None else None
    if briefcase is None:
        raise BriefcaseNotFound()
    if briefcase.owner_id == principal.user_id:
        if access.IMODELS_WRITE not in perms and access.IMODELS_MANAGE not in perms:
            access.require(perms, access.IMODELS_WRITE)
    elif access.IMODELS_MANAGE not in perms:
        raise InsufficientPermissions(
            "The Briefcase is owned by another user; releasing it requires imodels_manage."
        )
    locks.release_all(session, imodel, briefcase.briefcase_id, imodel.tip_index)
    session.delete(briefcase)
    session.flush()


def latest_checkpoint(session: Session, jobs: JobQueue, principal: Principal, imodel_id: str) -> Checkpoint:
    """``/briefcases/checkpoint``: the checkpoint at exactly the tip (scheduled if it is not made yet)."""
    imodel = _readable(session, imodel_id, principal)
    checkpoints.require_baseline(session, imodel.id)
    return checkpoints.exact(session, jobs, imodel.id, imodel.tip_index, imodel.tip_changeset_id or "")


# ------------------------------------------------------------------------------------------- lists


def query(
    session: Session, principal: Principal, imodel_id: str, params: Mapping[str, str]
) -> tuple[IModel, Page[Briefcase]]:
    message = "Cannot query Briefcases."
    imodel = _readable(session, imodel_id, principal)
    paging = parse_paging(params, message=message)
    stmt: Select[Any] = select(Briefcase).where(Briefcase.imodel_id == imodel.id)
    owner = params.get("ownerId", "")
    if owner:
        stmt = stmt.where(Briefcase.owner_id == (principal.user_id if owner.lower() == "me" else owner))
    # By id by default; by acquiredDateTime when asked (ties by id, in the direction asked for).
    columns = {"acquiredDateTime": Briefcase.acquired_at}
    default = (Briefcase.briefcase_id, False)
    return imodel, ordered_page(
        session, stmt, params, paging, columns, default, Briefcase.briefcase_id, message
    )


# -------------------------------------------------------------------------------------------- wire


def display_name(briefcase: Briefcase) -> str:
    return briefcase.device_name or str(briefcase.briefcase_id)


def to_wire(
    briefcase: Briefcase, base: str, mode: Literal["minimal", "representation"] = "representation"
) -> dict[str, Any]:
    minimal: dict[str, Any] = {"id": str(briefcase.briefcase_id), "displayName": display_name(briefcase)}
    if mode == "minimal":
        return minimal
    root = links_base(base, briefcase.imodel_id)
    application = (
        {"id": briefcase.application_id, "name": briefcase.application_name or briefcase.application_id}
        if briefcase.application_id
        else None
    )
    return {
        **minimal,
        "briefcaseId": briefcase.briefcase_id,
        "ownerId": briefcase.owner_id,
        "acquiredDateTime": iso(briefcase.acquired_at),
        "fileSize": briefcase.file_size,
        "deviceName": briefcase.device_name,
        "application": application,
        "_links": {
            "owner": {"href": f"{root}/users/{briefcase.owner_id}"},
            "checkpoint": {"href": f"{root}/briefcases/checkpoint"},
        },
    }
