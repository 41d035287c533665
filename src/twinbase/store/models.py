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
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
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
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ITwin(Base):
    __tablename__ = "itwins"
    __table_args__ = (
        # `number` is unique inside one account (the account is the tenant).
        UniqueConstraint("itwin_account_id", "number", name="uq_itwins_account_number"),
        Index("ix_itwins_parent", "parent_id"),
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
    itwin_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("itwins.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[str] = mapped_column(
        String(255), ForeignKey("users.id", ondelete="CASCADE", onupdate="CASCADE"), primary_key=True
    )
    is_owner: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


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
    # queued -> running -> succeeded | failed; running with an old heartbeat goes back to queued.
    status: Mapped[str] = mapped_column(String(16), default="queued")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    run_after: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    locked_by: Mapped[str | None] = mapped_column(String(255))
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
