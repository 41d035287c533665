"""Every iTwin-scoped endpoint: a non-member gets 404, a member without the permission gets 403.

The route table comes from the app itself, so a new endpoint is covered the day it is added.
"""

from __future__ import annotations

import re
import struct
import zlib
from typing import Any

import httpx
import pytest

from conftest import Server, assert_error, new_itwin
from twinbase.app import create_app
from twinbase.settings import Settings


def _png(width: int = 4, height: int = 4) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = b"".join(b"\x00" + b"\x00\x00\x00" * width for _ in range(height))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    )


def itwin_routes() -> list[tuple[str, str]]:
    app = create_app(Settings(data_dir="/tmp/twinbase-route-listing"))
    out: list[tuple[str, str]] = []
    routes = list(app.routes)
    while routes:
        route = routes.pop(0)
        if hasattr(route, "original_router"):
            routes.extend(route.original_router.routes)
            continue
        path = getattr(route, "path", "")
        if "{itwin_id}" in path and not path.endswith("/"):
            out.extend((m, path) for m in sorted(route.methods - {"HEAD"}))  # type: ignore[attr-defined]
    return out


ROUTES = itwin_routes()

# What any member may do whatever their roles: read their own permissions.
ANY_MEMBER = {("GET", "/accesscontrol/itwins/{itwin_id}/permissions")}


@pytest.fixture(scope="module")
def world(server: Server) -> dict[str, Any]:
    alice = server.user()
    it = new_itwin(alice)
    iid = it["id"]
    repo = alice.post(
        f"/itwins/{iid}/repositories",
        json={
            "class": "GeographicInformationSystem",
            "subClass": "WebMapService",
            "uri": "https://maps.example/wms",
        },
    ).json()["repository"]
    res = alice.post(
        f"/itwins/{iid}/repositories/{repo['id']}/resources", json={"id": "layer-1", "displayName": "L"}
    )
    assert res.status_code == 201, res.text
    role = alice.post(f"/accesscontrol/itwins/{iid}/roles", json={"displayName": "Nothing"}).json()["role"]
    bob_token = server.token()
    bob = server.client(bob_token)
    bob_id = bob.get("/itwins/myprimaryaccount").json()["iTwin"]["createdBy"]
    bob_email = f"{bob_id}@example.com"
    added = alice.post(
        f"/accesscontrol/itwins/{iid}/members/users",
        json={"members": [{"email": bob_email, "roleIds": [role["id"]]}]},
    )
    assert added.status_code == 201, added.text
    assert (
        alice.put(f"/itwins/{iid}/image", content=_png(), headers={"Content-Type": "image/png"}).status_code
        == 201
    )
    export = alice.post(f"/itwins/{iid}/exports", json={"outputFormat": "JsonGZip"})
    assert export.status_code == 201, export.text
    return {
        "alice": alice,
        "bob": bob,
        "carol": server.user(),
        "ids": {
            "itwin_id": iid,
            "repository_id": repo["id"],
            "resource_id": "layer-1",
            "role_id": role["id"],
            "member_id": bob_id,
            "export_id": export.json()["export"]["id"],
        },
        "bodies": {
            "POST /itwins/{itwin_id}/repositories": {
                "class": "GeographicInformationSystem",
                "subClass": "WebMapService",
                "uri": "https://maps.example/other",
            },
            "PATCH /itwins/{itwin_id}/repositories/{repository_id}": {"displayName": "x"},
            "POST /itwins/{itwin_id}/repositories/{repository_id}/resources": {
                "id": "r2",
                "displayName": "x",
            },
            "POST /accesscontrol/itwins/{itwin_id}/roles": {"displayName": "Other"},
            "PATCH /accesscontrol/itwins/{itwin_id}/roles/{role_id}": {"description": "x"},
            "POST /accesscontrol/itwins/{itwin_id}/members/users": {
                "members": [{"email": "someone@example.com", "roleIds": [role["id"]]}]
            },
            "PATCH /accesscontrol/itwins/{itwin_id}/members/users/{member_id}": {"roleIds": [role["id"]]},
            "POST /accesscontrol/itwins/{itwin_id}/members/owners": {"email": "someone@example.com"},
            "POST /itwins/{itwin_id}/exports": {"outputFormat": "JsonGZip"},
            "PATCH /itwins/{itwin_id}": {"displayName": "x"},
        },
    }


def call(world: dict[str, Any], who: str, method: str, template: str) -> httpx.Response:
    path = re.sub(r"\{(\w+)\}", lambda m: str(world["ids"][m.group(1)]), template)
    client: httpx.Client = world[who]
    if method == "PUT" and template.endswith("/image"):
        return client.put(path, content=_png(), headers={"Content-Type": "image/png"})
    body = world["bodies"].get(f"{method} {template}")
    return client.request(method, path, json=body) if body is not None else client.request(method, path)


@pytest.mark.parametrize(("method", "template"), ROUTES)
def test_non_member_gets_404(world: dict[str, Any], method: str, template: str) -> None:
    assert_error(call(world, "carol", method, template), 404, "iTwinNotFound")


@pytest.mark.parametrize(("method", "template"), ROUTES)
def test_member_without_permission_gets_403(world: dict[str, Any], method: str, template: str) -> None:
    resp = call(world, "bob", method, template)
    if (method, template) in ANY_MEMBER:
        assert resp.status_code == 200, resp.text
    else:
        assert_error(resp, 403, "InsufficientPermissions")


def test_matrix_covers_the_itwin_routes() -> None:
    assert len(ROUTES) >= 30
