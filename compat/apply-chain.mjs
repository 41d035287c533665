// How the real iTwin.js backend applies a changeset chain made by make-chain.mjs: time and memory of a
// briefcase that starts at changeset 0 and pulls every changeset (BriefcaseDb.pullChanges, i.e.
// BriefcaseManager.pullAndApplyChangesets, the native library's applyChangeset for each file).
//
//   node compat/apply-chain.mjs <chain dir> <work dir> twinbase   (TWINBASE_URL, TWINBASE_TOKEN, TWINBASE_ITWIN_ID)
//   node compat/apply-chain.mjs <chain dir> <work dir> hubmock
//
// twinbase: the chain is put into a running twinbase server the way iTwin.js would (createNewIModel with the
//   chain's baseline as version0, one acquired briefcase id, then each changeset file pushed with its own id
//   and parent through BackendIModelsAccess.pushChangeset), and the briefcase pulls from that server.
// hubmock:  the same through core-backend's in-process HubMock (changeset files are plain file copies).
//
// Phases, each timed: setup (iModel and pushes), open (downloadBriefcase at changeset 0 + BriefcaseDb.open),
// download (every changeset file into the briefcase's changeset cache, so the pull that follows finds them
// there and only applies), pull (pullChanges to the latest). Prints one JSON line: the timings, RSS before
// the pull and the process's peak RSS (process.resourceUsage().maxRSS). The pulled briefcase is closed and
// left at <work dir>/pulled.bim.

import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";

import { BriefcaseDb, BriefcaseManager, IModelHost } from "@itwin/core-backend";
import { IModelVersion } from "@itwin/core-common";

const require = createRequire(import.meta.url);

const [chainDir, workDir, mode] = process.argv.slice(2);
if (!chainDir || !workDir || !["twinbase", "hubmock"].includes(mode)) {
  console.error("usage: node compat/apply-chain.mjs <chain dir> <work dir> twinbase|hubmock");
  process.exit(2);
}
fs.mkdirSync(workDir, { recursive: true });
const chain = JSON.parse(fs.readFileSync(path.join(chainDir, "chain.json"), "utf8"));
const mb = (bytes) => Math.round((bytes / (1 << 20)) * 10) / 10;
const now = () => performance.now() / 1000;
const result = { mode, changesets: chain.length };

// The baseline is copied: preparing a version0 opens it read-write (BackendIModelsAccess writes into it).
const version0 = path.join(workDir, "version0.bim");
fs.copyFileSync(path.join(chainDir, "baseline.bim"), version0);

let hubAccess;
let HubMock;
let accessToken = "Bearer mock";
let iTwinId;
if (mode === "twinbase") {
  const { createTwinbaseHubAccess } = require("./lib/twinbase-imodels-access.cjs");
  const base = process.env.TWINBASE_URL;
  accessToken = `Bearer ${process.env.TWINBASE_TOKEN}`;
  iTwinId = process.env.TWINBASE_ITWIN_ID;
  if (!base || !process.env.TWINBASE_TOKEN || !iTwinId) {
    console.error("twinbase mode needs TWINBASE_URL, TWINBASE_TOKEN and TWINBASE_ITWIN_ID");
    process.exit(2);
  }
  hubAccess = createTwinbaseHubAccess({
    baseUrl: base,
    getAccessToken: async () => accessToken,
    cacheDir: path.join(workDir, "checkpoints"),
  });
}
await IModelHost.startup({ hubAccess, cacheDir: path.join(workDir, "cache") });
// Offline machine: no waiting for the public GCS workspace on the first open.
IModelHost.appWorkspace.settings.addDictionary({ name: "apply-chain", priority: 200 }, { "itwin/core/gcs/disableWorkspaces": true });

let db;
try {
  // ------------------------------------------------------------------------------------- setup
  let t = now();
  let iModelId;
  const files = chain.map((cs) => path.join(chainDir, cs.file));
  if (mode === "hubmock") {
    ({ HubMock } = require("@itwin/core-backend/lib/cjs/internal/HubMock"));
    HubMock.startup("apply-chain", workDir);
    iTwinId = HubMock.iTwinId;
    iModelId = await HubMock.createNewIModel({ iTwinId, iModelName: "apply-chain", version0, noLocks: true });
    const hub = HubMock.findLocalHub(iModelId);
    const briefcaseId = hub.acquireNewBriefcaseId("pusher");
    for (const [i, cs] of chain.entries()) {
      hub.addChangeset({ ...cs, pathname: files[i], briefcaseId, description: cs.description });
    }
  } else {
    iModelId = await hubAccess.createNewIModel({ iTwinId, iModelName: `apply-chain ${path.basename(chainDir)} ${Date.now()}`, version0, accessToken, noLocks: true });
    const briefcaseId = await hubAccess.acquireNewBriefcaseId({ iModelId, accessToken });
    for (const [i, cs] of chain.entries()) {
      await hubAccess.pushChangeset({
        iModelId,
        accessToken,
        changesetProps: { id: cs.id, parentId: cs.parentId, changesType: cs.changesType, description: cs.description, pathname: files[i], briefcaseId },
      });
    }
    await hubAccess.releaseBriefcase({ iModelId, briefcaseId, accessToken });
  }
  result.setupSeconds = now() - t;

  // -------------------------------------------------------------------------------------- open
  t = now();
  const props = await BriefcaseManager.downloadBriefcase({
    iTwinId,
    iModelId,
    accessToken,
    asOf: IModelVersion.first().toJSON(),
    fileName: path.join(workDir, "pulled.bim"),
  });
  db = await BriefcaseDb.open({ fileName: props.fileName });
  if (db.changeset.index !== 0) throw new Error(`the briefcase opened at ${JSON.stringify(db.changeset)}, not at 0`);
  result.openSeconds = now() - t;

  // ---------------------------------------------------------------------------------- download
  t = now();
  const downloaded = await BriefcaseManager.downloadChangesets({
    iModelId,
    accessToken,
    range: { first: 1 },
    targetDir: BriefcaseManager.getChangeSetsPath(iModelId),
  });
  if (downloaded.length !== chain.length) throw new Error(`downloaded ${downloaded.length} changesets, not ${chain.length}`);
  result.downloadSeconds = now() - t;

  // -------------------------------------------------------------------------------------- pull
  global.gc?.();
  result.rssBeforeMB = mb(process.memoryUsage().rss);
  t = now();
  await db.pullChanges({ accessToken });
  result.pullSeconds = now() - t;
  result.peakRssMB = mb(process.resourceUsage().maxRSS * 1024);
  const last = chain[chain.length - 1];
  if (db.changeset.id !== last.id || db.changeset.index !== last.index)
    throw new Error(`after the pull the briefcase is at ${JSON.stringify(db.changeset)}, not at ${last.index} ${last.id}`);
  db.close();
  db = undefined;
  result.pulled = path.join(workDir, "pulled.bim");
  result.iModelId = iModelId;
  console.log(JSON.stringify(result));
} finally {
  if (db?.isOpen) db.close();
  HubMock?.shutdown();
  await IModelHost.shutdown();
}
