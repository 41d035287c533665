"""iTwin repositories, their resources, and the global (curated) repositories.

Rules (reference part B.2 and B.6): every iTwin has one default ``iModels`` repository made with it;
clients add repositories of the manual classes only (GIS, Construction, Subsurface, ...), one per uri
in an iTwin (409 ``iTwinRepositoryExists``); the default one is neither changed nor deleted. Resources
are client-named entries of a manually added repository (409 ``iTwinRepositoryResourceExists``).
Reads need ``itwins_read``, writes ``itwins_modify``; a non-member gets 404 ``iTwinNotFound``.
Functions take the caller's session and never commit.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal
from urllib.parse import quote, urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from twinbase.domain import access, itwins
from twinbase.domain.listing import Page, Paging, fetch_page, like_contains, parse_paging
from twinbase.errors import (
    ErrorDetail,
    InvalidRequest,
    RepositoryExists,
    RepositoryNotFound,
    RepositoryResourceExists,
    RepositoryResourceNotFound,
    invalid_value,
)
from twinbase.store.models import ITwin, Repository, RepositoryResource, new_id

# ------------------------------------------------------------------------------------------ classes

# Made by the service (the default iModels repository is one); never through the API.
AUTO_CLASSES: tuple[str, ...] = ("iModels", "RealityData", "Storage", "Forms", "Issues", "SensorData")
# Added by clients; an empty tuple means the class takes no subClass.
MANUAL_CLASSES: dict[str, tuple[str, ...]] = {
    "GeographicInformationSystem": (
        "WebMapService",
        "WebMapTileService",
        "ArcGIS",
        "MapServer",
        "UrlTemplate",
        "OgcApiFeatures",
    ),
    "Construction": ("Performance",),
    "Subsurface": ("EvoWorkspace",),
    "GeospatialFeatures": (),
    "PdfPlansets": (),
    "IndexedMedia": (),
}
SUBCLASSES_OF: dict[str, tuple[str, ...]] = {**{c: () for c in AUTO_CLASSES}, **MANUAL_CLASSES}
ALL_SUBCLASSES: tuple[str, ...] = tuple(s for subs in MANUAL_CLASSES.values() for s in subs)

# Stored uris of service-made repositories are relative to this server: rendered against its base URL.
LOCAL_URI_PREFIX = "twinbase:"

INVALID = itwins.INVALID
MAX_TOP = 1000
DEFAULT_TOP = 100

QUERY_MESSAGE = "Cannot query iTwin Repositories."
CREATE_MESSAGE = "Cannot create iTwin Repository."
UPDATE_MESSAGE = "Cannot update iTwin Repository."
DELETE_MESSAGE = "Cannot delete iTwin Repository."
RESOURCE_QUERY_MESSAGE = "Cannot query iTwin Repository Resources."
RESOURCE_CREATE_MESSAGE = "Cannot create iTwin Repository Resource."


def canonical(value: str, allowed: Sequence[str]) -> str | None:
    """``value`` spelled as in ``allowed`` (clients vary the case), or ``None`` when not there."""
    lowered = value.lower()
    return next((a for a in allowed if a.lower() == lowered), None)


def _clip(value: str, limit: int = 64) -> str:
    return value if len(value) <= limit else value[:limit] + "..."


# ------------------------------------------------------------------------------------- input models


def _fail(loc: tuple[str | int, ...], kind: str, message: str, value: Any) -> ValidationError:
    """One error at ``loc`` below the field being validated; pydantic prefixes the field's own path."""
    return ValidationError.from_exception_data(
        "Repository", [InitErrorDetails(type=PydanticCustomError(kind, message), loc=loc, input=value)]
    )


class KeyAuthentication(BaseModel):
    """An API key sent as a header or a query parameter."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["Header", "QueryParameter"]
    key: StrictStr = Field(min_length=1, max_length=255)
    value: StrictStr = Field(min_length=1, max_length=4096)


class BasicAuthentication(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["Basic"]
    username: StrictStr = Field(min_length=1, max_length=255)
    password: StrictStr = Field(min_length=1, max_length=4096)


AUTHENTICATION_TYPES: dict[str, type[KeyAuthentication] | type[BasicAuthentication]] = {
    "Header": KeyAuthentication,
    "QueryParameter": KeyAuthentication,
    "Basic": BasicAuthentication,
}

QueryKey = Annotated[StrictStr, Field(min_length=1, max_length=255)]
QueryValue = Annotated[StrictStr, Field(max_length=2048)]


class RepositoryOptions(BaseModel):
    """Options every subclass understands: extra query parameters and the imagery level range."""

    model_config = ConfigDict(extra="forbid")

    queryParameters: dict[QueryKey, QueryValue] | None = Field(default=None, max_length=100)
    minimumLevel: StrictInt | None = Field(default=None, ge=0, le=30)
    maximumLevel: StrictInt | None = Field(default=None, ge=0, le=30)

    @model_validator(mode="after")
    def _level_range(self) -> RepositoryOptions:
        low, high = self.minimumLevel, self.maximumLevel
        if low is not None and high is not None and low > high:
            raise _fail(("maximumLevel",), "value_error", "must not be below minimumLevel", high)
        return self


def _display_name(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


def _absolute_http_url(value: str) -> str:
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        raise ValueError("must not contain spaces or control characters")
    try:
        parts = urlsplit(value)
    except ValueError as exc:
        raise ValueError("must be an absolute http or https URL") from exc
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        raise ValueError("must be an absolute http or https URL")
    return value


class RepositoryFields(BaseModel):
    """What a client may set on a repository, on create and on update."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    displayName: StrictStr | None = Field(default=None, min_length=1, max_length=255)
    uri: StrictStr | None = Field(default=None, max_length=2048)
    authentication: KeyAuthentication | BasicAuthentication | None = None
    options: RepositoryOptions | None = None

    @field_validator("uri", mode="before")
    @classmethod
    def _uri_present(cls, value: Any) -> Any:
        # An empty uri is reported like a missing one (the official client's tests expect that).
        if value is None or (isinstance(value, str) and not value.strip()):
            raise PydanticCustomError("missing", "Required property 'uri' is missing.")
        return value

    @field_validator("uri")
    @classmethod
    def _uri_shape(cls, value: str | None) -> str | None:
        return None if value is None else _absolute_http_url(value)

    @field_validator("displayName")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        return None if value is None else _display_name(value)

    @field_validator("authentication", mode="wrap")
    @classmethod
    def _authentication(cls, value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        # Dispatch on ``type`` by hand so that errors name ``authentication.key``, not a union member.
        if value is None:
            return None
        if not isinstance(value, dict):
            raise PydanticCustomError("dict_type", "Input should be an object")
        kind = value.get("type")
        if kind is None:
            raise _fail(("type",), "missing", "Field required", value)
        model = AUTHENTICATION_TYPES.get(kind) if isinstance(kind, str) else None
        if model is None:
            raise _fail(("type",), "enum", f"must be one of {', '.join(AUTHENTICATION_TYPES)}", kind)
        return model.model_validate(value)


class RepositoryCreate(RepositoryFields):
    class_: StrictStr = Field(alias="class", min_length=1, max_length=64)
    subClass: StrictStr | None = Field(default=None, max_length=64)
    uri: StrictStr = Field(max_length=2048)


class RepositoryUpdate(RepositoryFields):
    """All optional; ``authentication``/``options`` null removes them; class, subClass and id stay."""

    class_: StrictStr | None = Field(default=None, alias="class", max_length=64)
    subClass: StrictStr | None = Field(default=None, max_length=64)
    id: StrictStr | None = Field(default=None, max_length=64)

    @field_validator("displayName", mode="before")
    @classmethod
    def _name_not_null(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("cannot be set to null")
        return value


# Resource ids become one path segment of their URL: no '/', '?', '#', controls, nor a dot segment.
RESOURCE_ID = re.compile(r"^[^/\\?#\x00-\x1f\x7f]+$")


class ResourceCreate(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: StrictStr = Field(max_length=255)
    displayName: StrictStr = Field(min_length=1, max_length=255)
    properties: dict[str, Any] | None = None

    @field_validator("id", mode="before")
    @classmethod
    def _id_present(cls, value: Any) -> Any:
        if value is None or (isinstance(value, str) and not value.strip()):
            raise PydanticCustomError("missing", "Required property 'id' is missing.")
        return value

    @field_validator("id")
    @classmethod
    def _id_shape(cls, value: str) -> str:
        if not RESOURCE_ID.match(value):
            raise ValueError("must not contain '/', '\\', '?', '#' or control characters")
        if value in (".", ".."):
            raise ValueError("must not be '.' or '..'")  # URL clients resolve those away
        return value

    @field_validator("displayName")
    @classmethod
    def _name(cls, value: str) -> str:
        return _display_name(value)


# ------------------------------------------------------------------------------------------ queries


@dataclass(frozen=True)
class RepositoryQuery:
    class_: str | None = None
    sub_class: str | None = None


def parse_repository_query(params: Mapping[str, str]) -> RepositoryQuery:
    """``class`` and ``subClass`` filters; unknown values and impossible pairs are 422."""
    raw_class = params.get("class") or None
    raw_sub = params.get("subClass") or None
    class_ = canonical(raw_class, tuple(SUBCLASSES_OF)) if raw_class else None
    sub_class = canonical(raw_sub, ALL_SUBCLASSES) if raw_sub else None
    details: list[ErrorDetail] = []
    if raw_class and class_ is None:
        details.append(invalid_value("class", f"Provided 'class' value '{_clip(raw_class)}' is not valid."))
    if raw_sub and sub_class is None:
        details.append(
            invalid_value("subClass", f"Provided 'subClass' value '{_clip(raw_sub)}' is not valid.")
        )
    elif class_ and sub_class and sub_class not in SUBCLASSES_OF[class_]:
        details.append(
            invalid_value("subClass", f"subClass '{sub_class}' does not belong to class '{class_}'.")
        )
    if details:
        raise InvalidRequest(QUERY_MESSAGE, code=INVALID, details=details)
    return RepositoryQuery(class_=class_, sub_class=sub_class)


@dataclass(frozen=True)
class ResourceQuery:
    paging: Paging
    search: str | None = None


def parse_resource_query(params: Mapping[str, str]) -> ResourceQuery:
    details: list[ErrorDetail] = []

    paging = parse_paging(params, details, default_top=DEFAULT_TOP, max_top=MAX_TOP)
    search = params.get("$search") or None
    if search is not None and len(search) > 255:
        details.append(invalid_value("$search", "'$search' must be at most 255 characters."))
    if details:
        raise InvalidRequest(RESOURCE_QUERY_MESSAGE, code=INVALID, details=details)
    return ResourceQuery(paging=paging, search=search)


# ------------------------------------------------------------------------------------- repositories


def _itwin(session: Session, itwin_id: str, user_id: str, permission: str, *, write: bool = False) -> ITwin:
    # Writes lock the iTwin row: repository writes of one iTwin queue, and the iTwin cannot vanish under them.
    itwin, perms = access.visible_itwin(session, itwin_id, user_id, for_update=write)
    access.require(perms, permission)
    return itwin


def _storable(key: str, max_length: int) -> bool:
    """Whether ``key`` can be a stored id at all; PostgreSQL refuses NUL even in a lookup."""
    return len(key) <= max_length and "\x00" not in key


def _repository_of(session: Session, itwin: ITwin, repository_id: str) -> Repository | None:
    repo = session.get(Repository, repository_id) if _storable(repository_id, 36) else None
    return repo if repo is not None and repo.itwin_id == itwin.id else None


def _resource_of(session: Session, repo: Repository | None, resource_id: str) -> RepositoryResource | None:
    if repo is None or not _storable(resource_id, 255):
        return None
    return session.get(RepositoryResource, (repo.id, resource_id))


def _repository(session: Session, itwin: ITwin, repository_id: str) -> Repository:
    repo = _repository_of(session, itwin, repository_id)
    if repo is None:
        raise RepositoryNotFound()
    return repo


def _uri_taken(session: Session, itwin_id: str, uri: str, except_id: str | None) -> bool:
    stmt = select(Repository.id).where(Repository.itwin_id == itwin_id, Repository.uri == uri)
    if except_id is not None:
        stmt = stmt.where(Repository.id != except_id)
    return session.scalar(stmt.limit(1)) is not None


def _exists(uri: str) -> RepositoryExists:
    return RepositoryExists(
        details=[
            invalid_value("uri", f"A repository with uri '{_clip(uri, 256)}' already exists in the iTwin.")
        ]
    )


def _flush_unique(session: Session, conflict: Exception) -> None:
    """Flush in a savepoint; a unique-key race lost to a concurrent writer becomes ``conflict``."""
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError as exc:
        raise conflict from exc


def list_repositories(session: Session, user_id: str, itwin_id: str, q: RepositoryQuery) -> list[Repository]:
    itwin = _itwin(session, itwin_id, user_id, access.ITWINS_READ)
    stmt = select(Repository).where(Repository.itwin_id == itwin.id)
    if q.class_:
        stmt = stmt.where(Repository.class_ == q.class_)
    if q.sub_class:
        stmt = stmt.where(Repository.sub_class == q.sub_class)
    # The default repository has position 0: it always comes first.
    return list(session.scalars(stmt.order_by(Repository.position, Repository.created_at, Repository.id)))


def get_repository(session: Session, user_id: str, itwin_id: str, repository_id: str) -> Repository:
    itwin = _itwin(session, itwin_id, user_id, access.ITWINS_READ)
    return _repository(session, itwin, repository_id)


def _check_class(body: RepositoryCreate) -> tuple[str, str | None]:
    """The canonical class and subClass of a new repository, or 422 naming what is wrong."""
    class_ = canonical(body.class_, tuple(SUBCLASSES_OF))
    if class_ is None:
        detail = invalid_value("class", f"Provided 'class' value '{_clip(body.class_)}' is not valid.")
    elif class_ in AUTO_CLASSES:
        detail = invalid_value("class", f"Repositories of class '{class_}' are created by the service.")
    else:
        subs = MANUAL_CLASSES[class_]
        if not subs:
            if body.subClass is None:
                return class_, None
            detail = invalid_value("subClass", f"Repositories of class '{class_}' have no subClass.")
        elif body.subClass is None:
            detail = ErrorDetail(
                "MissingRequiredProperty", "Required property 'subClass' is missing.", "subClass"
            )
        else:
            sub_class = canonical(body.subClass, subs)
            if sub_class is not None:
                return class_, sub_class
            detail = invalid_value(
                "subClass", f"subClass '{_clip(body.subClass)}' does not belong to class '{class_}'."
            )
    raise InvalidRequest(CREATE_MESSAGE, code=INVALID, details=[detail])


def create_repository(session: Session, user_id: str, itwin_id: str, body: RepositoryCreate) -> Repository:
    itwin = _itwin(session, itwin_id, user_id, access.ITWINS_MODIFY, write=True)
    class_, sub_class = _check_class(body)
    if _uri_taken(session, itwin.id, body.uri, None):
        raise _exists(body.uri)
    last = session.scalar(select(func.max(Repository.position)).where(Repository.itwin_id == itwin.id))
    repo = Repository(
        id=new_id(),
        itwin_id=itwin.id,
        class_=class_,
        sub_class=sub_class,
        display_name=body.displayName or sub_class or class_,
        uri=body.uri,
        authentication=body.authentication.model_dump() if body.authentication else None,
        options=body.options.model_dump(exclude_none=True) if body.options else None,
        is_default=False,
        position=(last or 0) + 1,
    )
    session.add(repo)
    _flush_unique(session, _exists(body.uri))
    return repo


def _immutable(repo: Repository, body: RepositoryUpdate) -> list[ErrorDetail]:
    """Class, subClass and id may be echoed back unchanged, never changed."""
    current: dict[str, tuple[str, str | None, str | None]] = {
        "class": ("class_", body.class_, repo.class_),
        "subClass": ("subClass", body.subClass, repo.sub_class),
        "id": ("id", body.id, repo.id),
    }
    details = []
    for wire, (attr, sent, have) in current.items():
        if attr in body.model_fields_set and (sent or "").lower() != (have or "").lower():
            details.append(invalid_value(wire, f"Property '{wire}' cannot be changed."))
    return details


def update_repository(
    session: Session, user_id: str, itwin_id: str, repository_id: str, body: RepositoryUpdate
) -> Repository:
    itwin = _itwin(session, itwin_id, user_id, access.ITWINS_MODIFY, write=True)
    repo = _repository(session, itwin, repository_id)
    details = _immutable(repo, body)
    if repo.is_default:
        details.insert(0, invalid_value("id", "The default repository of an iTwin cannot be changed."))
    if details:
        raise InvalidRequest(UPDATE_MESSAGE, code=INVALID, details=details)
    sent = body.model_fields_set
    if body.uri is not None and body.uri != repo.uri:
        if _uri_taken(session, itwin.id, body.uri, repo.id):
            raise _exists(body.uri)
        repo.uri = body.uri
    if body.displayName is not None:
        repo.display_name = body.displayName
    # Both objects are replaced whole (never merged); null removes them.
    if "authentication" in sent:
        repo.authentication = body.authentication.model_dump() if body.authentication else None
    if "options" in sent:
        repo.options = body.options.model_dump(exclude_none=True) if body.options else None
    _flush_unique(session, _exists(repo.uri))
    return repo


def delete_repository(session: Session, user_id: str, itwin_id: str, repository_id: str) -> None:
    itwin = _itwin(session, itwin_id, user_id, access.ITWINS_MODIFY, write=True)
    repo = _repository(session, itwin, repository_id)
    if repo.is_default:
        raise InvalidRequest(
            DELETE_MESSAGE,
            code=INVALID,
            details=[invalid_value("id", "Only manually added repositories can be deleted.")],
        )
    session.execute(delete(RepositoryResource).where(RepositoryResource.repository_id == repo.id))
    session.delete(repo)
    session.flush()


# ---------------------------------------------------------------------------------------- resources


def list_resources(
    session: Session, user_id: str, itwin_id: str, repository_id: str, q: ResourceQuery
) -> tuple[Repository, Page[RepositoryResource]]:
    """One page of a repository's resources."""
    itwin = _itwin(session, itwin_id, user_id, access.ITWINS_READ)
    repo = _repository(session, itwin, repository_id)
    stmt = select(RepositoryResource).where(RepositoryResource.repository_id == repo.id)
    if q.search:
        stmt = stmt.where(like_contains(RepositoryResource.display_name, q.search))
    stmt = stmt.order_by(RepositoryResource.created_at, RepositoryResource.id)
    return repo, fetch_page(session, stmt, q.paging)


def get_resource(
    session: Session, user_id: str, itwin_id: str, repository_id: str, resource_id: str
) -> tuple[Repository, RepositoryResource]:
    itwin = _itwin(session, itwin_id, user_id, access.ITWINS_READ)
    repo = _repository(session, itwin, repository_id)
    resource = _resource_of(session, repo, resource_id)
    if resource is None:
        raise RepositoryResourceNotFound()
    return repo, resource


def create_resource(
    session: Session, user_id: str, itwin_id: str, repository_id: str, body: ResourceCreate
) -> tuple[Repository, RepositoryResource]:
    itwin = _itwin(session, itwin_id, user_id, access.ITWINS_MODIFY, write=True)
    repo = _repository(session, itwin, repository_id)
    if repo.is_default:
        # The default repository's resources are the iTwin's iModels, not entries a client adds.
        raise InvalidRequest(
            RESOURCE_CREATE_MESSAGE,
            code=INVALID,
            details=[
                invalid_value("repositoryId", "Resources can only be added to manually added repositories.")
            ],
        )
    exists = RepositoryResourceExists(
        details=[
            invalid_value(
                "id", f"A resource with id '{_clip(body.id, 256)}' already exists in the repository."
            )
        ]
    )
    if session.get(RepositoryResource, (repo.id, body.id)) is not None:
        raise exists
    resource = RepositoryResource(
        repository_id=repo.id, id=body.id, display_name=body.displayName, properties=body.properties
    )
    session.add(resource)
    _flush_unique(session, exists)
    return repo, resource


def delete_resource(
    session: Session, user_id: str, itwin_id: str, repository_id: str, resource_id: str
) -> None:
    itwin = _itwin(session, itwin_id, user_id, access.ITWINS_MODIFY, write=True)
    repo = _repository_of(session, itwin, repository_id)
    # An unknown repository reads as an unknown resource here (what the official client expects).
    resource = _resource_of(session, repo, resource_id)
    if resource is None:
        raise RepositoryResourceNotFound()
    session.delete(resource)
    session.flush()


def resource_graphics(
    session: Session, user_id: str, itwin_id: str, repository_id: str, resource_id: str
) -> Repository | None:
    """The repository whose graphics the resource shows; ``None`` (no graphics) when either is unknown."""
    itwin = _itwin(session, itwin_id, user_id, access.ITWINS_READ)
    repo = _repository_of(session, itwin, repository_id)
    if _resource_of(session, repo, resource_id) is None:
        return None
    return repo


# --------------------------------------------------------------------------------- global repositories


@dataclass(frozen=True)
class GlobalRepository:
    id: str
    class_: str
    display_name: str


# This server curates no external content yet: the Cesium repository exists, with no resources.
GLOBAL_REPOSITORIES: tuple[GlobalRepository, ...] = (
    GlobalRepository(id="cesium", class_="Cesium", display_name="Cesium curated content"),
)


def global_repositories(params: Mapping[str, str]) -> list[GlobalRepository]:
    wanted_class = (params.get("class") or "").lower()
    wanted_sub = params.get("subClass") or ""
    if wanted_sub:
        return []  # no global repository has a subClass
    return [g for g in GLOBAL_REPOSITORIES if not wanted_class or g.class_.lower() == wanted_class]


def global_repository(repository_id: str) -> GlobalRepository:
    for g in GLOBAL_REPOSITORIES:
        if g.id == repository_id.lower():
            return g
    raise RepositoryNotFound()


# ---------------------------------------------------------------------------------------- wire shape


def render_uri(uri: str, base: str) -> str:
    return base + uri[len(LOCAL_URI_PREFIX) :] if uri.startswith(LOCAL_URI_PREFIX) else uri


def resources_uri(base: str, repo: Repository) -> str:
    return f"{base}/itwins/{repo.itwin_id}/repositories/{repo.id}/resources"


def repository_to_wire(repo: Repository, base: str) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": repo.id,
        "class": repo.class_,
        "subClass": repo.sub_class,
        "displayName": repo.display_name,
        "uri": render_uri(repo.uri, base),
    }
    if repo.authentication is not None:
        out["authentication"] = repo.authentication
    if repo.options is not None:
        out["options"] = repo.options
    out["capabilities"] = {"resources": {"uri": resources_uri(base, repo)}}
    return out


def graphics_type(repo: Repository) -> str | None:
    """What a client draws from the repository's resources; ``None`` when nothing."""
    if repo.class_ != "GeographicInformationSystem":
        return None
    return "OAPIF+GEOJSON" if repo.sub_class == "OgcApiFeatures" else "IMAGERY"


def resource_to_wire(
    repo: Repository, resource: RepositoryResource, base: str, *, mode: Literal["minimal", "representation"]
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": resource.id,
        "class": repo.class_,
        "subClass": repo.sub_class,
        "displayName": resource.display_name,
    }
    kind = graphics_type(repo)
    if kind is not None:
        out["type"] = kind
        graphics = f"{resources_uri(base, repo)}/{quote(resource.id, safe='')}/graphics"
        out["capabilities"] = {"graphics": {"uri": graphics}}
    if mode == "representation":
        out["properties"] = resource.properties or {}
    return out


def graphics_to_wire(repo: Repository | None, base: str) -> list[dict[str, Any]]:
    kind = graphics_type(repo) if repo is not None else None
    if repo is None or kind is None:
        return []
    graphic: dict[str, Any] = {"type": kind, "uri": render_uri(repo.uri, base)}
    if repo.authentication is not None:
        graphic["authentication"] = repo.authentication
    return [graphic]


def global_repository_uri(base: str, g: GlobalRepository) -> str:
    return f"{base}/itwins/repositories/{g.id}"


def global_repository_to_wire(g: GlobalRepository, base: str) -> dict[str, Any]:
    uri = global_repository_uri(base, g)
    return {
        "id": g.id,
        "class": g.class_,
        "displayName": g.display_name,
        "uri": uri,
        "capabilities": {"resources": {"uri": f"{uri}/resources"}},
    }
