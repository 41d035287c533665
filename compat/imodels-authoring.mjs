// Drives the official @itwin/imodels-client-authoring 6.0.2 (unchanged, only its base URL and token) against
// a live twinbase and asserts every answer: create an iModel from a baseline file, acquire briefcases, push
// real changesets (made by core-backend's HubMock on twinbase's own checkpoint 0) in a changeset group,
// extended data, locks (update, conflicts, the 6.0.2 release loop and the 6.2 release-chunk), and downloads
// whose sizes match `fileSize`.
//
//   TWINBASE_URL=http://127.0.0.1:8110 TWINBASE_TOKEN=<jwt> TWINBASE_TOKEN_OTHER=<jwt> node compat/imodels-authoring.mjs
//
// TWINBASE_BASELINE names the .bim to start from (default ../shared/data/bim/imodelnative_test.bim, copied
// first). COMPAT_KEEP_GOING=1 runs every step and reports all failures at the end.

import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { randomBytes } from "node:crypto";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

import { IModelHost } from "@itwin/core-backend";
import authoring from "@itwin/imodels-client-authoring";
import {
  IModelsErrorCode,
  IModelsClient as ManagementClient,
  OrderByOperator,
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

// CommonJS: the re-exported management names are not all visible as ESM named exports.
const { BaselineFileState, IModelsClient, LockLevel } = authoring;
const require = createRequire(import.meta.url);
// The storage clients iTwin.js itself registers ("azure" and "google").
const { createDefaultClientStorage } = require("@itwin/imodels-access-backend/lib/cjs/DefaultClientStorage");

const here = path.dirname(fileURLToPath(import.meta.url));
const OTHER = env("TWINBASE_TOKEN_OTHER");
const SOURCE = path.resolve(process.env.TWINBASE_BASELINE ?? path.join(here, "..", "..", "shared", "data", "bim", "imodelnative_test.bim"));
const work = fs.mkdtempSync(path.join(os.tmpdir(), "twinbase-authoring-"));
finish.cleanup = async () => {
  if (IModelHost.isValid) await IModelHost.shutdown();
  fs.rmSync(work, { recursive: true, force: true });
};

const client = new IModelsClient({ api: { baseUrl: `${BASE}/imodels` }, cloudStorage: createDefaultClientStorage() });
const management = new ManagementClient({ api: { baseUrl: `${BASE}/imodels` } }); // 6.2: release-chunk
const auth = { authorization: authorization(TOKEN) };
const s = {};
const base = () => ({ ...auth, iModelId: s.iModel.id });

/** Push one of the made changesets with the authoring client (create, blob upload, complete). */
async function push(cs, extra = {}) {
  return client.changesets.create({
    ...base(),
    changesetProperties: {
      id: cs.id,
      description: cs.description,
      parentId: cs.parentId || undefined, // as the authoring client's own tests: absent for the first
      briefcaseId: s.briefcaseId,
      containingChanges: cs.changesType === 1 ? 1 : 0,
      filePath: cs.pathname,
      ...extra,
    },
  });
}

/** What access-backend 6.0.2 does after a push: GET the first page of locks, PATCH them to none, until empty. */
async function releaseLoop(briefcaseId, changesetId) {
  for (let round = 1; round <= 20; round++) {
    const pages = [];
    for await (const page of client.locks.getList({ ...base(), urlParams: { briefcaseId } }).byPage()) {
      pages.push(page);
      break; // the first page only, like releaseAllLocks
    }
    const page = pages[0] ?? [];
    if (page.length === 0) return round;
    for (const lock of page) {
      await client.locks.update({
        ...base(),
        briefcaseId: lock.briefcaseId,
        changesetId,
        lockedObjects: lock.lockedObjects.map((o) => ({ lockLevel: LockLevel.None, objectIds: o.objectIds })),
      });
    }
  }
  throw new Error("the lock list never came back empty: access-backend 6.0.2 would hang after a push");
}

// ------------------------------------------------------------------------------------------- steps

await step("iModels.createFromBaseline: upload, complete, poll until initialized", async () => {
  assert.ok(fs.existsSync(SOURCE), `baseline missing: ${SOURCE}`);
  s.source = path.join(work, "baseline-source.bim");
  fs.copyFileSync(SOURCE, s.source); // the shared file stays untouched (it is in WAL mode)
  s.iTwinId = await newITwin(TOKEN, "authoring");
  s.iModel = await client.iModels.createFromBaseline({
    ...auth,
    iModelProperties: { iTwinId: s.iTwinId, name: `Authoring ${TAG}`, description: "from a baseline", filePath: s.source },
    timeOutInMs: 60_000,
  });
  assert.match(s.iModel.id, GUID);
  assert.equal(s.iModel.state, "initialized");
  assert.equal(s.iModel.name, `Authoring ${TAG}`);
  const baseline = await client.baselineFiles.getSingle(base());
  assert.equal(baseline.state, BaselineFileState.Initialized);
  assert.equal(baseline.fileSize, fs.statSync(s.source).size, "baseline fileSize is the uploaded size");
  assert.ok(baseline._links.download?.href, "baseline download link");
  return `${baseline.fileSize} bytes`;
});

await step("createFromBaseline of a file that is not an iModel fails with BaselineFileInitializationFailed", async () => {
  const junk = path.join(work, "junk.bim");
  fs.writeFileSync(junk, randomBytes(64 * 1024));
  await rejects(
    client.iModels.createFromBaseline({
      ...auth,
      iModelProperties: { iTwinId: s.iTwinId, name: `Junk ${TAG}`, filePath: junk },
      timeOutInMs: 30_000,
    }),
    IModelsErrorCode.BaselineFileInitializationFailed,
  );
  await rejects(
    client.iModels.createFromBaseline({
      ...auth,
      iModelProperties: { iTwinId: s.iTwinId, name: `Authoring ${TAG}`, filePath: s.source },
    }),
    IModelsErrorCode.IModelExists,
    { status: 409 },
  );
});

await step("the baseline checkpoint downloads (checkpoint 0)", async () => {
  const cp = await client.checkpoints.getSingle({ ...base(), changesetIndex: 0 });
  assert.equal(cp.state, "successful");
  const bytes = Buffer.from(await (await fetch(cp._links.download.href)).arrayBuffer());
  s.checkpoint0 = path.join(work, "checkpoint0.bim");
  fs.writeFileSync(s.checkpoint0, bytes);
  assert.equal(bytes.subarray(0, 16).toString("latin1"), "SQLite format 3\0");
  return `${bytes.length} bytes`;
});

await step("briefcases.acquire (with and without deviceName)", async () => {
  const first = await client.briefcases.acquire({ ...base(), briefcaseProperties: { deviceName: `device ${TAG}` } });
  assert.ok(first.briefcaseId >= 2 && first.briefcaseId <= 16777205, `briefcase id ${first.briefcaseId}`);
  assert.equal(first.id, String(first.briefcaseId));
  assert.equal(first.deviceName, `device ${TAG}`);
  assert.ok(first.fileSize > 0, "fileSize");
  assert.ok(first._links.checkpoint?.href, "_links.checkpoint is required by the client");
  const second = await client.briefcases.acquire(base());
  assert.notEqual(second.briefcaseId, first.briefcaseId);
  s.briefcaseId = first.briefcaseId;
  s.otherBriefcaseId = second.briefcaseId;
  return `${first.briefcaseId}, ${second.briefcaseId}`;
});

await step("real changesets: HubMock on twinbase's checkpoint 0", async () => {
  await startBackend(work);
  assert.deepEqual(identityOf(s.checkpoint0), {
    iModelId: s.iModel.id,
    iTwinId: s.iTwinId,
    briefcaseId: 0,
    changeset: { id: "", index: 0 },
  }, "checkpoint 0 carries the iModel's identity, briefcase id 0 and changeset 0");
  s.changesets = await makeChangesets({ baseline: s.checkpoint0, workDir: work, name: `authoring-${TAG}` });
  await IModelHost.shutdown();
  return s.changesets.map((c) => `${c.index}:${c.id.slice(0, 8)} ${c.fileSize} B`).join(", ");
});

await step("changesetGroups.create, then push two changesets into the group", async () => {
  s.group = await client.changesetGroups.create({ ...base(), changesetGroupProperties: { description: `group ${TAG}` } });
  assert.match(s.group.id, GUID);
  assert.equal(s.group.state, "inProgress");
  assert.equal(s.group.description, `group ${TAG}`);
  for (const cs of s.changesets.slice(0, 2)) {
    const pushed = await push(cs, { groupId: s.group.id });
    assert.equal(pushed.id, cs.id);
    assert.equal(pushed.index, cs.index);
    assert.equal(pushed.parentId, cs.parentId);
    assert.equal(pushed.fileSize, cs.fileSize);
    assert.equal(pushed.state, "fileUploaded");
    assert.equal(pushed.groupId, s.group.id);
    assert.equal(pushed.briefcaseId, s.briefcaseId);
    assert.equal(pushed.description, cs.description);
  }
});

await step("pushing wrongly: ChangesetExists, NewerChangesExist, BriefcaseNotFound", async () => {
  await rejects(push(s.changesets[0]), IModelsErrorCode.ChangesetExists, { status: 409 });
  const stale = { ...s.changesets[2], id: randomBytes(20).toString("hex"), parentId: s.changesets[0].id };
  const behind = await rejectsOneOf(push(stale), [IModelsErrorCode.NewerChangesExist, IModelsErrorCode.ConflictWithAnotherUser]);
  await rejects(
    client.changesets.create({
      ...base(),
      changesetProperties: {
        id: s.changesets[2].id,
        parentId: s.changesets[1].id,
        briefcaseId: 16777000,
        filePath: s.changesets[2].pathname,
      },
    }),
    IModelsErrorCode.BriefcaseNotFound,
  );
  const list = await toArray(client.changesets.getMinimalList(base()));
  assert.deepEqual(list.map((c) => c.index), [1, 2], "failed pushes leave no changeset behind");
  return `a parent that is not the tip: ${behind.code}`;
});

await step("push the third changeset outside the group; complete the group; group lists", async () => {
  const third = await push(s.changesets[2]);
  assert.equal(third.index, 3);
  assert.equal(third.groupId, null);
  const completed = await client.changesetGroups.update({
    ...base(),
    changesetGroupId: s.group.id,
    changesetGroupProperties: { state: "completed" },
  });
  assert.equal(completed.state, "completed");
  const got = await client.changesetGroups.getSingle({ ...base(), changesetGroupId: s.group.id });
  assert.equal(got.state, "completed");
  assert.ok(got.creatorId, "creatorId");
  const groups = await toArray(client.changesetGroups.getList(base()));
  assert.deepEqual(groups.map((g) => g.id), [s.group.id]);
  await rejects(
    client.changesetGroups.getSingle({ ...base(), changesetGroupId: "0c0c0c0c-0000-4000-8000-000000000000" }),
    IModelsErrorCode.ChangesetGroupNotFound,
    { status: 404 },
  );
});

await step("changesetExtendedData: create on two changesets, get by id and index, list", async () => {
  const one = await client.changesetExtendedData.create({
    ...base(),
    changesetIndex: 1,
    changesetExtendedDataProperties: { data: { tool: "compat", step: 1, tag: TAG } },
  });
  assert.equal(one.changesetIndex, 1);
  assert.equal(one.changesetId, s.changesets[0].id);
  assert.deepEqual(one.data, { tool: "compat", step: 1, tag: TAG });
  await client.changesetExtendedData.create({
    ...base(),
    changesetId: s.changesets[2].id,
    changesetExtendedDataProperties: { data: { tool: "compat", step: 3 } },
  });
  const byId = await client.changesetExtendedData.getSingle({ ...base(), changesetId: s.changesets[0].id });
  assert.deepEqual(byId.data, one.data);
  const byIndex = await client.changesetExtendedData.getSingle({ ...base(), changesetIndex: 3 });
  assert.deepEqual(byIndex.data, { tool: "compat", step: 3 });
  const list = await toArray(client.changesetExtendedData.getList(base()));
  assert.deepEqual(list.map((e) => e.changesetIndex).sort(), [1, 3]);
  await rejects(
    client.changesetExtendedData.getSingle({ ...base(), changesetIndex: 2 }),
    IModelsErrorCode.ChangesetExtendedDataNotFound,
    { status: 404 },
  );
});

await step("changesets.downloadList / downloadSingle: files and sizes match fileSize", async () => {
  const target = path.join(work, "downloads");
  const downloaded = await client.changesets.downloadList({ ...base(), targetDirectoryPath: target });
  assert.deepEqual(downloaded.map((c) => c.index), [1, 2, 3]);
  for (const d of downloaded) {
    const made = s.changesets[d.index - 1];
    assert.equal(fs.statSync(d.filePath).size, d.fileSize, `changeset ${d.index}: file size equals fileSize`);
    assert.deepEqual(fs.readFileSync(d.filePath), fs.readFileSync(made.pathname), `changeset ${d.index}: same bytes`);
  }
  const again = await client.changesets.downloadList({ ...base(), targetDirectoryPath: target, urlParams: { afterIndex: 1 } });
  assert.deepEqual(again.map((c) => c.index), [2, 3], "afterIndex range; existing files are reused");
  const single = await client.changesets.downloadSingle({
    ...base(),
    changesetIndex: 2,
    targetDirectoryPath: path.join(work, "single"),
  });
  assert.equal(single.id, s.changesets[1].id);
  assert.equal(fs.statSync(single.filePath).size, s.changesets[1].fileSize);
  const byId = await client.changesets.downloadSingle({
    ...base(),
    changesetId: s.changesets[2].id,
    targetDirectoryPath: path.join(work, "single"),
  });
  assert.equal(byId.index, 3);
  return downloaded.map((d) => `${d.index}:${d.fileSize} B`).join(", ");
});

await step("locks.update: shared and exclusive; the lock set comes back; lockLevel filter", async () => {
  const tip = s.changesets[2].id;
  const lock = await client.locks.update({
    ...base(),
    briefcaseId: s.briefcaseId,
    changesetId: tip,
    lockedObjects: [
      { lockLevel: LockLevel.Shared, objectIds: ["0x1", "0x10"] },
      { lockLevel: LockLevel.Exclusive, objectIds: ["0x20000000001", "0x20000000002", "0x20000000003"] },
    ],
  });
  assert.equal(lock.briefcaseId, s.briefcaseId);
  const levels = Object.fromEntries(lock.lockedObjects.map((o) => [o.lockLevel, [...o.objectIds].sort()]));
  assert.deepEqual(levels, {
    shared: ["0x1", "0x10"],
    exclusive: ["0x20000000001", "0x20000000002", "0x20000000003"],
  });
  const shared = await toArray(client.locks.getList({ ...base(), urlParams: { lockLevel: LockLevel.Shared } }));
  assert.deepEqual(shared.map((l) => l.lockedObjects.map((o) => o.lockLevel)), [["shared"]]);
  const theirs = await toArray(client.locks.getList({ ...base(), urlParams: { briefcaseId: s.otherBriefcaseId } }));
  assert.deepEqual(theirs, []);
});

await step("locks: ConflictWithAnotherUser (conflictingLocks), shared by two, LockNotFound", async () => {
  const tip = s.changesets[2].id;
  const conflict = await rejects(
    client.locks.update({
      ...base(),
      briefcaseId: s.otherBriefcaseId,
      changesetId: tip,
      lockedObjects: [{ lockLevel: LockLevel.Exclusive, objectIds: ["0x20000000002"] }],
    }),
    IModelsErrorCode.ConflictWithAnotherUser,
  );
  assert.deepEqual(
    conflict.conflictingLocks?.map((c) => [c.objectId, c.lockLevel, c.briefcaseIds]),
    [["0x20000000002", "exclusive", [s.briefcaseId]]],
    `conflictingLocks ${JSON.stringify(conflict.conflictingLocks)}`,
  );
  const sharedToo = await client.locks.update({
    ...base(),
    briefcaseId: s.otherBriefcaseId,
    changesetId: tip,
    lockedObjects: [{ lockLevel: LockLevel.Shared, objectIds: ["0x1"] }],
  });
  assert.deepEqual(sharedToo.lockedObjects, [{ lockLevel: "shared", objectIds: ["0x1"] }]);
  await rejects(
    client.locks.update({
      ...base(),
      briefcaseId: s.otherBriefcaseId,
      changesetId: tip,
      lockedObjects: [{ lockLevel: LockLevel.Exclusive, objectIds: ["0x1"] }],
    }),
    IModelsErrorCode.ConflictWithAnotherUser,
  );
  await rejects(
    client.locks.update({
      ...base(),
      briefcaseId: s.otherBriefcaseId,
      changesetId: tip,
      lockedObjects: [{ lockLevel: LockLevel.None, objectIds: ["0x20000000003"] }],
    }),
    IModelsErrorCode.LockNotFound,
  );
  await rejects(
    client.locks.update({
      ...base(),
      briefcaseId: 16777000,
      changesetId: tip,
      lockedObjects: [{ lockLevel: LockLevel.Shared, objectIds: ["0x1"] }],
    }),
    IModelsErrorCode.BriefcaseNotFound,
  );
  await rejects(
    client.locks.update({
      ...base(),
      briefcaseId: s.otherBriefcaseId,
      changesetId: randomBytes(20).toString("hex"),
      lockedObjects: [{ lockLevel: LockLevel.Shared, objectIds: ["0x10"] }],
    }),
    IModelsErrorCode.ChangesetNotFound,
  );
});

await step("locks: the 6.0.2 release loop empties the list (the after-push release)", async () => {
  const rounds = await releaseLoop(s.briefcaseId, s.changesets[2].id);
  const mine = await toArray(client.locks.getList({ ...base(), urlParams: { briefcaseId: s.briefcaseId } }));
  assert.deepEqual(mine, []);
  const all = await toArray(client.locks.getList(base()));
  assert.deepEqual(all.map((l) => l.briefcaseId), [s.otherBriefcaseId], "the other briefcase keeps its shared lock");
  return `${rounds} round(s)`;
});

await step("locks: NewerChangesExist for a lock asked at a changeset older than its release", async () => {
  const err = await rejects(
    client.locks.update({
      ...base(),
      briefcaseId: s.otherBriefcaseId,
      changesetId: s.changesets[0].id,
      lockedObjects: [{ lockLevel: LockLevel.Exclusive, objectIds: ["0x20000000001"] }],
    }),
    IModelsErrorCode.NewerChangesExist,
  );
  assert.deepEqual(err.objectIds, ["0x20000000001"], `objectIds ${JSON.stringify(err.objectIds)}`);
  const ok = await client.locks.update({
    ...base(),
    briefcaseId: s.otherBriefcaseId,
    changesetId: s.changesets[2].id,
    lockedObjects: [{ lockLevel: LockLevel.Exclusive, objectIds: ["0x20000000001"] }],
  });
  assert.ok(ok.lockedObjects.some((o) => o.lockLevel === "exclusive" && o.objectIds.includes("0x20000000001")));
});

await step("locks: release-chunk (management 6.2) until isLastChunk", async () => {
  // Many objects, so a server that releases in chunks has to say isLastChunk: false at least once.
  const ids = Array.from({ length: 600 }, (_, i) => `0x${(0x30000000000 + i).toString(16)}`);
  await client.locks.update({
    ...base(),
    briefcaseId: s.otherBriefcaseId,
    changesetId: s.changesets[2].id,
    lockedObjects: [{ lockLevel: LockLevel.Exclusive, objectIds: ids }],
  });
  let chunks = 0;
  for (;;) {
    const result = await management.locks.releaseLocksChunk({
      ...base(),
      briefcaseId: s.otherBriefcaseId,
      changesetId: s.changesets[2].id,
    });
    chunks += 1;
    if (result.isLastChunk) break;
    assert.ok(chunks < 100, "release-chunk never reported the last chunk");
  }
  assert.deepEqual(await toArray(client.locks.getList(base())), [], "no lock left");
  return `${chunks} chunk(s)`;
});

await step("briefcases.release; changesets and the iModel after it", async () => {
  await client.briefcases.release({ ...base(), briefcaseId: s.otherBriefcaseId });
  await rejects(client.briefcases.getSingle({ ...base(), briefcaseId: s.otherBriefcaseId }), IModelsErrorCode.BriefcaseNotFound);
  const latest = await toArray(
    client.changesets.getMinimalList({
      ...base(),
      urlParams: { $top: 1, $orderBy: { property: "index", operator: OrderByOperator.Descending } },
    }),
  );
  assert.equal(latest[0].index, 3);
  await client.briefcases.release({ ...base(), briefcaseId: s.briefcaseId });
  await client.iModels.delete(base());
  const gone = await http("GET", `/imodels/${s.iModel.id}`);
  assert.equal(gone.status, 404);
});

await finish();
