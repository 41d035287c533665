// `npm ci` / `npm install` end here (the "postinstall" script of this package): fail loudly when the iTwin.js
// native library did not land. npm 11 runs a dependency's install script only when package.json allows it
// ("allowScripts"); without it the install "succeeds" and IModelHost.startup fails much later.
"use strict";

const fs = require("node:fs");
const path = require("node:path");

let dir;
try {
  dir = path.dirname(require.resolve("@bentley/imodeljs-native/package.json"));
} catch {
  console.error("check-native: @bentley/imodeljs-native is not installed");
  process.exit(1);
}
const { NativeLibrary } = require("@bentley/imodeljs-native");
const addon = path.join(dir, NativeLibrary.archName, NativeLibrary.nodeAddonName);
if (!fs.existsSync(addon)) {
  console.error(
    `check-native: ${addon} is missing: the install script of @bentley/imodeljs-native did not run or failed ` +
      '(it needs "allowScripts": { "@bentley/imodeljs-native": true } in compat/package.json and the npm registry)',
  );
  process.exit(1);
}
NativeLibrary.load(); // throws when the addon cannot be loaded on this machine
console.log(`check-native: ${path.relative(process.cwd(), addon)} loads (${fs.statSync(addon).size} bytes)`);
