"""EC classes and where their properties live in an iModel's SQLite tables (bim-format.md §2.2-2.3).

ECDb maps every EC property of a class to a column through ``ec_PropertyMap``: one row per *access string*
(``CodeValue``, ``Origin.X``, ``Model.Id``, ``ParkingLeft.ParkingWidth``...) naming an ``ec_Column`` of an
``ec_Table``. A class's instances are spread over its primary table (``bis_Element``), a joined table
(``bis_GeometricElement3d``) and that table's overflow table (``..._Overflow``); the shared columns
(``js1``, ``ps1``, ``os1``...) a property gets depend on the order schemas were imported, so they are always
resolved through the map, never assumed.

``ClassReader`` compiles, once per class, one SQL statement over exactly the tables the class uses and one
converter per property; reading N instances of the class is then one query, not N.

Values come out as Python values, the way ECSQL gives them (checked against iTwin.js in
tests/test_bim_elements.py):

==========================  ==================================================================
EC type                     Python value
==========================  ==================================================================
int, long                   ``int`` (ids too: ``Id64`` strings are only for display)
double                      ``float``
bool                        ``bool``
string                      ``str``
dateTime                    ``datetime.datetime`` (UTC-aware when the property's DateTimeInfo
                            says Utc, else naive) or ``datetime.date`` for date-only properties;
                            stored as a Julian day, read to the millisecond as ECSQL does
binary                      ``bytes``; a ``BeGuid`` binary (FederationGuid) as a UUID string;
                            a GeometryStream exactly as stored (compressed, undecoded)
point2d / point3d           ``(x, y)`` / ``(x, y, z)`` from the ``.X .Y .Z`` columns
navigation                  ``NavigationValue(id, rel_class_id)``; a virtual RelECClassId column
                            (the relationship is implied) gives the property's relationship
struct                      ``dict`` of its members (same rules, recursively)
arrays (primitive, struct)  the JSON ECDb stores them as, parsed (lists of values / dicts)
==========================  ==================================================================

A NULL value is ``None``; a struct or point whose columns are all NULL is ``None``.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import apsw

# ec_Property.Kind
KIND_PRIMITIVE, KIND_STRUCT, KIND_PRIMITIVE_ARRAY, KIND_STRUCT_ARRAY, KIND_NAVIGATION = 0, 1, 2, 3, 4
# ec_Property.PrimitiveType (ECObjects PrimitiveType)
PRIM_BINARY, PRIM_BOOLEAN, PRIM_DATETIME, PRIM_DOUBLE = 0x101, 0x201, 0x301, 0x401
PRIM_INTEGER, PRIM_LONG, PRIM_POINT2D, PRIM_POINT3D = 0x501, 0x601, 0x701, 0x801
PRIM_STRING, PRIM_IGEOMETRY = 0x901, 0xA01
# ec_Table.Type
TABLE_PRIMARY, TABLE_JOINED, TABLE_EXISTING, TABLE_OVERFLOW, TABLE_VIRTUAL = 0, 1, 2, 3, 4
# ec_Column.ColumnKind flags
COLUMN_ID, COLUMN_CLASS_ID = 1, 2
# ec_CustomAttribute.ContainerType of a property
_CA_PROPERTY_CONTAINERS = (992,)

_UNIX_EPOCH_JD = 2440587.5
_MS_PER_DAY = 86_400_000
_EPOCH = dt.datetime(1970, 1, 1)
_EPOCH_UTC = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_SYSTEM_ACCESS = frozenset({"ecinstanceid", "ecclassid"})


class NavigationValue(NamedTuple):
    """A navigation property's value: the related instance and the relationship class (ids as ints)."""

    id: int
    rel_class_id: int | None


@dataclass(frozen=True)
class PropertyDef:
    """One row of ``ec_Property`` (the parts a reader needs)."""

    id: int
    class_id: int
    name: str
    kind: int
    primitive_type: int | None
    extended_type: str | None
    struct_class_id: int | None
    nav_rel_class_id: int | None
    date_time_kind: str | None  # "Utc", "Local", "Unspecified" from DateTimeInfo, or None
    date_only: bool


@dataclass(frozen=True)
class MappedColumn:
    access: str  # the access string, e.g. "Origin.X"
    table: str
    table_type: int
    column: str
    virtual: bool
    kind: int  # ec_Column.ColumnKind


class ClassCatalog:
    """Every EC class of the file by id and name, its hierarchy and its properties, read once at open.

    Names are "Schema:Class" full names as iTwin.js writes them; lookups accept "Schema:Class",
    "Schema.Class" and the schema alias ("bis:Element"), case-insensitively, as ECSQL does.
    """

    def __init__(self, db: apsw.Connection) -> None:
        self.names: dict[int, str] = {}
        self._ids: dict[str, int] = {}
        self.class_types: dict[int, int] = {}
        for cid, schema, alias, name, ctype in db.execute(
            "SELECT c.Id, s.Name, s.Alias, c.Name, c.Type FROM ec_Class c JOIN ec_Schema s ON s.Id=c.SchemaId"
        ):
            self.names[cid] = f"{schema}:{name}"
            self.class_types[cid] = ctype
            for prefix in (schema, alias):
                self._ids[f"{prefix}:{name}".lower()] = cid
        # ec_cache_ClassHierarchy holds (class, ancestor) for every ancestor, the class itself included.
        self._subclasses: dict[int, set[int]] = {}
        self._bases: dict[int, set[int]] = {}
        for cid, base in db.execute("SELECT ClassId, BaseClassId FROM ec_cache_ClassHierarchy"):
            self._subclasses.setdefault(base, set()).add(cid)
            self._bases.setdefault(cid, set()).add(base)
        self._db = db
        self._properties: dict[int, PropertyDef] | None = None
        self._by_class_name: dict[tuple[int, str], PropertyDef] = {}

    def class_id(self, name: str) -> int | None:
        """The id of a class by full name ("BisCore:GeometricElement3d", "bis.Element"), or None."""
        return self._ids.get(name.replace(".", ":", 1).lower())

    def require(self, name: str) -> int:
        cid = self.class_id(name)
        if cid is None:
            raise KeyError(f"no EC class {name!r} in this iModel")
        return cid

    def full_name(self, class_id: int) -> str:
        try:
            return self.names[class_id]
        except KeyError:
            raise KeyError(f"no EC class with id {class_id} (0x{class_id:x}) in this iModel") from None

    def subclasses(self, class_id: int) -> frozenset[int]:
        """The class and every class derived from it (directly or not)."""
        return frozenset(self._subclasses.get(class_id, {class_id}))

    def bases(self, class_id: int) -> frozenset[int]:
        """The class and all its ancestors (base classes and mixins)."""
        return frozenset(self._bases.get(class_id, {class_id}))

    def is_a(self, class_id: int, base: int) -> bool:
        return base in self._bases.get(class_id, ())

    # -- properties --------------------------------------------------------------------------------------

    def _load_properties(self) -> dict[int, PropertyDef]:
        if self._properties is None:
            date_info: dict[int, tuple[str | None, bool]] = {}
            placeholders = ",".join("?" * len(_CA_PROPERTY_CONTAINERS))
            for container, instance in self._db.execute(
                "SELECT ca.ContainerId, ca.Instance FROM ec_CustomAttribute ca"
                " JOIN ec_Class c ON c.Id=ca.ClassId JOIN ec_Schema s ON s.Id=c.SchemaId"
                f" WHERE c.Name='DateTimeInfo' AND ca.ContainerType IN ({placeholders})",
                _CA_PROPERTY_CONTAINERS,
            ):
                kind = re.search(r"<DateTimeKind>\s*(\w+)\s*</DateTimeKind>", instance or "")
                component = re.search(r"<DateTimeComponent>\s*(\w+)\s*</DateTimeComponent>", instance or "")
                date_info[container] = (
                    kind.group(1) if kind else None,
                    bool(component and component.group(1).lower() == "date"),
                )
            props: dict[int, PropertyDef] = {}
            for pid, cid, name, kind, prim, ext, struct, nav in self._db.execute(
                "SELECT Id, ClassId, Name, Kind, PrimitiveType, ExtendedTypeName, StructClassId,"
                " NavigationRelationshipClassId FROM ec_Property"
            ):
                tkind, date_only = date_info.get(pid, (None, False))
                prop = PropertyDef(pid, cid, name, kind, prim, ext, struct, nav, tkind, date_only)
                props[pid] = prop
                self._by_class_name[(cid, name.lower())] = prop
            self._properties = props
        return self._properties

    def property(self, property_id: int) -> PropertyDef:
        return self._load_properties()[property_id]

    def member(self, class_id: int, name: str) -> PropertyDef | None:
        """A property of ``class_id`` by name, its own or inherited (for struct members)."""
        self._load_properties()
        own = self._by_class_name.get((class_id, name.lower()))
        if own is not None:
            return own
        for base in self.bases(class_id):
            found = self._by_class_name.get((base, name.lower()))
            if found is not None:
                return found
        return None


# -- value converters ----------------------------------------------------------------------------------

Converter = Callable[[Any], Any]


def _julian_to_datetime(value: Any, utc: bool, date_only: bool) -> Any:
    if value is None:
        return None
    if isinstance(value, str):  # never written by ECDb 4.0, but a shared column keeps what it was given
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        return parsed.date() if date_only else parsed
    # ECSQL reads Julian days to the millisecond; so does this, with the same rounding.
    ms = round((float(value) - _UNIX_EPOCH_JD) * _MS_PER_DAY)
    stamp = (_EPOCH_UTC if utc else _EPOCH) + dt.timedelta(milliseconds=ms)
    return stamp.date() if date_only else stamp


def _guid(value: Any) -> str | None:
    if isinstance(value, bytes) and len(value) == 16:
        return str(uuid.UUID(bytes=value))
    return None if value is None else str(value)


def _to_bool(value: Any) -> bool | None:
    return None if value is None else bool(value)


def _to_float(value: Any) -> float | None:
    return value if value.__class__ is float or value is None else float(value)


def _to_int_or_same(value: Any) -> Any:
    # SQLite hands integers back as int; only a shared column written with another type needs converting.
    return value if value.__class__ is int or value is None else int(value)


def _to_bytes(value: Any) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    return str(value).encode()


def _same(value: Any) -> Any:
    return value


def _json_value(value: Any) -> Any:
    if value is None:
        return None
    try:
        return json.loads(value)
    except (TypeError, ValueError):
        return value  # not JSON after all: give what is stored rather than guess


def primitive_converter(prop: PropertyDef) -> Converter:
    prim = prop.primitive_type
    if prim == PRIM_BINARY:
        return _guid if (prop.extended_type or "").lower() == "beguid" else _to_bytes
    if prim == PRIM_BOOLEAN:
        return _to_bool
    if prim == PRIM_DATETIME:
        utc = (prop.date_time_kind or "").lower() == "utc"
        date_only = prop.date_only
        return lambda v: _julian_to_datetime(v, utc, date_only)
    if prim == PRIM_DOUBLE:
        return _to_float
    if prim in (PRIM_INTEGER, PRIM_LONG):
        return _to_int_or_same
    if prim == PRIM_IGEOMETRY:
        return _same
    return _same  # string, and anything newer: as stored


# -- reading a class -----------------------------------------------------------------------------------

Getter = Callable[[Sequence[Any]], Any]
# How one property is read from a row: (name, column index, converter). A converter of None means the
# column's value as is; an index of -1 means the converter takes the whole row (points, navigation,
# structs: several columns).
Spec = tuple[str, int, Callable[[Any], Any] | None]


def _point_getter(indexes: list[int | None]) -> Getter:
    if len(indexes) == 3:
        ix, iy, iz = indexes
        if ix is not None and iy is not None and iz is not None:  # the usual case, without a loop

            def get3(row: Sequence[Any]) -> Any:
                x, y, z = row[ix], row[iy], row[iz]
                if x is None and y is None and z is None:
                    return None
                return (_opt_float(x), _opt_float(y), _opt_float(z))

            return get3

    def get(row: Sequence[Any]) -> Any:
        values = [None if i is None else row[i] for i in indexes]
        if all(v is None for v in values):
            return None
        return tuple(_opt_float(v) for v in values)

    return get


def _opt_float(value: Any) -> float | None:
    return value if value.__class__ is float or value is None else float(value)


def _nav_getter(id_index: int, rel_index: int | None, implied_rel: int | None) -> Getter:
    def get(row: Sequence[Any]) -> NavigationValue | None:
        target = row[id_index]
        if target is None:
            return None
        rel = row[rel_index] if rel_index is not None else implied_rel
        return NavigationValue(int(target), None if rel is None else int(rel))

    return get


def _struct_getter(members: list[Spec]) -> Getter:
    def get(row: Sequence[Any]) -> dict[str, Any] | None:
        values = _read(members, row)
        return None if all(v is None for v in values.values()) else values

    return get


def _read(specs: list[Spec], row: Sequence[Any]) -> dict[str, Any]:
    # One comprehension, no call for the columns read as they are (most of them).
    return {
        name: (row[i] if convert is None else convert(row[i]) if i >= 0 else convert(row))
        for name, i, convert in specs
    }


class ClassReader:
    """One EC class's properties: one SELECT over the tables it is mapped to, and a getter per property.

    ``sql`` selects the instance id first, then the mapped columns; ``WHERE`` restricts to instances of
    exactly this class (not subclasses: each has its own columns). ``read(rows)`` turns result rows into
    ``(id, {property: value})``.
    """

    def __init__(self, catalog: ClassCatalog, class_id: int, columns: list[MappedColumn], props: list[int]):
        self.class_id = class_id
        self.full_name = catalog.full_name(class_id)
        # The tables, root first: the one holding the instance's ECClassId for the class (primary or
        # existing), then joined tables, then overflow tables, each joined on its own id column.
        tables: dict[str, tuple[int, str | None, str | None]] = {}
        for col in columns:
            if col.virtual or col.table_type == TABLE_VIRTUAL:
                continue
            entry = tables.setdefault(col.table, (col.table_type, None, None))
            if col.kind & COLUMN_ID:
                entry = (entry[0], col.column, entry[2])
            if col.kind & COLUMN_CLASS_ID:
                entry = (entry[0], entry[1], col.column)
            tables[col.table] = entry
        order = sorted(
            tables, key=lambda t: {TABLE_PRIMARY: 0, TABLE_EXISTING: 0, TABLE_JOINED: 1}.get(tables[t][0], 2)
        )
        if not order:
            raise ValueError(f"{self.full_name} is not mapped to any table (an abstract or virtual class)")
        self.tables = order
        root = order[0]
        root_id = tables[root][1]
        if root_id is None:
            raise ValueError(f"{self.full_name}: no instance id column in {root}")
        alias = {t: f"t{n}" for n, t in enumerate(order)}
        select = [f"{alias[root]}.[{root_id}]"]
        joins = [f"[{root}] {alias[root]}"]
        for table in order[1:]:
            id_col = tables[table][1]
            if id_col is None:
                raise ValueError(f"{self.full_name}: no instance id column in {table}")
            joins.append(
                f"LEFT JOIN [{table}] {alias[table]} ON {alias[table]}.[{id_col}]={alias[root]}.[{root_id}]"
            )
        index_of: dict[str, int] = {}
        for col in columns:
            if col.access.lower() in _SYSTEM_ACCESS or col.virtual or col.table_type == TABLE_VIRTUAL:
                continue
            if col.access.lower() not in index_of:
                index_of[col.access.lower()] = len(select)
                select.append(f"{alias[col.table]}.[{col.column}]")
        class_col = tables[root][2]
        where = f"{alias[root]}.[{class_col}]=?" if class_col is not None else "1"
        self.id_sql = f"{alias[root]}.[{root_id}]"
        self.sql = f"SELECT {', '.join(select)} FROM {' '.join(joins)} WHERE {where}"
        self.filter_by_class = class_col is not None
        self.specs: list[Spec] = []
        for pid in props:
            prop = catalog.property(pid)
            spec = self._spec(catalog, prop, prop.name, index_of)
            if spec is not None:
                self.specs.append(spec)

    def _spec(
        self, catalog: ClassCatalog, prop: PropertyDef, path: str, index_of: dict[str, int]
    ) -> Spec | None:
        key = path.lower()
        name = prop.name
        if prop.kind == KIND_NAVIGATION:
            id_index = index_of.get(key + ".id")
            rel_index = index_of.get(key + ".relecclassid")
            if id_index is None:
                return None
            return name, -1, _nav_getter(id_index, rel_index, prop.nav_rel_class_id)
        if prop.kind == KIND_STRUCT:
            if prop.struct_class_id is None:
                return None
            members: list[Spec] = []
            prefix = key + "."
            seen: list[str] = []
            for access in index_of:
                if access.startswith(prefix):
                    member_name = access[len(prefix) :].split(".", 1)[0]
                    if member_name not in seen:
                        seen.append(member_name)
            for member_name in seen:
                member = catalog.member(prop.struct_class_id, member_name)
                if member is None:
                    continue
                spec = self._spec(catalog, member, f"{path}.{member.name}", index_of)
                if spec is not None:
                    members.append(spec)
            return (name, -1, _struct_getter(members)) if members else None
        if prop.kind in (KIND_PRIMITIVE_ARRAY, KIND_STRUCT_ARRAY):
            index = index_of.get(key)
            return None if index is None else (name, index, _json_value)
        if prop.primitive_type == PRIM_POINT2D:
            return name, -1, _point_getter([index_of.get(key + ".x"), index_of.get(key + ".y")])
        if prop.primitive_type == PRIM_POINT3D:
            axes = [index_of.get(key + ".x"), index_of.get(key + ".y"), index_of.get(key + ".z")]
            return name, -1, _point_getter(axes)
        index = index_of.get(key)
        if index is None:
            return None
        convert = primitive_converter(prop)
        return name, index, None if convert is _same else convert

    def read(self, rows: Iterable[Sequence[Any]]) -> Iterator[tuple[int, dict[str, Any]]]:
        specs = self.specs
        for row in rows:
            yield row[0], _read(specs, row)


def load_class_reader(db: apsw.Connection, catalog: ClassCatalog, class_id: int) -> ClassReader:
    columns: list[MappedColumn] = []
    roots: list[int] = []
    for access, root, table, table_type, column, virtual, kind in db.execute(
        "SELECT pp.AccessString, pp.RootPropertyId, t.Name, t.Type, col.Name, col.IsVirtual, col.ColumnKind"
        " FROM ec_PropertyMap pm JOIN ec_PropertyPath pp ON pp.Id=pm.PropertyPathId"
        " JOIN ec_Column col ON col.Id=pm.ColumnId JOIN ec_Table t ON t.Id=col.TableId"
        " WHERE pm.ClassId=? ORDER BY pm.Id",
        (class_id,),
    ):
        columns.append(MappedColumn(access, table, table_type, column, bool(virtual), kind))
        if access.lower() not in _SYSTEM_ACCESS and root not in roots:
            roots.append(root)
    if not columns:
        raise ValueError(f"{catalog.full_name(class_id)} has no mapped properties (not a mapped class)")
    return ClassReader(catalog, class_id, columns, roots)
