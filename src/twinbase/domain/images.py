"""iTwin images: validation of the uploaded bytes and the image columns of the iTwin row.

An upload is a PNG or JPEG of at most 5 MiB whose aspect ratio is at most 5:1 either way. Its size
is read from the PNG ``IHDR`` chunk or the JPEG ``SOFn`` marker alone, so nothing is decoded. The
bytes live in the blob store under ``itwins/{iTwinId}/{imageId}_{s|l}.{png|jpg}``; the iTwin row
keeps only ``image_id`` and ``image_content_type``. Functions take the caller's session and never
commit; the blob writes and deletes are the API layer's job (around the commit).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from sqlalchemy.orm import Session

from twinbase.domain import access
from twinbase.domain.itwins import INVALID, image_name
from twinbase.errors import ErrorDetail, ImageNotFound, InvalidRequest, invalid_value
from twinbase.store.blobs import keys as layout
from twinbase.store.models import ITwin

MAX_IMAGE_BYTES = 5 * 1024 * 1024
MAX_ASPECT_RATIO = 5
CONTENT_TYPES = ("image/png", "image/jpeg")
INVALID_IMAGE = "Cannot upload iTwin image."

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Start-of-frame markers carry the frame size; C4 (DHT), C8 (JPG) and CC (DAC) share the range but do not.
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Markers without a length field: TEM and RST0..7 (SOI and EOI are handled on their own).
_JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})


class InvalidImage(InvalidRequest):
    """422 for an upload that is not an acceptable image."""

    code = INVALID
    default_message = INVALID_IMAGE


def _invalid(message: str, target: str = "image") -> InvalidImage:
    return InvalidImage(details=[invalid_value(target, message)])


@dataclass(frozen=True)
class ImageUpload:
    content_type: str
    width: int
    height: int


def content_type_of(header: str | None) -> str:
    """The declared media type, ``image/png`` or ``image/jpeg``; anything else is 422."""
    media = (header or "").split(";", 1)[0].strip().lower()
    if media not in CONTENT_TYPES:
        shown = media or "missing"
        raise InvalidImage(
            details=[
                ErrorDetail(
                    "InvalidValue",
                    f"Content-Type '{shown}' is not supported; use image/png or image/jpeg.",
                    "Content-Type",
                )
            ]
        )
    return media


def png_size(data: bytes) -> tuple[int, int] | None:
    """Width and height from the IHDR chunk, which must directly follow the signature."""
    if len(data) < 24 or not data.startswith(_PNG_SIGNATURE):
        return None
    length, kind = struct.unpack(">I4s", data[8:16])
    if kind != b"IHDR" or length != 13:
        return None
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def jpeg_size(data: bytes) -> tuple[int, int] | None:
    """Width and height from the first SOFn marker, walking the segments from SOI."""
    if len(data) < 4 or data[0] != 0xFF or data[1] != 0xD8:
        return None
    i = 2
    n = len(data)
    while i < n:
        if data[i] != 0xFF:
            return None  # segments follow each other directly until the scan starts
        while i < n and data[i] == 0xFF:  # fill bytes
            i += 1
        if i >= n:
            return None
        marker = data[i]
        i += 1
        if marker in _JPEG_STANDALONE:
            continue
        if marker in (0xD8, 0xD9, 0xDA):  # SOI again, EOI or SOS before any frame header
            return None
        if i + 2 > n:
            return None
        (length,) = struct.unpack(">H", data[i : i + 2])
        if length < 2:
            return None
        if marker in _JPEG_SOF:
            if length < 7 or i + 7 > n:
                return None
            height, width = struct.unpack(">HH", data[i + 3 : i + 7])
            return width, height
        i += length
    return None


def inspect(data: bytes, content_type: str) -> ImageUpload:
    """Check the bytes against the declared type and the aspect-ratio rule."""
    if not data:
        raise _invalid("The request body is empty; send the image bytes.", target="body")
    if content_type == "image/png":
        size = png_size(data)
        kind = "PNG"
    else:
        size = jpeg_size(data)
        kind = "JPEG"
    if size is None:
        raise _invalid(f"The request body is not a valid {kind} image.")
    width, height = size
    if width <= 0 or height <= 0:
        raise _invalid(f"The {kind} image has no size ({width}x{height}).")
    if width > MAX_ASPECT_RATIO * height or height > MAX_ASPECT_RATIO * width:
        raise _invalid(
            f"The image aspect ratio must not exceed {MAX_ASPECT_RATIO}:1 (the image is {width}x{height})."
        )
    return ImageUpload(content_type=content_type, width=width, height=height)


# -------------------------------------------------------------------------------------------- rows


def blob_key(itwin_id: str, name: str) -> str:
    return layout.itwin_image(itwin_id, name)


def blob_keys(itwin: ITwin) -> list[str]:
    """The blob keys of the iTwin's current image (small and large), empty without one."""
    names = [image_name(itwin, size) for size in ("s", "l")]
    return [blob_key(itwin.id, n) for n in names if n]


def keys_for(itwin_id: str, image_id: str, content_type: str) -> list[str]:
    ext = "png" if content_type == "image/png" else "jpg"
    return [blob_key(itwin_id, f"{image_id}_{size}.{ext}") for size in ("s", "l")]


def check_can_modify(session: Session, itwin_id: str, user_id: str) -> None:
    """404 for a caller who cannot see the iTwin, 403 without ``itwins_modify``."""
    _itwin, perms = access.visible_itwin(session, itwin_id, user_id)
    access.require(perms, access.ITWINS_MODIFY)


def set_image(
    session: Session, itwin_id: str, user_id: str, image_id: str, content_type: str
) -> tuple[ITwin, list[str]]:
    """Point the iTwin at a new image; returns it and the blob keys of the image it replaces."""
    itwin, perms = access.visible_itwin(session, itwin_id, user_id, for_update=True)
    access.require(perms, access.ITWINS_MODIFY)
    old = blob_keys(itwin)
    itwin.image_id = image_id
    itwin.image_content_type = content_type
    session.flush()
    return itwin, old


def get_image(session: Session, itwin_id: str, user_id: str) -> ITwin:
    itwin, perms = access.visible_itwin(session, itwin_id, user_id)
    access.require(perms, access.ITWINS_READ)
    if not itwin.image_id:
        raise ImageNotFound()
    return itwin


def delete_image(session: Session, itwin_id: str, user_id: str) -> list[str]:
    """Forget the iTwin's image; returns the blob keys to delete once the change is committed."""
    itwin, perms = access.visible_itwin(session, itwin_id, user_id, for_update=True)
    access.require(perms, access.ITWINS_MODIFY)
    if not itwin.image_id:
        raise ImageNotFound()
    old = blob_keys(itwin)
    itwin.image_id = None
    itwin.image_content_type = None
    session.flush()
    return old
