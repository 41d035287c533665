"""File links on the real server: plain PUT/GET, the Azure block-blob flavour, ranges, bad links.

The tests that speak the block-blob protocol run on both blob backends (``blob_server``): with Azurite
the links are SAS URLs and the same client calls go to the blob service. Plain PUT and twinbase's own
link checks are local-store behaviour (``server``).
"""

from __future__ import annotations

import base64
from typing import Any

import httpx

from conftest import Server, assert_error
from support.changesets import MadeChangeset, make_changeset
from test_changesets import acquire, complete, create
from test_history import empty_imodel
from twinbase.store.blobs import UrlSigner


def signer(server: Server) -> UrlSigner:
    return UrlSigner.from_file(server.data_dir / "keys" / "url-signing.key")


class Push:
    """A changeset waiting for its file: its upload link, then completion and its download link."""

    def __init__(self, server: Server, made: MadeChangeset) -> None:
        self.client = server.user()
        self.imodel_id = empty_imodel(self.client)
        self.briefcase = acquire(self.client, self.imodel_id)
        resp = create(self.client, self.imodel_id, self.briefcase, "", len(made.data), id=made.id)
        assert resp.status_code == 201, resp.text
        self.changeset: dict[str, Any] = resp.json()["changeset"]
        self.upload: str = self.changeset["_links"]["upload"]["href"]
        self.staging_key = f"uploads/imodels/{self.imodel_id}/changesets/{self.changeset['id']}.cs"

    def complete(self) -> str:
        done = complete(self.client, self.changeset, self.briefcase)
        assert done.status_code == 200, done.text
        got = self.client.get(f"/imodels/{self.imodel_id}/changesets/{self.changeset['id']}")
        return str(got.json()["changeset"]["_links"]["download"]["href"])


def test_single_put_then_get_with_ranges(blob_server: Server) -> None:
    made = make_changeset("", payload=300_000)
    data = made.data
    push = Push(blob_server, made)
    with httpx.Client() as c:
        resp = c.put(push.upload, content=data, headers={"x-ms-blob-type": "BlockBlob"})
        assert resp.status_code == 201 and resp.headers["etag"] and resp.headers["last-modified"]
        down = push.complete()
        got = c.get(down)
        assert got.status_code == 200 and got.content == data
        assert got.headers["content-length"] == str(len(data)) and got.headers["etag"]
        etag = got.headers["etag"]
        part = c.get(down, headers={"Range": "bytes=0-0"})
        assert part.status_code == 206 and part.headers["content-range"] == f"bytes 0-0/{len(data)}"
        part = c.get(down, headers={"x-ms-range": "bytes=1000-", "If-Match": etag})
        assert part.status_code == 206 and part.content == data[1000:]
        assert c.get(down, headers={"If-Match": '"stale"'}).status_code == 412
        past_end = c.get(down, headers={"Range": "bytes=999999999-"})
        if blob_server.blob_backend == "local":
            assert_error(past_end, 416, "InvalidRange")
        assert past_end.status_code == 416


def test_chunked_plain_put(server: Server) -> None:
    made = make_changeset("", payload=20 * 65536)
    chunks = [made.data[i : i + 65536] for i in range(0, len(made.data), 65536)]
    push = Push(server, made)

    def body():  # type: ignore[no-untyped-def]
        yield from chunks

    with httpx.Client() as c:
        resp = c.put(
            push.upload, content=body(), headers={"Content-Type": "application/x-www-form-urlencoded"}
        )
        assert resp.status_code == 201
        assert c.get(push.complete()).content == b"".join(chunks)


def test_put_block_and_block_list(blob_server: Server) -> None:
    made = make_changeset("", payload=6 * 100_000)
    cuts = [sum(100_000 + j for j in range(i)) for i in range(6)] + [len(made.data)]  # blocks of 100000+i
    blocks = [
        (base64.b64encode(f"block-{i:05d}".encode()).decode(), made.data[cuts[i] : cuts[i + 1]])
        for i in range(6)
    ]
    push = Push(blob_server, made)
    up = push.upload
    with httpx.Client() as c:
        for block_id, data in reversed(blocks):  # blocks may arrive out of order
            r = c.put(f"{up}&comp=block&blockid={block_id}", content=data)
            assert r.status_code == 201, r.text
        bad = c.put(f"{up}&comp=blocklist", content="<BlockList><Latest>bm9wZQ==</Latest></BlockList>")
        assert bad.status_code == (422 if blob_server.blob_backend == "local" else 400), bad.text
        xml = (
            "<?xml version='1.0' encoding='utf-8'?><BlockList>"
            + "".join(f"<Latest>{b}</Latest>" for b, _ in blocks)
            + "</BlockList>"
        )
        r = c.put(f"{up}&comp=blocklist", content=xml, headers={"Content-Type": "application/xml"})
        assert r.status_code == 201 and r.headers["etag"]
        assert c.get(push.complete()).content == b"".join(d for _, d in blocks)


def test_bad_links_are_404(server: Server) -> None:
    push = Push(server, make_changeset(""))
    key, up = push.staging_key, push.upload
    down = signer(server).url(server.base_url, key, 600, perm="r")
    with httpx.Client() as c:
        # A read link cannot upload, a write link cannot download, tampering breaks both.
        assert_error(c.put(down, content=b"x"), 404, "FileNotFound")
        assert c.put(up, content=b"abc").status_code == 201
        assert_error(c.get(up), 404, "FileNotFound")
        assert c.get(down).content == b"abc"
        assert_error(c.get(down.replace("sig=", "sig=A")), 404, "FileNotFound")
        assert_error(c.get(down.replace(key, key + "x")), 404, "FileNotFound")
        assert_error(c.get(f"{server.base_url}/blobs/{key}"), 404, "FileNotFound")
        expired = signer(server).url(server.base_url, key, -10)
        assert_error(c.get(expired), 404, "FileNotFound")
        # Even a genuine write signature writes nothing but a waiting file's upload key.
        final = key.removeprefix("uploads/")
        assert_error(
            c.put(signer(server).url(server.base_url, final, 600, perm="w"), content=b"x"),
            404,
            "FileNotFound",
        )
        other = f"uploads/imodels/{push.imodel_id}/changesets/{'0' * 40}.cs"
        assert_error(
            c.put(signer(server).url(server.base_url, other, 600, perm="w"), content=b"x"),
            404,
            "FileNotFound",
        )


def test_truncated_upload_keeps_old_bytes(server: Server) -> None:
    import socket

    made = make_changeset("")
    original = made.data
    push = Push(server, made)
    up = push.upload
    down = signer(server).url(server.base_url, push.staging_key, 600, perm="r")
    with httpx.Client() as c:
        assert c.put(up, content=original).status_code == 201
    # Declare 1 MB, send 10 bytes, hang up: the blob must keep its old content.
    host, port = server.base_url.removeprefix("http://").split(":")
    path = up.split(f":{port}", 1)[1]
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(
            f"PUT {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 1000000\r\n\r\n".encode() + b"0123456789"
        )
    with httpx.Client() as c:
        for _ in range(50):
            if c.get(down).content == original:
                break
        assert c.get(down).content == original
        assert c.get(push.complete()).content == original
