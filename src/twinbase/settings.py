"""One settings object for the whole server.

Every field can be set with an environment variable ``TWINBASE_<FIELD>`` (upper case) or in a TOML
config file named by ``TWINBASE_CONFIG``. README.md documents each field; ``tests/test_docs.py``
fails when one is missing there.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Settings(BaseModel):
    """Server configuration. Build it with :func:`load_settings`; nothing reads it at import time."""

    model_config = ConfigDict(extra="forbid")

    data_dir: Path = Field(
        default=Path("twinbase-data"),
        description="Folder for the embedded defaults: the SQLite database, blobs and the signing key.",
    )
    database_url: str = Field(
        default="",
        description="SQLAlchemy URL of the metadata database. Empty: SQLite file `<data_dir>/twinbase.db`. "
        "Scale-out: `postgresql+psycopg://user@host/db`.",
    )
    blob_dir: Path | None = Field(
        default=None, description="Folder of the local blob store. Empty: `<data_dir>/blobs`."
    )
    blob_backend: Literal["local", "azure"] = Field(
        default="local",
        description="Where file bytes live: `local` (the blob folder, links served by twinbase) or "
        "`azure` (Azure Blob Storage; every file link is a SAS URL to the blob service).",
    )
    azure_connection_string: str = Field(
        default="",
        description="`azure` backend: the storage account's connection string (account name, key and "
        "blob endpoint; Azurite's works too). The endpoint must be reachable by the clients.",
    )
    azure_container: str = Field(
        default="twinbase",
        description="`azure` backend: the container of twinbase's files (created if missing); bundles "
        "get their own containers named `<container>-<bundle id>`.",
    )
    azure_cors_origins: str = Field(
        default="*",
        description="`azure` backend: comma-separated browser origins (`*`: any) the blob service must "
        "answer cross-origin (CesiumJS fetches tiles from it). At startup a CORS rule for them is added "
        "to the storage account unless one exists; empty: the account's CORS rules are left alone.",
    )
    public_url: str = Field(
        default="",
        description="Base URL used in every `_links` href and signed URL, e.g. `https://twins.example.com`. "
        "Empty: taken from each request's Host header.",
    )
    host: str = Field(default="127.0.0.1", description="Interface `twinbase serve` binds to.")
    port: int = Field(default=8080, description="Port `twinbase serve` listens on.")
    workers: int = Field(default=1, description="Number of uvicorn worker processes for `twinbase serve`.")

    auth_mode: Literal["builtin", "oidc"] = Field(
        default="builtin",
        description="`builtin`: twinbase issues and checks its own tokens. `oidc`: trust an external issuer.",
    )
    auth_issuer: str = Field(
        default="",
        description="Expected `iss` claim. Builtin mode: empty means the public URL. OIDC mode: required.",
    )
    auth_audience: str = Field(default="itwin-platform", description="Expected `aud` claim of access tokens.")
    auth_jwks_url: str = Field(default="", description="OIDC mode: the issuer's JWKS URL.")
    auth_required_scope: str = Field(
        default="itwin-platform", description="Scope every access token must carry."
    )
    keys_dir: Path | None = Field(
        default=None,
        description="Folder of the signing keys: `signing-key.pem` (the builtin issuer's tokens) and "
        "`url-signing.key` (signed file links), created there on first start when missing. Empty: "
        "`<data_dir>/keys`. Several hosts must share their keys (a token or link made on one host is "
        "checked on another): point them all at one folder, e.g. a mounted secret.",
    )
    signing_key_file: Path | None = Field(
        default=None,
        description="The builtin issuer's RSA private key (PEM), e.g. a secret file every host mounts. "
        "Given: it must exist (twinbase never creates it). Empty: `<keys_dir>/signing-key.pem`.",
    )
    url_signing_key_file: Path | None = Field(
        default=None,
        description="The signed-link key (at least 32 bytes), e.g. a secret file every host mounts. Given: "
        "it must exist (twinbase never creates it). Empty: `<keys_dir>/url-signing.key`.",
    )
    token_lifetime_seconds: int = Field(
        default=3600, description="Lifetime of the tokens the builtin issuer hands out."
    )

    rate_limit_per_minute: int = Field(
        default=6000,
        description="Requests per minute allowed to one client (user or service app), 0 to disable.",
    )
    rate_limit_burst: int = Field(
        default=600, description="Requests one client may send at once before the per-minute rate applies."
    )
    rate_limit_clients: int = Field(
        default=100_000,
        ge=1,
        description="Clients whose rate-limit buckets are kept; beyond it the fullest buckets are dropped.",
    )
    briefcase_acquisitions_per_minute: int = Field(
        default=60,
        ge=0,
        description="Briefcases one user may acquire a minute (the platform's per-user limit; past it: 429 "
        "`RateLimitExceeded` with `Retry-After`), 0 for no limit.",
    )
    redis_url: str = Field(
        default="",
        description="Redis shared by every process and host of the deployment (`redis://host:6379/0`): "
        "rate limits and the read cache's invalidation are then the deployment's, not each process's. "
        "Needed when several processes or hosts serve one deployment; empty: each process keeps its own "
        "(and the read cache is off when `workers` is more than 1).",
    )
    redis_prefix: str = Field(
        default="twinbase", description="Prefix of twinbase's Redis keys (deployments may share a Redis)."
    )
    signed_url_lifetime_seconds: int = Field(
        default=3600, description="How long signed blob URLs (downloads, exports, images) stay valid."
    )
    storage_type: Literal["azure", "google"] = Field(
        default="azure",
        description="`storageType` of iModel file links: `azure` (block-blob protocol) or `google` "
        "(plain PUT/GET). twinbase serves both on every link; this only picks the client's uploader.",
    )
    request_threads: int = Field(
        default=4,
        ge=1,
        description="Threads per worker process for blocking request work (database queries, files).",
    )
    read_cache_seconds: float = Field(
        default=2.0,
        description="Lifetime of the per-process cache of hot GET answers. Writes in the same process "
        "clear it at once; other worker processes may serve a read this much older. 0 disables it.",
    )
    job_workers: int = Field(
        default=2,
        ge=0,
        description="Job worker threads inside each web process (`twinbase serve`); 0 runs none (then "
        "`twinbase worker` processes run the jobs).",
    )
    job_stall_seconds: float = Field(
        default=60.0,
        gt=0,
        description="A running job whose worker has not sent a heartbeat for this long is taken to be dead: "
        "it runs again (counting as an attempt) or, with its attempts used, ends failed.",
    )
    job_retention_seconds: float = Field(
        default=7 * 24 * 3600, ge=0, description="Finished jobs older than this are deleted by the workers."
    )
    job_modules: str = Field(
        default="",
        description="Comma-separated Python modules with extra job kinds: each has `register(services)`, "
        "imported by the web process and by `twinbase worker` (which adds its `--import` ones).",
    )
    job_heavy_in_web: bool = Field(
        default=True,
        description="Whether the web process's job workers also run CPU-heavy job kinds. Set false once "
        "`twinbase worker` processes run, so those kinds never compete with requests for the GIL.",
    )
    checkpoint_interval: int = Field(
        default=10,
        ge=0,
        description="Every this many changesets, an iModel's checkpoint is kept whatever the disk budget, "
        "so reaching any version replays at most this many changesets (0: only the baseline and named "
        "versions are kept).",
    )
    checkpoint_budget_bytes: int = Field(
        default=20 * 1024**3,
        ge=0,
        description="Disk for the other (recent, requested) checkpoints, all iModels together; the least "
        "recently used go first when they need more.",
    )
    export_retention_seconds: int = Field(
        default=4 * 3600, description="How long iTwin export outputs are kept and listed."
    )
    export_tile_job_triangles: int = Field(
        default=2_000_000,
        ge=0,
        description="Mesh Export: a 3D Tiles export estimated at more triangles than this is split into "
        "tile jobs of about this many each, which every worker process (web or `twinbase worker`, on any "
        "host) may take; smaller exports are tiled by the job that plans them, on its host's cores. 0 never "
        "splits.",
    )
    export_coordinator_makes_tiles: bool = Field(
        default=True,
        description="Mesh Export: whether the job that plans a split export also makes tile jobs (on its "
        "host's cores) while it waits for them; false leaves them all to the other workers.",
    )
    checkpoint_storage_account: str = Field(
        default="",
        description="The `<storage>` of `https://<storage>.blob.core.windows.net`, where an unmodified "
        "iTwin.js backend fetches checkpoints as CloudSqlite containers (core-backend fixes the host): "
        "the site points that DNS name at twinbase (README, Checkpoints for an unmodified backend). Empty: "
        "checkpoints answer `directoryAccessInfo: null` (plain `.bim` download links only), as the backend "
        "would otherwise send its requests and tokens to Microsoft's host of that name.",
    )
    checkpoint_block_grace_seconds: int = Field(
        default=3600,
        ge=0,
        description="How long the container blocks of an evicted checkpoint stay for backends still reading "
        "an older manifest, with a blob service that serves containers itself (Azure); the local folder "
        "serves blocks from the checkpoint files themselves.",
    )
    tls_cert_file: Path | None = Field(
        default=None,
        description="PEM certificate (chain) `twinbase serve` answers HTTPS with, e.g. one for "
        "`<checkpoint_storage_account>.blob.core.windows.net` and twinbase's own name; unset: plain HTTP "
        "(behind the site's TLS proxy).",
    )
    tls_key_file: Path | None = Field(default=None, description="The private key of `tls_cert_file` (PEM).")
    native_brep_facets: bool = Field(
        default=False,
        description="Mesh Parasolid B-reps stored without facets with the iTwin.js native library (node and "
        "compat/ installed) instead of their range box: `mesh_imodel(..., native_breps=...)`. Off by "
        "default: that library runs under Bentley's right-to-run terms (README, Native B-rep facets).",
    )

    @model_validator(mode="after")
    def _fill_defaults(self) -> Settings:
        self.data_dir = self.data_dir.expanduser().resolve()
        if not self.database_url:
            self.database_url = f"sqlite:///{self.data_dir / 'twinbase.db'}"
        if self.blob_dir is None:
            self.blob_dir = self.data_dir / "blobs"
        self.public_url = self.public_url.rstrip("/")
        account = self.checkpoint_storage_account
        if account and not re.fullmatch(r"[a-z0-9]{3,24}", account):
            # An Azure storage account name: the backend puts it into a host name unescaped.
            raise ValueError("checkpoint_storage_account: 3 to 24 lowercase letters and digits")
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file go together")
        if self.blob_backend == "azure":
            if not self.azure_connection_string:
                raise ValueError("blob_backend 'azure' needs azure_connection_string")
            if not re.fullmatch(r"[a-z0-9](?:[a-z0-9]|-(?!-)){2,29}", self.azure_container):
                raise ValueError("azure_container: 3 to 30 lowercase letters, digits and single hyphens")
            if self.storage_type != "azure":
                # SAS links take only the block-blob protocol; a plain-PUT client would be refused.
                raise ValueError("blob_backend 'azure' needs storage_type 'azure'")
        return self

    @property
    def blob_root(self) -> Path:
        assert self.blob_dir is not None
        return self.blob_dir

    @property
    def key_dir(self) -> Path:
        return (self.keys_dir or self.data_dir / "keys").expanduser().resolve()

    @property
    def token_key_path(self) -> Path:
        """The builtin issuer's key file, and whether twinbase may create it when missing."""
        return (self.signing_key_file or self.key_dir / "signing-key.pem").expanduser().resolve()

    @property
    def url_key_path(self) -> Path:
        return (self.url_signing_key_file or self.key_dir / "url-signing.key").expanduser().resolve()

    @property
    def azure_cors_origin_list(self) -> list[str]:
        return [origin.strip() for origin in self.azure_cors_origins.split(",") if origin.strip()]

    @property
    def job_module_names(self) -> list[str]:
        return [name.strip() for name in self.job_modules.split(",") if name.strip()]


def load_settings(**overrides: Any) -> Settings:
    """Settings from (lowest first) the config file, the environment, then ``overrides``."""
    file_values: dict[str, Any] = {}
    config_path = os.environ.get("TWINBASE_CONFIG")
    if config_path:
        with open(config_path, "rb") as fh:
            file_values = tomllib.load(fh)
    env_values = {
        name: os.environ[f"TWINBASE_{name.upper()}"]
        for name in Settings.model_fields
        if f"TWINBASE_{name.upper()}" in os.environ
    }
    merged = {**file_values, **env_values, **{k: v for k, v in overrides.items() if v is not None}}
    # Pass everything as init arguments so the precedence above is the only one that applies.
    return Settings.model_validate(merged)
