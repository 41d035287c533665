"""HTTP for ``/accesscontrol/itwins``: permissions, roles, user members and owners (reference part D)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from twinbase.api import schemas as s
from twinbase.api.deps import Context, Ctx
from twinbase.api.http import JSON, collection, no_content, parse_body
from twinbase.api.openapi import CONTINUATION, SKIP, Op, api_docs, top
from twinbase.api.routing import Body, both, query_params
from twinbase.domain import members as domain
from twinbase.domain.listing import Page
from twinbase.domain.members import INVALID, MESSAGE

router = APIRouter()

PREFIX = "/accesscontrol/itwins"


def _members(ctx: Context, request: Request, members: list[dict[str, Any]], page: Page[Any]) -> Response:
    return collection("members", members, ctx.base, request.url.path, query_params(request), page)


# ---------------------------------------------------------------------------------------- permissions


@both(router, f"{PREFIX}/permissions", ["GET"])
def all_permissions(ctx: Ctx) -> Response:
    return JSON({"permissions": domain.all_permissions()})


@both(router, f"{PREFIX}/{{itwin_id}}/permissions", ["GET"])
def my_permissions(ctx: Ctx, itwin_id: str) -> Response:
    with ctx.svc.db.read() as session:
        return JSON({"permissions": domain.my_permissions(session, ctx.principal.user_id, itwin_id)})


# ---------------------------------------------------------------------------------------------- roles


@both(router, f"{PREFIX}/{{itwin_id}}/roles", ["GET"])
def list_roles(ctx: Ctx, itwin_id: str) -> Response:
    with ctx.svc.db.read() as session:
        roles = domain.list_roles(session, ctx.principal.user_id, itwin_id)
        return JSON({"roles": [domain.role_wire(r) for r in roles]})


@both(router, f"{PREFIX}/{{itwin_id}}/roles", ["POST"])
def create_role(ctx: Ctx, itwin_id: str, raw: Body) -> Response:
    data = parse_body(raw, domain.RoleCreate, code=INVALID, message=MESSAGE)
    with ctx.svc.db.write() as session:
        role = domain.create_role(session, ctx.principal.user_id, itwin_id, data)
        return JSON({"role": domain.role_wire(role)}, status_code=201)


@both(router, f"{PREFIX}/{{itwin_id}}/roles/{{role_id}}", ["GET"])
def get_role(ctx: Ctx, itwin_id: str, role_id: str) -> Response:
    with ctx.svc.db.read() as session:
        role = domain.get_role(session, ctx.principal.user_id, itwin_id, role_id)
        return JSON({"role": domain.role_wire(role)})


@both(router, f"{PREFIX}/{{itwin_id}}/roles/{{role_id}}", ["PATCH"])
def update_role(ctx: Ctx, itwin_id: str, role_id: str, raw: Body) -> Response:
    data = parse_body(raw, domain.RoleUpdate, code=INVALID, message=MESSAGE)
    with ctx.svc.db.write() as session:
        role = domain.update_role(session, ctx.principal.user_id, itwin_id, role_id, data)
        return JSON({"role": domain.role_wire(role)})


@both(router, f"{PREFIX}/{{itwin_id}}/roles/{{role_id}}", ["DELETE"])
def delete_role(ctx: Ctx, itwin_id: str, role_id: str) -> Response:
    with ctx.svc.db.write() as session:
        domain.delete_role(session, ctx.principal.user_id, itwin_id, role_id)
    return no_content()


# --------------------------------------------------------------------------------------- user members


@both(router, f"{PREFIX}/{{itwin_id}}/members/users", ["GET"])
def list_user_members(ctx: Ctx, request: Request, itwin_id: str) -> Response:
    paging = domain.parse_page(query_params(request))
    with ctx.svc.db.read() as session:
        page = domain.list_user_members(session, ctx.principal.user_id, itwin_id, paging)
        members = [domain.user_member_wire(u, roles) for u, roles in page.rows]
    return _members(ctx, request, members, page)


@both(router, f"{PREFIX}/{{itwin_id}}/members/users", ["POST"])
def add_user_members(ctx: Ctx, itwin_id: str, raw: Body) -> Response:
    data = parse_body(raw, domain.UserMembersAdd, code=INVALID, message=MESSAGE)
    with ctx.svc.db.write() as session:
        rows = domain.add_user_members(session, ctx.principal.user_id, itwin_id, data)
        members = [domain.user_member_wire(u, roles) for u, roles in rows]
    # Everyone is added at once: there are no pending invitations to accept.
    return JSON({"members": members, "invitations": []}, status_code=201)


@both(router, f"{PREFIX}/{{itwin_id}}/members/users/{{member_id}}", ["GET"])
def get_user_member(ctx: Ctx, itwin_id: str, member_id: str) -> Response:
    with ctx.svc.db.read() as session:
        user, roles = domain.get_user_member(session, ctx.principal.user_id, itwin_id, member_id)
        return JSON({"member": domain.user_member_wire(user, roles)})


@both(router, f"{PREFIX}/{{itwin_id}}/members/users/{{member_id}}", ["PATCH"])
def update_user_member(ctx: Ctx, itwin_id: str, member_id: str, raw: Body) -> Response:
    data = parse_body(raw, domain.UserMemberUpdate, code=INVALID, message=MESSAGE)
    with ctx.svc.db.write() as session:
        user, roles = domain.update_user_member(session, ctx.principal.user_id, itwin_id, member_id, data)
        return JSON({"member": domain.user_member_wire(user, roles)})


@both(router, f"{PREFIX}/{{itwin_id}}/members/users/{{member_id}}", ["DELETE"])
def remove_user_member(ctx: Ctx, itwin_id: str, member_id: str) -> Response:
    with ctx.svc.db.write() as session:
        domain.remove_user_member(session, ctx.principal.user_id, itwin_id, member_id)
    return no_content()


# --------------------------------------------------------------------------------------------- owners


@both(router, f"{PREFIX}/{{itwin_id}}/members/owners", ["GET"])
def list_owners(ctx: Ctx, request: Request, itwin_id: str) -> Response:
    paging = domain.parse_page(query_params(request))
    with ctx.svc.db.read() as session:
        page = domain.list_owners(session, ctx.principal.user_id, itwin_id, paging)
        members = [domain.owner_wire(u) for u in page.rows]
    return _members(ctx, request, members, page)


@both(router, f"{PREFIX}/{{itwin_id}}/members/owners", ["POST"])
def add_owner(ctx: Ctx, itwin_id: str, raw: Body) -> Response:
    data = parse_body(raw, domain.OwnerAdd, code=INVALID, message=MESSAGE)
    with ctx.svc.db.write() as session:
        user = domain.add_owner(session, ctx.principal.user_id, itwin_id, data)
        return JSON({"member": domain.owner_wire(user)}, status_code=201)


@both(router, f"{PREFIX}/{{itwin_id}}/members/owners/{{member_id}}", ["DELETE"])
def remove_owner(ctx: Ctx, itwin_id: str, member_id: str) -> Response:
    with ctx.svc.db.write() as session:
        domain.remove_owner(session, ctx.principal.user_id, itwin_id, member_id)
    return no_content()


_MEMBER_PAGE = (top(), SKIP, CONTINUATION)
_ADMIN = frozenset({403})

DOCS = api_docs(
    (all_permissions, Op("List every permission", s.PermissionList)),
    (my_permissions, Op("List my permissions on an iTwin", s.PermissionNames)),
    (list_roles, Op("List an iTwin's roles", s.RoleList, errors=_ADMIN)),
    (
        create_role,
        Op("Create a role", s.RoleAnswer, status=201, body=domain.RoleCreate, errors=frozenset({403, 409})),
    ),
    (get_role, Op("Get a role", s.RoleAnswer, errors=_ADMIN)),
    (update_role, Op("Update a role", s.RoleAnswer, body=domain.RoleUpdate, errors=frozenset({403, 409}))),
    (delete_role, Op("Delete a role", status=204, media=None, errors=frozenset({403, 409}))),
    (list_user_members, Op("List an iTwin's user members", s.MemberList, query=_MEMBER_PAGE, errors=_ADMIN)),
    (
        add_user_members,
        Op(
            "Add user members",
            s.MembersAdded,
            status=201,
            body=domain.UserMembersAdd,
            errors=frozenset({403, 409}),
        ),
    ),
    (get_user_member, Op("Get a user member", s.UserMemberAnswer, errors=_ADMIN)),
    (
        update_user_member,
        Op(
            "Change a member's roles",
            s.UserMemberAnswer,
            body=domain.UserMemberUpdate,
            errors=frozenset({403, 409}),
        ),
    ),
    (remove_user_member, Op("Remove a user member", status=204, media=None, errors=frozenset({403, 409}))),
    (list_owners, Op("List an iTwin's owners", s.MemberList, query=_MEMBER_PAGE, errors=_ADMIN)),
    (
        add_owner,
        Op("Add an owner", s.OwnerAnswer, status=201, body=domain.OwnerAdd, errors=frozenset({403, 409})),
    ),
    (remove_owner, Op("Remove an owner", status=204, media=None, errors=frozenset({403, 409}))),
)
