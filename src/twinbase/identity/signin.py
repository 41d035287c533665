"""Sign-in for people: local accounts and the OAuth 2.0 authorization-code grant (with PKCE).

- ``add_account`` creates an email/password account (``twinbase user add``); passwords are kept as
  scrypt hashes.
- ``issue_code`` runs after a successful sign-in: a random one-time code, stored as its SHA-256,
  valid ``CODE_LIFETIME`` seconds, bound to the client, the redirect URI, the scopes and the PKCE
  challenge.
- ``redeem_code`` is the token endpoint's half: it checks all of that, deletes the code (single use)
  and returns what the tokens are made of.
Functions take the caller's session and never commit.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from twinbase.identity.apps import hash_secret
from twinbase.store.models import AuthorizationCode, LocalAccount, ServiceApp, utcnow

CODE_LIFETIME = 60


class SignInError(ValueError):
    """An OAuth error: ``code`` is the RFC 6749 error code, the message its description."""

    def __init__(self, code: str, description: str) -> None:
        self.code = code
        super().__init__(description)


def add_account(session: Session, email: str, password: str, given_name: str = "", surname: str = "") -> str:
    """Create (or reset the password of) the account for ``email``; returns its subject id."""
    email = email.strip().lower()
    account = session.get(LocalAccount, email)
    password_hash = hash_secret(password, secrets.token_bytes(16))
    if account is None:
        account = LocalAccount(
            email=email,
            subject=str(uuid.uuid4()),
            password_hash=password_hash,
            given_name=given_name,
            surname=surname,
        )
        session.add(account)
    else:
        account.password_hash = password_hash
        account.given_name = given_name or account.given_name
        account.surname = surname or account.surname
    session.flush()
    return account.subject


def check_password(session: Session, email: str, password: str) -> LocalAccount | None:
    account = session.get(LocalAccount, email.strip().lower())
    if account is None:
        hash_secret(password, b"\0" * 16)  # same work either way: no timing hint that an email exists
        return None
    try:
        _, salt_b64, _digest = account.password_hash.split("$")
    except ValueError:
        return None
    expected = hash_secret(password, base64.b64decode(salt_b64))
    return account if hmac.compare_digest(expected, account.password_hash) else None


def sign_in_client(session: Session, client_id: str, redirect_uri: str) -> ServiceApp:
    """The registered client, if ``redirect_uri`` is exactly one of its own."""
    app = session.get(ServiceApp, client_id) if client_id else None
    if app is None:
        raise SignInError("invalid_client", "Unknown client_id.")
    if redirect_uri not in (app.redirect_uris or []):
        raise SignInError("invalid_request", "redirect_uri is not registered for this client.")
    return app


def issue_code(
    session: Session,
    *,
    client_id: str,
    subject: str,
    redirect_uri: str,
    scope: str,
    nonce: str | None,
    code_challenge: str | None,
    code_challenge_method: str | None,
) -> str:
    session.execute(delete(AuthorizationCode).where(AuthorizationCode.expires_at < utcnow()))
    code = secrets.token_urlsafe(32)
    session.add(
        AuthorizationCode(
            code_hash=hashlib.sha256(code.encode()).hexdigest(),
            client_id=client_id,
            subject=subject,
            redirect_uri=redirect_uri,
            scope=scope,
            nonce=nonce,
            code_challenge=code_challenge,
            code_challenge_method=code_challenge_method,
            expires_at=utcnow() + timedelta(seconds=CODE_LIFETIME),
        )
    )
    session.flush()
    return code


@dataclass(frozen=True)
class Grant:
    account: LocalAccount
    scope: str
    nonce: str | None


def redeem_code(
    session: Session, *, code: str, client: ServiceApp, redirect_uri: str, code_verifier: str | None
) -> Grant:
    row = session.get(AuthorizationCode, hashlib.sha256(code.encode()).hexdigest())
    if row is None:
        raise SignInError("invalid_grant", "The authorization code is unknown or was already used.")
    session.delete(row)  # single use, whatever happens next
    session.flush()
    if row.expires_at < utcnow():
        raise SignInError("invalid_grant", "The authorization code has expired.")
    if row.client_id != client.client_id or row.redirect_uri != redirect_uri:
        raise SignInError("invalid_grant", "The code was issued to another client or redirect_uri.")
    if row.code_challenge:
        if not code_verifier:
            raise SignInError("invalid_grant", "code_verifier is required (PKCE).")
        if row.code_challenge_method == "S256":
            digest = hashlib.sha256(code_verifier.encode()).digest()
            computed = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
        else:
            computed = code_verifier
        if not hmac.compare_digest(computed, row.code_challenge):
            raise SignInError("invalid_grant", "code_verifier does not match the code_challenge.")
    elif client.is_public:
        raise SignInError("invalid_grant", "Public clients must use PKCE.")
    account = session.scalar(select(LocalAccount).where(LocalAccount.subject == row.subject))
    if account is None:
        raise SignInError("invalid_grant", "The account no longer exists.")
    return Grant(account=account, scope=row.scope, nonce=row.nonce)


def count_accounts(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(LocalAccount)) or 0)
