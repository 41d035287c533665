"""History that cannot be rewritten (issue 11 part 2), on both metadata and both blob backends.

An upload link writes a staging key; completion checks the staged size, promotes it to the final key
and records its SHA-256. After completion the old link is refused (local: 409 ``UploadCompleted`` from
twinbase; Azure: 412 ``LeaseIdMissing`` from the blob service itself, the sealed upload blob is
leased) and downloads serve exactly the completed bytes.
"""

from __future__ import annotations

import base64
import hashlib
import threading
import time
import uuid
from typing import Any

import httpx
from sqlalchemy import create_engine, text

from conftest import SAMPLE_BIM, Server, assert_error, new_itwin
from support.changesets import MadeChangeset, make_changeset
from test_changesets import acquire, complete, create

BLOCK_BLOB = {"x-ms-blob-type": "BlockBlob"}


def stored_sha256(server: Server, sql: str, **params: str) -> str | None:
    engine = create_engine(server.database_url)
    try:
        with engine.connect() as conn:
            value = conn.execute(text(sql), params).scalar_one()
    finally:
        engine.dispose()
    return None if value is None else str(value)


def empty_imodel(client: httpx.Client) -> str:
    itwin = new_itwin(client)
    resp = client.post("/imodels/", json={"iTwinId": itwin["id"], "name": f"h-{uuid.uuid4().hex[:8]}"})
    assert resp.status_code == 201, resp.text
    return str(resp.json()["iModel"]["id"])


def tip(client: httpx.Client, imodel_id: str) -> str:
    resp = client.get(f"/imodels/{imodel_id}/changesets", params={"$orderBy": "index desc", "$top": 1})
    items = resp.json()["changesets"]
    return str(items[0]["id"]) if items else ""


def assert_refused(server: Server, resp: httpx.Response) -> None:
    """A write through a completed file's upload link is refused, by twinbase or by the blob service."""
    if server.blob_backend == "local":
        assert_error(resp, 409, "UploadCompleted")
    else:
        assert resp.status_code == 412, resp.text
        assert resp.headers.get("x-ms-error-code") == "LeaseIdMissing", resp.headers


def new_changeset(
    client: httpx.Client, imodel_id: str, briefcase: int, made: MadeChangeset
) -> dict[str, Any]:
    """Create (waitingForFile) ``made`` on the iModel's tip, the parent it was made for."""
    parent = tip(client, imodel_id)
    assert made.parent_id == parent
    resp = create(client, imodel_id, briefcase, parent, len(made.data), id=made.id)
    assert resp.status_code == 201, resp.text
    return dict(resp.json()["changeset"])


def same_changeset_other_bytes(made: MadeChangeset, count: int) -> list[bytes]:
    """``count`` files of ``made``'s size and id but other bytes: only the LZMA2 dictionary byte differs
    (16 = 1 MiB up to 16 + count - 1; the stream was made with a 1 MiB dictionary, so each decodes to the
    same content, and the id hashes the content, not the compressed bytes)."""
    files = [made.data[:22] + bytes([16 + n]) + made.data[23:] for n in range(count)]
    assert len(set(files)) == count and all(len(f) == len(made.data) for f in files)
    return files


def test_upload_links_point_at_a_staging_key(blob_server: Server) -> None:
    client = blob_server.user()
    imodel_id = empty_imodel(client)
    cs = new_changeset(client, imodel_id, acquire(client, imodel_id), make_changeset(""))
    href = cs["_links"]["upload"]["href"]
    assert f"/uploads/imodels/{imodel_id}/changesets/{cs['id']}.cs?" in href
    if blob_server.blob_backend == "azure":  # a real SAS URL to the blob service, create+write only
        assert (
            href.startswith("http://127.0.0.1:") and f":{blob_server.base_url.rsplit(':', 1)[1]}/" not in href
        )
        assert "sig=" in href and "sp=cw" in href


def test_completed_changeset_cannot_be_rewritten(blob_server: Server) -> None:
    client = blob_server.user()
    imodel_id = empty_imodel(client)
    briefcase = acquire(client, imodel_id)
    made = make_changeset("", payload=1000)
    original = made.data
    cs = new_changeset(client, imodel_id, briefcase, made)
    up = cs["_links"]["upload"]["href"]
    assert httpx.put(up, content=original, headers=BLOCK_BLOB).status_code == 201
    done = complete(client, cs, briefcase)
    assert done.status_code == 200, done.text
    assert done.json()["changeset"]["index"] == 1

    # The reproduction of the issue: 40 bytes of other data through the old link.
    assert_refused(blob_server, httpx.put(up, content=make_changeset("").data, headers=BLOCK_BLOB))
    block_id = base64.b64encode(b"block-0").decode()
    assert_refused(blob_server, httpx.put(f"{up}&comp=block&blockid={block_id}", content=b"x" * 40))
    block_list = f"<?xml version='1.0'?><BlockList><Latest>{block_id}</Latest></BlockList>"
    assert_refused(blob_server, httpx.put(f"{up}&comp=blocklist", content=block_list))

    got = client.get(f"/imodels/{imodel_id}/changesets/{cs['id']}")
    download = httpx.get(got.json()["changeset"]["_links"]["download"]["href"])
    assert download.status_code == 200 and download.content == original
    digest = hashlib.sha256(original).hexdigest()
    sql = "SELECT content_sha256 FROM changesets WHERE imodel_id = :i AND id = :c"
    assert stored_sha256(blob_server, sql, i=imodel_id, c=cs["id"]) == digest
    # A retried complete gets the same answer and changes nothing.
    again = complete(client, cs, briefcase)
    assert again.status_code == 200 and again.json()["changeset"]["index"] == 1
    assert httpx.get(got.json()["changeset"]["_links"]["download"]["href"]).content == original


def test_wrong_size_is_refused_and_adds_nothing(blob_server: Server) -> None:
    client = blob_server.user()
    imodel_id = empty_imodel(client)
    briefcase = acquire(client, imodel_id)
    made = make_changeset("", payload=1000)
    right = made.data
    cs = new_changeset(client, imodel_id, briefcase, made)
    assert_error(complete(client, cs, briefcase), 422, "InvalidiModelsRequest")  # nothing uploaded yet
    up = cs["_links"]["upload"]["href"]
    assert httpx.put(up, content=right[:-1], headers=BLOCK_BLOB).status_code == 201
    err = assert_error(complete(client, cs, briefcase), 422, "InvalidiModelsRequest")
    detail = err["details"][0]
    assert detail["code"] == "DataConflict" and f"has {len(right) - 1} bytes" in detail["message"], err
    assert client.get(f"/imodels/{imodel_id}/changesets").json()["changesets"] == []
    assert client.get(f"/imodels/{imodel_id}").json()["iModel"]["lastChangesetPushDateTime"] is None
    # The link still accepts bytes while the changeset waits: the right file completes it.
    assert httpx.put(up, content=right, headers=BLOCK_BLOB).status_code == 201
    done = complete(client, cs, briefcase)
    assert done.status_code == 200 and done.json()["changeset"]["index"] == 1, done.text
    got = client.get(f"/imodels/{imodel_id}/changesets/1").json()["changeset"]
    assert httpx.get(got["_links"]["download"]["href"]).content == right


def test_completed_baseline_cannot_be_rewritten(blob_server: Server) -> None:
    client = blob_server.user()
    itwin = new_itwin(client)
    data = SAMPLE_BIM.read_bytes()
    body = {"iTwinId": itwin["id"], "name": f"b-{uuid.uuid4().hex[:8]}", "baselineFile": {"size": len(data)}}
    created = client.post("/imodels/", json=body).json()["iModel"]
    up = created["_links"]["upload"]["href"]
    assert f"/uploads/imodels/{created['id']}/baseline.bim?" in up
    # A short file first: refused at completion, nothing scheduled, the link stays open.
    assert httpx.put(up, content=data[:100], headers=BLOCK_BLOB).status_code == 201
    err = assert_error(
        client.post(created["_links"]["complete"]["href"], json={}), 422, "InvalidiModelsRequest"
    )
    assert err["details"][0]["code"] == "DataConflict", err
    baseline = client.get(f"/imodels/{created['id']}/baselinefile").json()["baselineFile"]
    assert baseline["state"] == "waitingForFile"
    assert httpx.put(up, content=data, headers=BLOCK_BLOB).status_code == 201
    assert client.post(created["_links"]["complete"]["href"], json={}).status_code == 200
    sql = "SELECT content_sha256 FROM baseline_files WHERE imodel_id = :i"
    assert stored_sha256(blob_server, sql, i=created["id"]) is not None
    assert_refused(blob_server, httpx.put(up, content=b"z" * 40, headers=BLOCK_BLOB))
    for _ in range(300):
        baseline = client.get(f"/imodels/{created['id']}/baselinefile").json()["baselineFile"]
        if baseline["state"] != "initializationScheduled":
            break
        time.sleep(0.2)
    assert baseline["state"] == "initialized", baseline
    served = httpx.get(baseline["_links"]["download"]["href"]).content
    assert len(served) == baseline["fileSize"]
    # The hash is that of the bytes the baseline serves (the initialized, stamped file).
    assert stored_sha256(blob_server, sql, i=created["id"]) == hashlib.sha256(served).hexdigest()
    assert_refused(blob_server, httpx.put(up, content=b"z" * 40, headers=BLOCK_BLOB))


def test_puts_racing_the_completion_never_change_the_completed_bytes(blob_server: Server) -> None:
    """PUTs of other same-size payloads keep arriving while the changeset completes: the completed file
    is one whole payload, its recorded hash is that of the bytes served, and later PUTs change nothing."""
    client = blob_server.user()
    imodel_id = empty_imodel(client)
    briefcase = acquire(client, imodel_id)
    made = make_changeset("", payload=200_000)
    payloads = same_changeset_other_bytes(made, 8)
    cs = new_changeset(client, imodel_id, briefcase, made)
    up = cs["_links"]["upload"]["href"]
    assert httpx.put(up, content=payloads[0], headers=BLOCK_BLOB).status_code == 201
    stop = threading.Event()
    statuses: list[int] = []

    def hammer(n: int) -> None:
        with httpx.Client() as c:
            while not stop.is_set():
                statuses.append(c.put(up, content=payloads[n], headers=BLOCK_BLOB).status_code)

    threads = [threading.Thread(target=hammer, args=(n,)) for n in (1, 2, 3)]
    for t in threads:
        t.start()
    try:
        done = complete(client, cs, briefcase)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert done.status_code == 200, done.text
    href = client.get(f"/imodels/{imodel_id}/changesets/1").json()["changeset"]["_links"]["download"]["href"]
    served = httpx.get(href).content
    assert served in payloads
    sql = "SELECT content_sha256 FROM changesets WHERE imodel_id = :i AND id = :c"
    assert stored_sha256(blob_server, sql, i=imodel_id, c=cs["id"]) == hashlib.sha256(served).hexdigest()
    assert set(statuses) <= {201, 409, 412}, statuses  # accepted before completion, refused after
    assert_refused(blob_server, httpx.put(up, content=payloads[4], headers=BLOCK_BLOB))
    assert httpx.get(href).content == served
