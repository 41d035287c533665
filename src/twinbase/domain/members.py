"""Roles and members of an iTwin: the Access Control API v2 (reference part D).

The model. A user is a member of an iTwin while a ``Member`` row exists; that row exists only while
they are an owner (``Member.is_owner``) or hold at least one role (``member_roles``). The API shows
the two facets separately, as the platform does: ``members/users`` are the members holding roles,
``members/owners`` the owners. Removing a user member strips their roles and keeps an owner an owner;
removing an owner keeps their roles. Whoever ends up with neither stops being a member, so they get
404 on the iTwin again, never 403.

Members are added by email. An address twinbase has never seen becomes an invited placeholder user
(``invited:<email>``) that ``domain.itwins.ensure_user`` re-keys to the real user on first sign-in.

Permissions: reading roles needs ``itwins_members_read`` or ``administration_manage_roles``; writing
them ``administration_manage_roles``. Reading members needs ``itwins_members_read`` or
``administration_invite_member``; adding and removing members and owners needs
``administration_invite_member`` (changing a member's roles also accepts ``itwins_members_modify``).
Owners, and owners of the iTwin's Account, hold every permission (``access.permissions_of``).
Every write locks the iTwin row first, so concurrent changes to one iTwin's members run one at a time
(the last-owner rule relies on it). Functions take the caller's session and never commit.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, cast

from pydantic import BaseModel, ConfigDict, Field, StrictStr, field_validator
from sqlalchemy import Select, delete, exists, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from twinbase.domain import access
from twinbase.domain.listing import Page, Paging, fetch_entities_by_key, paging_or_raise
from twinbase.errors import (
    Conflict,
    ErrorDetail,
    InsufficientPermissions,
    InvalidRequest,
    MemberNotFound,
    RoleNotFound,
    invalid_value,
)
from twinbase.store.models import ITwin, Member, MemberRole, Role, User

INVALID = "InvalidAccessControlRequest"
MESSAGE = "Cannot perform operation."

INVITED_PREFIX = "invited:"
MAX_EMAIL = 255 - len(INVITED_PREFIX)  # the placeholder's id must fit users.id
MAX_ROLE_ASSIGNMENTS = 50  # per add-members request, as the platform limits it
DEFAULT_TOP = 100
MAX_TOP = 1000

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class RoleExists(Conflict):
    code = "RoleExists"
    default_message = "Role already exists."


def invalid(*details: ErrorDetail) -> InvalidRequest:
    return InvalidRequest(MESSAGE, code=INVALID, details=list(details))


# ---------------------------------------------------------------------------------------- input models


def _not_blank(value: str | None) -> str | None:
    if value is not None and not value.strip():
        raise ValueError("must not be blank")
    return value


def _email(value: str) -> str:
    value = value.strip()
    if not _EMAIL.match(value):
        raise ValueError("must be an email address")
    return value


class RoleCreate(BaseModel):
    model_config = ConfigDict(extra="ignore")

    displayName: StrictStr = Field(min_length=1, max_length=255)
    description: StrictStr | None = Field(default=None, max_length=1024)

    check_name = field_validator("displayName")(_not_blank)


class RoleUpdate(BaseModel):
    """Only the fields present change; ``permissions`` replaces the role's whole list."""

    model_config = ConfigDict(extra="ignore")

    displayName: StrictStr | None = Field(default=None, min_length=1, max_length=255)
    description: StrictStr | None = Field(default=None, max_length=1024)
    permissions: list[StrictStr] | None = Field(default=None, max_length=100)

    check_name = field_validator("displayName")(_not_blank)


class UserMemberAdd(BaseModel):
    model_config = ConfigDict(extra="ignore")

    email: StrictStr = Field(min_length=3, max_length=MAX_EMAIL)
    roleIds: list[StrictStr] = Field(min_length=1, max_length=MAX_ROLE_ASSIGNMENTS)

    check_email = field_validator("email")(_email)


class UserMembersAdd(BaseModel):
    model_config = ConfigDict(extra="ignore")

    members: list[UserMemberAdd] = Field(min_length=1, max_length=MAX_ROLE_ASSIGNMENTS)


class UserMemberUpdate(BaseModel):
    model_config = ConfigDict(extra="ignore")

    roleIds: list[StrictStr] = Field(max_length=MAX_ROLE_ASSIGNMENTS)


class OwnerAdd(BaseModel):
    model_config = ConfigDict(extra="ignore")

    email: StrictStr = Field(min_length=3, max_length=MAX_EMAIL)

    check_email = field_validator("email")(_email)


def parse_page(params: dict[str, str]) -> Paging:
    return paging_or_raise(
        params, lambda details: invalid(*details), default_top=DEFAULT_TOP, max_top=MAX_TOP
    )


# ------------------------------------------------------------------------------------------ wire shape


def role_wire(role: Role, *, with_permissions: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": role.id,
        "displayName": role.display_name,
        "description": role.description or "",
    }
    if with_permissions:
        out["permissions"] = list(role.permissions or [])
    return out


def owner_wire(user: User) -> dict[str, Any]:
    return {
        "id": user.id,
        "email": user.email,
        "givenName": user.given_name or "",
        "surname": user.surname or "",
        "organization": user.organization or "",
    }


def user_member_wire(user: User, roles: Iterable[Role]) -> dict[str, Any]:
    return {**owner_wire(user), "roles": [role_wire(r, with_permissions=False) for r in roles]}


# -------------------------------------------------------------------------------------- permissions


def all_permissions() -> list[dict[str, str]]:
    return [
        {"id": p, "displayName": p, "description": access.PERMISSION_DESCRIPTIONS.get(p, "")}
        for p in access.ALL_PERMISSIONS
    ]


def my_permissions(session: Session, user_id: str, itwin_id: str) -> list[str]:
    _itwin, perms = access.visible_itwin(session, itwin_id, user_id)
    return [p for p in access.ALL_PERMISSIONS if p in perms]


def _itwin(session: Session, user_id: str, itwin_id: str, *any_of: str, write: bool = False) -> ITwin:
    """The iTwin when the caller holds one of ``any_of`` there; 404 for non-members, 403 otherwise."""
    itwin, perms = access.visible_itwin(session, itwin_id, user_id, for_update=write)
    if not perms.intersection(any_of):
        raise InsufficientPermissions(
            "The user has insufficient permissions for the requested operation: "
            f"{' or '.join(any_of)} required."
        )
    return itwin


def _canonical_permissions(names: Sequence[str]) -> list[str]:
    unknown = list(dict.fromkeys(n for n in names if n not in access.ALL_PERMISSIONS))
    if unknown:
        raise invalid(*(invalid_value("permissions", f"Permission '{n}' does not exist.") for n in unknown))
    wanted = set(names)
    return [p for p in access.ALL_PERMISSIONS if p in wanted]


# -------------------------------------------------------------------------------------------- roles

_ROLES_READ = (access.MEMBERS_READ, access.MANAGE_ROLES)


def list_roles(session: Session, user_id: str, itwin_id: str) -> list[Role]:
    itwin = _itwin(session, user_id, itwin_id, *_ROLES_READ)
    return list(
        session.scalars(select(Role).where(Role.itwin_id == itwin.id).order_by(Role.display_name, Role.id))
    )


def get_role(session: Session, user_id: str, itwin_id: str, role_id: str) -> Role:
    itwin = _itwin(session, user_id, itwin_id, *_ROLES_READ)
    return _role(session, itwin, role_id)


def _role(session: Session, itwin: ITwin, role_id: str) -> Role:
    role = session.get(Role, role_id) if access.is_uuid(role_id) else None
    if role is None or role.itwin_id != itwin.id:
        raise RoleNotFound()
    return role


def _check_name_free(session: Session, itwin: ITwin, name: str, except_id: str | None) -> None:
    clash = session.scalar(
        select(Role.id).where(
            Role.itwin_id == itwin.id,
            func.lower(Role.display_name) == name.lower(),
            Role.id != (except_id or ""),
        )
    )
    if clash:
        raise _role_exists(name)


def _role_exists(name: str) -> RoleExists:
    return RoleExists(
        "Role already exists.",
        details=[
            ErrorDetail("InvalidValue", f"A role named '{name}' already exists in the iTwin.", "displayName")
        ],
    )


def _flush_role(session: Session, role: Role) -> None:
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError as exc:  # a concurrent request took the name between check and write
        raise _role_exists(role.display_name) from exc


def create_role(session: Session, user_id: str, itwin_id: str, body: RoleCreate) -> Role:
    itwin = _itwin(session, user_id, itwin_id, access.MANAGE_ROLES, write=True)
    _check_name_free(session, itwin, body.displayName, None)
    role = Role(
        itwin_id=itwin.id, display_name=body.displayName, description=body.description or "", permissions=[]
    )
    session.add(role)
    _flush_role(session, role)
    return role


def update_role(session: Session, user_id: str, itwin_id: str, role_id: str, body: RoleUpdate) -> Role:
    itwin = _itwin(session, user_id, itwin_id, access.MANAGE_ROLES, write=True)
    role = _role(session, itwin, role_id)
    given = body.model_fields_set
    details = [
        invalid_value(name, f"'{name}' cannot be null.")
        for name in ("displayName", "permissions")
        if name in given and getattr(body, name) is None
    ]
    if details:
        raise invalid(*details)
    permissions = _canonical_permissions(body.permissions) if body.permissions is not None else None
    if body.displayName is not None and body.displayName != role.display_name:
        _check_name_free(session, itwin, body.displayName, role.id)
        role.display_name = body.displayName
    if "description" in given:
        role.description = body.description or ""
    if permissions is not None:
        role.permissions = permissions
    _flush_role(session, role)
    return role


def delete_role(session: Session, user_id: str, itwin_id: str, role_id: str) -> None:
    itwin = _itwin(session, user_id, itwin_id, access.MANAGE_ROLES, write=True)
    role = _role(session, itwin, role_id)
    session.execute(delete(MemberRole).where(MemberRole.itwin_id == itwin.id, MemberRole.role_id == role.id))
    session.delete(role)
    session.flush()
    _drop_empty_members(session, itwin)


def _drop_empty_members(session: Session, itwin: ITwin) -> None:
    """Members left with no role and no ownership are members no more."""
    session.execute(
        delete(Member)
        .where(Member.itwin_id == itwin.id, Member.is_owner.is_(False), ~_has_role_sql())
        .execution_options(synchronize_session=False)
    )
    session.expire_all()


# ------------------------------------------------------------------------------------------ members

_MEMBERS_READ = (access.MEMBERS_READ, access.INVITE_MEMBER)


def _roles_of(session: Session, itwin: ITwin, user_ids: Sequence[str]) -> dict[str, list[Role]]:
    out: dict[str, list[Role]] = {u: [] for u in user_ids}
    if not user_ids:
        return out
    rows = session.execute(
        select(MemberRole.user_id, Role)
        .join(Role, Role.id == MemberRole.role_id)
        .where(MemberRole.itwin_id == itwin.id, MemberRole.user_id.in_(user_ids))
        .order_by(Role.display_name, Role.id)
    )
    for uid, role in rows:
        out[uid].append(role)
    return out


def _has_role_sql() -> Any:
    return exists().where(MemberRole.itwin_id == Member.itwin_id, MemberRole.user_id == Member.user_id)


def list_user_members(
    session: Session, user_id: str, itwin_id: str, paging: Paging
) -> Page[tuple[User, list[Role]]]:
    itwin = _itwin(session, user_id, itwin_id, *_MEMBERS_READ)
    stmt = (
        select(User, Member.created_at)
        .join(Member, Member.user_id == User.id)
        .where(Member.itwin_id == itwin.id, _has_role_sql())
    )
    page = _in_join_order(session, stmt, paging)
    users: list[User] = page.rows
    roles = _roles_of(session, itwin, [u.id for u in users])
    return Page([(u, roles[u.id]) for u in users], paging, page.more, page.after)


def _in_join_order(session: Session, stmt: Select[User, datetime], paging: Paging) -> Page[Any]:
    """Members in the order they joined (by user id within one instant), by keyset behind the next links
    (``ix_members_itwin_created``); the page holds the users."""
    keys = [Member.created_at, Member.user_id]
    return fetch_entities_by_key(session, cast("Select[Any]", stmt), paging, keys, descending=False)


def _user_member(session: Session, itwin: ITwin, member_id: str) -> tuple[Member, User, list[Role]]:
    member = session.get(Member, (itwin.id, member_id))
    user = session.get(User, member_id) if member is not None else None
    roles = _roles_of(session, itwin, [member_id])[member_id] if user is not None else []
    if member is None or user is None or not roles:
        raise MemberNotFound()
    return member, user, roles


def get_user_member(session: Session, user_id: str, itwin_id: str, member_id: str) -> tuple[User, list[Role]]:
    itwin = _itwin(session, user_id, itwin_id, *_MEMBERS_READ)
    _member, user, roles = _user_member(session, itwin, member_id)
    return user, roles


def _check_role_ids(session: Session, itwin: ITwin, role_ids: Iterable[str]) -> dict[str, Role]:
    roles = {r.id: r for r in session.scalars(select(Role).where(Role.itwin_id == itwin.id))}
    unknown = list(dict.fromkeys(r for r in role_ids if r not in roles))
    if unknown:
        raise invalid(
            *(invalid_value("roleIds", f"Role '{r}' does not exist in the iTwin.") for r in unknown)
        )
    return roles


def _user_by_email(session: Session, email: str) -> User | None:
    candidates = list(session.scalars(select(User).where(func.lower(User.email) == email.lower())))
    # Exact spelling first, then a real user before an invited placeholder.
    candidates.sort(key=lambda u: (u.email != email, u.is_invited, u.id))
    return candidates[0] if candidates else None


def _find_or_invite(session: Session, email: str) -> User:
    user = _user_by_email(session, email)
    if user is not None:
        return user
    user = User(id=INVITED_PREFIX + email, email=email, is_invited=True)
    try:
        with session.begin_nested():
            session.add(user)
            session.flush()
    except IntegrityError:  # invited concurrently by another request
        found = _user_by_email(session, email)
        if found is None:
            raise
        return found
    return user


def _member(session: Session, itwin: ITwin, user: User) -> Member:
    member = session.get(Member, (itwin.id, user.id))
    if member is None:
        member = Member(itwin_id=itwin.id, user_id=user.id, is_owner=False, itwin_created_at=itwin.created_at)
        session.add(member)
        session.flush()
    return member


def add_user_members(
    session: Session, user_id: str, itwin_id: str, body: UserMembersAdd
) -> list[tuple[User, list[Role]]]:
    """Add (or add roles to) members by email; all or nothing."""
    itwin = _itwin(session, user_id, itwin_id, access.INVITE_MEMBER, write=True)
    if sum(len(m.roleIds) for m in body.members) > MAX_ROLE_ASSIGNMENTS:
        raise invalid(
            invalid_value(
                "members", f"At most {MAX_ROLE_ASSIGNMENTS} role assignments can be made in one request."
            )
        )
    _check_role_ids(session, itwin, (r for m in body.members for r in m.roleIds))
    wanted: dict[str, tuple[str, list[str]]] = {}
    for m in body.members:  # one entry per address, whatever its spelling; roles merged
        email, role_ids = wanted.setdefault(m.email.lower(), (m.email, []))
        role_ids.extend(r for r in m.roleIds if r not in role_ids)
    users: list[User] = []
    for email, role_ids in wanted.values():
        user = _find_or_invite(session, email)
        _member(session, itwin, user)
        held = set(
            session.scalars(
                select(MemberRole.role_id).where(
                    MemberRole.itwin_id == itwin.id, MemberRole.user_id == user.id
                )
            )
        )
        for rid in role_ids:
            if rid not in held:
                session.add(MemberRole(itwin_id=itwin.id, user_id=user.id, role_id=rid))
        users.append(user)
    session.flush()
    roles = _roles_of(session, itwin, [u.id for u in users])
    return [(u, roles[u.id]) for u in users]


def update_user_member(
    session: Session, user_id: str, itwin_id: str, member_id: str, body: UserMemberUpdate
) -> tuple[User, list[Role]]:
    """Replace the member's roles."""
    itwin = _itwin(session, user_id, itwin_id, access.INVITE_MEMBER, access.MEMBERS_MODIFY, write=True)
    _member_row, user, _roles = _user_member(session, itwin, member_id)
    if not body.roleIds:
        raise invalid(invalid_value("roleIds", "A member needs at least one role."))
    _check_role_ids(session, itwin, body.roleIds)
    session.execute(delete(MemberRole).where(MemberRole.itwin_id == itwin.id, MemberRole.user_id == user.id))
    for rid in dict.fromkeys(body.roleIds):
        session.add(MemberRole(itwin_id=itwin.id, user_id=user.id, role_id=rid))
    session.flush()
    return user, _roles_of(session, itwin, [user.id])[user.id]


def remove_user_member(session: Session, user_id: str, itwin_id: str, member_id: str) -> None:
    """Take away the member's roles; an owner stays an owner (owners leave through ``remove_owner``)."""
    itwin = _itwin(session, user_id, itwin_id, access.INVITE_MEMBER, write=True)
    member, user, _roles = _user_member(session, itwin, member_id)
    session.execute(delete(MemberRole).where(MemberRole.itwin_id == itwin.id, MemberRole.user_id == user.id))
    if not member.is_owner:
        session.delete(member)
    session.flush()


# ------------------------------------------------------------------------------------------- owners


def list_owners(session: Session, user_id: str, itwin_id: str, paging: Paging) -> Page[User]:
    itwin = _itwin(session, user_id, itwin_id, *_MEMBERS_READ)
    stmt = (
        select(User, Member.created_at)
        .join(Member, Member.user_id == User.id)
        .where(Member.itwin_id == itwin.id, Member.is_owner.is_(True))
    )
    return _in_join_order(session, stmt, paging)


def add_owner(session: Session, user_id: str, itwin_id: str, body: OwnerAdd) -> User:
    itwin = _itwin(session, user_id, itwin_id, access.INVITE_MEMBER, write=True)
    user = _find_or_invite(session, body.email)
    member = _member(session, itwin, user)
    member.is_owner = True
    session.flush()
    return user


def remove_owner(session: Session, user_id: str, itwin_id: str, member_id: str) -> None:
    itwin = _itwin(session, user_id, itwin_id, access.INVITE_MEMBER, write=True)
    member = session.get(Member, (itwin.id, member_id))
    if member is None or not member.is_owner:
        raise MemberNotFound()
    owners = session.scalar(
        select(func.count()).select_from(Member).where(Member.itwin_id == itwin.id, Member.is_owner.is_(True))
    )
    if (owners or 0) <= 1:
        raise invalid(
            ErrorDetail("InvalidChange", "The last owner of an iTwin cannot be removed.", "memberId")
        )
    member.is_owner = False
    session.flush()
    _drop_empty_members(session, itwin)
