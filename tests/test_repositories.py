"""iTwin repositories, their resources and the global repositories (reference B.2, B.6), on both backends."""

from __future__ import annotations

import threading
import uuid
from contextlib import closing
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from conftest import Server, assert_error, new_itwin

INVALID = "InvalidiTwinsRequest"
GIS = "GeographicInformationSystem"


def unique_uri(host: str = "maps.example.com") -> str:
    return f"https://{host}/{uuid.uuid4().hex[:8]}/{{z}}/{{x}}/{{y}}.png"


def repos_url(itwin_id: str) -> str:
    return f"/itwins/{itwin_id}/repositories"


def add_repo(client: httpx.Client, itwin_id: str, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"class": GIS, "subClass": "UrlTemplate", "uri": unique_uri()}
    body.update(fields)
    resp = client.post(repos_url(itwin_id), json=body)
    assert resp.status_code == 201, resp.text
    return dict(resp.json()["repository"])


def add_resource(client: httpx.Client, repo: dict[str, Any], **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"id": f"layer-{uuid.uuid4().hex[:6]}", "displayName": "Layer"}
    body.update(fields)
    resp = client.post(repo["capabilities"]["resources"]["uri"], json=body)
    assert resp.status_code == 201, resp.text
    return dict(resp.json()["resource"])


def listed(client: httpx.Client, itwin_id: str, **params: str) -> list[dict[str, Any]]:
    resp = client.get(repos_url(itwin_id), params=params)
    assert resp.status_code == 200, resp.text
    return list(resp.json()["repositories"])


def detail(err: dict[str, Any]) -> tuple[str, str | None]:
    first = err["details"][0]
    return first["code"], first.get("target")


# ------------------------------------------------------------------------------------ repositories


def test_new_itwin_has_its_default_repository(server: Server) -> None:
    with server.user() as alice:
        it = new_itwin(alice)
        for path in (repos_url(it["id"]), repos_url(it["id"]) + "/"):
            repos = alice.get(path).json()["repositories"]
            assert len(repos) == 1
        default = repos[0]
        assert default["id"] == it["id"] and default["class"] == "iModels" and default["subClass"] is None
        assert default["uri"] == f"{server.base_url}/imodels?iTwinId={it['id']}"
        resources = f"{server.base_url}/itwins/{it['id']}/repositories/{it['id']}/resources"
        assert default["capabilities"] == {"resources": {"uri": resources}}
        assert "authentication" not in default and "options" not in default
        assert alice.get(f"{repos_url(it['id'])}/{it['id']}").json()["repository"] == default
        # Its resources are the iModels: none yet, and none added by hand.
        page = alice.get(resources).json()
        assert page["resources"] == [] and page["_links"]["self"]["href"].startswith(resources)
        err = assert_error(alice.post(resources, json={"id": "x", "displayName": "X"}), 422, INVALID)
        assert detail(err) == ("InvalidValue", "repositoryId")


def test_create_get_and_list_in_order(server: Server) -> None:
    with server.user() as alice:
        it = new_itwin(alice)
        body = {
            "class": GIS,
            "subClass": "UrlTemplate",
            "displayName": "Basemap",
            "uri": "http://basemaps.example.com/light_all/{z}/{x}/{y}.png",
            "authentication": {"type": "Header", "key": "X-Api-Key", "value": "secret"},
            "options": {"queryParameters": {"apiVersion": "1.5.1"}, "minimumLevel": 10, "maximumLevel": 20},
        }
        resp = alice.post(repos_url(it["id"]) + "/", json=body)
        assert resp.status_code == 201, resp.text
        repo = resp.json()["repository"]
        assert uuid.UUID(repo["id"]) and repo["id"] != it["id"]
        for key in ("class", "subClass", "displayName", "uri", "authentication", "options"):
            assert repo[key] == body[key], key
        assert repo["capabilities"]["resources"]["uri"] == (
            f"{server.base_url}/itwins/{it['id']}/repositories/{repo['id']}/resources"
        )
        assert alice.get(f"{repos_url(it['id'])}/{repo['id']}/").json()["repository"] == repo

        basic = add_repo(
            alice,
            it["id"],
            subClass="WebMapService",
            authentication={"type": "Basic", "username": "u", "password": "p"},
        )
        assert basic["authentication"] == {"type": "Basic", "username": "u", "password": "p"}
        assert basic["displayName"] == "WebMapService"  # a name is always there
        ids = [r["id"] for r in listed(alice, it["id"])]
        assert ids == [it["id"], repo["id"], basic["id"]]  # default first, then as added


@pytest.mark.parametrize(
    ("klass", "sub", "want_class", "want_sub"),
    [
        (GIS, "WebMapTileService", GIS, "WebMapTileService"),
        (GIS, "ArcGIS", GIS, "ArcGIS"),
        (GIS, "MapServer", GIS, "MapServer"),
        (GIS, "OgcApiFeatures", GIS, "OgcApiFeatures"),
        ("geographicinformationsystem", "webmapservice", GIS, "WebMapService"),
        ("Construction", "Performance", "Construction", "Performance"),
        ("Subsurface", "EvoWorkspace", "Subsurface", "EvoWorkspace"),
        ("GeospatialFeatures", None, "GeospatialFeatures", None),
        ("PdfPlansets", None, "PdfPlansets", None),
        ("IndexedMedia", None, "IndexedMedia", None),
    ],
)
def test_manual_classes(
    server: Server, klass: str, sub: str | None, want_class: str, want_sub: str | None
) -> None:
    with server.user() as alice:
        it = new_itwin(alice)
        fields: dict[str, Any] = {"class": klass, "subClass": sub}
        repo = add_repo(alice, it["id"], **fields)
        assert repo["class"] == want_class and repo["subClass"] == want_sub


def test_list_filters(server: Server) -> None:
    with server.user() as alice:
        it = new_itwin(alice)
        wms = add_repo(alice, it["id"], subClass="WebMapService")
        tpl = add_repo(alice, it["id"], subClass="UrlTemplate")
        pdf = add_repo(alice, it["id"], **{"class": "PdfPlansets", "subClass": None})

        def ids(**params: str) -> list[str]:
            return [r["id"] for r in listed(alice, it["id"], **params)]

        assert ids(**{"class": GIS}) == [wms["id"], tpl["id"]]
        assert ids(**{"class": "geographicInformationSystem", "subClass": "urltemplate"}) == [tpl["id"]]
        assert ids(subClass="WebMapService") == [wms["id"]]
        assert ids(**{"class": "PdfPlansets"}) == [pdf["id"]]
        assert ids(**{"class": "iModels"}) == [it["id"]]
        assert ids(**{"class": "Storage"}) == []
        assert ids(**{"class": GIS, "subClass": "ArcGIS"}) == []
        assert ids(**{"class": ""}) == [it["id"], wms["id"], tpl["id"], pdf["id"]]


@pytest.mark.parametrize(
    ("params", "target"),
    [
        ({"class": "Nonsense"}, "class"),
        ({"class": "Cesium"}, "class"),
        ({"subClass": "Nonsense"}, "subClass"),
        ({"class": "Storage", "subClass": "UrlTemplate"}, "subClass"),
        ({"class": "Construction", "subClass": "EvoWorkspace"}, "subClass"),
        ({"class": "x" * 5000}, "class"),
    ],
)
def test_bad_list_parameters(server: Server, params: dict[str, str], target: str) -> None:
    with server.user() as alice:
        it = new_itwin(alice)
        err = assert_error(alice.get(repos_url(it["id"]), params=params), 422, INVALID)
        assert err["message"] == "Cannot query iTwin Repositories."
        assert detail(err) == ("InvalidValue", target)
        assert len(err["details"][0]["message"]) < 300  # the bad value is not echoed whole


BAD_CREATES: list[tuple[dict[str, Any], str, str]] = [
    ({"uri": None}, "MissingRequiredProperty", "uri"),
    ({"uri": ""}, "MissingRequiredProperty", "uri"),
    ({"uri": "   "}, "MissingRequiredProperty", "uri"),
    ({"uri": "ftp://example.com/x"}, "InvalidValue", "uri"),
    ({"uri": "/relative/path"}, "InvalidValue", "uri"),
    ({"uri": "https://exa mple.com/"}, "InvalidValue", "uri"),
    ({"uri": "https://example.com/" + "a" * 2100}, "InvalidValue", "uri"),
    ({"uri": 42}, "InvalidValue", "uri"),
    ({"class": None}, "InvalidValue", "class"),
    ({"class": 7}, "InvalidValue", "class"),
    ({"class": "Nonsense"}, "InvalidValue", "class"),
    ({"class": "iModels", "subClass": None}, "InvalidValue", "class"),
    ({"class": "RealityData", "subClass": None}, "InvalidValue", "class"),
    ({"class": "SensorData", "subClass": None}, "InvalidValue", "class"),
    ({"subClass": None}, "MissingRequiredProperty", "subClass"),
    ({"subClass": "Performance"}, "InvalidValue", "subClass"),
    ({"subClass": "Nonsense"}, "InvalidValue", "subClass"),
    ({"subClass": ["UrlTemplate"]}, "InvalidValue", "subClass"),
    ({"class": "PdfPlansets", "subClass": "UrlTemplate"}, "InvalidValue", "subClass"),
    ({"displayName": ""}, "InvalidValue", "displayName"),
    ({"displayName": "   "}, "InvalidValue", "displayName"),
    ({"displayName": "x" * 256}, "InvalidValue", "displayName"),
    ({"displayName": "nul\u0000name"}, "InvalidValue", "displayName"),
    ({"displayName": 5}, "InvalidValue", "displayName"),
    ({"authentication": "secret"}, "InvalidValue", "authentication"),
    ({"authentication": {"key": "k", "value": "v"}}, "MissingRequiredProperty", "authentication.type"),
    ({"authentication": {"type": "Bearer", "key": "k", "value": "v"}}, "InvalidValue", "authentication.type"),
    ({"authentication": {"type": "Header", "key": "k"}}, "MissingRequiredProperty", "authentication.value"),
    ({"authentication": {"type": "Header", "key": "", "value": "v"}}, "InvalidValue", "authentication.key"),
    (
        {"authentication": {"type": "QueryParameter", "key": 1, "value": "v"}},
        "InvalidValue",
        "authentication.key",
    ),
    (
        {"authentication": {"type": "Basic", "username": "u"}},
        "MissingRequiredProperty",
        "authentication.password",
    ),
    (
        {"authentication": {"type": "Basic", "key": "k", "value": "v"}},
        "MissingRequiredProperty",
        "authentication.username",
    ),
    (
        {"authentication": {"type": "Header", "key": "k", "value": "v", "x": 1}},
        "InvalidValue",
        "authentication.x",
    ),
    ({"options": []}, "InvalidValue", "options"),
    ({"options": {"minimumLevel": "3"}}, "InvalidValue", "options.minimumLevel"),
    ({"options": {"minimumLevel": 1.5}}, "InvalidValue", "options.minimumLevel"),
    ({"options": {"maximumLevel": 99}}, "InvalidValue", "options.maximumLevel"),
    ({"options": {"minimumLevel": 12, "maximumLevel": 4}}, "InvalidValue", "options.maximumLevel"),
    ({"options": {"queryParameters": {"a": 1}}}, "InvalidValue", "options.queryParameters.a"),
    ({"options": {"queryParameters": "a=1"}}, "InvalidValue", "options.queryParameters"),
    ({"options": {"layers": "roads"}}, "InvalidValue", "options.layers"),
]


@pytest.mark.parametrize(("fields", "code", "target"), BAD_CREATES)
def test_create_bad_input_writes_nothing(
    server: Server, fields: dict[str, Any], code: str, target: str
) -> None:
    with server.user() as alice:
        it = new_itwin(alice)
        body: dict[str, Any] = {"class": GIS, "subClass": "UrlTemplate", "uri": unique_uri()}
        body.update(fields)
        err = assert_error(alice.post(repos_url(it["id"]), json=body), 422, INVALID)
        assert (code, target) in [(d["code"], d.get("target")) for d in err["details"]], err
        assert len(listed(alice, it["id"])) == 1


def test_create_reports_every_problem_at_once(server: Server) -> None:
    with server.user() as alice:
        it = new_itwin(alice)
        body = {
            "class": GIS,
            "subClass": "UrlTemplate",
            "displayName": "",
            "authentication": {"type": "Basic", "username": 3},
            "options": {"minimumLevel": -1},
        }
        err = assert_error(alice.post(repos_url(it["id"]), json=body), 422, INVALID)
        targets = {d["target"] for d in err["details"]}
        assert {
            "uri",
            "displayName",
            "authentication.username",
            "authentication.password",
            "options.minimumLevel",
        } <= targets


@pytest.mark.parametrize("raw", [b"", b"{", b"[]", b"null", b'"text"', b"{'class': 1}", b"\xff\xfe"])
def test_malformed_bodies(server: Server, raw: bytes) -> None:
    with server.user() as alice:
        it = new_itwin(alice)
        headers = {"content-type": "application/json"}
        assert_error(alice.post(repos_url(it["id"]), content=raw, headers=headers), 422, INVALID)
        repo = add_repo(alice, it["id"])
        url = f"{repos_url(it['id'])}/{repo['id']}"
        assert_error(alice.patch(url, content=raw, headers=headers), 422, INVALID)
        assert_error(alice.post(url + "/resources", content=raw, headers=headers), 422, INVALID)
        assert len(listed(alice, it["id"])) == 2
        assert alice.get(url).json()["repository"] == repo
        assert alice.get(url + "/resources").json()["resources"] == []


def test_duplicate_uri_is_409_per_itwin(server: Server) -> None:
    with server.user() as alice:
        it, other = new_itwin(alice), new_itwin(alice)
        uri = unique_uri()
        add_repo(alice, it["id"], uri=uri)
        err = assert_error(
            alice.post(repos_url(it["id"]), json={"class": GIS, "subClass": "WebMapService", "uri": uri}),
            409,
            "iTwinRepositoryExists",
        )
        assert detail(err) == ("InvalidValue", "uri")
        assert len(listed(alice, it["id"])) == 2
        add_repo(alice, other["id"], uri=uri)  # another iTwin may register the same service


def test_concurrent_duplicate_uris_one_winner(server: Server) -> None:
    with server.user() as alice:
        it = new_itwin(alice)
        body = {"class": GIS, "subClass": "ArcGIS", "uri": unique_uri()}
        token = alice.headers["authorization"]
        statuses: list[int] = []

        def post() -> None:
            with httpx.Client(base_url=server.base_url, headers={"Authorization": token}, timeout=30) as c:
                statuses.append(c.post(repos_url(it["id"]), json=body).status_code)

        threads = [threading.Thread(target=post) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(statuses) == [201] + [409] * 7
        assert len(listed(alice, it["id"])) == 2


def test_update(server: Server) -> None:
    with server.user() as alice:
        it = new_itwin(alice)
        repo = add_repo(
            alice,
            it["id"],
            displayName="Original",
            authentication={"type": "Header", "key": "X-Key", "value": "old"},
            options={"queryParameters": {"v": "1"}, "minimumLevel": 5, "maximumLevel": 15},
        )
        url = f"{repos_url(it['id'])}/{repo['id']}"
        change = {
            "class": GIS,  # echoed back unchanged, as the official client does
            "subClass": "UrlTemplate",
            "uri": "http://updated.example.com/dark/{z}/{x}/{y}.png",
            "displayName": "Updated",
            "authentication": {"type": "QueryParameter", "key": "apikey", "value": "new"},
            "options": {
                "queryParameters": {"v": "2", "format": "image/png"},
                "minimumLevel": 8,
                "maximumLevel": 22,
            },
        }
        resp = alice.patch(url, json=change)
        assert resp.status_code == 200, resp.text
        updated = resp.json()["repository"]
        for key, value in change.items():
            assert updated[key] == value, key
        assert updated["id"] == repo["id"] and updated["capabilities"] == repo["capabilities"]
        assert alice.get(url).json()["repository"] == updated

        # Only what is sent changes; an object is replaced whole, never merged.
        after = alice.patch(url + "/", json={"options": {"maximumLevel": 9}}).json()["repository"]
        assert after["options"] == {"maximumLevel": 9}
        assert after["displayName"] == "Updated" and after["authentication"] == change["authentication"]
        assert alice.patch(url, json={}).json()["repository"] == after
        # null removes authentication and options.
        cleared = alice.patch(url, json={"authentication": None, "options": None}).json()["repository"]
        assert "authentication" not in cleared and "options" not in cleared
        assert alice.get(url).json()["repository"] == cleared


@pytest.mark.parametrize(
    ("change", "code", "target"),
    [
        ({"uri": ""}, "MissingRequiredProperty", "uri"),
        ({"uri": None}, "MissingRequiredProperty", "uri"),
        ({"uri": "not a url"}, "InvalidValue", "uri"),
        ({"displayName": None}, "InvalidValue", "displayName"),
        ({"displayName": ""}, "InvalidValue", "displayName"),
        ({"class": "PdfPlansets"}, "InvalidValue", "class"),
        ({"subClass": "WebMapService"}, "InvalidValue", "subClass"),
        ({"subClass": None}, "InvalidValue", "subClass"),
        ({"id": str(uuid.uuid4())}, "InvalidValue", "id"),
        ({"authentication": {"type": "Header"}}, "MissingRequiredProperty", "authentication.key"),
        ({"options": {"minimumLevel": "low"}}, "InvalidValue", "options.minimumLevel"),
    ],
)
def test_update_bad_input_changes_nothing(
    server: Server, change: dict[str, Any], code: str, target: str
) -> None:
    with server.user() as alice:
        it = new_itwin(alice)
        repo = add_repo(alice, it["id"], displayName="Keep", options={"minimumLevel": 1})
        url = f"{repos_url(it['id'])}/{repo['id']}"
        err = assert_error(alice.patch(url, json={"displayName": "Changed?", **change}), 422, INVALID)
        assert (code, target) in [(d["code"], d.get("target")) for d in err["details"]], err
        assert alice.get(url).json()["repository"] == repo


def test_update_conflicts_and_missing(server: Server) -> None:
    with server.user() as alice:
        it = new_itwin(alice)
        first, second = add_repo(alice, it["id"]), add_repo(alice, it["id"])
        url = f"{repos_url(it['id'])}/{second['id']}"
        assert_error(alice.patch(url, json={"uri": first["uri"]}), 409, "iTwinRepositoryExists")
        assert alice.get(url).json()["repository"] == second
        # Re-sending its own uri is no conflict.
        assert alice.patch(url, json={"uri": second["uri"]}).status_code == 200

        default_url = f"{repos_url(it['id'])}/{it['id']}"
        err = assert_error(alice.patch(default_url, json={"displayName": "Mine"}), 422, INVALID)
        assert detail(err) == ("InvalidValue", "id")
        assert alice.get(default_url).json()["repository"]["displayName"] == "iModels"

        missing = f"{repos_url(it['id'])}/{uuid.uuid4()}"
        assert_error(alice.patch(missing, json={"displayName": "x"}), 404, "iTwinRepositoryNotFound")
        assert_error(alice.get(missing), 404, "iTwinRepositoryNotFound")
        # A repository of another iTwin is not found through this one.
        other = new_itwin(alice)
        foreign = add_repo(alice, other["id"])
        assert_error(alice.get(f"{repos_url(it['id'])}/{foreign['id']}"), 404, "iTwinRepositoryNotFound")
        assert_error(alice.get(f"{repos_url(it['id'])}/{'x' * 300}"), 404, "iTwinRepositoryNotFound")
        assert_error(alice.get(f"{repos_url(it['id'])}/%00"), 404, "iTwinRepositoryNotFound")


def test_delete(server: Server) -> None:
    with server.user() as alice:
        it = new_itwin(alice)
        repo = add_repo(alice, it["id"])
        add_resource(alice, repo, id="roads")
        url = f"{repos_url(it['id'])}/{repo['id']}"
        resp = alice.delete(url)
        assert resp.status_code == 204 and resp.content == b""
        assert_error(alice.get(url), 404, "iTwinRepositoryNotFound")
        assert_error(alice.get(url + "/resources/roads"), 404, "iTwinRepositoryNotFound")
        assert_error(alice.delete(url + "/"), 404, "iTwinRepositoryNotFound")
        assert [r["id"] for r in listed(alice, it["id"])] == [it["id"]]
        # The uri is free again.
        add_repo(alice, it["id"], uri=repo["uri"])

        err = assert_error(alice.delete(f"{repos_url(it['id'])}/{it['id']}"), 422, INVALID)
        assert detail(err) == ("InvalidValue", "id")
        assert len(listed(alice, it["id"])) == 2


def test_deleting_the_itwin_takes_its_repositories(server: Server) -> None:
    with server.user() as alice:
        it = new_itwin(alice)
        repo = add_repo(alice, it["id"])
        add_resource(alice, repo)
        assert alice.delete(f"/itwins/{it['id']}").status_code == 204
        assert_error(alice.get(repos_url(it["id"])), 404, "iTwinNotFound")
        assert_error(alice.get(repo["capabilities"]["resources"]["uri"]), 404, "iTwinNotFound")


# --------------------------------------------------------------------------------------- resources


def test_resource_lifecycle(server: Server) -> None:
    with server.user() as alice:
        it = new_itwin(alice)
        repo = add_repo(alice, it["id"], subClass="WebMapService")
        base = repo["capabilities"]["resources"]["uri"]
        resp = alice.post(
            base + "/", json={"id": "flood zones", "displayName": "Flood Zones", "properties": {"a": [1]}}
        )
        assert resp.status_code == 201, resp.text
        created = resp.json()["resource"]
        graphics = f"{base}/flood%20zones/graphics"
        assert created == {
            "id": "flood zones",
            "class": GIS,
            "subClass": "WebMapService",
            "displayName": "Flood Zones",
            "type": "IMAGERY",
            "capabilities": {"graphics": {"uri": graphics}},
        }
        url = f"{base}/{quote('flood zones')}"
        assert alice.get(url).json()["resource"] == created
        assert alice.get(url, headers={"Prefer": "return=minimal"}).json()["resource"] == created
        full = alice.get(url, headers={"Prefer": "return=representation"}).json()["resource"]
        assert full == {**created, "properties": {"a": [1]}}
        bare = add_resource(alice, repo, id="bare")
        assert alice.get(f"{base}/bare", headers={"Prefer": "return=representation"}).json()["resource"] == {
            **bare,
            "properties": {},
        }

        err = assert_error(
            alice.post(base, json={"id": "flood zones", "displayName": "Again"}),
            409,
            "iTwinRepositoryResourceExists",
        )
        assert detail(err) == ("InvalidValue", "id")
        assert alice.get(url).json()["resource"]["displayName"] == "Flood Zones"

        resp = alice.delete(url)
        assert resp.status_code == 204 and resp.content == b""
        assert_error(alice.get(url), 404, "iTwinRepositoryResourceNotFound")
        assert_error(alice.delete(url), 404, "iTwinRepositoryResourceNotFound")
        # The id is free again.
        add_resource(alice, repo, id="flood zones")


@pytest.mark.parametrize(
    ("body", "code", "target"),
    [
        ({"displayName": "No id"}, "MissingRequiredProperty", "id"),
        ({"id": "", "displayName": ""}, "MissingRequiredProperty", "id"),
        ({"id": None, "displayName": "x"}, "MissingRequiredProperty", "id"),
        ({"id": 12, "displayName": "x"}, "InvalidValue", "id"),
        ({"id": "a/b", "displayName": "x"}, "InvalidValue", "id"),
        ({"id": "a?b", "displayName": "x"}, "InvalidValue", "id"),
        ({"id": "nul\u0000", "displayName": "x"}, "InvalidValue", "id"),
        ({"id": "..", "displayName": "x"}, "InvalidValue", "id"),
        ({"id": "x" * 256, "displayName": "x"}, "InvalidValue", "id"),
        ({"id": "ok"}, "MissingRequiredProperty", "displayName"),
        ({"id": "ok", "displayName": "  "}, "InvalidValue", "displayName"),
        ({"id": "ok", "displayName": "x" * 256}, "InvalidValue", "displayName"),
        ({"id": "ok", "displayName": "nul\u0000"}, "InvalidValue", "displayName"),
        ({"id": "ok", "displayName": "x", "properties": [1, 2]}, "InvalidValue", "properties"),
        ({"id": "ok", "displayName": "x", "properties": "p"}, "InvalidValue", "properties"),
    ],
)
def test_resource_bad_input_writes_nothing(
    server: Server, body: dict[str, Any], code: str, target: str
) -> None:
    with server.user() as alice:
        it = new_itwin(alice)
        repo = add_repo(alice, it["id"])
        base = repo["capabilities"]["resources"]["uri"]
        err = assert_error(alice.post(base, json=body), 422, INVALID)
        assert (code, target) in [(d["code"], d.get("target")) for d in err["details"]], err
        assert alice.get(base).json()["resources"] == []


def test_resource_missing_things(server: Server) -> None:
    with server.user() as alice:
        it = new_itwin(alice)
        repo = add_repo(alice, it["id"])
        base = repo["capabilities"]["resources"]["uri"]
        no_repo = f"{repos_url(it['id'])}/{uuid.uuid4()}/resources"
        assert_error(alice.get(f"{base}/nope"), 404, "iTwinRepositoryResourceNotFound")
        assert_error(alice.get(f"{base}/%00"), 404, "iTwinRepositoryResourceNotFound")
        assert_error(alice.get(f"{base}/{'x' * 300}"), 404, "iTwinRepositoryResourceNotFound")
        assert_error(alice.delete(f"{base}/nope"), 404, "iTwinRepositoryResourceNotFound")
        assert_error(alice.get(no_repo), 404, "iTwinRepositoryNotFound")
        assert_error(alice.get(f"{no_repo}/x"), 404, "iTwinRepositoryNotFound")
        assert_error(
            alice.post(no_repo, json={"id": "x", "displayName": "X"}), 404, "iTwinRepositoryNotFound"
        )
        # DELETE of a resource in an unknown repository reads as an unknown resource.
        assert_error(alice.delete(f"{no_repo}/x"), 404, "iTwinRepositoryResourceNotFound")


def test_resource_list_paging_and_search(server: Server) -> None:
    with server.user() as alice:
        it = new_itwin(alice)
        repo = add_repo(alice, it["id"])
        base = repo["capabilities"]["resources"]["uri"]
        names = ["Water Bodies", "Road Network", "water_mains", "Land 100%", "Rivers and WATER"]
        for i, name in enumerate(names):
            add_resource(alice, repo, id=f"r{i}", displayName=name, properties={"n": i})

        first = alice.get(base, params={"$top": "2"}).json()
        assert [r["id"] for r in first["resources"]] == ["r0", "r1"]
        assert all("properties" not in r for r in first["resources"])
        assert "$top=2" in first["_links"]["self"]["href"] and "prev" not in first["_links"]
        seen: list[str] = []
        page: dict[str, Any] | None = first
        while page is not None:
            seen += [r["id"] for r in page["resources"]]
            nxt = page["_links"].get("next")
            page = alice.get(nxt["href"]).json() if nxt else None
        assert seen == ["r0", "r1", "r2", "r3", "r4"]

        middle = alice.get(base, params={"$top": "2", "$skip": "1"}).json()
        assert [r["id"] for r in middle["resources"]] == ["r1", "r2"]
        self_href = middle["_links"]["self"]["href"]
        assert self_href.startswith(base) and "$top=2" in self_href and "$skip=1" in self_href
        assert "$skip=0" in middle["_links"]["prev"]["href"] and "$skip=3" in middle["_links"]["next"]["href"]

        found = alice.get(base, params={"$search": "WATER"}).json()
        assert [r["id"] for r in found["resources"]] == ["r0", "r2", "r4"]
        assert "water" in found["_links"]["self"]["href"].lower()
        # LIKE wildcards in the search text match themselves only.
        assert [r["id"] for r in alice.get(base, params={"$search": "_"}).json()["resources"]] == ["r2"]
        assert [r["id"] for r in alice.get(base, params={"$search": "%"}).json()["resources"]] == ["r3"]
        assert alice.get(base, params={"$search": "nothing"}).json()["resources"] == []

        full = alice.get(base, params={"$top": "1"}, headers={"Prefer": "return=representation"}).json()
        assert full["resources"][0]["properties"] == {"n": 0}


@pytest.mark.parametrize(
    ("params", "target"),
    [
        ({"$top": "0"}, "$top"),
        ({"$top": "1001"}, "$top"),
        ({"$top": "ten"}, "$top"),
        ({"$skip": "-1"}, "$skip"),
        ({"$skip": "1.5"}, "$skip"),
        ({"$search": "x" * 300}, "$search"),
    ],
)
def test_bad_resource_list_parameters(server: Server, params: dict[str, str], target: str) -> None:
    with server.user() as alice:
        it = new_itwin(alice)
        repo = add_repo(alice, it["id"])
        err = assert_error(alice.get(repo["capabilities"]["resources"]["uri"], params=params), 422, INVALID)
        assert detail(err) == ("InvalidValue", target)
        assert_error(alice.get("/itwins/repositories/cesium/resources", params=params), 422, INVALID)


def test_graphics(server: Server) -> None:
    with server.user() as alice:
        it = new_itwin(alice)
        auth = {"type": "QueryParameter", "key": "token", "value": "t"}
        wms = add_repo(alice, it["id"], subClass="WebMapService", authentication=auth)
        layer = add_resource(alice, wms, id="layer one")
        resp = alice.get(layer["capabilities"]["graphics"]["uri"])
        assert resp.status_code == 200, resp.text
        assert resp.json() == {"graphics": [{"type": "IMAGERY", "uri": wms["uri"], "authentication": auth}]}

        features = add_repo(
            alice, it["id"], subClass="OgcApiFeatures", uri="https://features.example.com/ogc"
        )
        roads = add_resource(alice, features, id="roads")
        assert roads["type"] == "OAPIF+GEOJSON"
        got = alice.get(roads["capabilities"]["graphics"]["uri"]).json()["graphics"]
        assert got == [{"type": "OAPIF+GEOJSON", "uri": "https://features.example.com/ogc"}]

        # Nothing to draw: no graphics capability, and an empty list when asked anyway.
        plans = add_repo(alice, it["id"], **{"class": "PdfPlansets", "subClass": None})
        sheet = add_resource(alice, plans, id="sheet")
        assert "type" not in sheet and "capabilities" not in sheet
        base = plans["capabilities"]["resources"]["uri"]
        assert alice.get(f"{base}/sheet/graphics").json() == {"graphics": []}
        # Unknown resource or repository: 200 and no graphics; unknown iTwin: 404.
        wms_base = wms["capabilities"]["resources"]["uri"]
        assert alice.get(f"{wms_base}/nope/graphics").json() == {"graphics": []}
        assert alice.get(f"{repos_url(it['id'])}/{uuid.uuid4()}/resources/x/graphics").json() == {
            "graphics": []
        }
        assert_error(
            alice.get(f"{repos_url(str(uuid.uuid4()))}/{wms['id']}/resources/x/graphics"),
            404,
            "iTwinNotFound",
        )


# ------------------------------------------------------------------------------ global repositories


def test_global_repositories(server: Server) -> None:
    with server.user() as alice:
        cesium = {
            "id": "cesium",
            "class": "Cesium",
            "displayName": "Cesium curated content",
            "uri": f"{server.base_url}/itwins/repositories/cesium",
            "capabilities": {"resources": {"uri": f"{server.base_url}/itwins/repositories/cesium/resources"}},
        }
        for path in ("/itwins/repositories", "/itwins/repositories/"):
            assert alice.get(path).json() == {"repositories": [cesium]}
        assert alice.get("/itwins/repositories", params={"class": "Cesium"}).json()["repositories"] == [
            cesium
        ]
        assert alice.get("/itwins/repositories", params={"class": "cesium"}).json()["repositories"] == [
            cesium
        ]
        assert alice.get("/itwins/repositories", params={"class": GIS}).json()["repositories"] == []
        assert alice.get("/itwins/repositories/cesium").json() == {"repository": cesium}
        assert alice.get("/itwins/repositories/cesium/").json() == {"repository": cesium}
        assert_error(alice.get("/itwins/repositories/not-a-real-one"), 404, "iTwinRepositoryNotFound")

        page = alice.get(cesium["capabilities"]["resources"]["uri"], params={"$top": "2"}).json()
        assert page["resources"] == [] and "$top=2" in page["_links"]["self"]["href"]
        assert "next" not in page["_links"]
        assert_error(alice.get("/itwins/repositories/nope/resources"), 404, "iTwinRepositoryNotFound")
        assert_error(
            alice.get("/itwins/repositories/cesium/resources/3954"), 404, "iTwinRepositoryResourceNotFound"
        )
        assert alice.get("/itwins/repositories/cesium/resources/3954/graphics").json() == {"graphics": []}
        assert_error(
            alice.get("/itwins/repositories/nope/resources/1/graphics"), 404, "iTwinRepositoryNotFound"
        )
        # Only GETs exist there.
        assert_error(alice.post("/itwins/repositories", json={}), 405, "MethodNotAllowed")


# ---------------------------------------------------------------------------------------- access


def test_non_member_sees_nothing_and_changes_nothing(server: Server) -> None:
    with server.user() as alice, server.user() as mallory:
        it = new_itwin(alice)
        repo = add_repo(alice, it["id"])
        add_resource(alice, repo, id="roads")
        repo_url = f"{repos_url(it['id'])}/{repo['id']}"
        res = f"{repo_url}/resources"
        calls = [
            ("GET", repos_url(it["id"]), None),
            ("POST", repos_url(it["id"]), {"class": GIS, "subClass": "ArcGIS", "uri": unique_uri()}),
            ("GET", repo_url, None),
            ("PATCH", repo_url, {"displayName": "Mine"}),
            ("DELETE", repo_url, None),
            ("GET", res, None),
            ("POST", res, {"id": "evil", "displayName": "Evil"}),
            ("GET", f"{res}/roads", None),
            ("DELETE", f"{res}/roads", None),
            ("GET", f"{res}/roads/graphics", None),
        ]
        for method, url, body in calls:
            err = assert_error(mallory.request(method, url, json=body), 404, "iTwinNotFound")
            assert err["message"] == "Requested iTwin is not available."
        # The same answer as for an iTwin that does not exist at all.
        assert_error(mallory.get(repos_url(str(uuid.uuid4()))), 404, "iTwinNotFound")
        assert_error(mallory.get(repos_url("not-a-uuid")), 404, "iTwinNotFound")
        assert alice.get(repo_url).json()["repository"] == repo
        assert [r["id"] for r in alice.get(res).json()["resources"]] == ["roads"]


def test_every_route_needs_a_token(server: Server) -> None:
    with server.user() as alice:
        it = new_itwin(alice)
        repo = add_repo(alice, it["id"])
    with server.client() as anonymous:
        res = repo["capabilities"]["resources"]["uri"]
        for method, url in [
            ("GET", repos_url(it["id"])),
            ("POST", repos_url(it["id"])),
            ("PATCH", f"{repos_url(it['id'])}/{repo['id']}"),
            ("DELETE", f"{repos_url(it['id'])}/{repo['id']}"),
            ("GET", res),
            ("POST", res),
            ("GET", f"{res}/x/graphics"),
            ("GET", "/itwins/repositories"),
            ("GET", "/itwins/repositories/cesium/resources"),
        ]:
            assert_error(anonymous.request(method, url), 401, "HeaderNotFound")


def _member(server: Server, owner: httpx.Client, itwin_id: str, role: str) -> httpx.Client:
    """A new user added to the iTwin with ``role``, through the Access Control API."""
    name = f"member-{uuid.uuid4().hex[:8]}"
    client = server.user(name)
    assert client.get("/itwins/").status_code == 200  # the user is recorded on first sight
    roles = owner.get(f"/accesscontrol/itwins/{itwin_id}/roles").json()["roles"]
    role_id = next((r["id"] for r in roles if r["displayName"] == role), None)
    if role_id is None:
        made = owner.post(
            f"/accesscontrol/itwins/{itwin_id}/roles", json={"displayName": role, "description": "-"}
        )
        assert made.status_code == 201, made.text
        role_id = made.json()["role"]["id"]
    added = owner.post(
        f"/accesscontrol/itwins/{itwin_id}/members/users",
        json={"members": [{"email": f"{name}@example.com", "roleIds": [role_id]}]},
    )
    assert added.status_code == 201, added.text
    return client


def test_member_without_the_permission_gets_403(server: Server) -> None:
    with server.user() as alice:
        it = new_itwin(alice)
        repo = add_repo(alice, it["id"])
        add_resource(alice, repo, id="roads")
        repo_url = f"{repos_url(it['id'])}/{repo['id']}"
        res = f"{repo_url}/resources"
        writes = [
            ("POST", repos_url(it["id"]), {"class": GIS, "subClass": "ArcGIS", "uri": unique_uri()}),
            ("PATCH", repo_url, {"displayName": "Mine"}),
            ("DELETE", repo_url, None),
            ("POST", res, {"id": "evil", "displayName": "Evil"}),
            ("DELETE", f"{res}/roads", None),
        ]
        reads = [repos_url(it["id"]), repo_url, res, f"{res}/roads", f"{res}/roads/graphics"]
        with closing(_member(server, alice, it["id"], "Reader")) as reader:
            for path in reads:
                assert reader.get(path).status_code == 200, path
            for method, url, body in writes:
                assert_error(reader.request(method, url, json=body), 403, "InsufficientPermissions")
        with closing(_member(server, alice, it["id"], "Nothing")) as nobody:  # a role with no permissions
            for path in reads:
                assert_error(nobody.get(path), 403, "InsufficientPermissions")
        assert alice.get(repo_url).json()["repository"] == repo
        assert [r["id"] for r in alice.get(res).json()["resources"]] == ["roads"]
