"""The blob key layout: every key twinbase stores is spelled here, and only here.

::

    itwins/<itwinId>/<image file>                   iTwin images
    itwin-exports/<exportId>.<ext>                  iTwin export outputs
    export-runs/<runId>/<file name>                 Export API run outputs (IFC)
    imodels/<imodelId>/baseline.bim                 the completed baseline file
    imodels/<imodelId>/checkpoints/<index>.bim      checkpoints
    imodels/<imodelId>/changesets/<csId>.cs         completed changesets
    imodels/<imodelId>/thumbnail-<size>.png         thumbnails
    uploads/<final key>                             where an upload link writes, until completion
    staging/<sha1(key)>/<sha1(block id)>            Put Block parts before their Put Block List
    bundles/<bundleId>/<relative path>              file trees shared by one prefix link (3D Tiles)
    bundles/<iModelId hex>/<BLOCKID>.bcv            an iModel's CloudSqlite container: its checkpoints'
                                                    blocks (content-addressed) and manifest.bcv

Upload links never point at a final key: completion checks the staged file and *promotes* it
(``BlobStore.promote``), so completed history cannot be rewritten through an old link.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import uuid
from dataclasses import dataclass

UPLOADS = "uploads"
BLOCKS = "staging"
BUNDLES = "bundles"

_ID = r"[A-Za-z0-9][A-Za-z0-9\-]*"
_UPLOAD_OWNER = re.compile(
    rf"^{UPLOADS}/imodels/(?P<imodel>{_ID})/(?:baseline\.bim|changesets/(?P<changeset>{_ID})\.cs)$"
)
_BUNDLE = re.compile(rf"^{BUNDLES}/(?P<bundle>[0-9a-f]{{32}})(?:/(?P<rest>.+))?$")

# A bundle's files never change (a re-run writes a new bundle), so clients may keep them.
BUNDLE_CACHE_CONTROL = "private, max-age=86400, immutable"
CONTAINER_MANIFEST = "manifest.bcv"

_CONTENT_TYPES = (
    (".png", "image/png"),
    (".jpg", "image/jpeg"),
    (".json", "application/json"),
    (".glb", "model/gltf-binary"),
    (".gltf", "model/gltf+json"),
    (".gz", "application/gzip"),
    (".zip", "application/zip"),
    (".csv", "text/csv"),
)


def content_type(key: str) -> str:
    """The media type a file is served with, from its name (both backends: twinbase's file routes
    answer it, the Azure backend stores it on the blob, which the blob service then answers)."""
    for ext, kind in _CONTENT_TYPES:
        if key.endswith(ext):
            return kind
    return "application/octet-stream"


# ------------------------------------------------------------------------------------------ iTwins


def itwin_prefix(itwin_id: str) -> str:
    return f"itwins/{itwin_id}"


def itwin_image(itwin_id: str, file_name: str) -> str:
    return f"{itwin_prefix(itwin_id)}/{file_name}"


def itwin_export_output(export_id: str, extension: str) -> str:
    return f"itwin-exports/{export_id}.{extension}"


def export_run_output(run_id: str, file_name: str) -> str:
    """The output file of an Export API run (its one task's file)."""
    return f"export-runs/{run_id}/{file_name}"


# ----------------------------------------------------------------------------------------- iModels


def imodel_prefix(imodel_id: str) -> str:
    """Every completed file of an iModel (baseline, checkpoints, changesets, thumbnails)."""
    return f"imodels/{imodel_id}"


def imodel_prefixes(imodel_id: str) -> list[str]:
    """What deleting an iModel removes: its files, its checkpoint container and any upload still staged."""
    prefixes = [imodel_prefix(imodel_id), upload(imodel_prefix(imodel_id))]
    with contextlib.suppress(ValueError):  # not a uuid: twinbase made no such iModel, nor its container
        prefixes.append(container_prefix(imodel_id))
    return prefixes


def baseline(imodel_id: str) -> str:
    return f"{imodel_prefix(imodel_id)}/baseline.bim"


def checkpoint(imodel_id: str, index: int) -> str:
    return f"{imodel_prefix(imodel_id)}/checkpoints/{index}.bim"


def checkpoint_of(imodel_id: str, index: int, changeset_id: str) -> str:
    """A checkpoint made by a completion: named by its changeset too, as racing completions on one
    parent each make their own before one of them wins."""
    return f"{imodel_prefix(imodel_id)}/checkpoints/{index}-{changeset_id}.bim"


def container_prefix(imodel_id: str) -> str:
    """The iModel's CloudSqlite container: the blocks of every checkpoint, shared where identical. A bundle
    (named by the iModel's id), so one read-only link serves all of it, by the Azure blob service too."""
    return bundle(uuid.UUID(imodel_id).hex)


def container_block(imodel_id: str, block_name: str) -> str:
    return f"{container_prefix(imodel_id)}/{block_name}"


def container_manifest(imodel_id: str) -> str:
    return f"{container_prefix(imodel_id)}/{CONTAINER_MANIFEST}"


def changeset(imodel_id: str, changeset_id: str) -> str:
    return f"{imodel_prefix(imodel_id)}/changesets/{changeset_id}.cs"


def thumbnail(imodel_id: str, size: str) -> str:
    return f"{imodel_prefix(imodel_id)}/thumbnail-{size}.png"


# ---------------------------------------------------------------------------------- uploads, blocks


def upload(final_key: str) -> str:
    """The staging key an upload link writes to; completion promotes it to ``final_key``."""
    return f"{UPLOADS}/{final_key}"


@dataclass(frozen=True)
class UploadOwner:
    """The row whose state decides whether an upload key still accepts bytes."""

    imodel_id: str
    changeset_id: str | None  # None: the iModel's baseline file


def upload_owner(key: str) -> UploadOwner | None:
    """Who owns an upload key; ``None`` for any other key (no link may write there)."""
    m = _UPLOAD_OWNER.match(key)
    if m is None:
        return None
    return UploadOwner(m.group("imodel"), m.group("changeset"))


def block(key: str, block_id: str) -> str:
    """Where one Put Block of ``key`` waits for its Put Block List."""
    folder = hashlib.sha1(key.encode()).hexdigest()
    return f"{BLOCKS}/{folder}/{hashlib.sha1(block_id.encode()).hexdigest()}"


# ---------------------------------------------------------------------------------------- bundles


def bundle(bundle_id: str) -> str:
    """The prefix of a bundle: ``bundle_id`` is 32 lowercase hex digits (a uuid4's ``.hex``)."""
    prefix = f"{BUNDLES}/{bundle_id}"
    if not _BUNDLE.match(prefix):
        raise ValueError(f"not a bundle id: {bundle_id!r}")
    return prefix


def bundle_cache_control(key: str) -> str | None:
    """How long clients may keep a bundle's file: for good, except a container manifest, which changes as
    checkpoints come and go; None for keys outside bundles."""
    found = split_bundle(key)
    if found is None:
        return None
    return "no-cache" if found[1] == CONTAINER_MANIFEST else BUNDLE_CACHE_CONTROL


def split_bundle(key: str) -> tuple[str, str] | None:
    """``(bundle_id, relative path)`` for a key inside a bundle (relative path ``""`` for the root)."""
    m = _BUNDLE.match(key.rstrip("/"))
    if m is None:
        return None
    return m.group("bundle"), m.group("rest") or ""
