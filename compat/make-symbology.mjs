// Writes the symbology test iModel (see lib/symbology.mjs) with the real iTwin.js backend.
//
//   node compat/make-symbology.mjs <out.bim>
//
// Exit status 0 with the file written; any failure is printed on stderr and exits 1.

import fs from "node:fs";
import os from "node:os";
import path from "node:path";

import { IModelHost } from "@itwin/core-backend";

import { startBackend } from "./lib/changesets.mjs";
import { makeSymbology } from "./lib/symbology.mjs";

const out = process.argv[2];
if (!out) {
  console.error("usage: node compat/make-symbology.mjs <out.bim>");
  process.exit(2);
}
const work = fs.mkdtempSync(path.join(os.tmpdir(), "twinbase-make-symbology-"));
let status = 0;
try {
  await startBackend(work);
  makeSymbology(out);
} catch (err) {
  console.error(`make-symbology failed: ${err?.stack ?? err}`);
  status = 1;
} finally {
  await IModelHost.shutdown();
  fs.rmSync(work, { recursive: true, force: true });
}
process.exit(status);
