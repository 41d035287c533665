"""Issue #14's acceptance: CesiumJS (npm ``cesium``, pinned in compat/package.json) in headless Chromium
(Debian's ``chromium``) loads a twinbase Mesh Export through its own
``ITwinData.createTilesetFromIModelId`` with ``ITwinPlatform.apiEndpoint`` pointed at twinbase, renders
it, and picks elements whose ids are the iModel's.

The iModel is the generated truth model with an ECEF location (``make_geometry("geolocated")``): the
export then has a root transform to ECEF and lands on CesiumJS's globe where the iModel says. The
driver (``compat/cesium-load.mjs`` + ``compat/cesium/``) frames the whole tileset with
``viewer.zoomTo`` for the screenshot, then for each target puts the camera above a point of the iModel
looking straight down its z axis and picks the canvas centre. What must be picked there is found
independently: a vertical ray cast through iTwin.js ``exportGraphics``' triangles of the same file
(the topmost element at that x, y, and the same one a few centimetres around it). A target over empty
ground must pick nothing.

The screenshot is kept as ``.cache/test-output/cesium-itwin-<backend>.png`` (with the driver's JSON
beside it). Chromium, node and compat/node_modules are required: without them the test fails, it never
skips (``make test`` installs all three).
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray
from PIL import Image

from conftest import ROOT, Server, new_imodel, new_itwin
from support.geometry_truth import Truth, export_truth, load_truth, make_geometry
from support.node import run_json_driver
from test_compat_itwins import _tool, ensure_node_modules
from test_mesh_export_e2e import wait_complete

DRIVER = ROOT / "compat" / "cesium-load.mjs"
OUTPUT = ROOT / ".cache" / "test-output"
DRIVER_TIMEOUT = 240
# Where make-geometry.mjs puts the geolocated model: lon, lat in degrees (the tileset's centre is near).
PLACE = (-75.6207, 40.0285)
# The kinds picked, in order: a plain box, a curved solid, an instanced geometry part (glTF
# EXT_mesh_gpu_instancing in the tiles), a polyface.
PICK_KINDS = ("box", "sphere", "part-box", "polyface-grid")
CAMERA_HEIGHT = 15.0  # metres above the picked point
NEIGHBOURHOOD = 0.15  # metres: the same element must be topmost this far around the point


def chromium() -> str:
    found = os.environ.get("CHROMIUM") or shutil.which("chromium")
    if not found or not Path(found).exists():
        pytest.fail(
            "Debian's chromium is required for the CesiumJS test and is not installed: "
            "'make test' (or 'make chromium') installs it with apt-get"
        )
    return found


class Ground:
    """Every triangle iTwin.js meshes for the iModel, for vertical ray casts (topmost element at x, y)."""

    def __init__(self, truth: Truth) -> None:
        tris: list[NDArray[np.float64]] = []
        owners: list[str] = []
        for element in truth.elements.values():
            if element.triangles:
                tris.append(element.positions[element.indices])
                owners.extend([element.id] * element.triangles)
        self.triangles = np.concatenate(tris)  # (n, 3 corners, xyz)
        self.owners = np.array(owners)

    def topmost(self, x: float, y: float) -> tuple[str | None, float]:
        a, b, c = self.triangles[:, 0], self.triangles[:, 1], self.triangles[:, 2]
        e1, e2 = b - a, c - a
        px, py = x - a[:, 0], y - a[:, 1]
        det = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
        upright = np.abs(det) > 1e-12  # a triangle seen edge-on from above has no inside
        d = np.where(upright, det, 1.0)
        u = (px * e2[:, 1] - py * e2[:, 0]) / d
        v = (e1[:, 0] * py - e1[:, 1] * px) / d
        inside = upright & (u >= 0) & (v >= 0) & (u + v <= 1)
        if not inside.any():
            return None, float("-inf")
        z = np.where(inside, a[:, 2] + u * e1[:, 2] + v * e2[:, 2], -np.inf)
        i = int(np.argmax(z))
        return str(self.owners[i]), float(z[i])


def pick_targets(truth: Truth, ground: Ground) -> list[dict[str, Any]]:
    """One opaque element of each of PICK_KINDS that is topmost over the middle of its range (and around
    it), with that point; then a point over empty ground, where nothing may be picked."""
    targets: list[dict[str, Any]] = []
    for kind in PICK_KINDS:
        for element in truth.elements.values():
            if element.kind != kind or not element.triangles or element.transparency:
                continue
            assert element.range_low is not None and element.range_high is not None
            x, y = (element.range_low[:2] + element.range_high[:2]) / 2
            owner, z = ground.topmost(x, y)
            around = [(NEIGHBOURHOOD, 0), (-NEIGHBOURHOOD, 0), (0, NEIGHBOURHOOD), (0, -NEIGHBOURHOOD)]
            if owner == element.id and all(ground.topmost(x + dx, y + dy)[0] == owner for dx, dy in around):
                targets.append({"expect": owner, "kind": kind, "point": [x, y, z], "height": CAMERA_HEIGHT})
                break
    assert len(targets) >= 3, f"the truth model has too few clear targets: {targets}"
    empty = (6.0, -6.0)  # south of the first row: nothing there
    assert ground.topmost(*empty)[0] is None
    targets.append({"expect": None, "kind": "nothing", "point": [*empty, 0.0], "height": CAMERA_HEIGHT})
    return targets


def screenshot_figures(path: Path) -> dict[str, float]:
    """What a blank frame would not have: pixels off the background (the most common colour, the globe)
    and the category colours (red and green categories, each shaded by the light)."""
    with Image.open(path) as image:
        rgb = np.asarray(image.convert("RGB"), np.int32)
    flat = rgb.reshape(-1, 3)
    colours, counts = np.unique(flat, axis=0, return_counts=True)
    background = colours[int(np.argmax(counts))]
    off = np.abs(flat - background).sum(axis=1) > 30
    r, g, b = flat[:, 0], flat[:, 1], flat[:, 2]
    return {
        "distinct": float(len(colours)),
        "off_background": float(off.mean()),
        "red": float(((r > g + 60) & (r > b + 60)).mean()),
        "green": float(((g > r + 40) & (g > b + 40)).mean()),
    }


def run_driver(env: dict[str, str]) -> dict[str, Any]:
    return run_json_driver(_tool("node"), DRIVER, cwd=DRIVER.parent, env=env, timeout=DRIVER_TIMEOUT)


def errors_in(console: Sequence[dict[str, str]]) -> list[dict[str, str]]:
    return [m for m in console if m["type"] == "error"]


def test_cesium_loads_renders_and_picks_a_twinbase_export(server: Server) -> None:
    browser = chromium()
    ensure_node_modules()
    started = time.monotonic()
    bim = make_geometry("geolocated")
    manifest = json.loads(Path(f"{bim}.manifest.json").read_text())
    categories = {e["id"]: e["category"] for e in manifest["elements"]}
    truth = load_truth(export_truth("geolocated"))
    targets = pick_targets(truth, Ground(truth))

    token = server.token(f"cesium-{uuid.uuid4().hex[:8]}")
    owner = server.client(token)
    imodel = new_imodel(owner, new_itwin(owner)["id"], path=bim)
    export = owner.post("/mesh-export", json={"iModelId": imodel["id"], "exportType": "3DTILES"})
    assert export.status_code == 202, export.text
    wait_complete(owner, export.json()["export"]["id"])
    ready = time.monotonic()

    OUTPUT.mkdir(parents=True, exist_ok=True)
    # test_mesh_export_azure runs this on the Azure blob backend too: one screenshot each.
    label = server.backend if server.blob_backend == "local" else f"{server.backend}-{server.blob_backend}"
    shot = OUTPUT / f"cesium-itwin-{label}.png"
    shot.unlink(missing_ok=True)
    env = {
        **os.environ,
        "TWINBASE_URL": server.base_url,
        "TWINBASE_TOKEN": token,
        "IMODEL_ID": imodel["id"],
        "CESIUM_TARGETS": json.dumps(targets),
        "CESIUM_SCREENSHOT": str(shot),
        "CHROMIUM": browser,
    }
    out = run_driver(env)
    (OUTPUT / f"cesium-itwin-{label}.json").write_text(json.dumps(out, indent=1))
    renderer = (out.get("webgl") or {}).get("renderer")
    print(
        f"\nCesiumJS {out['cesiumVersion']} in Chromium {out['chromium']} ({renderer}):"
        f" set-up {ready - started:.1f} s, browser {out['seconds']} s; screenshot {shot}"
    )
    assert out["ok"], f"failed at {out['step']}: {out.get('error')}\npage errors: {out['pageErrors']}"
    assert out["pageErrors"] == [], out["pageErrors"]
    assert errors_in(out["console"]) == [], out["console"]
    assert out["external"] == [], f"the viewer reached past localhost: {out['external']}"
    assert out["failedRequests"] == [], out["failedRequests"]

    load = out["load"]
    assert load["zoomed"] is True and load["settled"] and load["tilesLoaded"], load
    assert len(load["tileLoads"]) > 0 and load["tileFailures"] == [] and load["renderErrors"] == [], load
    # The root transform put the model where its ECEF location says, on the globe.
    centre = load["centre"]
    assert abs(centre["longitude"] - PLACE[0]) < 0.01 and abs(centre["latitude"] - PLACE[1]) < 0.01, centre
    assert 0 < load["centre"]["height"] < 200, load["centre"]

    figures = screenshot_figures(shot)
    print(f"screenshot: {figures}")
    assert figures["off_background"] > 0.03 and figures["distinct"] > 50, figures
    assert figures["red"] > 0.001 and figures["green"] > 0.001, figures

    picks = out["pick"]
    assert picks["renderErrors"] == [] and picks["tileFailures"] == [], picks
    for result in picks["results"]:
        kind, expect = result["target"]["kind"], result["target"]["expect"]
        print(f"pick {kind}: {expect} expected, {result['picked']} picked", result["properties"])
    for result in picks["results"]:
        target = result["target"]
        assert result["picked"] == target["expect"], result
        if target["expect"] is not None:
            # The feature's own properties are the element's: the UINT64 id and its category.
            assert result["elementType"] == "bigint", result
            assert result["properties"]["category"] == categories[target["expect"]], result
