"""Blob links on the real server: plain PUT/GET, Azure block-blob flavour, ranges, bad signatures."""

from __future__ import annotations

import base64
import os
import uuid

import httpx

from conftest import Server, assert_error
from twinbase.store.blobs import UrlSigner


def signer(server: Server) -> UrlSigner:
    return UrlSigner.from_file(server.data_dir / "keys" / "url-signing.key")


def links(server: Server, key: str) -> tuple[str, str]:
    s = signer(server)
    return s.url(server.base_url, key, 600, perm="w"), s.url(server.base_url, key, 600, perm="r")


def test_single_put_then_get_with_ranges(server: Server) -> None:
    key = f"imodels/{uuid.uuid4()}/changesets/a.cs"
    up, down = links(server, key)
    data = os.urandom(300_000)
    with httpx.Client() as c:
        resp = c.put(up, content=data, headers={"x-ms-blob-type": "BlockBlob"})
        assert resp.status_code == 201 and resp.headers["etag"] and resp.headers["last-modified"]
        got = c.get(down)
        assert got.status_code == 200 and got.content == data
        assert got.headers["content-length"] == str(len(data)) and got.headers["etag"] == resp.headers["etag"]
        part = c.get(down, headers={"Range": "bytes=0-0"})
        assert part.status_code == 206 and part.headers["content-range"] == f"bytes 0-0/{len(data)}"
        part = c.get(down, headers={"x-ms-range": "bytes=1000-", "If-Match": resp.headers["etag"]})
        assert part.status_code == 206 and part.content == data[1000:]
        assert c.get(down, headers={"If-Match": '"stale"'}).status_code == 412
        assert_error(c.get(down, headers={"Range": "bytes=999999999-"}), 416, "InvalidRange")


def test_chunked_plain_put(server: Server) -> None:
    key = f"imodels/{uuid.uuid4()}/baseline.bim"
    up, down = links(server, key)
    chunks = [os.urandom(65536) for _ in range(20)]

    def body():  # type: ignore[no-untyped-def]
        yield from chunks

    with httpx.Client() as c:
        resp = c.put(up, content=body(), headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert resp.status_code == 201
        assert c.get(down).content == b"".join(chunks)


def test_put_block_and_block_list(server: Server) -> None:
    key = f"imodels/{uuid.uuid4()}/big.bim"
    up, down = links(server, key)
    blocks = [
        (base64.b64encode(f"block-{i:05d}".encode()).decode(), os.urandom(100_000 + i)) for i in range(6)
    ]
    with httpx.Client() as c:
        for block_id, data in reversed(blocks):  # blocks may arrive out of order
            r = c.put(f"{up}&comp=block&blockid={block_id}", content=data)
            assert r.status_code == 201, r.text
        xml = (
            "<?xml version='1.0' encoding='utf-8'?><BlockList>"
            + "".join(f"<Latest>{b}</Latest>" for b, _ in blocks)
            + "</BlockList>"
        )
        r = c.put(f"{up}&comp=blocklist", content=xml, headers={"Content-Type": "application/xml"})
        assert r.status_code == 201 and r.headers["etag"]
        assert c.get(down).content == b"".join(d for _, d in blocks)
        bad = c.put(f"{up}&comp=blocklist", content="<BlockList><Latest>bm9wZQ==</Latest></BlockList>")
        assert bad.status_code == 422


def test_bad_links_are_404(server: Server) -> None:
    key = f"imodels/{uuid.uuid4()}/x.cs"
    up, down = links(server, key)
    with httpx.Client() as c:
        # A read link cannot upload, a write link cannot download, tampering breaks both.
        assert_error(c.put(down, content=b"x"), 404, "FileNotFound")
        assert c.put(up, content=b"abc").status_code == 201
        assert_error(c.get(up), 404, "FileNotFound")
        assert_error(c.get(down.replace("sig=", "sig=A")), 404, "FileNotFound")
        assert_error(c.get(down.replace(key, key + "x")), 404, "FileNotFound")
        assert_error(c.get(f"{server.base_url}/blobs/{key}"), 404, "FileNotFound")
        expired = signer(server).url(server.base_url, key, -10)
        assert_error(c.get(expired), 404, "FileNotFound")


def test_truncated_upload_keeps_old_bytes(server: Server) -> None:
    import socket

    key = f"imodels/{uuid.uuid4()}/t.cs"
    up, down = links(server, key)
    with httpx.Client() as c:
        assert c.put(up, content=b"original").status_code == 201
    # Declare 1 MB, send 10 bytes, hang up: the blob must keep its old content.
    host, port = server.base_url.removeprefix("http://").split(":")
    path = up.split(f":{port}", 1)[1]
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(
            f"PUT {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 1000000\r\n\r\n".encode() + b"0123456789"
        )
    with httpx.Client() as c:
        for _ in range(50):
            if c.get(down).content == b"original":
                break
        assert c.get(down).content == b"original"
