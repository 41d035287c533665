"""Checkpoints as CloudSqlite containers, read the way the native library reads Azure blobs:
``GET /tb-<iModelId>/manifest.bcv?<token>`` and ``GET /tb-<iModelId>/<BLOCKID>.bcv?<token>``
(``domain.containers``). The manifest is composed from the checkpoint rows; a block is read from a
checkpoint file that holds it (``domain.containers.find_block``), so nothing is stored twice.

An unmodified iTwin.js backend sends them to ``https://<storage>.blob.core.windows.net``, which the site
resolves to twinbase (README, Checkpoints for an unmodified backend); the paths are the blob service's,
so they sit at the root, where no API path starts with ``tb-``. No Authorization header: the token in the
query is the checkpoint answer's ``azure.sasToken``, read-only for one container, with an expiry. A bad or
expired token is answered like a missing blob (404), as the signed blob links are.
"""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.convertors import Convertor, register_url_convertor
from starlette.responses import Response, StreamingResponse

from twinbase.api.deps import Services, services
from twinbase.api.openapi import Op, Param, api_docs, enum, string
from twinbase.bim.cloudsqlite import BLOCK_SIZE, parse_block_name
from twinbase.domain import containers
from twinbase.errors import BlobNotFound
from twinbase.store.models import IModel

router = APIRouter()

# Blocks never change (content-addressed); the manifest does as checkpoints come and go.
BLOCK_CACHE_CONTROL = "private, max-age=86400, immutable"


class ContainerConvertor(Convertor[str]):
    """``{name:container}``: one path segment naming a twinbase container."""

    regex = "tb-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("container", ContainerConvertor())


def _imodel_of(svc: Services, container: str, request: Request) -> str:
    imodel_id = containers.imodel_of(container)
    if imodel_id is None or not containers.token_valid(svc.signer, imodel_id, dict(request.query_params)):
        raise BlobNotFound("The link is invalid or has expired.")
    return imodel_id


def _manifest(svc: Services, imodel_id: str) -> bytes:
    with svc.db.read() as session:
        if session.get(IModel, imodel_id) is None:
            raise BlobNotFound("The container does not exist.")
        return containers.manifest(session, imodel_id)


@router.get("/{container:container}/" + containers.MANIFEST)
async def get_manifest(request: Request, container: str) -> Response:
    svc = services(request)
    imodel_id = _imodel_of(svc, container, request)
    body = await run_in_threadpool(_manifest, svc, imodel_id)
    return Response(body, media_type="application/octet-stream", headers={"Cache-Control": "no-store"})


@router.get("/{container:container}/{name}")
async def get_block(request: Request, container: str, name: str) -> Response:
    svc = services(request)
    imodel_id = _imodel_of(svc, container, request)
    block_id = parse_block_name(name)
    if block_id is None:
        raise BlobNotFound()
    source = await run_in_threadpool(_find, svc, imodel_id, block_id)
    return StreamingResponse(
        _padded(svc, source),
        headers={"Content-Length": str(BLOCK_SIZE), "Cache-Control": BLOCK_CACHE_CONTROL},
        media_type="application/octet-stream",
    )


def _find(svc: Services, imodel_id: str, block_id: bytes) -> containers.BlockSource:
    with svc.db.read() as session:
        source = containers.find_block(session, imodel_id, block_id)
    if source is None:
        raise BlobNotFound()
    svc.blobs.stat(source.key)  # the file is there (an eviction may have just removed it): else 404 now
    return source


def _padded(svc: Services, source: containers.BlockSource) -> Iterator[bytes]:
    """The block's bytes from its checkpoint file, then zeros to ``BLOCK_SIZE``, as the native writer
    stores a file's last block."""
    if source.size:
        yield from svc.blobs.open_range(
            source.key, source.offset, source.offset + source.size - 1, BLOCK_SIZE
        )
    if source.size < BLOCK_SIZE:
        yield bytes(BLOCK_SIZE - source.size)


_TOKEN = (
    Param("sv", string(16), "Azure REST version the token names."),
    Param("sr", enum("c"), "Scope: the container."),
    Param("sp", enum("r"), "Permission: read.", required=True),
    Param("se", string(20), "Expiry, ISO 8601 UTC (2026-01-01T00:00:00Z).", required=True),
    Param("sig", string(128), "HMAC signature.", required=True),
)

DOCS = api_docs(
    (
        get_manifest,
        Op(
            "A checkpoint container's CloudSqlite manifest (an unmodified iTwin.js backend reads it)",
            media="application/octet-stream",
            query=_TOKEN,
            public=True,
            description="The binary manifest (version 4) of the iModel's container `tb-<iModelId>`: one "
            "database per checkpoint, named as its `dbName`. The token is the checkpoint answer's "
            "`directoryAccessInfo.azure.sasToken`.",
        ),
    ),
    (
        get_block,
        Op(
            "One 4 MiB block of a checkpoint container",
            media="application/octet-stream",
            query=_TOKEN,
            public=True,
        ),
    ),
)
