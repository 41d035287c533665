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

import cramjam
import numpy as np

from twinbase.bim.geometry.bgfb import read_bgfb
from twinbase.bim.geometry.errors import (
    GeometryCompressionError,
    GeometryHeaderError,
    GeometryOpcodeError,
)
from twinbase.bim.geometry.flatbuf import FlatBuffer, Table
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
)

SIGNATURE = 0x0600  # GeomBlobHeader::Signature ("DgnDb06")
_CHUNK = struct.Struct("<H")
_OP = struct.Struct("<II")
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
_OPCODES = {int(op): op for op in OpCode}
_NAMES = {op: op.name for op in OpCode}

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
_GEOMETRY_OPS = frozenset(
    {
        OpCode.POINT_PRIMITIVE,
        OpCode.POINT_PRIMITIVE_2D,
        OpCode.ARC_PRIMITIVE,
        OpCode.CURVE_VECTOR,
        OpCode.POLYFACE,
        OpCode.CURVE_PRIMITIVE,
        OpCode.SOLID_PRIMITIVE,
        OpCode.BSPLINE_SURFACE,
        OpCode.TEXT_STRING,
        OpCode.PARASOLID_BREP,
        OpCode.BREP_POLYFACE,
        OpCode.BREP_CURVE_VECTOR,
        OpCode.IMAGE,
        OpCode.GEOMETRY_PART_INSTANCE,
    }
)


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
    data = bytes(blob)
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
    return PartInstance(
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


_TABLE_OPS = {
    OpCode.SUB_GRAPHIC_RANGE: "PointPrimitive",
    OpCode.GEOMETRY_PART_INSTANCE: "GeometryPart",
    OpCode.BASIC_SYMBOLOGY: "BasicSymbology",
    OpCode.POINT_PRIMITIVE: "PointPrimitive",
    OpCode.POINT_PRIMITIVE_2D: "PointPrimitive2d",
    OpCode.ARC_PRIMITIVE: "ArcPrimitive",
    OpCode.AREA_FILL: "AreaFill",
    OpCode.PATTERN: "AreaPattern",
    OpCode.MATERIAL: "Material",
    OpCode.TEXT_STRING: "TextString",
    OpCode.LINE_STYLE_MODIFIERS: "LineStyleModifiers",
    OpCode.PARASOLID_BREP: "BRepData",
    OpCode.IMAGE: "Image",
}


def _sub_range(t: Table) -> SubGraphicRange:
    coords = t.struct_array(0, "<f8", 3, "coords")
    if coords is None or coords.shape[0] != 2:
        n = 0 if coords is None else coords.shape[0]
        raise t.fb.fail(f"SubGraphicRange holds {n} points (a range is 2)")
    lo, hi = coords
    return SubGraphicRange(
        (float(lo[0]), float(lo[1]), float(lo[2])), (float(hi[0]), float(hi[1]), float(hi[2]))
    )


def _decode_op(opcode: OpCode, data: bytes, start: int, end: int, where: str) -> Op:
    if opcode in _BGFB_OPS:
        return read_bgfb(data, start, end, where)
    fb = FlatBuffer(data, start, end, where)
    t = fb.root(_TABLE_OPS[opcode])
    if opcode == OpCode.SUB_GRAPHIC_RANGE:
        return _sub_range(t)
    if opcode == OpCode.GEOMETRY_PART_INSTANCE:
        return _part(t)
    if opcode == OpCode.BASIC_SYMBOLOGY:
        return _basic_symbology(t)
    if opcode == OpCode.POINT_PRIMITIVE:
        return _point_primitive(t, two_d=False)
    if opcode == OpCode.POINT_PRIMITIVE_2D:
        return _point_primitive(t, two_d=True)
    if opcode == OpCode.ARC_PRIMITIVE:
        return _arc(t)
    if opcode == OpCode.AREA_FILL:
        return _area_fill(t)
    if opcode == OpCode.PATTERN:
        return _pattern(t)
    if opcode == OpCode.MATERIAL:
        return _material(t)
    if opcode == OpCode.TEXT_STRING:
        return _text_string(t)
    if opcode == OpCode.LINE_STYLE_MODIFIERS:
        return _line_style_modifiers(t)
    if opcode == OpCode.PARASOLID_BREP:
        return _brep(t)
    assert opcode == OpCode.IMAGE, opcode
    return _image(t)


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


def decode_opcode_stream(data: bytes) -> DecodedStream:
    """Decode an already decompressed stream (GeomBlobHeader and operations)."""
    if len(data) < 8:
        raise GeometryHeaderError(f"{len(data)} bytes: the GeomBlobHeader alone takes 8")
    signature, size = _OP.unpack_from(data, 0)
    if signature != SIGNATURE:
        raise GeometryHeaderError(f"GeomBlobHeader signature 0x{signature:04x}, expected 0x{SIGNATURE:04x}")
    if size != len(data) - 8:
        raise GeometryHeaderError(
            f"GeomBlobHeader announces {size} bytes of operations, {len(data) - 8} follow"
        )

    ops: list[Op] = []
    entries: list[GeometryEntry] = []
    unknown: list[Unknown] = []
    symbology = Symbology()
    local_range: SubGraphicRange | None = None
    header: Header | None = None
    brep_at: int | None = None  # entries index of a B-rep still collecting its fallback facets and edges
    pos = 8
    end = len(data)
    while pos < end:
        index = len(ops)
        if end - pos < 8:
            raise GeometryOpcodeError(
                f"operation #{index} at stream byte {pos}: {end - pos} bytes left, 8 needed"
            )
        raw_opcode, op_size = _OP.unpack_from(data, pos)
        start = pos + 8
        if op_size > end - start:
            raise GeometryOpcodeError(
                f"operation #{index} (opcode {raw_opcode}) at stream byte {pos}: a {op_size}-byte payload, "
                f"{end - start} bytes left"
            )
        pos = start + op_size
        opcode = _OPCODES.get(raw_opcode)
        if opcode is None:
            unknown_op = Unknown(raw_opcode, op_size)
            ops.append(unknown_op)
            unknown.append(unknown_op)
            brep_at = None
            continue
        where = f"operation #{index} {_NAMES[opcode]} (opcode {raw_opcode}) at stream byte {start - 8}"
        if opcode == OpCode.HEADER:
            if index != 0:
                raise GeometryOpcodeError(f"{where}: a Header after the first operation")
            if op_size < 8:
                raise GeometryOpcodeError(f"{where}: a {op_size}-byte Header payload, 8 needed")
            header = Header(*_OP.unpack_from(data, start))
            ops.append(header)
            continue
        if header is None:
            raise GeometryOpcodeError(f"{where}: the stream does not start with a Header operation")
        op: Op = _decode_op(opcode, data, start, start + op_size, where)
        ops.append(op)
        if opcode in (OpCode.BREP_POLYFACE, OpCode.BREP_CURVE_VECTOR) and brep_at is not None:
            # the old facet and edge fallbacks of the B-rep just before: attach them to it
            entry = entries[brep_at]
            assert isinstance(entry.geometry, BRep)
            brep = entry.geometry
            if isinstance(op, Polyface) and opcode == OpCode.BREP_POLYFACE:
                brep = dataclasses.replace(brep, facets=(*brep.facets, op))
            elif isinstance(op, CurveVector | CurvePrimitive):
                brep = dataclasses.replace(brep, edges=(*brep.edges, op))
            else:
                raise GeometryOpcodeError(f"{where}: holds a {type(op).__name__}")
            entries[brep_at] = dataclasses.replace(entry, geometry=brep)
            continue
        brep_at = None
        if opcode == OpCode.SUB_GRAPHIC_RANGE:
            assert isinstance(op, SubGraphicRange)
            local_range = op
        elif opcode in _GEOMETRY_OPS:
            geometry: Geometry = op  # type: ignore[assignment]
            if opcode == OpCode.GEOMETRY_PART_INSTANCE:
                # a sub-graphic range never applies to a part (iTwin.js drops it there)
                local_range = None
            entries.append(GeometryEntry(geometry, symbology, local_range, opcode, index))
            if opcode == OpCode.PARASOLID_BREP:
                brep_at = len(entries) - 1
        else:
            symbology = _apply(symbology, op)
    if header is None:
        raise GeometryOpcodeError("the stream holds no operation (not even its Header)")
    return DecodedStream(
        header=header, ops=tuple(ops), entries=tuple(entries), size=len(data), unknown=tuple(unknown)
    )


def decode_geometry_stream(blob: bytes) -> DecodedStream:
    """Decode one GeometryStream column value (3D, 2D or GeometryPart) into typed geometry."""
    return decode_opcode_stream(decompress(blob))
