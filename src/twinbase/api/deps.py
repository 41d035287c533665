"""What every route needs: the services, the authenticated caller, the base URL for links."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool

from twinbase.api.cache import ResponseCache
from twinbase.api.http import VERIFIED_CALLER, base_url, split_authorization
from twinbase.api.limits import Limiter
from twinbase.domain.itwins import ensure_user
from twinbase.errors import HeaderNotFound, InvalidAuthorizationScheme
from twinbase.identity.tokens import Principal, SigningKey, TokenIssuer, TokenVerifier
from twinbase.jobs.queue import JobQueue
from twinbase.settings import Settings
from twinbase.store.blobs import BlobStore, Perm, UrlSigner
from twinbase.store.blobs import keys as blob_keys
from twinbase.store.db import Database
from twinbase.store.shared import SharedState


@dataclass
class Services:
    """Everything built once per process by ``create_app``; routes reach it through ``Ctx``."""

    settings: Settings
    db: Database
    blobs: BlobStore
    signer: UrlSigner
    key: SigningKey | None
    issuer: TokenIssuer | None
    verifier: TokenVerifier
    jobs: JobQueue
    cache: ResponseCache
    shared: SharedState | None = None
    briefcase_limit: Limiter | None = None
    known_users: set[str] = field(default_factory=set)
    known_users_lock: threading.Lock = field(default_factory=threading.Lock)

    def signed_url(self, base: str, key: str) -> str:
        """A read link to one blob (images, export outputs): twinbase's own or the blob service's."""
        return self.blobs.presign(key, "r", self.settings.signed_url_lifetime_seconds, base)

    def storage_link(self, base: str, key: str, perm: Perm = "r") -> dict[str, str]:
        """A ``StorageLink`` of the iModels API: ``{href, storageType}``.

        ``r``: a download link to ``key``. ``w``: an upload link, which writes to the staging key of
        ``key`` (``keys.upload``), never to ``key`` itself: completion promotes the staged file.
        """
        target = blob_keys.upload(key) if perm == "w" else key
        href = self.blobs.presign(target, perm, self.settings.signed_url_lifetime_seconds, base)
        return {"href": href, "storageType": self.settings.storage_type}


def services(request: Request) -> Services:
    svc: Services = request.app.state.services
    return svc


@dataclass(frozen=True)
class Context:
    svc: Services
    principal: Principal
    base: str
    request: Request


async def authenticate(request: Request) -> Principal:
    svc = services(request)
    header = request.headers.get("authorization")
    if header is None or not header.strip():
        raise HeaderNotFound()
    scheme, token = split_authorization(header)
    if not token or scheme.lower() != "bearer":
        raise InvalidAuthorizationScheme(f"Authorization scheme '{scheme}' is not valid.")
    verified = request.scope.get("state", {}).get(VERIFIED_CALLER)
    if verified is not None and verified[0] == token:
        # The rate limiter verified this very token already (EdgeMiddleware).
        result = verified[1]
        if not isinstance(result, Principal):
            raise result
        principal = result
    else:
        principal = svc.verifier.verify(token)
    if principal.user_id not in svc.known_users:
        await run_in_threadpool(_record_user, svc, principal)
    return principal


def _record_user(svc: Services, principal: Principal) -> None:
    for _attempt in range(3):
        try:
            with svc.db.write() as session:
                ensure_user(session, principal)
            break
        except IntegrityError:
            continue  # a concurrent first request recorded the same user; read it next time round
    with svc.known_users_lock:
        svc.known_users.add(principal.user_id)


async def context(request: Request) -> Context:
    # One flat dependency (authentication inline): FastAPI's per-dependency cost is paid once.
    principal = await authenticate(request)
    svc = services(request)
    return Context(
        svc=svc, principal=principal, base=base_url(request, svc.settings.public_url), request=request
    )


Ctx = Annotated[Context, Depends(context)]
