"""iTwin images: ``PUT/GET/DELETE /itwins/{id}/image`` against the real server (reference B.2, B.6)."""

from __future__ import annotations

import struct
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
from sqlalchemy import select

from conftest import Server, assert_error, new_itwin
from twinbase.store.db import Database
from twinbase.store.models import Member, MemberRole, Role


def png(width: int, height: int) -> bytes:
    """A real, decodable 8-bit greyscale PNG."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = b"".join(b"\x00" + bytes((x * 7) % 256 for x in range(width)) for _ in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def jpeg(width: int, height: int) -> bytes:
    """A tiny baseline greyscale JPEG (uniform grey): APP0, DQT, SOF0, two one-code DHTs, SOS, EOI."""

    def segment(marker: int, payload: bytes) -> bytes:
        return bytes((0xFF, marker)) + struct.pack(">H", len(payload) + 2) + payload

    app0 = segment(0xE0, b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00")
    dqt = segment(0xDB, b"\x00" + bytes([1] * 64))
    sof0 = segment(0xC0, struct.pack(">BHHB", 8, height, width, 1) + b"\x01\x11\x00")
    # One 1-bit code each: DC category 0, AC end-of-block; so every block is the bits "00".
    dht_dc = segment(0xC4, b"\x00" + bytes([1] + [0] * 15) + b"\x00")
    dht_ac = segment(0xC4, b"\x10" + bytes([1] + [0] * 15) + b"\x00")
    sos = segment(0xDA, b"\x01\x01\x00\x00\x3f\x00")
    blocks = ((width + 7) // 8) * ((height + 7) // 8)
    bits = "00" * blocks
    bits += "1" * (-len(bits) % 8)
    data = bytes(int(bits[i : i + 8], 2) for i in range(0, len(bits), 8)).replace(b"\xff", b"\xff\x00")
    return b"\xff\xd8" + app0 + dqt + sof0 + dht_dc + dht_ac + sos + data + b"\xff\xd9"


# The 600x100 PNG the iTwins client's own test sends: signature, IHDR and IEND only.
CLIENT_WIDE_PNG = bytes.fromhex(
    "89504e470d0a1a0a"  # signature
    "0000000d49484452"  # IHDR, 13 bytes
    "00000258000000640802000000"  # 600 x 100, 8-bit RGB
    "4b6d29dc"  # CRC
    "0000000049454e44ae426082"  # IEND
)


def put_image(client: httpx.Client, itwin_id: str, data: bytes, content_type: str | None) -> httpx.Response:
    headers = {"Content-Type": content_type} if content_type else {}
    return client.put(f"/itwins/{itwin_id}/image", content=data, headers=headers)


def image_files(server: Server, itwin_id: str) -> list[str]:
    folder = Path(server.data_dir) / "blobs" / "itwins" / itwin_id
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def fetch(url: str) -> httpx.Response:
    return httpx.get(url, timeout=30)  # no Authorization header: signed URLs stand alone


def check_image_shape(image: dict[str, object], ext: str) -> None:
    assert set(image) == {"id", "smallImageName", "smallImageUrl", "largeImageName", "largeImageUrl"}
    image_id = str(image["id"])
    assert image["smallImageName"] == f"{image_id}_s.{ext}"
    assert image["largeImageName"] == f"{image_id}_l.{ext}"
    for key in ("smallImageUrl", "largeImageUrl"):
        assert str(image[key]).startswith("http://127.0.0.1:"), image[key]


def test_png_upload_get_fetch_delete(server: Server) -> None:
    data = png(40, 20)
    with server.user() as alice:
        it = new_itwin(alice)
        assert_error(alice.get(f"/itwins/{it['id']}/image"), 404, "iTwinImageNotFound")

        resp = put_image(alice, it["id"], data, "image/png")
        assert resp.status_code == 201, resp.text
        image = resp.json()["image"]
        check_image_shape(image, "png")

        for key in ("largeImageUrl", "smallImageUrl"):
            got = fetch(image[key])
            assert got.status_code == 200, got.text
            assert got.content == data  # no resizing library: the small image is the same bytes
            assert got.headers["content-type"] == "image/png"

        again = alice.get(f"/itwins/{it['id']}/image")
        assert again.status_code == 200
        same = again.json()["image"]
        check_image_shape(same, "png")
        assert (same["id"], same["smallImageName"], same["largeImageName"]) == (
            image["id"],
            image["smallImageName"],
            image["largeImageName"],
        )
        assert fetch(same["largeImageUrl"]).content == data

        # The iTwin's representation names the image and links it.
        rep = alice.get(f"/itwins/{it['id']}").json()["iTwin"]
        assert rep["imageName"] == image["largeImageName"]
        assert fetch(rep["image"]).content == data

        assert image_files(server, it["id"]) == sorted([image["largeImageName"], image["smallImageName"]])

        deleted = alice.delete(f"/itwins/{it['id']}/image")
        assert deleted.status_code == 204 and deleted.content == b""
        assert_error(alice.get(f"/itwins/{it['id']}/image"), 404, "iTwinImageNotFound")
        assert_error(alice.delete(f"/itwins/{it['id']}/image"), 404, "iTwinImageNotFound")
        assert image_files(server, it["id"]) == []
        assert fetch(image["largeImageUrl"]).status_code == 404
        assert alice.get(f"/itwins/{it['id']}").json()["iTwin"]["imageName"] is None


def test_jpeg_upload_replaces_png(server: Server) -> None:
    with server.user() as alice:
        it = new_itwin(alice)
        first = put_image(alice, it["id"], png(10, 10), "image/png").json()["image"]
        data = jpeg(64, 16)
        resp = put_image(alice, it["id"], data, "image/jpeg; charset=binary")
        assert resp.status_code == 201, resp.text
        second = resp.json()["image"]
        check_image_shape(second, "jpg")
        assert second["id"] != first["id"]
        got = fetch(second["largeImageUrl"])
        assert got.status_code == 200 and got.content == data
        assert got.headers["content-type"] == "image/jpeg"
        # The replaced image is gone, from the store and from its links.
        assert image_files(server, it["id"]) == sorted([second["largeImageName"], second["smallImageName"]])
        assert fetch(first["largeImageUrl"]).status_code == 404


def test_signed_url_tampering(server: Server) -> None:
    with server.user() as alice:
        it = new_itwin(alice)
        url = put_image(alice, it["id"], png(8, 8), "image/png").json()["image"]["largeImageUrl"]
        parts = urlsplit(url)
        query = parse_qs(parts.query)
        sig = query["sig"][0]
        bad_sig = ("A" if sig[0] != "A" else "B") + sig[1:]
        tampered = url.replace(f"sig={sig}", f"sig={bad_sig}")
        assert_error(fetch(tampered), 404, "FileNotFound")
        later = url.replace(f"se={query['se'][0]}", f"se={int(query['se'][0]) + 3600}")
        assert_error(fetch(later), 404, "FileNotFound")
        unsigned = f"{parts.scheme}://{parts.netloc}{parts.path}"
        assert_error(fetch(unsigned), 404, "FileNotFound")
        assert fetch(url).status_code == 200


def test_too_large_is_413_and_writes_nothing(server: Server) -> None:
    with server.user() as alice:
        it = new_itwin(alice)
        big = bytearray(6 * 1024 * 1024)
        big[:4] = b"\xff\xd8\xff\xe0"  # what the client's test sends: a JPEG header, then zeros
        assert_error(put_image(alice, it["id"], bytes(big), "image/jpeg"), 413, "RequestTooLarge")

        def chunks() -> Iterator[bytes]:  # no Content-Length: the cap applies while streaming
            yield png(10, 10)
            for _ in range(6):
                yield bytes(1024 * 1024)

        resp = alice.put(f"/itwins/{it['id']}/image", content=chunks(), headers={"Content-Type": "image/png"})
        assert_error(resp, 413, "RequestTooLarge")
        # Exactly the cap is accepted.
        exact = png(10, 10)
        exact += b"\x00" * (5 * 1024 * 1024 - len(exact))
        assert put_image(alice, it["id"], exact, "image/png").status_code == 201
        assert len(image_files(server, it["id"])) == 2


def test_invalid_images_are_422(server: Server) -> None:
    with server.user() as alice:
        it = new_itwin(alice)
        err = assert_error(
            put_image(alice, it["id"], CLIENT_WIDE_PNG, "image/png"), 422, "InvalidiTwinsRequest"
        )
        assert err["details"][0]["code"] == "InvalidValue"
        assert "5:1" in err["details"][0]["message"]
        assert_error(put_image(alice, it["id"], png(600, 100), "image/png"), 422, "InvalidiTwinsRequest")
        assert_error(put_image(alice, it["id"], png(10, 51), "image/png"), 422, "InvalidiTwinsRequest")
        assert_error(put_image(alice, it["id"], jpeg(8, 48), "image/jpeg"), 422, "InvalidiTwinsRequest")
        # Exactly 5:1 is fine.
        assert put_image(alice, it["id"], png(50, 10), "image/png").status_code == 201
        ok_files = image_files(server, it["id"])

        for ctype in ("text/plain", "image/gif", None):
            err = assert_error(put_image(alice, it["id"], png(10, 10), ctype), 422, "InvalidiTwinsRequest")
            assert err["details"][0]["code"] == "InvalidValue"
            assert err["details"][0]["target"] == "Content-Type"
        # Bytes that are not an image of the declared type.
        assert_error(put_image(alice, it["id"], png(10, 10), "image/jpeg"), 422, "InvalidiTwinsRequest")
        assert_error(put_image(alice, it["id"], jpeg(8, 8), "image/png"), 422, "InvalidiTwinsRequest")
        assert_error(
            put_image(alice, it["id"], b"GIF89a not really", "image/png"), 422, "InvalidiTwinsRequest"
        )
        assert_error(put_image(alice, it["id"], b"", "image/png"), 422, "InvalidiTwinsRequest")
        assert_error(
            put_image(alice, it["id"], b"\xff\xd8\xff\xd9", "image/jpeg"), 422, "InvalidiTwinsRequest"
        )
        # Nothing half-written: only the accepted image's files remain.
        assert image_files(server, it["id"]) == ok_files


def _add_reader(server: Server, itwin_id: str, user_id: str) -> None:
    db = Database(server.database_url)
    try:
        with db.write() as session:
            role_id = session.scalar(
                select(Role.id).where(Role.itwin_id == itwin_id, Role.display_name == "Reader")
            )
            assert role_id
            session.add(Member(itwin_id=itwin_id, user_id=user_id, is_owner=False))
            session.flush()
            session.add(MemberRole(itwin_id=itwin_id, user_id=user_id, role_id=role_id))
    finally:
        db.dispose()


def test_non_member_404_reader_403(server: Server) -> None:
    bob_id = f"bob-{uuid.uuid4().hex[:10]}"
    with server.user() as alice, server.client(server.token(bob_id)) as bob:
        it = new_itwin(alice)
        data = png(10, 10)
        image = put_image(alice, it["id"], data, "image/png").json()["image"]

        bob.get("/itwins/")  # recorded on first sight
        assert_error(bob.get(f"/itwins/{it['id']}/image"), 404, "iTwinNotFound")
        assert_error(put_image(bob, it["id"], png(10, 10), "image/png"), 404, "iTwinNotFound")
        assert_error(put_image(bob, it["id"], b"x" * (6 * 1024 * 1024), "image/png"), 404, "iTwinNotFound")
        assert_error(bob.delete(f"/itwins/{it['id']}/image"), 404, "iTwinNotFound")
        unknown = "12345678-1234-1234-1234-123456789abc"
        assert_error(put_image(alice, unknown, data, "image/png"), 404, "iTwinNotFound")
        assert_error(alice.get(f"/itwins/{unknown}/image"), 404, "iTwinNotFound")
        assert_error(alice.delete(f"/itwins/{unknown}/image"), 404, "iTwinNotFound")

        _add_reader(server, it["id"], bob_id)
        got = bob.get(f"/itwins/{it['id']}/image")
        assert got.status_code == 200, got.text
        assert got.json()["image"]["id"] == image["id"]
        assert_error(put_image(bob, it["id"], png(10, 10), "image/png"), 403, "InsufficientPermissions")
        assert_error(bob.delete(f"/itwins/{it['id']}/image"), 403, "InsufficientPermissions")
        assert alice.get(f"/itwins/{it['id']}/image").json()["image"]["id"] == image["id"]


def test_no_authorization_is_401(server: Server) -> None:
    with server.user() as alice, server.client() as anonymous:
        it = new_itwin(alice)
        assert_error(put_image(anonymous, it["id"], png(10, 10), "image/png"), 401, "HeaderNotFound")
        assert_error(anonymous.get(f"/itwins/{it['id']}/image"), 401, "HeaderNotFound")
