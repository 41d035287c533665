"""iTwins: create, read, update, delete, query; accounts; favorites and recents.

Rules (reference part B): class/subClass pairs, unique ``number`` per account (409 ``iTwinExists``),
Inactive hidden unless asked for, Account iTwins as the root of every hierarchy (one per user, made on
first sight), the creator as owner. Functions take the caller's session and never commit.
"""

from __future__ import annotations

import dataclasses
import zoneinfo
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, cast

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    StrictStr,
    field_validator,
)
from sqlalchemy import (
    Connection,
    Select,
    bindparam,
    delete,
    exists,
    func,
    or_,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from twinbase.domain import access
from twinbase.domain.listing import (
    BadOrderBy,
    Page,
    Paging,
    fetch_entities_by_key,
    fetch_keyset_page,
    like_contains,
    order_by_param,
    order_tag,
    page_of,
    parse_order_by,
    parse_paging,
    single_order,
)
from twinbase.domain.odata import FilterSyntaxError, UnknownProperty, compile_filter
from twinbase.errors import ErrorDetail, InvalidRequest, ITwinExists, ITwinNotFound, invalid_value
from twinbase.identity.tokens import Principal
from twinbase.store.models import (
    Favorite,
    IModel,
    ITwin,
    Member,
    MemberRole,
    Recent,
    Repository,
    RepositoryResource,
    Role,
    User,
    UTCDateTime,
    new_id,
    utcnow,
)

INVALID = "InvalidiTwinsRequest"

CLASSES = ("Account", "Thing", "Endeavor")
SUBCLASSES = ("Account", "Asset", "Project", "Portfolio", "Program", "WorkPackage")
CLASS_OF_SUBCLASS = {
    "Account": "Account",
    "Asset": "Thing",
    "Project": "Endeavor",
    "WorkPackage": "Endeavor",
    "Program": "Endeavor",
    "Portfolio": "Endeavor",
}
STATUSES = ("Active", "Inactive", "Trial")
DATA_CENTERS = (
    "East US",
    "North Europe",
    "West Europe",
    "Southeast Asia",
    "Australia East",
    "UK South",
    "Canada Central",
    "Central India",
    "Japan East",
)
MAX_RECENTS = 25


def _canonical(value: str, allowed: Sequence[str], target: str) -> str:
    for candidate in allowed:
        if candidate.lower() == value.lower():
            return candidate
    raise ValueError(f"'{value}' is not one of {', '.join(allowed)}")


class ITwinFields(BaseModel):
    """Fields a client may set on create or update. Strict types: a number is not a string."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    type: StrictStr | None = Field(default=None, max_length=255)
    number: StrictStr | None = Field(default=None, min_length=1, max_length=255)
    displayName: StrictStr | None = Field(default=None, min_length=1, max_length=255)
    geographicLocation: StrictStr | None = Field(default=None, max_length=255)
    latitude: StrictFloat | StrictInt | None = Field(default=None, ge=-90, le=90)
    longitude: StrictFloat | StrictInt | None = Field(default=None, ge=-180, le=180)
    ianaTimeZone: StrictStr | None = Field(default=None, max_length=64)
    dataCenterLocation: StrictStr | None = None
    status: StrictStr | None = None

    @field_validator("ianaTimeZone")
    @classmethod
    def _tz(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"'{value}' is not an IANA time zone") from exc
        return value

    @field_validator("dataCenterLocation")
    @classmethod
    def _dc(cls, value: str | None) -> str | None:
        return None if value is None else _canonical(value, DATA_CENTERS, "dataCenterLocation")

    @field_validator("status")
    @classmethod
    def _status(cls, value: str | None) -> str | None:
        return None if value is None else _canonical(value, STATUSES, "status")

    @field_validator("displayName", "number")
    @classmethod
    def _not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must not be blank")
        return value


class ITwinCreate(ITwinFields):
    class_: StrictStr = Field(alias="class")
    subClass: StrictStr
    displayName: StrictStr = Field(min_length=1, max_length=255)
    parentId: StrictStr | None = None

    @field_validator("class_")
    @classmethod
    def _class(cls, value: str) -> str:
        return _canonical(value, CLASSES, "class")

    @field_validator("subClass")
    @classmethod
    def _sub_class(cls, value: str) -> str:
        return _canonical(value, SUBCLASSES, "subClass")


class ITwinUpdate(ITwinFields):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


def _conflict_number(number: str) -> ITwinExists:
    return ITwinExists(
        "iTwin already exists.",
        details=[ErrorDetail("InvalidValue", f"An iTwin with number '{number}' already exists.", "number")],
    )


# ------------------------------------------------------------------------------------------- users


def ensure_user(session: Session, principal: Principal) -> User:
    """Record the caller on first sight, with a primary Account iTwin they own."""
    user = session.get(User, principal.user_id)
    if user is None:
        invited = (
            session.scalar(
                select(User).where(func.lower(User.email) == principal.email, User.is_invited.is_(True))
            )
            if principal.email
            else None
        )
        email_taken = invited is None and bool(
            principal.email
            and session.scalar(select(User.id).where(func.lower(User.email) == principal.email))
        )
        user = User(
            id=principal.user_id,
            display_name=principal.display_name,
            given_name=principal.given_name,
            surname=principal.surname,
            email=None,
            is_service=principal.is_service,
        )
        session.add(user)
        session.flush()
        if invited is not None:
            # A member added by email before first sign-in: take over the placeholder's memberships.
            for table in (Member, MemberRole):
                session.execute(
                    update(table).where(table.user_id == invited.id).values(user_id=principal.user_id)
                )
            session.delete(invited)
            session.flush()
        if principal.email and not email_taken:
            user.email = principal.email
            session.flush()
    else:
        changed = False
        for attr, value in (
            ("display_name", principal.display_name),
            ("given_name", principal.given_name),
            ("surname", principal.surname),
        ):
            if value and getattr(user, attr) != value:
                setattr(user, attr, value)
                changed = True
        if changed:
            session.flush()
    if user.primary_account_id is None:
        account = ITwin(
            id=new_id(),
            class_="Account",
            sub_class="Account",
            number=f"account-{principal.user_id}"[:255],
            display_name=f"{principal.display_name or principal.user_id}'s organization"[:255],
            created_by=principal.user_id,
            modified_by=principal.user_id,
        )
        account.itwin_account_id = account.id
        session.add(account)
        session.flush()
        _make_owner(session, account, principal.user_id)
        user.primary_account_id = account.id
        session.flush()
    return user


def _make_owner(session: Session, itwin: ITwin, user_id: str) -> None:
    if itwin.created_at is None:
        session.flush()  # the iTwin's createdDateTime is the membership's list order
    session.add(Member(itwin_id=itwin.id, user_id=user_id, is_owner=True, itwin_created_at=itwin.created_at))
    for name, (description, perms) in access.DEFAULT_ROLES.items():
        session.add(
            Role(itwin_id=itwin.id, display_name=name, description=description, permissions=list(perms))
        )
    session.flush()


# ------------------------------------------------------------------------------------------- CRUD


def read_visible(session: Session | Connection, itwin_id: str, user_id: str) -> tuple[Any, frozenset[str]]:
    """A read-only row of the iTwin (attributes as on ``ITwin``), for answering GETs quickly."""
    row, perms = access.visible_itwin_row(session, itwin_id, user_id)
    access.require(perms, access.ITWINS_READ)
    return row, perms


def get_visible(session: Session, itwin_id: str, user_id: str) -> tuple[ITwin, frozenset[str]]:
    itwin, perms = access.visible_itwin(session, itwin_id, user_id)
    access.require(perms, access.ITWINS_READ)
    return itwin, perms


def create(session: Session, principal: Principal, body: ITwinCreate) -> ITwin:
    user = ensure_user(session, principal)
    details: list[ErrorDetail] = []
    if body.class_ == "Account" or body.subClass == "Account":
        details.append(
            invalid_value("class", "Account iTwins are created by the service, not through the API.")
        )
    elif CLASS_OF_SUBCLASS[body.subClass] != body.class_:
        details.append(
            invalid_value("subClass", f"subClass '{body.subClass}' does not belong to class '{body.class_}'.")
        )
    if details:
        raise InvalidRequest("Cannot create iTwin.", code=INVALID, details=details)
    if body.parentId:
        if not access.is_uuid(body.parentId):
            raise InvalidRequest("Cannot create iTwin.", code=INVALID, details=[invalid_value("parentId")])
        parent, perms = access.visible_itwin(session, body.parentId, principal.user_id)
        access.require(perms, access.ITWINS_CREATE)
        account_id = parent.itwin_account_id or parent.id
        parent_id = parent.id
    else:
        assert user.primary_account_id is not None
        account_id = user.primary_account_id
        parent_id = account_id
    itwin_id = new_id()
    number = body.number or itwin_id
    now = utcnow()
    itwin = ITwin(
        id=itwin_id,
        class_=body.class_,
        sub_class=body.subClass,
        type=body.type,
        number=number,
        display_name=body.displayName,
        geographic_location=body.geographicLocation,
        latitude=body.latitude,
        longitude=body.longitude,
        iana_time_zone=body.ianaTimeZone,
        data_center_location=body.dataCenterLocation or "East US",
        status=body.status or "Active",
        parent_id=parent_id,
        itwin_account_id=account_id,
        created_at=now,
        created_by=principal.user_id,
        modified_at=now,
        modified_by=principal.user_id,
    )
    _check_number_free(session, account_id, number, None)
    session.add(itwin)
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError as exc:
        raise _conflict_number(number) from exc
    _make_owner(session, itwin, principal.user_id)
    session.add(
        Repository(
            id=itwin.id,
            itwin_id=itwin.id,
            class_="iModels",
            sub_class=None,
            display_name="iModels",
            uri=f"twinbase:/imodels?iTwinId={itwin.id}",
            is_default=True,
            position=0,
        )
    )
    session.flush()
    return itwin


def _check_number_free(session: Session, account_id: str | None, number: str, except_id: str | None) -> None:
    clash = session.scalar(
        select(ITwin.id).where(
            ITwin.itwin_account_id == account_id, ITwin.number == number, ITwin.id != except_id
        )
    )
    if clash:
        raise _conflict_number(number)


def update_itwin(session: Session, principal: Principal, itwin_id: str, body: ITwinUpdate) -> ITwin:
    itwin, perms = access.visible_itwin(session, itwin_id, principal.user_id, for_update=True)
    access.require(perms, access.ITWINS_MODIFY)
    extra = body.model_extra or {}
    details = [
        invalid_value(name, f"Property '{name}' cannot be changed.")
        for name in ("class", "subClass", "parentId", "iTwinAccountId", "id")
        if name in extra and extra[name] != _current(itwin, name)
    ]
    if itwin.class_ == "Account" and body.status not in (None, "Active"):
        details.append(invalid_value("status", "An Account iTwin is always Active."))
    if details:
        raise InvalidRequest("Cannot update iTwin.", code=INVALID, details=details)
    changes = body.model_dump(exclude_unset=True, exclude={"class_", "subClass", "parentId"})
    mapping = {
        "type": "type",
        "number": "number",
        "displayName": "display_name",
        "geographicLocation": "geographic_location",
        "latitude": "latitude",
        "longitude": "longitude",
        "ianaTimeZone": "iana_time_zone",
        "dataCenterLocation": "data_center_location",
        "status": "status",
    }
    if changes.get("number") is not None:
        _check_number_free(session, itwin.itwin_account_id, changes["number"], itwin.id)
    for wire, attr in mapping.items():
        if wire in changes:
            value = changes[wire]
            if value is None and wire in ("number", "displayName", "status", "dataCenterLocation"):
                raise InvalidRequest("Cannot update iTwin.", code=INVALID, details=[invalid_value(wire)])
            setattr(itwin, attr, value)
    itwin.modified_at = utcnow()
    itwin.modified_by = principal.user_id
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError as exc:
        raise _conflict_number(itwin.number) from exc
    return itwin


def _current(itwin: ITwin, name: str) -> Any:
    return {
        "class": itwin.class_,
        "subClass": itwin.sub_class,
        "parentId": itwin.parent_id,
        "iTwinAccountId": itwin.itwin_account_id,
        "id": itwin.id,
    }[name]


def delete_itwin(session: Session, principal: Principal, itwin_id: str) -> ITwin:
    itwin, perms = access.visible_itwin(session, itwin_id, principal.user_id, for_update=True)
    access.require(perms, access.ITWINS_DELETE)
    if itwin.class_ == "Account":
        raise InvalidRequest(
            "Cannot delete iTwin.",
            code=INVALID,
            details=[invalid_value("id", "An Account iTwin cannot be deleted.")],
        )
    if session.scalar(select(func.count()).select_from(ITwin).where(ITwin.parent_id == itwin.id)):
        raise InvalidRequest(
            "Cannot delete iTwin.",
            code=INVALID,
            details=[ErrorDetail("InvalidChange", "The iTwin has child iTwins; delete them first.", "id")],
        )
    if session.scalar(select(IModel.id).where(IModel.itwin_id == itwin.id).limit(1)) is not None:
        raise InvalidRequest(
            "Cannot delete iTwin.",
            code=INVALID,
            details=[ErrorDetail("InvalidChange", "The iTwin has iModels; delete them first.", "id")],
        )
    repo_ids = select(Repository.id).where(Repository.itwin_id == itwin.id).scalar_subquery()
    session.execute(delete(RepositoryResource).where(RepositoryResource.repository_id.in_(repo_ids)))
    for table in (Repository, Favorite, Recent, MemberRole, Member, Role):
        session.execute(delete(table).where(table.itwin_id == itwin.id))
    session.delete(itwin)
    session.flush()
    return itwin


def account_of(session: Session, principal: Principal, itwin_id: str) -> ITwin:
    itwin, _perms = get_visible(session, itwin_id, principal.user_id)
    account = session.get(ITwin, itwin.itwin_account_id or itwin.id)
    if account is None:
        raise ITwinNotFound()
    return account


def primary_account(session: Session, principal: Principal) -> ITwin:
    user = ensure_user(session, principal)
    account = session.get(ITwin, user.primary_account_id)
    if account is None:
        raise ITwinNotFound()
    return account


# ------------------------------------------------------------------------------------------ queries

QueryScope = Literal["memberOfItwin", "all", "OrganizationAdmin"]

FILTER_COLUMNS: dict[str, Any] = {
    "id": ITwin.id,
    "class": ITwin.class_,
    "subClass": ITwin.sub_class,
    "type": ITwin.type,
    "number": ITwin.number,
    "displayName": ITwin.display_name,
    "geographicLocation": ITwin.geographic_location,
    "latitude": ITwin.latitude,
    "longitude": ITwin.longitude,
    "ianaTimeZone": ITwin.iana_time_zone,
    "dataCenterLocation": ITwin.data_center_location,
    "status": ITwin.status,
    "parentId": ITwin.parent_id,
    "iTwinAccountId": ITwin.itwin_account_id,
    "createdDateTime": ITwin.created_at,
    "createdBy": ITwin.created_by,
    "lastModifiedDateTime": ITwin.modified_at,
    "lastModifiedBy": ITwin.modified_by,
}
ORDER_COLUMNS = FILTER_COLUMNS


@dataclass
class ITwinQuery:
    """The parsed query parameters of every iTwins list (list, favorites, recents, exports)."""

    sub_classes: list[str] = field(default_factory=list)
    status: str | None = None
    type: str | None = None
    number: str | None = None
    display_name: str | None = None
    parent_id: str | None = None
    account_id: str | None = None
    search: str | None = None
    filter: str | None = None
    order_by: str | None = None
    include_inactive: bool = False
    top: int = 1000
    skip: int = 0
    select: list[str] | None = None
    scope: QueryScope = "memberOfItwin"
    # The sort key a continuation token resumes after (the plain list pages by keyset).
    after: tuple[str, ...] | None = None


def parse_query(
    params: dict[str, str], *, scope_header: str | None, allow_filters: bool = True
) -> ITwinQuery:
    """Validate list parameters; every problem is a 422 ``InvalidiTwinsRequest`` detail."""
    details: list[ErrorDetail] = []
    q = ITwinQuery()

    paging = parse_paging(params, details, default_top=1000, min_top=0)
    q.top, q.skip, q.after = paging.top, paging.skip, paging.after
    if params.get("subClass"):
        for part in params["subClass"].split(","):
            try:
                q.sub_classes.append(_canonical(part.strip(), SUBCLASSES, "subClass"))
            except ValueError:
                details.append(invalid_value("subClass", f"Provided 'subClass' value '{part}' is not valid."))
    if params.get("status"):
        try:
            q.status = _canonical(params["status"], STATUSES, "status")
        except ValueError:
            details.append(invalid_value("status"))
    inactive = params.get("includeInactive", "").lower()
    if inactive not in ("", "true", "false"):
        details.append(invalid_value("includeInactive"))
    q.include_inactive = inactive == "true"
    if q.status and inactive:
        details.append(
            ErrorDetail(
                "MutuallyExclusiveParametersProvided",
                "Parameters 'status' and 'includeInactive' cannot be used together.",
                "includeInactive",
            )
        )
    if allow_filters:
        q.type = params.get("type") or None
        q.number = params.get("number") or None
        q.display_name = params.get("displayName") or None
        q.parent_id = params.get("parentId") or None
        q.account_id = params.get("iTwinAccountId") or None
        q.search = params.get("$search") or None
        q.filter = params.get("$filter") or None
        q.order_by = order_by_param(params)
        if q.search and (q.number or q.display_name):
            details.append(
                ErrorDetail(
                    "MutuallyExclusiveParametersProvided",
                    "'$search' cannot be combined with 'number' or 'displayName'.",
                    "$search",
                )
            )
        simple = [
            n
            for n in ("status", "type", "number", "displayName", "parentId", "iTwinAccountId", "$search")
            if params.get(n)
        ]
        if q.filter and simple:
            details.append(
                ErrorDetail(
                    "MutuallyExclusiveParametersProvided",
                    f"'$filter' cannot be combined with {', '.join(simple)}.",
                    "$filter",
                )
            )
        for name in ("parentId", "iTwinAccountId"):
            value = params.get(name)
            if value and not access.is_uuid(value):
                details.append(invalid_value(name))
    else:
        q.type = params.get("type") or None
    if params.get("$select"):
        q.select = [s.strip() for s in params["$select"].split(",") if s.strip()]
        for name in q.select:
            if name not in WIRE_FIELDS:
                raise InvalidRequest(
                    "Cannot query iTwins.",
                    code=INVALID,
                    details=[
                        invalid_value("$select", f"The $select string contains an unknown property '{name}'.")
                    ],
                )
    scope = (scope_header or "memberOfItwin").strip().lower()
    scopes: dict[str, QueryScope] = {
        "memberofitwin": "memberOfItwin",
        "all": "all",
        "organizationadmin": "OrganizationAdmin",
    }
    if scope not in scopes:
        details.append(
            ErrorDetail(
                "InvalidHeaderValue",
                "Header 'X-iTwin-Query-Scope' value is not valid.",
                "X-iTwin-Query-Scope",
            )
        )
    else:
        q.scope = scopes[scope]
    if details:
        raise InvalidRequest("Cannot query iTwins.", code=INVALID, details=details)
    return q


def _visible_ids(user_id: str, scope: QueryScope) -> Any:
    # EXISTS, not IN (subquery): SQLite materializes an IN list of every membership of the user before
    # the first row; a correlated lookup costs one index probe per candidate row (an equality filter
    # finds its few rows by index, then checks each).
    member_of = exists().where(Member.itwin_id == ITwin.id, Member.user_id == user_id)
    owned_accounts = select(Member.itwin_id).where(Member.user_id == user_id, Member.is_owner.is_(True))
    in_owned_account = ITwin.itwin_account_id.in_(owned_accounts)
    if scope == "memberOfItwin":
        return member_of
    if scope == "OrganizationAdmin":
        return in_owned_account
    return or_(member_of, in_owned_account)


def _visible_each(user_id: str) -> Any:
    """``_visible_ids`` for "all" as two index probes per row, for a list another index drives (the
    favorites): the owned accounts as an ``IN`` list would be read whole (PostgreSQL prices a user who
    owns many at a full read of their memberships, and its JIT compiler then costs more than the page)."""
    member_of = exists().where(Member.itwin_id == ITwin.id, Member.user_id == user_id)
    owns_account = exists().where(
        Member.itwin_id == ITwin.itwin_account_id, Member.user_id == user_id, Member.is_owner.is_(True)
    )
    return or_(member_of, owns_account)


def _search(q: str, dialect: str | None) -> Any:
    """``$search``: displayName or number contains ``q``, case-insensitively. On SQLite through the
    ``itwins_search`` FTS5 trigram table (migration 0012: a trigram phrase is a substring) when ``q`` has
    the 3 characters a trigram needs; elsewhere ``LIKE '%q%'``, which PostgreSQL serves from its trigram
    indexes."""
    if dialect == "sqlite" and len(q) >= 3:
        phrase = '"' + q.replace('"', '""') + '"'
        return text(
            "itwins.rowid IN (SELECT rowid FROM itwins_search WHERE itwins_search MATCH :tb_search)"
        ).bindparams(tb_search=phrase)
    return or_(like_contains(ITwin.display_name, q), like_contains(ITwin.number, q))


def dialect_of(session: Session | Connection) -> str:
    return session.dialect.name if isinstance(session, Connection) else session.get_bind().dialect.name


def apply_query(stmt: Select[Any], q: ITwinQuery, dialect: str | None = None) -> Select[Any]:
    """``q``'s filters on ``stmt``; ``dialect`` picks how ``$search`` is served (see ``_search``)."""
    if q.sub_classes:
        stmt = stmt.where(ITwin.sub_class.in_(q.sub_classes))
    elif not (q.filter and "account" in q.filter.lower()):
        # Account iTwins are the roots of hierarchies, not projects: listed only when asked for.
        stmt = stmt.where(ITwin.class_ != "Account")
    if q.status:
        stmt = stmt.where(ITwin.status == q.status)
    elif not q.include_inactive and not q.filter:
        stmt = stmt.where(ITwin.status != "Inactive")
    if q.type:
        stmt = stmt.where(func.lower(ITwin.type) == q.type.lower())
    # Exact matches, found through the case-insensitive indexes (ix_itwins_*_lower).
    if q.number:
        stmt = stmt.where(func.lower(ITwin.number) == q.number.lower(), ITwin.number == q.number)
    if q.display_name:
        stmt = stmt.where(
            func.lower(ITwin.display_name) == q.display_name.lower(), ITwin.display_name == q.display_name
        )
    if q.parent_id:
        stmt = stmt.where(ITwin.parent_id == q.parent_id)
    if q.account_id:
        stmt = stmt.where(ITwin.itwin_account_id == q.account_id)
    if q.search:
        stmt = stmt.where(_search(q.search, dialect))
    if q.filter:
        try:
            stmt = stmt.where(compile_filter(q.filter, FILTER_COLUMNS))
        except FilterSyntaxError as exc:
            raise InvalidRequest(
                str(exc), code=INVALID, details=[invalid_value("$filter", str(exc))]
            ) from exc
        except UnknownProperty as exc:
            raise InvalidRequest(
                "Cannot query iTwins.", code=INVALID, details=[invalid_value("$filter", str(exc))]
            ) from exc
    return stmt


def _bad_order(exc: BadOrderBy) -> InvalidRequest:
    return InvalidRequest("Cannot query iTwins.", code=INVALID, details=[invalid_value("$orderby")])


def apply_order(stmt: Select[Any], order_by: str | None, default: Any) -> Select[Any]:
    """``$orderby`` over ``ORDER_COLUMNS``, names case-insensitive as the iTwins API takes them."""
    try:
        clauses = parse_order_by(order_by, ORDER_COLUMNS, case_insensitive=True)
    except BadOrderBy as exc:
        raise _bad_order(exc) from exc
    if clauses is None:
        return stmt.order_by(*default)
    return stmt.order_by(*clauses, ITwin.id)


def query(
    session: Session | Connection, principal: Principal, q: ITwinQuery, *, minimal: bool = False
) -> Page[Any]:
    """One page of the caller's iTwins (plain rows: no ORM identity map).

    ``minimal``: the rows carry only the minimal wire fields (no timestamps to convert).
    """
    if q.top and dataclasses.replace(q, top=1000, skip=0, select=None, after=None) == ITwinQuery():
        return _plain_list(session, principal.user_id, q, minimal)
    columns = ITWIN_MINIMAL_COLUMNS if minimal else ITWIN_COLUMNS
    stmt = apply_query(
        select(*columns).where(_visible_ids(principal.user_id, q.scope)), q, dialect_of(session)
    )
    keyset = keyset_order(q.order_by)
    if keyset is None:
        return _page(session, apply_order(stmt, q.order_by, DEFAULT_ORDER), q, plain=True)
    if q.top == 0:
        return Page([], Paging(q.top, q.skip), False)
    keys, descending = keyset
    # The key's columns ride along at the end of each row: a minimal row has no createdDateTime.
    stmt = stmt.add_columns(*(k.label(f"sort_key{n}") for n, k in enumerate(keys)))
    return fetch_keyset_page(
        session,
        stmt,
        Paging(q.top, q.skip, q.after),
        keys,
        descending=descending,
        rows_of=lambda ordered: list(session.execute(ordered).all()),
        key_of=lambda row: tuple(row)[-len(keys) :],
    )


def keyset_order(order_by: str | None) -> tuple[list[Any], bool] | None:
    """The keyset an iTwins list in ``$orderby`` pages by: (columns, descending), the column asked for
    then the id in the same direction; the default order (newest first) when none is asked for. None:
    the list pages by offset, for several terms, or one term over a column that may be NULL (NULLs sort
    first on SQLite and last on PostgreSQL, and a NULL in a row comparison answers neither true nor
    false, which would skip rows)."""
    if order_by is None or not order_by.strip():
        return [ITwin.created_at, ITwin.id], True
    try:
        single = single_order(order_by, ORDER_COLUMNS, case_insensitive=True)
    except BadOrderBy as exc:
        raise _bad_order(exc) from exc
    if single is None or single[0].expression.nullable:
        return None
    column, descending = single
    return ([column] if column is ITwin.id else [column, ITwin.id]), descending


def _plain_list(session: Session | Connection, user_id: str, q: ITwinQuery, minimal: bool) -> Page[Any]:
    """The plain "my iTwins" page, by far the most asked for: the user's memberships walked newest first
    through ``ix_members_user_created`` from the top, or from the row a continuation token names (a
    keyset: the same few index pages whatever the number of iTwins or how deep the page)."""
    after = _after(q.after)
    if after is None:
        params: dict[str, Any] = {"user_id": user_id, "limit": q.top + 1, "offset": q.skip}
        rows = session.execute(_DEFAULT_LIST[minimal], params).all()
    else:
        params = {"user_id": user_id, "limit": q.top + 1, "after_created": after[0], "after_id": after[1]}
        rows = session.execute(_DEFAULT_LIST_AFTER[minimal], params).all()
    page = page_of(rows, Paging(q.top, q.skip, q.after))
    if page.more and page.rows:
        last = page.rows[-1]
        return dataclasses.replace(page, after=(last.list_key.isoformat(), last.id, _NEWEST_FIRST))
    return page


# The plain list's key is the default order's (a membership's itwin_created_at is its iTwin's
# createdDateTime), so the two read each other's tokens.
_NEWEST_FIRST = order_tag([ITwin.created_at, ITwin.id], True)


def _after(key: tuple[str, ...] | None) -> tuple[datetime, str] | None:
    """A continuation token's sort key as the plain list's (createdDateTime, id); None otherwise (a
    token of another list order resumes by its row number)."""
    if key is None or len(key) != 3 or key[2] != _NEWEST_FIRST:
        return None
    try:
        stamp = datetime.fromisoformat(key[0])
    except ValueError:
        return None
    return (stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)), key[1]


# Every mapped column under its attribute name, so rows read like ``ITwin`` objects (``row.class_``).
ITWIN_COLUMNS = [col.label(attr.key) for attr in ITwin.__mapper__.column_attrs for col in attr.columns]
_MINIMAL_KEYS = ("id", "class_", "sub_class", "type", "number", "display_name", "itwin_account_id")
ITWIN_MINIMAL_COLUMNS = [c for c in ITWIN_COLUMNS if c.name in _MINIMAL_KEYS]


#: The iTwins lists' order when none is asked for: newest first (ties: by id, also descending, so one
#: index walks it backwards).
DEFAULT_ORDER = (ITwin.created_at.desc(), ITwin.id.desc())


def _default_list(columns: list[Any], *, keyset: bool) -> Select[Any]:
    """What ``apply_query`` builds for a query with no parameters, with the user and page bound late,
    driven by the user's memberships in ``ix_members_user_created`` order."""
    stmt = (
        select(*columns, Member.itwin_created_at.label("list_key"))
        .join(Member, Member.itwin_id == ITwin.id)
        .where(Member.user_id == bindparam("user_id"), ITwin.class_ != "Account", ITwin.status != "Inactive")
        .order_by(Member.itwin_created_at.desc(), Member.itwin_id.desc())
        .limit(bindparam("limit"))
    )
    if keyset:
        return stmt.where(
            tuple_(Member.itwin_created_at, Member.itwin_id)
            < tuple_(bindparam("after_created", type_=UTCDateTime()), bindparam("after_id"))
        )
    return stmt.offset(bindparam("offset"))


_DEFAULT_LIST = {
    m: _default_list(ITWIN_MINIMAL_COLUMNS if m else ITWIN_COLUMNS, keyset=False) for m in (True, False)
}
_DEFAULT_LIST_AFTER = {
    m: _default_list(ITWIN_MINIMAL_COLUMNS if m else ITWIN_COLUMNS, keyset=True) for m in (True, False)
}


def _page(
    session: Session | Connection, stmt: Select[Any], q: ITwinQuery, *, plain: bool = False
) -> Page[Any]:
    """``plain``: ``stmt`` selects ``ITWIN_COLUMNS`` and the page holds rows, not ``ITwin`` objects."""
    paging = Paging(q.top, q.skip)
    if q.top == 0:
        return Page([], paging, False)
    bounded = stmt.offset(q.skip).limit(q.top + 1)
    return page_of(list(session.execute(bounded).all() if plain else session.scalars(bounded)), paging)


# ------------------------------------------------------------------------------ favorites, recents


def favorites(session: Session, principal: Principal, q: ITwinQuery) -> Page[ITwin]:
    """The caller's favorite iTwins, newest favorite first, by keyset through ix_favorites_user_created
    behind the next links."""
    if q.top == 0:
        return Page([], Paging(q.top, q.skip), False)
    stmt = (
        select(ITwin, Favorite.created_at)
        .join(Favorite, Favorite.itwin_id == ITwin.id)
        .where(Favorite.user_id == principal.user_id, _visible_each(principal.user_id))
    )
    return fetch_entities_by_key(
        session,
        apply_query(cast("Select[Any]", stmt), q, dialect_of(session)),
        Paging(q.top, q.skip, q.after),
        [Favorite.created_at, Favorite.itwin_id],
        descending=True,
    )


def add_favorite(session: Session, principal: Principal, itwin_id: str) -> None:
    ensure_user(session, principal)
    get_visible(session, itwin_id, principal.user_id)
    if session.get(Favorite, (principal.user_id, itwin_id)) is None:
        session.add(Favorite(user_id=principal.user_id, itwin_id=itwin_id))
        session.flush()


def remove_favorite(session: Session, principal: Principal, itwin_id: str) -> None:
    get_visible(session, itwin_id, principal.user_id)
    session.execute(
        delete(Favorite).where(Favorite.user_id == principal.user_id, Favorite.itwin_id == itwin_id)
    )


def recents(session: Session, principal: Principal, q: ITwinQuery) -> Page[ITwin]:
    stmt = (
        select(ITwin)
        .join(Recent, Recent.itwin_id == ITwin.id)
        .where(Recent.user_id == principal.user_id, _visible_ids(principal.user_id, "all"))
    )
    stmt = apply_query(stmt, q, dialect_of(session)).order_by(Recent.accessed_at.desc(), ITwin.id)
    q.top = min(q.top, MAX_RECENTS)
    return _page(session, stmt, q)


def add_recent(session: Session, principal: Principal, itwin_id: str) -> None:
    ensure_user(session, principal)
    get_visible(session, itwin_id, principal.user_id)
    recent = session.get(Recent, (principal.user_id, itwin_id))
    if recent is None:
        session.add(Recent(user_id=principal.user_id, itwin_id=itwin_id, accessed_at=utcnow()))
    else:
        recent.accessed_at = utcnow()
    session.flush()
    stale = list(
        session.scalars(
            select(Recent.itwin_id)
            .where(Recent.user_id == principal.user_id)
            .order_by(Recent.accessed_at.desc())
            .offset(MAX_RECENTS)
        )
    )
    if stale:
        session.execute(delete(Recent).where(Recent.user_id == principal.user_id, Recent.itwin_id.in_(stale)))


# ---------------------------------------------------------------------------------------- wire shape

MINIMAL_FIELDS = ("id", "class", "subClass", "type", "number", "displayName", "iTwinAccountId")
WIRE_FIELDS = (
    "id",
    "class",
    "subClass",
    "type",
    "number",
    "displayName",
    "geographicLocation",
    "latitude",
    "longitude",
    "ianaTimeZone",
    "dataCenterLocation",
    "status",
    "parentId",
    "iTwinAccountId",
    "imageName",
    "image",
    "createdDateTime",
    "createdBy",
    "lastModifiedDateTime",
    "lastModifiedBy",
)


def iso(dt: Any) -> str | None:
    if dt is None:
        return None
    # isoformat is several times cheaper than strftime; timestamps are stored in UTC.
    return f"{dt.replace(tzinfo=None).isoformat(timespec='milliseconds')}Z"


def to_wire(
    itwin: ITwin,
    *,
    mode: Literal["minimal", "representation"],
    image_url: str | None = None,
    select_fields: list[str] | None = None,
) -> dict[str, Any]:
    if mode == "minimal" and not select_fields:
        return {
            "id": itwin.id,
            "class": itwin.class_,
            "subClass": itwin.sub_class,
            "type": itwin.type,
            "number": itwin.number,
            "displayName": itwin.display_name,
            "iTwinAccountId": itwin.itwin_account_id,
        }
    full: dict[str, Any] = {
        "id": itwin.id,
        "class": itwin.class_,
        "subClass": itwin.sub_class,
        "type": itwin.type,
        "number": itwin.number,
        "displayName": itwin.display_name,
        "geographicLocation": itwin.geographic_location,
        "latitude": itwin.latitude,
        "longitude": itwin.longitude,
        "ianaTimeZone": itwin.iana_time_zone,
        "dataCenterLocation": itwin.data_center_location,
        "status": itwin.status,
        "parentId": itwin.parent_id,
        "iTwinAccountId": itwin.itwin_account_id,
        "imageName": image_name(itwin, "l"),
        "image": image_url,
        "createdDateTime": iso(itwin.created_at),
        "createdBy": itwin.created_by,
        "lastModifiedDateTime": iso(itwin.modified_at),
        "lastModifiedBy": itwin.modified_by,
    }
    if select_fields:
        return {k: full[k] for k in select_fields}
    if mode == "minimal":
        return {k: full[k] for k in MINIMAL_FIELDS}
    return full


def image_name(itwin: ITwin, size: str) -> str | None:
    if not itwin.image_id:
        return None
    ext = "png" if itwin.image_content_type == "image/png" else "jpg"
    return f"{itwin.image_id}_{size}.{ext}"
