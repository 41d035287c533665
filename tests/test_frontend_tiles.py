"""Issue #16's acceptance: iTwin.js's own frontend (``@itwin/core-frontend`` + ``@itwin/frontend-tiles`` 5.13,
compat/frontend/package.json) in headless Chromium (Debian's ``chromium``) finds a twinbase Mesh Export of
type IMODEL through frontend-tiles' own query, draws its iMdl tiles and picks elements whose element and model
ids are the iModel's.

The iModel is the generated truth model (``make_geometry("truth")``) uploaded as a baseline, with one
pushed changeset so that the iModel has a changeset id for frontend-tiles to ask for. The driver
(``compat/frontend/imdl-view.mjs`` + ``compat/frontend/viewer/``) bundles the viewer with esbuild, routes
frontend-tiles' ``https://api.bentley.com/mesh-export/?...`` query to twinbase unchanged (frontend-tiles
has no option for another host), frames the whole model for the screenshot, then for each target looks
straight down the z axis at a point of the iModel and reads the pixel there as iTwin.js picking does. What
must be picked is found independently: a vertical ray cast through iTwin.js ``exportGraphics``' triangles
of the same file (the topmost element at that x, y, and the same a few centimetres around), its model read
from the file's ``bis_Element`` table. A point over empty ground must pick nothing.

The screenshot is kept as ``.cache/test-output/frontend-tiles.png`` (the driver's JSON beside it). Chromium,
node, compat/node_modules (playwright-core) and compat/frontend/node_modules (the iTwin.js frontend, esbuild)
are required: without them the test fails, it never skips (``make test`` installs all of them).
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from conftest import ROOT, Server, new_imodel, new_itwin
from support.geometry_truth import Truth, export_truth, load_truth, make_geometry
from support.node import run_json_driver
from test_briefcases import acquire, push_changeset
from test_cesium_itwin import Ground, chromium, errors_in, pick_targets, screenshot_figures
from test_compat_itwins import _tool
from test_mesh_export_e2e import wait_complete

FRONTEND = ROOT / "compat" / "frontend"
DRIVER = FRONTEND / "imdl-view.mjs"
OUTPUT = ROOT / ".cache" / "test-output"
DRIVER_TIMEOUT = 180
# What the driver and its page load: playwright-core from compat/, the iTwin.js frontend and esbuild from
# compat/frontend/ (installed by 'make test'; this test installs nothing itself).
PACKAGES = (
    ROOT / "compat" / "node_modules" / "playwright-core" / "package.json",
    FRONTEND / "node_modules" / "@itwin" / "core-frontend" / "package.json",
    FRONTEND / "node_modules" / "@itwin" / "frontend-tiles" / "package.json",
    FRONTEND / "node_modules" / "esbuild" / "package.json",
)
SUBCATEGORY_CLASS = "SubCategory"


def require_packages() -> None:
    missing = [str(p.parent.relative_to(ROOT)) for p in PACKAGES if not p.exists()]
    if missing:
        pytest.fail(f"npm packages missing: {', '.join(missing)}; 'make test' installs them (npm ci)")


def file_facts(bim: Path) -> tuple[dict[str, str], list[str]]:
    """From the .bim itself (not through twinbase): each element's model id, and every subcategory id."""
    with sqlite3.connect(f"file:{bim}?mode=ro", uri=True) as db:
        models = {hex(e): hex(m) for e, m in db.execute("SELECT Id, ModelId FROM bis_Element")}
        subcategories = [
            hex(row[0])
            for row in db.execute(
                "SELECT e.Id FROM bis_Element e JOIN ec_Class c ON c.Id = e.ECClassId WHERE c.Name = ?",
                (SUBCATEGORY_CLASS,),
            )
        ]
    return models, subcategories


def union_extents(models: dict[str, Any]) -> dict[str, list[float]]:
    """The union of the tileset's model extents (models without geometry have a null range)."""
    lows, highs = [], []
    for entry in models.values():
        low, high = entry["extents"]["low"], entry["extents"]["high"]
        if all(a <= b for a, b in zip(low, high, strict=True)):
            lows.append(low)
            highs.append(high)
    assert lows, f"no model of the tileset has extents: {models}"
    return {
        "low": [min(p[i] for p in lows) for i in range(3)],
        "high": [max(p[i] for p in highs) for i in range(3)],
    }


def leaf_uris(tile: dict[str, Any]) -> set[str]:
    """The content of the tileset's leaves: the full-detail tiles."""
    if not tile.get("children"):
        return {tile["content"]["uri"]} if "content" in tile else set()
    return set().union(*(leaf_uris(child) for child in tile["children"]))


def run_driver(env: dict[str, str]) -> dict[str, Any]:
    return run_json_driver(_tool("node"), DRIVER, cwd=FRONTEND, env=env, timeout=DRIVER_TIMEOUT)


def query_of(url: str) -> dict[str, str]:
    return {k: v[-1] for k, v in parse_qs(urlsplit(url).query, keep_blank_values=True).items()}


def test_frontend_tiles_draws_and_picks_a_twinbase_imodel_export(server: Server) -> None:
    browser = chromium()
    _tool("node")
    require_packages()
    started = time.monotonic()
    bim = make_geometry("truth")
    truth: Truth = load_truth(export_truth("truth"))
    targets = pick_targets(truth, Ground(truth))
    model_of, subcategories = file_facts(bim)

    token = server.token(f"frontend-{uuid.uuid4().hex[:8]}")
    owner = server.client(token)
    imodel = new_imodel(owner, new_itwin(owner)["id"], path=bim)
    # One changeset (a be_Prop row, no geometry): frontend-tiles then asks for the export of that changeset.
    briefcase = acquire(owner, imodel["id"])["briefcaseId"]
    changeset = push_changeset(owner, imodel["id"], briefcase, "")
    export = owner.post("/mesh-export", json={"iModelId": imodel["id"], "exportType": "IMODEL"})
    assert export.status_code == 202, export.text
    done = wait_complete(owner, export.json()["export"]["id"])
    assert done["request"]["changesetId"] == changeset["id"], done["request"]
    href = done["_links"]["mesh"]["href"]
    folder, _, signature = href.partition("?")
    tileset = httpx.get(f"{folder}/tileset.json?{signature}", timeout=30).json()
    batched = tileset["extensions"]["BENTLEY_BatchedTileSet"]["models"]
    ready = time.monotonic()

    OUTPUT.mkdir(parents=True, exist_ok=True)
    shot = OUTPUT / "frontend-tiles.png"
    shot.unlink(missing_ok=True)
    view_args = {
        "iTwinId": imodel["iTwinId"],
        "iModelId": imodel["id"],
        "changeset": {"id": changeset["id"], "index": changeset["index"]},
        "extents": union_extents(batched),
        "models": sorted(batched),
        "subCategories": subcategories,
        "targets": targets,
    }
    env = {
        **os.environ,
        "TWINBASE_URL": server.base_url,
        "TWINBASE_TOKEN": token,
        "VIEW_ARGS": json.dumps(view_args),
        "VIEW_SCREENSHOT": str(shot),
        "CHROMIUM": browser,
    }
    out = run_driver(env)
    (OUTPUT / "frontend-tiles.json").write_text(json.dumps(out, indent=1))
    renderer = (out.get("webgl") or {}).get("renderer")
    print(
        f"\niTwin.js {(out.get('start') or {}).get('iTwinJS')} frontend-tiles in Chromium {out['chromium']}"
        f" ({renderer}): set-up {ready - started:.1f} s, driver {out['seconds']} s"
        f" (bundle {(out.get('bundle') or {}).get('seconds')} s); screenshot {shot}"
    )
    assert out["ok"], f"failed at {out['step']}: {out.get('error')}\npage errors: {out['pageErrors']}"
    assert out["pageErrors"] == [], out["pageErrors"]
    assert errors_in(out["console"]) == [], out["console"]
    assert out["failedRequests"] == [], out["failedRequests"]
    # Nothing left loopback but core-frontend's font link (answered empty by the driver); the Mesh Export
    # query went to twinbase (had it not been routed, it would be listed here, refused).
    assert {urlsplit(u).netloc for u in out["external"]} <= {"fonts.googleapis.com"}, out["external"]

    # frontend-tiles' own query reached twinbase, for this iModel at its changeset, and found the export.
    queries = out["meshExportQueries"]
    assert queries, "frontend-tiles sent no Mesh Export query"
    first = queries[0]
    sent = urlsplit(first["url"])
    assert (sent.scheme, sent.netloc, sent.path) == ("https", "api.bentley.com", "/mesh-export/"), first
    assert first["forwardedTo"].startswith(f"{server.base_url}/mesh-export/?"), first
    query = query_of(first["url"])
    assert query["exportType"] == "IMODEL", query
    assert query["iModelId"] == imodel["id"] and query.get("changesetId") == changeset["id"], query
    assert query["tileVersion"] == str(out["start"]["maximumMajorTileFormatVersion"]), query
    assert query["$orderBy"] == "date:desc" and query["iTwinJS"] == out["start"]["iTwinJS"], query
    assert first["headers"]["authorization"] == "<the token>", first["headers"]
    assert first["status"] == 200 and first["next"] is None, first
    assert [e["id"] for e in first["exports"]] == [done["id"]], first["exports"]
    assert len(queries) == 1, "frontend-tiles asked again: the first answer did not satisfy it"

    # The tileset and the iMdl tiles came from the export's folder with the signed query of the link twinbase
    # answered frontend-tiles (each answer signs anew), and no token.
    signed = first["exports"][0]["href"]
    tiles = out["tileRequests"]
    loaded = {urlsplit(r["url"]).path.rsplit("/", 1)[-1] for r in tiles}
    assert "tileset.json" in loaded and any(name.endswith(".imdl") for name in loaded), tiles
    for request in tiles:
        assert urlsplit(request["url"]).path.startswith(urlsplit(signed).path + "/"), request
        assert query_of(request["url"]) == query_of(signed), request
        assert request["authorization"] is None and request["status"] == 200, request

    # The batched tile tree is frontend-tiles', and its tiles hold graphics.
    trees = out["start"]["trees"]
    assert [t["treeClass"] for t in trees] == ["BatchedTileTree"], trees
    drawn = [t for t in trees[0]["tiles"] if t["hasGraphics"]]
    assert drawn, f"no tile of the batched tree has graphics: {trees}"

    figures = screenshot_figures(shot)
    print(f"screenshot: {figures}; page figures {out['imageStats']}")
    assert figures["off_background"] > 0.03 and figures["distinct"] > 50, figures
    assert figures["red"] > 0.001 and figures["green"] > 0.001, figures

    results = out["pick"]["results"]
    for result in results:
        target = result["target"]
        picked = f"{result['elementId']} in {result['modelId']}"
        how = f"{result['type']}, subcategory {result['subCategoryId']}, tile {result['tileId']}"
        print(f"pick {target['kind']}: {target['expect']} expected, {picked} picked ({how})")
    assert len(results) == len(targets)
    leaves = leaf_uris(tileset["root"])
    for result in results:
        expect = result["target"]["expect"]
        if expect is None:
            assert result["elementId"] is None and result["modelId"] is None, result
            continue
        assert result["elementId"] == expect and result["modelId"] == model_of[expect], result
        # Close up, frontend-tiles refined to the full-detail tiles: the pick read one of them.
        assert result["tileId"] in leaves, (result, leaves)
        assert result["subCategoryId"] in {p.sub_category for p in truth.elements[expect].pieces}, result
