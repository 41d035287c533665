// Drives the official @itwin/itwins-client 1.6.1 (unchanged, only its base URL and token) against a live
// twinbase and asserts every answer. One line per step; the first failure prints the last HTTP exchange
// and exits 1.
//
//   TWINBASE_URL=http://127.0.0.1:8095 TWINBASE_TOKEN=<jwt> TWINBASE_TOKEN_OTHER=<jwt> node compat/itwins.mjs
//
// Tokens may be given bare or as "Bearer <jwt>". COMPAT_KEEP_GOING=1 runs every step and reports all
// failures at the end (still exit 1) instead of stopping at the first one.

import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { createRequire } from "node:module";

import { ITwinsAccessClient, ITwinClass, ITwinSubClass } from "@itwin/itwins-client";

// ------------------------------------------------------------------------------------------ setup

function env(name) {
  const value = process.env[name];
  if (!value) {
    console.error(`missing environment variable ${name}`);
    process.exit(2);
  }
  return value;
}

const bearer = (t) => (/^bearer /i.test(t) ? t : `Bearer ${t}`);
const BASE = env("TWINBASE_URL").replace(/\/+$/, "");
const TOKEN = bearer(env("TWINBASE_TOKEN"));
const OTHER = bearer(env("TWINBASE_TOKEN_OTHER"));
const KEEP_GOING = ["1", "true", "yes"].includes((process.env.COMPAT_KEEP_GOING || "").toLowerCase());

const client = new ITwinsAccessClient(`${BASE}/itwins`);

// Observe (never alter) what the client sends: the client calls the default export of the CommonJS axios
// build, so interceptors registered on that same instance see every request and response.
const require = createRequire(import.meta.url);
const axios = require("axios");
const exchanges = [];
let exchangeCount = 0;
axios.interceptors.request.use((config) => {
  exchangeCount += 1;
  exchanges.push({ n: exchangeCount, request: config, response: null });
  if (exchanges.length > 20) exchanges.shift();
  return config;
});
axios.interceptors.response.use(
  (response) => {
    const entry = exchanges.findLast((e) => e.request === response.config) ?? exchanges.at(-1);
    if (entry) entry.response = response;
    return response;
  },
  (error) => {
    const entry = exchanges.at(-1);
    if (entry) entry.response = error.response ?? { status: `no HTTP answer: ${error.code ?? ""}`, data: String(error) };
    return Promise.reject(error);
  },
);

function describeExchange(e) {
  const req = e.request;
  const headers = Object.fromEntries(
    Object.entries(req.headers?.toJSON?.() ?? req.headers ?? {}).map(([k, v]) => [
      k,
      k.toLowerCase() === "authorization" ? `${String(v).slice(0, 16)}...` : v,
    ]),
  );
  const lines = [`  > ${String(req.method).toUpperCase()} ${req.url}`, `  > headers ${JSON.stringify(headers)}`];
  if (req.data !== undefined) lines.push(`  > body ${typeof req.data === "string" ? req.data : JSON.stringify(req.data)}`);
  if (e.response) {
    const body = typeof e.response.data === "string" ? e.response.data : JSON.stringify(e.response.data);
    lines.push(`  < ${e.response.status} ${body === undefined ? "" : body.slice(0, 2000)}`);
  } else {
    lines.push("  < (no response)");
  }
  return lines.join("\n");
}

// Plain HTTP for what the 1.6.1 client cannot do (add favorites and recents).
async function http(method, path, token = TOKEN) {
  const resp = await fetch(`${BASE}${path}`, { method, headers: { authorization: token } });
  const text = await resp.text();
  return { status: resp.status, text, json: text ? JSON.parse(text) : undefined };
}

const failures = [];
let stepNo = 0;

async function step(name, fn) {
  stepNo += 1;
  const label = `${String(stepNo).padStart(2, "0")} ${name}`;
  const mark = exchangeCount;
  try {
    const note = await fn();
    console.log(`ok   ${label}${note ? ` (${note})` : ""}`);
  } catch (err) {
    console.log(`FAIL ${label}`);
    console.log(`  ${String(err && err.stack ? err.stack : err).split("\n").slice(0, 12).join("\n  ")}`);
    const recent = exchanges.filter((e) => e.n > mark).slice(-3);
    if (recent.length) {
      console.log("  last HTTP exchange(s) made by the client in this step:");
      for (const e of recent) console.log(describeExchange(e));
    }
    failures.push(label);
    if (!KEEP_GOING) {
      console.log("stopping at the first failure");
      process.exit(1);
    }
  }
}

// ------------------------------------------------------------------------------------------ helpers

function ok(resp, status, what) {
  assert.equal(
    resp.status,
    status,
    `${what}: expected HTTP ${status}, got ${resp.status} ${JSON.stringify(resp.error ?? resp.data ?? null)}`,
  );
  assert.equal(resp.error, undefined, `${what}: unexpected error ${JSON.stringify(resp.error)}`);
}

function failed(resp, status, code, what) {
  assert.equal(resp.status, status, `${what}: expected HTTP ${status}, got ${resp.status} ${JSON.stringify(resp)}`);
  assert.ok(resp.error, `${what}: expected an error body, got ${JSON.stringify(resp)}`);
  assert.equal(resp.error.code, code, `${what}: error ${JSON.stringify(resp.error)}`);
  assert.equal(typeof resp.error.message, "string");
  assert.ok(resp.error.message.length > 0, "error message must not be empty");
  assert.equal(resp.data, undefined, `${what}: an error carries no data`);
}

const ids = (list) => list.map((t) => t.id);
const sorted = (list) => [...list].sort();
const MINIMAL_KEYS = ["id", "class", "subClass", "type", "number", "displayName"];
const REPRESENTATION_KEYS = [
  ...MINIMAL_KEYS,
  "geographicLocation",
  "ianaTimeZone",
  "dataCenterLocation",
  "status",
  "parentId",
  "iTwinAccountId",
  "imageName",
  "image",
  "createdDateTime",
  "createdBy",
];

function assertMinimal(t, what) {
  for (const k of MINIMAL_KEYS) assert.ok(k in t, `${what}: minimal iTwin lacks '${k}': ${JSON.stringify(t)}`);
  for (const k of ["createdDateTime", "createdBy", "status", "dataCenterLocation", "parentId"]) {
    assert.ok(!(k in t), `${what}: minimal iTwin must not carry '${k}': ${JSON.stringify(t)}`);
  }
}

function assertRepresentation(t, what) {
  for (const k of REPRESENTATION_KEYS) {
    assert.ok(k in t, `${what}: representation lacks '${k}': ${JSON.stringify(t)}`);
  }
  assert.equal(typeof t.parentId, "string", `${what}: parentId`);
  assert.equal(typeof t.iTwinAccountId, "string", `${what}: iTwinAccountId`);
  assert.ok(!Number.isNaN(Date.parse(t.createdDateTime)), `${what}: createdDateTime ${t.createdDateTime}`);
}

// Every iTwin of this run is tagged so the script can share a server (and a user) with other runs.
const TAG = `cx${randomUUID().replaceAll("-", "").slice(0, 10)}`;
const mine = {}; // key -> created iTwin (representation)

async function queryTagged(arg, token = TOKEN) {
  const resp = await client.queryAsync(token, undefined, arg);
  ok(resp, 200, `queryAsync ${JSON.stringify(arg)}`);
  assert.ok(Array.isArray(resp.data), "queryAsync data must be an array");
  return resp.data;
}

// ------------------------------------------------------------------------------------------- steps

await step("createiTwin: several iTwins with numbers", async () => {
  const specs = {
    alpha: { class: ITwinClass.Endeavor, subClass: ITwinSubClass.Project, displayName: `Alpha ${TAG}`, number: `${TAG}-001` },
    beta: { class: ITwinClass.Endeavor, subClass: ITwinSubClass.Project, displayName: `Beta ${TAG}`, number: `${TAG}-002`, dataCenterLocation: "North Europe", ianaTimeZone: "Europe/Paris", geographicLocation: "Paris, France" },
    gamma: { class: ITwinClass.Endeavor, subClass: ITwinSubClass.Project, displayName: `Gamma ${TAG}`, number: `${TAG}-003`, type: "Bridge" },
    pump: { class: ITwinClass.Thing, subClass: ITwinSubClass.Asset, displayName: `Pump ${TAG}`, number: `${TAG}-A01` },
    old: { class: ITwinClass.Endeavor, subClass: ITwinSubClass.Project, displayName: `Old ${TAG}`, number: `${TAG}-OLD`, status: "Inactive" },
  };
  for (const [key, body] of Object.entries(specs)) {
    const resp = await client.createiTwin(TOKEN, body);
    ok(resp, 201, `createiTwin ${key}`);
    const t = resp.data;
    assert.match(t.id, /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i, "id is a GUID");
    assert.equal(t.class, body.class);
    assert.equal(t.subClass, body.subClass);
    assert.equal(t.displayName, body.displayName);
    assert.equal(t.number, body.number);
    assert.equal(t.status, body.status ?? "Active");
    assert.equal(t.dataCenterLocation, body.dataCenterLocation ?? "East US");
    assert.equal(t.createdBy !== undefined && t.createdBy !== null, true, "createdBy set");
    assertRepresentation(t, `createiTwin ${key}`);
    assert.equal(t.parentId, t.iTwinAccountId, "a top-level iTwin's parent is its account");
    if (body.ianaTimeZone) assert.equal(t.ianaTimeZone, body.ianaTimeZone);
    if (body.geographicLocation) assert.equal(t.geographicLocation, body.geographicLocation);
    if (body.type) assert.equal(t.type, body.type);
    mine[key] = t;
  }
  // A child work package under alpha (for the parentId query).
  const child = await client.createiTwin(TOKEN, {
    class: ITwinClass.Endeavor,
    subClass: ITwinSubClass.WorkPackage,
    displayName: `Child ${TAG}`,
    number: `${TAG}-001-WP`,
    parentId: mine.alpha.id,
  });
  ok(child, 201, "createiTwin child");
  assert.equal(child.data.parentId, mine.alpha.id);
  assert.equal(child.data.iTwinAccountId, mine.alpha.iTwinAccountId);
  assert.equal(child.data.subClass, ITwinSubClass.WorkPackage);
  mine.child = child.data;
  const accounts = new Set(Object.values(mine).map((t) => t.iTwinAccountId));
  assert.equal(accounts.size, 1, "all iTwins of one user share the account");
  return `${Object.keys(mine).length} created, tag ${TAG}`;
});

await step("getAsync: default result mode is minimal", async () => {
  const resp = await client.getAsync(TOKEN, mine.alpha.id);
  ok(resp, 200, "getAsync");
  assertMinimal(resp.data, "getAsync default");
  assert.equal(resp.data.id, mine.alpha.id);
  assert.equal(resp.data.number, `${TAG}-001`);
  assert.equal(resp.data.displayName, `Alpha ${TAG}`);
});

await step("getAsync: minimal", async () => {
  const resp = await client.getAsync(TOKEN, mine.beta.id, "minimal");
  ok(resp, 200, "getAsync minimal");
  assertMinimal(resp.data, "getAsync minimal");
  assert.deepEqual(
    { id: resp.data.id, class: resp.data.class, subClass: resp.data.subClass, number: resp.data.number },
    { id: mine.beta.id, class: "Endeavor", subClass: "Project", number: `${TAG}-002` },
  );
});

await step("getAsync: representation", async () => {
  const resp = await client.getAsync(TOKEN, mine.beta.id, "representation");
  ok(resp, 200, "getAsync representation");
  const t = resp.data;
  assertRepresentation(t, "getAsync representation");
  assert.equal(t.id, mine.beta.id);
  assert.equal(t.dataCenterLocation, "North Europe");
  assert.equal(t.ianaTimeZone, "Europe/Paris");
  assert.equal(t.geographicLocation, "Paris, France");
  assert.equal(t.status, "Active");
  assert.equal(t.createdDateTime, mine.beta.createdDateTime);
  assert.equal(t.imageName, null);
  assert.equal(t.image, null);
});

await step("queryAsync: subClass (argument object and deprecated positional form)", async () => {
  const assets = await queryTagged({ subClass: ITwinSubClass.Asset, search: TAG });
  assert.deepEqual(ids(assets), [mine.pump.id]);
  assertMinimal(assets[0], "queryAsync subClass");
  const all = await queryTagged({ subClass: ITwinSubClass.Asset });
  assert.ok(all.every((t) => t.subClass === "Asset"), "subClass=Asset returns only assets");
  assert.ok(ids(all).includes(mine.pump.id));
  const positional = await client.queryAsync(TOKEN, ITwinSubClass.WorkPackage);
  ok(positional, 200, "queryAsync(token, WorkPackage)");
  assert.ok(positional.data.every((t) => t.subClass === "WorkPackage"));
  assert.ok(ids(positional.data).includes(mine.child.id));
  const projects = await queryTagged({ subClass: ITwinSubClass.Project, search: TAG });
  assert.deepEqual(sorted(ids(projects)), sorted([mine.alpha.id, mine.beta.id, mine.gamma.id]));
  return `${all.length} asset(s), ${positional.data.length} work package(s)`;
});

await step("queryAsync: search", async () => {
  const found = await queryTagged({ search: TAG });
  // Inactive is hidden by default; Account iTwins are not listed without subClass=Account.
  const expected = [mine.alpha, mine.beta, mine.gamma, mine.pump, mine.child].map((t) => t.id);
  assert.deepEqual(sorted(ids(found)), sorted(expected));
  const byName = await queryTagged({ search: `Gamma ${TAG}` });
  assert.deepEqual(ids(byName), [mine.gamma.id]);
  const byNumber = await queryTagged({ search: `${TAG}-A0` });
  assert.deepEqual(ids(byNumber), [mine.pump.id]);
  const caseless = await queryTagged({ search: `beta ${TAG.toUpperCase()}` });
  assert.deepEqual(ids(caseless), [mine.beta.id], "search is case-insensitive");
  const none = await queryTagged({ search: `${TAG}-nothing` });
  assert.deepEqual(none, []);
  return `${found.length} found`;
});

await step("queryAsync: displayName (exact)", async () => {
  const found = await queryTagged({ displayName: `Beta ${TAG}` });
  assert.deepEqual(ids(found), [mine.beta.id]);
  const partial = await queryTagged({ displayName: `Beta` });
  assert.ok(!ids(partial).includes(mine.beta.id), "displayName is an exact match, not a search");
});

await step("queryAsync: number (exact)", async () => {
  const found = await queryTagged({ number: `${TAG}-003` });
  assert.deepEqual(ids(found), [mine.gamma.id]);
  assert.equal(found[0].type, "Bridge");
  const partial = await queryTagged({ number: `${TAG}-00` });
  assert.deepEqual(partial, [], "number is an exact match");
});

await step("queryAsync: type", async () => {
  const found = await queryTagged({ type: "Bridge", search: TAG });
  assert.deepEqual(ids(found), [mine.gamma.id]);
});

await step("queryAsync: top/skip paging", async () => {
  const everything = await queryTagged({ search: TAG });
  assert.equal(everything.length, 5);
  const pages = [];
  for (let skip = 0; skip < 10; skip += 2) {
    const page = await queryTagged({ search: TAG, top: 2, skip });
    pages.push(ids(page));
    if (page.length < 2) break;
  }
  assert.deepEqual(
    pages.map((p) => p.length),
    [2, 2, 1],
    `pages of 2 over 5 iTwins: ${JSON.stringify(pages)}`,
  );
  assert.deepEqual(pages.flat(), ids(everything), "pages concatenate to the unpaged order, without repeats");
  const single = await queryTagged({ search: TAG, top: 1 });
  assert.equal(single.length, 1);
  const beyond = await queryTagged({ search: TAG, top: 2, skip: 100 });
  assert.deepEqual(beyond, []);
  return pages.map((p) => p.length).join("+");
});

await step("queryAsync: status and includeInactive", async () => {
  const hidden = await queryTagged({ search: TAG });
  assert.ok(!ids(hidden).includes(mine.old.id), "Inactive iTwins are hidden by default");
  const inactive = await queryTagged({ status: "Inactive", search: TAG });
  assert.deepEqual(ids(inactive), [mine.old.id]);
  assert.equal(inactive[0].number, `${TAG}-OLD`);
  const active = await queryTagged({ status: "Active", search: TAG });
  assert.equal(active.length, 5);
  const included = await queryTagged({ includeInactive: true, search: TAG });
  assert.deepEqual(sorted(ids(included)), sorted(Object.values(mine).map((t) => t.id)));
  const both = await client.queryAsync(TOKEN, undefined, { status: "Active", includeInactive: true });
  failed(both, 422, "InvalidiTwinsRequest", "status together with includeInactive");
  return `${included.length} with inactive`;
});

await step("queryAsync: parentId", async () => {
  const children = await queryTagged({ parentId: mine.alpha.id });
  assert.deepEqual(ids(children), [mine.child.id]);
  const top = await queryTagged({ parentId: mine.alpha.iTwinAccountId, search: TAG });
  assert.deepEqual(sorted(ids(top)), sorted([mine.alpha.id, mine.beta.id, mine.gamma.id, mine.pump.id]));
  const nobody = await queryTagged({ parentId: mine.gamma.id });
  assert.deepEqual(nobody, []);
});

await step("queryAsync: representation result mode", async () => {
  const found = await queryTagged({ number: `${TAG}-002`, resultMode: "representation" });
  assert.equal(found.length, 1);
  assertRepresentation(found[0], "queryAsync representation");
  assert.equal(found[0].dataCenterLocation, "North Europe");
});

await step("updateiTwin", async () => {
  const resp = await client.updateiTwin(TOKEN, mine.gamma.id, {
    displayName: `Gamma renamed ${TAG}`,
    number: `${TAG}-003b`,
    geographicLocation: "Exton, PA",
  });
  ok(resp, 200, "updateiTwin");
  assert.equal(resp.data.id, mine.gamma.id);
  assert.equal(resp.data.displayName, `Gamma renamed ${TAG}`);
  assert.equal(resp.data.number, `${TAG}-003b`);
  assert.equal(resp.data.type, "Bridge", "fields not sent stay as they were");
  const got = await client.getAsync(TOKEN, mine.gamma.id, "representation");
  ok(got, 200, "getAsync after update");
  assert.equal(got.data.displayName, `Gamma renamed ${TAG}`);
  assert.equal(got.data.number, `${TAG}-003b`);
  assert.equal(got.data.geographicLocation, "Exton, PA");
  const byNumber = await queryTagged({ number: `${TAG}-003b` });
  assert.deepEqual(ids(byNumber), [mine.gamma.id]);
  const oldNumber = await queryTagged({ number: `${TAG}-003` });
  assert.deepEqual(oldNumber, []);
  mine.gamma = got.data;
});

await step("createiTwin: duplicate number -> 409 iTwinExists", async () => {
  const resp = await client.createiTwin(TOKEN, {
    class: ITwinClass.Endeavor,
    subClass: ITwinSubClass.Project,
    displayName: `Duplicate ${TAG}`,
    number: `${TAG}-001`,
  });
  failed(resp, 409, "iTwinExists", "duplicate number on create");
  const upd = await client.updateiTwin(TOKEN, mine.beta.id, { number: `${TAG}-001` });
  failed(upd, 409, "iTwinExists", "duplicate number on update");
  const still = await queryTagged({ search: `Duplicate ${TAG}` });
  assert.deepEqual(still, [], "nothing was created");
});

await step("getAsync: unknown id -> 404 iTwinNotFound", async () => {
  const resp = await client.getAsync(TOKEN, randomUUID());
  failed(resp, 404, "iTwinNotFound", "unknown iTwin");
  const bad = await client.getAsync(TOKEN, "not-a-guid", "representation");
  failed(bad, 404, "iTwinNotFound", "malformed iTwin id");
});

await step("another user cannot see my iTwins (404)", async () => {
  const got = await client.getAsync(OTHER, mine.alpha.id, "representation");
  failed(got, 404, "iTwinNotFound", "other user's getAsync");
  const listed = await queryTagged({ search: TAG, includeInactive: true }, OTHER);
  assert.deepEqual(listed, [], "other user's list holds none of mine");
  const upd = await client.updateiTwin(OTHER, mine.alpha.id, { displayName: "hijacked" });
  failed(upd, 404, "iTwinNotFound", "other user's updateiTwin");
  const del = await client.deleteiTwin(OTHER, mine.alpha.id);
  failed(del, 404, "iTwinNotFound", "other user's deleteiTwin");
  const account = await client.getAccountAsync(OTHER, mine.alpha.id);
  failed(account, 404, "iTwinNotFound", "other user's getAccountAsync");
  const theirs = await client.getPrimaryAccountAsync(OTHER);
  ok(theirs, 200, "other user's primary account");
  assert.notEqual(theirs.data.id, mine.alpha.iTwinAccountId, "each user has their own account");
  const stillMine = await client.getAsync(TOKEN, mine.alpha.id, "representation");
  ok(stillMine, 200, "owner still sees it");
  assert.equal(stillMine.data.displayName, `Alpha ${TAG}`);
});

await step("queryFavoritesAsync after POST /itwins/favorites/{id}", async () => {
  for (const t of [mine.alpha, mine.pump]) {
    const added = await http("POST", `/itwins/favorites/${t.id}`);
    assert.equal(added.status, 204, `POST favorites: ${added.status} ${added.text}`);
    assert.equal(added.text, "", "204 has no body");
  }
  const again = await http("POST", `/itwins/favorites/${mine.alpha.id}`);
  assert.equal(again.status, 204, `re-adding a favorite: ${again.status} ${again.text}`);
  const resp = await client.queryFavoritesAsync(TOKEN);
  ok(resp, 200, "queryFavoritesAsync");
  assert.deepEqual(sorted(ids(resp.data)), sorted([mine.alpha.id, mine.pump.id]));
  resp.data.forEach((t) => assertMinimal(t, "favorite"));
  const assets = await client.queryFavoritesAsync(TOKEN, undefined, { subClass: ITwinSubClass.Asset });
  ok(assets, 200, "queryFavoritesAsync subClass");
  assert.deepEqual(ids(assets.data), [mine.pump.id]);
  const positional = await client.queryFavoritesAsync(TOKEN, ITwinSubClass.Project);
  ok(positional, 200, "queryFavoritesAsync positional subClass");
  assert.deepEqual(ids(positional.data), [mine.alpha.id]);
  const paged = await client.queryFavoritesAsync(TOKEN, undefined, { top: 1, resultMode: "representation" });
  ok(paged, 200, "queryFavoritesAsync top=1");
  assert.equal(paged.data.length, 1);
  assertRepresentation(paged.data[0], "favorite representation");
  const theirs = await client.queryFavoritesAsync(OTHER);
  ok(theirs, 200, "other user's favorites");
  assert.ok(!ids(theirs.data).includes(mine.alpha.id));
  const foreign = await http("POST", `/itwins/favorites/${mine.alpha.id}`, OTHER);
  assert.equal(foreign.status, 404, `favoriting an invisible iTwin: ${foreign.status} ${foreign.text}`);
  assert.equal(foreign.json.error.code, "iTwinNotFound");
  return `${resp.data.length} favorites`;
});

await step("queryRecentsAsync after POST /itwins/recents/{id}", async () => {
  for (const t of [mine.beta, mine.alpha, mine.gamma]) {
    const added = await http("POST", `/itwins/recents/${t.id}`);
    assert.equal(added.status, 204, `POST recents: ${added.status} ${added.text}`);
    await new Promise((r) => setTimeout(r, 15));
  }
  const resp = await client.queryRecentsAsync(TOKEN);
  ok(resp, 200, "queryRecentsAsync");
  assert.deepEqual(ids(resp.data), [mine.gamma.id, mine.alpha.id, mine.beta.id], "newest first");
  // Touching one again moves it to the front.
  const touched = await http("POST", `/itwins/recents/${mine.beta.id}`);
  assert.equal(touched.status, 204, `re-adding a recent: ${touched.status} ${touched.text}`);
  const again = await client.queryRecentsAsync(TOKEN, undefined, { top: 2 });
  ok(again, 200, "queryRecentsAsync top=2");
  assert.deepEqual(ids(again.data), [mine.beta.id, mine.gamma.id]);
  const projects = await client.queryRecentsAsync(TOKEN, ITwinSubClass.Project);
  ok(projects, 200, "queryRecentsAsync positional subClass");
  assert.equal(projects.data.length, 3);
  const unknown = await http("POST", `/itwins/recents/${randomUUID()}`);
  assert.equal(unknown.status, 404, `recent of an unknown iTwin: ${unknown.status} ${unknown.text}`);
  const theirs = await client.queryRecentsAsync(OTHER);
  ok(theirs, 200, "other user's recents");
  assert.deepEqual(theirs.data, []);
});

await step("getPrimaryAccountAsync", async () => {
  const resp = await client.getPrimaryAccountAsync(TOKEN);
  ok(resp, 200, "getPrimaryAccountAsync");
  const a = resp.data;
  assert.equal(a.id, mine.alpha.iTwinAccountId);
  assert.equal(a.class, "Account");
  assert.equal(a.subClass, "Account");
  assert.equal(typeof a.displayName, "string");
  assert.equal(a.iTwinAccountId, a.id, "an account is its own account");
});

await step("getAccountAsync (minimal and representation)", async () => {
  const resp = await client.getAccountAsync(TOKEN, mine.child.id);
  ok(resp, 200, "getAccountAsync");
  assert.equal(resp.data.id, mine.child.iTwinAccountId);
  assert.equal(resp.data.class, "Account");
  assert.equal(resp.data.subClass, "Account");
  assertMinimal(resp.data, "getAccountAsync minimal");
  const full = await client.getAccountAsync(TOKEN, mine.pump.id, "representation");
  ok(full, 200, "getAccountAsync representation");
  assert.equal(full.data.id, mine.pump.iTwinAccountId);
  assert.equal(full.data.status, "Active");
  assert.equal(typeof full.data.createdDateTime, "string");
  const unknown = await client.getAccountAsync(TOKEN, randomUUID());
  failed(unknown, 404, "iTwinNotFound", "account of an unknown iTwin");
});

// Repositories: the 1.6.1 client knows only {id, class, subClass, uri}.
const WMS = {
  class: "GeographicInformationSystem",
  subClass: "WebMapService",
  uri: `https://maps.example.com/${TAG}/wms`,
};
const WMTS = {
  class: "GeographicInformationSystem",
  subClass: "WebMapTileService",
  uri: `https://tiles.example.com/${TAG}/wmts`,
  displayName: `Tiles ${TAG}`,
};
const repos = {};

await step("createRepository", async () => {
  const resp = await client.createRepository(TOKEN, mine.alpha.id, WMS);
  ok(resp, 201, "createRepository (client 1.6.1 shape)");
  assert.equal(typeof resp.data.id, "string");
  assert.ok(resp.data.id.length > 0);
  assert.equal(resp.data.class, WMS.class);
  assert.equal(resp.data.subClass, WMS.subClass);
  assert.equal(resp.data.uri, WMS.uri);
  repos.wms = resp.data;
  const second = await client.createRepository(TOKEN, mine.alpha.id, WMTS);
  ok(second, 201, "createRepository with displayName");
  assert.equal(second.data.subClass, WMTS.subClass);
  assert.equal(second.data.uri, WMTS.uri);
  assert.notEqual(second.data.id, repos.wms.id);
  repos.wmts = second.data;
  const dup = await client.createRepository(TOKEN, mine.alpha.id, WMS);
  failed(dup, 409, "iTwinRepositoryExists", "the same repository twice");
  const foreign = await client.createRepository(OTHER, mine.alpha.id, { ...WMS, uri: `${WMS.uri}?x=1` });
  failed(foreign, 404, "iTwinNotFound", "other user's createRepository");
  const unknown = await client.createRepository(TOKEN, randomUUID(), WMS);
  failed(unknown, 404, "iTwinNotFound", "createRepository on an unknown iTwin");
  return `ids ${repos.wms.id}, ${repos.wmts.id}`;
});

await step("queryRepositoriesAsync (all and with class filter)", async () => {
  const all = await client.queryRepositoriesAsync(TOKEN, mine.alpha.id);
  ok(all, 200, "queryRepositoriesAsync");
  assert.ok(Array.isArray(all.data));
  const classes = all.data.map((r) => r.class);
  assert.ok(classes.includes("iModels"), `a new iTwin has its default iModels repository: ${JSON.stringify(all.data)}`);
  const listed = all.data.filter((r) => r.class === WMS.class);
  assert.deepEqual(sorted(ids(listed)), sorted([repos.wms.id, repos.wmts.id]));
  for (const r of all.data) {
    for (const k of ["id", "class", "uri"]) assert.ok(k in r, `repository lacks '${k}': ${JSON.stringify(r)}`);
  }
  assert.equal(all.data.find((r) => r.id === repos.wms.id).uri, WMS.uri);
  const gis = await client.queryRepositoriesAsync(TOKEN, mine.alpha.id, { class: WMS.class });
  ok(gis, 200, "queryRepositoriesAsync class=GIS");
  assert.deepEqual(sorted(ids(gis.data)), sorted([repos.wms.id, repos.wmts.id]));
  assert.ok(gis.data.every((r) => r.class === WMS.class));
  const wmts = await client.queryRepositoriesAsync(TOKEN, mine.alpha.id, { class: WMS.class, subClass: "WebMapTileService" });
  ok(wmts, 200, "queryRepositoriesAsync class+subClass");
  assert.deepEqual(ids(wmts.data), [repos.wmts.id]);
  const imodels = await client.queryRepositoriesAsync(TOKEN, mine.alpha.id, { class: "iModels" });
  ok(imodels, 200, "queryRepositoriesAsync class=iModels");
  assert.ok(imodels.data.length >= 1 && imodels.data.every((r) => r.class === "iModels"));
  const other = await client.queryRepositoriesAsync(TOKEN, mine.beta.id, { class: WMS.class });
  ok(other, 200, "queryRepositoriesAsync of another iTwin");
  assert.deepEqual(other.data, [], "repositories belong to their iTwin");
  const foreign = await client.queryRepositoriesAsync(OTHER, mine.alpha.id);
  failed(foreign, 404, "iTwinNotFound", "other user's queryRepositoriesAsync");
  return `${all.data.length} repositories`;
});

await step("deleteRepository", async () => {
  const foreign = await client.deleteRepository(OTHER, mine.alpha.id, repos.wms.id);
  failed(foreign, 404, "iTwinNotFound", "other user's deleteRepository");
  const resp = await client.deleteRepository(TOKEN, mine.alpha.id, repos.wms.id);
  ok(resp, 204, "deleteRepository");
  assert.equal(resp.data, undefined);
  const left = await client.queryRepositoriesAsync(TOKEN, mine.alpha.id, { class: WMS.class });
  ok(left, 200, "queryRepositoriesAsync after delete");
  assert.deepEqual(ids(left.data), [repos.wmts.id]);
  const again = await client.deleteRepository(TOKEN, mine.alpha.id, repos.wms.id);
  failed(again, 404, "iTwinRepositoryNotFound", "deleting it twice");
  const rest = await client.deleteRepository(TOKEN, mine.alpha.id, repos.wmts.id);
  ok(rest, 204, "deleteRepository (second)");
});

await step("deleteiTwin, then getAsync -> 404", async () => {
  // Children before parents.
  const order = ["child", "alpha", "beta", "gamma", "pump", "old"];
  for (const key of order) {
    const resp = await client.deleteiTwin(TOKEN, mine[key].id);
    ok(resp, 204, `deleteiTwin ${key}`);
    assert.equal(resp.data, undefined, "204 has no body");
    const got = await client.getAsync(TOKEN, mine[key].id, "representation");
    failed(got, 404, "iTwinNotFound", `getAsync after deleting ${key}`);
  }
  const gone = await queryTagged({ search: TAG, includeInactive: true });
  assert.deepEqual(gone, []);
  const favorites = await client.queryFavoritesAsync(TOKEN);
  ok(favorites, 200, "favorites after delete");
  assert.ok(!ids(favorites.data).some((id) => ids(Object.values(mine)).includes(id)), "deleted iTwins leave favorites");
  const recents = await client.queryRecentsAsync(TOKEN);
  ok(recents, 200, "recents after delete");
  assert.ok(!ids(recents.data).some((id) => ids(Object.values(mine)).includes(id)), "deleted iTwins leave recents");
  const twice = await client.deleteiTwin(TOKEN, mine.alpha.id);
  failed(twice, 404, "iTwinNotFound", "deleting twice");
  return `${order.length} deleted`;
});

if (failures.length) {
  console.log(`${failures.length} step(s) failed: ${failures.join("; ")}`);
  process.exit(1);
}
console.log(`all ${stepNo} steps passed`);
