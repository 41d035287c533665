// Applies changeset files to a copy of a .bim with the iTwin.js native library, the way a pull does
// (BriefcaseManager.applySingleChangeset: nativeDb.applyChangeset per changeset, in order), and prints the
// time it took as JSON. The yardstick for twinbase's pure-Python replay (bim/replay.py).
//
//   node compat/apply-changesets.mjs --file <copy.bim> --changesets <fixture.json>
//
// <fixture.json> is what replay-fixture.mjs prints ({changesets: [{id, parentId, index, changesType,
// pathname}]}). The file is modified in place: pass a copy. Changeset files are not deleted.

import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";

import { IModelHost, SnapshotDb } from "@itwin/core-backend";

import { startBackend } from "./lib/changesets.mjs";

const { values: args } = parseArgs({ options: { file: { type: "string" }, changesets: { type: "string" } } });
if (!args.file || !args.changesets) {
  console.error("usage: node apply-changesets.mjs --file <copy.bim> --changesets <fixture.json>");
  process.exit(2);
}
const list = JSON.parse(fs.readFileSync(args.changesets, "utf8")).changesets;
const work = fs.mkdtempSync(path.join(os.tmpdir(), "twinbase-apply-"));
try {
  await startBackend(work);
  const started = process.hrtime.bigint();
  const cpu = process.cpuUsage();
  const db = SnapshotDb.openForApplyChangesets(path.resolve(args.file));
  const opened = process.hrtime.bigint();
  const nativeDb = db[Symbol.for("nativeDb_core-backend_INTERNAL_ONLY_DO_NOT_USE")];
  try {
    for (const cs of list) {
      if (cs.changesType === 1 || cs.changesType === 65) db.clearCaches();
      nativeDb.applyChangeset({ ...cs, pathname: path.resolve(cs.pathname) }, false);
    }
    db.saveChanges();
  } finally {
    db.close();
  }
  const done = process.hrtime.bigint();
  const used = process.cpuUsage(cpu);
  console.log(JSON.stringify({
    changesets: list.length,
    openSeconds: Number(opened - started) / 1e9,
    applySeconds: Number(done - opened) / 1e9,
    totalSeconds: Number(done - started) / 1e9,
    cpuSeconds: (used.user + used.system) / 1e6,
  }));
} finally {
  await IModelHost.shutdown();
  fs.rmSync(work, { recursive: true, force: true });
}
