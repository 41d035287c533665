// Opens a .bim that twinbase made as a checkpoint the two ways the iTwin.js backend uses checkpoints, and
// prints what the backend reads from it as JSON.
//
//   node compat/open-checkpoint.mjs --file <checkpoint.bim> --imodel <id> --itwin <id> --changeset <id> --index <n>
//
// The backend only fetches checkpoints from cloud containers; its own hook for a hub without them (what HubMock
// installs: V2CheckpointManager[Symbol.for("mockCheckpoint_core-backend_INTERNAL_ONLY_DO_NOT_USE")]) hands it
// the file instead, and everything after that is the backend's ordinary code:
//   attach:   SnapshotDb.openCheckpointFromRpc (what an RPC backend serving a version does): opens the file
//             read-only as a checkpoint and checks its iModel and iTwin ids; the changeset it reports is
//             the file's own (getCurrentChangeset), an element count by SQLite and by ECSQL;
//   download: CheckpointManager.downloadCheckpoint (what downloadBriefcase starts with): copies the file,
//             opens it to apply changesets, deletes leftover txns, resets the briefcase id, checks the ids,
//             and applies changesets from the hub if the file is not at the requested changeset. No hub is
//             reachable here, so it succeeds only if the file already is at that changeset.
// Exit status 0 with {"attach": {...}, "download": {...}}; any failure is printed and exits 1.

import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";

import { CheckpointManager, IModelHost, SnapshotDb, V2CheckpointManager } from "@itwin/core-backend";

import { startBackend } from "./lib/changesets.mjs";

const { values: args } = parseArgs({
  options: {
    file: { type: "string" },
    imodel: { type: "string" },
    itwin: { type: "string" },
    changeset: { type: "string", default: "" },
    index: { type: "string", default: "0" },
  },
});
if (!args.file || !args.imodel || !args.itwin) {
  console.error("usage: node open-checkpoint.mjs --file <bim> --imodel <id> --itwin <id> --changeset <id> --index <n>");
  process.exit(2);
}
const file = path.resolve(args.file);
const checkpoint = {
  iTwinId: args.itwin,
  iModelId: args.imodel,
  changeset: { id: args.changeset, index: Number(args.index) },
};
const work = fs.mkdtempSync(path.join(os.tmpdir(), "twinbase-open-checkpoint-"));
const MOCK = Symbol.for("mockCheckpoint_core-backend_INTERNAL_ONLY_DO_NOT_USE");

function elementCounts(db) {
  const sqlite = db.withSqliteStatement("SELECT count(*) FROM bis_Element", (stmt) => (stmt.step(), stmt.getValueInteger(0)));
  const ecsql = db.withStatement("SELECT count(*) FROM bis.Element", (stmt) => (stmt.step(), stmt.getValue(0).getInteger()));
  return { sqlite, ecsql };
}

let status = 0;
try {
  await startBackend(work);
  V2CheckpointManager[MOCK] = {
    mockAttach: () => file, // read-only, in place: the checkpoint file itself
    mockDownload: (request) => fs.copyFileSync(file, request.localFile),
  };

  const result = {};
  const db = await SnapshotDb.openCheckpointFromRpc(checkpoint);
  try {
    result.attach = {
      readonly: db.isReadonly,
      iModelId: db.iModelId,
      iTwinId: db.iTwinId,
      changeset: db.changeset,
      elements: elementCounts(db),
    };
  } finally {
    db.close();
  }

  const localFile = path.join(work, "downloaded.bim");
  await CheckpointManager.downloadCheckpoint({ localFile, checkpoint });
  const downloaded = SnapshotDb.openFile(localFile);
  try {
    result.download = {
      iModelId: downloaded.iModelId,
      changeset: downloaded.changeset,
      briefcaseId: downloaded.getBriefcaseId(),
      elements: elementCounts(downloaded),
    };
  } finally {
    downloaded.close();
  }
  console.log(JSON.stringify(result));
} catch (err) {
  console.error(`open-checkpoint failed: ${err?.stack ?? err}`);
  status = 1;
} finally {
  delete V2CheckpointManager[MOCK];
  await IModelHost.shutdown();
  fs.rmSync(work, { recursive: true, force: true });
}
process.exit(status);
