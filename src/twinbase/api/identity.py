"""The builtin issuer's endpoints: OpenID discovery, JWKS, sign-in and the token endpoint.

Grants: ``client_credentials`` for service applications, and ``authorization_code`` (with PKCE) for
people signing in through ``/connect/authorize`` with a local account (``twinbase user add``). The
sign-in page uses the element ids of the platform's own page (``identifierInput``, ``password``,
``sign-in-button``), so browser automation written for it works here too.
"""

from __future__ import annotations

import base64
import html
from urllib.parse import parse_qs, urlencode

from fastapi import APIRouter, Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from twinbase.api import schemas as s
from twinbase.api.deps import authenticate, services
from twinbase.api.http import JSON, base_url
from twinbase.api.openapi import Op, Param, api_docs, string
from twinbase.api.routing import Body
from twinbase.errors import NotFound
from twinbase.identity.apps import verify_client
from twinbase.identity.signin import SignInError, check_password, issue_code, redeem_code, sign_in_client
from twinbase.identity.tokens import builtin_issuer

router = APIRouter()


def _oauth_error(code: str, description: str, status: int = 400) -> Response:
    headers = {"WWW-Authenticate": "Basic"} if status == 401 else {}
    return JSON({"error": code, "error_description": description}, status_code=status, headers=headers)


OIDC_SCOPES = {"openid", "profile", "email", "offline_access"}


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
            "authorization_endpoint": f"{base}/connect/authorize",
            "token_endpoint": f"{base}/connect/token",
            "userinfo_endpoint": f"{base}/connect/userinfo",
            "grant_types_supported": ["client_credentials", "authorization_code"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
            "scopes_supported": [svc.settings.auth_required_scope, *sorted(OIDC_SCOPES)],
            "code_challenge_methods_supported": ["S256", "plain"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "subject_types_supported": ["public"],
            "claims_supported": ["sub", "name", "given_name", "family_name", "email"],
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
    if form.get("grant_type") == "authorization_code":
        return _token_from_code(request, form, client_id, secret)
    if form.get("grant_type") != "client_credentials":
        return _oauth_error(
            "unsupported_grant_type", "Supported grants: client_credentials and authorization_code."
        )
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


# ------------------------------------------------------------------------------------------ sign-in

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sign in</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{font-family:system-ui,sans-serif;max-width:22rem;margin:4rem auto;padding:0 1rem}}
label,input,button{{display:block;width:100%;box-sizing:border-box;margin:.4rem 0}}
input,button{{padding:.6rem;font-size:1rem}}.error{{color:#b00020}}</style></head>
<body><h1>Sign in</h1><p>to continue to {app}</p>{error}
<form method="post" action="{action}">
<label for="identifierInput">Email</label>
<input id="identifierInput" name="email" type="email" autocomplete="username" required value="{email}">
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required>
{hidden}<button id="sign-in-button" type="submit">Sign in</button>
</form></body></html>"""

_PASSED_ON = (
    "client_id",
    "redirect_uri",
    "response_type",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
)


def _login_page(
    request: Request, params: dict[str, str], app_name: str, *, error: str = "", email: str = ""
) -> Response:
    hidden = "".join(
        f'<input type="hidden" name="{name}" value="{html.escape(params[name])}">\n'
        for name in _PASSED_ON
        if params.get(name)
    )
    page = _PAGE.format(
        app=html.escape(app_name),
        error=f'<p class="error" role="alert">{html.escape(error)}</p>' if error else "",
        action=html.escape(f"{base_url(request, services(request).settings.public_url)}/connect/authorize"),
        email=html.escape(email),
        hidden=hidden,
    )
    headers = {
        "Cache-Control": "no-store",
        "X-Frame-Options": "DENY",
        "Content-Security-Policy": "frame-ancestors 'none'",
    }
    return HTMLResponse(page, status_code=401 if error else 200, headers=headers)


def _redirect(uri: str, **params: str | None) -> Response:
    query = urlencode({k: v for k, v in params.items() if v is not None})
    return RedirectResponse(f"{uri}{'&' if '?' in uri else '?'}{query}", status_code=302)


def _check_authorize(request: Request, params: dict[str, str]) -> tuple[str, Response | None]:
    """The client's display name, or an error answer (a redirect once the redirect_uri is trusted)."""
    svc = services(request)
    if svc.issuer is None:
        raise NotFound()
    try:
        with svc.db.read() as session:
            app = sign_in_client(session, params.get("client_id", ""), params.get("redirect_uri", ""))
            name, allowed = app.display_name, set(app.scopes.split()) | OIDC_SCOPES
    except SignInError as exc:
        # Never redirect to an unverified URI: answer here.
        return "", _oauth_error(exc.code, str(exc))
    redirect, state = params["redirect_uri"], params.get("state")
    if params.get("response_type") != "code":
        return name, _redirect(redirect, error="unsupported_response_type", state=state)
    requested = set(params.get("scope", "").split())
    if not requested or not requested <= allowed:
        return name, _redirect(redirect, error="invalid_scope", state=state)
    if params.get("code_challenge_method", "plain") not in ("S256", "plain"):
        return name, _redirect(redirect, error="invalid_request", state=state)
    return name, None


@router.get("/connect/authorize")
def authorize_page(request: Request) -> Response:
    params = dict(request.query_params)
    name, problem = _check_authorize(request, params)
    return problem or _login_page(request, params, name)


@router.post("/connect/authorize")
def authorize(request: Request, raw: Body) -> Response:
    params = {k: v[-1] for k, v in parse_qs(raw.decode("utf-8", "replace")).items()}
    name, problem = _check_authorize(request, params)
    if problem is not None:
        return problem
    svc = services(request)
    email, password = params.get("email", ""), params.get("password", "")
    with svc.db.write() as session:
        account = check_password(session, email, password)
        if account is None:
            return _login_page(request, params, name, error="Wrong email or password.", email=email)
        code = issue_code(
            session,
            client_id=params["client_id"],
            subject=account.subject,
            redirect_uri=params["redirect_uri"],
            scope=params.get("scope", ""),
            nonce=params.get("nonce"),
            code_challenge=params.get("code_challenge"),
            code_challenge_method=params.get("code_challenge_method", "plain")
            if params.get("code_challenge")
            else None,
        )
    return _redirect(params["redirect_uri"], code=code, state=params.get("state"))


def _token_from_code(
    request: Request, form: dict[str, str], client_id: str | None, secret: str | None
) -> Response:
    svc = services(request)
    assert svc.issuer is not None
    failure: SignInError | None = None
    with svc.db.write() as session:
        # Errors are answered after the commit: a code that was tried is gone even if the try failed.
        try:
            client = sign_in_client(session, client_id or "", form.get("redirect_uri", ""))
            if not client.is_public and (
                not secret or verify_client(session, client.client_id, secret) is None
            ):
                return _oauth_error("invalid_client", "Unknown client or wrong secret.", 401)
            grant = redeem_code(
                session,
                code=form.get("code", ""),
                client=client,
                redirect_uri=form.get("redirect_uri", ""),
                code_verifier=form.get("code_verifier"),
            )
            scope, nonce, audience = grant.scope, grant.nonce, client.client_id
            email, sub = grant.account.email, grant.account.subject
            given, family = grant.account.given_name, grant.account.surname
        except SignInError as exc:
            failure = exc
    if failure is not None:
        return _oauth_error(failure.code, str(failure))
    lifetime = svc.settings.token_lifetime_seconds
    name = " ".join(p for p in (given, family) if p) or email
    scopes = sorted(set(scope.split()))
    person: dict[str, str | None] = {
        "name": name,
        "email": email,
        "given_name": given or None,
        "family_name": family or None,
    }
    access_token = svc.issuer.issue(
        sub, scopes=scopes, client_id=audience, expires_in=lifetime, extra=_claims(person)
    )
    body: dict[str, object] = {
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": lifetime,
        "scope": " ".join(scopes),
    }
    if "openid" in scopes:
        body["id_token"] = svc.issuer.issue(
            sub,
            scopes=scopes,
            client_id=audience,
            expires_in=lifetime,
            audience=audience,
            extra=_claims({**person, "nonce": nonce}),
        )
    return JSON(body, headers={"Cache-Control": "no-store"})


def _claims(values: dict[str, str | None]) -> dict[str, str]:
    return {k: v for k, v in values.items() if v}


@router.get("/connect/userinfo")
async def userinfo(request: Request) -> Response:
    principal = await authenticate(request)
    return JSON(
        {
            "sub": principal.user_id,
            "name": principal.display_name,
            "given_name": principal.given_name,
            "family_name": principal.surname,
            "email": principal.email,
        }
    )


# The sign-in page takes exactly the parameters it passes on to its form.
_AUTHORIZE_QUERY = tuple(
    Param(name, string(2048), required=name in ("client_id", "redirect_uri", "response_type", "scope"))
    for name in _PASSED_ON
)
_OAUTH = {"public": True, "error_model": s.OAuthError}

DOCS = api_docs(
    (discovery, Op("OpenID Connect discovery", s.Discovery, public=True, errors=frozenset({404}))),
    (jwks, Op("The issuer's signing keys", s.Jwks, public=True, errors=frozenset({404}))),
    (
        token,
        Op(
            "Issue a token (client_credentials, authorization_code)",
            s.TokenAnswer,
            form=s.TokenForm,
            errors=frozenset({400, 401, 404}),
            **_OAUTH,  # type: ignore[arg-type]
        ),
    ),
    (
        authorize_page,
        Op(
            "The sign-in page",
            media="text/html",
            query=_AUTHORIZE_QUERY,
            errors=frozenset({400, 404}),
            extra_responses={302: "Back to the client with an error."},
            **_OAUTH,  # type: ignore[arg-type]
        ),
    ),
    (
        authorize,
        Op(
            "Sign in: back to the client with a code",
            status=302,
            media=None,
            form=s.SignInForm,
            errors=frozenset({400, 404}),
            extra_responses={401: "Wrong email or password: the page again."},
            **_OAUTH,  # type: ignore[arg-type]
        ),
    ),
    (userinfo, Op("Claims of the token's subject", s.UserInfo)),
)
