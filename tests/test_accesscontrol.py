"""The Access Control API (reference part D) against the real server, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import httpx
import pytest

from conftest import Server, assert_error, new_itwin
from twinbase.domain.access import ALL_PERMISSIONS, DEFAULT_ROLES, PERMISSION_DESCRIPTIONS

INVALID = "InvalidAccessControlRequest"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def ac(itwin_id: str, rest: str = "") -> str:
    return f"/accesscontrol/itwins/{itwin_id}{rest}"


def email_of(name: str) -> str:
    return f"{name}@example.com"  # what conftest's tokens carry


def person(server: Server, prefix: str) -> tuple[str, httpx.Client]:
    """A named user (id == name) and a client for them; the user is recorded on their first call."""
    name = unique(prefix)
    return name, server.user(name)


def role_ids(client: httpx.Client, itwin_id: str) -> dict[str, str]:
    resp = client.get(ac(itwin_id, "/roles"))
    assert resp.status_code == 200, resp.text
    return {r["displayName"]: r["id"] for r in resp.json()["roles"]}


def make_role(client: httpx.Client, itwin_id: str, *permissions: str) -> str:
    resp = client.post(ac(itwin_id, "/roles"), json={"displayName": unique("Role"), "description": "custom"})
    assert resp.status_code == 201, resp.text
    rid = str(resp.json()["role"]["id"])
    if permissions:
        patched = client.patch(ac(itwin_id, f"/roles/{rid}"), json={"permissions": list(permissions)})
        assert patched.status_code == 200, patched.text
    return rid


def add_member(client: httpx.Client, itwin_id: str, email: str, *roles: str) -> dict[str, Any]:
    resp = client.post(
        ac(itwin_id, "/members/users"), json={"members": [{"email": email, "roleIds": list(roles)}]}
    )
    assert resp.status_code == 201, resp.text
    return dict(resp.json()["members"][0])


def member_ids(client: httpx.Client, itwin_id: str, kind: str = "users") -> list[str]:
    resp = client.get(ac(itwin_id, f"/members/{kind}"))
    assert resp.status_code == 200, resp.text
    return [m["id"] for m in resp.json()["members"]]


def roles_snapshot(client: httpx.Client, itwin_id: str) -> list[dict[str, Any]]:
    resp = client.get(ac(itwin_id, "/roles"))
    assert resp.status_code == 200, resp.text
    return list(resp.json()["roles"])


# ------------------------------------------------------------------------------------- the key scenario


def test_member_lifecycle_through_the_itwins_api(server: Server) -> None:
    owner_name, owner = person(server, "owner")
    bob_name, bob = person(server, "bob")
    with owner, bob:
        it = new_itwin(owner)
        iid = it["id"]
        assert bob.get("/itwins/").status_code == 200  # bob is now a known user, member of nothing
        assert_error(bob.get(f"/itwins/{iid}"), 404, "iTwinNotFound")
        assert_error(bob.get(ac(iid, "/permissions")), 404, "iTwinNotFound")

        reader = role_ids(owner, iid)["Reader"]
        added = add_member(owner, iid, email_of(bob_name), reader)
        assert added["id"] == bob_name and added["email"] == email_of(bob_name)
        assert [r["id"] for r in added["roles"]] == [reader]

        assert bob.get(f"/itwins/{iid}").status_code == 200
        assert iid in [i["id"] for i in bob.get("/itwins/").json()["iTwins"]]
        assert set(bob.get(ac(iid, "/permissions")).json()["permissions"]) == set(DEFAULT_ROLES["Reader"][1])
        assert_error(
            bob.patch(f"/itwins/{iid}", json={"displayName": "Bob's"}), 403, "InsufficientPermissions"
        )
        assert_error(bob.delete(f"/itwins/{iid}"), 403, "InsufficientPermissions")
        assert owner.get(f"/itwins/{iid}").json()["iTwin"]["displayName"] == it["displayName"]

        editor = make_role(owner, iid, "itwins_read", "itwins_modify")
        resp = owner.patch(ac(iid, f"/members/users/{bob_name}"), json={"roleIds": [reader, editor]})
        assert resp.status_code == 200, resp.text
        resp = bob.patch(f"/itwins/{iid}", json={"displayName": "Bob's"})
        assert resp.status_code == 200, resp.text
        assert resp.json()["iTwin"]["displayName"] == "Bob's"
        assert_error(bob.delete(f"/itwins/{iid}"), 403, "InsufficientPermissions")

        assert owner.delete(ac(iid, f"/members/users/{bob_name}")).status_code == 204
        assert_error(bob.get(f"/itwins/{iid}"), 404, "iTwinNotFound")
        assert_error(bob.patch(f"/itwins/{iid}", json={"displayName": "x"}), 404, "iTwinNotFound")
        assert iid not in [i["id"] for i in bob.get("/itwins/").json()["iTwins"]]
        assert owner.get(f"/itwins/{iid}").status_code == 200
        assert owner_name in member_ids(owner, iid, "owners")


def test_member_invited_before_first_sign_in(server: Server) -> None:
    # Needs domain.itwins.ensure_user to re-key the placeholder (users.id ON UPDATE CASCADE); the
    # current code updates members.user_id first, which the foreign key to users refuses.
    with server.user() as owner:
        iid = new_itwin(owner)["id"]
        carol_name = unique("carol")
        contributor = role_ids(owner, iid)["Contributor"]
        placeholder = add_member(owner, iid, email_of(carol_name), contributor)
        assert placeholder["email"] == email_of(carol_name)
        assert placeholder["id"] != carol_name  # twinbase has not seen carol's token yet
        assert [r["displayName"] for r in placeholder["roles"]] == ["Contributor"]
        with server.user(carol_name) as carol:  # carol's very first call
            listed = carol.get("/itwins/")
            assert listed.status_code == 200, listed.text
            assert iid in [i["id"] for i in listed.json()["iTwins"]]
            assert carol.get(f"/itwins/{iid}").status_code == 200
            perms = carol.get(ac(iid, "/permissions")).json()["permissions"]
            assert set(perms) == set(DEFAULT_ROLES["Contributor"][1])
            # carol is recorded normally too: her own account exists and she can create iTwins.
            assert carol.get("/itwins/myprimaryaccount").status_code == 200
            new_itwin(carol)
        member = owner.get(ac(iid, f"/members/users/{carol_name}"))
        assert member.status_code == 200, member.text
        assert member.json()["member"]["email"] == email_of(carol_name)
        assert member.json()["member"]["givenName"] == carol_name.title()
        assert_error(owner.get(ac(iid, f"/members/users/{placeholder['id']}")), 404, "TeamMemberNotFound")


def test_invited_owner_before_first_sign_in(server: Server) -> None:
    with server.user() as owner:
        iid = new_itwin(owner)["id"]
        dave_name = unique("dave")
        resp = owner.post(ac(iid, "/members/owners"), json={"email": email_of(dave_name)})
        assert resp.status_code == 201, resp.text
        with server.user(dave_name) as dave:
            assert dave.get(f"/itwins/{iid}").status_code == 200
            assert dave.get(ac(iid, "/permissions")).json()["permissions"] == list(ALL_PERMISSIONS)
        assert dave_name in member_ids(owner, iid, "owners")


# ---------------------------------------------------------------------------------------- permissions


def test_all_permissions(server: Server) -> None:
    with server.user() as alice:
        for path in ("/accesscontrol/itwins/permissions", "/accesscontrol/itwins/permissions/"):
            resp = alice.get(path)
            assert resp.status_code == 200, resp.text
            perms = resp.json()["permissions"]
            assert [p["id"] for p in perms] == list(ALL_PERMISSIONS)
            for p in perms:
                assert set(p) == {"id", "displayName", "description"}
                assert p["description"] == PERMISSION_DESCRIPTIONS[p["id"]]
        v2 = alice.get(
            "/accesscontrol/itwins/permissions",
            headers={"Accept": "application/vnd.bentley.itwin-platform.v2+json"},
        )
        assert v2.status_code == 200, v2.text
    with server.client() as anonymous:
        assert_error(anonymous.get("/accesscontrol/itwins/permissions"), 401, "HeaderNotFound")


def test_my_permissions(server: Server) -> None:
    with server.user() as alice, server.user() as stranger:
        iid = new_itwin(alice)["id"]
        for path in (ac(iid, "/permissions"), ac(iid, "/permissions/")):
            resp = alice.get(path)
            assert resp.status_code == 200, resp.text
            assert resp.json() == {"permissions": list(ALL_PERMISSIONS)}
        assert_error(stranger.get(ac(iid, "/permissions")), 404, "iTwinNotFound")
        assert_error(alice.get(ac(str(uuid.uuid4()), "/permissions")), 404, "iTwinNotFound")
        assert_error(alice.get(ac("not-a-uuid", "/permissions")), 404, "iTwinNotFound")


def test_account_owner_holds_every_permission_on_its_itwins(server: Server) -> None:
    alice = server.user()
    bob_name, bob = person(server, "bob")
    with alice, bob:
        account = alice.get("/itwins/myprimaryaccount").json()["iTwin"]["id"]
        creator = make_role(alice, account, "itwins_read", "itwins_create")
        bob.get("/itwins/")
        add_member(alice, account, email_of(bob_name), creator)
        child = new_itwin(bob, parentId=account)
        assert member_ids(bob, child["id"], "owners") == [bob_name]
        # alice is no member of bob's iTwin, but owns the Account it lives in.
        assert alice.get(ac(child["id"], "/permissions")).json()["permissions"] == list(ALL_PERMISSIONS)
        assert member_ids(alice, child["id"], "owners") == [bob_name]
        assert alice.post(ac(child["id"], "/roles"), json={"displayName": "By the admin"}).status_code == 201


def test_authentication_and_methods(server: Server) -> None:
    with server.user() as alice:
        iid = new_itwin(alice)["id"]
        reader = role_ids(alice, iid)["Reader"]
    with server.client() as anonymous:
        for method, path in (
            ("GET", ac(iid, "/roles")),
            ("POST", ac(iid, "/roles")),
            ("GET", ac(iid, f"/roles/{reader}")),
            ("GET", ac(iid, "/members/users")),
            ("POST", ac(iid, "/members/owners")),
            ("DELETE", ac(iid, "/members/users/x")),
        ):
            assert_error(anonymous.request(method, path), 401, "HeaderNotFound")
    with server.client("not-a-token") as bad:
        assert_error(bad.get(ac(iid, "/roles")), 401, "Unauthorized")
    with server.user() as alice2:
        assert_error(alice2.put(ac(iid, "/roles"), json={}), 405, "MethodNotAllowed")


# ---------------------------------------------------------------------------------------------- roles


def test_every_itwin_starts_with_the_default_roles(server: Server) -> None:
    with server.user() as alice:
        iid = new_itwin(alice)["id"]
        for path in (ac(iid, "/roles"), ac(iid, "/roles/")):
            roles = alice.get(path).json()["roles"]
            assert {r["displayName"] for r in roles} == set(DEFAULT_ROLES)
            for r in roles:
                assert set(r) == {"id", "displayName", "description", "permissions"}
                description, perms = DEFAULT_ROLES[r["displayName"]]
                assert r["description"] == description and set(r["permissions"]) == set(perms)


def test_role_create_get_update_delete(server: Server) -> None:
    with server.user() as alice:
        iid = new_itwin(alice)["id"]
        resp = alice.post(
            ac(iid, "/roles"), json={"displayName": "Surveyor", "description": "Walks the site"}
        )
        assert resp.status_code == 201, resp.text
        role = resp.json()["role"]
        assert role["displayName"] == "Surveyor" and role["description"] == "Walks the site"
        assert role["permissions"] == [] and uuid.UUID(role["id"])
        rid = role["id"]
        assert alice.get(ac(iid, f"/roles/{rid}")).json() == {"role": role}
        assert alice.get(ac(iid, f"/roles/{rid}/")).json() == {"role": role}

        no_description = alice.post(ac(iid, "/roles/"), json={"displayName": "Quiet"})
        assert no_description.status_code == 201 and no_description.json()["role"]["description"] == ""

        resp = alice.patch(
            ac(iid, f"/roles/{rid}"),
            json={"permissions": ["imodels_read", "itwins_read", "imodels_read"], "description": "Reads"},
        )
        assert resp.status_code == 200, resp.text
        patched = resp.json()["role"]
        assert patched["permissions"] == ["itwins_read", "imodels_read"]  # deduplicated, canonical order
        assert patched["description"] == "Reads" and patched["displayName"] == "Surveyor"
        renamed = alice.patch(ac(iid, f"/roles/{rid}"), json={"displayName": "Site surveyor"}).json()["role"]
        assert renamed["displayName"] == "Site surveyor" and renamed["permissions"] == patched["permissions"]
        same = alice.patch(ac(iid, f"/roles/{rid}"), json={"displayName": "Site surveyor"})
        assert same.status_code == 200  # renaming to its own name is no clash
        cleared = alice.patch(ac(iid, f"/roles/{rid}"), json={"permissions": [], "description": None})
        assert cleared.json()["role"]["permissions"] == [] and cleared.json()["role"]["description"] == ""
        assert alice.get(ac(iid, "/roles")).json()["roles"].count(cleared.json()["role"]) == 1

        assert alice.delete(ac(iid, f"/roles/{rid}")).status_code == 204
        assert_error(alice.get(ac(iid, f"/roles/{rid}")), 404, "RoleNotFound")
        assert_error(alice.delete(ac(iid, f"/roles/{rid}")), 404, "RoleNotFound")
        assert_error(alice.patch(ac(iid, f"/roles/{rid}"), json={"description": "x"}), 404, "RoleNotFound")
        assert "Site surveyor" not in role_ids(alice, iid)


def test_role_not_found(server: Server) -> None:
    with server.user() as alice:
        iid = new_itwin(alice)["id"]
        other = new_itwin(alice)["id"]
        foreign = role_ids(alice, other)["Reader"]
        for rid in (str(uuid.uuid4()), "not-a-uuid", foreign):
            assert_error(alice.get(ac(iid, f"/roles/{rid}")), 404, "RoleNotFound")
            assert_error(alice.delete(ac(iid, f"/roles/{rid}")), 404, "RoleNotFound")
        assert foreign in role_ids(alice, other).values()
        assert_error(alice.get(ac(str(uuid.uuid4()), "/roles")), 404, "iTwinNotFound")


def test_role_name_conflicts(server: Server) -> None:
    with server.user() as alice:
        iid = new_itwin(alice)["id"]
        before = roles_snapshot(alice, iid)
        for name in ("Reader", "reader", "ADMINISTRATOR"):
            err = assert_error(alice.post(ac(iid, "/roles"), json={"displayName": name}), 409, "RoleExists")
            assert err["details"][0]["target"] == "displayName"
        assert roles_snapshot(alice, iid) == before
        rid = make_role(alice, iid)
        assert_error(
            alice.patch(ac(iid, f"/roles/{rid}"), json={"displayName": "Contributor"}), 409, "RoleExists"
        )
        # The same name in another iTwin is fine.
        other = new_itwin(alice)["id"]
        assert alice.post(ac(other, "/roles"), json={"displayName": "Surveyor"}).status_code == 201
        assert alice.post(ac(iid, "/roles"), json={"displayName": "Surveyor"}).status_code == 201


def test_role_bad_input_writes_nothing(server: Server) -> None:
    with server.user() as alice:
        iid = new_itwin(alice)["id"]
        before = roles_snapshot(alice, iid)
        cases: list[tuple[Any, str, str | None]] = [
            ({}, "MissingRequiredProperty", "displayName"),
            ({"displayName": ""}, "InvalidValue", "displayName"),
            ({"displayName": "   "}, "InvalidValue", "displayName"),
            ({"displayName": "x" * 256}, "InvalidValue", "displayName"),
            ({"displayName": 5}, "InvalidValue", "displayName"),
            ({"displayName": None}, "InvalidValue", "displayName"),
            ({"displayName": "ok", "description": "d" * 1025}, "InvalidValue", "description"),
            ({"displayName": "ok", "description": ["a"]}, "InvalidValue", "description"),
        ]
        for body, code, target in cases:
            err = assert_error(alice.post(ac(iid, "/roles"), json=body), 422, INVALID)
            assert err["message"] == "Cannot perform operation."
            assert [(d["code"], d.get("target")) for d in err["details"]] == [(code, target)], body
        for raw, code in (
            (b"{not json", "InvalidRequestBody"),
            (b"", "MissingRequestBody"),
            (b"[]", "InvalidRequestBody"),
        ):
            resp = alice.post(ac(iid, "/roles"), content=raw, headers={"Content-Type": "application/json"})
            err = assert_error(resp, 422, INVALID)
            assert err["details"][0]["code"] == code
        assert alice.post(ac(iid, "/roles"), json={"displayName": "x" * 255}).status_code == 201
        assert len(roles_snapshot(alice, iid)) == len(before) + 1


def test_role_update_bad_input_writes_nothing(server: Server) -> None:
    with server.user() as alice:
        iid = new_itwin(alice)["id"]
        rid = make_role(alice, iid, "itwins_read")
        before = alice.get(ac(iid, f"/roles/{rid}")).json()
        err = assert_error(
            alice.patch(
                ac(iid, f"/roles/{rid}"), json={"displayName": "New", "permissions": ["itwins_read", "fly"]}
            ),
            422,
            INVALID,
        )
        assert [(d["code"], d["target"]) for d in err["details"]] == [("InvalidValue", "permissions")]
        assert "fly" in err["details"][0]["message"]
        two = assert_error(
            alice.patch(ac(iid, f"/roles/{rid}"), json={"permissions": ["a", "b", "a"]}), 422, INVALID
        )
        assert len(two["details"]) == 2
        for body, target in (
            ({"permissions": "itwins_read"}, "permissions"),
            ({"permissions": [1]}, "permissions.0"),
            ({"permissions": None}, "permissions"),
            ({"displayName": None}, "displayName"),
            ({"displayName": ""}, "displayName"),
            ({"displayName": "y" * 256}, "displayName"),
            ({"description": 3}, "description"),
        ):
            err = assert_error(alice.patch(ac(iid, f"/roles/{rid}"), json=body), 422, INVALID)
            assert [d["target"] for d in err["details"]] == [target], body
        resp = alice.patch(
            ac(iid, f"/roles/{rid}"),
            content=b'{"displayName": ',
            headers={"Content-Type": "application/json"},
        )
        assert_error(resp, 422, INVALID)
        assert alice.get(ac(iid, f"/roles/{rid}")).json() == before


def test_role_permissions_required(server: Server) -> None:
    alice = server.user()
    bob_name, bob = person(server, "bob")
    with alice, bob, server.user() as stranger:
        iid = new_itwin(alice)["id"]
        bob.get("/itwins/")
        roles = role_ids(alice, iid)
        add_member(alice, iid, email_of(bob_name), roles["Reader"])
        rid = roles["Reader"]
        # A Reader (itwins_members_read) sees the roles but cannot change them.
        assert bob.get(ac(iid, "/roles")).status_code == 200
        assert bob.get(ac(iid, f"/roles/{rid}")).status_code == 200
        assert_error(
            bob.post(ac(iid, "/roles"), json={"displayName": "Mine"}), 403, "InsufficientPermissions"
        )
        assert_error(
            bob.patch(ac(iid, f"/roles/{rid}"), json={"permissions": list(ALL_PERMISSIONS)}),
            403,
            "InsufficientPermissions",
        )
        assert_error(bob.delete(ac(iid, f"/roles/{rid}")), 403, "InsufficientPermissions")
        # Missing roles are 404 only for those allowed to look.
        assert_error(bob.get(ac(iid, f"/roles/{uuid.uuid4()}")), 404, "RoleNotFound")
        # Non-members learn nothing.
        for method, path in (
            ("GET", ac(iid, "/roles")),
            ("POST", ac(iid, "/roles")),
            ("DELETE", ac(iid, f"/roles/{rid}")),
        ):
            assert_error(stranger.request(method, path, json={"displayName": "x"}), 404, "iTwinNotFound")

        # itwins_read alone does not show roles; administration_manage_roles alone does, and writes.
        plain = make_role(alice, iid, "itwins_read")
        alice.patch(ac(iid, f"/members/users/{bob_name}"), json={"roleIds": [plain]})
        assert_error(bob.get(ac(iid, "/roles")), 403, "InsufficientPermissions")
        assert_error(bob.get(ac(iid, f"/roles/{rid}")), 403, "InsufficientPermissions")
        manager = make_role(alice, iid, "administration_manage_roles")
        alice.patch(ac(iid, f"/members/users/{bob_name}"), json={"roleIds": [manager]})
        assert bob.get(ac(iid, "/roles")).status_code == 200
        made = bob.post(ac(iid, "/roles"), json={"displayName": "Bob made"})
        assert made.status_code == 201
        assert bob.delete(ac(iid, f"/roles/{made.json()['role']['id']}")).status_code == 204
        assert roles == {k: v for k, v in role_ids(alice, iid).items() if k in roles}


def test_deleting_a_role_takes_it_from_members(server: Server) -> None:
    alice = server.user()
    bob_name, bob = person(server, "bob")
    carol_name, carol = person(server, "carol")
    with alice, bob, carol:
        iid = new_itwin(alice)["id"]
        bob.get("/itwins/")
        carol.get("/itwins/")
        temp = make_role(alice, iid, "itwins_read", "itwins_members_read")
        reader = role_ids(alice, iid)["Reader"]
        add_member(alice, iid, email_of(bob_name), temp)
        add_member(alice, iid, email_of(carol_name), temp, reader)
        assert bob.get(f"/itwins/{iid}").status_code == 200
        assert alice.delete(ac(iid, f"/roles/{temp}")).status_code == 204
        # bob held only that role: no member any more. carol keeps Reader.
        assert_error(bob.get(f"/itwins/{iid}"), 404, "iTwinNotFound")
        assert_error(alice.get(ac(iid, f"/members/users/{bob_name}")), 404, "TeamMemberNotFound")
        assert sorted(member_ids(alice, iid)) == [carol_name]
        roles = alice.get(ac(iid, f"/members/users/{carol_name}")).json()["member"]["roles"]
        assert [r["id"] for r in roles] == [reader]
        assert carol.get(f"/itwins/{iid}").status_code == 200


# --------------------------------------------------------------------------------------- user members


def test_user_members_add_get_update_remove(server: Server) -> None:
    alice_name, alice = person(server, "alice")
    bob_name, bob = person(server, "bob")
    with alice, bob:
        iid = new_itwin(alice)["id"]
        bob.get("/itwins/")
        roles = role_ids(alice, iid)
        assert member_ids(alice, iid) == []  # the creator is an owner, listed under owners
        assert member_ids(alice, iid, "owners") == [alice_name]

        resp = alice.post(
            ac(iid, "/members/users/"),
            json={"members": [{"email": email_of(bob_name), "roleIds": [roles["Reader"]]}]},
        )
        assert resp.status_code == 201, resp.text
        body = resp.json()
        assert body["invitations"] == []
        member = body["members"][0]
        assert member == {
            "id": bob_name,
            "email": email_of(bob_name),
            "givenName": bob_name.title(),
            "surname": "Tester",
            "organization": "",
            "roles": [
                {"id": roles["Reader"], "displayName": "Reader", "description": DEFAULT_ROLES["Reader"][0]}
            ],
        }
        # Adding again merges roles; the address is matched without regard to case.
        again = add_member(alice, iid, email_of(bob_name).upper(), roles["Contributor"], roles["Reader"])
        assert again["id"] == bob_name
        assert sorted(r["displayName"] for r in again["roles"]) == ["Contributor", "Reader"]

        listed = alice.get(ac(iid, "/members/users")).json()
        assert [m["id"] for m in listed["members"]] == [bob_name]
        assert listed["members"][0] == again
        assert listed["_links"]["self"]["href"].startswith(server.base_url)
        for path in (ac(iid, f"/members/users/{bob_name}"), ac(iid, f"/members/users/{bob_name}/")):
            assert alice.get(path).json() == {"member": again}

        resp = alice.patch(ac(iid, f"/members/users/{bob_name}"), json={"roleIds": [roles["Administrator"]]})
        assert resp.status_code == 200, resp.text
        assert [r["displayName"] for r in resp.json()["member"]["roles"]] == ["Administrator"]
        assert bob.get(ac(iid, "/permissions")).json()["permissions"] == list(ALL_PERMISSIONS)

        assert alice.delete(ac(iid, f"/members/users/{bob_name}/")).status_code == 204
        assert_error(alice.get(ac(iid, f"/members/users/{bob_name}")), 404, "TeamMemberNotFound")
        assert_error(alice.delete(ac(iid, f"/members/users/{bob_name}")), 404, "TeamMemberNotFound")
        assert_error(
            alice.patch(ac(iid, f"/members/users/{bob_name}"), json={"roleIds": [roles["Reader"]]}),
            404,
            "TeamMemberNotFound",
        )
        assert member_ids(alice, iid) == []


def test_add_several_members_at_once(server: Server) -> None:
    with server.user() as alice:
        iid = new_itwin(alice)["id"]
        roles = role_ids(alice, iid)
        names = [unique("m") for _ in range(3)]
        resp = alice.post(
            ac(iid, "/members/users"),
            json={
                "members": [
                    {"email": email_of(names[0]), "roleIds": [roles["Reader"]]},
                    {"email": email_of(names[1]), "roleIds": [roles["Reader"], roles["Contributor"]]},
                    {"email": email_of(names[2]), "roleIds": [roles["Administrator"]]},
                    {"email": email_of(names[0]).upper(), "roleIds": [roles["Contributor"]]},
                ]
            },
        )
        assert resp.status_code == 201, resp.text
        added = resp.json()["members"]
        assert [m["email"] for m in added] == [email_of(n) for n in names]
        assert sorted(r["displayName"] for r in added[0]["roles"]) == ["Contributor", "Reader"]
        assert len(member_ids(alice, iid)) == 3


def test_add_members_bad_input_writes_nothing(server: Server) -> None:
    with server.user() as alice:
        iid = new_itwin(alice)["id"]
        other = new_itwin(alice)["id"]
        reader = role_ids(alice, iid)["Reader"]
        foreign = role_ids(alice, other)["Reader"]
        fresh = email_of(unique("nobody"))

        err = assert_error(
            alice.post(
                ac(iid, "/members/users"),
                json={
                    "members": [
                        {"email": fresh, "roleIds": [reader]},
                        {"email": fresh, "roleIds": [str(uuid.uuid4())]},
                    ]
                },
            ),
            422,
            INVALID,
        )
        assert [(d["code"], d["target"]) for d in err["details"]] == [("InvalidValue", "roleIds")]
        err = assert_error(
            alice.post(
                ac(iid, "/members/users"), json={"members": [{"email": fresh, "roleIds": [foreign, "nope"]}]}
            ),
            422,
            INVALID,
        )
        assert [d["target"] for d in err["details"]] == ["roleIds", "roleIds"]
        assert member_ids(alice, iid) == []

        too_many = [{"email": email_of(unique("m")), "roleIds": [reader] * 2} for _ in range(26)]
        cases: list[tuple[Any, str]] = [
            ({}, "members"),
            ({"members": []}, "members"),
            ({"members": "x"}, "members"),
            ({"members": [{"email": fresh}]}, "members.0.roleIds"),
            ({"members": [{"roleIds": [reader]}]}, "members.0.email"),
            ({"members": [{"email": fresh, "roleIds": []}]}, "members.0.roleIds"),
            ({"members": [{"email": fresh, "roleIds": reader}]}, "members.0.roleIds"),
            ({"members": [{"email": fresh, "roleIds": [7]}]}, "members.0.roleIds.0"),
            ({"members": [{"email": "not-an-email", "roleIds": [reader]}]}, "members.0.email"),
            ({"members": [{"email": 12, "roleIds": [reader]}]}, "members.0.email"),
            ({"members": [{"email": "a" * 250 + "@example.com", "roleIds": [reader]}]}, "members.0.email"),
            ({"members": too_many}, "members"),
        ]
        for body, target in cases:
            err = assert_error(alice.post(ac(iid, "/members/users"), json=body), 422, INVALID)
            assert [d.get("target") for d in err["details"]] == [target], body
        for raw in (b"{", b"", b'"members"', b"null"):
            resp = alice.post(
                ac(iid, "/members/users"), content=raw, headers={"Content-Type": "application/json"}
            )
            assert_error(resp, 422, INVALID)
        assert member_ids(alice, iid) == []
        # The address never became a placeholder user: added properly now, it is still new.
        assert add_member(alice, iid, fresh, reader)["email"] == fresh


def test_update_member_bad_input_writes_nothing(server: Server) -> None:
    alice = server.user()
    bob_name, bob = person(server, "bob")
    with alice, bob:
        iid = new_itwin(alice)["id"]
        bob.get("/itwins/")
        roles = role_ids(alice, iid)
        add_member(alice, iid, email_of(bob_name), roles["Reader"])
        path = ac(iid, f"/members/users/{bob_name}")
        before = alice.get(path).json()
        err = assert_error(alice.patch(path, json={"roleIds": []}), 422, INVALID)
        assert [(d["code"], d["target"]) for d in err["details"]] == [("InvalidValue", "roleIds")]
        err = assert_error(
            alice.patch(path, json={"roleIds": [roles["Contributor"], str(uuid.uuid4())]}), 422, INVALID
        )
        assert [d["target"] for d in err["details"]] == ["roleIds"]
        for body, target in (
            ({}, "roleIds"),
            ({"roleIds": "x"}, "roleIds"),
            ({"roleIds": [None]}, "roleIds.0"),
        ):
            err = assert_error(alice.patch(path, json=body), 422, INVALID)
            assert [d["target"] for d in err["details"]] == [target]
        assert_error(
            alice.patch(path, content=b"{]", headers={"Content-Type": "application/json"}), 422, INVALID
        )
        assert alice.get(path).json() == before
        assert bob.get(f"/itwins/{iid}").status_code == 200


def test_member_not_found(server: Server) -> None:
    with server.user() as alice:
        iid = new_itwin(alice)["id"]
        reader = role_ids(alice, iid)["Reader"]
        for mid in ("nobody", str(uuid.uuid4()), "invited:x@example.com"):
            assert_error(alice.get(ac(iid, f"/members/users/{mid}")), 404, "TeamMemberNotFound")
            assert_error(
                alice.patch(ac(iid, f"/members/users/{mid}"), json={"roleIds": [reader]}),
                404,
                "TeamMemberNotFound",
            )
            assert_error(alice.delete(ac(iid, f"/members/users/{mid}")), 404, "TeamMemberNotFound")
            assert_error(alice.delete(ac(iid, f"/members/owners/{mid}")), 404, "TeamMemberNotFound")
        assert_error(alice.get(ac(str(uuid.uuid4()), "/members/users")), 404, "iTwinNotFound")


def test_member_permissions_required(server: Server) -> None:
    alice_name, alice = person(server, "alice")
    bob_name, bob = person(server, "bob")
    with alice, bob, server.user() as stranger:
        iid = new_itwin(alice)["id"]
        bob.get("/itwins/")
        roles = role_ids(alice, iid)
        add_member(alice, iid, email_of(bob_name), roles["Reader"])
        someone = email_of(unique("someone"))
        # Reader: sees members, changes nothing.
        assert bob.get(ac(iid, "/members/users")).status_code == 200
        assert bob.get(ac(iid, "/members/owners")).status_code == 200
        assert bob.get(ac(iid, f"/members/users/{bob_name}")).status_code == 200
        denied = [
            (
                "POST",
                ac(iid, "/members/users"),
                {"members": [{"email": someone, "roleIds": [roles["Reader"]]}]},
            ),
            ("PATCH", ac(iid, f"/members/users/{bob_name}"), {"roleIds": [roles["Administrator"]]}),
            ("DELETE", ac(iid, f"/members/users/{bob_name}"), None),
            ("POST", ac(iid, "/members/owners"), {"email": email_of(bob_name)}),
            ("DELETE", ac(iid, f"/members/owners/{alice_name}"), None),
        ]
        for method, path, body in denied:
            assert_error(bob.request(method, path, json=body), 403, "InsufficientPermissions")
            assert_error(stranger.request(method, path, json=body), 404, "iTwinNotFound")
        assert_error(stranger.get(ac(iid, "/members/users")), 404, "iTwinNotFound")
        assert_error(stranger.get(ac(iid, "/members/owners")), 404, "iTwinNotFound")
        assert member_ids(alice, iid) == [bob_name]
        assert member_ids(alice, iid, "owners") == [alice_name]

        # itwins_read alone: no member list.
        plain = make_role(alice, iid, "itwins_read")
        alice.patch(ac(iid, f"/members/users/{bob_name}"), json={"roleIds": [plain]})
        assert_error(bob.get(ac(iid, "/members/users")), 403, "InsufficientPermissions")
        assert_error(bob.get(ac(iid, "/members/owners")), 403, "InsufficientPermissions")
        assert_error(bob.get(ac(iid, f"/members/users/{bob_name}")), 403, "InsufficientPermissions")

        # administration_invite_member: lists, adds and removes members.
        inviter = make_role(alice, iid, "itwins_read", "administration_invite_member")
        alice.patch(ac(iid, f"/members/users/{bob_name}"), json={"roleIds": [inviter]})
        assert bob.get(ac(iid, "/members/users")).status_code == 200
        added = add_member(bob, iid, someone, roles["Reader"])
        assert bob.delete(ac(iid, f"/members/users/{added['id']}")).status_code == 204

        # itwins_members_modify: may change roles, may not add.
        modifier = make_role(alice, iid, "itwins_read", "itwins_members_read", "itwins_members_modify")
        alice.patch(ac(iid, f"/members/users/{bob_name}"), json={"roleIds": [modifier]})
        resp = bob.patch(ac(iid, f"/members/users/{bob_name}"), json={"roleIds": [modifier, roles["Reader"]]})
        assert resp.status_code == 200, resp.text
        assert_error(bob.request(*denied[0][:2], json=denied[0][2]), 403, "InsufficientPermissions")


def test_member_paging(server: Server) -> None:
    with server.user() as alice:
        iid = new_itwin(alice)["id"]
        reader = role_ids(alice, iid)["Reader"]
        names = [unique("p") for _ in range(3)]
        for n in names:
            add_member(alice, iid, email_of(n), reader)
        everyone = [m["email"] for m in alice.get(ac(iid, "/members/users")).json()["members"]]
        assert everyone == [email_of(n) for n in names]  # in the order they joined

        first = alice.get(ac(iid, "/members/users"), params={"$top": 2}).json()
        assert [m["email"] for m in first["members"]] == everyone[:2]
        # Members page by keyset: the next link carries a continuation token (tests/test_lists_at_scale.py).
        assert "prev" not in first["_links"] and "$continuationToken=" in first["_links"]["next"]["href"]
        second = alice.get(first["_links"]["next"]["href"]).json()
        assert [m["email"] for m in second["members"]] == everyone[2:]
        assert "next" not in second["_links"] and "prev" in second["_links"]
        assert alice.get(ac(iid, "/members/users"), params={"$skip": 10}).json()["members"] == []
        for params in ({"$top": "x"}, {"$top": 0}, {"$top": 1001}, {"$skip": -1}, {"$skip": "1.5"}):
            err = assert_error(alice.get(ac(iid, "/members/users"), params=params), 422, INVALID)
            assert err["details"][0]["target"] == next(iter(params))
            assert_error(alice.get(ac(iid, "/members/owners"), params=params), 422, INVALID)
        owners = alice.get(ac(iid, "/members/owners"), params={"$top": 1}).json()
        assert len(owners["members"]) == 1 and "next" not in owners["_links"]


# --------------------------------------------------------------------------------------------- owners


def test_owners_add_list_remove(server: Server) -> None:
    alice_name, alice = person(server, "alice")
    bob_name, bob = person(server, "bob")
    with alice, bob:
        iid = new_itwin(alice)["id"]
        bob.get("/itwins/")
        listed = alice.get(ac(iid, "/members/owners/")).json()
        assert listed["members"] == [
            {
                "id": alice_name,
                "email": email_of(alice_name),
                "givenName": alice_name.title(),
                "surname": "Tester",
                "organization": "",
            }
        ]
        assert listed["_links"]["self"]["href"].startswith(server.base_url)

        resp = alice.post(ac(iid, "/members/owners"), json={"email": email_of(bob_name)})
        assert resp.status_code == 201, resp.text
        assert resp.json() == {
            "member": {
                "id": bob_name,
                "email": email_of(bob_name),
                "givenName": bob_name.title(),
                "surname": "Tester",
                "organization": "",
            }
        }
        assert alice.post(ac(iid, "/members/owners/"), json={"email": email_of(bob_name)}).status_code == 201
        assert member_ids(alice, iid, "owners") == [alice_name, bob_name]
        assert bob.get(ac(iid, "/permissions")).json()["permissions"] == list(ALL_PERMISSIONS)
        assert bob.patch(f"/itwins/{iid}", json={"displayName": "Bob owns it too"}).status_code == 200

        # An owner may remove another owner, never the last one.
        assert bob.delete(ac(iid, f"/members/owners/{alice_name}")).status_code == 204
        err = assert_error(bob.delete(ac(iid, f"/members/owners/{bob_name}/")), 422, INVALID)
        assert [(d["code"], d["target"]) for d in err["details"]] == [("InvalidChange", "memberId")]
        assert member_ids(bob, iid, "owners") == [bob_name]
        assert_error(bob.delete(ac(iid, f"/members/owners/{alice_name}")), 404, "TeamMemberNotFound")
        # alice owns no more, yet keeps every permission: the iTwin lives in her Account.
        assert alice.get(ac(iid, "/permissions")).json()["permissions"] == list(ALL_PERMISSIONS)

        # In bob's own Account, an owner removed is a stranger again.
        bobs = new_itwin(bob)["id"]
        assert bob.post(ac(bobs, "/members/owners"), json={"email": email_of(alice_name)}).status_code == 201
        assert alice.patch(f"/itwins/{bobs}", json={"displayName": "co-owned"}).status_code == 200
        assert alice.delete(ac(bobs, f"/members/owners/{bob_name}")).status_code == 204
        assert bob.get(f"/itwins/{bobs}").status_code == 200  # bob's Account, bob's permissions
        assert alice.delete(ac(bobs, f"/members/owners/{alice_name}")).status_code == 422
        assert bob.post(ac(bobs, "/members/owners"), json={"email": email_of(bob_name)}).status_code == 201
        assert bob.delete(ac(bobs, f"/members/owners/{alice_name}")).status_code == 204
        assert_error(alice.get(f"/itwins/{bobs}"), 404, "iTwinNotFound")
        assert_error(alice.get(ac(bobs, "/members/owners")), 404, "iTwinNotFound")


def test_owner_bad_input_writes_nothing(server: Server) -> None:
    alice_name, alice = person(server, "alice")
    with alice:
        iid = new_itwin(alice)["id"]
        for body, target in (
            ({}, "email"),
            ({"email": ""}, "email"),
            ({"email": "no-at-sign"}, "email"),
            ({"email": ["a@b.co"]}, "email"),
            ({"email": "a" * 250 + "@example.com"}, "email"),
        ):
            err = assert_error(alice.post(ac(iid, "/members/owners"), json=body), 422, INVALID)
            assert [d["target"] for d in err["details"]] == [target], body
        assert_error(
            alice.post(
                ac(iid, "/members/owners"), content=b"nope", headers={"Content-Type": "application/json"}
            ),
            422,
            INVALID,
        )
        assert member_ids(alice, iid, "owners") == [alice_name]


def test_owner_and_user_member_are_separate_facets(server: Server) -> None:
    alice_name, alice = person(server, "alice")
    bob_name, bob = person(server, "bob")
    with alice, bob:
        iid = new_itwin(alice)["id"]
        bob.get("/itwins/")
        roles = role_ids(alice, iid)
        # The only owner also holds a role: removing the user member leaves the owner.
        add_member(alice, iid, email_of(alice_name), roles["Reader"])
        assert member_ids(alice, iid) == [alice_name]
        assert alice.delete(ac(iid, f"/members/users/{alice_name}")).status_code == 204
        assert member_ids(alice, iid) == []
        assert member_ids(alice, iid, "owners") == [alice_name]
        assert alice.get(ac(iid, "/permissions")).json()["permissions"] == list(ALL_PERMISSIONS)
        assert_error(alice.delete(ac(iid, f"/members/users/{alice_name}")), 404, "TeamMemberNotFound")

        # A member made owner keeps their roles when the ownership goes.
        add_member(alice, iid, email_of(bob_name), roles["Reader"])
        assert alice.post(ac(iid, "/members/owners"), json={"email": email_of(bob_name)}).status_code == 201
        assert bob.patch(f"/itwins/{iid}", json={"displayName": "as owner"}).status_code == 200
        assert alice.delete(ac(iid, f"/members/owners/{bob_name}")).status_code == 204
        assert bob.get(f"/itwins/{iid}").status_code == 200
        assert_error(bob.patch(f"/itwins/{iid}", json={"displayName": "no"}), 403, "InsufficientPermissions")
        assert [
            r["displayName"]
            for r in alice.get(ac(iid, f"/members/users/{bob_name}")).json()["member"]["roles"]
        ] == ["Reader"]
        # An owner with no role leaves entirely when the ownership goes.
        carol = email_of(unique("carol"))
        carol_id = alice.post(ac(iid, "/members/owners"), json={"email": carol}).json()["member"]["id"]
        assert alice.delete(ac(iid, f"/members/owners/{carol_id}")).status_code == 204
        assert carol_id not in member_ids(alice, iid, "owners") + member_ids(alice, iid)


def remove_owners_at_once(requests: list[tuple[httpx.Client, str, str]]) -> list[int]:
    """Send each (client, iTwin id, owner id) removal from its own thread, all released together."""
    statuses = [0] * len(requests)
    barrier = threading.Barrier(len(requests))

    def run(i: int) -> None:
        client, iid, target = requests[i]
        barrier.wait()
        statuses[i] = client.delete(ac(iid, f"/members/owners/{target}")).status_code

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(requests))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return statuses


def test_two_owners_removing_each_other_at_once_leave_one(server: Server) -> None:
    alice_name, alice = person(server, "alice")
    bob_name, bob = person(server, "bob")
    with alice, bob:
        bob.get("/itwins/")
        for _round in range(3):
            iid = new_itwin(alice)["id"]
            added = alice.post(ac(iid, "/members/owners"), json={"email": email_of(bob_name)})
            assert added.status_code == 201, added.text
            by_alice, by_bob = remove_owners_at_once([(alice, iid, bob_name), (bob, iid, alice_name)])
            # The second removal runs after the first: its caller is no member any more (404), or,
            # were it still one, the owner it removes would be the last (422). Never both gone.
            assert sorted((by_alice, by_bob)) in ([204, 404], [204, 422]), (by_alice, by_bob)
            owners = member_ids(alice, iid, "owners")  # alice owns the Account: she can always look
            assert len(owners) == 1
            assert owners == ([alice_name] if by_alice == 204 else [bob_name])


@pytest.mark.parametrize("suffix", ["", "/"])
def test_trailing_slash_spellings(server: Server, suffix: str) -> None:
    with server.user() as alice:
        iid = new_itwin(alice)["id"]
        assert alice.get(ac(iid, "/members/users" + suffix)).status_code == 200
        assert alice.get(ac(iid, "/members/owners" + suffix)).status_code == 200
        rid = alice.post(ac(iid, "/roles" + suffix), json={"displayName": unique("R")}).json()["role"]["id"]
        assert alice.patch(ac(iid, f"/roles/{rid}{suffix}"), json={"description": "d"}).status_code == 200
        assert alice.delete(ac(iid, f"/roles/{rid}{suffix}")).status_code == 204
