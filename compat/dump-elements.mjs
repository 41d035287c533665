// What the real iTwin.js backend reads from an iModel file, as JSON: the truth twinbase's pure-Python reader
// (src/twinbase/bim/imodel.py, geolocation.py) is compared with in tests/test_bim_elements.py.
//
//   node compat/dump-elements.mjs --file <a.bim> [--file <b.bim> ...] [--make-symbology <out.bim>]
//        [--classes Schema:Class,...]
//
// --make-symbology first writes lib/symbology.mjs's test iModel to <out.bim>, then dumps it too (one
// backend start instead of two).
// Each file is copied to a temporary folder and opened there read-only with SnapshotDb.openFile (so a WAL or
// journal of the original is never touched). One backend start for all files (it costs seconds, a file
// costs tens of milliseconds). Printed on stdout: {"files": {<path as given>: {...}}}, each with:
//   elements      every element's toJSON() (getElement), in id order ({id, error} for one it cannot load);
//   ranges        {id: placement.calculateRange()} of every geometric element (null for a null range);
//   models        every model's toJSON();
//   appearances   {subCategoryId: SubCategory.appearance.toJSON()};
//   rows          {"Schema:Class": rows of ECSQL `SELECT * FROM ONLY Schema.Class` with ECSQL property names},
//                 for every class that has elements, aspects or models (or the --classes given): ECDb
//                 resolves shared and overflow columns itself, so these are the property values as
//                 iTwin.js sees them;
//   fonts         IModelDb.fonts.queryMappedFamilies (every font with an id, embedded or not);
//   geolocation   ecefLocation, projectExtents, globalOrigin, isGeoLocated, the GCS if the backend has one.
// Binary values are written as {"$base64": "..."}, 64-bit ids stay hex strings as iTwin.js gives them.
// Exit status 0; any failure is printed on stderr and exits 1.

import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";

import { GeometricElement, IModelHost, SnapshotDb, SubCategory } from "@itwin/core-backend";
import { QueryRowFormat } from "@itwin/core-common";

import { startBackend } from "./lib/changesets.mjs";
import { makeSymbology } from "./lib/symbology.mjs";

const { values: args } = parseArgs({
  options: {
    file: { type: "string", multiple: true, default: [] },
    classes: { type: "string", default: "" },
    "make-symbology": { type: "string" },
  },
});
if (!args.file.length && !args["make-symbology"]) {
  console.error("usage: node dump-elements.mjs --file <bim> [--file ...] [--make-symbology <out.bim>] [--classes Schema:Class,...]");
  process.exit(2);
}

function replacer(_key, value) {
  if (value instanceof Uint8Array) return { $base64: Buffer.from(value).toString("base64") };
  if (typeof value === "bigint") return value.toString();
  return value;
}

async function rowsOf(db, fullName) {
  const [schema, cls] = fullName.split(":");
  const rows = [];
  const reader = db.createQueryReader(`SELECT * FROM ONLY [${schema}].[${cls}] ORDER BY ECInstanceId`, undefined, {
    rowFormat: QueryRowFormat.UseECSqlPropertyNames,
  });
  for await (const row of reader) rows.push(row.toRow());
  return rows;
}

async function dump(file, n) {
  const copy = path.join(work, `copy-${n}.bim`);
  fs.copyFileSync(path.resolve(file), copy);
  const db = SnapshotDb.openFile(copy);
  try {
    const out = { elements: [], ranges: {}, models: [], appearances: {}, rows: {}, fonts: [], geolocation: {} };
    const ids = [];
    const classes = new Set();
    for await (const row of db.createQueryReader(
      "SELECT ECInstanceId, ec_classname(ECClassId, 's:c') FROM bis.Element ORDER BY ECInstanceId",
    )) {
      ids.push(row[0]);
      classes.add(row[1]);
    }
    for (const id of ids) {
      let element;
      try {
        element = db.elements.getElement(id);
      } catch (err) {
        // Reported, not fatal: the test says which element the backend itself cannot load.
        out.elements.push({ id, error: String(err?.message ?? err) });
        continue;
      }
      out.elements.push(element.toJSON());
      if (element instanceof GeometricElement) {
        const range = element.placement.calculateRange();
        out.ranges[id] = range.isNull ? null : range.toJSON();
      }
      if (element instanceof SubCategory) out.appearances[id] = element.appearance.toJSON();
    }
    for await (const row of db.createQueryReader("SELECT ECInstanceId FROM bis.Model ORDER BY ECInstanceId"))
      out.models.push(db.models.getModel(row[0]).toJSON());
    // Aspects and models are read through the same mapping: their classes are dumped too.
    for (const base of ["bis.ElementAspect", "bis.Model"]) {
      for await (const row of db.createQueryReader(`SELECT DISTINCT ec_classname(ECClassId, 's:c') FROM ${base}`))
        classes.add(row[0]);
    }
    const wanted = args.classes ? args.classes.split(",") : [...classes].sort();
    for (const fullName of wanted) out.rows[fullName] = await rowsOf(db, fullName);
    out.fonts = [...db.fonts.queryMappedFamilies({ includeNonEmbedded: true })];
    out.geolocation = {
      isGeoLocated: db.isGeoLocated,
      ecefLocation: db.ecefLocation?.toJSON(),
      projectExtents: db.projectExtents.toJSON(),
      globalOrigin: db.globalOrigin.toJSON(),
      geographicCoordinateSystem: db.geographicCoordinateSystem?.toJSON(),
    };
    return out;
  } finally {
    db.close();
    fs.rmSync(copy, { force: true });
  }
}

const work = fs.mkdtempSync(path.join(os.tmpdir(), "twinbase-dump-elements-"));
let status = 0;
try {
  await startBackend(work);
  const files = {};
  const paths = [...args.file];
  if (args["make-symbology"]) {
    makeSymbology(args["make-symbology"]);
    paths.push(args["make-symbology"]);
  }
  for (const [n, file] of paths.entries()) files[file] = await dump(file, n);
  // process.exit() does not wait for a pipe to drain: wait for the write to be flushed first.
  const text = JSON.stringify({ files }, replacer);
  await new Promise((resolve, reject) => process.stdout.write(text, (err) => (err ? reject(err) : resolve())));
} catch (err) {
  console.error(`dump-elements failed: ${err?.stack ?? err}`);
  status = 1;
} finally {
  await IModelHost.shutdown();
  fs.rmSync(work, { recursive: true, force: true });
}
process.exit(status);
