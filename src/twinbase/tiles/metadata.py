"""The feature property table: ``EXT_structural_metadata`` with one binary row per ``FeatureTable`` row.

Property names are what the Bentley clients read (``element`` and ``subcategory`` for CesiumJS's iTwin
sample; ``model`` and ``geometryClass`` for the Unreal plugin). Ids are binary UINT64 columns: JSON numbers
are doubles and lose ids above 2^53, so ids never appear in the JSON.

Binary layout (the metadata spec's rules): each column is its own buffer view, starting 8-byte aligned
(the writer aligns every view to 8), holding exactly ``count * size`` bytes; strings are UTF-8 bytes plus
``count + 1`` offsets of the narrowest type that holds the last one (UINT8, UINT16, UINT32 or UINT64: a
tile's strings rarely pass 64 KiB, and UINT16 halves the offsets). A missing label is written as the empty
string, which the class declares as the property's ``noData`` value (so readers see "no value", not a name
""). A string column whose values are all empty is left out of the table (allowed for non-required
properties, and a zero-length buffer view is not). The GLB writer stores the four id columns
``EXT_meshopt_compression``-encoded (8-byte rows; ids of neighbouring features differ little), which
readers decode like any compressed buffer view; the other columns are not a multiple of 4 bytes a row.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from twinbase.tiles.model import FeatureTable

SCHEMA_ID = "twinbase"
CLASS_ID = "feature"

ID_PROPERTIES = (
    ("element", "element_ids", "Element id"),
    ("model", "model_ids", "Model id"),
    ("category", "category_ids", "Category id"),
    ("subcategory", "subcategory_ids", "SubCategory id"),
)


def schema() -> dict[str, Any]:
    props: dict[str, Any] = {
        name: {"name": title, "type": "SCALAR", "componentType": "UINT64", "required": True}
        for name, _, title in ID_PROPERTIES
    }
    props["geometryClass"] = {
        "name": "Geometry class",
        "description": "0 primary, 1 construction, 2 dimension, 3 pattern",
        "type": "SCALAR",
        "componentType": "UINT8",
        "required": True,
    }
    props["className"] = {"name": "Class", "type": "STRING", "noData": ""}
    props["label"] = {"name": "Label", "type": "STRING", "noData": "", "semantic": "NAME"}
    return {
        "id": SCHEMA_ID,
        "classes": {
            CLASS_ID: {
                "name": "iModel feature",
                "description": "An element seen through one subcategory and geometry class",
                "properties": props,
            }
        },
    }


def _strings(values: list[str] | list[str | None]) -> tuple[bytes, np.ndarray]:
    encoded = [(v or "").encode("utf-8") for v in values]
    lengths = np.fromiter(map(len, encoded), np.int64, count=len(encoded))
    offsets = np.zeros(len(encoded) + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return b"".join(encoded), offsets


#: String offset types, narrowest first: the table's offsets take the first that holds the last offset.
OFFSET_TYPES = (("UINT8", "<u1"), ("UINT16", "<u2"), ("UINT32", "<u4"), ("UINT64", "<u8"))


def _offset_type(last: int) -> tuple[str, str]:
    for name, dtype in OFFSET_TYPES:
        if last < 1 << (8 * np.dtype(dtype).itemsize):
            return name, dtype
    raise ValueError(f"string data of {last} bytes")


def structural_metadata(
    features: FeatureTable,
    add_view: Callable[[bytes], int],
    add_column: Callable[[np.ndarray], int] | None = None,
) -> dict[str, Any]:
    """The root ``EXT_structural_metadata`` object; ``add_view(data)`` stores one 8-byte aligned buffer
    view and returns its index; ``add_column(rows)`` (default: ``add_view``) stores a column of 8-byte id
    rows, which the GLB writer meshopt-encodes."""
    props: dict[str, Any] = {}
    for name, attr, _ in ID_PROPERTIES:
        column = np.ascontiguousarray(getattr(features, attr), dtype="<u8")
        view = add_column(column.view(np.uint8).reshape(-1, 8)) if add_column else add_view(column.tobytes())
        props[name] = {"values": view}
    props["geometryClass"] = {
        "values": add_view(np.ascontiguousarray(features.geometry_classes, "u1").tobytes())
    }
    for name, values in (("className", features.class_names), ("label", features.labels)):
        data, offsets = _strings(values)
        if not data:
            continue
        offset_type, dtype = _offset_type(int(offsets[-1]))
        props[name] = {
            "values": add_view(data),
            "stringOffsets": add_view(offsets.astype(dtype).tobytes()),
            "stringOffsetType": offset_type,
        }
    return {
        "schema": schema(),
        "propertyTables": [
            {"name": "features", "class": CLASS_ID, "count": len(features), "properties": props}
        ],
    }
