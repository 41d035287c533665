"""A minimal, bounds-checked FlatBuffers table reader over one window of a bytes object.

Only what the GeometryStream schemas need: tables (vtable slots), inline scalars and structs, offsets to
tables, vectors of scalars or structs (returned as zero-copy numpy views), vectors of tables, strings and
unions. Wire format facts (FlatBuffers "internals"):

- a table starts with an ``int32`` soffset; its vtable is at ``table - soffset``;
- a vtable is ``uint16 vtable_bytes, uint16 table_bytes, uint16 field_offset[slot]...``; a slot beyond
  the vtable or holding 0 is an absent field (the schema default applies);
- an offset field holds a ``uint32`` relative to the field's own position, so a referenced object always
  lies after its referrer;
- a vector is ``uint32 count`` followed by the elements; a string is a byte vector followed by a NUL.

Every read is checked against the window (the payload of one operation), so a corrupt payload raises
``GeometryFlatBufferError`` naming the table and field, and never reads another operation's bytes.
Nesting is capped (``MAX_DEPTH``) so a forged chain of nested tables cannot exhaust the Python stack.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import numpy.typing as npt

from twinbase.bim.geometry.errors import GeometryFlatBufferError

F64Array = npt.NDArray[np.float64]

# Real geometry nests a few levels (a ruled sweep of curve vectors of curve vectors); 64 is far beyond
# anything a writer produces and far below Python's recursion limit.
MAX_DEPTH = 64

_U8 = struct.Struct("<B")
_I8 = struct.Struct("<b")
_U16 = struct.Struct("<H")
_HH = struct.Struct("<HH")
_I16 = struct.Struct("<h")
_U32 = struct.Struct("<I")
_I32 = struct.Struct("<i")
_I64 = struct.Struct("<q")
_F64 = struct.Struct("<d")
_DOUBLES = [struct.Struct(f"<{n}d") for n in range(17)]
_F64_DTYPE = np.dtype("<f8")
# The unpack methods bound once: the accessors below run for every field of every table of every stream.
_u8 = _U8.unpack_from
_u32 = _U32.unpack_from
_i32 = _I32.unpack_from
_hh = _HH.unpack_from
_frombuffer = np.frombuffer  # called positionally: numpy parses keyword arguments several times slower
# A whole vtable's field offsets in one unpack (slot counts of real schemas stay far below 64).
_VTABLES = [struct.Struct(f"<{n}H") for n in range(65)]
_DTYPES: dict[str, np.dtype[Any]] = {}


def _dtype(name: str) -> np.dtype[Any]:
    dt = _DTYPES.get(name)
    if dt is None:
        dt = _DTYPES[name] = np.dtype(name)
    return dt


# ``where`` of a stream operation as (operation number, opcode name, opcode, stream byte): the text is
# made only when an error is raised, not for every operation of every stream.
Where = str | tuple[int, str, int, int]


def where_text(where: Where) -> str:
    if isinstance(where, str):
        return where
    index, name, opcode, pos = where
    return f"operation #{index} {name} (opcode {opcode}) at stream byte {pos}"


class FlatBuffer:
    """The bytes ``data[start:end]`` holding one FlatBuffer (``start`` = where the root offset is)."""

    __slots__ = ("data", "end", "start", "where")

    def __init__(self, data: bytes, start: int, end: int, where: Where) -> None:
        self.data = data
        self.start = start
        self.end = end
        self.where = where

    def fail(self, message: str) -> GeometryFlatBufferError:
        return GeometryFlatBufferError(f"{where_text(self.where)}: {message}")

    def check(self, pos: int, size: int, what: str) -> None:
        if pos < self.start or size < 0 or pos + size > self.end:
            raise self.fail(
                f"{what}: {size} bytes at payload offset {pos - self.start} run outside the "
                f"{self.end - self.start}-byte payload"
            )

    def u32(self, pos: int, what: str) -> int:
        self.check(pos, 4, what)
        value: int = _U32.unpack_from(self.data, pos)[0]
        return value

    def root(self, name: str) -> Table:
        """The root table: a uint32 offset at ``start``."""
        start = self.start
        if start + 4 <= self.end:
            return Table(self, start + _u32(self.data, start)[0], name, 0)
        offset = self.u32(start, f"{name} root offset")
        return Table(self, start + offset, name, 0)


class Table:
    """One table of a FlatBuffer; ``slot`` numbers are the schema's field order (vtable index).

    The vtable is read whole when the table is made (``_offs``: each slot's offset in the table, 0 when
    absent), so a field costs a tuple index. A present field is valid when it starts past the soffset and
    ends inside the payload (a field inside the declared table is inside the payload, as the table is):
    the accessors test that inline and leave the error, with its message, to ``field``.
    """

    __slots__ = ("_data", "_end", "_offs", "depth", "fb", "name", "pos", "size")

    def __init__(self, fb: FlatBuffer, pos: int, name: str, depth: int) -> None:
        if depth > MAX_DEPTH:
            raise fb.fail(f"{name}: tables nested more than {MAX_DEPTH} deep")
        self.fb = fb
        self._data = data = fb.data
        self.pos = pos
        self.name = name
        self.depth = depth
        # The common case in one comparison chain (this runs for every table of every stream); the
        # failure path below finds which check failed and says so.
        start = fb.start
        self._end = end = fb.end
        if start <= pos and pos + 4 <= end:
            vtable = pos - _i32(data, pos)[0]
            if start <= vtable and vtable + 4 <= end:
                vt_bytes, tbl_bytes = _hh(data, vtable)
                if (
                    vt_bytes >= 4
                    and not vt_bytes & 1
                    and tbl_bytes >= 4
                    and vtable + vt_bytes <= end
                    and pos + tbl_bytes <= end
                ):
                    nslots = (vt_bytes - 4) >> 1
                    vt = _VTABLES[nslots] if nslots <= 64 else struct.Struct(f"<{nslots}H")
                    self._offs: tuple[int, ...] = vt.unpack_from(data, vtable + 4)
                    self.size = tbl_bytes
                    return
        self._fail_header()

    def _fail_header(self) -> None:
        fb, pos, name = self.fb, self.pos, self.name
        fb.check(pos, 4, f"{name} table")
        vtable = pos - _I32.unpack_from(fb.data, pos)[0]
        fb.check(vtable, 4, f"{name} vtable")
        vt_bytes, tbl_bytes = _HH.unpack_from(fb.data, vtable)
        if vt_bytes < 4 or vt_bytes % 2:
            raise fb.fail(f"{name}: vtable of {vt_bytes} bytes (must be even and at least 4)")
        if tbl_bytes < 4:
            raise fb.fail(f"{name}: table of {tbl_bytes} bytes (the soffset alone takes 4)")
        fb.check(vtable, vt_bytes, f"{name} vtable")
        fb.check(pos, tbl_bytes, f"{name} table")
        raise AssertionError("unreachable: a table header check failed without a reason")

    # -- field location ------------------------------------------------------------------------------

    def field(self, slot: int, size: int, field: str) -> int | None:
        """Absolute position of an inline field of ``size`` bytes, or None when absent."""
        offs = self._offs
        if slot >= len(offs):
            return None
        fo = offs[slot]
        if fo == 0:
            return None
        # A field should lie inside the table's declared inline size, but core-geometry's BGFBWriter
        # (flatbuffers JS) builds a solid's detail struct before starting its table: the struct then
        # follows a table that declares 4 bytes. Its readers (and the native one) do not check, so bound
        # the field by the payload instead.
        if fo < 4 or (fo + size > self.size and self.pos + fo + size > self._end):
            raise self.fb.fail(
                f"{self.name}.{field}: field at table offset {fo} ({size} bytes) lies outside the "
                f"{self.size}-byte table and the payload"
            )
        return self.pos + fo

    def has(self, slot: int) -> bool:
        return self.field(slot, 0, f"slot {slot}") is not None

    def _target(self, slot: int, field: str) -> int | None:
        """Follow a uoffset field: the absolute position it refers to, or None when absent."""
        offs = self._offs
        if slot >= len(offs) or not offs[slot]:
            return None
        fo = offs[slot]
        pos = self.pos + fo
        if fo < 4 or pos + 4 > self._end:
            self.field(slot, 4, field)  # raises, saying where
        # the field itself lies inside the table, which lies inside the payload: read it unchecked
        target: int = pos + _u32(self._data, pos)[0]
        if target + 4 > self._end:
            self.fb.check(target, 4, f"{self.name}.{field} target")
        return target

    # -- scalars ---------------------------------------------------------------------------------------

    def _scalar(self, slot: int, st: struct.Struct, default: Any, field: str) -> Any:
        offs = self._offs
        if slot < len(offs):
            fo = offs[slot]
            if fo:
                pos = self.pos + fo
                if fo < 4 or pos + st.size > self._end:
                    self.field(slot, st.size, field)  # raises, saying where
                return st.unpack_from(self._data, pos)[0]
        return default

    def u8(self, slot: int, field: str, default: int = 0) -> int:
        value: int = self._scalar(slot, _U8, default, field)
        return value

    def i8(self, slot: int, field: str, default: int = 0) -> int:
        value: int = self._scalar(slot, _I8, default, field)
        return value

    def bool(self, slot: int, field: str) -> bool:
        offs = self._offs
        if slot < len(offs):
            fo = offs[slot]
            if fo:
                pos = self.pos + fo
                if fo < 4 or pos + 1 > self._end:
                    self.field(slot, 1, field)  # raises, saying where
                return self._data[pos] != 0
        return False

    def u16(self, slot: int, field: str, default: int = 0) -> int:
        value: int = self._scalar(slot, _U16, default, field)
        return value

    def i16(self, slot: int, field: str, default: int = 0) -> int:
        value: int = self._scalar(slot, _I16, default, field)
        return value

    def u32(self, slot: int, field: str, default: int = 0) -> int:
        value: int = self._scalar(slot, _U32, default, field)
        return value

    def i32(self, slot: int, field: str, default: int = 0) -> int:
        value: int = self._scalar(slot, _I32, default, field)
        return value

    def i64(self, slot: int, field: str, default: int = 0) -> int:
        value: int = self._scalar(slot, _I64, default, field)
        return value

    def f64(self, slot: int, field: str, default: float = 0.0) -> float:
        value: float = self._scalar(slot, _F64, default, field)
        return value

    # -- structs ---------------------------------------------------------------------------------------

    def struct_f64(self, slot: int, count: int, field: str) -> tuple[float, ...] | None:
        """An inline struct made of ``count`` doubles (points, vectors, transforms), or None."""
        pos = self.field(slot, 8 * count, field)
        if pos is None:
            return None
        values: tuple[float, ...] = _DOUBLES[count].unpack_from(self._data, pos)
        return values

    def f64_view(self, slot: int, count: int, field: str, size: int = 0) -> F64Array | None:
        """An inline struct starting with ``count`` doubles (``size`` bytes in all, default 8 * count) as
        a read-only numpy view of the payload, or None: slices of it are the points and vectors."""
        pos = self.field(slot, size or 8 * count, field)
        if pos is None:
            return None
        return _frombuffer(self._data, _F64_DTYPE, count, pos)

    def struct_raw(self, slot: int, fmt: struct.Struct, field: str) -> tuple[Any, ...] | None:
        """An inline struct with a mixed layout given as a little-endian ``struct.Struct``, or None."""
        pos = self.field(slot, fmt.size, field)
        if pos is None:
            return None
        return fmt.unpack_from(self._data, pos)

    # -- references ------------------------------------------------------------------------------------

    def table(self, slot: int, name: str, field: str) -> Table | None:
        target = self._target(slot, field)
        return None if target is None else Table(self.fb, target, name, self.depth + 1)

    def _vector(self, slot: int, elem_size: int, field: str) -> tuple[int, int] | None:
        """(first element position, element count) of a vector field, checked to fit, or None."""
        target = self._target(slot, field)
        if target is None:
            return None
        count: int = _u32(self._data, target)[0]
        if target + 4 + count * elem_size > self._end:
            self.fb.check(target + 4, count * elem_size, f"{self.name}.{field} ({count} elements)")
        return target + 4, count

    def array(self, slot: int, dtype: str, field: str) -> npt.NDArray[Any] | None:
        """A vector of scalars as a read-only numpy view of the payload (no copy), or None."""
        dt = _dtype(dtype)
        vec = self._vector(slot, dt.itemsize, field)
        if vec is None:
            return None
        start, count = vec
        return _frombuffer(self._data, dt, count, start)

    def struct_array(self, slot: int, dtype: str, width: int, field: str) -> npt.NDArray[Any] | None:
        """A vector of structs of ``width`` scalars each, as an (n, width) view, or None."""
        dt = _dtype(dtype)
        vec = self._vector(slot, dt.itemsize * width, field)
        if vec is None:
            return None
        start, count = vec
        return _frombuffer(self._data, dt, count * width, start).reshape(count, width)

    def record_array(self, slot: int, dtype: np.dtype[Any], field: str) -> npt.NDArray[Any] | None:
        """A vector of mixed-layout structs as a numpy structured view, or None."""
        vec = self._vector(slot, dtype.itemsize, field)
        if vec is None:
            return None
        start, count = vec
        return _frombuffer(self._data, dtype, count, start)

    def bytes_len(self, slot: int, field: str) -> int | None:
        """The length of a ubyte vector (e.g. Parasolid data we keep only the size of), or None."""
        vec = self._vector(slot, 1, field)
        return None if vec is None else vec[1]

    def bytes(self, slot: int, field: str) -> bytes | None:
        vec = self._vector(slot, 1, field)
        if vec is None:
            return None
        start, count = vec
        return self.fb.data[start : start + count]

    def string(self, slot: int, field: str) -> str | None:
        raw = self.bytes(slot, field)
        if raw is None:
            return None
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise self.fb.fail(f"{self.name}.{field}: not UTF-8 ({exc.reason} at byte {exc.start})") from None

    def tables(self, slot: int, name: str, field: str) -> list[Table]:
        """A vector of tables (each element a uoffset relative to itself); [] when absent."""
        vec = self._vector(slot, 4, field)
        if vec is None:
            return []
        start, count = vec
        out = []
        for i in range(count):
            elem = start + 4 * i
            target = elem + _u32(self._data, elem)[0]
            out.append(Table(self.fb, target, name, self.depth + 1))
        return out

    def union(self, type_slot: int, field: str) -> tuple[int, Table | None]:
        """A union: (type tag, table), the tag in ``type_slot`` and the value in the next slot."""
        # The common case (tag and value present, both in bounds) read inline; the general way below
        # gives the same answer in every other case, and says what is wrong when something is.
        offs = self._offs
        if type_slot + 1 < len(offs):
            fo, fv = offs[type_slot], offs[type_slot + 1]
            pos, end = self.pos, self._end
            if fo >= 4 and fv >= 4 and pos + fo + 1 <= end and pos + fv + 4 <= end:
                data = self._data
                tag = data[pos + fo]
                if tag:
                    target = pos + fv + _u32(data, pos + fv)[0]
                    if target + 4 <= end:
                        return tag, Table(self.fb, target, f"{self.name}.{field}", self.depth + 1)
        tag = self.u8(type_slot, f"{field}_type")
        if tag == 0:
            return 0, None
        return tag, self.table(type_slot + 1, f"{self.name}.{field}", field)
