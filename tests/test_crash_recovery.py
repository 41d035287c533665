"""A server killed during an upload leaves no partial changeset visible, and the retry succeeds.

The server is killed with SIGKILL (no shutdown code runs) half-way through a changeset upload, then
started again on the same data folder and database.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from conftest import create_pg_database, drop_pg_database, new_imodel, new_itwin, pg_url, start_server
from support.changesets import make_changeset


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_kill_during_changeset_upload_then_retry(backend: str, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    pg_name = create_pg_database() if backend == "postgres" else None
    url = pg_url(pg_name) if pg_name else f"sqlite:///{data_dir / 'twinbase.db'}"
    server = start_server(data_dir, url, backend)
    try:
        token = server.token("crash-user")
        with server.client(token) as alice:
            itwin = new_itwin(alice)
            imodel = new_imodel(alice, itwin["id"])
            briefcase = alice.post(f"/imodels/{imodel['id']}/briefcases", json={}).json()["briefcase"][
                "briefcaseId"
            ]
            # A valid changeset of about 8 MiB (the completion parses it and checks its id).
            made = make_changeset("", payload=8 * 1024 * 1024)
            payload = made.data
            body = {
                "id": made.id,
                "briefcaseId": briefcase,
                "fileSize": len(payload),
                "parentId": "",
            }
            created = alice.post(f"/imodels/{imodel['id']}/changesets", json=body)
            assert created.status_code == 201, created.text
            upload = created.json()["changeset"]["_links"]["upload"]["href"]

        # Send half the file, then kill the server while it is reading the body.
        parts = urlsplit(upload)
        with socket.create_connection((parts.hostname, parts.port)) as sock:
            head = (
                f"PUT {parts.path}?{parts.query} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                f"x-ms-blob-type: BlockBlob\r\nContent-Length: {len(payload)}\r\n\r\n"
            )
            sock.sendall(head.encode() + payload[: len(payload) // 2])
            time.sleep(0.3)
            server.process.kill()
            server.process.wait(10)

        server = start_server(data_dir, url, backend)
        token = server.token("crash-user")
        with server.client(token) as alice:
            # Nothing half-written is visible: no changeset in the timeline, no file under its name.
            listed = alice.get(f"/imodels/{imodel['id']}/changesets").json()["changesets"]
            assert listed == []
            blob = data_dir / "blobs" / "imodels" / imodel["id"] / "changesets" / f"{body['id']}.cs"
            assert not blob.exists()
            # The retry: the client sends the same create again, uploads, completes.
            again = alice.post(f"/imodels/{imodel['id']}/changesets", json=body)
            assert again.status_code == 201, again.text
            link = again.json()["changeset"]["_links"]
            import httpx

            put = httpx.put(link["upload"]["href"], content=payload, headers={"x-ms-blob-type": "BlockBlob"})
            assert put.status_code == 201
            done = alice.patch(
                link["complete"]["href"], json={"state": "fileUploaded", "briefcaseId": briefcase}
            )
            assert done.status_code == 200, done.text
            assert done.json()["changeset"]["index"] == 1
            one = alice.get(
                f"/imodels/{imodel['id']}/changesets/1", headers={"Prefer": "return=representation"}
            )
            download = httpx.get(one.json()["changeset"]["_links"]["download"]["href"])
            assert download.content == payload
    finally:
        server.stop()
        if pg_name:
            drop_pg_database(pg_name)
