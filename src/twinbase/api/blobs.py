"""Signed blob downloads: ``GET /blobs/{key}?se=&sig=``, no Authorization header, byte ranges."""

from __future__ import annotations

import re

from fastapi import APIRouter, Request
from starlette.responses import Response, StreamingResponse

from twinbase.api.deps import services
from twinbase.errors import BlobNotFound, TwinbaseError

router = APIRouter()

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


class RangeNotSatisfiable(TwinbaseError):
    status = 416
    code = "InvalidRange"
    default_message = "The requested byte range cannot be satisfied."


def _content_type(key: str) -> str:
    for ext, kind in (
        (".png", "image/png"),
        (".jpg", "image/jpeg"),
        (".json", "application/json"),
        (".gz", "application/gzip"),
        (".zip", "application/zip"),
        (".csv", "text/csv"),
    ):
        if key.endswith(ext):
            return kind
    return "application/octet-stream"


@router.api_route("/blobs/{key:path}", methods=["GET", "HEAD"])
def download(request: Request, key: str) -> Response:
    svc = services(request)
    if not svc.signer.verify(key, request.query_params.get("se"), request.query_params.get("sig")):
        # Same answer for a bad signature and a missing blob: a link either works or it does not.
        raise BlobNotFound("The link is invalid or has expired.")
    info = svc.blobs.stat(key)
    headers = {
        "ETag": info.etag,
        "Accept-Ranges": "bytes",
        "Cache-Control": "private, max-age=300",
    }
    start, end, status = 0, info.size - 1, 200
    rng = request.headers.get("range")
    if rng:
        m = _RANGE.match(rng.strip())
        if not m or (not m.group(1) and not m.group(2)):
            raise RangeNotSatisfiable(headers={"Content-Range": f"bytes */{info.size}"})
        if m.group(1):
            start = int(m.group(1))
            end = min(int(m.group(2)), info.size - 1) if m.group(2) else info.size - 1
        else:
            start = max(0, info.size - int(m.group(2)))
        if start > end or start >= info.size:
            raise RangeNotSatisfiable(headers={"Content-Range": f"bytes */{info.size}"})
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end}/{info.size}"
    headers["Content-Length"] = str(max(0, end - start + 1))
    if request.method == "HEAD":
        return Response(status_code=status, headers=headers, media_type=_content_type(key))
    return StreamingResponse(
        svc.blobs.open_range(key, start, end) if info.size else iter(()),
        status_code=status,
        headers=headers,
        media_type=_content_type(key),
    )
