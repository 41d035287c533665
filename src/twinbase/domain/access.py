"""Who may see and do what in an iTwin.

A user's permissions in an iTwin are: everything when they own it (or own its Account, the
organization administrator case); otherwise the union of the permissions of their roles there;
``None`` when they are not a member at all. Callers turn ``None`` into 404 (never a hint that the
iTwin exists) and a missing permission into 403.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, bindparam, or_, select
from sqlalchemy.orm import Session

from twinbase.errors import InsufficientPermissions, ITwinNotFound
from twinbase.store.models import ITwin, Member, MemberRole, Role

ITWINS_READ = "itwins_read"
ITWINS_CREATE = "itwins_create"
ITWINS_MODIFY = "itwins_modify"
ITWINS_DELETE = "itwins_delete"
MEMBERS_READ = "itwins_members_read"
MEMBERS_MODIFY = "itwins_members_modify"
MANAGE_ROLES = "administration_manage_roles"
INVITE_MEMBER = "administration_invite_member"
IMODELS_WEBVIEW = "imodels_webview"
IMODELS_READ = "imodels_read"
IMODELS_WRITE = "imodels_write"
IMODELS_MANAGE = "imodels_manage"
IMODELS_DELETE = "imodels_delete"

ALL_PERMISSIONS: tuple[str, ...] = (
    ITWINS_READ,
    ITWINS_CREATE,
    ITWINS_MODIFY,
    ITWINS_DELETE,
    MEMBERS_READ,
    MEMBERS_MODIFY,
    MANAGE_ROLES,
    INVITE_MEMBER,
    IMODELS_WEBVIEW,
    IMODELS_READ,
    IMODELS_WRITE,
    IMODELS_MANAGE,
    IMODELS_DELETE,
)

PERMISSION_DESCRIPTIONS: dict[str, str] = {
    ITWINS_READ: "Read the iTwin and its repositories.",
    ITWINS_CREATE: "Create child iTwins.",
    ITWINS_MODIFY: "Update the iTwin, its image, repositories and resources.",
    ITWINS_DELETE: "Delete the iTwin.",
    MEMBERS_READ: "See the iTwin's members.",
    MEMBERS_MODIFY: "Change the iTwin's members.",
    MANAGE_ROLES: "Create, change and delete the iTwin's roles.",
    INVITE_MEMBER: "Add members to the iTwin.",
    IMODELS_WEBVIEW: "View iModels in a browser.",
    IMODELS_READ: "Open iModels read-only and download them.",
    IMODELS_WRITE: "Push changes and create named versions.",
    IMODELS_MANAGE: "Create iModels, manage briefcases and locks.",
    IMODELS_DELETE: "Delete iModels.",
}

ALL = frozenset(ALL_PERMISSIONS)

# Roles every new iTwin starts with; the creator is its owner (all permissions).
DEFAULT_ROLES: dict[str, tuple[str, tuple[str, ...]]] = {
    "Administrator": ("Full control of the iTwin.", ALL_PERMISSIONS),
    "Contributor": (
        "Read the iTwin, read and write its iModels.",
        (ITWINS_READ, MEMBERS_READ, IMODELS_WEBVIEW, IMODELS_READ, IMODELS_WRITE),
    ),
    "Reader": (
        "Read the iTwin and view its iModels.",
        (ITWINS_READ, MEMBERS_READ, IMODELS_WEBVIEW, IMODELS_READ),
    ),
}


def permissions_of(session: Session, itwin: ITwin, user_id: str) -> frozenset[str] | None:
    """The user's permissions in ``itwin``; ``None`` for a non-member.

    One indexed query for the memberships that matter (the iTwin and its Account), a second only
    for role holders: this runs on every request, so it stays small.
    """
    scope = (
        [itwin.id]
        if not itwin.itwin_account_id or itwin.itwin_account_id == itwin.id
        else [
            itwin.id,
            itwin.itwin_account_id,
        ]
    )
    rows = session.execute(
        select(Member.itwin_id, Member.is_owner).where(Member.user_id == user_id, Member.itwin_id.in_(scope))
    ).all()
    if any(is_owner for _, is_owner in rows):
        return ALL
    if not any(itwin_id == itwin.id for itwin_id, _ in rows):
        return None
    perms: set[str] = set()
    for role_perms in session.scalars(
        select(Role.permissions)
        .join(MemberRole, MemberRole.role_id == Role.id)
        .where(MemberRole.itwin_id == itwin.id, MemberRole.user_id == user_id)
    ):
        perms.update(role_perms or ())
    return frozenset(perms)


def visible_itwin(
    session: Session, itwin_id: str, user_id: str, *, for_update: bool = False
) -> tuple[ITwin, frozenset[str]]:
    """The iTwin and the caller's permissions, or 404 ``iTwinNotFound`` when they cannot see it."""
    itwin = session.get(ITwin, itwin_id, with_for_update=for_update) if is_uuid(itwin_id) else None
    if itwin is None:
        raise ITwinNotFound()
    perms = permissions_of(session, itwin, user_id)
    if perms is None:
        raise ITwinNotFound()
    return itwin, perms


# Every ITwin column labelled with its attribute name, so a Core row reads like the ORM object.
_ITWIN_ROW = [col.label(attr.key) for attr in ITwin.__mapper__.column_attrs for col in attr.columns]


def _itwin_row_statement() -> Any:
    owner = (
        select(Member.itwin_id)
        .where(
            Member.user_id == bindparam("user_id"),
            Member.is_owner.is_(True),
            or_(Member.itwin_id == ITwin.id, Member.itwin_id == ITwin.itwin_account_id),
        )
        .exists()
    )
    member = select(Member.itwin_id).where(
        Member.user_id == bindparam("user_id"), Member.itwin_id == ITwin.id
    )
    return select(*_ITWIN_ROW, owner.label("is_owner"), member.exists().label("is_member")).where(
        ITwin.id == bindparam("itwin_id")
    )


# Built once: composing and keying this statement per request would cost more than running it.
_ITWIN_ROW_STATEMENT = _itwin_row_statement()
_ROLE_PERMISSIONS = (
    select(Role.permissions)
    .join(MemberRole, MemberRole.role_id == Role.id)
    .where(MemberRole.itwin_id == bindparam("itwin_id"), MemberRole.user_id == bindparam("user_id"))
)


def visible_itwin_row(
    session: Session | Connection, itwin_id: str, user_id: str
) -> tuple[Any, frozenset[str]]:
    """Like ``visible_itwin`` for read-only use, in one Core query: the hot path of ``GET /itwins/{id}``.

    The row carries ``is_owner`` (of the iTwin or of its Account) and ``is_member``; roles are read
    only for members who are not owners.
    """
    if not is_uuid(itwin_id):
        raise ITwinNotFound()
    params = {"itwin_id": itwin_id, "user_id": user_id}
    row = session.execute(_ITWIN_ROW_STATEMENT, params).first()
    if row is None or not (row.is_owner or row.is_member):
        raise ITwinNotFound()
    if row.is_owner:
        return row, ALL
    perms: set[str] = set()
    for role_perms in session.scalars(_ROLE_PERMISSIONS, params):
        perms.update(role_perms or ())
    return row, frozenset(perms)


def require(perms: Iterable[str], *needed: str) -> None:
    have = set(perms)
    missing = [p for p in needed if p not in have]
    if missing:
        raise InsufficientPermissions(
            "The user has insufficient permissions for the requested operation: "
            f"{', '.join(missing)} required."
        )


def is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except (ValueError, AttributeError, TypeError):
        return False
    return True
