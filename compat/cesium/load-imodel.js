// The page side of compat/cesium-load.mjs: a CesiumJS Viewer with nothing that reaches past localhost
// (no imagery, no terrain, no geocoder, no Ion asset), which loads an iModel's Mesh Export the way a
// CesiumJS application does: ITwinPlatform.apiEndpoint + defaultAccessToken, then
// ITwinData.createTilesetFromIModelId({ iModelId }). The driver calls, in order:
//   await window.twinbase.load({ apiEndpoint, accessToken, iModelId, timeoutMs })  -> what loaded
//   (it takes its screenshot here, of the whole model as viewer.zoomTo frames it)
//   await window.twinbase.pick(targets, timeoutMs)                                 -> what was picked
// A target is a point of the iModel (its own spatial coordinates) and a height: the camera is put that
// far above the point on the iModel's z axis, looking down it, and the pixel at the centre of the
// canvas is picked, so the picked feature is whatever the iModel has topmost at that x, y.
/* global Cesium */

const {
  Cartesian2,
  Cartesian3,
  Cartographic,
  ITwinData,
  ITwinPlatform,
  JulianDate,
  Math: CesiumMath,
  Matrix4,
  Viewer,
} = Cesium;

const log = [];
const note = (what) => log.push({ t: Math.round(performance.now()), what });

const viewer = new Viewer("viewer", {
  baseLayer: false, // no imagery: the globe is its plain base colour
  baseLayerPicker: false,
  geocoder: false,
  animation: false,
  timeline: false,
  homeButton: false,
  sceneModePicker: false,
  navigationHelpButton: false,
  fullscreenButton: false,
  infoBox: false,
  selectionIndicator: false,
  skyBox: false,
  // Render only when something changed (a tile arrived, the camera moved): software WebGL on two
  // cores should not draw 60 identical frames a second while tiles load.
  requestRenderMode: true,
  maximumRenderTimeChange: Infinity,
  // SwiftShader draws on the CPU: no multisampling, no atmosphere, no sky, so a frame costs little.
  msaaSamples: 1,
  skyAtmosphere: false,
});
viewer.scene.globe.showGroundAtmosphere = false;
viewer.scene.globe.baseColor = Cesium.Color.fromCssColorString("#c8c8c0"); // plain ground, not Cesium's blue
viewer.scene.fog.enabled = false;
viewer.scene.postProcessStages.fxaa.enabled = false;
// A fixed noon at the model's place, so the sun lights the model the same way on every run.
viewer.clock.currentTime = JulianDate.fromIso8601("2025-06-21T16:00:00Z");
viewer.clock.shouldAnimate = false;

const renderErrors = [];
const frameTimes = [];
let frameStart = 0;
viewer.scene.preRender.addEventListener(() => (frameStart = performance.now()));
viewer.scene.postRender.addEventListener(() => frameTimes.push(Math.round(performance.now() - frameStart)));
viewer.scene.renderError.addEventListener((_scene, error) => {
  renderErrors.push(String(error?.stack ?? error));
});

/** The next rendered frame (or nothing after `ms`: a frame that never comes must not hang the page). */
function frame(ms = 2000) {
  return new Promise((resolve) => {
    let remove = () => {};
    const timer = setTimeout(() => {
      remove();
      resolve(false);
    }, ms);
    remove = viewer.scene.postRender.addEventListener(() => {
      clearTimeout(timer);
      remove();
      resolve(true);
    });
    viewer.scene.requestRender();
  });
}

/** Render until every tile the view needs is loaded (three frames in a row), or `timeoutMs` passes. */
async function settle(tileset, timeoutMs) {
  const deadline = performance.now() + timeoutMs;
  let stable = 0;
  let frames = 0;
  while (performance.now() < deadline) {
    await frame();
    frames += 1;
    stable = tileset.tilesLoaded ? stable + 1 : 0;
    if (stable >= 3) return { settled: true, frames };
  }
  return { settled: false, frames };
}

/** A feature property as JSON: UINT64 ids come back as BigInt where the browser has it. */
function plain(value) {
  if (typeof value === "bigint") return `0x${value.toString(16)}`;
  if (value === undefined) return null;
  return value;
}

/** An Id64 string ("0x2a") from what getProperty answered for a UINT64 id (BigInt, or a Number). */
function id64(value) {
  if (typeof value === "bigint" || (typeof value === "number" && Number.isInteger(value))) {
    return `0x${value.toString(16)}`;
  }
  return value === undefined || value === null ? null : String(value);
}

let tileset;
const tileLoads = [];
const tileFailures = [];

async function load({ apiEndpoint, accessToken, iModelId, timeoutMs = 60000 }) {
  // CesiumJS builds `${apiEndpoint}mesh-export`: the endpoint must end with a slash.
  ITwinPlatform.apiEndpoint = apiEndpoint.endsWith("/") ? apiEndpoint : `${apiEndpoint}/`;
  ITwinPlatform.defaultAccessToken = accessToken;
  note("createTilesetFromIModelId");
  tileset = await ITwinData.createTilesetFromIModelId({ iModelId });
  if (tileset === undefined) {
    throw new Error(`createTilesetFromIModelId found no Complete 3DTILES export of ${iModelId}`);
  }
  tileset.tileLoad.addEventListener((tile) => tileLoads.push(tile.content?.url ?? "?"));
  tileset.tileFailed.addEventListener((failure) => tileFailures.push({ url: failure.url, message: failure.message }));
  viewer.scene.primitives.add(tileset);
  note("zoomTo");
  // zoomTo finishes in a frame's postRender: keep frames coming while it is pending.
  let zoomed;
  viewer.zoomTo(tileset).then(
    (ok) => (zoomed = ok),
    (err) => (zoomed = `zoomTo failed: ${err}`),
  );
  const zoomDeadline = performance.now() + timeoutMs;
  while (zoomed === undefined && performance.now() < zoomDeadline) await frame();
  const settled = await settle(tileset, timeoutMs);
  note(`settled ${JSON.stringify(settled)}`);
  const sphere = tileset.boundingSphere;
  const centre = Cartographic.fromCartesian(sphere.center);
  return {
    zoomed,
    ...settled,
    tilesLoaded: tileset.tilesLoaded,
    tileLoads: [...tileLoads],
    tileFailures: [...tileFailures],
    renderErrors: [...renderErrors],
    asset: tileset.asset,
    extensionsUsed: tileset.extensionsUsed ?? null,
    rootTransform: Matrix4.toArray(tileset.root.computedTransform),
    boundingSphere: { center: Cartesian3.pack(sphere.center, []), radius: sphere.radius },
    centre: centre && {
      longitude: CesiumMath.toDegrees(centre.longitude),
      latitude: CesiumMath.toDegrees(centre.latitude),
      height: centre.height,
    },
    canvas: { width: viewer.canvas.clientWidth, height: viewer.canvas.clientHeight },
    log: [...log],
    frameTimes: [...frameTimes],
  };
}

async function pick(targets, timeoutMs = 20000) {
  const toWorld = tileset.root.computedTransform; // iModel coordinates -> ECEF (the export's root transform)
  const down = Cartesian3.normalize(Matrix4.multiplyByPointAsVector(toWorld, new Cartesian3(0, 0, -1), new Cartesian3()), new Cartesian3());
  const north = Cartesian3.normalize(Matrix4.multiplyByPointAsVector(toWorld, new Cartesian3(0, 1, 0), new Cartesian3()), new Cartesian3());
  const results = [];
  for (const target of targets) {
    const [x, y, z] = target.point;
    const eye = Matrix4.multiplyByPoint(toWorld, new Cartesian3(x, y, z + target.height), new Cartesian3());
    viewer.camera.setView({ destination: eye, orientation: { direction: down, up: north } });
    const settled = await settle(tileset, timeoutMs);
    const centre = new Cartesian2(viewer.canvas.clientWidth / 2, viewer.canvas.clientHeight / 2);
    let picked;
    let attempts = 0;
    // A pick right after new tiles arrive can miss them; give it a few more frames.
    while (attempts < 5) {
      attempts += 1;
      picked = viewer.scene.pick(centre);
      if (picked?.getProperty) break;
      await frame();
    }
    const out = { target, settled, attempts, picked: null, properties: null };
    if (picked?.getProperty) {
      out.picked = id64(picked.getProperty("element"));
      out.elementType = typeof picked.getProperty("element");
      out.properties = {};
      for (const name of picked.getPropertyIds()) out.properties[name] = plain(picked.getProperty(name));
    }
    results.push(out);
  }
  return { results, renderErrors: [...renderErrors], tileFailures: [...tileFailures], tileLoads: tileLoads.length, frameTimes: [...frameTimes] };
}

window.twinbase = { load, pick, version: Cesium.VERSION };
window.dispatchEvent(new Event("twinbase-ready"));
