// Validates glTF / GLB files with the Khronos glTF-Validator (npm `gltf-validator`, a library without a CLI).
// Usage: node validate-gltf.mjs a.glb [b.glb ...]
// Prints one JSON array: per file {file, errors, warnings, infos, hints, truncated, messages:[{code, severity,
// pointer, message}]} (severity 0 error, 1 warning, 2 info, 3 hint). Exits 1 when any file has an error.
// The validator does not look inside EXT_meshopt_compression streams nor check EXT_structural_metadata:
// callers decode meshopt first and check metadata themselves (tests/support/gltf_validate.py).
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const validator = require("gltf-validator");

const files = process.argv.slice(2);
if (files.length === 0) {
  console.error("usage: node validate-gltf.mjs FILE...");
  process.exit(2);
}
const reports = [];
let failed = 0;
for (const file of files) {
  const bytes = new Uint8Array(fs.readFileSync(file));
  const result = await validator.validateBytes(bytes, {
    uri: path.basename(file),
    maxIssues: 1000,
    externalResourceFunction: (uri) =>
      Promise.resolve(new Uint8Array(fs.readFileSync(path.resolve(path.dirname(file), decodeURIComponent(uri))))),
  });
  const issues = result.issues;
  reports.push({
    file,
    errors: issues.numErrors,
    warnings: issues.numWarnings,
    infos: issues.numInfos,
    hints: issues.numHints,
    truncated: issues.truncated,
    messages: issues.messages.map((m) => ({
      code: m.code,
      severity: m.severity,
      pointer: m.pointer ?? "",
      message: m.message,
    })),
  });
  if (issues.numErrors > 0) failed++;
}
// exitCode, not process.exit(): exit() drops what a pipe has not taken yet (stdout past 64 KiB).
process.stdout.write(JSON.stringify(reports) + "\n");
process.exitCode = failed ? 1 : 0;
