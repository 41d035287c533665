"""GeometryStream decoding: blob bytes in, typed geometry out (no database, no HTTP).

``decode_geometry_stream(blob)`` reads one ``GeometryStream`` column value (of a 3D or 2D geometric
element or of a GeometryPart) and returns a ``DecodedStream``: every operation, and the geometric entries
with the symbology in effect. See ``stream`` for the container, ``flatbuf`` for the FlatBuffer reader,
``bgfb`` for the allcg.fbs geometry and ``types`` for the result.
"""

from twinbase.bim.geometry.errors import (
    GeometryCompressionError,
    GeometryFlatBufferError,
    GeometryHeaderError,
    GeometryOpcodeError,
    GeometryStreamError,
)
from twinbase.bim.geometry.stream import decode_geometry_stream, decode_opcode_stream, decompress
from twinbase.bim.geometry.types import DecodedStream, GeometryEntry, OpCode, Symbology

__all__ = [
    "DecodedStream",
    "GeometryCompressionError",
    "GeometryEntry",
    "GeometryFlatBufferError",
    "GeometryHeaderError",
    "GeometryOpcodeError",
    "GeometryStreamError",
    "OpCode",
    "Symbology",
    "decode_geometry_stream",
    "decode_opcode_stream",
    "decompress",
]
