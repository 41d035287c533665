"""The iMdl test tooling (tests/support/imdl_check.py) works on real tiles: the native backend's root tiles of
a real iModel, decoded by the pinned core-frontend reader, carry that iModel's elements where they are.

LargeNumericRenderMaterialTextureId.bim: 6 elements (a sphere and a box at each of (0,0,0), (1,1,1), (2,2,2),
placement boxes of +-0.25, no rotation) in physical model 0x1c, and an empty physical model 0x11.
"""

from __future__ import annotations

import math
import struct
from pathlib import Path
from typing import Any

import pytest

from conftest import SHARED_DATA
from support.bimtables import open_readonly
from support.imdl_check import dump_imdl, native_root_tiles, reader_versions, to_multi_model, to_world

BIM = SHARED_DATA / "bim" / "LargeNumericRenderMaterialTextureId.bim"
# Native tiles quantize against the tile tree's whole range (about 200 m here): a few mm a step.
PLACEMENT_TOLERANCE = 0.01


@pytest.fixture(scope="module")
def native(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(model answer of imdl-native, dump of its root tile) for every spatial model."""
    assert BIM.exists(), f"test data missing: {BIM} (see ../shared/data/README.md)"
    models = native_root_tiles(BIM, tmp_path_factory.mktemp("native-imdl"))
    assert all("error" not in m for m in models), models
    dumps = dump_imdl([Path(m["file"]) for m in models], [m["modelId"] for m in models])
    return list(zip(models, dumps, strict=True))


def _elements() -> dict[str, dict[str, Any]]:
    """Every element by hex id: its model, and for 3D geometric ones the placement box (world; no
    rotation)."""
    out: dict[str, dict[str, Any]] = {}
    with open_readonly(BIM) as conn:
        for eid, model in conn.execute("SELECT Id, ModelId FROM bis_Element"):
            out[hex(eid)] = {"model": hex(model)}
        for row in conn.execute(
            "SELECT ElementId, Origin_X, Origin_Y, Origin_Z, Yaw, Pitch, Roll, BBoxLow_X, BBoxLow_Y, "
            "BBoxLow_Z, BBoxHigh_X, BBoxHigh_Y, BBoxHigh_Z FROM bis_GeometricElement3d"
        ):
            origin, angles, low, high = row[1:4], row[4:7], row[7:10], row[10:13]
            assert angles == (0, 0, 0), "the placement check below assumes unrotated elements"
            out[hex(row[0])]["box"] = (
                [o + v for o, v in zip(origin, low, strict=True)],
                [o + v for o, v in zip(origin, high, strict=True)],
            )
    return out


def test_reader_is_the_pinned_one() -> None:
    assert reader_versions() == {"coreFrontend": "5.13.5", "coreCommon": "5.13.3"}


def test_native_root_tiles_decode(native: list[tuple[dict[str, Any], dict[str, Any]]]) -> None:
    assert [m["modelId"] for m, _ in native] == ["0x11", "0x1c"]
    for model, dump in native:
        assert dump["status"] == "ok", dump
        assert model["rootContentId"] == "0/0/0/0/1"
        assert model["treeId"].endswith(f"_{model['modelId']}")
        # Native tile-tree tiles: stamped 1.4, single-model feature table (no flag 16).
        assert (dump["header"]["major"], dump["header"]["minor"]) == (1, 4)
        assert model["header"]["flags"] == dump["header"]["flags"]
        assert not dump["featureTable"]["multiModel"]
        assert dump["droppedPrimitives"] == 0
        assert dump["problems"] == [] and dump["unalignedBufferViews"] == []
        assert dump["binaryOffset"] % 4 == 0
    empty, boxes = (d for _, d in native)
    assert empty["features"] == [] and empty["primitives"] == [] and empty["perFeature"] == {}
    assert len(boxes["features"]) == 6
    assert boxes["primitives"], "the root tile of the model with geometry holds meshes"


def test_features_are_the_imodels_elements(native: list[tuple[dict[str, Any], dict[str, Any]]]) -> None:
    elements = _elements()
    for model, dump in native:
        for feature in dump["features"]:
            element = elements.get(feature["elementId"])
            assert element is not None, f"{feature['elementId']} is not an element of {BIM.name}"
            assert element["model"] == model["modelId"] == feature["modelId"]
            assert feature["subCategoryId"] in elements, "subcategories are elements too"
            assert feature["geometryClass"] == 0


def test_per_feature_geometry_is_where_the_elements_are(
    native: list[tuple[dict[str, Any], dict[str, Any]]],
) -> None:
    elements = _elements()
    for model, dump in native:
        per_feature = dump["perFeature"]
        assert sorted(per_feature, key=int) == [str(i) for i in range(len(dump["features"]))]
        assert sum(f["triangles"] for f in per_feature.values()) == sum(
            p["triangleCount"] for p in dump["primitives"]
        )
        content = dump["header"]["contentRange"]
        for index, figures in per_feature.items():
            assert figures["triangles"] > 0
            assert all(math.isfinite(v) for v in figures["low"] + figures["high"])
            assert figures["colors"], "every feature has a colour"
            for k in range(3):  # inside the header's content range (tree-local)
                assert content["low"][k] - PLACEMENT_TOLERANCE <= figures["low"][k]
                assert figures["high"][k] <= content["high"][k] + PLACEMENT_TOLERANCE
            low = to_world(model["location"], figures["low"])
            high = to_world(model["location"], figures["high"])
            box_low, box_high = elements[dump["features"][int(index)]["elementId"]]["box"]
            for k in range(3):
                assert low[k] == pytest.approx(box_low[k], abs=PLACEMENT_TOLERANCE)
                assert high[k] == pytest.approx(box_high[k], abs=PLACEMENT_TOLERANCE)
        for primitive in dump["primitives"]:
            assert primitive["type"] == "mesh" and primitive["surfaceType"] == 1  # lit
            assert primitive["materialName"] in {"Material0", "Material1", "Material2"}
            assert primitive["indicesInRange"] and primitive["featureIndicesInRange"]
            assert primitive["colorIndicesInRange"]
            assert primitive["normalsUnit"]
            assert primitive["normalsFacing"] == 1.0  # closed solids: outward normals, counter-clockwise
            assert primitive["problems"] == []


def test_dump_reads_multi_model_tables_and_reports_bad_tiles(
    native: list[tuple[dict[str, Any], dict[str, Any]]], tmp_path: Path
) -> None:
    model, golden = native[1]
    tile = Path(model["file"]).read_bytes()
    variants: dict[str, bytes] = {"multi": to_multi_model(tile, 0x20000000007)}
    newer = bytearray(tile)
    struct.pack_into("<I", newer, 4, 38 << 16)
    variants["newer"] = bytes(newer)
    variants["magic"] = b"iMdx" + tile[4:]
    variants["truncated"] = tile[: len(tile) // 2]
    variants["short"] = tile[:40]
    paths = []
    for name, data in variants.items():
        paths.append(tmp_path / f"{name}.imdl")
        paths[-1].write_bytes(data)
    paths.append(tmp_path / "missing.imdl")
    multi, newer_dump, magic, truncated, short, missing = dump_imdl(paths)

    # The model ids now come from the tile's model table, not from the batch model id (0x1).
    assert multi["status"] == "ok" and multi["featureTable"]["multiModel"]
    assert multi["featureTable"]["numSubCategories"] == 1
    assert multi["header"]["flags"] & 16
    assert {f["modelId"] for f in multi["features"]} == {"0x20000000007"}
    assert [f["elementId"] for f in multi["features"]] == [f["elementId"] for f in golden["features"]]
    assert multi["perFeature"] == golden["perFeature"]
    assert multi["problems"] == []

    assert (newer_dump["status"], newer_dump["statusCode"]) == ("NewerMajorVersion", 6)
    assert (magic["status"], magic["statusCode"]) == ("InvalidHeader", 2)
    # The reader does not bounds-check buffer views: half a tile parses "ok"; the dump's problems catch it.
    assert truncated["status"] == "ok"
    assert any("beyond the" in p for p in truncated["problems"]), truncated["problems"]
    assert any("tileLength" in p for p in truncated["problems"])
    assert short["status"] not in {"ok", "unreadable"}
    assert missing["status"] == "unreadable"
