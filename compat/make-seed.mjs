// Makes twinbase's empty seed iModel, src/twinbase/bim/data/empty.bim.gz, with the real iTwin.js backend.
//
//   node compat/make-seed.mjs [output.bim.gz]        (or: make seed)
//
// The file is what iTwin.js itself uploads as the baseline of a blank iModel (BackendIModelsAccess
// createNewIModel without version0): SnapshotDb.createEmpty, then prepared as a baseline by opening it
// read-write, clearing the txns, resetting the briefcase id to 0 (unassigned) and saving. twinbase writes
// each new iModel's own identity into a copy (twinbase.bim.identity.stamp), so the iTwin id stored here is
// zeros and the iModel id is whatever createEmpty picked. The gzip is deterministic (no name, mtime 0): the same .bim always gives the same .gz.

import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import zlib from "node:zlib";
import { fileURLToPath } from "node:url";

import { IModelDb, IModelHost, SnapshotDb } from "@itwin/core-backend";
import { Guid, OpenMode } from "@itwin/core-bentley";
import { BriefcaseIdValue } from "@itwin/core-common";

const here = path.dirname(fileURLToPath(import.meta.url));
const output = path.resolve(process.argv[2] ?? path.join(here, "..", "src", "twinbase", "bim", "data", "empty.bim.gz"));
const work = fs.mkdtempSync(path.join(os.tmpdir(), "twinbase-seed-"));
const bim = path.join(work, "empty.bim");

try {
  await IModelHost.startup({ cacheDir: path.join(work, "cache") });
  // No network here: without this the first open waits ~15 s for the public GCS workspace.
  IModelHost.appWorkspace.settings.addDictionary(
    { name: "twinbase-seed", priority: 200 },
    { "itwin/core/gcs/disableWorkspaces": true },
  );

  const snapshot = SnapshotDb.createEmpty(bim, { rootSubject: { name: "iModel" } });
  snapshot.saveChanges();
  snapshot.close();

  // Prepare it as a baseline, the way createNewIModel does (the iTwin id is stamped per iModel later).
  const db = IModelDb.openDgnDb({ path: bim }, OpenMode.ReadWrite);
  try {
    db.setITwinId(Guid.empty);
    db.saveChanges();
    db.deleteAllTxns();
    db.resetBriefcaseId(BriefcaseIdValue.Unassigned);
    db.saveChanges();
    db.vacuum();
  } finally {
    db.closeFile();
  }
  for (const leftover of [`${bim}-wal`, `${bim}-shm`, `${bim}-journal`]) {
    if (fs.existsSync(leftover) && fs.statSync(leftover).size > 0) throw new Error(`${leftover} was left behind`);
  }

  const raw = fs.readFileSync(bim);
  const gz = zlib.gzipSync(raw, { level: 9 });
  // zlib writes no file name and MTIME 0; make sure, since reproducibility depends on it.
  if (gz.readUInt32LE(4) !== 0 || (gz[3] & 0x08) !== 0) throw new Error("gzip header carries a time stamp or name");
  fs.mkdirSync(path.dirname(output), { recursive: true });
  fs.writeFileSync(output, gz);
  console.log(`${path.relative(process.cwd(), output)}: ${raw.length} bytes of .bim, ${gz.length} gzipped`);
} finally {
  await IModelHost.shutdown();
  fs.rmSync(work, { recursive: true, force: true });
}
