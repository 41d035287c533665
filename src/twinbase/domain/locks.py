"""Locks: which briefcase may change which object (reference §5.6).

An object is locked by many briefcases at ``shared`` level or by exactly one at ``exclusive``; a
sole shared holder may upgrade. Every update is all-or-nothing and runs under the iModel's row lock
(``SELECT ... FOR UPDATE`` on PostgreSQL; SQLite write transactions are serialized already), so two
briefcases can never both win an object.

When an exclusive lock is released (to ``none``, downgraded to ``shared``, by release-chunk or with
its briefcase) the changeset index it was released at is kept in ``ReleasedLock``: the given
``changesetId``'s index, else the iModel's tip. Acquiring with a ``changesetId`` older than that
index is ``NewerChangesExist`` (the requester must pull first). The recorded index only grows.

Only a release *together with a pushed changeset* is a released lock in the API's sense
(``GET /locks/released-locks``): the authoring clients release after a push with the pushed
changeset's id, so a release naming a changeset of index 1 or more is listed. A release naming no
changeset (or the baseline, ``""``) still guards acquisition at the tip, since the briefcase may have
pushed changes to the object, but it is kept with ``lock_level`` ``none`` and never listed.

Object ids are Id64 hex strings (``0x20000000001``), stored canonically: lower case, no leading
zeros. Canonical ids sort numerically by (length, text), which every listing uses.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, StrictInt, StrictStr
from sqlalchemy import case, delete, func, insert, select, update
from sqlalchemy.orm import Session

from twinbase.domain import access
from twinbase.domain.imodels import parse_paging, visible_imodel
from twinbase.domain.listing import MAX_INT, Page, fetch_page
from twinbase.errors import (
    BriefcaseNotFound,
    ChangesetNotFound,
    ConflictWithAnotherUser,
    InsufficientPermissions,
    LockNotFound,
    NewerChangesExist,
    invalid_imodels,
    invalid_value,
)
from twinbase.identity.tokens import Principal
from twinbase.store.models import Briefcase, Changeset, IModel, Lock, ReleasedLock

NONE = "none"
SHARED = "shared"
EXCLUSIVE = "exclusive"
LEVELS = (NONE, SHARED, EXCLUSIVE)
MAX_OBJECTS_PER_REQUEST = 1000
RELEASE_CHUNK = 1000
_IN_CHUNK = 500  # bound parameters per IN (...) list; old SQLite builds allow 999 in all
_OBJECT_ID = re.compile(r"0[xX]([0-9a-fA-F]{1,16})")

UPDATE_MESSAGE = "Cannot update Locks."


class LockUpdateBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    lockLevel: StrictStr
    objectIds: list[StrictStr]


class LockUpdate(BaseModel):
    model_config = ConfigDict(extra="ignore")
    briefcaseId: StrictInt
    changesetId: StrictStr | None = None
    lockedObjects: list[LockUpdateBody]


class ReleaseChunk(BaseModel):
    model_config = ConfigDict(extra="ignore")
    briefcaseId: StrictInt
    changesetId: StrictStr | None = None


class BriefcaseOfAnotherUser(InsufficientPermissions):
    default_message = "The Briefcase is owned by another user."


# ------------------------------------------------------------------------------------------- input


def canonical_object_id(raw: str) -> str | None:
    """``0x00AB`` -> ``0xab``; ``None`` when ``raw`` is not a valid (non-zero, 64-bit) Id64 string."""
    m = _OBJECT_ID.fullmatch(raw)
    if m is None:
        return None
    value = int(m.group(1), 16)
    return f"0x{value:x}" if value else None


def requested_levels(body: LockUpdate) -> dict[str, str]:
    """Object id -> requested level, in request order; 422 on anything malformed (nothing is written)."""
    total = sum(len(group.objectIds) for group in body.lockedObjects)
    if total > MAX_OBJECTS_PER_REQUEST:
        raise invalid_imodels(
            UPDATE_MESSAGE,
            invalid_value(
                "lockedObjects",
                f"Provided 'lockedObjects' value is not valid. At most {MAX_OBJECTS_PER_REQUEST} "
                f"object ids may be given in one request, {total} were given.",
            ),
        )
    wanted: dict[str, str] = {}
    for group in body.lockedObjects:
        level = group.lockLevel.lower()
        if level not in LEVELS:
            raise invalid_imodels(
                UPDATE_MESSAGE,
                invalid_value(
                    "lockedObjects",
                    f"Provided 'lockedObjects' value is not valid. Lock level '{group.lockLevel}' is not "
                    "one of none, shared, exclusive.",
                ),
            )
        for raw in group.objectIds:
            object_id = canonical_object_id(raw)
            if object_id is None:
                raise invalid_imodels(
                    UPDATE_MESSAGE,
                    invalid_value(
                        "lockedObjects",
                        f"Provided 'lockedObjects' value is not valid. '{raw[:40]}' is not an object id.",
                    ),
                )
            if wanted.setdefault(object_id, level) != level:
                raise invalid_imodels(
                    UPDATE_MESSAGE,
                    invalid_value(
                        "lockedObjects",
                        f"Provided 'lockedObjects' value is not valid. Object '{object_id}' is given "
                        "more than one lock level.",
                    ),
                )
    return wanted


# ------------------------------------------------------------------------------------------ helpers


def _chunks(items: Sequence[str], size: int = _IN_CHUNK) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _id_order() -> list[Any]:
    return [func.length(Lock.object_id), Lock.object_id]


def changeset_index(session: Session, imodel: IModel, changeset_id: str | None) -> int | None:
    """Index of ``changeset_id`` (``""`` is the baseline, 0); ``None`` when absent; 404 when unknown."""
    if changeset_id is None:
        return None
    if changeset_id == "":
        return 0
    index = session.scalar(
        select(Changeset.index).where(
            Changeset.imodel_id == imodel.id,
            Changeset.id.in_({changeset_id, changeset_id.lower()}),
            Changeset.index.is_not(None),
        )
    )
    if index is None:
        raise ChangesetNotFound()
    return int(index)


def _briefcase(
    session: Session,
    imodel: IModel,
    briefcase_id: int,
    principal: Principal,
    perms: frozenset[str],
    *,
    releasing: bool,
) -> Briefcase:
    """The briefcase the request acts for. Its owner needs ``imodels_write``; anybody else may only
    release, and only with ``imodels_manage`` (administration of stale locks)."""
    briefcase = session.get(Briefcase, (imodel.id, briefcase_id)) if 0 <= briefcase_id < 2**31 else None
    if briefcase is None:
        raise BriefcaseNotFound()
    if briefcase.owner_id == principal.user_id:
        if not (releasing and access.IMODELS_MANAGE in perms):
            access.require(perms, access.IMODELS_WRITE)
    elif not (releasing and access.IMODELS_MANAGE in perms):
        raise BriefcaseOfAnotherUser()
    return briefcase


def _released_level(changeset_index: int | None) -> str:
    """``exclusive`` (listed in released-locks) when the release named a pushed changeset, else ``none``."""
    return EXCLUSIVE if changeset_index is not None and changeset_index > 0 else NONE


def _record_released(
    session: Session, imodel_id: str, object_ids: Sequence[str], index: int, level: str
) -> None:
    """Remember that these objects' exclusive locks were released at ``index`` (keeping the newest).

    ``level`` is :func:`_released_level` of the release: at an equal index a listed release wins over
    an unlisted one, so re-releasing with the pushed changeset lists an object again."""
    if not object_ids:
        return
    known: dict[str, tuple[int, str]] = {}
    for chunk in _chunks(object_ids):
        for object_id, at, was in session.execute(
            select(ReleasedLock.object_id, ReleasedLock.changeset_index, ReleasedLock.lock_level).where(
                ReleasedLock.imodel_id == imodel_id, ReleasedLock.object_id.in_(chunk)
            )
        ):
            known[object_id] = (at, was)

    def newer(at: int, was: str) -> bool:
        return at < index or (at == index and level == EXCLUSIVE and was != EXCLUSIVE)

    raise_to = [o for o in object_ids if o in known and newer(*known[o])]
    for chunk in _chunks(raise_to):
        session.execute(
            update(ReleasedLock)
            .where(ReleasedLock.imodel_id == imodel_id, ReleasedLock.object_id.in_(chunk))
            .values(changeset_index=index, lock_level=level)
        )
    fresh = [
        {"imodel_id": imodel_id, "object_id": o, "changeset_index": index, "lock_level": level}
        for o in object_ids
        if o not in known
    ]
    if fresh:
        session.execute(insert(ReleasedLock), fresh)


def _delete_locks(session: Session, imodel_id: str, briefcase_id: int, object_ids: Sequence[str]) -> None:
    for chunk in _chunks(object_ids):
        session.execute(
            delete(Lock).where(
                Lock.imodel_id == imodel_id, Lock.briefcase_id == briefcase_id, Lock.object_id.in_(chunk)
            )
        )


def lock_set(session: Session, imodel_id: str, briefcase_id: int) -> list[dict[str, Any]]:
    """The briefcase's whole lock set grouped by level (shared first); ``[]`` when it holds none."""
    rows = session.execute(
        select(Lock.lock_level, Lock.object_id)
        .where(Lock.imodel_id == imodel_id, Lock.briefcase_id == briefcase_id)
        .order_by(Lock.lock_level.desc(), *_id_order())
    )
    return _group_levels(rows)


def _group_levels(rows: Iterable[Any]) -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = []
    for level, object_id in rows:
        if not groups or groups[-1]["lockLevel"] != level:
            groups.append({"lockLevel": level, "objectIds": []})
        groups[-1]["objectIds"].append(object_id)
    return groups


# ------------------------------------------------------------------------------------------ update


def update_locks(
    session: Session, principal: Principal, imodel_id: str, body: LockUpdate
) -> list[dict[str, Any]]:
    """Apply one PATCH /locks all-or-nothing; answer the briefcase's lock set afterwards."""
    wanted = requested_levels(body)
    imodel, perms = visible_imodel(session, imodel_id, principal.user_id, for_update=True)
    releasing = all(level == NONE for level in wanted.values())
    if releasing:
        if access.IMODELS_WRITE not in perms and access.IMODELS_MANAGE not in perms:
            access.require(perms, access.IMODELS_WRITE)
    else:
        access.require(perms, access.IMODELS_WRITE)
    briefcase = _briefcase(session, imodel, body.briefcaseId, principal, perms, releasing=releasing)
    bid = briefcase.briefcase_id
    index = changeset_index(session, imodel, body.changesetId)

    object_ids = list(wanted)
    mine: dict[str, str] = {}
    others: dict[str, list[tuple[int, str]]] = {}
    held_at: dict[str, int] = {}  # the newest changeset index another holder took the lock at
    for chunk in _chunks(object_ids):
        for object_id, holder, level, at in session.execute(
            select(Lock.object_id, Lock.briefcase_id, Lock.lock_level, Lock.changeset_index).where(
                Lock.imodel_id == imodel.id, Lock.object_id.in_(chunk)
            )
        ):
            if holder == bid:
                mine[object_id] = level
            else:
                others.setdefault(object_id, []).append((holder, level))
                if at is not None:
                    held_at[object_id] = max(at, held_at.get(object_id, at))

    if any(level == NONE and o not in mine for o, level in wanted.items()):
        raise LockNotFound()

    conflicts: list[dict[str, Any]] = []
    for object_id, level in wanted.items():
        if level == NONE or mine.get(object_id) == level:
            continue
        holders = others.get(object_id, [])
        blocking = holders if level == EXCLUSIVE else [h for h in holders if h[1] == EXCLUSIVE]
        if blocking:
            held = EXCLUSIVE if any(h[1] == EXCLUSIVE for h in blocking) else SHARED
            conflicts.append(
                {
                    "objectId": object_id,
                    "lockLevel": held,
                    "briefcaseIds": sorted(h[0] for h in blocking),
                }
            )
    if conflicts:
        raise ConflictWithAnotherUser(extra={"conflictingLocks": conflicts})

    acquiring = [o for o, level in wanted.items() if level != NONE and mine.get(o) != level]
    if index is not None and acquiring:
        newer: set[str] = set()
        for chunk in _chunks(acquiring):
            newer.update(
                session.scalars(
                    select(ReleasedLock.object_id).where(
                        ReleasedLock.imodel_id == imodel.id,
                        ReleasedLock.object_id.in_(chunk),
                        ReleasedLock.changeset_index > index,
                    )
                )
            )
        newer.update(o for o in acquiring if held_at.get(o, -1) > index)
        if newer:
            raise NewerChangesExist(extra={"objectIds": [o for o in acquiring if o in newer]})

    release_index = index if index is not None else imodel.tip_index
    to_none = [o for o, level in wanted.items() if level == NONE]
    new: dict[str, list[str]] = {SHARED: [], EXCLUSIVE: []}
    changed: dict[str, list[str]] = {SHARED: [], EXCLUSIVE: []}
    for object_id in acquiring:
        target = wanted[object_id]
        (changed if object_id in mine else new)[target].append(object_id)
    released_exclusive = [o for o in to_none + changed[SHARED] if mine.get(o) == EXCLUSIVE]

    _delete_locks(session, imodel.id, bid, to_none)
    for level, ids in changed.items():
        for chunk in _chunks(ids):
            values: dict[str, Any] = {"lock_level": level}
            if index is not None:
                # Keep the newest index the holder has named for this object.
                values["changeset_index"] = case(
                    (Lock.changeset_index.is_(None), index),
                    (Lock.changeset_index < index, index),
                    else_=Lock.changeset_index,
                )
            session.execute(
                update(Lock)
                .where(Lock.imodel_id == imodel.id, Lock.briefcase_id == bid, Lock.object_id.in_(chunk))
                .values(**values)
            )
    rows = [
        {
            "imodel_id": imodel.id,
            "object_id": o,
            "briefcase_id": bid,
            "lock_level": level,
            "changeset_index": index,
        }
        for level, ids in new.items()
        for o in ids
    ]
    if rows:
        session.execute(insert(Lock), rows)
    _record_released(session, imodel.id, released_exclusive, release_index, _released_level(index))
    session.flush()
    return lock_set(session, imodel.id, bid)


def release_all(session: Session, imodel: IModel, briefcase_id: int, index: int) -> None:
    """Release every lock of a briefcase (the caller holds the iModel row lock); no changeset is
    pushed with it, so its exclusive locks guard acquisition at ``index`` but are not listed."""
    exclusive = list(
        session.scalars(
            select(Lock.object_id).where(
                Lock.imodel_id == imodel.id, Lock.briefcase_id == briefcase_id, Lock.lock_level == EXCLUSIVE
            )
        )
    )
    session.execute(delete(Lock).where(Lock.imodel_id == imodel.id, Lock.briefcase_id == briefcase_id))
    _record_released(session, imodel.id, exclusive, index, NONE)


def release_chunk(session: Session, principal: Principal, imodel_id: str, body: ReleaseChunk) -> bool:
    """Release up to 1000 of the briefcase's locks; ``True`` when none is left afterwards."""
    imodel, perms = visible_imodel(session, imodel_id, principal.user_id, for_update=True)
    if access.IMODELS_WRITE not in perms and access.IMODELS_MANAGE not in perms:
        access.require(perms, access.IMODELS_WRITE)
    briefcase = _briefcase(session, imodel, body.briefcaseId, principal, perms, releasing=True)
    bid = briefcase.briefcase_id
    index = changeset_index(session, imodel, body.changesetId)
    release_index = index if index is not None else imodel.tip_index
    rows = list(
        session.execute(
            select(Lock.object_id, Lock.lock_level)
            .where(Lock.imodel_id == imodel.id, Lock.briefcase_id == bid)
            .order_by(*_id_order())
            .limit(RELEASE_CHUNK + 1)
        )
    )
    chunk = rows[:RELEASE_CHUNK]
    _delete_locks(session, imodel.id, bid, [r[0] for r in chunk])
    exclusive = [r[0] for r in chunk if r[1] == EXCLUSIVE]
    _record_released(session, imodel.id, exclusive, release_index, _released_level(index))
    session.flush()
    return len(rows) <= RELEASE_CHUNK


# ------------------------------------------------------------------------------------------- lists


def _listable(session: Session, imodel_id: str, principal: Principal) -> IModel:
    """Lock lists need ``imodels_read``; a writer may always see the locks (the release loop)."""
    imodel, perms = visible_imodel(session, imodel_id, principal.user_id)
    if access.IMODELS_WRITE not in perms:
        access.require(perms, access.IMODELS_READ)
    return imodel


def query(
    session: Session, principal: Principal, imodel_id: str, params: Mapping[str, str]
) -> tuple[IModel, Page[dict[str, Any]], int]:
    """``GET /locks``: one entity per briefcase; ``$top``/``$skip`` count object ids, not entities
    (the third value is how many object ids the page holds)."""
    message = "Cannot query Locks."
    imodel = _listable(session, imodel_id, principal)
    paging = parse_paging(params, message=message)
    stmt = select(Lock.briefcase_id, Lock.lock_level, Lock.object_id).where(Lock.imodel_id == imodel.id)
    raw_briefcase = params.get("briefcaseId", "")
    if raw_briefcase:
        try:
            briefcase_id = int(raw_briefcase)
        except ValueError as exc:
            raise invalid_imodels(message, invalid_value("briefcaseId")) from exc
        # An id no briefcase can have simply matches nothing (an unknown briefcase is not a 404 here).
        stmt = stmt.where(Lock.briefcase_id == (briefcase_id if 0 <= briefcase_id < 2**31 else -1))
    level = params.get("lockLevel", "").lower()
    if level:
        if level not in (SHARED, EXCLUSIVE):
            raise invalid_imodels(message, invalid_value("lockLevel"))
        stmt = stmt.where(Lock.lock_level == level)
    stmt = stmt.order_by(Lock.briefcase_id, Lock.lock_level.desc(), *_id_order())
    rows = list(session.execute(stmt.offset(paging.skip).limit(paging.top + 1)))
    entities: list[dict[str, Any]] = []
    for holder, lock_level, object_id in rows[: paging.top]:
        if not entities or entities[-1]["briefcaseId"] != holder:
            entities.append({"briefcaseId": holder, "lockedObjects": []})
        groups = entities[-1]["lockedObjects"]
        if not groups or groups[-1]["lockLevel"] != lock_level:
            groups.append({"lockLevel": lock_level, "objectIds": []})
        groups[-1]["objectIds"].append(object_id)
    return imodel, Page(entities, paging, len(rows) > paging.top), min(len(rows), paging.top)


def released(
    session: Session, principal: Principal, imodel_id: str, params: Mapping[str, str]
) -> tuple[IModel, Page[str]]:
    """``GET /locks/released-locks``: objects whose exclusive lock was released together with a
    pushed changeset of index greater than ``afterChangesetIndex``."""
    message = "Cannot query Released Locks."
    imodel = _listable(session, imodel_id, principal)
    paging = parse_paging(params, message=message)
    raw_after = params.get("afterChangesetIndex", "")
    after = -1
    if raw_after:
        after = int(raw_after) if raw_after.isascii() and raw_after.isdigit() else -1
        if not 0 <= after <= MAX_INT:
            raise invalid_imodels(message, invalid_value("afterChangesetIndex"))
    stmt = (
        select(ReleasedLock.object_id)
        .where(
            ReleasedLock.imodel_id == imodel.id,
            ReleasedLock.lock_level == EXCLUSIVE,
            ReleasedLock.changeset_index > after,
        )
        .order_by(ReleasedLock.changeset_index, func.length(ReleasedLock.object_id), ReleasedLock.object_id)
    )
    return imodel, fetch_page(session, stmt, paging)
