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
"""

from __future__ import annotations

import base64
import calendar
import contextlib
import logging
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import (
    BlobBlock,
    BlobClient,
    BlobLeaseClient,
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
from twinbase.store.blobs.base import CHUNK, BlobInfo, Perm, PrefixLink, check_key, write_all

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

log = logging.getLogger(__name__)


def _block_id(n: int) -> str:
    # Block ids of one blob must all have the same length.
    return base64.b64encode(f"{n:08d}".encode()).decode()


def _info(key: str, props: object) -> BlobInfo:
    etag = str(getattr(props, "etag", ""))
    if not etag.startswith('"'):
        etag = f'"{etag}"'
    modified: datetime = getattr(props, "last_modified")  # noqa: B009 - typed loosely by the SDK
    return BlobInfo(
        key=key,
        size=int(getattr(props, "size", 0)),
        etag=etag,
        modified=float(calendar.timegm(modified.utctimetuple())),
    )


def _content_settings(key: str) -> ContentSettings:
    """Stored on the blob, answered by the blob service: the same media type and caching as
    twinbase's own file routes give (a tileset's files are immutable, so browsers keep them)."""
    bundled = keys.split_bundle(key) is not None
    return ContentSettings(
        content_type=keys.content_type(key),
        cache_control=keys.BUNDLE_CACHE_CONTROL if bundled else None,
    )


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
        return AzureBlobWriter(self, key, self._blob(key))

    def upload_from(self, key: str, path: Path) -> BlobInfo:
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
        self.stat(src)  # BlobNotFound for a missing (or sealed) source
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
        return _info(dst, props)

    # ------------------------------------------------------------------------------------- reads

    def stat(self, key: str) -> BlobInfo:
        try:
            props = self._blob(key).get_blob_properties()
        except (ResourceNotFoundError, ValueError) as exc:
            raise BlobNotFound() from exc
        if (props.metadata or {}).get(SEALED):
            raise BlobNotFound()  # a sealed upload holds no file
        return _info(key, props)

    def open_range(
        self, key: str, start: int = 0, end: int | None = None, chunk_size: int = CHUNK
    ) -> Iterator[bytes]:
        try:
            blob = self._blob(key)
        except ValueError as exc:
            raise BlobNotFound() from exc
        length = None if end is None else end - start + 1
        try:
            downloader = blob.download_blob(offset=start, length=length)
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
            self._blob(key).download_blob(max_concurrency=TRANSFER_CONCURRENCY).readinto(out)
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
    """Blocks of ``BLOCK_SIZE`` staged as they fill; ``commit`` is one Put Block List (atomic)."""

    def __init__(self, store: AzureBlobStore, key: str, blob: BlobClient) -> None:
        self.store = store
        self.key = key
        self.blob = blob
        self.size = 0
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
        self._buffer += data
        self.size += len(data)
        while len(self._buffer) >= BLOCK_SIZE:
            rest = self._buffer[BLOCK_SIZE:]
            del self._buffer[BLOCK_SIZE:]
            self._stage()
            self._buffer += rest

    def commit(self) -> BlobInfo:
        assert not self._done, "writer already finished"
        self._done = True
        if self._buffer or not self._ids:
            self._stage()
        self.blob.commit_block_list(
            [BlobBlock(block_id=i) for i in self._ids], content_settings=_content_settings(self.key)
        )
        return self.store.stat(self.key)

    def abort(self) -> None:
        # Uncommitted blocks are invisible and the service drops them (after a week at most).
        self._done = True
        self._buffer.clear()
