"""Mesh Export end to end on the Azure blob backend (Azurite): the real server process, a real iTwin.js
changeset chain (2,000 elements, then a changeset updating, inserting and deleting some).

The tiles never pass through twinbase: ``_links.mesh.href`` is the bundle's container on the blob service
with a read-only container SAS, and the files are fetched from Azurite the way CesiumJS does (path +
``/tileset.json``, the query kept, no Authorization), cross-origin as a browser would. A later changeset's
export copies the unchanged tiles inside the blob service; deleting an export deletes its blobs.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from azure.storage.blob import BlobServiceClient

from conftest import Azurite, Server, new_imodel
from conftest import new_itwin as make_itwin
from test_mesh_export_e2e import REPRESENTATION, fetch, wait_complete
from twinbase.tiles.check import check_tileset, content_uris

ORIGIN = "https://viewer.example"
# Small tiles so that the 2,000 elements make a tree of several levels.
CONFIG = [{"key": "maxTileSize", "value": 64}, {"key": "chordTolerance", "value": 0.01}]


@pytest.fixture(scope="module")
def world(azure_server: Server, azurite: Azurite) -> Iterator[dict[str, Any]]:
    """One iModel on the Azure server: the chain's baseline and its first changeset pushed."""
    from support.chains import load_chain, make_chain
    from support.changesets import MadeChangeset
    from test_changesets import acquire, push

    chain = load_chain(make_chain("bench-small"))
    alice = azure_server.user()
    itwin = make_itwin(alice)
    imodel = new_imodel(alice, itwin["id"], path=chain.baseline)
    entry = chain.changesets[0]
    briefcase = acquire(alice, imodel["id"])
    made = MadeChangeset(entry.id, entry.parent_id, entry.path.read_bytes())
    push(alice, imodel["id"], briefcase, entry.parent_id, made)
    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    yield {"alice": alice, "imodel": imodel, "changeset": entry.id, "service": service, "azurite": azurite}
    alice.close()


def start(alice: httpx.Client, imodel_id: str, changeset: str, config: list[dict[str, Any]]) -> str:
    body = {"iModelId": imodel_id, "changesetId": changeset, "exportType": "3DTiles", "tilerConfig": config}
    started = alice.post("/mesh-export", json=body)
    assert started.status_code == 202, started.text
    return str(started.json()["export"]["id"])


def container_of(href: str) -> str:
    """The bundle's container: the path of the href is ``/<account>/<container>``."""
    return urlsplit(href).path.strip("/").split("/")[1]


def blob_names(service: BlobServiceClient, container: str) -> set[str]:
    return {b.name for b in service.get_container_client(container).list_blobs()}


def download_all(href: str, folder: Path, **headers: str) -> list[str]:
    """The tileset and every tile it names, fetched as CesiumJS does; answers the content URIs."""
    tileset = fetch(href, "tileset.json", **headers)
    assert tileset.status_code == 200, tileset.text
    assert "authorization" not in {k.lower() for k in tileset.request.headers}
    answers = [("tileset.json", tileset)]
    (folder / "tileset.json").write_bytes(tileset.content)
    uris = content_uris(json.loads(tileset.content))
    assert uris
    for uri in uris:
        got = fetch(href, uri, **headers)
        assert got.status_code == 200, (uri, got.status_code, got.text)
        answers.append((uri, got))
        (folder / uri).write_bytes(got.content)
    for name, answer in answers:
        # The blob service answers what twinbase's own file route would: media type, immutable
        # caching (a bundle never changes) and, to a browser, CORS.
        kind = "application/json" if name.endswith(".json") else "model/gltf-binary"
        assert answer.headers["content-type"] == kind, (name, answer.headers)
        assert "immutable" in answer.headers.get("cache-control", ""), (name, answer.headers)
        if "Origin" in headers:
            allowed = answer.headers.get("access-control-allow-origin")
            assert allowed in ("*", headers["Origin"]), (name, answer.headers)
    return uris


def test_3dtiles_on_azure_are_served_by_the_blob_service(world: dict[str, Any], tmp_path: Path) -> None:
    alice, imodel, service = world["alice"], world["imodel"], world["service"]
    azurite: Azurite = world["azurite"]
    export_id = start(alice, imodel["id"], "", [*CONFIG, {"key": "levelsOfDetail", "value": 8}])
    done = wait_complete(alice, export_id)
    assert done["stats"]["tiles"] > 4 and done["stats"]["tilesReused"] == 0, done["stats"]

    # Found the way CesiumJS's ITwinData.createTilesetFromIModelId finds it.
    listed = alice.get(
        "/mesh-export",
        params={"iModelId": imodel["id"], "exportType": "3DTILES", "$top": "5", "client": "CesiumJS"},
        headers={**REPRESENTATION, "Accept": "application/vnd.bentley.itwin-platform.v1+json"},
    )
    assert listed.status_code == 200, listed.text
    mine = [e for e in listed.json()["exports"] if e["id"] == export_id]
    assert mine and mine[0]["status"] == "Complete"
    href = mine[0]["_links"]["mesh"]["href"]

    # Straight at the blob service: the bundle's container with a read-only container SAS.
    parts = urlsplit(href)
    assert (parts.scheme, parts.netloc) == ("http", f"127.0.0.1:{azurite.port}"), href
    assert parts.path.startswith("/devstoreaccount1/") and not parts.path.endswith("/"), href
    sas = parse_qs(parts.query)
    assert sas["sig"] and sas["sr"] == ["c"] and sas["sp"] == ["r"], sas
    container = container_of(href)

    # Every file fetched with the link's query, no Authorization, cross-origin.
    uris = download_all(href, tmp_path, Origin=ORIGIN)
    assert check_tileset(tmp_path) == []
    assert blob_names(service, container) >= {"tileset.json", *uris}
    ranged = fetch(href, uris[0], Range="bytes=0-11")
    assert ranged.status_code == 206 and ranged.content[:4] == b"glTF"

    # A browser's preflight (CesiumJS sends Range for some requests) is answered by the blob service.
    path, _, query = href.partition("?")
    preflight = httpx.options(
        f"{path}/{uris[0]}?{query}",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "range",
        },
        timeout=30,
    )
    assert preflight.status_code == 200, preflight.text
    assert preflight.headers.get("access-control-allow-origin") in ("*", ORIGIN), preflight.headers
    assert "GET" in preflight.headers.get("access-control-allow-methods", ""), preflight.headers

    # Without the query nothing is served; the read SAS cannot write.
    assert httpx.get(f"{path}/tileset.json", timeout=30).status_code in (403, 404)
    written = httpx.put(
        f"{path}/extra.json?{query}", content=b"{}", headers={"x-ms-blob-type": "BlockBlob"}, timeout=30
    )
    assert written.status_code == 403, written.text
    assert "extra.json" not in blob_names(service, container)

    # Deleting the export deletes its blobs (the whole bundle container) and the link stops working.
    assert alice.delete(f"/mesh-export/{export_id}").status_code == 204
    assert not [c for c in service.list_containers(name_starts_with=container)]
    assert fetch(href, "tileset.json").status_code == 404


def test_a_later_changeset_on_azure_copies_the_unchanged_tiles(world: dict[str, Any], tmp_path: Path) -> None:
    """Mirror of the local store's case: the second export copies the first's unchanged tiles with
    server-side copies between the two bundle containers, and its tileset is whole and valid."""
    alice, imodel, service = world["alice"], world["imodel"], world["service"]
    ids = [start(alice, imodel["id"], "", CONFIG)]
    first = wait_complete(alice, ids[0])
    ids.append(start(alice, imodel["id"], world["changeset"], CONFIG))
    second = wait_complete(alice, ids[1])
    assert first["stats"]["tilesReused"] == 0 and first["stats"]["tiles"] > 4, first["stats"]
    stats = second["stats"]
    assert 0 < stats["tilesReused"] < stats["tiles"], stats

    href = second["_links"]["mesh"]["href"]
    later = tmp_path / "later"
    later.mkdir()
    uris = download_all(href, later, Origin=ORIGIN)
    assert check_tileset(later) == []
    # The copies are whole blobs of the new bundle; the earlier export keeps its own.
    first_href = first["_links"]["mesh"]["href"]
    assert container_of(first_href) != container_of(href)
    assert blob_names(service, container_of(href)) >= {"tileset.json", *uris}
    earlier = tmp_path / "earlier"
    earlier.mkdir()
    download_all(first_href, earlier)
    assert check_tileset(earlier) == []
    # A copied tile may carry another name in the new tree: compare contents.
    old_tiles = {p.read_bytes() for p in earlier.iterdir() if p.suffix == ".glb"}
    copied = [u for u in uris if (later / u).read_bytes() in old_tiles]
    assert len(copied) >= stats["tilesReused"], (len(copied), stats)

    for export_id in ids:
        assert alice.delete(f"/mesh-export/{export_id}").status_code == 204
    for h in (href, first_href):
        assert not list(service.list_containers(name_starts_with=container_of(h)))
