// The page side of compat/frontend/imdl-view.mjs: an iTwin.js viewport (core-frontend 5.13) that draws an
// iModel from its Mesh Export of type IMODEL the way an iTwin.js application does with @itwin/frontend-tiles:
// initializeFrontendTiles() with no computeSpatialTilesetBaseUrl, so frontend-tiles itself asks the Mesh Export
// service (`https://api.bentley.com/mesh-export/?iModelId=...&exportType=IMODEL`, which the driver routes to
// twinbase) for the iModel's exports, takes `_links.mesh.href` and loads `<href>/tileset.json` and its iMdl tiles.
//
// There is no backend: the connection is a BlankConnection that answers the iModel's real iTwinId, iModelId and
// changeset (frontend-tiles asks the service for exactly that iModel), the view's model selector holds the models
// of the tileset's BENTLEY_BatchedTileSet, and a feature override provider makes the tiles' subcategories visible
// (a BlankConnection can load no categories, and iTwin.js hides a feature whose subcategory the view does not
// show). The driver calls, in order:
//   await window.twinbase.start(args)      -> tile trees and tiles once the whole-model view is complete
//   (it takes its screenshot here)
//   await window.twinbase.pick(targets)    -> (elementId, modelId, subCategoryId) read at each target
//   await window.twinbase.imageStats(png)  -> pixel figures of the screenshot (base64 PNG)
// A target is a point of the iModel (spatial coordinates): the view looks straight down the z axis at a small
// square around it and readPixels answers the feature drawn at the point's place on the screen, i.e. whatever is
// topmost at that x, y.

import { BeDuration, Logger, LogLevel } from "@itwin/core-bentley";
import { EmptyLocalization, RenderMode } from "@itwin/core-common";
import {
  BlankConnection,
  IModelApp,
  IModelConnection,
  ITWINJS_CORE_VERSION,
  Pixel,
  ScreenViewport,
  SpatialViewState,
  StandardViewId,
} from "@itwin/core-frontend";
import { Point3d, Range3d } from "@itwin/core-geometry";
import { initializeFrontendTiles } from "@itwin/frontend-tiles";

/** A BlankConnection (no backend, no RPC) that is nevertheless a given iModel at a given changeset:
 * BlankConnection always answers `iModelId: undefined`, and frontend-tiles asks for nothing without one. */
class ExportedIModel extends BlankConnection {
  _exportedIModelId = undefined;

  get iModelId() {
    return this._exportedIModelId;
  }

  static openExport({ name, iTwinId, iModelId, changeset, extents }) {
    const connection = new ExportedIModel({
      name,
      rootSubject: { name },
      projectExtents: extents.toJSON(),
      globalOrigin: { x: 0, y: 0, z: 0 },
      key: "",
      iTwinId,
      iModelId,
      changeset,
    });
    connection._exportedIModelId = iModelId;
    IModelConnection.onOpen.raiseEvent(connection);
    return connection;
  }
}

let vp;
let extents;
const log = [];
const note = (what) => log.push({ t: Math.round(performance.now()), what });

/** `promise`, or an error after `ms` (a scene that never completes must not hang the page). */
function within(promise, ms, what) {
  let timer;
  const timeout = new Promise((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not finish in ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** What the view's tile trees are and which of their tiles hold graphics: frontend-tiles swallows every tile
 * decoding error (the tile is then just empty), so this is where a tile that draws nothing shows. */
function describeTrees() {
  const trees = [];
  for (const ref of vp.view.getTileTreeRefs()) {
    const owner = ref.treeOwner;
    const tree = owner.tileTree;
    const tiles = [];
    const visit = (tile, depth) => {
      tiles.push({
        contentId: tile.contentId,
        depth,
        isReady: tile.isReady,
        isEmpty: tile.isEmpty,
        hasGraphics: tile.hasGraphics,
        loadStatus: tile.loadStatus,
      });
      for (const child of tile.children ?? []) visit(child, depth + 1);
    };
    if (tree?.rootTile) visit(tree.rootTile, 0);
    trees.push({
      refClass: ref.constructor.name,
      treeClass: tree?.constructor.name ?? null,
      loadStatus: owner.loadStatus,
      modelId: tree?.modelId ?? null,
      range: tree ? tree.range.toJSON() : null,
      location: tree ? tree.iModelTransform.toJSON() : null,
      tiles,
    });
  }
  return trees;
}

async function complete(timeoutMs) {
  await within(vp.waitForSceneCompletion(), timeoutMs, "waitForSceneCompletion");
  vp.renderFrame();
}

async function start({ accessToken, iTwinId, iModelId, changeset, extents: range, models, subCategories, timeoutMs = 60000 }) {
  Logger.initializeToConsole();
  Logger.setLevelDefault(LogLevel.Warning);
  await IModelApp.startup({
    localization: new EmptyLocalization(),
    // The iMdl decoder runs on the page: no parse-imdl-worker.js to serve.
    tileAdmin: { decodeImdlInWorker: false },
    // What frontend-tiles sends as the Mesh Export query's Authorization header.
    authorizationClient: { getAccessToken: async () => accessToken },
  });
  note("startup");
  // No computeSpatialTilesetBaseUrl: frontend-tiles queries the Mesh Export service itself. nopFallback: no
  // per-model backend tiles (there is no backend) when it finds no tileset: the view stays empty instead.
  initializeFrontendTiles({ nopFallback: true });

  extents = Range3d.fromJSON(range);
  const iModel = ExportedIModel.openExport({ name: "twinbase export", iTwinId, iModelId, changeset, extents });
  const view = SpatialViewState.createBlank(iModel, extents.low, extents.diagonal());
  view.modelSelector.addModels(models);
  // A blank view's display style is wireframe, where surfaces without edges (frontend-tiles draws none unless
  // enableEdges) show nothing at all: shade them, lit, as an application's 3D view does.
  view.viewFlags = view.viewFlags.copy({ renderMode: RenderMode.SmoothShade, lighting: true, visibleEdges: false });
  view.setStandardRotation(StandardViewId.Iso);
  const div = document.getElementById("view");
  view.lookAtVolume(extents, div.clientWidth / div.clientHeight);
  vp = ScreenViewport.create(div, view);
  IModelApp.viewManager.addViewport(vp);
  vp.addFeatureOverrideProvider({
    addFeatureOverrides: (overrides) => {
      for (const id of subCategories) overrides.setVisibleSubCategory(id);
    },
  });
  note("viewport");
  await complete(timeoutMs);
  note("scene complete");
  return {
    iTwinJS: ITWINJS_CORE_VERSION,
    maximumMajorTileFormatVersion: IModelApp.tileAdmin.maximumMajorTileFormatVersion,
    connection: { iTwinId: iModel.iTwinId, iModelId: iModel.iModelId, changeset: iModel.changeset },
    viewRect: { width: vp.viewRect.width, height: vp.viewRect.height },
    trees: describeTrees(),
    log: [...log],
  };
}

/** The feature drawn at view point (x, y), read the way iTwin.js picking reads it. */
function readPixel(x, y) {
  let answer;
  vp.readPixels(vp.viewRect, Pixel.Selector.All, (pixels) => {
    const pixel = pixels?.getPixel(Math.floor(x), Math.floor(y));
    answer = {
      elementId: pixel?.elementId ?? null,
      modelId: pixel?.modelId ?? null,
      subCategoryId: pixel?.subCategoryId ?? null,
      type: pixel ? Pixel.GeometryType[pixel.type] : null,
      distanceFraction: pixel?.distanceFraction ?? null,
      tileId: pixel?.tileId ?? null,
    };
  });
  return answer;
}

async function pick(targets, { half = 2, timeoutMs = 30000 } = {}) {
  const results = [];
  for (const target of targets) {
    const [x, y, z] = target.point;
    // Straight down on a square of 2 * half metres around the point, deep enough for the whole model. 4 m
    // across is close enough for frontend-tiles to refine past a coarse root to the full-detail tiles (it keeps
    // a tile until its radius on screen exceeds 8 * its diagonal / geometricError pixels).
    const square = Range3d.createXYZXYZ(x - half, y - half, extents.low.z, x + half, y + half, extents.high.z);
    vp.view.setStandardRotation(StandardViewId.Top);
    vp.view.lookAtVolume(square, vp.viewRect.aspect);
    vp.synchWithView();
    await complete(timeoutMs);
    const at = vp.worldToView(Point3d.create(x, y, z));
    let read = readPixel(at.x, at.y);
    // A pick right after new tiles arrive can miss them; give it a few more frames.
    for (let attempt = 0; attempt < 3 && target.expect && !read.elementId; attempt++) {
      await BeDuration.wait(100);
      vp.renderFrame();
      read = readPixel(at.x, at.y);
    }
    results.push({ target, view: { x: at.x, y: at.y }, ...read });
  }
  return { results, trees: describeTrees(), log: [...log] };
}

/** Figures of a PNG (base64): size, distinct colours, and the share of pixels off the most common colour. */
async function imageStats(base64) {
  const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
  const bitmap = await createImageBitmap(new Blob([bytes], { type: "image/png" }));
  const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
  const ctx = canvas.getContext("2d");
  ctx.drawImage(bitmap, 0, 0);
  const data = ctx.getImageData(0, 0, bitmap.width, bitmap.height).data;
  const counts = new Map();
  for (let i = 0; i < data.length; i += 4) {
    const key = (data[i] << 16) | (data[i + 1] << 8) | data[i + 2];
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  let background = 0;
  let most = 0;
  for (const [key, count] of counts) {
    if (count > most) [background, most] = [key, count];
  }
  const pixels = data.length / 4;
  return {
    width: bitmap.width,
    height: bitmap.height,
    distinct: counts.size,
    background: `#${background.toString(16).padStart(6, "0")}`,
    offBackground: (pixels - most) / pixels,
  };
}

window.twinbase = { start, pick, imageStats };
