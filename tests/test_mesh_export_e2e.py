"""Mesh Export end to end through the API, on an iModel made by the real iTwin.js backend (the generated
"truth" model uploaded as a baseline): start, wait the way clients poll, fetch the files through the
signed folder link with no Authorization header (as CesiumJS and frontend-tiles do), and check them:
the GLTF element by element against iTwin.js ``exportGraphics``, the tileset with the repo's checker.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import Server, new_imodel
from conftest import new_itwin as make_itwin
from support.geometry_truth import (
    BREP,
    TRUTH_ANGLE_TOL,
    TRUTH_CHORD_TOL,
    Truth,
    compare_meshes,
    export_truth,
    load_truth,
    make_geometry,
)
from support.imdl_check import dump_imdl
from test_export_produce import _as_truth, _per_element
from twinbase.tiles.check import check_tileset, content_uris

REPRESENTATION = {"Prefer": "return=representation"}


@pytest.fixture(scope="module")
def world(server: Server) -> Iterator[dict[str, Any]]:
    alice = server.user()
    itwin = make_itwin(alice)
    imodel = new_imodel(alice, itwin["id"], path=make_geometry("truth"))
    yield {"alice": alice, "imodel": imodel}
    alice.close()


def wait_complete(client: httpx.Client, export_id: str, timeout: float = 300) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        resp = client.get(f"/mesh-export/{export_id}", headers=REPRESENTATION)
        assert resp.status_code == 200, resp.text
        export = resp.json()["export"]
        if export["status"] == "Complete":
            return dict(export)
        assert export["status"] in ("NotStarted", "InProgress"), export
        assert time.monotonic() < deadline, f"export still {export['status']}"
        time.sleep(0.2)


def fetch(href: str, relative: str, **headers: str) -> httpx.Response:
    """A file of the export folder the way the clients build its URL: appended to the path, the
    link's query kept, no Authorization."""
    path, _, query = href.partition("?")
    return httpx.get(f"{path}/{relative}?{query}", headers=headers, timeout=60)


def test_gltf_export_through_the_api_matches_export_graphics(world: dict[str, Any]) -> None:
    alice = world["alice"]
    truth: Truth = load_truth(export_truth("truth"))
    body = {
        "iModelId": world["imodel"]["id"],
        "exportType": "gltf",
        "tilerConfig": [
            {"key": "chordTolerance", "value": TRUTH_CHORD_TOL},
            {"key": "angleTolerance", "value": math.degrees(TRUTH_ANGLE_TOL)},
        ],
    }
    started = alice.post("/exports", json=body)
    assert started.status_code == 201, started.text
    done = wait_complete(alice, started.json()["export"]["id"])
    assert done["request"]["exportType"] == "GLTF"
    stats = done["stats"]
    assert stats["elementsWithErrors"] == 0 and stats["fallbacks"]["brep-range-box"] == 6
    glb = fetch(done["_links"]["mesh"]["href"], "model.glb")
    assert glb.status_code == 200 and glb.headers["content-type"].startswith("model/gltf-binary")
    report = compare_meshes(_as_truth(_per_element(glb.content), truth), truth.elements, check_lines=False)
    print(report.summary(30))
    # Only the B-reps differ (their range box stands in: no Parasolid here), as in test_bim_mesher.
    unexpected = [
        m
        for m in report.mismatches
        if not (m.rule == "range" and truth.elements[m.element_id].family == BREP)
    ]
    assert not unexpected and report.meshed > 100, report.summary(30)


def test_3dtiles_export_as_cesium_finds_and_loads_it(world: dict[str, Any], tmp_path: Path) -> None:
    alice = world["alice"]
    started = alice.post("/mesh-export", json={"iModelId": world["imodel"]["id"], "exportType": "3DTiles"})
    assert started.status_code == 202, started.text
    wait_complete(alice, started.json()["export"]["id"])
    # What CesiumJS's ITwinData.createTilesetFromIModelId sends, and what it does with the answer.
    listed = alice.get(
        "/mesh-export",
        params={
            "iModelId": world["imodel"]["id"],
            "exportType": "3DTILES",
            "$top": "5",
            "client": "CesiumJS",
            "clientVersion": "1.13",
        },
        headers={**REPRESENTATION, "Accept": "application/vnd.bentley.itwin-platform.v1+json"},
    )
    assert listed.status_code == 200, listed.text
    complete = [e for e in listed.json()["exports"] if e["status"] == "Complete"]
    assert complete and complete[0]["request"]["exportType"] == "3DTILES"
    href = complete[0]["_links"]["mesh"]["href"]
    origin = {"Origin": "https://viewer.example"}
    tileset = fetch(href, "tileset.json", **origin)
    assert tileset.status_code == 200, tileset.text
    assert tileset.headers.get("access-control-allow-origin") in ("*", "https://viewer.example")
    (tmp_path / "tileset.json").write_bytes(tileset.content)
    uris = content_uris(json.loads(tileset.content))
    assert uris
    for uri in uris:
        got = fetch(href, uri, **origin)
        assert got.status_code == 200, (uri, got.status_code)
        (tmp_path / uri).write_bytes(got.content)
    ranged = fetch(href, uris[0], Range="bytes=0-11")
    assert ranged.status_code == 206 and ranged.content[:4] == b"glTF"
    # Served compressed (httpx asks for gzip and inflates), kept by clients, revalidated by ETag.
    assert tileset.headers["content-encoding"] == "gzip" and "immutable" in tileset.headers["cache-control"]
    again = fetch(href, uris[0], **{"If-None-Match": ranged.headers["etag"]})
    assert again.status_code == 304 and not again.content
    assert check_tileset(tmp_path) == []
    # Without the link's query, nothing is served.
    path, _, _ = href.partition("?")
    assert httpx.get(f"{path}/tileset.json", timeout=30).status_code == 404


def test_a_later_changeset_export_copies_the_unchanged_tiles(server: Server, tmp_path: Path) -> None:
    """Two exports of one iModel (a real iTwin.js chain: 2,000 elements, then a changeset updating,
    inserting and deleting some): the second copies the first's unchanged tiles (server-side copies in
    the blob store) and makes the rest; its tileset is whole and valid."""
    from support.chains import load_chain, make_chain
    from support.changesets import MadeChangeset
    from test_changesets import acquire, push

    chain = load_chain(make_chain("bench-small"))
    with server.user() as alice:
        itwin = make_itwin(alice)
        imodel = new_imodel(alice, itwin["id"], path=chain.baseline)
        entry = chain.changesets[0]
        briefcase = acquire(alice, imodel["id"])
        push(
            alice,
            imodel["id"],
            briefcase,
            entry.parent_id,
            MadeChangeset(entry.id, entry.parent_id, entry.path.read_bytes()),
        )
        config = [{"key": "maxTileSize", "value": 64}, {"key": "chordTolerance", "value": 0.01}]
        ids = []
        for changeset in ("", entry.id):
            body = {
                "iModelId": imodel["id"],
                "changesetId": changeset,
                "exportType": "3DTILES",
                "tilerConfig": config,
            }
            started = alice.post("/mesh-export", json=body)
            assert started.status_code == 202, started.text
            ids.append(started.json()["export"]["id"])
            done = wait_complete(alice, ids[-1])
        first = wait_complete(alice, ids[0])["stats"]
        assert first["tilesReused"] == 0 and first["tiles"] > 4
        second = done["stats"]
        assert 0 < second["tilesReused"] < second["tiles"], second
        href = done["_links"]["mesh"]["href"]
        tileset = fetch(href, "tileset.json")
        (tmp_path / "tileset.json").write_bytes(tileset.content)
        uris = content_uris(tileset.json())
        for uri in uris:
            got = fetch(href, uri)
            assert got.status_code == 200, uri
            (tmp_path / uri).write_bytes(got.content)
        assert check_tileset(tmp_path) == []


def test_imodel_export_answers_frontend_tiles_query(world: dict[str, Any], tmp_path: Path) -> None:
    """What @itwin/frontend-tiles 5.x sends (reference A.5) finds the IMODEL export, and the tiles it then
    fetches through the link decode with the pinned core-frontend reader."""
    alice = world["alice"]
    iid = world["imodel"]["id"]
    ids = {}
    for compression in (True, False):
        body = {
            "iModelId": iid,
            "exportType": "IMODEL",
            "tilerConfig": [{"key": "enableCompression", "value": compression}],
        }
        started = alice.post("/mesh-export", json=body)
        assert started.status_code == 202, started.text
        ids[compression] = wait_complete(alice, started.json()["export"]["id"])["id"]
    changeset = world["imodel"].get("changesetId") or ""

    def frontend_tiles(tile_version: str) -> list[dict[str, Any]]:
        params = {"iModelId": iid, "$orderBy": "date:desc", "$top": "5", "cdn": "1",
                  "tileVersion": tile_version, "iTwinJS": "5.13.5", "exportType": "IMODEL"}  # fmt: skip
        if changeset:
            params["changesetId"] = changeset
        got = alice.get(
            "/mesh-export/",
            params=params,
            headers={**REPRESENTATION, "Accept": "application/vnd.bentley.itwin-platform.v1+json",
                     "SessionId": "a-session"},
        )  # fmt: skip
        assert got.status_code == 200, got.text
        answer = got.json()
        assert isinstance(answer["_links"], dict) and "next" not in answer["_links"]
        return list(answer["exports"])

    found = frontend_tiles("37")
    assert [e["id"] for e in found] == [ids[False], ids[True]]  # newest first
    assert all(e["request"]["exportType"] == "IMODEL" and e["status"] == "Complete" for e in found)
    # A frontend that reads iMdl majors up to 35 (core-frontend 4.x) gets only the plain tiles.
    assert [e["id"] for e in frontend_tiles("35")] == [ids[False]]
    assert frontend_tiles("0") == []

    href = found[1]["_links"]["mesh"]["href"]  # the meshopt one
    tileset = fetch(href, "tileset.json")
    assert tileset.status_code == 200 and tileset.headers["content-encoding"] == "gzip"
    uris = content_uris(json.loads(tileset.content))
    assert uris and all(u.endswith(".imdl") for u in uris)
    for uri in uris:
        got = fetch(href, uri)
        assert got.status_code == 200 and got.headers["content-encoding"] == "gzip", uri
        (tmp_path / uri).write_bytes(got.content)
    dumps = dump_imdl([tmp_path / u for u in uris])
    assert all(d["status"] == "ok" and d["problems"] == [] and d["header"]["major"] == 36 for d in dumps)
    assert sum(len(d["features"]) for d in dumps) > 100
