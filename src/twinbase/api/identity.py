"""The builtin issuer's endpoints: OpenID discovery, JWKS and the client_credentials token grant."""

from __future__ import annotations

import base64
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from starlette.responses import Response

from twinbase.api.deps import services
from twinbase.api.http import JSON, base_url
from twinbase.api.routing import Body
from twinbase.errors import NotFound
from twinbase.identity.apps import verify_client
from twinbase.identity.tokens import builtin_issuer

router = APIRouter()


def _oauth_error(code: str, description: str, status: int = 400) -> Response:
    headers = {"WWW-Authenticate": "Basic"} if status == 401 else {}
    return JSON({"error": code, "error_description": description}, status_code=status, headers=headers)


@router.get("/.well-known/openid-configuration")
def discovery(request: Request) -> Response:
    svc = services(request)
    if svc.issuer is None:
        raise NotFound()
    base = base_url(request, svc.settings.public_url)
    return JSON(
        {
            "issuer": builtin_issuer(svc.settings),
            "jwks_uri": f"{base}/.well-known/jwks.json",
            "token_endpoint": f"{base}/connect/token",
            "grant_types_supported": ["client_credentials"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "scopes_supported": [svc.settings.auth_required_scope],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["token"],
            "subject_types_supported": ["public"],
        }
    )


@router.get("/.well-known/jwks.json")
def jwks(request: Request) -> Response:
    svc = services(request)
    if svc.key is None:
        raise NotFound()
    return JSON({"keys": [svc.key.jwk()]})


@router.post("/connect/token")
def token(request: Request, raw: Body) -> Response:
    svc = services(request)
    if svc.issuer is None:
        raise NotFound()
    form = {k: v[-1] for k, v in parse_qs(raw.decode("utf-8", "replace")).items()}
    client_id, secret = form.get("client_id"), form.get("client_secret")
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("basic "):
        try:
            decoded = base64.b64decode(auth[6:].strip()).decode()
            client_id, _, secret = decoded.partition(":")
        except (ValueError, UnicodeDecodeError):
            return _oauth_error("invalid_client", "Malformed Basic credentials.", 401)
    if form.get("grant_type") != "client_credentials":
        return _oauth_error("unsupported_grant_type", "Only the client_credentials grant is supported.")
    if not client_id or not secret:
        return _oauth_error("invalid_client", "Client credentials are missing.", 401)
    with svc.db.read() as session:
        app = verify_client(session, client_id, secret)
        if app is None:
            return _oauth_error("invalid_client", "Unknown client or wrong secret.", 401)
        allowed = set(app.scopes.split())
        display_name = app.display_name
    requested = set((form.get("scope") or " ".join(sorted(allowed))).split())
    if not requested <= allowed:
        return _oauth_error(
            "invalid_scope", f"Scopes not allowed for this client: {' '.join(sorted(requested - allowed))}."
        )
    lifetime = svc.settings.token_lifetime_seconds
    access_token = svc.issuer.issue(
        client_id,
        name=display_name,
        scopes=sorted(requested),
        client_id=client_id,
        expires_in=lifetime,
        extra={"twinbase_service": True},
    )
    return JSON(
        {
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": lifetime,
            "scope": " ".join(sorted(requested)),
        }
    )
