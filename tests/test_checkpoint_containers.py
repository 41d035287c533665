"""Checkpoints as CloudSqlite containers, read over HTTP the way the native library reads them.

Every checkpoint twinbase makes is also cut into 4 MiB content-addressed blocks in the iModel's container
``tb-<iModelId>``; the checkpoint answer names it in ``directoryAccessInfo`` (when the site named the
storage account), and ``GET /tb-<id>/manifest.bcv?<token>`` and ``GET /tb-<id>/<BLOCKID>.bcv?<token>``
serve it. Here the manifest is parsed with the documented layout and the blocks put back together must be
the checkpoint's ``.bim``, byte for byte; the unmodified iTwin.js backend reading them is
tests/test_checkpoint_cloudsqlite.py.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
import sqlalchemy
from azure.storage.blob import BlobServiceClient

from conftest import (
    CHECKPOINT_STORAGE_ACCOUNT,
    Azurite,
    Server,
    assert_error,
    new_imodel,
    new_itwin,
    running_server,
)
from test_checkpoints import baseline_copy, push_file, readonly_chain, wait_checkpoint
from twinbase.bim.cloudsqlite import BLOCK_SIZE, block_name, parse_manifest
from twinbase.domain import containers
from twinbase.store.blobs import LocalBlobStore, UrlSigner
from twinbase.store.blobs import keys as blob_keys

IMODEL = "11111111-2222-4333-8444-555555555555"


def _manifest_of(azurite: Azurite, info: dict[str, Any], db_name: str) -> tuple[str, list[bytes]]:
    """The blob service's own URL of the container and the block ids of ``db_name`` in its manifest."""
    base = f"http://127.0.0.1:{azurite.port}/devstoreaccount1/{info['baseDirectory']}"
    resp = httpx.get(f"{base}/manifest.bcv?{info['azure']['sasToken']}", timeout=30)
    assert resp.status_code == 200, resp.text
    manifest = parse_manifest(resp.content)
    return base, list({db.name: db for db in manifest.databases}[db_name].block_ids)


def body_blocks(azurite: Azurite, info: dict[str, Any], db_name: str) -> set[str]:
    return {block_name(b) for b in _manifest_of(azurite, info, db_name)[1]}


def fetch_from_blob_service(azurite: Azurite, info: dict[str, Any], db_name: str) -> tuple[bytes, int]:
    """``db_name`` put together from the blocks the blob service itself serves with the answer's SAS."""
    base, ids = _manifest_of(azurite, info, db_name)
    body = bytearray()
    for block_id in ids:
        block = httpx.get(f"{base}/{block_name(block_id)}?{info['azure']['sasToken']}", timeout=30)
        assert block.status_code == 200, block.text
        body += block.content
    return bytes(body), len(ids)


def fetch_container(server: Server, info: dict[str, str], db_name: str) -> tuple[bytes, list[str]]:
    """The database ``db_name`` of the container, put together from its blocks as the native reader
    does, and the names of the manifest's databases."""
    token = info["azure"]["sasToken"]
    base = f"{server.base_url}/{info['baseDirectory']}"
    resp = httpx.get(f"{base}/manifest.bcv?{token}", timeout=30)
    assert resp.status_code == 200, resp.text
    manifest = parse_manifest(resp.content)
    assert manifest.block_size == BLOCK_SIZE
    databases = {db.name: db for db in manifest.databases}
    body = bytearray()
    for block_id in databases[db_name].block_ids:
        block = httpx.get(f"{base}/{block_name(block_id)}?{token}", timeout=30)
        assert block.status_code == 200, block.text
        assert len(block.content) == BLOCK_SIZE  # zero-padded, as the native writer stores them
        body += block.content
    return bytes(body), [db.name for db in manifest.databases]


def download(url: str) -> bytes:
    resp = httpx.get(url, timeout=60)
    assert resp.status_code == 200
    return resp.content


def test_checkpoint_is_served_as_a_cloudsqlite_container(server: Server) -> None:
    client = server.user()
    itwin = new_itwin(client)
    imodel = new_imodel(client, itwin["id"])
    checkpoint = wait_checkpoint(client, f"/imodels/{imodel['id']}/changesets/0/checkpoint")

    info = checkpoint["directoryAccessInfo"]
    container = f"tb-{imodel['id']}"
    assert info["storage"] == CHECKPOINT_STORAGE_ACCOUNT
    assert info["storageType"] == "azure"
    assert info["baseDirectory"] == container
    assert info["baseUrl"] == f"https://{CHECKPOINT_STORAGE_ACCOUNT}.blob.core.windows.net/{container}"
    token = dict(parse_qsl(info["azure"]["sasToken"]))
    assert token["sp"] == "r" and token["sr"] == "c"
    expiry = time.mktime(time.strptime(token["se"], "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
    assert time.time() < expiry < time.time() + 2 * 3600  # an ISO expiry, as the backend parses it
    assert checkpoint["dbName"] == "baseline.bim"

    plain = download(checkpoint["_links"]["download"]["href"])
    body, names = fetch_container(server, info, "baseline.bim")
    assert names == ["baseline.bim"]
    # Served from the checkpoint file itself: the local folder stores no block.
    assert not (server.data_dir / "blobs" / blob_keys.container_prefix(imodel["id"])).exists()
    assert len(body) == -(-len(plain) // BLOCK_SIZE) * BLOCK_SIZE
    assert body[: len(plain)] == plain
    assert not any(body[len(plain) :])


def test_container_lists_a_database_per_checkpoint(server: Server, tmp_path: Path) -> None:
    """The real ReadOnlyTest chain: each changeset's checkpoint becomes one more database of the iModel's
    container, holding that checkpoint's exact bytes."""
    client = server.user()
    itwin = new_itwin(client)
    imodel = new_imodel(client, itwin["id"], path=baseline_copy(tmp_path))
    briefcase = client.post(f"/imodels/{imodel['id']}/briefcases", json={}).json()["briefcase"]["briefcaseId"]
    chain = readonly_chain()
    for cs in chain:
        assert push_file(client, imodel["id"], briefcase, cs).status_code == 200
    answers = [
        wait_checkpoint(client, f"/imodels/{imodel['id']}/changesets/{index}/checkpoint")
        for index in range(len(chain) + 1)
    ]
    expected = ["baseline.bim"] + [f"{cs['id']}.bim" for cs in chain]
    for answer, name in zip(answers, expected, strict=True):
        assert answer["state"] == "successful"
        assert answer["dbName"] == name
        plain = download(answer["_links"]["download"]["href"])
        body, names = fetch_container(server, answer["directoryAccessInfo"], name)
        assert names == expected
        assert body[: len(plain)] == plain


def test_container_requests_need_the_containers_token(server: Server) -> None:
    client = server.user()
    itwin = new_itwin(client)
    first = new_imodel(client, itwin["id"])
    second = new_imodel(client, itwin["id"])
    info = wait_checkpoint(client, f"/imodels/{first['id']}/changesets/0/checkpoint")["directoryAccessInfo"]
    other = wait_checkpoint(client, f"/imodels/{second['id']}/changesets/0/checkpoint")["directoryAccessInfo"]
    manifest = f"{server.base_url}/{info['baseDirectory']}/manifest.bcv"
    token = info["azure"]["sasToken"]
    assert httpx.get(f"{manifest}?{token}").status_code == 200

    signer = UrlSigner.from_file(server.data_dir / "keys" / "url-signing.key", create=False)
    expired = containers.sas_token(signer, first["id"], 60, now=time.time() - 3600)
    tampered = token.replace("sig=", "sig=A")
    for query in ("", other["azure"]["sasToken"], expired, tampered, token.replace("sp=r", "sp=w")):
        assert_error(httpx.get(f"{manifest}?{query}"), 404, "FileNotFound")
    # A block name that is not one, and a block the container does not hold.
    base = f"{server.base_url}/{info['baseDirectory']}"
    assert_error(httpx.get(f"{base}/not-a-block.bcv?{token}"), 404, "FileNotFound")
    assert_error(httpx.get(f"{base}/{'AB' * 16}.bcv?{token}"), 404, "FileNotFound")
    # A container of an iModel that does not exist (a token for it can only be forged with the key).
    ghost = "0" * 8 + "-0000-4000-8000-" + "0" * 12
    forged = containers.sas_token(signer, ghost, 60)
    assert_error(httpx.get(f"{server.base_url}/tb-{ghost}/manifest.bcv?{forged}"), 404, "FileNotFound")


def test_checkpoints_stored_before_containers_get_one(server: Server) -> None:
    """A checkpoint stored by an earlier version (no blocks) is answered without ``directoryAccessInfo``
    and given its container by a job; then answered with it, the container holding its exact bytes."""
    client = server.user()
    imodel = new_imodel(client, new_itwin(client)["id"])
    url = f"/imodels/{imodel['id']}/changesets/0/checkpoint"
    wait_checkpoint(client, url)
    engine = sqlalchemy.create_engine(server.database_url)
    try:
        with engine.begin() as conn:
            conn.execute(
                sqlalchemy.text("UPDATE checkpoints SET blocks = NULL WHERE imodel_id = :id"),
                {"id": imodel["id"]},
            )
    finally:
        engine.dispose()
    first = client.get(url).json()["checkpoint"]
    assert first["state"] == "successful" and first["directoryAccessInfo"] is None
    deadline = time.monotonic() + 60
    while (answer := client.get(url).json()["checkpoint"])["directoryAccessInfo"] is None:
        assert time.monotonic() < deadline, "no container after 60 s"
        time.sleep(0.2)
    plain = download(answer["_links"]["download"]["href"])
    body, names = fetch_container(server, answer["directoryAccessInfo"], "baseline.bim")
    assert names == ["baseline.bim"] and body[: len(plain)] == plain


def test_no_storage_account_no_directory_access(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Without ``checkpoint_storage_account`` a backend would send its requests to Microsoft's host of
    that name: the answer stays ``directoryAccessInfo: null`` (the plain link still works)."""
    with running_server("sqlite", tmp_path_factory) as server:
        client = server.user()
        imodel = new_imodel(client, new_itwin(client)["id"])
        checkpoint = wait_checkpoint(client, f"/imodels/{imodel['id']}/changesets/0/checkpoint")
        assert checkpoint["directoryAccessInfo"] is None
        plain = download(checkpoint["_links"]["download"]["href"])
        assert plain[:16] == b"SQLite format 3\0"
        assert len(plain) == checkpoint["size"]


def _two_versions(tmp_path: Path) -> tuple[Path, Path]:
    """Two files that differ in their second 4 MiB block only (the fourth is a short tail)."""
    first, second = tmp_path / "a.bim", tmp_path / "b.bim"
    blocks = [bytes([n]) * BLOCK_SIZE for n in range(3)]
    first.write_bytes(b"".join(blocks) + b"tail")
    second.write_bytes(blocks[0] + b"\x09" * BLOCK_SIZE + blocks[2] + b"tail")
    return first, second


def test_the_local_folder_stores_no_block(tmp_path: Path) -> None:
    """twinbase serves blocks from the checkpoint files: the ids are all a checkpoint needs."""
    store = LocalBlobStore(tmp_path / "blobs", UrlSigner(os.urandom(32)))
    first, second = _two_versions(tmp_path)
    ids_a = containers.store_blocks(store, IMODEL, first)
    ids_b = containers.store_blocks(store, IMODEL, second)
    assert len(ids_a) == len(ids_b) == 4 * 16
    assert ids_a[:16] == ids_b[:16] and ids_a[32:] == ids_b[32:] and ids_a[16:32] != ids_b[16:32]
    assert not list((tmp_path / "blobs").rglob("*.bcv"))


def test_identical_blocks_are_stored_once_by_a_blob_service(azurite: Azurite, tmp_path: Path) -> None:
    """Where the blob service serves the container (Azure), two checkpoints that differ in one block share
    the rest: the second stores one block; the last, short one is stored zero-padded."""
    from twinbase.store.blobs.azure import AzureBlobStore

    store = AzureBlobStore.from_connection_string(azurite.connection_string, f"tb-{uuid.uuid4().hex[:12]}")
    first, second = _two_versions(tmp_path)
    cloud = store.cloud_container(blob_keys.container_prefix(IMODEL), 60)
    assert cloud is not None
    listing = store.service.get_container_client(cloud.container)

    ids_a = containers.store_blocks(store, IMODEL, first)
    stored = sorted(b.name for b in listing.list_blobs())
    ids_b = containers.store_blocks(store, IMODEL, second)
    stored_after = sorted(b.name for b in listing.list_blobs())

    assert stored == sorted({block_name(ids_a[i : i + 16]) for i in range(0, 64, 16)})
    assert set(stored_after) - set(stored) == {block_name(ids_b[16:32])}
    assert store.stat(blob_keys.container_block(IMODEL, block_name(ids_a[48:]))).size == BLOCK_SIZE


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_blocks_of_evicted_checkpoints_are_collected(
    backend: str, azurite: Azurite, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    """The Azure backend with no budget for unpinned checkpoints: each completion evicts the one before,
    and after the grace time (1 s here) the blocks only they used go; the others stay."""
    env = {
        **azurite.server_env(),
        "TWINBASE_CHECKPOINT_BUDGET_BYTES": "0",
        "TWINBASE_CHECKPOINT_BLOCK_GRACE_SECONDS": "1",
    }
    with running_server(backend, tmp_path_factory, **env) as server:
        client = server.user()
        imodel = new_imodel(client, new_itwin(client)["id"], path=baseline_copy(tmp_path))
        briefcase = client.post(f"/imodels/{imodel['id']}/briefcases", json={})
        briefcase_id = briefcase.json()["briefcase"]["briefcaseId"]
        for cs in readonly_chain():
            assert push_file(client, imodel["id"], briefcase_id, cs).status_code == 200
        tip = wait_checkpoint(client, f"/imodels/{imodel['id']}/changesets/3/checkpoint")
        baseline = wait_checkpoint(client, f"/imodels/{imodel['id']}/changesets/0/checkpoint")

        info = tip["directoryAccessInfo"]
        container = BlobServiceClient.from_connection_string(azurite.connection_string).get_container_client(
            info["baseDirectory"]
        )
        wanted = set()
        for answer in (baseline, tip):
            body, _ = fetch_from_blob_service(azurite, info, answer["dbName"])
            assert body[: answer["size"]] == download(answer["_links"]["download"]["href"])
            wanted |= body_blocks(azurite, info, answer["dbName"])
        deadline = time.monotonic() + 60
        while (names := {b.name for b in container.list_blobs()} - {"manifest.bcv"}) != wanted:
            assert names >= wanted, "a block still in use was deleted"
            assert time.monotonic() < deadline, f"blocks of evicted checkpoints left: {names - wanted}"
            time.sleep(0.3)
