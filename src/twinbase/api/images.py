"""HTTP for ``/itwins/{iTwinId}/image``: upload (PUT), read (GET) and remove (DELETE) an iTwin's image.

The upload is the raw image body. It is read with a 5 MiB cap (never more in memory), checked, then
written to the blob store *before* the row that points at it is committed; a failed request deletes
what it wrote, and the replaced image's blobs go only after the commit.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from twinbase.api import schemas as s
from twinbase.api.deps import Context, Ctx
from twinbase.api.http import JSON, no_content
from twinbase.api.openapi import Op, api_docs
from twinbase.api.routing import both, in_thread
from twinbase.domain import images as domain
from twinbase.domain.itwins import image_name
from twinbase.errors import PayloadTooLarge, TwinbaseError
from twinbase.store.models import ITwin, new_id

router = APIRouter()
log = logging.getLogger("twinbase.images")

# After a rejection, read (and drop) at most this much of the rest of the body so that the client,
# still sending, receives the error response instead of a reset connection.
_DRAIN_LIMIT = 64 * 1024 * 1024


def image_wire(ctx: Context, itwin: ITwin) -> dict[str, Any]:
    small = image_name(itwin, "s")
    large = image_name(itwin, "l")
    assert small and large
    return {
        "image": {
            "id": itwin.image_id,
            "smallImageName": small,
            "smallImageUrl": ctx.svc.signed_url(ctx.base, domain.blob_key(itwin.id, small)),
            "largeImageName": large,
            "largeImageUrl": ctx.svc.signed_url(ctx.base, domain.blob_key(itwin.id, large)),
        }
    }


class _Body:
    """Reads the request body once, with a cap; remembers how far it got so the rest can be drained."""

    def __init__(self, request: Request, cap: int) -> None:
        self.request = request
        self.cap = cap
        self.done = False

    async def read(self) -> bytes:
        declared = self.request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > self.cap:
            raise self._too_large()
        buf = bytearray()
        async for chunk in self.request.stream():
            if len(buf) + len(chunk) > self.cap:
                raise self._too_large()
            buf += chunk
        self.done = True
        return bytes(buf)

    def _too_large(self) -> PayloadTooLarge:
        return PayloadTooLarge(f"The image is larger than the maximum of {self.cap // (1024 * 1024)} MB.")

    async def drain(self) -> None:
        if self.done:
            return
        self.done = True
        seen = 0
        with contextlib.suppress(Exception):  # the client may have gone; nothing to answer then
            async for chunk in self.request.stream():
                seen += len(chunk)
                if seen > _DRAIN_LIMIT:
                    break


@both(router, "/itwins/{itwin_id}/image", ["PUT"])
async def put_image(ctx: Ctx, itwin_id: str, request: Request) -> Response:
    body = _Body(request, domain.MAX_IMAGE_BYTES)
    try:
        await in_thread(_check_can_modify, ctx, itwin_id)
        content_type = domain.content_type_of(request.headers.get("content-type"))
        data = await body.read()
    except TwinbaseError:
        await body.drain()
        raise
    domain.inspect(data, content_type)
    result: Response = await in_thread(_store, ctx, itwin_id, content_type, data)
    return result


def _check_can_modify(ctx: Context, itwin_id: str) -> None:
    with ctx.svc.db.read() as session:
        domain.check_can_modify(session, itwin_id, ctx.principal.user_id)


def _store(ctx: Context, itwin_id: str, content_type: str, data: bytes) -> Response:
    blobs = ctx.svc.blobs
    image_id = new_id()
    new_keys = domain.keys_for(itwin_id, image_id, content_type)
    try:
        # No imaging library in the project: the small image is the same bytes as the large one.
        for key in new_keys:
            blobs.put(key, [data])
        with ctx.svc.db.write() as session:
            itwin, old_keys = domain.set_image(
                session, itwin_id, ctx.principal.user_id, image_id, content_type
            )
            wire = image_wire(ctx, itwin)
    except BaseException:
        for key in new_keys:
            blobs.delete(key)
        raise
    _delete_blobs(ctx, old_keys)
    return JSON(wire, status_code=201)


def _delete_blobs(ctx: Context, keys: list[str]) -> None:
    for key in keys:
        try:
            ctx.svc.blobs.delete(key)
        except OSError:  # the row no longer points at it: an orphan file at worst, never a broken image
            log.warning(
                "could not delete image blob", extra={"action": "image_blob_delete_failed", "key": key}
            )


@both(router, "/itwins/{itwin_id}/image", ["GET"])
def get_image(ctx: Ctx, itwin_id: str) -> Response:
    with ctx.svc.db.read() as session:
        itwin = domain.get_image(session, itwin_id, ctx.principal.user_id)
        return JSON(image_wire(ctx, itwin))


@both(router, "/itwins/{itwin_id}/image", ["DELETE"])
def delete_image(ctx: Ctx, itwin_id: str) -> Response:
    with ctx.svc.db.write() as session:
        old_keys = domain.delete_image(session, itwin_id, ctx.principal.user_id)
    _delete_blobs(ctx, old_keys)
    return no_content()


DOCS = api_docs(
    (
        put_image,
        Op(
            "Upload an iTwin's image (PNG or JPEG, at most 5 MiB)",
            s.ImageAnswer,
            status=201,
            body_media=("image/png", "image/jpeg"),
            errors=frozenset({403, 413, 422}),
        ),
    ),
    (get_image, Op("Get an iTwin's image links", s.ImageAnswer)),
    (delete_image, Op("Delete an iTwin's image", status=204, media=None, errors=frozenset({403}))),
)
