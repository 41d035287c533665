// Writes and reads CloudSqlite containers with the iTwin.js native library's own code, so twinbase's
// pure-Python container format (src/twinbase/bim/cloudsqlite.py) can be checked against it.
//
//   CLOUDSQLITE_ROUNDTRIP='{"baseUri": "http://127.0.0.1:10000/devstoreaccount1", "accessToken": "<sas>",
//     "work": "/tmp/dir",
//     "uploads":   [{"container": "a", "dbName": "proj", "file": "/path/source.bim", "blockSize": "4M"}],
//     "downloads": [{"container": "b", "dbName": "proj", "file": "/path/out.bim"}]}' node compat/cloudsqlite-roundtrip.mjs
//
// A job's own "baseUri" / "accessToken" override the spec's.
// uploads: CloudSqlite.createCloudContainer (writeable), initializeContainer (an empty manifest; the container
//          itself must already exist in the storage account), connect to a cache in `work`, then
//          CloudSqlite.withWriteLock + CloudSqlite.uploadDb: exactly what the native writer puts on the wire.
// downloads: CloudSqlite.createCloudContainer (read-only, never connected) + CloudSqlite.transferDb("download"),
//          which is what V2CheckpointManager.downloadCheckpoint does with a checkpoint's container.
// storageType is "azure", as core-backend's checkpoint code forces it; the native addon turns every "azure..."
// storageType into "azure?customuri=1&sas=1", i.e. baseUri is used as given and the token is a SAS.
// The last stdout line is the JSON answer {"uploads": [...], "downloads": [...]} (or {"error": ...}, exit 1).

import fs from "node:fs";
import path from "node:path";

import { CloudSqlite, IModelHost } from "@itwin/core-backend";

const BLOCK_SIZES = { "4M": 4 * 1024 * 1024, "64K": 64 * 1024 };

function containerOf(spec, job, writeable) {
  return CloudSqlite.createCloudContainer({
    storageType: spec.storageType ?? "azure",
    baseUri: job.baseUri ?? spec.baseUri,
    containerId: job.container,
    accessToken: job.accessToken ?? spec.accessToken,
    writeable,
    tokenRefreshSeconds: 0, // the SAS is fixed for the run: no refresh timer
  });
}

async function main() {
  const raw = process.env.CLOUDSQLITE_ROUNDTRIP;
  if (!raw) throw new Error("CLOUDSQLITE_ROUNDTRIP (JSON spec) is not set");
  const spec = JSON.parse(raw);
  fs.mkdirSync(spec.work, { recursive: true });
  await IModelHost.startup({ cacheDir: path.join(spec.work, "host-cache") });
  const answer = { uploads: [], downloads: [] };
  try {
    for (const job of spec.uploads ?? []) {
      const container = containerOf(spec, job, true);
      const blockSize = BLOCK_SIZES[job.blockSize ?? "4M"];
      if (blockSize === undefined) throw new Error(`blockSize must be one of ${Object.keys(BLOCK_SIZES)}`);
      container.initializeContainer({ blockSize, checksumBlockNames: job.checksumBlockNames ?? false });
      const cache = CloudSqlite.CloudCaches.getCache({
        cacheName: `roundtrip-${job.container}`,
        cacheDir: path.join(spec.work, `cache-${job.container}`),
      });
      container.connect(cache);
      try {
        await CloudSqlite.withWriteLock({ user: "twinbase-roundtrip", container }, async () => {
          await CloudSqlite.uploadDb(container, { dbName: job.dbName, localFileName: job.file });
        });
        container.checkForChanges();
        answer.uploads.push({ container: job.container, dbName: job.dbName, databases: container.queryDatabases() });
      } finally {
        container.disconnect({ detach: true });
      }
    }
    for (const job of spec.downloads ?? []) {
      const container = containerOf(spec, job, false);
      await CloudSqlite.transferDb("download", container, { dbName: job.dbName, localFileName: job.file });
      answer.downloads.push({ container: job.container, dbName: job.dbName, file: job.file, size: fs.statSync(job.file).size });
    }
  } finally {
    await IModelHost.shutdown();
  }
  return answer;
}

try {
  console.log(JSON.stringify(await main()));
} catch (err) {
  console.log(JSON.stringify({ error: `${err.message ?? err}`, errorNumber: err.errorNumber ?? null }));
  process.exitCode = 1;
}
