"""Mesh Export end to end on the Azure blob backend (Azurite): the real server process, a real iTwin.js
changeset chain (2,000 elements, then a changeset updating, inserting and deleting some).

The tiles never pass through twinbase: ``_links.mesh.href`` is the bundle's container on the blob service
with a read-only container SAS, and the files are fetched from Azurite the way CesiumJS does (path +
``/tileset.json``, the query kept, no Authorization), cross-origin as a browser would. A later changeset's
export copies the unchanged tiles inside the blob service; deleting an export deletes its blobs.

The blob service sends a blob exactly as stored, so the store keeps tileset and tiles gzip-encoded
(``Content-Encoding: gzip``): they travel compressed, clients decode them, and twinbase's own reads
through the store (the tile manifest a later export reads) answer the decoded bytes.
"""

from __future__ import annotations

import gzip
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
from test_cesium_itwin import test_cesium_loads_renders_and_picks_a_twinbase_export as cesium_acceptance
from test_mesh_export_e2e import REPRESENTATION, fetch, wait_complete
from twinbase.store.blobs import keys
from twinbase.store.blobs.azure import AzureBlobStore
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


def store_of(azurite: Azurite, href: str) -> tuple[AzureBlobStore, str]:
    """twinbase's own store over the server's container, and the export's bundle prefix: a bundle's
    container is ``<container>-<bundle id>``."""
    container, _, bundle_id = container_of(href).rpartition("-")
    return AzureBlobStore.from_connection_string(azurite.connection_string, container), keys.bundle(bundle_id)


def check_encoding(service: BlobServiceClient, href: str, answers: dict[str, httpx.Response]) -> None:
    """Each file fetched through the link came gzip-encoded, fewer bytes on the wire than decoded,
    and is the stored blob decoded. ``answers`` maps each relative path to its response."""
    container = service.get_container_client(container_of(href))
    for name, answer in answers.items():
        assert answer.headers.get("content-encoding") == "gzip", (name, answer.headers)
        # httpx decoded it; what crossed the wire is the stored blob.
        assert answer.num_bytes_downloaded < len(answer.content), (name, answer.num_bytes_downloaded)
        blob = container.get_blob_client(name)
        stored = blob.download_blob(decompress=False).readall()
        assert len(stored) == answer.num_bytes_downloaded and gzip.decompress(stored) == answer.content, name
        props = blob.get_blob_properties()
        assert props.content_settings.content_encoding == "gzip"
        assert props.metadata.get("decodedsize") == str(len(answer.content)), (name, props.metadata)


def download_all(href: str, folder: Path, **headers: str) -> dict[str, httpx.Response]:
    """The tileset and every tile it names, fetched as CesiumJS does; answers each file's response
    (``tileset.json`` first, then the content URIs)."""
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
    return dict(answers)


def sizes(answers: dict[str, httpx.Response]) -> tuple[int, int]:
    """Bytes on the wire and decoded, over all the files."""
    return sum(a.num_bytes_downloaded for a in answers.values()), sum(
        len(a.content) for a in answers.values()
    )


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

    # Every file fetched with the link's query, no Authorization, cross-origin; gzip-encoded on the
    # wire and decoded by the client into a valid tileset (GLBs included).
    answers = download_all(href, tmp_path, Origin=ORIGIN)
    uris = list(answers)[1:]
    assert check_tileset(tmp_path) == []
    assert blob_names(service, container) >= {"tileset.json", *uris}
    check_encoding(service, href, answers)
    wire, decoded = sizes(answers)
    print(
        f"3DTILES on Azure: {len(answers)} files, {decoded} bytes decoded, {wire} on the wire "
        f"({decoded / wire:.2f}x)"
    )
    assert wire * 1.5 < decoded
    # twinbase's own reads through the store answer the decoded bytes.
    store, bundle = store_of(azurite, href)
    for name, answer in answers.items():
        assert store.stat(f"{bundle}/{name}").size == len(answer.content)
        assert b"".join(store.open_range(f"{bundle}/{name}")) == answer.content, name
    # A range of a gzip-encoded blob is a range of its stored bytes (clients read tiles whole; the
    # 3TZ archive, read with ranges, is stored as it is: see the 3TZ test).
    path, _, query = href.partition("?")
    with httpx.stream(
        "GET", f"{path}/{uris[0]}?{query}", headers={"Range": "bytes=0-11"}, timeout=30
    ) as ranged:
        head = b"".join(ranged.iter_raw())
        assert ranged.status_code == 206 and ranged.headers["content-encoding"] == "gzip"
    assert len(head) == 12 and head[:2] == b"\x1f\x8b"  # gzip's magic number, not glTF's

    # A browser's preflight (CesiumJS sends Range for some requests) is answered by the blob service.
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
    answers = download_all(href, later, Origin=ORIGIN)
    uris = list(answers)[1:]
    assert check_tileset(later) == []
    # Copied tiles too keep the encoding (and their decoded size) through the server-side copy.
    check_encoding(service, href, answers)
    # The copies are whole blobs of the new bundle; the earlier export keeps its own.
    first_href = first["_links"]["mesh"]["href"]
    assert container_of(first_href) != container_of(href)
    assert blob_names(service, container_of(href)) >= {"tileset.json", *uris}
    earlier = tmp_path / "earlier"
    earlier.mkdir()
    check_encoding(service, first_href, download_all(first_href, earlier))
    assert check_tileset(earlier) == []
    # A copied tile may carry another name in the new tree: compare contents.
    old_tiles = {p.read_bytes() for p in earlier.iterdir() if p.suffix == ".glb"}
    copied = [u for u in uris if (later / u).read_bytes() in old_tiles]
    assert len(copied) >= stats["tilesReused"], (len(copied), stats)
    # The stats count decoded bytes, as on the local backend: every file of the bundle, copies included.
    store, bundle = store_of(world["azurite"], href)
    names = blob_names(service, container_of(href))
    assert stats["exportDirSize"] == sum(store.stat(f"{bundle}/{n}").size for n in names), stats

    for export_id in ids:
        assert alice.delete(f"/mesh-export/{export_id}").status_code == 204
    for h in (href, first_href):
        assert not list(service.list_containers(name_starts_with=container_of(h)))


def test_3tz_on_azure_is_stored_as_it_is(world: dict[str, Any], tmp_path: Path) -> None:
    """The archive is read with HTTP ranges (its index, then entries), so it is not gzip-encoded: a
    range of it is a range of the file."""
    alice, imodel, service = world["alice"], world["imodel"], world["service"]
    body = {"iModelId": imodel["id"], "changesetId": "", "exportType": "3TZ", "tilerConfig": CONFIG}
    started = alice.post("/mesh-export", json=body)
    assert started.status_code == 202, started.text
    export_id = str(started.json()["export"]["id"])
    href = wait_complete(alice, export_id)["_links"]["mesh"]["href"]
    whole = fetch(href, "tileset.3tz")
    assert whole.status_code == 200 and "content-encoding" not in whole.headers, whole.headers
    assert whole.num_bytes_downloaded == len(whole.content)
    (tmp_path / "tileset.3tz").write_bytes(whole.content)
    assert check_tileset(tmp_path / "tileset.3tz") == []
    ranged = fetch(href, "tileset.3tz", Range="bytes=0-3")
    assert ranged.status_code == 206 and ranged.content == b"PK\x03\x04"
    props = (
        service.get_container_client(container_of(href)).get_blob_client("tileset.3tz").get_blob_properties()
    )
    assert props.content_settings.content_encoding is None and props.size == len(whole.content)
    assert alice.delete(f"/mesh-export/{export_id}").status_code == 204


def test_cesium_loads_gzip_tiles_straight_from_the_blob_service(azure_server: Server) -> None:
    """Issue #14's CesiumJS acceptance (test_cesium_itwin) on the Azure backend: headless Chromium
    fetches the gzip-encoded tileset and tiles cross-origin from Azurite, decodes them itself, renders
    and picks elements (its screenshot: ``.cache/test-output/cesium-itwin-sqlite-azure.png``)."""
    cesium_acceptance(azure_server)
