// twinbase as the iModels hub of an iTwin.js 5.x backend (@itwin/core-backend 5.7, imodels-access-backend 6.0).
//
//   const { createTwinbaseHubAccess } = require("./twinbase-imodels-access.cjs");
//   const hubAccess = createTwinbaseHubAccess({ baseUrl: "http://127.0.0.1:8080", getAccessToken });
//   await IModelHost.startup({ hubAccess });
//
// Everything but checkpoints works with the stock BackendIModelsAccess pointed at twinbase's /imodels. The
// exception: core-backend 5.x downloads checkpoints only as CloudSqlite containers from
// https://{account}.blob.core.windows.net (it hard-codes the host), while twinbase serves each checkpoint as
// a plain .bim file (`GET /imodels/{id}/changesets/{index}/checkpoint` -> `_links.download`). core-backend's
// only override point for that download is the hook HubMock uses, V2CheckpointManager[mockCheckpoint], whose
// `mockDownload(request)` is called synchronously: the file must already be on disk. So this adapter
//
//   1. stages checkpoints ahead of time: BriefcaseManager.downloadBriefcase always awaits
//      hubAccess.getChangesetFromVersion() just before it downloads the checkpoint, so that is where the
//      current-or-preceding checkpoint of the target changeset is downloaded (once) into a cache folder;
//   2. installs the hook: mockDownload copies the newest staged checkpoint at or before the target into the
//      briefcase file; core-backend then applies the changesets in between itself (as it does for any
//      checkpoint older than the target) and turns the file into the briefcase.
//
// The hook is process-wide. HubMock.startup() replaces it and HubMock.shutdown() removes it: do not use both
// in one process (or call hubAccess.installCheckpointHook() again after HubMock.shutdown()).

"use strict";

const fs = require("node:fs");
const path = require("node:path");
const { randomUUID } = require("node:crypto");

const { IModelHost, V2CheckpointManager } = require("@itwin/core-backend");
const { Logger } = require("@itwin/core-bentley");
const { BackendIModelsAccess } = require("@itwin/imodels-access-backend");
const { downloadFile } = require("@itwin/imodels-client-authoring");
// Not part of the package's index, but it is the very lookup BackendIModelsAccess.downloadV1Checkpoint uses.
const { queryCurrentOrPrecedingV1Checkpoint } = require("@itwin/imodels-access-backend/lib/cjs/CheckpointHelperFunctions");

/** The key core-backend 5.x reads the checkpoint hook from (internal/Symbols.js `_mockCheckpoint`). */
const CHECKPOINT_HOOK = Symbol.for("mockCheckpoint_core-backend_INTERNAL_ONLY_DO_NOT_USE");

/**
 * "Bearer xyz" (or a bare "xyz") as the iModels clients' authorization object.
 * @param {string} token
 * @returns {{ scheme: string, token: string }}
 */
function toAuthorization(token) {
  const parts = String(token ?? "").trim().split(/\s+/);
  if (parts.length === 1 && parts[0]) return { scheme: "Bearer", token: parts[0] };
  if (parts.length !== 2) throw new Error("twinbase: the access token must be 'Bearer <jwt>' or a bare <jwt>");
  return { scheme: parts[0], token: parts[1] };
}

/**
 * A BackendIModelsAccess that talks to twinbase and serves briefcase downloads from twinbase's plain .bim
 * checkpoints. Create it with {@link createTwinbaseHubAccess}.
 */
class TwinbaseIModelsAccess extends BackendIModelsAccess {
  /**
   * @param {object} options
   * @param {string} options.baseUrl twinbase's root URL, e.g. "http://127.0.0.1:8080" (the iModels API is at /imodels).
   * @param {() => Promise<string>} [options.getAccessToken] token for calls core-backend makes without one
   *   ("Bearer <jwt>" or a bare JWT); without it, IModelHost.getAccessToken() (IModelHost's authorizationClient).
   * @param {string} [options.cacheDir] folder for staged checkpoints; default <IModelHost.cacheDir>/twinbase-checkpoints.
   */
  constructor(options) {
    const baseUrl = String(options?.baseUrl ?? "").replace(/\/+$/, "");
    if (!/^https?:\/\//.test(baseUrl)) throw new Error("twinbase: baseUrl must be an http(s) URL");
    super({ api: { baseUrl: `${baseUrl}/imodels` } }); // cloud storage: the default azure + google clients
    this.baseUrl = baseUrl;
    this._getAccessToken = options.getAccessToken;
    this._cacheDir = options.cacheDir;
    /** @type {Map<string, Promise<string>>} staged path by "iModelId/index", while its download runs */
    this._staging = new Map();
    /** @type {Map<string, Error>} the last failed staging, by iModel id */
    this._stagingErrors = new Map();
  }

  /** The folder of staged checkpoints, `<cacheDir>/<iModelId>/<changesetIndex>.bim`. */
  get checkpointCacheDir() {
    return this._cacheDir ?? path.join(IModelHost.cacheDir, "twinbase-checkpoints");
  }

  /** Make core-backend's checkpoint downloads use the staged files (done by createTwinbaseHubAccess). */
  installCheckpointHook() {
    this._hook = {
      // Briefcase download: copy the newest staged checkpoint at or before the target changeset.
      mockDownload: (request) => {
        const { iModelId, changeset } = request.checkpoint;
        // Without an index only the baseline is certainly not newer than the target.
        const staged = this._stagedAtOrBefore(iModelId, changeset.index ?? 0);
        if (staged === undefined) {
          const cause = this._stagingErrors.get(iModelId);
          throw new Error(
            `twinbase: no checkpoint of iModel ${iModelId} at or before changeset ${changeset.index} is staged` +
              (cause ? ` (staging failed: ${cause.message ?? cause})` : "") +
              "; download briefcases with BriefcaseManager.downloadBriefcase, or await hubAccess.prefetchCheckpoint() first",
          );
        }
        fs.mkdirSync(path.dirname(request.localFile), { recursive: true });
        fs.copyFileSync(staged.file, request.localFile);
      },
      // Read-only checkpoint opening (SnapshotDb.openCheckpoint): needs the exact checkpoint, staged beforehand.
      mockAttach: (checkpoint) => {
        const staged = this._stagedAtOrBefore(checkpoint.iModelId, checkpoint.changeset.index ?? 0);
        if (staged === undefined || staged.index !== (checkpoint.changeset.index ?? 0)) {
          throw new Error(
            `twinbase: the checkpoint of iModel ${checkpoint.iModelId} at changeset ${checkpoint.changeset.index} ` +
              "is not staged; await hubAccess.prefetchExactCheckpoint() before opening it",
          );
        }
        return staged.file;
      },
    };
    V2CheckpointManager[CHECKPOINT_HOOK] = this._hook;
    return this;
  }

  /** Remove the hook if it is this adapter's (e.g. before HubMock.startup in the same process). */
  uninstallCheckpointHook() {
    if (this._hook !== undefined && V2CheckpointManager[CHECKPOINT_HOOK] === this._hook)
      V2CheckpointManager[CHECKPOINT_HOOK] = undefined;
    this._hook = undefined;
  }

  /**
   * Download (once) the checkpoint twinbase has at or before `changeset` into the cache and return its
   * path and changeset index. Briefcase downloads call this by themselves.
   * @param {{ iModelId: string, changeset: { id?: string, index?: number }, accessToken?: string }} arg
   * @returns {Promise<{ file: string, index: number }>}
   */
  async prefetchCheckpoint(arg) {
    const auth = { ...this.getAuthorizationParam(arg), iModelId: arg.iModelId };
    const checkpoint = await queryCurrentOrPrecedingV1Checkpoint(this._iModelsClient, auth, {
      checkpoint: { iModelId: arg.iModelId, changeset: arg.changeset, accessToken: arg.accessToken },
    });
    if (!checkpoint?._links?.download)
      throw new Error(`twinbase: iModel ${arg.iModelId} has no downloadable checkpoint at or before ${JSON.stringify(arg.changeset)}`);
    const index = checkpoint.changesetIndex;
    const file = path.join(this.checkpointCacheDir, arg.iModelId, `${index}.bim`);
    if (fs.existsSync(file)) return { file, index };
    const key = `${arg.iModelId}/${index}`;
    let pending = this._staging.get(key);
    if (pending === undefined) {
      pending = (async () => {
        fs.mkdirSync(path.dirname(file), { recursive: true });
        const partial = `${file}.${randomUUID()}.partial`;
        try {
          const link = checkpoint._links.download;
          await downloadFile({ storage: this._iModelsClient.cloudStorage, storageType: link.storageType, url: link.href, localPath: partial });
          fs.renameSync(partial, file); // staged files are always complete
        } finally {
          fs.rmSync(partial, { force: true });
          this._staging.delete(key);
        }
        return file;
      })();
      this._staging.set(key, pending);
    }
    return { file: await pending, index };
  }

  /**
   * Download (once) the checkpoint at exactly `changeset` into the cache, waiting while twinbase makes it
   * (`state: "scheduled"`), and return its path and index. Read-only opening (`SnapshotDb.openCheckpoint`)
   * needs this exact file: await it first. Throws with twinbase's message when the checkpoint failed.
   * @param {{ iModelId: string, changeset: { id?: string, index?: number }, accessToken?: string }} arg
   * @param {{ timeoutMs?: number, pollMs?: number }} [options]
   * @returns {Promise<{ file: string, index: number }>}
   */
  async prefetchExactCheckpoint(arg, options = {}) {
    const timeoutMs = options.timeoutMs ?? 120_000;
    const pollMs = options.pollMs ?? 250;
    const ref = arg.changeset.index ?? arg.changeset.id ?? 0;
    const auth = this.getAuthorizationParam(arg).authorization;
    const { scheme, token } = await auth();
    const url = `${this.baseUrl}/imodels/${arg.iModelId}/changesets/${ref}/checkpoint`;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const response = await fetch(url, {
        headers: { Authorization: `${scheme} ${token}`, Accept: "application/vnd.bentley.itwin-platform.v2+json" },
      });
      const body = await response.json();
      if (!response.ok) throw new Error(`twinbase: ${url}: ${response.status} ${JSON.stringify(body.error ?? body)}`);
      const checkpoint = body.checkpoint;
      if (checkpoint.state === "successful" && checkpoint._links?.download) {
        const index = checkpoint.changesetIndex;
        const file = path.join(this.checkpointCacheDir, arg.iModelId, `${index}.bim`);
        if (!fs.existsSync(file)) {
          fs.mkdirSync(path.dirname(file), { recursive: true });
          const partial = `${file}.${randomUUID()}.partial`;
          try {
            const link = checkpoint._links.download;
            await downloadFile({ storage: this._iModelsClient.cloudStorage, storageType: link.storageType, url: link.href, localPath: partial });
            fs.renameSync(partial, file);
          } finally {
            fs.rmSync(partial, { force: true });
          }
        }
        return { file, index };
      }
      if (checkpoint.state === "failed")
        throw new Error(`twinbase: the checkpoint at changeset ${ref} failed: ${checkpoint.error?.message ?? "unknown error"}`);
      if (Date.now() > deadline) throw new Error(`twinbase: the checkpoint at changeset ${ref} is still ${checkpoint.state}`);
      await new Promise((resolve) => setTimeout(resolve, pollMs));
    }
  }

  /** @returns {{ file: string, index: number } | undefined} */
  _stagedAtOrBefore(iModelId, index) {
    const dir = path.join(this.checkpointCacheDir, iModelId);
    if (!fs.existsSync(dir)) return undefined;
    let best;
    for (const name of fs.readdirSync(dir)) {
      const m = /^(\d+)\.bim$/.exec(name);
      if (m === null) continue;
      const i = Number(m[1]);
      if (i <= index && (best === undefined || i > best.index)) best = { file: path.join(dir, name), index: i };
    }
    return best;
  }

  /**
   * BackendHubAccess: resolve a version; also stage its checkpoint, as a briefcase download may follow. A
   * failed staging does not fail the call (other callers only want the changeset): it is logged, and the
   * hook reports it if a download then finds nothing staged.
   */
  async getChangesetFromVersion(arg) {
    const changeset = await super.getChangesetFromVersion(arg);
    try {
      await this.prefetchCheckpoint({ ...arg, changeset });
      this._stagingErrors.delete(arg.iModelId);
    } catch (err) {
      this._stagingErrors.set(arg.iModelId, err);
      Logger.logWarning("twinbase", `could not stage a checkpoint of iModel ${arg.iModelId}: ${err?.message ?? err}`);
    }
    return changeset;
  }

  /** BackendHubAccess: delete the iModel, and its staged checkpoints. */
  async deleteIModel(arg) {
    await super.deleteIModel(arg);
    fs.rmSync(path.join(this.checkpointCacheDir, arg.iModelId), { recursive: true, force: true });
  }

  /** Calls core-backend makes without a token use options.getAccessToken when it was given. */
  getAuthorizationParam(tokenArg) {
    if (tokenArg?.accessToken || this._getAccessToken === undefined) return super.getAuthorizationParam(tokenArg);
    return { authorization: async () => toAuthorization(await this._getAccessToken()) };
  }
}

/**
 * The hub access an iTwin.js backend passes to `IModelHost.startup({ hubAccess })` to use twinbase as its
 * iModels hub; it also installs the checkpoint hook (see the top of this file).
 * @param {{ baseUrl: string, getAccessToken?: () => Promise<string>, cacheDir?: string }} options
 * @returns {TwinbaseIModelsAccess}
 */
function createTwinbaseHubAccess(options) {
  return new TwinbaseIModelsAccess(options).installCheckpointHook();
}

module.exports = { createTwinbaseHubAccess, TwinbaseIModelsAccess, CHECKPOINT_HOOK };
