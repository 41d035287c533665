"""Uploads that become history: a file link writes to a staging key; completion seals it.

An upload link (``_links.upload``) points at ``keys.upload(final key)``, never at the final key.
Completing a changeset or a baseline checks the staged size against the declared one, *promotes*
the staged file to the final key (``BlobStore.promote``: a rename locally, a server-side copy on
Azure) and records its SHA-256. Nothing ever writes a final key through a link, so completed
history cannot be rewritten; while the row waits for its file, the link accepts new bytes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import BinaryIO, Generic, TypeVar

from sqlalchemy.orm import Session

from twinbase.errors import BlobNotFound
from twinbase.store.blobs import CHUNK, BlobStore, open_reader
from twinbase.store.blobs import keys as blob_keys
from twinbase.store.models import BaselineFile, Changeset

WAITING_FOR_FILE = "waitingForFile"
Facts = TypeVar("Facts")


class UploadState(Enum):
    OPEN = "open"  # the owning row waits for its file: the link may (re)write the staged bytes
    CLOSED = "closed"  # the file was completed: the link must not write any more
    UNKNOWN = "unknown"  # no such row, or not an upload key at all


def upload_state(session: Session, key: str) -> UploadState:
    """Whether an upload link for ``key`` may still write (read by the local blob route)."""
    owner = blob_keys.upload_owner(key)
    if owner is None:
        return UploadState.UNKNOWN
    row: Changeset | BaselineFile | None
    if owner.changeset_id is not None:
        row = session.get(Changeset, (owner.imodel_id, owner.changeset_id))
    else:
        row = session.get(BaselineFile, owner.imodel_id)
    if row is None or row.blob_key != _final_key(key):
        return UploadState.UNKNOWN
    return UploadState.OPEN if row.state == WAITING_FOR_FILE else UploadState.CLOSED


def _final_key(upload_key: str) -> str:
    return upload_key.removeprefix(blob_keys.UPLOADS + "/")


class FileNotUploaded(Exception):
    """Nothing was uploaded through the link yet."""


class FileSizeMismatch(Exception):
    def __init__(self, actual: int) -> None:
        super().__init__(f"{actual} bytes uploaded")
        self.actual = actual


@dataclass(frozen=True)
class PendingFile:
    """A completion's file before sealing: its final key and the size its row declared."""

    key: str
    declared_size: int


@dataclass(frozen=True)
class SealedFile(Generic[Facts]):
    size: int
    sha256: str
    facts: Facts  # what ``inspect`` returned (None without one)


def no_inspection(_stream: BinaryIO) -> None:
    """For ``seal_upload`` of files whose content is checked later (a baseline, by its job)."""


def seal_upload(
    blobs: BlobStore,
    final_key: str,
    declared_size: int,
    inspect: Callable[[BinaryIO], Facts],
) -> SealedFile[Facts]:
    """Make the staged upload of ``final_key`` its final, immutable bytes; return their size and hash.

    Raises ``FileNotUploaded`` or ``FileSizeMismatch`` (the staged file stays, the client may upload
    again). A final key already there and nothing staged means an earlier completion promoted the file
    and then failed to commit its row: that file is the upload.

    ``inspect`` reads the final bytes as a stream, in the same pass that hashes them (it checks the
    content: a changeset parses and has its declared id). When it raises, the final key is deleted,
    so a refused file is never stored as history, the upload link is reopened (``_reopen_upload``)
    and the exception propagates; the client may upload again through the same link.
    """
    staging = blob_keys.upload(final_key)
    try:
        staged = blobs.stat(staging)
    except BlobNotFound:
        staged = None
    if staged is not None:
        if staged.size != declared_size:
            raise FileSizeMismatch(staged.size)
        info = blobs.promote(staging, final_key)
        if info.size != declared_size:
            # A PUT replaced the staged file between the check and the promotion: do not keep it.
            blobs.delete(final_key)
            raise FileSizeMismatch(info.size)
    else:
        try:
            info = blobs.stat(final_key)
        except BlobNotFound as exc:
            raise FileNotUploaded() from exc
        if info.size != declared_size:
            raise FileSizeMismatch(info.size)
    digest = hashlib.sha256()
    try:
        with open_reader(blobs, final_key, tap=digest.update) as stream:
            facts = inspect(stream)
            while stream.read(CHUNK):  # whatever inspect left unread still counts in the hash
                pass
    except BlobNotFound:
        raise
    except BaseException:
        blobs.delete(final_key)
        _reopen_upload(blobs, staging)
        raise
    return SealedFile(size=info.size, sha256=digest.hexdigest(), facts=facts)


def _reopen_upload(blobs: BlobStore, staging: str) -> None:
    """Let the upload link write again after its file was refused.

    On Azure the promotion sealed the upload blob (an infinite lease, emptied, marked sealed), so
    the blob service refuses every later write through the link (412 ``LeaseIdMissing``): delete it
    (breaking the lease), and the link's create+write SAS makes a new one. Locally the promotion was
    a rename and nothing is left. A file already staged again (a PUT that arrived after the rename)
    is a new upload: it stays.
    """
    try:
        blobs.stat(staging)  # a sealed upload blob answers BlobNotFound, as a missing one does
    except BlobNotFound:
        blobs.delete(staging)
