// What the iModels compat scripts share: environment, numbered steps that stop at the first failure (or,
// with COMPAT_KEEP_GOING=1, run on and report every failure), a record of the last HTTP exchanges the
// official clients made (printed when a step fails), plain HTTP for set-up, and assertion helpers.

import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { createRequire } from "node:module";

export function env(name, fallback) {
  const value = process.env[name] ?? fallback;
  if (!value) {
    console.error(`missing environment variable ${name}`);
    process.exit(2);
  }
  return value;
}

export const bearer = (t) => (/^bearer /i.test(t) ? t : `Bearer ${t}`);
export const bare = (t) => t.replace(/^bearer /i, "");
export const BASE = env("TWINBASE_URL").replace(/\/+$/, "");
export const TOKEN = bearer(env("TWINBASE_TOKEN"));
export const KEEP_GOING = ["1", "true", "yes"].includes((process.env.COMPAT_KEEP_GOING || "").toLowerCase());
/** A tag unique to this run, so runs can share a server and a user. */
export const TAG = `cx${randomUUID().replaceAll("-", "").slice(0, 10)}`;

/** The iModels clients' authorization callback for a token. */
export const authorization = (token = TOKEN) => async () => ({ scheme: "Bearer", token: bare(token) });

// Observe (never alter) the exchanges: the iModels clients call the default export of the CommonJS axios.
const require = createRequire(import.meta.url);
const axios = require("axios");
const exchanges = [];
let exchangeCount = 0;
axios.interceptors.request.use((config) => {
  exchangeCount += 1;
  exchanges.push({ n: exchangeCount, request: config, response: null });
  if (exchanges.length > 30) exchanges.shift();
  return config;
});
axios.interceptors.response.use(
  (response) => {
    const entry = exchanges.findLast((e) => e.request === response.config);
    if (entry) entry.response = response;
    return response;
  },
  (error) => {
    const entry = exchanges.findLast((e) => e.request === error.config) ?? exchanges.at(-1);
    if (entry) entry.response = error.response ?? { status: `no HTTP answer: ${error.code ?? ""}`, data: String(error) };
    return Promise.reject(error);
  },
);

function show(data) {
  if (data === undefined || data === null) return "";
  if (Buffer.isBuffer(data) || data instanceof ArrayBuffer) return `<${data.byteLength} bytes>`;
  if (typeof data === "string") return data;
  if (typeof data.pipe === "function") return "<stream>";
  try {
    return JSON.stringify(data);
  } catch {
    return String(data);
  }
}

function describeExchange(e) {
  const req = e.request;
  const lines = [`  > ${String(req.method).toUpperCase()} ${req.url}`];
  if (req.data !== undefined) lines.push(`  > body ${show(req.data).slice(0, 1000)}`);
  if (e.response) lines.push(`  < ${e.response.status} ${show(e.response.data).slice(0, 2000)}`);
  else lines.push("  < (no response)");
  return lines.join("\n");
}

const failures = [];
let stepNo = 0;

/** Run one numbered step; prints "ok NN name" or the failure with the client's last HTTP exchanges. */
export async function step(name, fn) {
  stepNo += 1;
  const label = `${String(stepNo).padStart(2, "0")} ${name}`;
  const mark = exchangeCount;
  const started = Date.now();
  try {
    const note = await fn();
    const ms = Date.now() - started;
    console.log(`ok   ${label}${note ? ` (${note})` : ""}${ms > 2000 ? ` [${(ms / 1000).toFixed(1)} s]` : ""}`);
  } catch (err) {
    console.log(`FAIL ${label}`);
    console.log(`  ${String(err && err.stack ? err.stack : err).split("\n").slice(0, 14).join("\n  ")}`);
    if (err?.originalError?.response) console.log(`  wire error: ${show(err.originalError.response.data).slice(0, 1000)}`);
    const recent = exchanges.filter((e) => e.n > mark).slice(-3);
    if (recent.length) {
      console.log("  last HTTP exchange(s) made by the clients in this step:");
      for (const e of recent) console.log(describeExchange(e));
    }
    failures.push(label);
    if (!KEEP_GOING) {
      console.log("stopping at the first failure");
      await finish.cleanup?.();
      process.exit(1);
    }
  }
}

/** Print the summary and exit (1 when a step failed). `finish.cleanup` runs first when set. */
export async function finish() {
  await finish.cleanup?.();
  if (failures.length) {
    console.log(`${failures.length} step(s) failed: ${failures.join("; ")}`);
    process.exit(1);
  }
  console.log(`all ${stepNo} steps passed`);
  process.exit(0);
}

/** Plain HTTP against twinbase (set-up and what the clients cannot do). */
export async function http(method, path, { token = TOKEN, body, headers = {} } = {}) {
  const resp = await fetch(`${BASE}${path}`, {
    method,
    headers: {
      authorization: bearer(token),
      // The iTwins API is v1, the iModels API v2.
      accept: `application/vnd.bentley.itwin-platform.${path.startsWith("/imodels") ? "v2" : "v1"}+json`,
      ...(body === undefined ? {} : { "content-type": "application/json" }),
      ...headers,
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await resp.text();
  let json;
  try {
    json = text ? JSON.parse(text) : undefined;
  } catch {
    json = undefined;
  }
  return { status: resp.status, text, json, headers: resp.headers };
}

/** A new iTwin (a Project) owned by the token's user. */
export async function newITwin(token = TOKEN, name = `iModels ${TAG}`) {
  const resp = await http("POST", "/itwins/", {
    token,
    body: { class: "Endeavor", subClass: "Project", displayName: `${name} ${randomUUID().slice(0, 6)}` },
  });
  assert.equal(resp.status, 201, `create iTwin: ${resp.status} ${resp.text}`);
  return resp.json.iTwin.id;
}

/** Drain an async iterator into an array. */
export async function all(iterator) {
  const out = [];
  for await (const item of iterator) out.push(item);
  return out;
}

/**
 * Expect the promise to fail with an iModels API error of `code`; returns the error. The wire code is read
 * from the axios error the client wraps, since the client maps some codes to "Unrecognized".
 */
export async function rejects(promise, code, { status, wireCode } = {}) {
  let error;
  try {
    await promise;
  } catch (err) {
    error = err;
  }
  assert.ok(error, `expected an error ${code}, but the call succeeded`);
  const wire = error.originalError?.response?.data?.error;
  assert.equal(error.code, code, `error code: got ${error.code} (${error.message}); wire ${JSON.stringify(wire)}`);
  if (wireCode !== undefined) assert.equal(wire?.code, wireCode, `wire code: ${JSON.stringify(wire)}`);
  if (status !== undefined) assert.equal(error.statusCode, status, `status of ${code}: ${error.statusCode}`);
  assert.equal(typeof error.message, "string");
  return error;
}

/** Like rejects, for a failure that may carry any of `codes`; returns the error. */
export async function rejectsOneOf(promise, codes) {
  let error;
  try {
    await promise;
  } catch (err) {
    error = err;
  }
  assert.ok(error, `expected one of ${codes.join(", ")}, but the call succeeded`);
  assert.ok(codes.includes(error.code), `error code: got ${error.code} (${error.message}), expected one of ${codes.join(", ")}`);
  return error;
}

export const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
export { assert };
