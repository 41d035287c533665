"""Typed errors that carry their wire code. Raised anywhere, rendered once by ``api.http``.

The tree::

    TwinbaseError                      (500 Unknown)
    ├── Unauthorized                   (401, token problems)
    │   ├── HeaderNotFound
    │   └── InvalidAuthorizationScheme
    ├── InsufficientPermissions        (403)
    ├── NotFound                       (404; subclasses name the entity: iTwinNotFound, ...)
    ├── MethodNotAllowed               (405)
    ├── Conflict                       (409; iTwinExists, iTwinRepositoryExists, ...)
    ├── PayloadTooLarge                (413)
    ├── InvalidRequest                 (422; the API's Invalid...Request code, with details)
    ├── RateLimitExceeded              (429, carries Retry-After)
    └── ServiceUnavailable             (503)

Every subclass only sets ``status``, ``code`` and a default ``message``. ``details`` is a list of
``ErrorDetail`` (code, message, target), as the iTwin APIs send them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar


@dataclass(frozen=True)
class ErrorDetail:
    code: str
    message: str
    target: str | None = None

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.target is not None:
            out["target"] = self.target
        return out


class TwinbaseError(Exception):
    """Something went wrong on the server's side. Never shows internals to the client."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "Unknown"
    default_message: ClassVar[str] = "An unexpected error occurred. The request id identifies it in the logs."

    def __init__(
        self,
        message: str | None = None,
        *,
        details: list[ErrorDetail] | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.message = message or self.default_message
        self.details = details
        self.wire_code = code or self.code
        self.headers = headers or {}
        self.extra = extra or {}
        super().__init__(self.message)

    def to_wire(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.wire_code, "message": self.message}
        if self.details is not None:
            body["details"] = [d.to_wire() for d in self.details]
        body.update(self.extra)
        return {"error": body}


class Unauthorized(TwinbaseError):
    status = 401
    code = "Unauthorized"
    default_message = (
        "Access denied due to invalid access_token. Make sure that issuer is correct, "
        "the token is not expired and is not corrupted."
    )


class HeaderNotFound(Unauthorized):
    code = "HeaderNotFound"
    default_message = "Header Authorization was not found in the request. Access denied."


class InvalidAuthorizationScheme(Unauthorized):
    code = "InvalidAuthorizationScheme"


class InsufficientPermissions(TwinbaseError):
    status = 403
    code = "InsufficientPermissions"
    default_message = "The user has insufficient permissions for the requested operation."


class NotFound(TwinbaseError):
    status = 404
    code = "NotFound"
    default_message = "Requested resource is not available."


class ITwinNotFound(NotFound):
    code = "iTwinNotFound"
    default_message = "Requested iTwin is not available."


class RepositoryNotFound(NotFound):
    code = "iTwinRepositoryNotFound"
    default_message = "Requested iTwin Repository is not available."


class RepositoryResourceNotFound(NotFound):
    code = "iTwinRepositoryResourceNotFound"
    default_message = "Requested iTwin Repository Resource is not available."


class ImageNotFound(NotFound):
    code = "iTwinImageNotFound"
    default_message = "Requested iTwin image is not available."


class ExportNotFound(NotFound):
    code = "iTwinExportNotFound"
    default_message = "Requested iTwin export is not available."


class RoleNotFound(NotFound):
    code = "RoleNotFound"
    default_message = "Requested role is not available."


class MemberNotFound(NotFound):
    code = "TeamMemberNotFound"
    default_message = "Requested member is not available."


class BlobNotFound(NotFound):
    code = "FileNotFound"
    default_message = "Requested file is not available."


class MethodNotAllowed(TwinbaseError):
    status = 405
    code = "MethodNotAllowed"
    default_message = "The HTTP method is not allowed on this resource."


class Conflict(TwinbaseError):
    status = 409
    code = "Conflict"
    default_message = "The request conflicts with the current state of the resource."


class ITwinExists(Conflict):
    code = "iTwinExists"
    default_message = "iTwin already exists."


class RepositoryExists(Conflict):
    code = "iTwinRepositoryExists"
    default_message = "iTwin Repository already exists."


class RepositoryResourceExists(Conflict):
    code = "iTwinRepositoryResourceExists"
    default_message = "iTwin Repository Resource already exists."


class PayloadTooLarge(TwinbaseError):
    status = 413
    code = "RequestTooLarge"
    default_message = "The request body is too large."


class InvalidRequest(TwinbaseError):
    """422. ``code`` is set per API (``InvalidiTwinsRequest``, ...) by the raiser."""

    status = 422
    code = "InvalidRequest"
    default_message = "The request is not valid."


class RateLimitExceeded(TwinbaseError):
    status = 429
    code = "RateLimitExceeded"
    default_message = (
        "The client sent more requests than allowed by this API for the current tier of the client."
    )


class ServiceUnavailable(TwinbaseError):
    status = 503
    code = "ServiceUnavailable"
    default_message = "The service is temporarily unavailable. Retry later."


def invalid_value(target: str, message: str | None = None) -> ErrorDetail:
    return ErrorDetail("InvalidValue", message or f"Provided '{target}' value is not valid.", target)


def missing_property(target: str) -> ErrorDetail:
    return ErrorDetail("MissingRequiredProperty", f"Required property '{target}' is missing.", target)


# ------------------------------------------------------------------------------------ iModels API
# Messages are the platform's exact strings: the official clients' tests compare them.


class IModelNotFound(NotFound):
    code = "iModelNotFound"
    default_message = "Requested iModel is not available."


class ChangesetNotFound(NotFound):
    code = "ChangesetNotFound"
    default_message = "Requested Changeset is not available."


class BriefcaseNotFound(NotFound):
    code = "BriefcaseNotFound"
    default_message = "Requested Briefcase is not available."


class NamedVersionNotFound(NotFound):
    code = "NamedVersionNotFound"
    default_message = "Requested Named Version is not available."


class CheckpointNotFound(NotFound):
    code = "CheckpointNotFound"
    default_message = "Requested Checkpoint is not available."


class LockNotFound(NotFound):
    code = "LockNotFound"
    default_message = "Requested Lock(s) is not available."


class UserNotFound(NotFound):
    code = "UserNotFound"
    default_message = "Requested User is not available."


class BaselineFileNotFound(NotFound):
    code = "BaselineFileNotFound"
    default_message = "Requested Baseline File is not available."


class ChangesetGroupNotFound(NotFound):
    code = "ChangesetGroupNotFound"
    default_message = "Requested Changeset Group is not available."


class ChangesetExtendedDataNotFound(NotFound):
    code = "ChangesetExtendedDataNotFound"
    default_message = "Requested Changeset Extended Data is not available."


class ThumbnailNotFound(NotFound):
    code = "FileNotFound"
    default_message = "Requested Thumbnail is not available."


class IModelExists(Conflict):
    code = "iModelExists"
    default_message = "iModel with the same name already exists within the iTwin."


class ChangesetExists(Conflict):
    code = "ChangesetExists"
    default_message = "Changeset with the same id already exists."


class NamedVersionExists(Conflict):
    code = "NamedVersionExists"
    default_message = "Named Version with the same name already exists."


class NamedVersionOnChangesetExists(Conflict):
    code = "NamedVersionOnChangesetExists"
    default_message = "Named Version already exists on the Changeset."


class ConflictWithAnotherUser(Conflict):
    code = "ConflictWithAnotherUser"
    default_message = "Lock(s) is owned by another Briefcase."


class NewerChangesExist(Conflict):
    code = "NewerChangesExist"
    default_message = "One or more objects have been locked in a newer Changeset."


class ResourceQuotaExceeded(TwinbaseError):
    status = 409
    code = "ResourceQuotaExceeded"
    default_message = "The maximum number of resources has been reached."


INVALID_IMODELS = "InvalidiModelsRequest"


def invalid_imodels(message: str, *details: ErrorDetail) -> InvalidRequest:
    """422 ``InvalidiModelsRequest`` with its details (``invalid_imodels("Cannot create iModel.", d)``)."""
    return InvalidRequest(message, code=INVALID_IMODELS, details=list(details))


# -------------------------------------------------------------------------------- Mesh Export API
# Seed 001 and reference §A.3: the Mesh Export API spells its codes its own way (``IModelNotFound``
# with a capital I, ``ExportNotFound`` without the iTwins API's prefix).

INVALID_MESH_EXPORT = "InvalidMeshExportRequest"
MESH_IMODEL_NOT_FOUND = "IModelNotFound"


class MeshExportNotFound(NotFound):
    code = "ExportNotFound"
    default_message = "Requested export is not available."


def invalid_mesh_export(message: str, *details: ErrorDetail) -> InvalidRequest:
    """422 ``InvalidMeshExportRequest`` (``invalid_mesh_export("Cannot create export job.", d)``)."""
    return InvalidRequest(message, code=INVALID_MESH_EXPORT, details=list(details))


# ------------------------------------------------------------------------------- Export API (IFC)
# Seed 004 and reference §C: ``InvalidExportConnectionRequest`` "Cannot perform operation.",
# ``ConnectionNotFound``, and the platform's ``TooManyRequests`` for 429.

INVALID_EXPORT_CONNECTION = "InvalidExportConnectionRequest"
EXPORT_CONNECTION_MESSAGE = "Cannot perform operation."


class ConnectionNotFound(NotFound):
    code = "ConnectionNotFound"
    default_message = "Requested Connection is not available."


class RunStarting(Conflict):
    """Two starts of one connection's run raced and this one lost (the other's run is active)."""

    code = "RunAlreadyStarting"
    default_message = "Another run of this connection is being started at the same time. Retry to see it."


def invalid_export_connection(*details: ErrorDetail, message: str | None = None) -> InvalidRequest:
    """422 ``InvalidExportConnectionRequest`` "Cannot perform operation." with its details."""
    return InvalidRequest(
        message or EXPORT_CONNECTION_MESSAGE, code=INVALID_EXPORT_CONNECTION, details=list(details)
    )
