"""Blob storage: the ``BlobStore`` seam (``base``), its key layout (``keys``), the local folder
(``local``, with HMAC-signed links from ``signer``) and Azure Blob Storage (``azure``, SAS links).

``build_blob_store(settings, signer)`` picks the backend from ``settings.blob_backend``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from twinbase.store.blobs.base import (
    CHUNK,
    BlobInfo,
    BlobStore,
    BlobWriter,
    CloudContainer,
    InvalidBlobKey,
    Perm,
    PrefixLink,
    check_key,
    open_reader,
    sha256_of,
)
from twinbase.store.blobs.local import LocalBlobStore, LocalBlobWriter
from twinbase.store.blobs.signer import SigningKeyError, UrlSigner

if TYPE_CHECKING:
    from twinbase.settings import Settings

log = logging.getLogger(__name__)

__all__ = [
    "CHUNK",
    "BlobInfo",
    "BlobStore",
    "BlobWriter",
    "CloudContainer",
    "InvalidBlobKey",
    "LocalBlobStore",
    "LocalBlobWriter",
    "Perm",
    "PrefixLink",
    "SigningKeyError",
    "UrlSigner",
    "build_blob_store",
    "check_key",
    "open_reader",
    "sha256_of",
]


def build_blob_store(settings: Settings, signer: UrlSigner) -> BlobStore:
    if settings.blob_backend == "azure":
        # Imported here: the Azure SDK loads only when it is the configured backend.
        from azure.core.exceptions import HttpResponseError

        from twinbase.store.blobs.azure import AzureBlobStore

        azure = AzureBlobStore.from_connection_string(
            settings.azure_connection_string, settings.azure_container
        )
        account = str(azure.service.account_name)
        if settings.checkpoint_storage_account and settings.checkpoint_storage_account != account:
            # The blob service serves checkpoint containers itself, under its own account's host name.
            raise ValueError(
                f"checkpoint_storage_account is {settings.checkpoint_storage_account!r}, but with the azure "
                f"backend it must be the storage account's name, {account!r}"
            )
        try:
            if azure.allow_browsers(settings.azure_cors_origin_list):
                log.info("added a CORS rule to the blob service", extra={"action": "azure_cors_added"})
        except (HttpResponseError, ValueError) as exc:
            # Not fatal: API clients and iTwin.js backends need no CORS; only browsers are refused.
            log.warning(
                "could not set the blob service's CORS rule: browsers cannot fetch tiles",
                extra={"action": "azure_cors_failed", "reason": str(exc)},
            )
        return azure
    store = LocalBlobStore(settings.blob_root, signer)
    store.sweep()
    return store
