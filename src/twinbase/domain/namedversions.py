"""Named versions: a name on the baseline (index 0) or on a completed changeset (reference §5.5, §6).

A name is unique in its iModel (``NamedVersionExists``) and a changeset carries at most one named
version (``NamedVersionOnChangesetExists``); both are also unique constraints, so concurrent creates
cannot slip past the checks. Functions take the caller's session and never commit.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, field_validator
from sqlalchemy import Select, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from twinbase.domain import access, changesets, checkpoints
from twinbase.domain.imodels import Text255, application_of, ordered_page, parse_paging, user_href
from twinbase.domain.itwins import iso
from twinbase.domain.listing import Page, like_contains
from twinbase.errors import (
    ErrorDetail,
    NamedVersionExists,
    NamedVersionNotFound,
    NamedVersionOnChangesetExists,
    invalid_imodels,
    invalid_value,
)
from twinbase.identity.tokens import Principal
from twinbase.jobs.queue import JobQueue
from twinbase.store.models import Checkpoint, IModel, NamedVersion, new_id

CREATE_MESSAGE = "Cannot create Named Version."
UPDATE_MESSAGE = "Cannot update Named Version."
QUERY_MESSAGE = "Cannot query Named Versions."
STATES = ("visible", "hidden")


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty or whitespace")
    return value


class NamedVersionCreate(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: Text255 = Field(min_length=1)
    description: Text255 | None = None
    changesetId: StrictStr | None = None
    changesetIndex: StrictInt | None = Field(default=None, ge=0, le=changesets.MAX_INT32)

    @field_validator("name", "changesetId")
    @classmethod
    def _blank(cls, value: str | None) -> str | None:
        return None if value is None else _not_blank(value)


class NamedVersionUpdate(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: Text255 | None = Field(default=None, min_length=1)
    description: Text255 | None = None
    state: StrictStr | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        return None if value is None else _not_blank(value)

    @field_validator("state")
    @classmethod
    def _state(cls, value: str | None) -> str | None:
        if value is not None and value not in STATES:
            raise ValueError("must be 'visible' or 'hidden'")
        return value


# ------------------------------------------------------------------------------------------- write


def _name_taken(session: Session, imodel_id: str, name: str, except_id: str | None = None) -> bool:
    stmt = select(NamedVersion.id).where(NamedVersion.imodel_id == imodel_id, NamedVersion.name == name)
    if except_id is not None:
        stmt = stmt.where(NamedVersion.id != except_id)
    return session.scalar(stmt.limit(1)) is not None


def _index_taken(session: Session, imodel_id: str, index: int) -> bool:
    stmt = select(NamedVersion.id).where(
        NamedVersion.imodel_id == imodel_id, NamedVersion.changeset_index == index
    )
    return session.scalar(stmt.limit(1)) is not None


def _write_or_conflict(
    session: Session, imodel_id: str, name: str, nv_id: str, write: Callable[[], None]
) -> None:
    """Apply ``write`` in a savepoint; losing a unique-constraint race gives the error the checks give.

    The change is made inside the savepoint (``begin_nested`` flushes what is pending *before* it
    starts), so a violation rolls back only the savepoint and the session can still ask which rule broke.
    """
    try:
        with session.begin_nested():
            write()
            session.flush()
    except IntegrityError as exc:
        if _name_taken(session, imodel_id, name, nv_id):
            raise NamedVersionExists() from exc
        raise NamedVersionOnChangesetExists() from exc


def create(
    session: Session, jobs: JobQueue, principal: Principal, imodel: IModel, body: NamedVersionCreate
) -> NamedVersion:
    """Create the named version and schedule its checkpoint at once (kept for good: pinned)."""
    if body.changesetId is not None and body.changesetIndex is not None:
        raise invalid_imodels(
            CREATE_MESSAGE,
            ErrorDetail(
                "MutuallyExclusivePropertiesProvided",
                "Properties 'changesetId' and 'changesetIndex' cannot be used together.",
                "changesetId",
            ),
        )
    changeset_id: str | None = None
    index = 0
    ref = body.changesetId if body.changesetId is not None else str(body.changesetIndex or 0)
    if ref != "0":
        cs = changesets.find_completed(session, imodel.id, ref)
        assert cs.index is not None
        changeset_id, index = cs.id, cs.index
    if _name_taken(session, imodel.id, body.name):
        raise NamedVersionExists()
    if _index_taken(session, imodel.id, index):
        raise NamedVersionOnChangesetExists()
    app = application_of(principal)
    nv = NamedVersion(
        id=new_id(),
        imodel_id=imodel.id,
        name=body.name,
        description=body.description,
        changeset_id=changeset_id,
        changeset_index=index,
        state="visible",
        creator_id=principal.user_id,
        application_id=app["id"] if app else None,
        application_name=app["name"] if app else None,
    )
    _write_or_conflict(session, imodel.id, body.name, nv.id, lambda: session.add(nv))
    checkpoint(session, jobs, nv)
    return nv


def checkpoint(session: Session, jobs: JobQueue, nv: NamedVersion) -> Checkpoint:
    """The named version's checkpoint, at exactly its changeset; scheduled (and pinned) if new."""
    return checkpoints.exact(
        session,
        jobs,
        nv.imodel_id,
        nv.changeset_index,
        nv.changeset_id or "",
        pinned=checkpoints.PIN_NAMED_VERSION,
    )


def find(session: Session, imodel_id: str, nv_id: str, *, for_update: bool = False) -> NamedVersion:
    nv = session.get(NamedVersion, nv_id, with_for_update=for_update) if access.is_uuid(nv_id) else None
    if nv is None or nv.imodel_id != imodel_id:
        raise NamedVersionNotFound()
    return nv


def update(session: Session, imodel: IModel, nv_id: str, body: NamedVersionUpdate) -> NamedVersion:
    given = body.model_fields_set & {"name", "description", "state"}
    if not given:
        raise invalid_imodels(
            UPDATE_MESSAGE,
            ErrorDetail(
                "InvalidRequestBody", "At least one of 'name', 'description', 'state' is required.", None
            ),
        )
    for field in ("name", "state"):
        if field in given and getattr(body, field) is None:
            raise invalid_imodels(UPDATE_MESSAGE, invalid_value(field))
    nv = find(session, imodel.id, nv_id, for_update=True)
    name = body.name if body.name is not None else nv.name
    if name != nv.name and _name_taken(session, imodel.id, name, nv.id):
        raise NamedVersionExists()

    def write() -> None:
        nv.name = name
        if "description" in given:
            nv.description = body.description
        if body.state is not None:
            nv.state = body.state

    _write_or_conflict(session, imodel.id, name, nv.id, write)
    return nv


# -------------------------------------------------------------------------------------------- list


def query(session: Session, imodel_id: str, params: Mapping[str, str]) -> Page[NamedVersion]:
    paging = parse_paging(params, message=QUERY_MESSAGE)
    stmt: Select[Any] = select(NamedVersion).where(NamedVersion.imodel_id == imodel_id)
    if params.get("name"):
        stmt = stmt.where(NamedVersion.name == params["name"])
    state = params.get("state")
    if state:
        if state not in STATES:
            raise invalid_imodels(QUERY_MESSAGE, invalid_value("state"))
        stmt = stmt.where(NamedVersion.state == state)
    search = params.get("$search")
    if search:
        stmt = stmt.where(like_contains(NamedVersion.name, search))
    columns = {"changesetIndex": NamedVersion.changeset_index, "createdDateTime": NamedVersion.created_at}
    default = (NamedVersion.changeset_index, False)
    return ordered_page(session, stmt, params, paging, columns, default, NamedVersion.id, QUERY_MESSAGE)


# -------------------------------------------------------------------------------------------- wire


def to_wire(
    nv: NamedVersion, base: str, mode: Literal["minimal", "representation"] = "representation"
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": nv.id,
        "displayName": nv.name,
        "changesetId": nv.changeset_id,
        "changesetIndex": nv.changeset_index,
    }
    if mode == "minimal":
        return out
    out.update(
        {
            "name": nv.name,
            "description": nv.description,
            "createdDateTime": iso(nv.created_at),
            "state": nv.state,
            "application": (
                {"id": nv.application_id, "name": nv.application_name or nv.application_id}
                if nv.application_id
                else None
            ),
            "_links": {
                "creator": {"href": user_href(base, nv.imodel_id, nv.creator_id)},
                "changeset": (
                    {"href": changesets.changeset_href(base, nv.imodel_id, nv.changeset_id)}
                    if nv.changeset_id
                    else None
                ),
            },
        }
    )
    return out
