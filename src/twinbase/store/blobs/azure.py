"""Azure Blob Storage behind the ``BlobStore`` seam (``azure-storage-blob``, the sync client).

Links are SAS URLs to the blob service, so the official clients move file bytes to and from it
directly: ``r`` is a read SAS on one blob, ``w`` a create+write SAS on one *upload* blob (the final
blob never gets a write SAS). Keys map to blobs of one container, except bundles: each bundle is a
container of its own (``<container>-<bundle id>``), because a service SAS is scoped to one blob or
one whole container (a directory SAS needs a hierarchical-namespace account, which Azurite and most
plain accounts are not), and a tileset needs one query valid for every file under it.

``promote`` seals the upload blob: an infinite lease on it, a server-side copy to the final blob,
then the upload blob is emptied and marked ``sealed`` while keeping the lease. A SAS cannot be
revoked, but every later Put Blob / Put Block / Put Block List through the old upload link is
refused by the blob service itself (412 ``LeaseIdMissing``), and the final blob is out of its reach.

Tilesets and their tiles (a bundle's ``.glb``, ``.imdl`` and ``.json`` files) are stored gzip-compressed
with ``Content-Encoding: gzip``: clients fetch them from the blob service, which sends a blob exactly as
stored and negotiates nothing, so this is the only way they travel compressed (meshopt tiles shrink
about 2.5x more). Every reader decodes gzip (browsers, CesiumJS, httpx, requests). Other files stay as
they are: a ``.3tz`` archive is read with HTTP ranges, iModel files with ranged block downloads, and a
range of a gzip stream is not a range of the file. Every read through this store answers the decoded
bytes; ``stat`` the decoded size. A blob is encoded only if its name asks for it (``_gzip_name``); such
a name may still hold a plain blob (written before this was done), so reads of such names go by the
blob's own ``Content-Encoding``, never by the name alone; copies keep the rule (``copy``).
"""

from __future__ import annotations

import base64
import calendar
import contextlib
import logging
import time
import uuid
import zlib
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import (
    BlobBlock,
    BlobClient,
    BlobLeaseClient,
    BlobProperties,
    BlobSasPermissions,
    BlobServiceClient,
    ContainerClient,
    ContainerSasPermissions,
    ContentSettings,
    CorsRule,
    generate_blob_sas,
    generate_container_sas,
)

from twinbase.errors import BlobNotFound
from twinbase.store.blobs import keys
from twinbase.store.blobs.base import (
    CHUNK,
    BlobInfo,
    CloudContainer,
    Perm,
    PrefixLink,
    check_key,
    write_all,
)

BLOCK_SIZE = 8 * CHUNK
TRANSFER_CONCURRENCY = 4
SEALED = "sealed"
COPY_POLL_SECONDS = 0.05
# Links are valid from a little before now: the blob service's clock may be behind ours.
CLOCK_SKEW = timedelta(minutes=5)
# What browsers do with the links: read (GET, HEAD; preflights for Range) and, as twinbase's own
# file routes allow, upload (PUT). CORS grants nothing by itself: every request still needs its SAS.
CORS_METHODS = ("GET", "HEAD", "PUT", "OPTIONS")
CORS_MAX_AGE = 3600
MAX_CORS_RULES = 5  # the blob service's limit
GZIP = "gzip"
GZIP_SUFFIXES = (".glb", ".imdl", ".json")
# On the bench's 51 MB of meshopt tiles: level 1 gives 2.36x at 48 MB/s, 5 gives 2.50x at 31 MB/s,
# 9 gives 2.54x at 14 MB/s (one core). A tile is written once and downloaded many times; 5 is also
# what twinbase's own file route uses for the local backend.
GZIP_LEVEL = 5
GZIP_WBITS = 16 + zlib.MAX_WBITS  # the gzip wrapper (RFC 1952), which Content-Encoding: gzip names
# Blob metadata: the decoded length of an encoded blob (the service only knows the stored length).
DECODED_SIZE = "decodedsize"

log = logging.getLogger(__name__)


def _block_id(n: int) -> str:
    # Block ids of one blob must all have the same length.
    return base64.b64encode(f"{n:08d}".encode()).decode()


def _gzip_name(key: str) -> bool:
    """Whether this store writes ``key`` gzip-encoded: a file of a bundle that is JSON or a tile."""
    found = keys.split_bundle(key)
    return found is not None and bool(found[1]) and key.endswith(GZIP_SUFFIXES)


def _is_gzip(props: object) -> bool:
    settings = getattr(props, "content_settings", None)
    return (getattr(settings, "content_encoding", None) or "").lower() == GZIP


def _size(props: object) -> int:
    """The length reads answer. For a gzip-encoded blob that is the *decoded* length, recorded in
    its metadata when it was written (and carried by server-side copies): what ``open_range`` yields
    and what callers pass back as a range end. The stored length (the blob service's Content-Length,
    what a SAS download moves) is smaller and is never reported here."""
    if _is_gzip(props):
        recorded = (getattr(props, "metadata", None) or {}).get(DECODED_SIZE)
        if recorded is not None and recorded.isdigit():
            return int(recorded)
        return -1  # not recorded: ``stat`` counts it by decoding
    return int(getattr(props, "size", 0))


def _info(key: str, props: object, size: int | None = None) -> BlobInfo:
    etag = str(getattr(props, "etag", ""))
    if not etag.startswith('"'):
        etag = f'"{etag}"'
    modified: datetime = getattr(props, "last_modified")  # noqa: B009 - typed loosely by the SDK
    return BlobInfo(
        key=key,
        size=_size(props) if size is None else size,
        etag=etag,
        modified=float(calendar.timegm(modified.utctimetuple())),
    )


def _content_settings(key: str, encoded: bool = False) -> ContentSettings:
    """Stored on the blob, answered by the blob service: the same media type and caching as
    twinbase's own file routes give (a tileset's files are immutable, so browsers keep them), and
    the encoding of a blob stored gzip-compressed."""
    return ContentSettings(
        content_type=keys.content_type(key),
        cache_control=keys.bundle_cache_control(key),
        content_encoding=GZIP if encoded else None,
    )


def _decode(chunks: Iterable[bytes], start: int, end: int | None) -> Iterator[bytes]:
    """The decoded bytes ``start..end`` (inclusive) of a gzip stream, decoded as it arrives."""
    inflater = zlib.decompressobj(GZIP_WBITS)
    at = 0  # decoded offset of the next byte ``inflater`` gives

    def window(data: bytes) -> bytes:
        lo = max(start - at, 0)
        hi = len(data) if end is None else min(end + 1 - at, len(data))
        return data[lo:hi] if lo < hi else b""

    for raw in chunks:
        while raw:
            data = inflater.decompress(raw)
            raw = b""
            if inflater.eof and inflater.unused_data:
                # RFC 1952 allows several members one after the other; the stream is their concatenation.
                raw = inflater.unused_data
                inflater = zlib.decompressobj(GZIP_WBITS)
            piece = window(data)
            at += len(data)
            if piece:
                yield piece
            if end is not None and at > end:
                return
    if not inflater.eof:
        raise OSError("the gzip-encoded blob ends before its gzip stream does")


class AzureBlobStore:
    def __init__(self, service: BlobServiceClient, container: str, account_key: str) -> None:
        self.service = service
        self.container = container
        self._account_key = account_key
        self._ensure_container(container)

    @classmethod
    def from_connection_string(cls, connection_string: str, container: str) -> AzureBlobStore:
        service = BlobServiceClient.from_connection_string(
            connection_string, max_single_get_size=BLOCK_SIZE, max_chunk_get_size=BLOCK_SIZE
        )
        credential = service.credential
        account_key = getattr(credential, "account_key", None)
        if not account_key:
            raise ValueError("the Azure connection string must carry the account key (to sign SAS links)")
        return cls(service, container, str(account_key))

    def allow_browsers(self, origins: Sequence[str]) -> bool:
        """Make the blob service answer cross-origin requests from ``origins`` (``*``: any).

        Browsers (CesiumJS, frontend-tiles) fetch tiles from the blob service, not from twinbase, so
        without a CORS rule on the *account* every cross-origin read is blocked. The account's other
        rules are kept: a rule is added only when none already lets these origins GET and HEAD.
        Answers whether the rules changed."""
        wanted = [o.strip() for o in origins if o.strip()]
        if not wanted:
            return False
        rules: list[CorsRule] = list(self.service.get_service_properties().get("cors") or [])
        if any(_rule_covers(rule, wanted) for rule in rules):
            return False
        if len(rules) >= MAX_CORS_RULES:
            raise ValueError(
                f"the storage account has {len(rules)} CORS rules already (the most it takes): "
                "add one for the viewer origins yourself, or clear azure_cors_origins"
            )
        rules.append(
            CorsRule(
                ["*"] if "*" in wanted else wanted,
                list(CORS_METHODS),
                allowed_headers=["*"],
                exposed_headers=["*"],
                max_age_in_seconds=CORS_MAX_AGE,
            )
        )
        # Set Blob Service Properties replaces the whole CORS list (other properties are kept).
        self.service.set_service_properties(cors=rules)
        return True

    def _ensure_container(self, name: str) -> ContainerClient:
        client = self.service.get_container_client(name)
        with contextlib.suppress(ResourceExistsError):
            client.create_container()
        return client

    # ----------------------------------------------------------------------------------- mapping

    def _locate(self, key: str) -> tuple[str, str]:
        """``(container, blob name)`` of a key: a bundle's files live in the bundle's container."""
        check_key(key)
        found = keys.split_bundle(key)
        if found is not None and found[1]:
            return self._bundle_container(found[0]), found[1]
        return self.container, key

    def _bundle_container(self, bundle_id: str) -> str:
        return f"{self.container}-{bundle_id}"

    def _blob(self, key: str) -> BlobClient:
        container, name = self._locate(key)
        return self.service.get_blob_client(container, name)

    # ------------------------------------------------------------------------------------ writes

    def put(self, key: str, chunks: Iterable[bytes]) -> BlobInfo:
        return write_all(self.writer(key), chunks)

    def writer(self, key: str) -> AzureBlobWriter:
        found = keys.split_bundle(key)
        if found is not None and found[1]:
            self._ensure_container(self._bundle_container(found[0]))
        return AzureBlobWriter(self, key, self._blob(key), gzip=_gzip_name(key))

    def upload_from(self, key: str, path: Path) -> BlobInfo:
        if _gzip_name(key):
            # Compressed on the way, so through the block writer (the SDK's parallel upload sends
            # the file as it is); these are tiles and tilesets, not iModel-sized files.
            with open(path, "rb") as source:
                return self.put(key, iter(lambda: source.read(BLOCK_SIZE), b""))
        found = keys.split_bundle(key)
        if found is not None and found[1]:
            self._ensure_container(self._bundle_container(found[0]))
        blob = self._blob(key)
        with open(path, "rb") as source:
            blob.upload_blob(
                source,
                overwrite=True,
                max_concurrency=TRANSFER_CONCURRENCY,
                content_settings=_content_settings(key),
            )
        return self.stat(key)

    def compose(self, key: str, block_keys: Sequence[str]) -> BlobInfo:
        """Server-side: each part becomes a block by Put Block From URL, then one Put Block List."""
        if _gzip_name(key) or any(_gzip_name(k) for k in block_keys):
            # Blocks are stored bytes: a gzip target needs its bytes encoded here, and an encoded
            # part must be decoded before it joins anything. No caller composes such files today.
            for block_key in block_keys:
                self.stat(block_key)  # BlobNotFound before anything is written
            return self.put(key, (c for k in block_keys for c in self.open_range(k)))
        target = self._blob(key)
        ids: list[str] = []
        for n, block_key in enumerate(block_keys):
            self.stat(block_key)  # BlobNotFound before anything is staged
            source = self.presign(block_key, "r", 3600, "")
            block_id = _block_id(n)
            target.stage_block_from_url(block_id, source)
            ids.append(block_id)
        target.commit_block_list(
            [BlobBlock(block_id=i) for i in ids], content_settings=_content_settings(key)
        )
        return self.stat(key)

    def promote(self, src: str, dst: str) -> BlobInfo:
        source = self._blob(src)
        try:
            lease = BlobLeaseClient(source)
            lease.acquire(lease_duration=-1)
        except ResourceNotFoundError as exc:
            raise BlobNotFound() from exc
        # From here on, writes through the upload link are refused by the service (no lease id).
        try:
            info = self._server_copy(src, dst)
        except BaseException:
            lease.release()
            raise
        # Empty the sealed upload blob, keeping the lease (and so the refusal) for good.
        source.upload_blob(b"", overwrite=True, lease=lease, metadata={SEALED: "1"})
        return info

    def copy(self, src: str, dst: str) -> BlobInfo:
        props = self._properties(src)  # BlobNotFound for a missing (or sealed) source
        if _is_gzip(props) != _gzip_name(dst):
            # The server-side copy keeps the source's encoding, properties and metadata as they are
            # (so an encoded tile copied into a later export stays encoded, with its decoded size).
            # Where the destination's name wants the other encoding (a plain tile of an export made
            # before tiles were stored encoded), the bytes go through here once, re-encoded.
            return self.put(dst, self.open_range(src))
        found = keys.split_bundle(dst)
        if found is not None and found[1]:
            self._ensure_container(self._bundle_container(found[0]))
        return self._server_copy(src, dst)

    def _server_copy(self, src: str, dst: str) -> BlobInfo:
        """The blob service copies ``src`` to ``dst`` itself; no byte passes through twinbase."""
        target = self._blob(dst)
        target.start_copy_from_url(self.presign(src, "r", 3600, ""), requires_sync=False)
        props = target.get_blob_properties()
        while props.copy.status == "pending":
            time.sleep(COPY_POLL_SECONDS)
            props = target.get_blob_properties()
        if props.copy.status != "success":
            raise OSError(
                f"copy of {src} to {dst} ended {props.copy.status}: {props.copy.status_description}"
            )
        return self._blob_info(dst, props)

    # ------------------------------------------------------------------------------------- reads

    def _properties(self, key: str) -> BlobProperties:
        try:
            props = self._blob(key).get_blob_properties()
        except (ResourceNotFoundError, ValueError) as exc:
            raise BlobNotFound() from exc
        if (props.metadata or {}).get(SEALED):
            raise BlobNotFound()  # a sealed upload holds no file
        return props

    def stat(self, key: str) -> BlobInfo:
        return self._blob_info(key, self._properties(key))

    def _blob_info(self, key: str, props: BlobProperties) -> BlobInfo:
        size = _size(props)
        if size < 0:  # encoded by another writer, without the decoded length: count it
            size = sum(len(chunk) for chunk in self.open_range(key))
        return _info(key, props, size)

    def open_range(
        self, key: str, start: int = 0, end: int | None = None, chunk_size: int = CHUNK
    ) -> Iterator[bytes]:
        try:
            blob = self._blob(key)
        except ValueError as exc:
            raise BlobNotFound() from exc
        # ``decompress=False`` everywhere: left on, the SDK's transport would inflate each response
        # on its own, which breaks on the second range of a chunked download and leaves the SDK's
        # sizes (the stored ones) disagreeing with the bytes. This store decodes, explicitly.
        if _gzip_name(key):
            # Possibly encoded: a range of the file is not a range of the stored bytes, so the whole
            # blob is read (one GET for a tile; the SDK pins later chunks to the first one's ETag)
            # and its own Content-Encoding decides.
            try:
                downloader = blob.download_blob(decompress=False)
            except ResourceNotFoundError as exc:
                raise BlobNotFound() from exc
            if _is_gzip(downloader.properties):
                return _decode(downloader.chunks(), start, end)
            return _window(downloader.chunks(), start, end)
        length = None if end is None else end - start + 1
        try:
            downloader = blob.download_blob(offset=start, length=length, decompress=False)
        except ResourceNotFoundError as exc:
            raise BlobNotFound() from exc
        except HttpResponseError as exc:
            if exc.status_code == 416:  # a range at or past the end of the blob: nothing to read
                return iter(())
            raise
        return iter(downloader.chunks())

    def download_to(self, key: str, path: Path) -> BlobInfo:
        info = self.stat(key)
        with open(path, "wb") as out:
            if _gzip_name(key):
                for chunk in self.open_range(key):  # decoded
                    out.write(chunk)
            else:
                blob = self._blob(key)
                blob.download_blob(max_concurrency=TRANSFER_CONCURRENCY, decompress=False).readinto(out)
        return info

    # ----------------------------------------------------------------------------------- deletes

    def delete(self, key: str) -> None:
        try:
            blob = self._blob(key)
        except ValueError:
            return
        _delete_blob(blob)

    def delete_prefix(self, prefix: str) -> None:
        prefix = prefix.rstrip("/")
        found = keys.split_bundle(prefix)
        if found is not None and not found[1]:
            with contextlib.suppress(ResourceNotFoundError):
                self.service.delete_container(self._bundle_container(found[0]))
            return
        container = self.service.get_container_client(self.container)
        for item in container.list_blobs(name_starts_with=prefix + "/"):
            _delete_blob(container.get_blob_client(item.name))

    # ------------------------------------------------------------------------------------- links

    def _expiry(self, lifetime: int) -> tuple[datetime, datetime]:
        now = datetime.now(UTC)
        return now - CLOCK_SKEW, now + timedelta(seconds=lifetime)

    def presign(self, key: str, perm: Perm, lifetime: int, base_url: str) -> str:
        container, name = self._locate(key)
        start, expiry = self._expiry(lifetime)
        permission = (
            BlobSasPermissions(read=True) if perm == "r" else BlobSasPermissions(create=True, write=True)
        )
        sas = generate_blob_sas(
            account_name=str(self.service.account_name),
            container_name=container,
            blob_name=name,
            account_key=self._account_key,
            permission=permission,
            start=start,
            expiry=expiry,
        )
        blob_url = self.service.get_blob_client(container, name).url
        return f"{blob_url}?{sas}"

    def presign_prefix(self, prefix: str, perm: Perm, lifetime: int, base_url: str) -> PrefixLink:
        found = keys.split_bundle(prefix.rstrip("/"))
        if found is None or found[1]:
            raise ValueError(f"prefix links are for bundles only, not {prefix!r}")
        container = self._ensure_container(self._bundle_container(found[0]))
        start, expiry = self._expiry(lifetime)
        permission = (
            ContainerSasPermissions(read=True)
            if perm == "r"
            else ContainerSasPermissions(create=True, write=True)
        )
        sas = generate_container_sas(
            account_name=str(self.service.account_name),
            container_name=container.container_name,
            account_key=self._account_key,
            permission=permission,
            start=start,
            expiry=expiry,
        )
        return PrefixLink(base=container.url, query=sas)

    def cloud_container(self, prefix: str, lifetime: int) -> CloudContainer | None:
        found = keys.split_bundle(prefix.rstrip("/"))
        if found is None or found[1]:
            raise ValueError(f"cloud containers are bundles, not {prefix!r}")
        # Only a name and a signature: no request to the blob service (writes make the container).
        container = self._bundle_container(found[0])
        start, expiry = self._expiry(lifetime)
        sas = generate_container_sas(
            account_name=str(self.service.account_name),
            container_name=container,
            account_key=self._account_key,
            permission=ContainerSasPermissions(read=True),
            start=start,
            expiry=expiry,
        )
        return CloudContainer(str(self.service.account_name), container, sas)


def _window(chunks: Iterable[bytes], start: int, end: int | None) -> Iterator[bytes]:
    """Bytes ``start..end`` (inclusive) of a stream read from its first byte."""
    at = 0
    for chunk in chunks:
        lo = max(start - at, 0)
        hi = len(chunk) if end is None else min(end + 1 - at, len(chunk))
        if lo < hi:
            yield chunk[lo:hi]
        at += len(chunk)
        if end is not None and at > end:
            return


def _split(value: str) -> set[str]:
    return {part.strip() for part in (value or "").split(",") if part.strip()}


def _rule_covers(rule: CorsRule, origins: Sequence[str]) -> bool:
    allowed = _split(rule.allowed_origins)
    methods = {m.upper() for m in _split(rule.allowed_methods)}
    return ("*" in allowed or set(origins) <= allowed) and {"GET", "HEAD"} <= methods


def _delete_blob(blob: BlobClient) -> None:
    try:
        blob.delete_blob()
    except ResourceNotFoundError:
        return
    except HttpResponseError as exc:
        if getattr(exc, "error_code", None) not in ("LeaseIdMissing", "LeaseIdMismatchWithBlobOperation"):
            raise
        BlobLeaseClient(blob).break_lease(lease_break_period=0)  # a sealed upload blob
        try:
            blob.delete_blob()
        except ResourceNotFoundError:
            return


class AzureBlobWriter:
    """Blocks of ``BLOCK_SIZE`` staged as they fill; ``commit`` is one Put Block List (atomic).

    With ``gzip`` the bytes are compressed as they come and the blocks hold the gzip stream; ``size``
    counts the bytes given (the decoded size, recorded on the blob at ``commit``)."""

    def __init__(self, store: AzureBlobStore, key: str, blob: BlobClient, gzip: bool = False) -> None:
        self.store = store
        self.key = key
        self.blob = blob
        self.size = 0
        self._deflater = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, GZIP_WBITS) if gzip else None
        self._buffer = bytearray()
        self._ids: list[str] = []
        self._prefix = uuid.uuid4().hex[:8]  # concurrent writers of one key never share block ids
        self._done = False

    def _stage(self) -> None:
        block_id = base64.b64encode(f"{self._prefix}-{len(self._ids):08d}".encode()).decode()
        self.blob.stage_block(block_id, bytes(self._buffer))
        self._ids.append(block_id)
        self._buffer.clear()

    def write(self, data: bytes) -> None:
        assert not self._done, "writer already finished"
        self.size += len(data)
        self._buffer += data if self._deflater is None else self._deflater.compress(data)
        while len(self._buffer) >= BLOCK_SIZE:
            rest = self._buffer[BLOCK_SIZE:]
            del self._buffer[BLOCK_SIZE:]
            self._stage()
            self._buffer += rest

    def commit(self) -> BlobInfo:
        assert not self._done, "writer already finished"
        self._done = True
        encoded = self._deflater is not None
        if self._deflater is not None:
            self._buffer += self._deflater.flush()
        settings = _content_settings(self.key, encoded)
        metadata = {DECODED_SIZE: str(self.size)} if encoded else None
        if not self._ids:
            # All of it fits one block: one Put Blob (atomic too) instead of Put Block + Put Block List.
            answer = self.blob.upload_blob(
                bytes(self._buffer), overwrite=True, content_settings=settings, metadata=metadata
            )
        else:
            if self._buffer:
                self._stage()
            answer = self.blob.commit_block_list(
                [BlobBlock(block_id=i) for i in self._ids], content_settings=settings, metadata=metadata
            )
        self._buffer.clear()
        # The answer carries the new ETag and time: no Get Blob Properties round trip.
        return _info(self.key, SimpleNamespace(**answer), size=self.size)

    def abort(self) -> None:
        # Uncommitted blocks are invisible and the service drops them (after a week at most).
        self._done = True
        self._buffer.clear()
