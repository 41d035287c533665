"""Every iModel-scoped endpoint: a non-member gets 404, a member without the permission gets 403.

The route table comes from the app itself, so a new endpoint is covered the day it is added.
Request bodies are valid, so the answer is about access, not about input.
"""

from __future__ import annotations

import base64
import re
import secrets
from typing import Any

import httpx
import pytest

from conftest import Server, assert_error, new_imodel, new_itwin
from support.changesets import make_changeset
from test_changesets import acquire, member, push
from test_permissions_matrix import _png
from twinbase.app import create_app
from twinbase.settings import Settings


def imodel_routes() -> list[tuple[str, str]]:
    app = create_app(Settings(data_dir="/tmp/twinbase-route-listing"))
    out: list[tuple[str, str]] = []
    for route in app.routes:
        path = getattr(route, "path", "")
        if "{imodel_id}" in path:
            out.extend((m, path) for m in sorted(route.methods - {"HEAD"}))  # type: ignore[attr-defined]
    return out


ROUTES = imodel_routes()


@pytest.fixture(scope="module")
def world(server: Server) -> dict[str, Any]:
    alice = server.user()
    itwin = new_itwin(alice)
    imodel = new_imodel(alice, itwin["id"])
    iid = imodel["id"]
    briefcase = acquire(alice, iid)
    changeset = push(alice, iid, briefcase, "")
    version = alice.post(f"/imodels/{iid}/namedversions", json={"name": "v1", "changesetId": changeset["id"]})
    assert version.status_code in (200, 201), version.text
    group = alice.post(f"/imodels/{iid}/changesetgroups", json={"description": "g"})
    assert group.status_code in (200, 201), group.text
    bob = member(server, alice, itwin["id"])  # a member whose role holds no permission at all
    carol = server.user()
    carol_itwin = new_itwin(carol)
    user_id = alice.get(f"/imodels/{iid}").json()["iModel"]["_links"]["creator"]["href"].rsplit("/", 1)[1]
    return {
        "alice": alice,
        "bob": bob,
        "carol": carol,
        "ids": {
            "imodel_id": iid,
            "ref": str(changeset["index"]),
            "nv_id": version.json()["namedVersion"]["id"],
            "group_id": group.json()["changesetGroup"]["id"],
            "briefcase_id": str(briefcase),
            "user_id": user_id,
        },
        "itwins": {"bob": itwin["id"], "carol": carol_itwin["id"]},
        "briefcase": briefcase,
        "tip": changeset["id"],
        # A valid next changeset, so the create and complete bodies are valid and only access decides.
        "next": make_changeset(changeset["id"]),
    }


def body_for(world: dict[str, Any], who: str, method: str, template: str) -> dict[str, Any] | None:
    bodies: dict[str, dict[str, Any]] = {
        "POST /imodels/{imodel_id}/clone": {"iTwinId": world["itwins"][who], "name": secrets.token_hex(4)},
        "POST /imodels/{imodel_id}/fork": {"iTwinId": world["itwins"][who], "name": secrets.token_hex(4)},
        "PATCH /imodels/{imodel_id}": {"description": "x"},
        "POST /imodels/{imodel_id}/baselinefile": {},
        "PATCH /imodels/{imodel_id}/baselinefile": {},
        "POST /imodels/{imodel_id}/changesets": {
            "id": world["next"].id,
            "briefcaseId": world["briefcase"],
            "fileSize": len(world["next"].data),
            "parentId": world["tip"],
        },
        "PATCH /imodels/{imodel_id}/changesets/{ref}": {
            "state": "fileUploaded",
            "briefcaseId": world["briefcase"],
        },
        "POST /imodels/{imodel_id}/changesets/{ref}/extendeddata": {
            "data": base64.b64encode(b'{"a":1}').decode()
        },
        "POST /imodels/{imodel_id}/changesetgroups": {"description": "x"},
        "PATCH /imodels/{imodel_id}/changesetgroups/{group_id}": {"state": "completed"},
        "POST /imodels/{imodel_id}/namedversions": {"name": secrets.token_hex(4)},
        "PATCH /imodels/{imodel_id}/namedversions/{nv_id}": {"description": "x"},
        "POST /imodels/{imodel_id}/briefcases": {},
        "POST /imodels/{imodel_id}/locks/release-chunk": {"briefcaseId": world["briefcase"]},
        "PATCH /imodels/{imodel_id}/locks": {
            "briefcaseId": world["briefcase"],
            "lockedObjects": [{"lockLevel": "exclusive", "objectIds": ["0x1"]}],
        },
    }
    return bodies.get(f"{method} {template}")


def call(world: dict[str, Any], who: str, method: str, template: str) -> httpx.Response:
    path = re.sub(r"\{(\w+)\}", lambda m: str(world["ids"][m.group(1)]), template)
    client: httpx.Client = world[who]
    if method == "PUT" and template.endswith("/thumbnail"):
        return client.put(path, content=_png(), headers={"Content-Type": "image/png"})
    body = body_for(world, who, method, template)
    return client.request(method, path, json=body) if body is not None else client.request(method, path)


@pytest.mark.parametrize(("method", "template"), ROUTES)
def test_non_member_gets_404(world: dict[str, Any], method: str, template: str) -> None:
    assert_error(call(world, "carol", method, template), 404, "iModelNotFound")


@pytest.mark.parametrize(("method", "template"), ROUTES)
def test_member_without_permission_gets_403(world: dict[str, Any], method: str, template: str) -> None:
    assert_error(call(world, "bob", method, template), 403, "InsufficientPermissions")


def test_the_owner_still_has_everything(world: dict[str, Any]) -> None:
    iid = world["ids"]["imodel_id"]
    assert world["alice"].get(f"/imodels/{iid}").status_code == 200
    perms = world["alice"].get(f"/imodels/{iid}/permissions").json()["permissions"]
    assert {"imodels_webview", "imodels_read", "imodels_write", "imodels_manage"} <= set(perms)


def test_matrix_covers_the_imodel_routes() -> None:
    assert len(ROUTES) >= 40
