// Drives the official @itwin/imodels-client-management 6.2.2 (unchanged, only its base URL and token)
// against a live twinbase and asserts every answer: iModels (create empty, get, lists with filters and
// ordering, update, delete), changesets, checkpoints, named versions, briefcases, users, permissions,
// thumbnails, favorites and recents, locks, and the exact error codes of the failure cases.
//
//   TWINBASE_URL=http://127.0.0.1:8110 TWINBASE_TOKEN=<jwt> TWINBASE_TOKEN_OTHER=<jwt> node compat/imodels-management.mjs
//
// The changesets are real: made by core-backend (HubMock) on top of the new iModel's own baseline, downloaded
// from twinbase (which also proves the empty seed opens in iTwin.js), and pushed with plain HTTP. Tokens may
// be bare or "Bearer <jwt>". COMPAT_KEEP_GOING=1 runs every step and reports all failures at the end.

import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import zlib from "node:zlib";
import { randomBytes } from "node:crypto";

import { IModelHost } from "@itwin/core-backend";
import {
  ContentType,
  IModelOrderByProperty,
  IModelState,
  IModelsClient,
  IModelsErrorCode,
  LockLevel,
  NamedVersionOrderByProperty,
  NamedVersionState,
  OrderByOperator,
  ThumbnailSize,
  UserOrderByProperty,
  toArray,
} from "@itwin/imodels-client-management";

import { identityOf, makeChangesets, startBackend } from "./lib/changesets.mjs";
import {
  BASE,
  GUID,
  TAG,
  TOKEN,
  assert,
  authorization,
  env,
  finish,
  http,
  newITwin,
  rejects,
  rejectsOneOf,
  step,
} from "./lib/harness.mjs";

const OTHER = env("TWINBASE_TOKEN_OTHER");
const work = fs.mkdtempSync(path.join(os.tmpdir(), "twinbase-mgmt-"));
finish.cleanup = async () => {
  if (IModelHost.isValid) await IModelHost.shutdown();
  fs.rmSync(work, { recursive: true, force: true });
};

const client = new IModelsClient({ api: { baseUrl: `${BASE}/imodels` } });
const auth = { authorization: authorization(TOKEN) };
const otherAuth = { authorization: authorization(OTHER) };
const s = {}; // what the steps share

const isoDate = (v, what) => assert.ok(typeof v === "string" && !Number.isNaN(Date.parse(v)), `${what}: ${v}`);

/** A real PNG of w x h pixels, one color. */
function png(w, h, [r, g, b]) {
  const crcTable = Array.from({ length: 256 }, (_, n) => {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    return c >>> 0;
  });
  const crc = (buf) => {
    let c = 0xffffffff;
    for (const byte of buf) c = crcTable[(c ^ byte) & 0xff] ^ (c >>> 8);
    return (c ^ 0xffffffff) >>> 0;
  };
  const chunk = (type, data) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const body = Buffer.concat([Buffer.from(type, "ascii"), data]);
    const sum = Buffer.alloc(4);
    sum.writeUInt32BE(crc(body));
    return Buffer.concat([len, body, sum]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0);
  ihdr.writeUInt32BE(h, 4);
  ihdr.set([8, 2, 0, 0, 0], 8); // 8-bit RGB
  const row = Buffer.concat([Buffer.from([0]), Buffer.from(Array.from({ length: w }, () => [r, g, b]).flat())]);
  const raw = Buffer.concat(Array.from({ length: h }, () => row));
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk("IHDR", ihdr),
    chunk("IDAT", zlib.deflateSync(raw)),
    chunk("IEND", Buffer.alloc(0)),
  ]);
}

/** Push a changeset file with plain HTTP, the way the authoring client does (create, blob PUT, complete). */
async function pushRaw(iModelId, briefcaseId, cs) {
  const created = await http("POST", `/imodels/${iModelId}/changesets`, {
    body: {
      id: cs.id,
      description: cs.description,
      parentId: cs.parentId,
      briefcaseId,
      containingChanges: cs.changesType === 1 ? 1 : 0,
      fileSize: cs.fileSize,
    },
  });
  assert.equal(created.status, 201, `create changeset ${cs.index}: ${created.text}`);
  const link = created.json.changeset._links.upload;
  const put = await fetch(link.href, {
    method: "PUT",
    headers: { "x-ms-blob-type": "BlockBlob", "content-type": "application/octet-stream" },
    body: fs.readFileSync(cs.pathname),
  });
  assert.equal(put.status, 201, `upload changeset ${cs.index}: ${put.status} ${await put.text()}`);
  const done = await http("PATCH", new URL(created.json.changeset._links.complete.href).pathname, {
    body: { state: "fileUploaded", briefcaseId },
  });
  assert.equal(done.status, 200, `complete changeset ${cs.index}: ${done.text}`);
  assert.equal(done.json.changeset.index, cs.index, "twinbase numbers changesets 1, 2, 3, ...");
}

// ------------------------------------------------------------------------------------------- steps

await step("iModels.createEmpty: a valid empty iModel from the seed", async () => {
  s.iTwinId = await newITwin(TOKEN, "management");
  const extent = { southWest: { latitude: 46.1, longitude: 7.2 }, northEast: { latitude: 46.3, longitude: 7.5 } };
  const iModel = await client.iModels.createEmpty({
    ...auth,
    iModelProperties: { iTwinId: s.iTwinId, name: `Alpha ${TAG}`, description: "the first one", extent },
  });
  assert.match(iModel.id, GUID);
  assert.equal(iModel.displayName, `Alpha ${TAG}`);
  assert.equal(iModel.name, `Alpha ${TAG}`);
  assert.equal(iModel.description, "the first one");
  assert.equal(iModel.state, IModelState.Initialized);
  assert.equal(iModel.iTwinId, s.iTwinId);
  assert.deepEqual(iModel.extent, extent);
  assert.equal(iModel.containersEnabled, 0);
  assert.ok(iModel.dataCenterLocation, "dataCenterLocation is set");
  assert.equal(iModel.lastChangesetPushDateTime, null);
  isoDate(iModel.createdDateTime, "createdDateTime");
  const creator = await iModel.getCreator();
  assert.ok(creator?.id, "getCreator follows _links.creator");
  s.me = creator;
  s.alpha = iModel;
  for (const name of [`Beta ${TAG}`, `Gamma ${TAG}`]) {
    const more = await client.iModels.createEmpty({
      ...auth,
      iModelProperties: { iTwinId: s.iTwinId, name, description: name.startsWith("Beta") ? "ROAD works" : undefined },
    });
    assert.equal(more.description ?? null, name.startsWith("Beta") ? "ROAD works" : null);
    (s.more ??= []).push(more);
  }
  return iModel.id;
});

await step("iModels.createEmpty: failure cases", async () => {
  await rejects(
    client.iModels.createEmpty({ ...auth, iModelProperties: { iTwinId: s.iTwinId, name: `Alpha ${TAG}` } }),
    IModelsErrorCode.IModelExists,
    { status: 409 },
  );
  const long = await rejects(
    client.iModels.createEmpty({
      ...auth,
      iModelProperties: { iTwinId: s.iTwinId, name: `Long ${TAG}`, description: "x".repeat(256) },
    }),
    IModelsErrorCode.InvalidIModelsRequest,
    { status: 422 },
  );
  assert.equal(long.details?.[0]?.code, IModelsErrorCode.InvalidValue);
  assert.equal(long.details?.[0]?.target, "description");
  await rejects(
    client.iModels.createEmpty({
      ...auth,
      iModelProperties: { iTwinId: "7a3c6f0e-0000-4000-8000-000000000000", name: `Nowhere ${TAG}` },
    }),
    IModelsErrorCode.ITwinNotFound,
    { status: 404 },
  );
  await rejects(
    client.iModels.createEmpty({ ...otherAuth, iModelProperties: { iTwinId: s.iTwinId, name: `Intruder ${TAG}` } }),
    IModelsErrorCode.ITwinNotFound,
    { status: 404 },
  );
});

await step("iModels.getSingle, and iModelNotFound", async () => {
  const got = await client.iModels.getSingle({ ...auth, iModelId: s.alpha.id });
  assert.equal(got.id, s.alpha.id);
  assert.equal(got.name, s.alpha.name);
  assert.equal(got.createdDateTime, s.alpha.createdDateTime);
  await rejects(
    client.iModels.getSingle({ ...auth, iModelId: "5a1b2c3d-0000-4000-8000-000000000000" }),
    IModelsErrorCode.IModelNotFound,
    { status: 404 },
  );
  const err = await rejects(
    client.iModels.getSingle({ ...otherAuth, iModelId: s.alpha.id }),
    IModelsErrorCode.IModelNotFound,
    { status: 404 },
  );
  assert.equal(err.message, "Requested iModel is not available.");
  await rejects(client.iModels.getSingle({ authorization: authorization("not-a-jwt"), iModelId: s.alpha.id }), IModelsErrorCode.Unauthorized, {
    status: 401,
  });
});

await step("iModels.getMinimalList / getRepresentationList: filters, $search, $orderBy, paging", async () => {
  const ids = [s.alpha.id, ...s.more.map((m) => m.id)];
  const minimal = await toArray(client.iModels.getMinimalList({ ...auth, urlParams: { iTwinId: s.iTwinId } }));
  assert.deepEqual(minimal.map((m) => m.id).sort(), [...ids].sort());
  for (const m of minimal) assert.deepEqual(Object.keys(m).sort(), ["displayName", "id"]);
  const byNameDesc = await toArray(
    client.iModels.getRepresentationList({
      ...auth,
      urlParams: { iTwinId: s.iTwinId, $orderBy: { property: IModelOrderByProperty.Name, operator: OrderByOperator.Descending } },
    }),
  );
  assert.deepEqual(byNameDesc.map((m) => m.name), [`Gamma ${TAG}`, `Beta ${TAG}`, `Alpha ${TAG}`]);
  assert.equal(byNameDesc[2].description, "the first one");
  const byCreated = await toArray(
    client.iModels.getMinimalList({
      ...auth,
      urlParams: { iTwinId: s.iTwinId, $orderBy: { property: IModelOrderByProperty.CreatedDateTime } },
    }),
  );
  assert.deepEqual(byCreated.map((m) => m.id), ids, "createdDateTime ascending = creation order");
  const named = await toArray(client.iModels.getMinimalList({ ...auth, urlParams: { iTwinId: s.iTwinId, name: `Beta ${TAG}` } }));
  assert.deepEqual(named.map((m) => m.id), [s.more[0].id]);
  const searched = await toArray(client.iModels.getMinimalList({ ...auth, urlParams: { iTwinId: s.iTwinId, $search: "road" } }));
  assert.deepEqual(searched.map((m) => m.id), [s.more[0].id], "$search matches the description, case-insensitively");
  const initialized = await toArray(
    client.iModels.getMinimalList({ ...auth, urlParams: { iTwinId: s.iTwinId, state: IModelState.Initialized } }),
  );
  assert.equal(initialized.length, 3);
  const notInitialized = await toArray(
    client.iModels.getMinimalList({ ...auth, urlParams: { iTwinId: s.iTwinId, state: IModelState.NotInitialized } }),
  );
  assert.deepEqual(notInitialized, []);
  const pages = [];
  for await (const page of client.iModels
    .getMinimalList({ ...auth, urlParams: { iTwinId: s.iTwinId, $top: 2, $orderBy: { property: IModelOrderByProperty.Name } } })
    .byPage())
    pages.push(page.map((m) => m.displayName));
  assert.deepEqual(pages, [[`Alpha ${TAG}`, `Beta ${TAG}`], [`Gamma ${TAG}`]], "the client follows _links.next");
  await rejects(
    toArray(client.iModels.getMinimalList({ ...otherAuth, urlParams: { iTwinId: s.iTwinId } })),
    IModelsErrorCode.ITwinNotFound,
    { status: 404 },
  );
  return `${pages.length} pages`;
});

await step("iModels.update: name, description, extent; iModelExists on a taken name", async () => {
  const extent = { southWest: { latitude: -10, longitude: -20 }, northEast: { latitude: 10, longitude: 20 } };
  const updated = await client.iModels.update({
    ...auth,
    iModelId: s.more[1].id,
    iModelProperties: { name: `Gamma2 ${TAG}`, description: "renamed", extent },
  });
  assert.equal(updated.name, `Gamma2 ${TAG}`);
  assert.equal(updated.displayName, `Gamma2 ${TAG}`);
  assert.equal(updated.description, "renamed");
  assert.deepEqual(updated.extent, extent);
  const got = await client.iModels.getSingle({ ...auth, iModelId: s.more[1].id });
  assert.equal(got.name, `Gamma2 ${TAG}`);
  await rejects(
    client.iModels.update({ ...auth, iModelId: s.more[1].id, iModelProperties: { name: `Alpha ${TAG}` } }),
    IModelsErrorCode.IModelExists,
    { status: 409 },
  );
  await rejects(
    client.iModels.update({ ...otherAuth, iModelId: s.more[1].id, iModelProperties: { description: "mine now" } }),
    IModelsErrorCode.IModelNotFound,
    { status: 404 },
  );
});

await step("operations.getCreateIModelDetails: an empty iModel is created at once", async () => {
  const details = await client.operations.getCreateIModelDetails({ ...auth, iModelId: s.alpha.id });
  assert.equal(details.state, "successful");
  assert.equal(details.clonedFrom ?? null, null);
});

// The test servers name a checkpoint storage account (tests/conftest.py): every checkpoint is also in the
// iModel's CloudSqlite container, as an unmodified backend reads it (tests/test_checkpoint_containers.py).
function assertContainer(cp, iModelId, what) {
  const info = cp.directoryAccessInfo;
  assert.ok(info, `${what}: directoryAccessInfo`);
  assert.equal(info.storageType, "azure", `${what}: storageType`);
  // Served by twinbase: tb-<id>; by the Azure blob service: its container <twinbase container>-<id hex>.
  const own = [`tb-${iModelId}`];
  assert.ok(
    own.includes(info.baseDirectory) || info.baseDirectory.endsWith(`-${iModelId.replaceAll("-", "")}`),
    `${what}: the iModel's container, not ${info.baseDirectory}`,
  );
  assert.equal(info.baseUrl, `https://${info.storage}.blob.core.windows.net/${info.baseDirectory}`, `${what}: baseUrl`);
  assert.match(info.azure.sasToken, /(^|&)se=\d{4}-\d\d-\d\dT\d\d%3A\d\d%3A\d\dZ(&|$)/, `${what}: an se= expiry`);
  assert.equal(cp.dbName, `${cp.changesetId || "baseline"}.bim`, `${what}: dbName`);
}

await step("checkpoints.getSingle(changesetIndex 0): the seed baseline, downloadable", async () => {
  const cp = await client.checkpoints.getSingle({ ...auth, iModelId: s.alpha.id, changesetIndex: 0 });
  assert.equal(cp.changesetIndex, 0);
  assert.equal(cp.changesetId, "");
  assert.equal(cp.state, "successful");
  assertContainer(cp, s.alpha.id, "changeset 0");
  assert.ok(cp._links.download?.href, "download link");
  const resp = await fetch(cp._links.download.href);
  assert.equal(resp.status, 200);
  const bytes = Buffer.from(await resp.arrayBuffer());
  assert.equal(bytes.subarray(0, 16).toString("latin1"), "SQLite format 3\0");
  assert.equal(bytes.length, cp.size, "checkpoint size");
  s.baseline = path.join(work, "baseline.bim");
  fs.writeFileSync(s.baseline, bytes);
  return `${bytes.length} bytes`;
});

await step("real changesets: core-backend opens the baseline and makes three changesets on it", async () => {
  await startBackend(work);
  assert.deepEqual(identityOf(s.baseline), {
    iModelId: s.alpha.id,
    iTwinId: s.iTwinId,
    briefcaseId: 0,
    changeset: { id: "", index: 0 },
  }, "the seed copy carries the iModel's identity, briefcase id 0 and changeset 0");
  s.changesets = await makeChangesets({ baseline: s.baseline, workDir: work, name: `mgmt-${TAG}` });
  await IModelHost.shutdown();
  assert.equal(s.changesets.length, 3);
  const briefcase = await http("POST", `/imodels/${s.alpha.id}/briefcases`, { body: { deviceName: "compat" } });
  assert.equal(briefcase.status, 201, briefcase.text);
  s.briefcaseId = briefcase.json.briefcase.briefcaseId;
  for (const cs of s.changesets) await pushRaw(s.alpha.id, s.briefcaseId, cs);
  return s.changesets.map((c) => `${c.index}:${c.id.slice(0, 8)} ${c.fileSize} B`).join(", ");
});

await step("changesets.getMinimalList / getRepresentationList: ranges, $orderBy, $top", async () => {
  const minimal = await toArray(client.changesets.getMinimalList({ ...auth, iModelId: s.alpha.id }));
  assert.deepEqual(minimal.map((c) => c.index), [1, 2, 3]);
  assert.deepEqual(minimal.map((c) => c.id), s.changesets.map((c) => c.id));
  assert.deepEqual(minimal.map((c) => c.parentId), ["", s.changesets[0].id, s.changesets[1].id]);
  for (const [i, c] of minimal.entries()) {
    assert.equal(c.fileSize, s.changesets[i].fileSize, "fileSize is exact");
    assert.equal(c.description, s.changesets[i].description);
    assert.equal(c.briefcaseId, s.briefcaseId);
    assert.equal(c.state, "fileUploaded");
    assert.equal(c.containingChanges, 0);
    assert.equal(c.creatorId, s.me.id);
    isoDate(c.pushDateTime, "pushDateTime");
  }
  const range = await toArray(
    client.changesets.getRepresentationList({ ...auth, iModelId: s.alpha.id, urlParams: { afterIndex: 1, lastIndex: 2 } }),
  );
  assert.deepEqual(range.map((c) => c.index), [2], "afterIndex is exclusive, lastIndex inclusive");
  assert.equal(range[0]._links.download !== null, true, "representation carries the download link");
  const latest = await toArray(
    client.changesets.getRepresentationList({
      ...auth,
      iModelId: s.alpha.id,
      urlParams: { $top: 1, $orderBy: { property: "index", operator: OrderByOperator.Descending } },
    }),
  );
  assert.deepEqual(latest.map((c) => c.index), [3, 2, 1], "$top pages, desc order");
  const iModel = await client.iModels.getSingle({ ...auth, iModelId: s.alpha.id });
  isoDate(iModel.lastChangesetPushDateTime, "lastChangesetPushDateTime after a push");
});

await step("changesets.getSingle by id and by index; ChangesetNotFound", async () => {
  const byIndex = await client.changesets.getSingle({ ...auth, iModelId: s.alpha.id, changesetIndex: 2 });
  const byId = await client.changesets.getSingle({ ...auth, iModelId: s.alpha.id, changesetId: s.changesets[1].id });
  assert.equal(byIndex.id, s.changesets[1].id);
  assert.equal(byId.index, 2);
  assert.equal(byId.parentId, s.changesets[0].id);
  assert.equal(byId.synchronizationInfo, null);
  assert.ok(byId.application?.id, `application: ${JSON.stringify(byId.application)}`);
  assert.equal(byId._links.download.storageType.length > 0, true);
  const file = Buffer.from(await (await fetch(byId._links.download.href)).arrayBuffer());
  assert.deepEqual(file, fs.readFileSync(s.changesets[1].pathname), "the downloaded changeset is the pushed file");
  const creator = await byId.getCreator();
  assert.equal(creator.id, s.me.id);
  // Each completion stored its changeset's checkpoint, so changeset 2's current checkpoint is its own.
  const cp = await byId.getCurrentOrPrecedingCheckpoint();
  assert.equal(cp?.changesetIndex, 2, `currentOrPrecedingCheckpoint ${cp?.changesetIndex}`);
  assert.equal(cp.changesetId, s.changesets[1].id);
  assert.equal(cp.state, "successful");
  const err = await rejects(
    client.changesets.getSingle({ ...auth, iModelId: s.alpha.id, changesetIndex: 99 }),
    IModelsErrorCode.ChangesetNotFound,
    { status: 404 },
  );
  assert.equal(err.message, "Requested Changeset is not available.");
  await rejects(
    client.changesets.getSingle({ ...auth, iModelId: s.alpha.id, changesetId: randomBytes(20).toString("hex") }),
    IModelsErrorCode.ChangesetNotFound,
    { status: 404 },
  );
  return `checkpoint before 2: ${cp?.changesetIndex}`;
});

await step("named versions: create on a changeset and on the baseline; NamedVersionExists, ...OnChangesetExists", async () => {
  const v1 = await client.namedVersions.create({
    ...auth,
    iModelId: s.alpha.id,
    namedVersionProperties: { name: `v1 ${TAG}`, description: "after the move", changesetId: s.changesets[1].id },
  });
  assert.match(v1.id, GUID);
  assert.equal(v1.name, `v1 ${TAG}`);
  assert.equal(v1.displayName, `v1 ${TAG}`);
  assert.equal(v1.description, "after the move");
  assert.equal(v1.changesetId, s.changesets[1].id);
  assert.equal(v1.changesetIndex, 2);
  assert.equal(v1.state, NamedVersionState.Visible);
  isoDate(v1.createdDateTime, "createdDateTime");
  assert.ok(v1.application?.id, "application");
  assert.equal((await v1.getChangeset())?.index, 2);
  const v0 = await client.namedVersions.create({
    ...auth,
    iModelId: s.alpha.id,
    namedVersionProperties: { name: `v0 ${TAG}` },
  });
  assert.equal(v0.changesetId, null, "a named version without changesetId is on the baseline");
  assert.equal(v0.changesetIndex, 0);
  assert.equal(v0.description, null);
  const v3 = await client.namedVersions.create({
    ...auth,
    iModelId: s.alpha.id,
    namedVersionProperties: { name: `v3 ${TAG}`, changesetId: s.changesets[2].id },
  });
  s.versions = { v0, v1, v3 };
  // The client maps codes by enum key, and the key for "NamedVersionExists" is VersionExists: read the wire.
  const dup = await rejects(
    client.namedVersions.create({
      ...auth,
      iModelId: s.alpha.id,
      namedVersionProperties: { name: `v1 ${TAG}`, changesetId: s.changesets[0].id },
    }),
    IModelsErrorCode.Unrecognized,
    { wireCode: "NamedVersionExists" },
  );
  assert.equal(dup.originalError.response.status, 409);
  await rejects(
    client.namedVersions.create({
      ...auth,
      iModelId: s.alpha.id,
      namedVersionProperties: { name: `v1bis ${TAG}`, changesetId: s.changesets[1].id },
    }),
    IModelsErrorCode.NamedVersionOnChangesetExists,
    { status: 409 },
  );
  await rejects(
    client.namedVersions.create({
      ...auth,
      iModelId: s.alpha.id,
      namedVersionProperties: { name: `nowhere ${TAG}`, changesetId: randomBytes(20).toString("hex") },
    }),
    IModelsErrorCode.ChangesetNotFound,
    { status: 404 },
  );
});

await step("named versions: lists (filters, $search, $orderBy), getSingle, NamedVersionNotFound", async () => {
  const base = { ...auth, iModelId: s.alpha.id };
  const minimal = await toArray(client.namedVersions.getMinimalList(base));
  assert.equal(minimal.length, 3);
  for (const m of minimal) assert.deepEqual(Object.keys(m).sort(), ["changesetId", "changesetIndex", "displayName", "id"]);
  const byIndexDesc = await toArray(
    client.namedVersions.getRepresentationList({
      ...base,
      urlParams: { $orderBy: { property: NamedVersionOrderByProperty.ChangesetIndex, operator: OrderByOperator.Descending } },
    }),
  );
  assert.deepEqual(byIndexDesc.map((v) => v.changesetIndex), [3, 2, 0]);
  const byCreated = await toArray(
    client.namedVersions.getMinimalList({ ...base, urlParams: { $orderBy: { property: NamedVersionOrderByProperty.CreatedDateTime } } }),
  );
  assert.deepEqual(byCreated.map((v) => v.id), [s.versions.v1.id, s.versions.v0.id, s.versions.v3.id]);
  const named = await toArray(client.namedVersions.getMinimalList({ ...base, urlParams: { name: `v3 ${TAG}` } }));
  assert.deepEqual(named.map((v) => v.id), [s.versions.v3.id]);
  const searched = await toArray(client.namedVersions.getMinimalList({ ...base, urlParams: { $search: `V1 ${TAG.toUpperCase()}` } }));
  assert.deepEqual(searched.map((v) => v.id), [s.versions.v1.id]);
  const got = await client.namedVersions.getSingle({ ...base, namedVersionId: s.versions.v1.id });
  assert.equal(got.name, `v1 ${TAG}`);
  assert.equal((await got.getCreator())?.id, s.me.id);
  const err = await rejects(
    client.namedVersions.getSingle({ ...base, namedVersionId: "0b0b0b0b-0000-4000-8000-000000000000" }),
    IModelsErrorCode.NamedVersionNotFound,
    { status: 404 },
  );
  assert.equal(err.message, "Requested Named Version is not available.");
  const cs2 = await client.changesets.getSingle({ ...base, changesetIndex: 2 });
  assert.equal((await cs2.getNamedVersion())?.id, s.versions.v1.id, "changeset _links.namedVersion");
});

await step("named versions: update description, hide, rename; state filter", async () => {
  const base = { ...auth, iModelId: s.alpha.id };
  const described = await client.namedVersions.update({
    ...base,
    namedVersionId: s.versions.v3.id,
    namedVersionProperties: { description: "latest" },
  });
  assert.equal(described.description, "latest");
  assert.equal(described.state, NamedVersionState.Visible, "a description update leaves the state");
  const hidden = await client.namedVersions.update({
    ...base,
    namedVersionId: s.versions.v0.id,
    namedVersionProperties: { state: NamedVersionState.Hidden, name: `v0 hidden ${TAG}` },
  });
  assert.equal(hidden.state, NamedVersionState.Hidden);
  assert.equal(hidden.name, `v0 hidden ${TAG}`);
  const hiddenList = await toArray(client.namedVersions.getMinimalList({ ...base, urlParams: { state: NamedVersionState.Hidden } }));
  assert.deepEqual(hiddenList.map((v) => v.id), [s.versions.v0.id]);
  const visible = await toArray(client.namedVersions.getMinimalList({ ...base, urlParams: { state: NamedVersionState.Visible } }));
  assert.deepEqual(visible.map((v) => v.id).sort(), [s.versions.v1.id, s.versions.v3.id].sort());
  const dup = await rejects(
    client.namedVersions.update({ ...base, namedVersionId: s.versions.v3.id, namedVersionProperties: { name: `v1 ${TAG}` } }),
    IModelsErrorCode.Unrecognized,
    { wireCode: "NamedVersionExists" },
  );
  assert.equal(dup.originalError.response.status, 409);
});

await step("checkpoints: by changeset id/index, named version, latest; regeneration request", async () => {
  const base = { ...auth, iModelId: s.alpha.id };
  // Each completion applied its changeset to its parent's checkpoint and stored the result as the new tip's
  // checkpoint (domain/checkpoints.py, next_checkpoint), so every changeset here has its own checkpoint, made
  // and downloadable: the answer is that exact checkpoint, "successful", never a preceding one nor a
  // "scheduled"/"failed" one.
  const cases = [
    [{ changesetIndex: 3 }, 3],
    [{ changesetId: s.changesets[2].id }, 3],
    [{ namedVersionId: s.versions.v1.id }, 2],
    [{ changesetIndex: 1 }, 1],
    [{}, 3], // GET /briefcases/checkpoint: the tip's
  ];
  const seen = [];
  for (const [params, index] of cases) {
    const what = JSON.stringify(params);
    const cp = await client.checkpoints.getSingle({ ...base, ...params });
    assert.equal(cp.state, "successful", `${what}: state`);
    assert.equal(cp.changesetIndex, index, `${what}: changesetIndex`);
    assert.equal(cp.changesetId, s.changesets[index - 1].id, `${what}: changesetId`);
    assert.equal(cp.dbName, `${s.changesets[index - 1].id}.bim`, `${what}: dbName`);
    assertContainer(cp, base.iModelId, what);
    assert.ok(cp._links.download?.href, `${what}: a successful checkpoint is downloadable`);
    const bytes = Buffer.from(await (await fetch(cp._links.download.href)).arrayBuffer());
    assert.equal(bytes.length, cp.size, `${what}: size`);
    assert.equal(bytes.subarray(0, 16).toString("latin1"), "SQLite format 3\0", `${what}: a .bim`);
    seen.push({ what, index, bytes });
  }
  // The file is the iModel at that changeset, as the native library reads it.
  await startBackend(work);
  try {
    for (const [n, { what, index, bytes }] of seen.entries()) {
      const file = path.join(work, `checkpoint-${n}.bim`);
      fs.writeFileSync(file, bytes);
      assert.deepEqual(identityOf(file), {
        iModelId: s.alpha.id,
        iTwinId: s.iTwinId,
        briefcaseId: 0,
        changeset: { id: s.changesets[index - 1].id, index },
      }, `${what}: the checkpoint's identity and changeset`);
    }
  } finally {
    await IModelHost.shutdown();
  }
  // Regeneration only reschedules a failed checkpoint: the named version's successful one is answered as it is.
  const regenerated = await client.checkpoints.updateNamedVersionCheckpoint({ ...base, namedVersionId: s.versions.v1.id });
  assert.equal(regenerated.state, "successful");
  assert.equal(regenerated.changesetIndex, 2);
  assert.equal(regenerated.changesetId, s.changesets[1].id);
  assert.ok(regenerated._links.download?.href);
  // No changeset 42: the changeset is what is missing (not its checkpoint).
  await rejects(client.checkpoints.getSingle({ ...base, changesetIndex: 42 }), IModelsErrorCode.ChangesetNotFound, {
    status: 404,
  });
  return seen.map((c) => `${c.what}:${c.index}`).join(" ");
});

await step("iModels.clone (at changeset 2) and createFromTemplate: the client polls operations/create", async () => {
  const clone = await client.iModels.clone({
    ...auth,
    iModelId: s.alpha.id,
    iModelProperties: { iTwinId: s.iTwinId, name: `Clone ${TAG}`, changesetIndex: 2 },
  });
  assert.equal(clone.state, IModelState.Initialized);
  assert.equal(clone.name, `Clone ${TAG}`);
  const cloned = await toArray(client.changesets.getMinimalList({ ...auth, iModelId: clone.id }));
  assert.deepEqual(cloned.map((c) => c.id), s.changesets.slice(0, 2).map((c) => c.id), "a clone keeps the history up to its changeset");
  const details = await client.operations.getCreateIModelDetails({ ...auth, iModelId: clone.id });
  assert.equal(details.state, "successful");
  // Exactly the client's ClonedFrom (Bentley's OperationOperations test compares it deep-equal).
  assert.deepEqual(details.clonedFrom, { iModelId: s.alpha.id, changesetId: s.changesets[1].id });
  const fromTemplate = await client.iModels.createFromTemplate({
    ...auth,
    iModelProperties: { iTwinId: s.iTwinId, name: `Template ${TAG}`, template: { iModelId: s.alpha.id, changesetId: s.changesets[0].id } },
  });
  assert.equal(fromTemplate.state, IModelState.Initialized);
  s.more.push(clone, fromTemplate);
});

await step("briefcases: lists (ownerId=me, $orderBy), getSingle, checkpoint link, release, BriefcaseNotFound", async () => {
  const base = { ...auth, iModelId: s.alpha.id };
  const second = await http("POST", `/imodels/${s.alpha.id}/briefcases`, { body: {} });
  assert.equal(second.status, 201, second.text);
  const secondId = second.json.briefcase.briefcaseId;
  const minimal = await toArray(client.briefcases.getMinimalList(base));
  assert.deepEqual(minimal.map((b) => b.id).sort(), [String(s.briefcaseId), String(secondId)].sort());
  const mine = await toArray(
    client.briefcases.getRepresentationList({
      ...base,
      urlParams: { ownerId: "me", $orderBy: { property: "acquiredDateTime", operator: OrderByOperator.Descending } },
    }),
  );
  assert.deepEqual(mine.map((b) => b.briefcaseId), [secondId, s.briefcaseId]);
  const b = mine[1];
  assert.equal(b.ownerId, s.me.id);
  assert.equal(b.deviceName, "compat");
  assert.ok(b.fileSize > 0, "fileSize is the size of the checkpoint it starts from");
  isoDate(b.acquiredDateTime, "acquiredDateTime");
  const cp = await b.getCheckpoint();
  assert.ok(cp.changesetIndex >= 0, "briefcase _links.checkpoint");
  assert.equal((await b.getOwner())?.id, s.me.id);
  const single = await client.briefcases.getSingle({ ...base, briefcaseId: s.briefcaseId });
  assert.equal(single.briefcaseId, s.briefcaseId);
  await client.briefcases.release({ ...base, briefcaseId: secondId });
  const err = await rejects(client.briefcases.getSingle({ ...base, briefcaseId: secondId }), IModelsErrorCode.BriefcaseNotFound, {
    status: 404,
  });
  assert.equal(err.message, "Requested Briefcase is not available.");
  await rejects(client.briefcases.release({ ...base, briefcaseId: secondId }), IModelsErrorCode.BriefcaseNotFound);
  const others = await toArray(client.briefcases.getMinimalList({ ...base, urlParams: { ownerId: "someone-else" } }));
  assert.deepEqual(others, []);
});

await step("locks (management client): list, lockLevel filter, released locks, release-chunk", async () => {
  const base = { ...auth, iModelId: s.alpha.id };
  const patched = await http("PATCH", `/imodels/${s.alpha.id}/locks`, {
    body: {
      briefcaseId: s.briefcaseId,
      changesetId: s.changesets[2].id,
      lockedObjects: [
        { lockLevel: "shared", objectIds: ["0x1"] },
        { lockLevel: "exclusive", objectIds: ["0x20000000001", "0x20000000002"] },
      ],
    },
  });
  assert.equal(patched.status, 200, patched.text);
  const locks = await toArray(client.locks.getList(base));
  assert.equal(locks.length, 1);
  assert.equal(locks[0].briefcaseId, s.briefcaseId);
  const levels = Object.fromEntries(locks[0].lockedObjects.map((o) => [o.lockLevel, [...o.objectIds].sort()]));
  assert.deepEqual(levels, { shared: ["0x1"], exclusive: ["0x20000000001", "0x20000000002"] });
  const exclusive = await toArray(client.locks.getList({ ...base, urlParams: { lockLevel: LockLevel.Exclusive } }));
  assert.deepEqual(exclusive[0].lockedObjects.map((o) => o.lockLevel), ["exclusive"]);
  let chunks = 0;
  for (;;) {
    const result = await client.locks.releaseLocksChunk({ ...base, briefcaseId: s.briefcaseId, changesetId: s.changesets[2].id });
    chunks += 1;
    if (result.isLastChunk) break;
    assert.ok(chunks < 50, "release-chunk never reported the last chunk");
  }
  assert.deepEqual(await toArray(client.locks.getList(base)), [], "nothing held after release-chunk");
  const released = await toArray(client.locks.getReleasedLockList({ ...base, urlParams: { afterChangesetIndex: 0 } }));
  const releasedIds = released.flatMap((r) => r.objectIds).sort();
  assert.deepEqual(releasedIds, ["0x20000000001", "0x20000000002"], `released locks ${JSON.stringify(released)}`);
  return `${chunks} chunk(s)`;
});

await step("users: lists ($orderBy), getSingle with statistics, UserNotFound", async () => {
  const base = { ...auth, iModelId: s.alpha.id };
  const minimal = await toArray(client.users.getMinimalList(base));
  assert.ok(minimal.some((u) => u.id === s.me.id), "the creator is a user of the iModel");
  const rep = await toArray(
    client.users.getRepresentationList({
      ...base,
      urlParams: { $orderBy: [{ property: UserOrderByProperty.GivenName }, { property: UserOrderByProperty.Surname }] },
    }),
  );
  const me = rep.find((u) => u.id === s.me.id);
  assert.ok(me, "representation list has me");
  for (const k of ["givenName", "surname", "email"]) assert.equal(typeof me[k], "string", `${k}: ${JSON.stringify(me)}`);
  const single = await client.users.getSingle({ ...base, userId: s.me.id });
  const stats = single.statistics;
  assert.equal(stats.pushedChangesetsCount, 3);
  assert.equal(stats.createdVersionsCount, 3);
  assert.equal(stats.briefcasesCount, 1);
  isoDate(stats.lastChangesetPushDate, "lastChangesetPushDate");
  assert.ok(Array.isArray(stats.applications), "applications");
  await rejects(client.users.getSingle({ ...base, userId: "nobody-at-all" }), IModelsErrorCode.UserNotFound, { status: 404 });
  return `${rep.length} user(s)`;
});

await step("userPermissions.get", async () => {
  const perms = await client.userPermissions.get({ ...auth, iModelId: s.alpha.id });
  for (const p of ["imodels_webview", "imodels_read", "imodels_write", "imodels_manage"])
    assert.ok(perms.permissions.includes(p), `${p} in ${JSON.stringify(perms.permissions)}`);
  return perms.permissions.join(",");
});

await step("thumbnails: default download, upload PNG, download small and large, InvalidThumbnailFormat", async () => {
  const base = { ...auth, iModelId: s.alpha.id };
  const before = await client.thumbnails.download(base);
  assert.equal(before.size, ThumbnailSize.Small);
  assert.equal(before.imageType, ContentType.Png);
  const first = Buffer.from(before.image);
  assert.equal(first.subarray(1, 4).toString("latin1"), "PNG", "a default thumbnail is a PNG");
  const image = png(800, 500, [20, 120, 200]);
  await client.thumbnails.upload({ ...base, thumbnailProperties: { imageType: ContentType.Png, image } });
  const small = await client.thumbnails.download({ ...base, urlParams: { size: ThumbnailSize.Small } });
  const large = await client.thumbnails.download({ ...base, urlParams: { size: ThumbnailSize.Large } });
  for (const t of [small, large]) assert.equal(Buffer.from(t.image).subarray(1, 4).toString("latin1"), "PNG");
  assert.notDeepEqual(Buffer.from(large.image), first, "the upload replaced the default thumbnail");
  // InvalidThumbnailFormat, as the code or as the detail of an InvalidiModelsRequest.
  const bad = await rejectsOneOf(
    client.thumbnails.upload({ ...base, thumbnailProperties: { imageType: ContentType.Png, image: Buffer.from("not an image") } }),
    [IModelsErrorCode.InvalidThumbnailFormat, IModelsErrorCode.InvalidIModelsRequest],
  );
  if (bad.code === IModelsErrorCode.InvalidIModelsRequest)
    assert.equal(bad.details?.[0]?.code, IModelsErrorCode.InvalidThumbnailFormat, bad.message);
  return `small ${small.image.byteLength} B, large ${large.image.byteLength} B`;
});

await step("favorites and recents", async () => {
  await client.favoriteIModels.add({ ...auth, iModelId: s.more[0].id });
  const favorites = await toArray(client.favoriteIModels.getMinimalList({ ...auth, urlParams: { iTwinId: s.iTwinId } }));
  assert.deepEqual(favorites.map((m) => m.id), [s.more[0].id]);
  await client.favoriteIModels.remove({ ...auth, iModelId: s.more[0].id });
  assert.deepEqual(await toArray(client.favoriteIModels.getMinimalList({ ...auth, urlParams: { iTwinId: s.iTwinId } })), []);
  await client.recentIModels.add({ ...auth, iModelId: s.alpha.id });
  const recents = await toArray(client.recentIModels.getRepresentationList({ ...auth, urlParams: { iTwinId: s.iTwinId } }));
  assert.ok(recents.some((m) => m.id === s.alpha.id), "recents has alpha");
});

await step("iModels.delete, then iModelNotFound everywhere", async () => {
  await rejects(client.iModels.delete({ ...otherAuth, iModelId: s.more[0].id }), IModelsErrorCode.IModelNotFound, { status: 404 });
  for (const m of [s.alpha, ...s.more]) await client.iModels.delete({ ...auth, iModelId: m.id });
  await rejects(client.iModels.getSingle({ ...auth, iModelId: s.alpha.id }), IModelsErrorCode.IModelNotFound, { status: 404 });
  await rejects(toArray(client.changesets.getMinimalList({ ...auth, iModelId: s.alpha.id })), IModelsErrorCode.IModelNotFound);
  await rejects(client.iModels.delete({ ...auth, iModelId: s.alpha.id }), IModelsErrorCode.IModelNotFound, { status: 404 });
  assert.deepEqual(await toArray(client.iModels.getMinimalList({ ...auth, urlParams: { iTwinId: s.iTwinId } })), []);
});

await finish();
