"""``create_app(settings)``: the one place where the server is assembled. Nothing is built at import."""

from __future__ import annotations

import importlib
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import anyio.to_thread
from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from twinbase.api import (
    accesscontrol,
    blobs,
    briefcases,
    changesets,
    containers,
    export_connections,
    identity,
    images,
    imodel_ops,
    imodels,
    itwin_exports,
    itwins,
    locks,
    mesh_export,
    namedversions,
    repositories,
)
from twinbase.api.cache import ResponseCache
from twinbase.api.deps import Services
from twinbase.api.http import EdgeMiddleware, install_error_handlers
from twinbase.api.limits import Limiter
from twinbase.api.openapi import install_docs
from twinbase.domain import checkpoints as checkpoint_jobs
from twinbase.domain import containers as container_jobs
from twinbase.domain import export_connections as export_run_jobs
from twinbase.domain import imodel_ops as imodel_op_jobs
from twinbase.domain import imodels as imodel_jobs
from twinbase.domain import itwin_exports as export_jobs
from twinbase.domain import mesh_exports as mesh_export_jobs
from twinbase.domain import mesh_tile_jobs
from twinbase.identity.tokens import SigningKey, TokenIssuer, TokenVerifier
from twinbase.jobs.queue import JobQueue
from twinbase.jobs.worker import WorkerPool
from twinbase.settings import Settings
from twinbase.store import scratch
from twinbase.store.blobs import UrlSigner, build_blob_store
from twinbase.store.db import Database, upgrade
from twinbase.store.shared import SharedState

log = logging.getLogger("twinbase")

CORS_ALLOW_HEADERS = [
    "authorization",
    "accept",
    "prefer",
    "sessionid",
    "content-type",
    "x-itwin-query-scope",
    "x-correlation-id",
    "x-max-return",
    "range",
    "x-ms-blob-type",
    "x-ms-version",
    "x-ms-client-request-id",
    "use-new-exporter",
]
CORS_EXPOSE_HEADERS = [
    "location",
    "retry-after",
    "x-request-id",
    "etag",
    "content-range",
    "content-length",
    "x-max-return",
]


def shared_state(settings: Settings) -> SharedState | None:
    """The deployment's shared state (Redis), when configured."""
    return SharedState(settings.redis_url, settings.redis_prefix) if settings.redis_url else None


def read_cache_seconds(settings: Settings, shared: SharedState | None) -> float:
    """The read cache's lifetime: off without Redis when several processes serve (another process's
    write would go unseen: a removed member could still read)."""
    if shared is None and settings.workers > 1:
        return 0.0
    return settings.read_cache_seconds


def build_services(
    settings: Settings,
    *,
    migrate: bool = True,
    job_modules: Sequence[str] = (),
    shared: SharedState | None = None,
) -> Services:
    """Everything a process needs, web or job worker. ``job_modules``: extra job-kind modules on top of
    ``TWINBASE_JOB_MODULES``, each with a ``register(services)`` like the domain's own kinds. ``shared``:
    the deployment's shared state (default: made from the settings)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    scratch.sweep(settings.data_dir)  # left by processes of this host that were killed
    if migrate:
        upgrade(settings.database_url)
    db = Database(settings.database_url)
    shared = shared or shared_state(settings)
    if shared is not None:
        db.after_write.append(shared.bump)
    key = None
    if settings.auth_mode == "builtin":
        # A key file named in the settings is a shared secret: never made here (hosts must agree).
        if settings.signing_key_file is not None:
            key = SigningKey.load(settings.token_key_path)
        else:
            key = SigningKey.load_or_create(settings.token_key_path)
    issuer = TokenIssuer(settings, key) if key is not None else None
    jobs = JobQueue(db, stall_after=settings.job_stall_seconds, retention=settings.job_retention_seconds)
    signer = UrlSigner.from_file(settings.url_key_path, create=settings.url_signing_key_file is None)
    svc = Services(
        settings=settings,
        db=db,
        blobs=build_blob_store(settings, signer),
        signer=signer,
        key=key,
        issuer=issuer,
        verifier=TokenVerifier(settings, key),
        jobs=jobs,
        cache=ResponseCache(db, read_cache_seconds(settings, shared), shared),
        shared=shared,
        briefcase_limit=Limiter(
            "briefcases",
            settings.briefcase_acquisitions_per_minute,
            max(1, settings.briefcase_acquisitions_per_minute),
            settings.rate_limit_clients,
            shared,
        )
        if settings.briefcase_acquisitions_per_minute > 0
        else None,
    )
    export_jobs.register(svc)
    imodel_jobs.register(svc)
    imodel_op_jobs.register(svc)
    checkpoint_jobs.register(svc)
    container_jobs.register(svc)
    mesh_export_jobs.register(svc)
    mesh_tile_jobs.register(svc)
    export_run_jobs.register(svc)
    for name in [*settings.job_module_names, *job_modules]:
        importlib.import_module(name).register(svc)
    return svc


def create_app(settings: Settings, *, services: Services | None = None, migrate: bool = True) -> FastAPI:
    """The ASGI app. ``migrate=False`` when the caller already applied the migrations (``twinbase
    serve`` does, once, before its worker processes start: they must not race each other)."""
    holder: dict[str, Services] = {}
    shared = shared_state(settings) if services is None else services.shared

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        svc = services or build_services(settings, migrate=migrate, shared=shared)
        holder["svc"] = svc
        app.state.services = svc
        # Blocking work (database, files) runs in this many threads. More threads than cores only
        # make them fight over the GIL: throughput falls as concurrency grows.
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.request_threads
        workers = WorkerPool(
            svc.jobs,
            settings.job_workers,
            kinds=svc.jobs.kind_names(include_heavy=settings.job_heavy_in_web),
        )
        workers.start()
        log.info("twinbase ready", extra={"action": "ready"})
        try:
            yield
        finally:
            workers.stop()
            svc.db.dispose()

    app = FastAPI(
        title="twinbase",
        summary="Self-hosted iTwin Platform APIs",
        version="0.1.0",
        lifespan=lifespan,
        redirect_slashes=False,
        docs_url=None,
        openapi_url="/openapi.json",
    )
    install_error_handlers(app)

    @app.get("/health", include_in_schema=False)
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    # The hottest routes first (Starlette tries them in order). Where a literal segment shares a
    # position with an id, the literal's module comes first (``/imodels/favorites`` before
    # ``/imodels/{id}``) or the id is typed (``{itwin_id:itwinid}`` cannot be ``exports``).
    itwin_apis = [itwins, itwin_exports, repositories, images, accesscontrol, identity, blobs, containers]
    imodel_apis = [
        imodel_ops,
        imodels,
        changesets,
        namedversions,
        briefcases,
        locks,
        mesh_export,
        export_connections,
    ]
    for module in itwin_apis + imodel_apis:
        # Flattened into the app's own route list: matching walks one list instead of nested routers.
        app.router.routes.extend(module.router.routes)
    install_docs(app, itwin_apis + imodel_apis)

    app.add_middleware(
        CORSMiddleware,
        allow_origins=["*"],
        allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"],
        allow_headers=CORS_ALLOW_HEADERS,
        expose_headers=CORS_EXPOSE_HEADERS,
        max_age=3600,
    )
    app.add_middleware(
        EdgeMiddleware,
        per_minute=settings.rate_limit_per_minute,
        burst=settings.rate_limit_burst,
        max_clients=settings.rate_limit_clients,
        shared=shared,
    )
    return app
