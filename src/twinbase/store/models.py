"""Metadata tables. The same definitions run on SQLite (embedded) and PostgreSQL (scale-out).

Ids are UUID strings (36 chars) except user ids, which are the token's ``sub`` claim. Timestamps are
stored as UTC and always come back timezone-aware. Migrations in ``store/migrations`` must produce
exactly this schema (``tests/test_migrations.py`` checks it).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    event,
    false,
    func,
    select,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def new_id() -> str:
    return str(uuid.uuid4())


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Stores naive UTC, returns aware UTC (SQLite has no time zones)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class User(Base):
    """A person or service application, recorded the first time its token is seen."""

    __tablename__ = "users"
    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    display_name: Mapped[str] = mapped_column(String(255), default="")
    given_name: Mapped[str] = mapped_column(String(255), default="")
    surname: Mapped[str] = mapped_column(String(255), default="")
    email: Mapped[str | None] = mapped_column(String(255), unique=True)
    organization: Mapped[str] = mapped_column(String(255), default="")
    primary_account_id: Mapped[str | None] = mapped_column(String(36))
    is_service: Mapped[bool] = mapped_column(Boolean, default=False)
    # Members invited by email before they ever signed in; re-keyed to the real `sub` on first sight.
    is_invited: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ServiceApp(Base):
    """A client registered for the client_credentials grant (`twinbase app register`)."""

    __tablename__ = "service_apps"
    client_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    secret_hash: Mapped[str] = mapped_column(String(255))
    display_name: Mapped[str] = mapped_column(String(255))
    scopes: Mapped[str] = mapped_column(Text, default="itwin-platform")
    # Sign-in (authorization code) clients: the exact redirect URIs allowed. A public client (a
    # browser app) has no usable secret and must use PKCE.
    redirect_uris: Mapped[list[str] | None] = mapped_column(JSON)
    is_public: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class LocalAccount(Base):
    """A person who signs in to the builtin issuer with an email and a password (scrypt hash)."""

    __tablename__ = "local_accounts"
    email: Mapped[str] = mapped_column(String(255), primary_key=True)
    subject: Mapped[str] = mapped_column(String(255), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    given_name: Mapped[str] = mapped_column(String(255), default="")
    surname: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class AuthorizationCode(Base):
    """A one-time authorization code (stored as its SHA-256), valid for a minute."""

    __tablename__ = "authorization_codes"
    code_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_id: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(255))
    redirect_uri: Mapped[str] = mapped_column(String(2048))
    scope: Mapped[str] = mapped_column(Text)
    nonce: Mapped[str | None] = mapped_column(String(512))
    code_challenge: Mapped[str | None] = mapped_column(String(128))
    code_challenge_method: Mapped[str | None] = mapped_column(String(8))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ITwin(Base):
    __tablename__ = "itwins"
    __table_args__ = (
        # `number` is unique inside one account (the account is the tenant).
        UniqueConstraint("itwin_account_id", "number", name="uq_itwins_account_number"),
        Index("ix_itwins_parent", "parent_id"),
        # Equality filters on these ($filter compares case-insensitively) go straight to their rows,
        # then to the membership.
        Index("ix_itwins_number_lower", func.lower(text("number"))),
        Index("ix_itwins_display_name_lower", func.lower(text("display_name"))),
        # $orderby=displayName walks this.
        Index("ix_itwins_display_name", "display_name"),
    )
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    class_: Mapped[str] = mapped_column("class", String(32))
    sub_class: Mapped[str] = mapped_column(String(32))
    type: Mapped[str | None] = mapped_column(String(255))
    number: Mapped[str] = mapped_column(String(255))
    display_name: Mapped[str] = mapped_column(String(255))
    geographic_location: Mapped[str | None] = mapped_column(String(255))
    latitude: Mapped[float | None] = mapped_column(Float)
    longitude: Mapped[float | None] = mapped_column(Float)
    iana_time_zone: Mapped[str | None] = mapped_column(String(64))
    data_center_location: Mapped[str] = mapped_column(String(64), default="East US")
    status: Mapped[str] = mapped_column(String(16), default="Active")
    parent_id: Mapped[str | None] = mapped_column(String(36))
    itwin_account_id: Mapped[str | None] = mapped_column(String(36))
    image_id: Mapped[str | None] = mapped_column(String(36))
    image_content_type: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    created_by: Mapped[str] = mapped_column(String(255))
    modified_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    modified_by: Mapped[str] = mapped_column(String(255))


class Role(Base):
    __tablename__ = "roles"
    __table_args__ = (UniqueConstraint("itwin_id", "display_name", name="uq_roles_itwin_name"),)
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    itwin_id: Mapped[str] = mapped_column(String(36), ForeignKey("itwins.id", ondelete="CASCADE"))
    display_name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str] = mapped_column(String(1024), default="")
    permissions: Mapped[list[str]] = mapped_column(JSON, default=list)


class Member(Base):
    """A user's membership in an iTwin: owner, or holder of roles (member_roles)."""

    __tablename__ = "members"
    # Every request asks "which iTwins is this user a member of": the user comes first here. The
    # second index walks a user's iTwins newest first (the iTwins list's order) from the top or from
    # any row (the continuation token's), whatever the number of iTwins.
    __table_args__ = (
        Index("ix_members_user_itwin", "user_id", "itwin_id"),
        Index("ix_members_user_created", "user_id", "itwin_created_at", "itwin_id"),
        # An iTwin's members in the order they joined (the members lists).
        Index("ix_members_itwin_created", "itwin_id", "created_at", "user_id"),
    )
    itwin_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("itwins.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[str] = mapped_column(
        String(255), ForeignKey("users.id", ondelete="CASCADE", onupdate="CASCADE"), primary_key=True
    )
    is_owner: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # The iTwin's createdDateTime (which never changes), copied here for ix_members_user_created.
    itwin_created_at: Mapped[datetime] = mapped_column(UTCDateTime())


@event.listens_for(Member, "before_insert")
def _member_sort_key(_mapper: Any, connection: Any, target: Member) -> None:
    """A membership made without its iTwin's createdDateTime gets it here (the list index needs it)."""
    if target.itwin_created_at is None:
        target.itwin_created_at = connection.scalar(
            select(ITwin.created_at).where(ITwin.id == target.itwin_id)
        )


class MemberRole(Base):
    __tablename__ = "member_roles"
    itwin_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_id: Mapped[str] = mapped_column(
        String(255), ForeignKey("users.id", ondelete="CASCADE", onupdate="CASCADE"), primary_key=True
    )
    role_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("roles.id", ondelete="CASCADE"), primary_key=True
    )


class Repository(Base):
    __tablename__ = "repositories"
    __table_args__ = (UniqueConstraint("itwin_id", "uri", name="uq_repositories_itwin_uri"),)
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    itwin_id: Mapped[str] = mapped_column(String(36), ForeignKey("itwins.id", ondelete="CASCADE"), index=True)
    class_: Mapped[str] = mapped_column("class", String(64))
    sub_class: Mapped[str | None] = mapped_column(String(64))
    display_name: Mapped[str | None] = mapped_column(String(255))
    uri: Mapped[str] = mapped_column(String(2048))
    authentication: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    options: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    position: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class RepositoryResource(Base):
    __tablename__ = "repository_resources"
    repository_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("repositories.id", ondelete="CASCADE"), primary_key=True
    )
    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    display_name: Mapped[str | None] = mapped_column(String(255))
    properties: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Favorite(Base):
    __tablename__ = "favorites"
    # A user's favorites newest first, from the top or from a continuation token's row.
    __table_args__ = (Index("ix_favorites_user_created", "user_id", "created_at", "itwin_id"),)
    user_id: Mapped[str] = mapped_column(
        String(255), ForeignKey("users.id", ondelete="CASCADE", onupdate="CASCADE"), primary_key=True
    )
    itwin_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("itwins.id", ondelete="CASCADE"), primary_key=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Recent(Base):
    __tablename__ = "recents"
    user_id: Mapped[str] = mapped_column(
        String(255), ForeignKey("users.id", ondelete="CASCADE", onupdate="CASCADE"), primary_key=True
    )
    itwin_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("itwins.id", ondelete="CASCADE"), primary_key=True
    )
    accessed_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ITwinExport(Base):
    """An iTwins export request; the work runs as a durable job (``jobs`` table)."""

    __tablename__ = "itwin_exports"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(String(255), index=True)
    client_id: Mapped[str] = mapped_column(String(255), default="")
    request: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default="Queued")
    output_key: Mapped[str | None] = mapped_column(String(512))
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Job(Base):
    """A durable background job. Claimed by one worker at a time; a stalled claim is recovered."""

    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_status_run_after", "status", "run_after"),)
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    kind: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # queued -> running -> succeeded | failed | cancelled; a stalled running job goes back to
    # queued (counting as an attempt) or ends failed once its attempts are used.
    status: Mapped[str] = mapped_column(String(16), default="queued")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    run_after: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    locked_by: Mapped[str | None] = mapped_column(String(255))
    # Fencing: a fresh random token per claim; heartbeats, progress and finish must present it.
    claim_token: Mapped[str | None] = mapped_column(String(32))
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    progress: Mapped[float | None] = mapped_column(Float)
    progress_message: Mapped[str | None] = mapped_column(String(512))
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


# ------------------------------------------------------------------------------------ iModels (v2)


class IModel(Base):
    """An iModel: a baseline file plus a strictly linear timeline of changesets.

    ``tip_index``/``tip_changeset_id`` name the newest completed changeset (0/"" = baseline);
    completing a changeset moves the tip with a compare-and-set, so two pushes on one parent
    cannot both win.
    """

    __tablename__ = "imodels"
    __table_args__ = (
        UniqueConstraint("itwin_id", "name", name="uq_imodels_itwin_name"),
        # The iModels list's default order (newest first), walked by keyset.
        Index("ix_imodels_itwin_created", "itwin_id", "created_at", "id"),
    )
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    itwin_id: Mapped[str] = mapped_column(String(36), ForeignKey("itwins.id"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(String(255))
    # notInitialized until its baseline exists, then initialized.
    state: Mapped[str] = mapped_column(String(32), default="notInitialized")
    # The create operation: successful | scheduled | waitingForFile | failed.
    create_state: Mapped[str] = mapped_column(String(32), default="successful")
    creation_mode: Mapped[str | None] = mapped_column(String(32))
    cloned_from: Mapped[str | None] = mapped_column(String(36))
    forked_from: Mapped[str | None] = mapped_column(String(36))
    # For a clone, fork or template copy: the source changeset the copy goes up to ("" / 0 = baseline).
    source_changeset_id: Mapped[str | None] = mapped_column(String(64))
    source_changeset_index: Mapped[int | None] = mapped_column(Integer)
    extent: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    containers_enabled: Mapped[int] = mapped_column(Integer, default=0)
    geographic_coordinate_system: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    data_center_location: Mapped[str] = mapped_column(String(64), default="East US")
    tip_index: Mapped[int] = mapped_column(Integer, default=0)
    tip_changeset_id: Mapped[str] = mapped_column(String(64), default="")
    next_briefcase_id: Mapped[int] = mapped_column(Integer, default=2)
    thumbnail_content_type: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    created_by: Mapped[str] = mapped_column(String(255))
    last_changeset_push_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class BaselineFile(Base):
    __tablename__ = "baseline_files"
    imodel_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("imodels.id", ondelete="CASCADE"), primary_key=True
    )
    id: Mapped[str] = mapped_column(String(36), default=new_id)
    declared_size: Mapped[int] = mapped_column(BigInteger)
    file_size: Mapped[int] = mapped_column(BigInteger, default=0)
    # waitingForFile | initializationScheduled | initialized | initializationFailed | fileIsBriefcase
    state: Mapped[str] = mapped_column(String(32), default="waitingForFile")
    blob_key: Mapped[str] = mapped_column(String(512))
    # SHA-256 (hex) of the completed bytes; NULL while waiting for the file.
    content_sha256: Mapped[str | None] = mapped_column(String(64))
    created_by: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Changeset(Base):
    __tablename__ = "changesets"
    __table_args__ = (
        UniqueConstraint("imodel_id", "index", name="uq_changesets_imodel_index"),
        Index("ix_changesets_imodel_parent", "imodel_id", "parent_id"),
    )
    imodel_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("imodels.id", ondelete="CASCADE"), primary_key=True
    )
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    # Assigned when the file is complete; NULL while waitingForFile.
    index: Mapped[int | None] = mapped_column(Integer)
    parent_id: Mapped[str] = mapped_column(String(64), default="")
    description: Mapped[str | None] = mapped_column(String(255))
    briefcase_id: Mapped[int] = mapped_column(Integer)
    containing_changes: Mapped[int] = mapped_column(Integer, default=0)
    file_size: Mapped[int] = mapped_column(BigInteger)
    # waitingForFile | fileUploaded
    state: Mapped[str] = mapped_column(String(32), default="waitingForFile")
    creator_id: Mapped[str] = mapped_column(String(255))
    application_id: Mapped[str | None] = mapped_column(String(255))
    application_name: Mapped[str | None] = mapped_column(String(255))
    synchronization_info: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    group_id: Mapped[str | None] = mapped_column(String(36))
    blob_key: Mapped[str] = mapped_column(String(512))
    # SHA-256 (hex) of the completed bytes; NULL while waiting for the file.
    content_sha256: Mapped[str | None] = mapped_column(String(64))
    # Rows the file changes per table, {"table": [inserted, updated, deleted]}, read at completion.
    table_changes: Mapped[dict[str, list[int]] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    pushed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class ChangesetElement(Base):
    """One element a completed changeset inserted, updated or deleted (its change summary, row by row).

    Ids are stored as the .bim stores them, signed 64-bit integers. ``model_id`` comes from the
    changeset's own row for inserts and deletes; for an update, from the element's earlier insert in
    this timeline, else from the checkpoint the file engine materializes (NULL until then).
    """

    __tablename__ = "changeset_elements"
    __table_args__ = (Index("ix_changeset_elements_element", "imodel_id", "element_id"),)
    imodel_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("imodels.id", ondelete="CASCADE"), primary_key=True
    )
    changeset_index: Mapped[int] = mapped_column(Integer, primary_key=True)
    element_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    op: Mapped[str] = mapped_column(String(1))  # "i", "u" or "d"
    model_id: Mapped[int | None] = mapped_column(BigInteger)


class ChangesetExtendedData(Base):
    __tablename__ = "changeset_extended_data"
    imodel_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("imodels.id", ondelete="CASCADE"), primary_key=True
    )
    changeset_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    changeset_index: Mapped[int] = mapped_column(Integer)
    data: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ChangesetGroup(Base):
    __tablename__ = "changeset_groups"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    imodel_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("imodels.id", ondelete="CASCADE"), index=True
    )
    description: Mapped[str | None] = mapped_column(String(255))
    # inProgress | completed | timedOut | forciblyClosed
    state: Mapped[str] = mapped_column(String(32), default="inProgress")
    creator_id: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class NamedVersion(Base):
    __tablename__ = "named_versions"
    __table_args__ = (
        UniqueConstraint("imodel_id", "name", name="uq_named_versions_imodel_name"),
        UniqueConstraint("imodel_id", "changeset_index", name="uq_named_versions_imodel_changeset"),
    )
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    imodel_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("imodels.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(String(255))
    changeset_id: Mapped[str | None] = mapped_column(String(64))
    changeset_index: Mapped[int] = mapped_column(Integer, default=0)
    # visible | hidden
    state: Mapped[str] = mapped_column(String(16), default="visible")
    creator_id: Mapped[str] = mapped_column(String(255))
    application_id: Mapped[str | None] = mapped_column(String(255))
    application_name: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Checkpoint(Base):
    """A whole .bim at a changeset. Index 0 is the baseline; later ones come from the file engine."""

    __tablename__ = "checkpoints"
    imodel_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("imodels.id", ondelete="CASCADE"), primary_key=True
    )
    changeset_index: Mapped[int] = mapped_column(Integer, primary_key=True)
    changeset_id: Mapped[str] = mapped_column(String(64), default="")
    # successful | scheduled | failed
    state: Mapped[str] = mapped_column(String(32), default="successful")
    blob_key: Mapped[str] = mapped_column(String(512))
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # Why a failed checkpoint failed, as the API reports it.
    error: Mapped[str | None] = mapped_column(Text)
    # Why it is kept whatever the disk budget: "baseline", "namedVersion", "interval"; NULL = evictable.
    pinned: Mapped[str | None] = mapped_column(String(16))
    # Last time it was served or replayed from: the least recently used unpinned ones go first.
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Its CloudSqlite block ids (16 bytes each, in file order; ``domain.containers``): the database
    # the iModel's container manifest lists for it. NULL: no container (made before containers were).
    blocks: Mapped[bytes | None] = mapped_column(LargeBinary)


class Briefcase(Base):
    __tablename__ = "briefcases"
    imodel_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("imodels.id", ondelete="CASCADE"), primary_key=True
    )
    briefcase_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    owner_id: Mapped[str] = mapped_column(String(255), index=True)
    device_name: Mapped[str | None] = mapped_column(String(255))
    application_id: Mapped[str | None] = mapped_column(String(255))
    application_name: Mapped[str | None] = mapped_column(String(255))
    file_size: Mapped[int] = mapped_column(BigInteger, default=0)
    acquired_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Lock(Base):
    """One briefcase's lock on one object; many shared holders or exactly one exclusive holder."""

    __tablename__ = "locks"
    __table_args__ = (Index("ix_locks_imodel_briefcase", "imodel_id", "briefcase_id"),)
    imodel_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("imodels.id", ondelete="CASCADE"), primary_key=True
    )
    object_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    briefcase_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # shared | exclusive
    lock_level: Mapped[str] = mapped_column(String(16))
    # The newest changeset index the holder named when taking the lock: an older requester of the
    # same object must pull first (NewerChangesExist).
    changeset_index: Mapped[int | None] = mapped_column(Integer)
    acquired_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ReleasedLock(Base):
    """The changeset index at which an exclusive lock on an object was last released (NewerChangesExist)."""

    __tablename__ = "released_locks"
    imodel_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("imodels.id", ondelete="CASCADE"), primary_key=True
    )
    object_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    changeset_index: Mapped[int] = mapped_column(Integer)
    lock_level: Mapped[str] = mapped_column(String(16), default="exclusive")


class IModelFavorite(Base):
    __tablename__ = "imodel_favorites"
    # A user's favorite iModels newest first, from the top or from a continuation token's row.
    __table_args__ = (Index("ix_imodel_favorites_user_created", "user_id", "created_at", "imodel_id"),)
    user_id: Mapped[str] = mapped_column(
        String(255), ForeignKey("users.id", ondelete="CASCADE", onupdate="CASCADE"), primary_key=True
    )
    imodel_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("imodels.id", ondelete="CASCADE"), primary_key=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class IModelRecent(Base):
    __tablename__ = "imodel_recents"
    user_id: Mapped[str] = mapped_column(
        String(255), ForeignKey("users.id", ondelete="CASCADE", onupdate="CASCADE"), primary_key=True
    )
    imodel_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("imodels.id", ondelete="CASCADE"), primary_key=True
    )
    accessed_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class MeshExport(Base):
    """A Mesh Export: one iModel at one changeset as web tiles (3D Tiles, glTF, ...), made by a durable
    job into a bundle of files (``bundles/<bundle_id>/...``) that one prefix link serves.

    ``config_key`` is the SHA-256 of the canonical tiler configuration (``export.config.config_key``):
    one export per iModel, changeset, type and configuration, so equal requests share it.
    """

    __tablename__ = "mesh_exports"
    __table_args__ = (
        UniqueConstraint(
            "imodel_id", "changeset_id", "export_type", "config_key", name="uq_mesh_exports_request"
        ),
        Index("ix_mesh_exports_itwin_modified", "itwin_id", "last_modified"),
    )
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    imodel_id: Mapped[str] = mapped_column(String(36), ForeignKey("imodels.id", ondelete="CASCADE"))
    itwin_id: Mapped[str] = mapped_column(String(36))
    changeset_id: Mapped[str] = mapped_column(String(64), default="")
    changeset_index: Mapped[int] = mapped_column(Integer, default=0)
    # Canonical upper case: 3DTILES, CESIUM, GLTF, 3TZ, IMODEL.
    export_type: Mapped[str] = mapped_column(String(16))
    # IMODEL: the iMdl major version its tiles stamp (the list's tileVersion filter); NULL otherwise.
    tile_major: Mapped[int | None] = mapped_column(Integer)
    # The canonical tilerConfig items ([{key, value}]); NULL when none were given.
    tiler_config: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    config_key: Mapped[str] = mapped_column(String(64))
    display_name: Mapped[str] = mapped_column(String(255))
    # NotStarted -> InProgress -> Complete | Invalid
    status: Mapped[str] = mapped_column(String(16), default="NotStarted")
    error: Mapped[str | None] = mapped_column(Text)
    progress: Mapped[float | None] = mapped_column(Float)
    stats: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # The bundle the current (or last) run writes; served only once Complete. An Invalid export keeps
    # the id of its deleted files (a re-run or a delete removes that prefix again, harmlessly).
    bundle_id: Mapped[str | None] = mapped_column(String(32))
    created_by: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_modified: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ExportConnection(Base):
    """An Export API connection (seed 004, reference §C): a re-runnable link to one iModel.

    No foreign key to the iModel: as on the platform, a connection outlives its iModel (its runs then
    end with an error a user can act on). ``authentication_type``: ``User`` runs as the user who
    starts a run; ``Service`` as twinbase's export service identity (``domain.export_connections``)."""

    __tablename__ = "export_connections"
    __table_args__ = (Index("ix_export_connections_imodel", "imodel_id", "created_at"),)
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    itwin_id: Mapped[str] = mapped_column(String(36))
    imodel_id: Mapped[str] = mapped_column(String(36))
    display_name: Mapped[str] = mapped_column(String(255))
    authentication_type: Mapped[str] = mapped_column(String(16))
    created_by: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_run_id: Mapped[str | None] = mapped_column(String(36))


class ExportRun(Base):
    """One run of a connection: one job with one task on the wire, one durable ``export_run`` job here.

    ``active_slot`` is 1 while the run is active and NULL once it ended: the unique constraint makes
    a second active run of the connection impossible, whatever the database and however the starts
    race (the loser's insert fails: 409). ``options_key`` hashes what the output depends on (type,
    version, model selection) for reuse by a later run at the same changeset."""

    __tablename__ = "export_runs"
    __table_args__ = (
        UniqueConstraint("connection_id", "active_slot", name="uq_export_runs_active"),
        Index("ix_export_runs_connection", "connection_id", "created_at"),
        Index("ix_export_runs_reuse", "imodel_id", "changeset_id", "options_key"),
    )
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    connection_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("export_connections.id", ondelete="CASCADE")
    )
    itwin_id: Mapped[str] = mapped_column(String(36))
    imodel_id: Mapped[str] = mapped_column(String(36))
    started_by: Mapped[str] = mapped_column(String(255))
    run_as: Mapped[str] = mapped_column(String(255))
    export_type: Mapped[str] = mapped_column(String(16))
    ifc_version: Mapped[str] = mapped_column(String(32))
    changeset_id: Mapped[str] = mapped_column(String(64), default="")
    changeset_index: Mapped[int] = mapped_column(Integer, default=0)
    model_ids: Mapped[list[str] | None] = mapped_column(JSON)
    options_key: Mapped[str] = mapped_column(String(64))
    active_slot: Mapped[int | None] = mapped_column(Integer)
    # The platform's values: Queued -> Executing -> Finalizing -> Completed; result Undetermined until then.
    state: Mapped[str] = mapped_column(String(32), default="Queued")
    result: Mapped[str] = mapped_column(String(32), default="Undetermined")
    job_id: Mapped[str] = mapped_column(String(36), default=new_id)
    task_id: Mapped[str] = mapped_column(String(36), default=new_id)
    retry_attempts: Mapped[int] = mapped_column(Integer, default=0)
    progress: Mapped[float | None] = mapped_column(Float)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    stats: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    output_key: Mapped[str | None] = mapped_column(String(512))
    output_name: Mapped[str | None] = mapped_column(String(255))
    output_size: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
