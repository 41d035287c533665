"""Service applications for the client_credentials grant. Secrets are stored as scrypt hashes."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from sqlalchemy.orm import Session

from twinbase.store.models import ServiceApp


def hash_secret(secret: str, salt: bytes) -> str:
    digest = hashlib.scrypt(secret.encode(), salt=salt, n=2**14, r=8, p=1, dklen=32)
    return "scrypt$" + base64.b64encode(salt).decode() + "$" + base64.b64encode(digest).decode()


def register(
    session: Session,
    display_name: str,
    scopes: str = "itwin-platform",
    *,
    redirect_uris: list[str] | None = None,
    public: bool = False,
) -> tuple[str, str]:
    """Create a client; returns (client_id, secret). The secret is shown once, never stored.

    With ``redirect_uris`` the client may also sign people in (authorization code). A ``public``
    client (a browser app) gets no secret: it cannot use client_credentials and must use PKCE.
    """
    client_id = ("spa-" if public else "service-") + secrets.token_hex(8)
    secret = "" if public else secrets.token_urlsafe(32)
    session.add(
        ServiceApp(
            client_id=client_id,
            secret_hash="" if public else hash_secret(secret, secrets.token_bytes(16)),
            display_name=display_name,
            scopes=scopes,
            redirect_uris=redirect_uris or None,
            is_public=public,
        )
    )
    session.flush()
    return client_id, secret


def verify_client(session: Session, client_id: str, secret: str) -> ServiceApp | None:
    app = session.get(ServiceApp, client_id)
    if app is None:
        return None
    try:
        _, salt_b64, _digest = app.secret_hash.split("$")
    except ValueError:
        return None
    expected = hash_secret(secret, base64.b64decode(salt_b64))
    return app if hmac.compare_digest(expected, app.secret_hash) else None
