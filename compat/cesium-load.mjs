// CesiumJS (npm `cesium`, the build in compat/node_modules) in headless Chromium loads a twinbase Mesh
// Export through its own ITwinData.createTilesetFromIModelId, renders it, and picks elements.
//
//   TWINBASE_URL=http://127.0.0.1:8080 TWINBASE_TOKEN=... IMODEL_ID=... \
//   CESIUM_TARGETS='[{"point":[x,y,z],"height":20}]' CESIUM_SCREENSHOT=/path/view.png \
//   node compat/cesium-load.mjs
//
// Serves compat/cesium/ (the page) and Cesium's build on a loopback port of its own (so the page's
// origin is not the API's: the tiles need twinbase's CORS headers, as in a real deployment), starts
// Debian's Chromium (CHROMIUM, default /usr/bin/chromium) headless with software WebGL (SwiftShader), and:
//   1. the page sets ITwinPlatform.apiEndpoint = TWINBASE_URL + "/" and defaultAccessToken = the token,
//      calls ITwinData.createTilesetFromIModelId({ iModelId }), adds the tileset, viewer.zoomTo(tileset),
//      renders until tileset.tilesLoaded;
//   2. a screenshot of the page goes to CESIUM_SCREENSHOT;
//   3. for each target the camera looks straight down the iModel's z axis at the point from `height`
//      above it and scene.pick at the canvas centre reads the feature's `element` property.
// Every request to anything but loopback is refused and listed (a viewer here must need nothing else).
// Prints one JSON line: { ok, cesiumVersion, chromium, load, pick, screenshot, pageErrors, console,
// external, failedRequests, seconds }. Exits 0 when it ran to the end (the caller judges the answers),
// 1 when a step failed (the JSON still says which and why).

import fs from "node:fs";
import http from "node:http";
import path from "node:path";
import { fileURLToPath } from "node:url";

import { chromium } from "playwright-core";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOTS = {
  "/cesium/": path.join(HERE, "cesium"),
  "/Cesium/": path.join(HERE, "node_modules", "cesium", "Build", "Cesium"),
};
const TYPES = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".json": "application/json",
  ".wasm": "application/wasm",
  ".png": "image/png",
  ".jpg": "image/jpeg",
  ".svg": "image/svg+xml",
  ".ktx2": "image/ktx2",
  ".glb": "model/gltf-binary",
};

function need(name) {
  const value = process.env[name];
  if (!value) {
    console.error(`missing environment variable ${name}`);
    process.exit(2);
  }
  return value;
}

const apiBase = need("TWINBASE_URL").replace(/\/+$/, "");
const token = need("TWINBASE_TOKEN").replace(/^bearer /i, "");
const iModelId = need("IMODEL_ID");
const screenshot = need("CESIUM_SCREENSHOT");
const targets = JSON.parse(process.env.CESIUM_TARGETS || "[]");
const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";
const timeoutMs = Number(process.env.CESIUM_TIMEOUT_MS || 90000);

const started = Date.now();
const seconds = () => Number(((Date.now() - started) / 1000).toFixed(2));

/** The static server: the page and Cesium's build, nothing else (no directory listings, no `..`). */
function serve() {
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, "http://localhost");
    const prefix = Object.keys(ROOTS).find((p) => url.pathname.startsWith(p));
    if (prefix === undefined) {
      res.writeHead(404).end();
      return;
    }
    const root = ROOTS[prefix];
    const file = path.resolve(root, decodeURIComponent(url.pathname.slice(prefix.length)) || "index.html");
    if (!file.startsWith(root + path.sep) || !fs.existsSync(file) || !fs.statSync(file).isFile()) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { "Content-Type": TYPES[path.extname(file)] ?? "application/octet-stream" });
    fs.createReadStream(file).pipe(res);
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(server)));
}

const isLocal = (u) => {
  try {
    const { protocol, hostname } = new URL(u);
    if (protocol === "data:" || protocol === "blob:") return true;
    return ["127.0.0.1", "localhost", "[::1]"].includes(hostname);
  } catch {
    return false;
  }
};

const out = {
  ok: false,
  step: "start",
  cesiumVersion: null,
  chromium: null,
  load: null,
  pick: null,
  screenshot: null,
  pageErrors: [],
  console: [],
  external: [],
  failedRequests: [],
  seconds: 0,
};

if (!fs.existsSync(executablePath)) {
  out.error = `${executablePath} is missing: install Debian's chromium package (make test does)`;
  console.log(JSON.stringify(out));
  process.exit(1);
}
if (!fs.existsSync(path.join(ROOTS["/Cesium/"], "Cesium.js"))) {
  out.error = `${ROOTS["/Cesium/"]}/Cesium.js is missing: npm ci in compat/ (cesium is in package.json)`;
  console.log(JSON.stringify(out));
  process.exit(1);
}

const server = await serve();
const pageUrl = `http://127.0.0.1:${server.address().port}/cesium/index.html`;
let browser;
let code = 0;
try {
  out.step = "launch";
  browser = await chromium.launch({
    executablePath,
    headless: true,
    args: [
      "--no-sandbox", // root in a container: Chromium's sandbox needs user namespaces it may not get
      "--use-angle=swiftshader", // no GPU here: WebGL through ANGLE on SwiftShader (CPU)
      "--enable-unsafe-swiftshader", // Chromium no longer falls back to SwiftShader for WebGL by itself
      "--ignore-gpu-blocklist",
      // Nothing of Chromium's own may go out: the machine's network is closed, and this test must
      // show that the viewer needs nothing but localhost.
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--disable-quic",
      "--no-first-run",
    ],
  });
  out.chromium = browser.version();
  const context = await browser.newContext({ viewport: { width: 960, height: 640 }, deviceScaleFactor: 1 });
  await context.route(
    (u) => !isLocal(u.toString()),
    (route) => {
      out.external.push(route.request().url());
      return route.abort("blockedbyclient");
    },
  );
  const page = await context.newPage();
  page.on("console", (msg) => out.console.push({ type: msg.type(), text: msg.text().slice(0, 2000) }));
  page.on("pageerror", (err) => out.pageErrors.push(String(err?.stack ?? err).slice(0, 4000)));
  page.on("requestfailed", (req) => {
    if (isLocal(req.url())) out.failedRequests.push({ url: req.url(), error: req.failure()?.errorText });
  });
  page.on("response", (resp) => {
    if (resp.status() >= 400) out.failedRequests.push({ url: resp.url(), status: resp.status() });
  });

  out.step = "open";
  // An error while the page starts (Cesium.js missing, a Viewer option it refuses) ends the wait at once.
  const broken = new Promise((_resolve, reject) => page.once("pageerror", (err) => reject(err)));
  await page.goto(pageUrl, { waitUntil: "load", timeout: timeoutMs });
  await Promise.race([page.waitForFunction(() => window.twinbase !== undefined, null, { timeout: timeoutMs }), broken]);
  broken.catch(() => {}); // later page errors are collected in out.pageErrors
  out.cesiumVersion = await page.evaluate(() => window.twinbase.version);
  out.webgl = await page.evaluate(() => {
    const gl = document.createElement("canvas").getContext("webgl2");
    const info = gl && gl.getExtension("WEBGL_debug_renderer_info");
    return gl ? { version: gl.getParameter(gl.VERSION), renderer: info ? gl.getParameter(info.UNMASKED_RENDERER_WEBGL) : null } : null;
  });

  out.step = "load";
  page.setDefaultTimeout(timeoutMs);
  out.load = await page.evaluate(
    (args) => window.twinbase.load(args),
    { apiEndpoint: `${apiBase}/`, accessToken: token, iModelId, timeoutMs: timeoutMs / 2 },
  );

  out.step = "screenshot";
  fs.mkdirSync(path.dirname(path.resolve(screenshot)), { recursive: true });
  await page.screenshot({ path: screenshot });
  out.screenshot = path.resolve(screenshot);

  out.step = "pick";
  out.pick = await page.evaluate(([t, ms]) => window.twinbase.pick(t, ms), [targets, timeoutMs / 4]);
  out.step = "done";
  out.ok = true;
} catch (err) {
  out.error = String(err?.stack ?? err).slice(0, 4000);
  code = 1;
} finally {
  if (browser) await browser.close().catch(() => {});
  server.close();
  out.seconds = seconds();
  console.log(JSON.stringify(out));
}
process.exit(code);
