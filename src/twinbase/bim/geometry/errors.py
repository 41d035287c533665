"""The typed errors of the GeometryStream decoder.

Every failure to decode one element's GeometryStream is a ``GeometryStreamError``: callers decoding many
elements catch it per element and continue with the others. The message says where the bytes went wrong
(chunk, byte offset, opcode number and name, FlatBuffer table and field).
"""

from __future__ import annotations

from twinbase.bim.identity import BimFormatError


class GeometryStreamError(BimFormatError):
    """One GeometryStream blob could not be decoded; the message says where and why."""


class GeometryCompressionError(GeometryStreamError):
    """The chunked raw Snappy container is truncated or corrupt."""


class GeometryHeaderError(GeometryStreamError):
    """The 8-byte GeomBlobHeader is missing, has the wrong signature or announces the wrong size."""


class GeometryOpcodeError(GeometryStreamError):
    """The opcode stream is malformed: a truncated operation, a missing Header, or a payload whose
    content is impossible (e.g. a coordinate count that is not a multiple of 3)."""


class GeometryFlatBufferError(GeometryStreamError):
    """A FlatBuffer payload (ElementGraphics.fbs or the BGFB allcg.fbs) points outside its bytes or holds
    values its schema forbids."""
