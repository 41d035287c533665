"""GeometryStream blobs: chunked raw Snappy, the GeomBlobHeader, then the opcode stream (bim-format.md §1).

Container::

    repeat: u16 LE chunk size (including these 2 bytes), a raw Snappy block (no framing)
    joined: u32 LE signature 0x0600, u32 LE size, size bytes of operations
    operation: u32 LE opcode, u32 LE payload size, payload

Payloads of the stream's own operations are plain FlatBuffers of ``ElementGraphics.fbs``; curves, meshes,
solids and surfaces are BGFB (``bgfb.py``). ``decode_geometry_stream`` turns one blob into a
``DecodedStream``: every operation decoded, and the geometric entries with the symbology in effect.
Operations with an unknown opcode are kept as ``Unknown`` and counted; anything malformed raises a
``GeometryStreamError`` for this blob only.
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Callable

import cramjam
import numpy as np

from twinbase.bim.geometry.bgfb import read_bgfb
from twinbase.bim.geometry.errors import (
    GeometryCompressionError,
    GeometryHeaderError,
    GeometryOpcodeError,
)
from twinbase.bim.geometry.flatbuf import FlatBuffer, Table, Where, where_text
from twinbase.bim.geometry.types import (
    Arc,
    AreaFill,
    AreaPattern,
    BasicSymbology,
    Boundary,
    BRep,
    BRepType,
    CurvePrimitive,
    CurveVector,
    CurveVectorType,
    DecodedStream,
    F64Array,
    FaceSymbology,
    FillDisplay,
    Geometry,
    GeometryClass,
    GeometryEntry,
    GradientMode,
    HatchDefLine,
    Header,
    Image,
    LineString,
    LineStyleModifiers,
    Material,
    Op,
    OpCode,
    PartInstance,
    PointString,
    Polyface,
    SubGraphicRange,
    Symbology,
    TextString,
    ThematicSettings,
    Unknown,
    _frozen,
    _make,
)

SIGNATURE = 0x0600  # GeomBlobHeader::Signature ("DgnDb06")
_CHUNK = struct.Struct("<H")
_OP = struct.Struct("<II")
_op_header = _OP.unpack_from
_FACE_SYMBOLOGY = np.dtype(
    [
        ("use_color", "u1"),
        ("use_material", "u1"),
        ("pad", "V2"),
        ("color", "<u4"),
        ("material_id", "<i8"),
        ("transparency", "<f8"),
        ("u", "<f8"),
        ("v", "<f8"),
    ]
)
# A Snappy element expands at most 64 output bytes from a 3-byte copy: no honest chunk inflates more than
# 22x. Checking the announced length against that bound stops a forged length from allocating gigabytes.
_MAX_SNAPPY_RATIO = 22
_snappy_raw = cramjam.snappy.decompress_raw
# Symbology is frozen: every stream starts from this one instance.
_NO_SYMBOLOGY = Symbology()
_new = object.__new__

_BGFB_OPS = frozenset(
    {
        OpCode.CURVE_VECTOR,
        OpCode.POLYFACE,
        OpCode.CURVE_PRIMITIVE,
        OpCode.SOLID_PRIMITIVE,
        OpCode.BSPLINE_SURFACE,
        OpCode.BREP_POLYFACE,
        OpCode.BREP_CURVE_VECTOR,
    }
)
# The old facet and edge fallbacks of a Parasolid B-rep (attached to the B-rep just before them).
_FALLBACK_OPS = frozenset({OpCode.BREP_POLYFACE, OpCode.BREP_CURVE_VECTOR})


# ---------------------------------------------------------------------------------------------------
# container
# ---------------------------------------------------------------------------------------------------


def _varint(chunk: bytes, where: str) -> int:
    value = shift = 0
    for i in range(min(len(chunk), 5)):
        byte = chunk[i]
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value
        shift += 7
    raise GeometryCompressionError(f"{where}: the Snappy block's length varint is truncated or too long")


def decompress(blob: bytes) -> bytes:
    """Join the chunked raw Snappy blocks of a GeometryStream column value."""
    data = blob if type(blob) is bytes else bytes(blob)
    # The common case, one chunk whose length varint takes 1 or 2 bytes, checked inline; anything else
    # (several chunks, a longer varint, a failed check) goes the general way, which says what is wrong.
    n = len(data)
    if n >= 4 and data[0] | data[1] << 8 == n:
        expected = data[2]
        if expected & 0x80:
            expected = -1 if data[3] & 0x80 else (expected & 0x7F) | data[3] << 7
        if 0 <= expected <= _MAX_SNAPPY_RATIO * (n - 2):
            try:
                out = _snappy_raw(data[2:])
            except cramjam.DecompressionError:
                pass
            else:
                if len(out) == expected:
                    return bytes(out)
    return _decompress_chunks(data)


def _decompress_chunks(data: bytes) -> bytes:
    if not data:
        raise GeometryCompressionError("empty GeometryStream blob")
    parts = []
    pos = chunk_no = 0
    while pos < len(data):
        where = f"Snappy chunk #{chunk_no} at blob byte {pos}"
        if len(data) - pos < 2:
            raise GeometryCompressionError(f"{where}: 1 byte left, a chunk size takes 2")
        size = _CHUNK.unpack_from(data, pos)[0]
        if size <= 2:
            raise GeometryCompressionError(f"{where}: chunk size {size} (it includes its own 2 bytes)")
        if pos + size > len(data):
            raise GeometryCompressionError(
                f"{where}: chunk of {size} bytes runs past the end of the {len(data)}-byte blob"
            )
        chunk = data[pos + 2 : pos + size]
        expected = _varint(chunk, where)
        if expected > _MAX_SNAPPY_RATIO * len(chunk):
            raise GeometryCompressionError(
                f"{where}: announces {expected} bytes from {len(chunk)} compressed bytes "
                "(more than Snappy can expand)"
            )
        try:
            out = cramjam.snappy.decompress_raw(chunk)
        except cramjam.DecompressionError as exc:
            raise GeometryCompressionError(f"{where}: corrupt Snappy block ({exc})") from None
        if len(out) != expected:
            raise GeometryCompressionError(
                f"{where}: inflated to {len(out)} bytes, the block announces {expected}"
            )
        parts.append(out)
        pos += size
        chunk_no += 1
    return b"".join(parts) if len(parts) > 1 else bytes(parts[0])


# ---------------------------------------------------------------------------------------------------
# ElementGraphics.fbs operations
# ---------------------------------------------------------------------------------------------------


def _point(t: Table, slot: int, field: str) -> tuple[float, float, float] | None:
    v = t.struct_f64(slot, 3, field)
    return None if v is None else (v[0], v[1], v[2])


def _need(fb: FlatBuffer, value: tuple[float, ...] | None, what: str) -> tuple[float, ...]:
    if value is None:
        raise fb.fail(f"{what} is missing")
    return value


def _points_geometry(points: F64Array, boundary: int) -> CurvePrimitive | CurveVector:
    if boundary == Boundary.CLOSED:  # a shape: a closed planar region
        return CurveVector(CurveVectorType.OUTER, (LineString(points),))
    if boundary == Boundary.OPEN:
        return LineString(points)
    return PointString(points)


def _point_primitive(t: Table, two_d: bool) -> CurvePrimitive | CurveVector:
    width = 2 if two_d else 3
    coords = t.struct_array(0, "<f8", width, "coords")
    if coords is None:
        coords = np.zeros((0, width))
    if two_d:
        # 2D geometry lies in the XY plane at z = 0 (bim-format.md §1.5)
        xyz = np.zeros((coords.shape[0], 3))
        xyz[:, :2] = coords
        xyz.flags.writeable = False
        coords = xyz
    return _points_geometry(coords, t.i8(1, "boundary"))


def _arc(t: Table) -> Arc | CurveVector:
    fb = t.fb
    center, vector0, vector90 = (
        t.f64_view(i, 3, name) for i, name in enumerate(("center", "vector0", "vector90"))
    )
    if center is None or vector0 is None or vector90 is None:
        raise fb.fail("ArcPrimitive: center, vector0 or vector90 is missing")
    arc = Arc(
        center=center,
        vector0=vector0,
        vector90=vector90,
        start=t.f64(3, "start"),
        sweep=t.f64(4, "sweep"),
    )
    if t.i8(5, "boundary") == Boundary.CLOSED:  # a filled ellipse
        return CurveVector(CurveVectorType.OUTER, (arc,))
    return arc


def _part(t: Table) -> PartInstance:
    return _make(
        PartInstance,
        part_id=t.i64(0, "geomPartId"),
        origin=_point(t, 1, "origin") or (0.0, 0.0, 0.0),
        yaw=t.f64(2, "yaw"),
        pitch=t.f64(3, "pitch"),
        roll=t.f64(4, "roll"),
        scale=t.f64(5, "scale", 1.0),
    )


def _geometry_class(value: int) -> GeometryClass:
    return GeometryClass(value) if value in GeometryClass._value2member_map_ else GeometryClass.PRIMARY


def _basic_symbology(t: Table) -> BasicSymbology:
    return BasicSymbology(
        subcategory_id=t.i64(0, "subCategoryId"),
        color=t.u32(1, "color"),
        weight=t.u32(2, "weight"),
        line_style_id=t.i64(3, "lineStyleId"),
        transparency=t.f64(4, "transparency"),
        display_priority=t.i32(5, "displayPriority"),
        geometry_class=_geometry_class(t.u8(6, "geomClass")),
        use_color=t.bool(7, "useColor"),
        use_weight=t.bool(8, "useWeight"),
        use_style=t.bool(9, "useStyle"),
    )


def _line_style_modifiers(t: Table) -> LineStyleModifiers:
    return LineStyleModifiers(
        modifiers=t.u32(0, "modifiers"),
        scale=t.f64(1, "scale"),
        dash_scale=t.f64(2, "dashScale"),
        gap_scale=t.f64(3, "gapScale"),
        start_width=t.f64(4, "startWidth"),
        end_width=t.f64(5, "endWidth"),
        dist_phase=t.f64(6, "distPhase"),
        fract_phase=t.f64(7, "fractPhase"),
        normal=_point(t, 8, "normal"),
        yaw=t.f64(9, "yaw"),
        pitch=t.f64(10, "pitch"),
        roll=t.f64(11, "roll"),
    )


def _area_fill(t: Table) -> AreaFill:
    fill = t.u8(0, "fill")
    mode = t.u8(5, "mode")
    colors = t.array(10, "<u4", "colors")
    values = t.array(11, "<f8", "values")
    thematic_table = t.table(12, "ThematicSettings", "thematicSettings")
    thematic = None
    if thematic_table is not None:
        rng = thematic_table.struct_f64(5, 2, "range")
        thematic = ThematicSettings(
            step_count=thematic_table.u32(0, "stepCount"),
            margin=thematic_table.f64(1, "margin"),
            margin_color=thematic_table.u32(2, "marginColor"),
            mode=thematic_table.u32(3, "mode"),
            color_scheme=thematic_table.u32(4, "colorScheme"),
            range=None if rng is None else (rng[0], rng[1]),
        )
    return AreaFill(
        fill=FillDisplay(fill) if fill in FillDisplay._value2member_map_ else FillDisplay.NEVER,
        color=t.u32(1, "color"),
        use_color=t.bool(2, "useColor"),
        background_fill=t.u8(3, "backgroundFill"),
        transparency=t.f64(4, "transparency"),
        gradient_mode=GradientMode(mode) if mode in GradientMode._value2member_map_ else GradientMode.NONE,
        gradient_flags=t.u16(6, "flags"),
        gradient_angle=t.f64(7, "angle"),
        gradient_tint=t.f64(8, "tint"),
        gradient_shift=t.f64(9, "shift"),
        gradient_colors=() if colors is None else tuple(int(c) for c in colors),
        gradient_values=() if values is None else tuple(float(v) for v in values),
        thematic=thematic,
    )


def _pattern(t: Table) -> AreaPattern:
    def_lines = []
    for line in t.tables(14, "DwgHatchDefLine", "defLine"):
        through = line.struct_f64(1, 2, "through")
        offset = line.struct_f64(2, 2, "offset")
        dashes = line.array(3, "<f8", "dashes")
        def_lines.append(
            HatchDefLine(
                angle=line.f64(0, "angle"),
                through=None if through is None else (through[0], through[1]),
                offset=None if offset is None else (offset[0], offset[1]),
                dashes=() if dashes is None else tuple(float(d) for d in dashes),
            )
        )
    return AreaPattern(
        origin=_point(t, 0, "origin"),
        rotation=t.struct_f64(1, 9, "rotation"),
        space1=t.f64(2, "space1"),
        space2=t.f64(3, "space2"),
        angle1=t.f64(4, "angle1"),
        angle2=t.f64(5, "angle2"),
        scale=t.f64(6, "scale"),
        color=t.u32(7, "color"),
        weight=t.u32(8, "weight"),
        use_color=t.bool(9, "useColor"),
        use_weight=t.bool(10, "useWeight"),
        invisible_boundary=t.bool(11, "invisibleBoundary"),
        snappable=t.bool(12, "snappable"),
        symbol_id=t.i64(13, "symbolId"),
        def_lines=tuple(def_lines),
    )


def _material(t: Table) -> Material:
    return Material(
        use_material=t.bool(0, "useMaterial"),
        material_id=t.i64(1, "materialId"),
        origin=_point(t, 2, "origin"),
        size=_point(t, 3, "size"),
        yaw=t.f64(4, "yaw"),
        pitch=t.f64(5, "pitch"),
        roll=t.f64(6, "roll"),
        trans2x3=t.struct_f64(7, 6, "trans2x3"),
    )


def _text_string(t: Table) -> TextString:
    fb = t.fb
    style = t.table(3, "TextStringStyle", "style")
    if style is None:
        raise fb.fail("TextString.style is missing")
    transform = t.f64_view(4, 12, "transform")
    rng = t.struct_f64(5, 4, "range")
    glyph_origins = t.struct_array(7, "<f8", 2, "glyphOrigins")
    return TextString(
        text=t.string(2, "text") or "",
        font_id=style.u32(2, "fontId"),
        bold=style.bool(3, "isBold"),
        italic=style.bool(4, "isItalic"),
        underline=style.bool(5, "isUnderlined"),
        height=style.f64(6, "height"),
        width_factor=style.f64(7, "widthFactor"),
        # an absent transform is the identity (the writer omits it then)
        transform=_frozen(np.eye(3, 4)) if transform is None else transform.reshape(3, 4),
        range_low=None if rng is None else _frozen(rng[0:2]),
        range_high=None if rng is None else _frozen(rng[2:4]),
        glyph_ids=t.array(6, "<u4", "glyphIds"),
        glyph_origins=glyph_origins,
    )


def _image(t: Table) -> Image:
    fb = t.fb
    corners = [_need(fb, t.struct_f64(2 + i, 3, f"tileCorner{i}"), f"Image.tileCorner{i}") for i in range(4)]
    return Image(
        corners=_frozen(corners),
        texture_id=t.i64(10, "textureId"),
        draw_border=t.bool(0, "drawBorder"),
        use_fill_tint=t.bool(1, "useFillTint"),
        width=t.u32(6, "width"),
        height=t.u32(7, "height"),
        format=t.u32(8, "format"),
        byte_data_size=t.bytes_len(9, "byteData") or 0,
    )


def _brep(t: Table) -> BRep:
    transform = t.f64_view(0, 12, "entityTransform")
    brep_type = t.u8(1, "brepType")
    symbology = t.record_array(3, _FACE_SYMBOLOGY, "symbology")
    index = t.struct_array(4, "<i4", 2, "symbologyIndex")
    faces: tuple[FaceSymbology, ...] = ()
    if symbology is not None:
        faces = tuple(
            FaceSymbology(
                use_color=bool(s["use_color"]),
                use_material=bool(s["use_material"]),
                color=int(s["color"]),
                material_id=int(s["material_id"]),
                transparency=float(s["transparency"]),
                uv=(float(s["u"]), float(s["v"])),
            )
            for s in symbology
        )
    return BRep(
        brep_type=BRepType(brep_type) if brep_type in BRepType._value2member_map_ else BRepType.SOLID,
        transform=None if transform is None else transform.reshape(3, 4),
        data_size=t.bytes_len(2, "entityData") or 0,
        face_symbology=faces,
        face_symbology_index=index,
    )


def _sub_range(t: Table) -> SubGraphicRange:
    coords = t.struct_array(0, "<f8", 3, "coords")
    if coords is None or coords.shape[0] != 2:
        n = 0 if coords is None else coords.shape[0]
        raise t.fb.fail(f"SubGraphicRange holds {n} points (a range is 2)")
    lo, hi = coords.tolist()
    return SubGraphicRange((lo[0], lo[1], lo[2]), (hi[0], hi[1], hi[2]))


def _table_op(read: Callable[[Table], Op], name: str) -> Callable[[bytes, int, int, Where], Op]:
    def decode(data: bytes, start: int, end: int, where: Where) -> Op:
        return read(FlatBuffer(data, start, end, where).root(name))

    return decode


# How each operation is read, and what it is to the stream (one dict look-up per operation).
_HEADER, _GEOMETRY, _RANGE, _APPEARANCE, _FALLBACK = range(5)
_DISPATCH: dict[int, tuple[OpCode, str, Callable[[bytes, int, int, Where], Op], int]] = {
    int(op): (op, op.name, read_bgfb, _FALLBACK if op in _FALLBACK_OPS else _GEOMETRY) for op in _BGFB_OPS
}
for _op, _name, _read, _kind in (
    (OpCode.SUB_GRAPHIC_RANGE, "PointPrimitive", _sub_range, _RANGE),
    (OpCode.GEOMETRY_PART_INSTANCE, "GeometryPart", _part, _GEOMETRY),
    (OpCode.BASIC_SYMBOLOGY, "BasicSymbology", _basic_symbology, _APPEARANCE),
    (OpCode.POINT_PRIMITIVE, "PointPrimitive", lambda t: _point_primitive(t, two_d=False), _GEOMETRY),
    (OpCode.POINT_PRIMITIVE_2D, "PointPrimitive2d", lambda t: _point_primitive(t, two_d=True), _GEOMETRY),
    (OpCode.ARC_PRIMITIVE, "ArcPrimitive", _arc, _GEOMETRY),
    (OpCode.AREA_FILL, "AreaFill", _area_fill, _APPEARANCE),
    (OpCode.PATTERN, "AreaPattern", _pattern, _APPEARANCE),
    (OpCode.MATERIAL, "Material", _material, _APPEARANCE),
    (OpCode.TEXT_STRING, "TextString", _text_string, _GEOMETRY),
    (OpCode.LINE_STYLE_MODIFIERS, "LineStyleModifiers", _line_style_modifiers, _APPEARANCE),
    (OpCode.PARASOLID_BREP, "BRepData", _brep, _GEOMETRY),
    (OpCode.IMAGE, "Image", _image, _GEOMETRY),
):
    _DISPATCH[int(_op)] = (_op, _op.name, _table_op(_read, _name), _kind)
_DISPATCH[int(OpCode.HEADER)] = (OpCode.HEADER, OpCode.HEADER.name, read_bgfb, _HEADER)
assert {int(op) for op in OpCode} == set(_DISPATCH), "every opcode is dispatched"


def _decode_op(opcode: OpCode, data: bytes, start: int, end: int, where: Where) -> Op:
    return _DISPATCH[int(opcode)][2](data, start, end, where)


# ---------------------------------------------------------------------------------------------------
# the stream
# ---------------------------------------------------------------------------------------------------


def _apply(symbology: Symbology, op: Op) -> Symbology:
    """The symbology after an appearance operation, as iTwin.js's GeometryStreamIterator applies it."""
    if isinstance(op, BasicSymbology):
        # a BasicSymbology resets every override to the subcategory's appearance, then sets its own
        return Symbology(
            subcategory_id=op.subcategory_id or symbology.subcategory_id,
            color=op.color if op.use_color else None,
            weight=op.weight if op.use_weight else None,
            line_style_id=op.line_style_id if op.use_style else None,
            transparency=op.transparency,
            display_priority=op.display_priority,
            geometry_class=op.geometry_class,
        )
    if isinstance(op, AreaFill):
        changes: dict[str, object] = {"fill_display": op.fill}
        if op.fill != FillDisplay.NEVER:
            changes["fill_transparency"] = op.transparency
            if op.gradient_mode != GradientMode.NONE:
                changes["gradient"] = op
            elif op.background_fill:
                changes["background_fill"] = op.background_fill
            elif op.use_color:
                changes["fill_color"] = op.color
        return dataclasses.replace(symbology, **changes)  # type: ignore[arg-type]
    if isinstance(op, AreaPattern):
        return dataclasses.replace(symbology, pattern=op)
    if isinstance(op, Material):
        return dataclasses.replace(symbology, material_id=op.material_id) if op.use_material else symbology
    if isinstance(op, LineStyleModifiers):
        return dataclasses.replace(symbology, line_style_modifiers=op)
    return symbology


def _entry(
    geometry: Geometry,
    symbology: Symbology,
    local_range: SubGraphicRange | None,
    opcode: OpCode,
    op_index: int,
) -> GeometryEntry:
    """``GeometryEntry(...)``: a frozen dataclass's ``__init__`` sets each field through
    ``object.__setattr__``; filling the new instance's dict makes the same object in a third of the time
    (this runs for every entry of every stream)."""
    entry: GeometryEntry = _new(GeometryEntry)
    entry.__dict__.update(
        geometry=geometry, symbology=symbology, local_range=local_range, opcode=opcode, op_index=op_index
    )
    return entry


def _stream(
    header: Header,
    ops: tuple[Op, ...],
    entries: tuple[GeometryEntry, ...],
    size: int,
    unknown: tuple[Unknown, ...],
) -> DecodedStream:
    """``DecodedStream(...)``, made as ``_entry`` makes an entry."""
    stream: DecodedStream = _new(DecodedStream)
    stream.__dict__.update(header=header, ops=ops, entries=entries, size=size, unknown=unknown)
    return stream


def decode_opcode_stream(data: bytes) -> DecodedStream:
    """Decode an already decompressed stream (GeomBlobHeader and operations)."""
    if len(data) < 8:
        raise GeometryHeaderError(f"{len(data)} bytes: the GeomBlobHeader alone takes 8")
    signature, size = _op_header(data, 0)
    if signature != SIGNATURE:
        raise GeometryHeaderError(f"GeomBlobHeader signature 0x{signature:04x}, expected 0x{SIGNATURE:04x}")
    if size != len(data) - 8:
        raise GeometryHeaderError(
            f"GeomBlobHeader announces {size} bytes of operations, {len(data) - 8} follow"
        )

    ops: list[Op] = []
    entries: list[GeometryEntry] = []
    unknown: list[Unknown] = []
    symbology = _NO_SYMBOLOGY
    local_range: SubGraphicRange | None = None
    header: Header | None = None
    brep_at: int | None = None  # entries index of a B-rep still collecting its fallback facets and edges
    pos = 8
    end = len(data)
    dispatch = _DISPATCH
    while pos < end:
        index = len(ops)
        if end - pos < 8:
            raise GeometryOpcodeError(
                f"operation #{index} at stream byte {pos}: {end - pos} bytes left, 8 needed"
            )
        raw_opcode, op_size = _op_header(data, pos)
        start = pos + 8
        if op_size > end - start:
            raise GeometryOpcodeError(
                f"operation #{index} (opcode {raw_opcode}) at stream byte {pos}: a {op_size}-byte payload, "
                f"{end - start} bytes left"
            )
        pos = start + op_size
        known = dispatch.get(raw_opcode)
        if known is None:
            unknown_op = Unknown(raw_opcode, op_size)
            ops.append(unknown_op)
            unknown.append(unknown_op)
            brep_at = None
            continue
        opcode, name, read, kind = known
        # the text of ``where`` is made only when an error is raised
        where = (index, name, raw_opcode, start - 8)
        if kind == _HEADER:
            if index != 0:
                raise GeometryOpcodeError(f"{where_text(where)}: a Header after the first operation")
            if op_size < 8:
                raise GeometryOpcodeError(f"{where_text(where)}: a {op_size}-byte Header payload, 8 needed")
            version, flags = _op_header(data, start)
            header = _make(Header, version=version, flags=flags)
            ops.append(header)
            continue
        if header is None:
            raise GeometryOpcodeError(
                f"{where_text(where)}: the stream does not start with a Header operation"
            )
        op: Op = read(data, start, pos, where)
        ops.append(op)
        if kind == _GEOMETRY or (kind == _FALLBACK and brep_at is None):
            brep_at = None
            if opcode == OpCode.GEOMETRY_PART_INSTANCE:
                # a sub-graphic range never applies to a part (iTwin.js drops it there)
                local_range = None
            entries.append(_entry(op, symbology, local_range, opcode, index))  # type: ignore[arg-type]
            if opcode == OpCode.PARASOLID_BREP:
                brep_at = len(entries) - 1
        elif kind == _FALLBACK:
            # the old facet and edge fallbacks of the B-rep just before: attach them to it
            assert brep_at is not None
            entry = entries[brep_at]
            assert isinstance(entry.geometry, BRep)
            brep = entry.geometry
            if isinstance(op, Polyface) and opcode == OpCode.BREP_POLYFACE:
                brep = dataclasses.replace(brep, facets=(*brep.facets, op))
            elif isinstance(op, CurveVector | CurvePrimitive):
                brep = dataclasses.replace(brep, edges=(*brep.edges, op))
            else:
                raise GeometryOpcodeError(f"{where_text(where)}: holds a {type(op).__name__}")
            entries[brep_at] = dataclasses.replace(entry, geometry=brep)
        elif kind == _RANGE:
            brep_at = None
            local_range = op  # type: ignore[assignment]
        else:
            brep_at = None
            symbology = _apply(symbology, op)
    if header is None:
        raise GeometryOpcodeError("the stream holds no operation (not even its Header)")
    return _stream(header, tuple(ops), tuple(entries), len(data), tuple(unknown))


def decode_geometry_stream(blob: bytes) -> DecodedStream:
    """Decode one GeometryStream column value (3D, 2D or GeometryPart) into typed geometry."""
    return decode_opcode_stream(decompress(blob))
