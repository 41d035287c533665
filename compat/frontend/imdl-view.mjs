// iTwin.js's own frontend (@itwin/core-frontend + @itwin/frontend-tiles 5.13, compat/frontend/node_modules) in
// headless Chromium draws a twinbase Mesh Export of type IMODEL (iMdl tiles) and picks elements in it.
//
//   TWINBASE_URL=http://127.0.0.1:8080 TWINBASE_TOKEN=... VIEW_SCREENSHOT=/path/view.png \
//   VIEW_ARGS='{"iTwinId":..,"iModelId":..,"changeset":{"id":"","index":0},"extents":{"low":[..],"high":[..]},
//               "models":["0x12"],"subCategories":["0x14"],"targets":[{"point":[x,y,z],"expect":"0x20"}]}' \
//   node compat/frontend/imdl-view.mjs
//
// 1. Bundles compat/frontend/viewer/viewer.js with esbuild into a fresh temporary folder (VIEW_BUNDLE_DIR to
//    keep it elsewhere) and serves it with viewer/index.html on a loopback port of its own (so the tiles need
//    twinbase's CORS headers, as in a real deployment).
// 2. Starts Debian's Chromium (CHROMIUM, default /usr/bin/chromium) headless with software WebGL (SwiftShader).
//    frontend-tiles builds its Mesh Export query against https://api.bentley.com/mesh-export/ and has no option
//    for another host (only `urlPrefix`, which prefixes "api.bentley.com", and computeSpatialTilesetBaseUrl,
//    which skips the query): the page's requests to https://api.bentley.com/mesh-export* are forwarded to
//    TWINBASE_URL with their method, path, query and headers unchanged (but Host), and twinbase's answer is
//    handed back as is. Everything else off loopback is refused and listed, except core-frontend's Open Sans
//    stylesheet link (fonts.googleapis.com, added to every page it runs in), answered with an empty stylesheet.
// 3. The page (viewer.js) starts IModelApp, calls initializeFrontendTiles, opens the iModel's connection and a
//    whole-model iso view, and waits for the scene; a screenshot goes to VIEW_SCREENSHOT; then each target is
//    picked from a top view.
// Prints one JSON line: { ok, step, chromium, webgl, start, pick, screenshot, imageStats, meshExportQueries,
// tileRequests, otherRequests, external, failedRequests, pageErrors, console, seconds }. Exits 0 when it ran
// to the end (the caller judges the answers), 1 when a step failed (the JSON still says which and why).

import fs from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

import { build } from "esbuild";
import { chromium } from "playwright-core";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const VIEWER = path.join(HERE, "viewer");
const PUBLIC = path.join(HERE, "node_modules", "@itwin", "core-frontend", "lib", "public");
const TYPES = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".json": "application/json",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".ico": "image/x-icon",
  ".cur": "image/x-icon",
};
const API_ORIGIN = "https://api.bentley.com";
const FONT_CSS = "https://fonts.googleapis.com/css";

function need(name) {
  const value = process.env[name];
  if (!value) {
    console.error(`missing environment variable ${name}`);
    process.exit(2);
  }
  return value;
}

const twinbase = new URL(need("TWINBASE_URL"));
const token = need("TWINBASE_TOKEN").replace(/^bearer /i, "");
const screenshot = path.resolve(need("VIEW_SCREENSHOT"));
const args = JSON.parse(need("VIEW_ARGS"));
const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";
const timeoutMs = Number(process.env.VIEW_TIMEOUT_MS || 90000);

const started = Date.now();
const seconds = () => Number(((Date.now() - started) / 1000).toFixed(2));

const out = {
  ok: false,
  step: "start",
  chromium: null,
  webgl: null,
  bundle: null,
  start: null,
  pick: null,
  screenshot: null,
  imageStats: null,
  meshExportQueries: [],
  tileRequests: [],
  otherRequests: [],
  external: [],
  failedRequests: [],
  pageErrors: [],
  console: [],
  seconds: 0,
};

/** The page, its bundle and core-frontend's public files (IModelApp.publicPath is the page's folder: the
 * viewport's logo, cursors, sprites), nothing else (no directory listings, no `..`). */
function serve(bundleDir) {
  const files = {
    "/index.html": path.join(VIEWER, "index.html"),
    "/viewer.js": path.join(bundleDir, "viewer.js"),
  };
  const server = http.createServer((req, res) => {
    const pathname = decodeURIComponent(new URL(req.url, "http://localhost").pathname);
    let file = files[pathname];
    if (file === undefined) {
      const candidate = path.resolve(PUBLIC, `.${pathname}`);
      if (candidate.startsWith(PUBLIC + path.sep) && fs.existsSync(candidate) && fs.statSync(candidate).isFile()) file = candidate;
    }
    if (file === undefined) {
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
const isMeshExportQuery = (u) => u.origin === API_ORIGIN && u.pathname.startsWith("/mesh-export");

/** Mesh Export's list, asked of api.bentley.com by frontend-tiles, answered by twinbase: same method, path,
 * query, headers and body; only the origin changes (and Host with it, which fetch sets). The answer's body
 * is handed back decoded, so its transfer headers go. */
async function forwardToTwinbase(route) {
  const request = route.request();
  const sent = new URL(request.url());
  const target = new URL(sent.pathname + sent.search, twinbase);
  const headers = await request.allHeaders();
  const forwarded = Object.fromEntries(Object.entries(headers).filter(([name]) => name !== "host"));
  const record = {
    url: request.url(),
    method: request.method(),
    forwardedTo: target.toString(),
    headers: { ...headers, authorization: headers.authorization === `Bearer ${token}` ? "<the token>" : headers.authorization ?? null },
    status: null,
    exports: null,
  };
  out.meshExportQueries.push(record);
  try {
    const answer = await fetch(target, { method: request.method(), headers: forwarded, body: request.postDataBuffer() ?? undefined });
    const body = Buffer.from(await answer.arrayBuffer());
    record.status = answer.status;
    try {
      const json = JSON.parse(body.toString("utf8"));
      record.exports = (json.exports ?? []).map((e) => ({
        id: e.id,
        status: e.status,
        exportType: e.request?.exportType,
        changesetId: e.request?.changesetId,
        href: e._links?.mesh?.href ?? null,
      }));
      record.next = json._links?.next?.href ?? null;
    } catch {
      record.body = body.toString("utf8").slice(0, 2000);
    }
    const back = {};
    answer.headers.forEach((value, name) => {
      if (!["content-encoding", "content-length", "transfer-encoding", "connection"].includes(name)) back[name] = value;
    });
    await route.fulfill({ status: answer.status, headers: back, body });
  } catch (err) {
    record.error = String(err?.stack ?? err);
    await route.abort("failed");
  }
}

let browser;
let server;
let bundleDir;
let code = 0;
try {
  if (!fs.existsSync(executablePath)) {
    throw new Error(`${executablePath} is missing: install Debian's chromium package (make test does)`);
  }

  out.step = "bundle";
  bundleDir = process.env.VIEW_BUNDLE_DIR || fs.mkdtempSync(path.join(os.tmpdir(), "twinbase-imdl-view-"));
  const bundled = Date.now();
  await build({
    entryPoints: [path.join(VIEWER, "viewer.js")],
    outfile: path.join(bundleDir, "viewer.js"),
    bundle: true,
    format: "iife",
    platform: "browser",
    target: "es2022",
    absWorkingDir: HERE,
    logLevel: "error",
  });
  out.bundle = { seconds: (Date.now() - bundled) / 1000, bytes: fs.statSync(path.join(bundleDir, "viewer.js")).size };

  server = await serve(bundleDir);
  const pageUrl = `http://127.0.0.1:${server.address().port}/index.html`;

  out.step = "launch";
  browser = await chromium.launch({
    executablePath,
    headless: true,
    args: [
      "--no-sandbox", // root in a container: Chromium's sandbox needs user namespaces it may not get
      "--use-angle=swiftshader", // no GPU here: WebGL through ANGLE on SwiftShader (CPU)
      "--enable-unsafe-swiftshader", // Chromium no longer falls back to SwiftShader for WebGL by itself
      "--ignore-gpu-blocklist",
      // Nothing of Chromium's own may go out: the machine's network is closed.
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--disable-quic",
      "--no-first-run",
    ],
  });
  out.chromium = browser.version();
  const context = await browser.newContext({ viewport: { width: 960, height: 640 }, deviceScaleFactor: 1 });
  const page = await context.newPage();
  // Page routes: the Mesh Export query to twinbase, the font stylesheet answered empty, the rest refused.
  await page.route(
    (u) => !isLocal(u.toString()),
    (route) => {
      const url = new URL(route.request().url());
      out.external.push(url.toString());
      if (url.toString().startsWith(FONT_CSS)) {
        return route.fulfill({ status: 200, contentType: "text/css", body: "" });
      }
      return route.abort("blockedbyclient");
    },
  );
  await page.route(isMeshExportQuery, forwardToTwinbase);

  page.on("console", (msg) => out.console.push({ type: msg.type(), text: msg.text().slice(0, 2000) }));
  page.on("pageerror", (err) => out.pageErrors.push(String(err?.stack ?? err).slice(0, 4000)));
  page.on("request", (req) => {
    const u = new URL(req.url());
    if (u.origin === twinbase.origin) {
      out.tileRequests.push({ url: req.url(), method: req.method(), authorization: req.headers().authorization ?? null });
    } else if (isLocal(req.url()) && !u.protocol.startsWith("data") && !u.protocol.startsWith("blob")) {
      out.otherRequests.push(req.url());
    }
  });
  page.on("requestfailed", (req) => {
    if (isLocal(req.url())) out.failedRequests.push({ url: req.url(), error: req.failure()?.errorText });
  });
  page.on("response", (resp) => {
    const entry = out.tileRequests.find((r) => r.url === resp.url() && r.status === undefined);
    if (entry) {
      entry.status = resp.status();
      entry.contentLength = Number(resp.headers()["content-length"] ?? -1);
    }
    if (resp.status() >= 400) out.failedRequests.push({ url: resp.url(), status: resp.status() });
  });

  out.step = "open";
  const broken = new Promise((_resolve, reject) => page.once("pageerror", (err) => reject(err)));
  await page.goto(pageUrl, { waitUntil: "load", timeout: timeoutMs });
  await Promise.race([page.waitForFunction(() => window.twinbase !== undefined, null, { timeout: timeoutMs }), broken]);
  broken.catch(() => {}); // later page errors are collected in out.pageErrors
  out.webgl = await page.evaluate(() => {
    const gl = document.createElement("canvas").getContext("webgl2");
    const info = gl && gl.getExtension("WEBGL_debug_renderer_info");
    return gl ? { version: gl.getParameter(gl.VERSION), renderer: info ? gl.getParameter(info.UNMASKED_RENDERER_WEBGL) : null } : null;
  });

  out.step = "start";
  page.setDefaultTimeout(timeoutMs);
  out.start = await page.evaluate((a) => window.twinbase.start(a), {
    accessToken: `Bearer ${token}`,
    iTwinId: args.iTwinId,
    iModelId: args.iModelId,
    changeset: args.changeset,
    extents: args.extents,
    models: args.models,
    subCategories: args.subCategories,
    timeoutMs: timeoutMs / 2,
  });

  out.step = "screenshot";
  fs.mkdirSync(path.dirname(screenshot), { recursive: true });
  const png = await page.screenshot({ path: screenshot });
  out.screenshot = screenshot;
  out.imageStats = await page.evaluate((b64) => window.twinbase.imageStats(b64), png.toString("base64"));

  out.step = "pick";
  out.pick = await page.evaluate(([t, ms]) => window.twinbase.pick(t, { timeoutMs: ms }), [args.targets ?? [], timeoutMs / 4]);
  out.step = "done";
  out.ok = true;
} catch (err) {
  out.error = String(err?.stack ?? err).slice(0, 4000);
  code = 1;
} finally {
  if (browser) await browser.close().catch(() => {});
  if (server) server.close();
  if (bundleDir && !process.env.VIEW_BUNDLE_DIR) fs.rmSync(bundleDir, { recursive: true, force: true });
  out.seconds = seconds();
  console.log(JSON.stringify(out));
}
process.exit(code);
