"""Signed blob links of the local store: ``/blobs/{key}?sp=&se=&sig=``, used without an Authorization header.

Two client flavours are served by the same URLs, as the iModels clients expect (reference §4):
- plain: ``GET`` (200, or 206 for a ``Range``) and ``PUT`` of the whole body (any 2xx);
- Azure block blob: ``PUT`` answering **201** with an ETag (Put Blob), ``PUT ?comp=block&blockid=``
  (Put Block, staged), ``PUT ?comp=blocklist`` (Put Block List, the XML order is the file order),
  and ``GET`` with ``x-ms-range`` / ``If-Match`` on retries.

Bodies stream to the blob store chunk by chunk; nothing holds a whole file in memory.

Uploads go only to upload keys (``keys.upload``), and only while the owning changeset or baseline
waits for its file: afterwards a PUT is refused with 409 ``UploadCompleted`` (below) and the final
bytes, under another key that no link can write, never change. A bundle link (``sr=d``) reads every
key under its prefix. With the Azure backend no link points here: every request is refused.
"""

from __future__ import annotations

import gzip
import re
import xml.etree.ElementTree as ET
from email.utils import formatdate

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response, StreamingResponse

from twinbase.api.deps import Services, services
from twinbase.api.openapi import Op, Param, api_docs, enum, string
from twinbase.domain.uploads import UploadState, upload_state
from twinbase.errors import (
    BlobNotFound,
    Conflict,
    ErrorDetail,
    InvalidRequest,
    PayloadTooLarge,
    TwinbaseError,
)
from twinbase.store.blobs import BlobInfo, InvalidBlobKey, LocalBlobStore, check_key
from twinbase.store.blobs import keys as blob_keys

router = APIRouter()

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
MAX_BLOCK_LIST = 4 * 1024 * 1024
DOWNLOAD_CHUNK = 4 * 1024 * 1024
WRITE_BATCH = 8 * 1024 * 1024
MAX_BLOCKS = 50_000


class RangeNotSatisfiable(TwinbaseError):
    status = 416
    code = "InvalidRange"
    default_message = "The requested byte range cannot be satisfied."


class UploadCompleted(Conflict):
    """409, not 403: the link is genuine and was allowed to write; what changed is the file's state
    (completed, now immutable history), which is what Conflict means and how the blob service answers
    a write to an immutable blob (409 ``BlobImmutableDueToPolicy``)."""

    code = "UploadCompleted"
    default_message = "The file of this upload link was completed; its bytes can no longer change."


class ConditionNotMet(TwinbaseError):
    status = 412
    code = "ConditionNotMet"
    default_message = "The blob changed since the ETag given in If-Match."


GZIP_TYPES = ("application/json", "model/gltf-binary", "model/gltf+json")
# iMdl tiles (Mesh Export IMODEL) have no media type of their own (application/octet-stream).
GZIP_SUFFIXES = (".imdl",)
GZIP_MAX = 64 * 1024 * 1024


def _gzip_wanted(request: Request, key: str, size: int) -> bool:
    accepted = request.headers.get("accept-encoding", "")
    wants = any(part.split(";")[0].strip() in ("gzip", "*") for part in accepted.split(","))
    kind = blob_keys.content_type(key) in GZIP_TYPES or key.endswith(GZIP_SUFFIXES)
    return wants and 0 < size <= GZIP_MAX and kind


def _local_store(svc: Services) -> LocalBlobStore:
    if not isinstance(svc.blobs, LocalBlobStore):
        raise BlobNotFound("The link is invalid or has expired.")
    return svc.blobs


def _authorize(svc: Services, request: Request, key: str, perm: str) -> LocalBlobStore:
    store = _local_store(svc)
    q = request.query_params
    # ``sr=d``: a bundle link, good for reading any key under the prefix it signs (never for writes).
    depth = q.get("sdd") if q.get("sr") == "d" and perm == "r" else None
    if q.get("sp", "r") != perm or not svc.signer.verify(
        key, q.get("se"), q.get("sig"), perm=perm, depth=depth
    ):
        # Same answer for a bad signature and a missing blob: a link either works or it does not.
        raise BlobNotFound("The link is invalid or has expired.")
    return store


async def _check_upload_open(svc: Services, key: str) -> None:
    def state() -> UploadState:
        with svc.db.read() as session:
            return upload_state(session, key)

    found = await run_in_threadpool(state)
    if found is UploadState.CLOSED:
        raise UploadCompleted()
    if found is UploadState.UNKNOWN:
        raise BlobNotFound("The link is invalid or has expired.")


def _blob_headers(info: BlobInfo) -> dict[str, str]:
    return {
        "ETag": info.etag,
        "Last-Modified": formatdate(info.modified, usegmt=True),
        "Accept-Ranges": "bytes",
        "x-ms-blob-type": "BlockBlob",
        "x-ms-version": "2021-08-06",
    }


@router.api_route("/blobs/{key:path}", methods=["GET", "HEAD"])
def download(request: Request, key: str) -> Response:
    svc = services(request)
    store = _authorize(svc, request, key, "r")
    info = store.stat(key)
    bundled = blob_keys.split_bundle(key) is not None
    cache = blob_keys.bundle_cache_control(key) or "private, max-age=300"
    headers = {**_blob_headers(info), "Cache-Control": cache}
    if_match = request.headers.get("if-match")
    if if_match and if_match not in ("*", info.etag):
        raise ConditionNotMet()
    rng = request.headers.get("x-ms-range") or request.headers.get("range")
    if_none_match = request.headers.get("if-none-match")
    if bundled and if_none_match and info.etag in (t.strip() for t in if_none_match.split(",")):
        return Response(status_code=304, headers={k: v for k, v in headers.items() if k != "Accept-Ranges"})
    if bundled and not rng and request.method == "GET" and _gzip_wanted(request, key, info.size):
        # Tilesets and meshopt tiles shrink by about half again under gzip (meshopt is made to be
        # followed by a general compressor); a ranged read is served as stored instead.
        body = gzip.compress(b"".join(store.open_range(key, 0, info.size - 1, chunk_size=DOWNLOAD_CHUNK)), 5)
        headers.update(
            {"Content-Encoding": "gzip", "Vary": "Accept-Encoding", "Content-Length": str(len(body))}
        )
        return Response(body, status_code=200, headers=headers, media_type=blob_keys.content_type(key))
    if bundled:
        headers["Vary"] = "Accept-Encoding"
    start, end, status = 0, info.size - 1, 200
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
        return Response(status_code=status, headers=headers, media_type=blob_keys.content_type(key))
    return StreamingResponse(
        # Large reads: each chunk is one hop to a worker thread and one write to the socket.
        store.open_range(key, start, end, chunk_size=DOWNLOAD_CHUNK) if info.size else iter(()),
        status_code=status,
        headers=headers,
        media_type=blob_keys.content_type(key),
    )


def _invalid(message: str, target: str) -> InvalidRequest:
    return InvalidRequest(
        "Cannot upload the file.",
        code="InvalidRequest",
        details=[ErrorDetail("InvalidValue", message, target)],
    )


async def _receive_into(store: LocalBlobStore, request: Request, key: str) -> BlobInfo:
    """Stream the request body into ``key``; a broken or aborted upload leaves the old blob as it was."""
    writer = store.writer(key)
    # Disk writes run off the event loop, a batch of body chunks at a time (one thread hop per batch;
    # a list and one join, since growing one buffer would copy the bytes many times over).
    pending: list[bytes] = []
    pending_size = 0
    try:
        async for chunk in request.stream():
            pending.append(chunk)
            pending_size += len(chunk)
            if pending_size >= WRITE_BATCH:
                await run_in_threadpool(writer.write, b"".join(pending))
                pending, pending_size = [], 0
        if pending_size:
            await run_in_threadpool(writer.write, b"".join(pending))
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) != writer.size:
            raise _invalid("The body is shorter than its Content-Length.", "Content-Length")
    except BaseException:
        writer.abort()
        raise
    return await run_in_threadpool(writer.commit)


def _created(info: BlobInfo) -> Response:
    headers = _blob_headers(info)
    headers["x-ms-request-server-encrypted"] = "false"
    headers.pop("Accept-Ranges")
    return Response(status_code=201, headers=headers)


@router.put("/blobs/{key:path}")
async def upload(request: Request, key: str) -> Response:
    svc = services(request)
    try:
        check_key(key)
    except InvalidBlobKey as exc:
        raise BlobNotFound() from exc
    store = _authorize(svc, request, key, "w")
    await _check_upload_open(svc, key)
    comp = request.query_params.get("comp")
    if comp == "block":
        block_id = request.query_params.get("blockid", "")
        if not block_id or len(block_id) > 128:
            raise _invalid("blockid is missing or too long.", "blockid")
        await _receive_into(store, request, blob_keys.block(key, block_id))
        return Response(status_code=201, headers={"x-ms-version": "2021-08-06"})
    if comp == "blocklist":
        return await _commit_block_list(store, request, key)
    if comp is not None:
        raise _invalid(f"comp={comp} is not supported.", "comp")
    return _created(await _receive_into(store, request, key))


async def _commit_block_list(store: LocalBlobStore, request: Request, key: str) -> Response:
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BLOCK_LIST:
            raise PayloadTooLarge()
    try:
        root = ET.fromstring(body)
    except ET.ParseError as exc:
        raise _invalid("The block list is not valid XML.", "body") from exc
    block_ids = [el.text or "" for el in root if el.tag in ("Latest", "Uncommitted", "Committed")]
    if not block_ids or len(block_ids) > MAX_BLOCKS:
        raise _invalid("The block list is empty or too long.", "body")
    staged = [blob_keys.block(key, b) for b in block_ids]

    def concatenate() -> BlobInfo:
        info = store.compose(key, staged)
        for staged_key in set(staged):
            store.delete(staged_key)
        return info

    try:
        info = await run_in_threadpool(concatenate)
    except BlobNotFound as exc:
        raise _invalid("The block list names a block that was not uploaded.", "body") from exc
    return _created(info)


_SIGNED = (
    Param("sp", enum("r", "w"), "Permission: read or write.", required=True),
    Param("se", string(20, pattern="^[0-9]+$"), "Expiry, seconds since the epoch.", required=True),
    Param("sig", string(128), "HMAC signature.", required=True),
    Param("sn", string(32), "Nonce."),
)
_BLOCKS = (
    Param("comp", enum("block", "blocklist"), "Azure block-blob flavour: Put Block or Put Block List."),
    Param("blockid", string(128), "Put Block: the block's id."),
    Param("x-ms-blob-type", enum("BlockBlob"), location="header"),
)

DOCS = api_docs(
    (
        download,
        Op(
            "Download a file through a signed link (ranges, ETag)",
            media="application/octet-stream",
            query=(*_SIGNED, Param("x-ms-range", string(64), location="header")),
            public=True,
            errors=frozenset({412, 416}),
            extra_responses={206: "Partial content (Range or x-ms-range)."},
        ),
    ),
    (
        upload,
        Op(
            "Upload a file through a signed link (plain PUT or Azure block blob)",
            status=201,
            media=None,
            query=(*_SIGNED, *_BLOCKS),
            body_media=("application/octet-stream",),
            public=True,
            errors=frozenset({409, 413}),
        ),
    ),
)
