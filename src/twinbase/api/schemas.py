"""What the APIs answer, as pydantic models: the response half of the OpenAPI document.

Answers are rendered by the domain's ``to_wire`` functions (plain dicts, cheap on the hot path); these
models describe those dicts and are never instantiated on a request. ``Prefer: return=minimal`` and
``representation`` share one model per entity: the minimal fields are required, the rest optional.
``tests/test_openapi.py`` and the schemathesis run check the answers against them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Wire(BaseModel):
    # Describes answers; never validates requests. Extra keys stay allowed so that a field added to
    # an answer is not a contract break for older documents.
    model_config = ConfigDict(extra="allow", populate_by_name=True)


# ----------------------------------------------------------------------------------------- common


class ErrorDetailWire(Wire):
    code: str
    message: str
    target: str | None = None


class ErrorBody(Wire):
    code: str
    message: str
    details: list[ErrorDetailWire] | None = None


class ErrorResponse(Wire):
    """Every failure: ``{"error": {"code", "message", "details"?}}``."""

    error: ErrorBody


class Href(Wire):
    href: str


class PageLinks(Wire):
    self_: Href | None = Field(default=None, alias="self")
    prev: Href | None = None
    next: Href | None = None


class Empty(Wire):
    pass


# ----------------------------------------------------------------------------------------- iTwins


class ITwin(Wire):
    id: str
    class_: str | None = Field(default=None, alias="class")
    subClass: str | None = None
    type: str | None = None
    number: str | None = None
    displayName: str | None = None
    geographicLocation: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    ianaTimeZone: str | None = None
    dataCenterLocation: str | None = None
    status: str | None = None
    parentId: str | None = None
    iTwinAccountId: str | None = None
    imageName: str | None = None
    image: str | None = None
    createdDateTime: str | None = None
    createdBy: str | None = None
    lastModifiedDateTime: str | None = None
    lastModifiedBy: str | None = None


class ITwinAnswer(Wire):
    iTwin: ITwin


class ITwinList(Wire):
    iTwins: list[ITwin]
    links: PageLinks | None = Field(default=None, alias="_links")


class ITwinExportRequest(Wire):
    pass


class ITwinExport(Wire):
    id: str
    request: dict[str, Any]
    status: str
    outputUrl: str | None
    createdBy: str
    createdDateTime: str | None
    startedDateTime: str | None
    completedDateTime: str | None


class ITwinExportAnswer(Wire):
    export: ITwinExport


class ITwinExportList(Wire):
    exports: list[ITwinExport]


class Capability(Wire):
    uri: str


class Repository(Wire):
    id: str
    class_: str = Field(alias="class")
    subClass: str | None = None
    displayName: str | None = None
    uri: str
    authentication: dict[str, Any] | None = None
    options: dict[str, Any] | None = None
    capabilities: dict[str, Capability] | None = None


class RepositoryAnswer(Wire):
    repository: Repository


class RepositoryList(Wire):
    repositories: list[Repository]


class Resource(Wire):
    id: str
    class_: str = Field(alias="class")
    subClass: str | None = None
    displayName: str | None = None
    type: str | None = None
    capabilities: dict[str, Capability] | None = None
    properties: dict[str, Any] | None = None


class ResourceAnswer(Wire):
    resource: Resource


class ResourceList(Wire):
    resources: list[Resource]
    links: PageLinks | None = Field(default=None, alias="_links")


class Graphic(Wire):
    type: str
    uri: str
    authentication: dict[str, Any] | None = None


class GraphicsList(Wire):
    graphics: list[Graphic]


class Image(Wire):
    id: str | None
    smallImageName: str
    smallImageUrl: str
    largeImageName: str
    largeImageUrl: str


class ImageAnswer(Wire):
    image: Image


# ----------------------------------------------------------------------------------- access control


class Permission(Wire):
    id: str
    displayName: str
    description: str


class PermissionList(Wire):
    permissions: list[Permission]


class PermissionNames(Wire):
    permissions: list[str]


class Role(Wire):
    id: str
    displayName: str
    description: str
    permissions: list[str] | None = None


class RoleAnswer(Wire):
    role: Role


class RoleList(Wire):
    roles: list[Role]


class Owner(Wire):
    id: str
    email: str | None
    givenName: str
    surname: str
    organization: str


class UserMember(Owner):
    roles: list[Role]


class UserMemberAnswer(Wire):
    member: UserMember


class OwnerAnswer(Wire):
    member: Owner


class MemberList(Wire):
    members: list[UserMember | Owner]
    links: PageLinks | None = Field(default=None, alias="_links")


class MembersAdded(Wire):
    members: list[UserMember]
    invitations: list[dict[str, Any]]


# ---------------------------------------------------------------------------------------- iModels


class StorageLink(Wire):
    href: str
    storageType: str


class LatLong(Wire):
    latitude: float
    longitude: float


class Extent(Wire):
    southWest: LatLong
    northEast: LatLong


class IModel(Wire):
    id: str
    displayName: str
    name: str | None = None
    description: str | None = None
    state: str | None = None
    createdDateTime: str | None = None
    lastChangesetPushDateTime: str | None = None
    iTwinId: str | None = None
    extent: Extent | None = None
    containersEnabled: int | None = None
    dataCenterLocation: str | None = None
    geographicCoordinateSystem: dict[str, Any] | None = None
    links: dict[str, Href | StorageLink | None] | None = Field(default=None, alias="_links")


class IModelAnswer(Wire):
    iModel: IModel


class IModelList(Wire):
    iModels: list[IModel]
    links: PageLinks | None = Field(default=None, alias="_links")


class BaselineFile(Wire):
    id: str
    displayName: str
    fileSize: int
    state: str
    links: dict[str, Href | StorageLink | None] = Field(alias="_links")


class BaselineFileAnswer(Wire):
    baselineFile: BaselineFile


class CopySource(Wire):
    iModelId: str
    changesetId: str


class CreateOperation(Wire):
    state: str
    clonedFrom: CopySource | None = None
    forkedFrom: CopySource | None = None


class CreateOperationAnswer(Wire):
    createOperation: CreateOperation


class Application(Wire):
    id: str
    name: str | None


class SynchronizationInfo(Wire):
    taskId: str | None = None
    changedFiles: list[str] | None = None


class Changeset(Wire):
    id: str
    displayName: str
    description: str | None = None
    index: int | None
    parentId: str
    creatorId: str
    pushDateTime: str | None
    state: str
    containingChanges: int
    fileSize: int
    briefcaseId: int
    groupId: str | None
    application: Application | None = None
    synchronizationInfo: SynchronizationInfo | None = None
    links: dict[str, Href | StorageLink | None] = Field(alias="_links")


class ChangesetAnswer(Wire):
    changeset: Changeset


class ChangesetList(Wire):
    changesets: list[Changeset]
    links: PageLinks | None = Field(default=None, alias="_links")


class CheckpointError(Wire):
    code: str
    message: str


class AzureAccess(Wire):
    sasToken: str


class DirectoryAccessInfo(Wire):
    """Where the checkpoint is as a CloudSqlite container: the backend fetches
    ``https://{storage}.blob.core.windows.net/{baseDirectory}/manifest.bcv?{azure.sasToken}``."""

    baseUrl: str
    baseDirectory: str
    storage: str
    storageType: str
    azure: AzureAccess


class Checkpoint(Wire):
    """The file at exactly one changeset: ``scheduled`` while twinbase makes it, ``successful`` with
    a download link, ``failed`` with ``error`` (a twinbase addition: why it could not be made)."""

    changesetId: str
    changesetIndex: int
    size: int
    state: str
    dbName: str
    directoryAccessInfo: DirectoryAccessInfo | None
    containerAccessInfo: dict[str, Any] | None
    error: CheckpointError | None = None
    links: dict[str, StorageLink | None] = Field(alias="_links")


class CheckpointAnswer(Wire):
    checkpoint: Checkpoint


class ExtendedData(Wire):
    changesetId: str
    changesetIndex: int
    data: str


class ExtendedDataAnswer(Wire):
    extendedData: ExtendedData


class ExtendedDataList(Wire):
    extendedData: list[ExtendedData]
    links: PageLinks | None = Field(default=None, alias="_links")


class ChangesetGroup(Wire):
    id: str
    description: str | None
    state: str
    creatorId: str
    createdDateTime: str | None
    links: dict[str, Href] = Field(alias="_links")


class ChangesetGroupAnswer(Wire):
    changesetGroup: ChangesetGroup


class ChangesetGroupList(Wire):
    changesetGroups: list[ChangesetGroup]
    links: PageLinks | None = Field(default=None, alias="_links")


class NamedVersion(Wire):
    id: str
    displayName: str
    changesetId: str | None
    changesetIndex: int
    name: str | None = None
    description: str | None = None
    createdDateTime: str | None = None
    state: str | None = None
    application: Application | None = None
    links: dict[str, Href | None] | None = Field(default=None, alias="_links")


class NamedVersionAnswer(Wire):
    namedVersion: NamedVersion


class NamedVersionList(Wire):
    namedVersions: list[NamedVersion]
    links: PageLinks | None = Field(default=None, alias="_links")


class Briefcase(Wire):
    id: str
    displayName: str
    briefcaseId: int | None = None
    ownerId: str | None = None
    acquiredDateTime: str | None = None
    fileSize: int | None = None
    deviceName: str | None = None
    application: Application | None = None
    links: dict[str, Href] | None = Field(default=None, alias="_links")


class BriefcaseAnswer(Wire):
    briefcase: Briefcase


class BriefcaseList(Wire):
    briefcases: list[Briefcase]
    links: PageLinks | None = Field(default=None, alias="_links")


class LockedObjects(Wire):
    lockLevel: str
    objectIds: list[str]


class Lock(Wire):
    briefcaseId: int
    lockedObjects: list[LockedObjects]


class LockAnswer(Wire):
    lock: Lock


class LockList(Wire):
    locks: list[Lock]
    links: PageLinks | None = Field(default=None, alias="_links")


class ReleasedLocks(Wire):
    releasedLocks: list[LockedObjects]
    links: PageLinks | None = Field(default=None, alias="_links")


class ReleaseChunkAnswer(Wire):
    isLastChunk: bool


class UserStatistics(Wire):
    briefcasesCount: int | None = None
    createdVersionsCount: int | None = None
    pushedChangesetsCount: int | None = None
    lastChangesetPushDate: str | None = None
    applications: list[dict[str, Any]] | None = None


class IModelUser(Wire):
    id: str
    displayName: str
    givenName: str | None = None
    surname: str | None = None
    email: str | None = None
    statistics: UserStatistics | None = None
    links: dict[str, Href] | None = Field(default=None, alias="_links")


class IModelUserAnswer(Wire):
    user: IModelUser


class IModelUserList(Wire):
    users: list[IModelUser]
    links: PageLinks | None = Field(default=None, alias="_links")


# --------------------------------------------------------------------------------------- identity


class Discovery(Wire):
    issuer: str
    jwks_uri: str
    token_endpoint: str
    authorization_endpoint: str | None = None
    userinfo_endpoint: str | None = None


class Jwks(Wire):
    keys: list[dict[str, Any]]


class TokenAnswer(Wire):
    access_token: str
    token_type: str
    expires_in: int
    scope: str | None = None
    id_token: str | None = None


class OAuthError(Wire):
    error: str
    error_description: str | None = None


class UserInfo(Wire):
    sub: str


class TokenForm(BaseModel):
    grant_type: str
    client_id: str | None = None
    client_secret: str | None = None
    scope: str | None = None
    code: str | None = None
    redirect_uri: str | None = None
    code_verifier: str | None = None


class SignInForm(BaseModel):
    client_id: str
    redirect_uri: str
    response_type: str
    scope: str
    email: str
    password: str
    state: str | None = None
    nonce: str | None = None
    code_challenge: str | None = None
    code_challenge_method: str | None = None


# ------------------------------------------------------------------------------------- Mesh Export


class TilerConfigItem(BaseModel):
    """One ``tilerConfig`` item (seed 001); the keys twinbase reads are in ``export.config``."""

    model_config = ConfigDict(extra="forbid")
    key: str = Field(min_length=1, max_length=256)
    value: Annotated[str, Field(min_length=1, max_length=1000)] | float | bool


class StartMeshExport(BaseModel):
    """``POST /mesh-export``. ``geometryOptions`` and ``viewDefinitionFilter`` (the 2022 exporter's,
    still declared by frontend-tiles) are accepted and ignored; any other property is a 422."""

    model_config = ConfigDict(extra="forbid")
    iModelId: str = Field(min_length=1, description="ID of the iModel to extract from.")
    changesetId: str | None = Field(
        default=None, description="Changeset to extract from; omitted: the latest; empty: the baseline."
    )
    exportType: Literal["3DTILES", "3DTiles", "CESIUM", "GLTF", "3TZ", "IMODEL"] | None = Field(
        default=None,
        description="Case-insensitive; defaults to 3DTILES. IMODEL: iMdl tiles for @itwin/frontend-tiles.",
    )
    tilerConfig: list[TilerConfigItem] | None = Field(default=None, min_length=1, max_length=100)
    lastModified: datetime | None = Field(default=None, description="Validated, otherwise ignored.")
    geometryOptions: dict[str, Any] | None = None
    viewDefinitionFilter: dict[str, Any] | None = None


class UpdateMeshExport(BaseModel):
    """``PATCH /exports/{id}``: a new ``tilerConfig`` (null: the defaults) runs a finished export again."""

    model_config = ConfigDict(extra="forbid")
    displayName: str | None = Field(default=None, min_length=1, max_length=255)
    tilerConfig: list[TilerConfigItem] | None = Field(default=None, min_length=1, max_length=100)


class MeshExportRequest(Wire):
    iModelId: str
    iTwinId: str | None = None
    contextId: str | None = None
    changesetId: str
    changesetIndex: str | None = None
    exportType: str
    tilerConfig: list[dict[str, Any]] | None = None


class MeshExport(Wire):
    """Minimal: id, displayName, status, lastModified (and error when Invalid); representation adds
    request, stats (ExportStatsDisplay, plus ``progress`` while running) and ``_links.mesh``."""

    id: str
    displayName: str
    status: Literal["NotStarted", "InProgress", "Complete", "Invalid"]
    lastModified: str | None
    error: str | None = None
    request: MeshExportRequest | None = None
    stats: dict[str, Any] | None = None
    links: dict[str, Href] | None = Field(default=None, alias="_links")


class MeshExportAnswer(Wire):
    export: MeshExport


class MeshExportList(Wire):
    exports: list[MeshExport]
    links: PageLinks = Field(alias="_links")


# ------------------------------------------------------------------------------- Export API (IFC)


class CreateExportConnection(BaseModel):
    """``POST /export/connections`` (seed 004)."""

    model_config = ConfigDict(extra="forbid")
    iModelId: str = Field(min_length=36, max_length=36, description="The iModel to export.")
    displayName: str | None = Field(
        default=None, max_length=255, description="Defaults to the iModel's name."
    )
    authenticationType: Literal["User", "Service"] | None = Field(
        default=None,
        description="User (default): runs run as the user who starts them. Service: as twinbase's export "
        "service identity (a run then does not depend on the starting user's access while it works).",
    )


class ExportConnection(Wire):
    id: str
    displayName: str
    iModelId: str
    iTwinId: str
    authenticationType: Literal["User", "Service"]
    links: dict[str, Href] = Field(alias="_links")


class ExportConnectionAnswer(Wire):
    connection: ExportConnection


class ExportConnectionList(Wire):
    connections: list[ExportConnection]
    links: PageLinks = Field(alias="_links")


class ExportRunInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    changesetId: str | None = Field(default=None, max_length=64, description="Omitted: the iModel's latest.")
    modelIds: list[str] | None = Field(default=None, min_length=1, description="Only these models (hex ids).")
    mappingFileId: str | None = Field(default=None, description="Not supported by twinbase (422).")
    mappingfileBlobUrl: str | None = Field(default=None, description="Not supported by twinbase (422).")
    savedViewId: str | None = Field(default=None, description="Not supported by twinbase (422).")


class ExportRunOutput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    location: str | None = Field(default=None, description="Only the default (twinbase keeps the file).")
    outputSasUrl: str | None = Field(default=None, description="Not supported by twinbase (422).")
    logsSasUrl: str | None = Field(default=None, description="Not supported by twinbase (422).")
    folderId: str | None = Field(default=None, description="Not supported by twinbase (422).")


class StartExportRun(BaseModel):
    """``POST /export/connections/{id}/runs``."""

    model_config = ConfigDict(extra="forbid")
    exportType: Literal["IFC"] | None = Field(
        default=None, description="IFC (default); PDF is not supported yet."
    )
    ifcVersion: Literal["IFC4 RV 1.2", "IFC4.3", "IFC2x3", "IFC2x3 CV 2.0"] | None = Field(
        default=None, description="Case-insensitive; defaults to IFC4 RV 1.2."
    )
    inputOptions: ExportRunInput | None = None
    outputOptions: ExportRunOutput | None = None


class ExportTask(Wire):
    id: str
    startDateTime: str | None
    endDateTime: str | None
    retryAttempts: int
    state: str
    result: str
    exportOutputFileId: str | None
    error: dict[str, Any] | None = None
    progress: float | None = None
    stats: dict[str, Any] | None = None
    links: dict[str, Href] | None = Field(default=None, alias="_links")


class ExportJob(Wire):
    id: str
    startDateTime: str | None
    endDateTime: str | None
    state: str
    result: str
    tasks: list[ExportTask]


class ExportRun(Wire):
    id: str
    connectionId: str
    startDateTime: str | None
    endDateTime: str | None
    state: Literal["Queued", "Executing", "Finalizing", "Completed"]
    result: Literal["Undetermined", "Success", "PartialSuccess", "Error"]
    jobs: list[ExportJob]


class ExportRunAnswer(Wire):
    run: ExportRun


class ExportRunList(Wire):
    runs: list[ExportRun]
    links: PageLinks = Field(alias="_links")


class AuthorizationInformation(Wire):
    isUserAuthorized: bool
    links: dict[str, Href] = Field(alias="_links")


class AuthorizationInformationAnswer(Wire):
    authorizationInformation: AuthorizationInformation
