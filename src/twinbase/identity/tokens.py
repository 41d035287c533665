"""Access tokens: twinbase's own issuer (RS256 key in the data dir) or a trusted external OIDC issuer.

``TokenVerifier.verify(token)`` returns a ``Principal`` or raises ``Unauthorized``. Verified tokens are
cached by their exact string until they expire, so the RSA check runs once per token, not per request.

A token's ``email`` becomes the principal's only with ``email_verified`` true: an email hands over the
memberships of a person invited by that address (``domain.itwins.ensure_user``), so an address the
issuer has not verified must not claim them. The builtin issuer marks the emails it signs verified:
every one was set by an administrator (``twinbase token --email``, ``twinbase user add`` accounts).
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from twinbase.errors import Unauthorized
from twinbase.settings import Settings


@dataclass(frozen=True)
class Principal:
    """Who is calling: a person (``sub`` of a user token) or a service application."""

    user_id: str
    display_name: str = ""
    given_name: str = ""
    surname: str = ""
    email: str | None = None
    client_id: str = ""
    scopes: frozenset[str] = field(default_factory=frozenset)
    is_service: bool = False


class SigningKeyMissing(RuntimeError):
    """The configured token-signing key file is missing or unreadable: the server must not start."""


class SigningKey:
    """The builtin issuer's RSA key, created on first start (first writer wins across workers)."""

    def __init__(self, private_pem: bytes) -> None:
        key = serialization.load_pem_private_key(private_pem, password=None)
        assert isinstance(key, rsa.RSAPrivateKey)
        self.private_key = key
        self.public_key = key.public_key()
        numbers = self.public_key.public_numbers()
        self.kid = uuid.uuid5(uuid.NAMESPACE_OID, str(numbers.n)).hex[:16]

    @classmethod
    def load(cls, path: Path) -> SigningKey:
        """The key in ``path``; ``SigningKeyMissing`` when there is none (nothing is created)."""
        try:
            return cls(path.read_bytes())
        except FileNotFoundError:
            raise SigningKeyMissing(f"There is no signing key at {path}.") from None
        except (ValueError, TypeError, AssertionError) as exc:
            raise SigningKeyMissing(f"{path} does not hold an RSA private key in PEM: {exc}") from exc

    @classmethod
    def load_or_create(cls, path: Path) -> SigningKey:
        """The key in ``path``, made there first when missing (first writer wins across workers)."""
        key_dir = path.parent
        if not path.exists():
            key_dir.mkdir(parents=True, exist_ok=True)
            pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            tmp = key_dir / f".signing-key-{os.getpid()}.tmp"
            tmp.write_bytes(pem)
            os.chmod(tmp, 0o600)
            with contextlib.suppress(FileExistsError):  # another worker created it first
                os.link(tmp, path)
            tmp.unlink(missing_ok=True)
        return cls.load(path)

    def jwk(self) -> dict[str, Any]:
        data = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.public_key))
        data.update({"kid": self.kid, "use": "sig", "alg": "RS256"})
        return dict(data)


def builtin_issuer(settings: Settings) -> str:
    return settings.auth_issuer or settings.public_url or "twinbase"


class TokenIssuer:
    def __init__(self, settings: Settings, key: SigningKey) -> None:
        self.settings = settings
        self.key = key

    def issue(
        self,
        subject: str,
        *,
        name: str | None = None,
        email: str | None = None,
        given_name: str | None = None,
        family_name: str | None = None,
        scopes: list[str] | None = None,
        expires_in: int | None = None,
        client_id: str = "twinbase-cli",
        audience: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": builtin_issuer(self.settings),
            "sub": subject,
            "aud": audience or self.settings.auth_audience,
            "iat": now,
            "nbf": now - 5,
            "exp": now + (self.settings.token_lifetime_seconds if expires_in is None else expires_in),
            "scope": " ".join(scopes or [self.settings.auth_required_scope]),
            "client_id": client_id,
            "jti": uuid.uuid4().hex,
        }
        for claim, value in (
            ("name", name),
            ("email", email),
            ("given_name", given_name),
            ("family_name", family_name),
        ):
            if value:
                claims[claim] = value
        if extra:
            claims.update(extra)
        if claims.get("email"):
            claims.setdefault("email_verified", True)  # administrator-set (module docstring)
        return jwt.encode(claims, self.key.private_key, algorithm="RS256", headers={"kid": self.key.kid})


class TokenVerifier:
    CACHE_SIZE = 8192

    def __init__(self, settings: Settings, key: SigningKey | None) -> None:
        self.settings = settings
        self.key = key
        self._jwks: jwt.PyJWKClient | None = None
        if settings.auth_mode == "oidc":
            if not settings.auth_jwks_url or not settings.auth_issuer:
                raise ValueError("auth_mode=oidc needs TWINBASE_AUTH_ISSUER and TWINBASE_AUTH_JWKS_URL")
            self._jwks = jwt.PyJWKClient(settings.auth_jwks_url, cache_keys=True)
        self._cache: OrderedDict[str, tuple[float, Principal]] = OrderedDict()
        self._lock = threading.Lock()

    def verify(self, token: str) -> Principal:
        now = time.time()
        with self._lock:
            hit = self._cache.get(token)
            if hit is not None:
                if hit[0] > now:
                    self._cache.move_to_end(token)
                    return hit[1]
                del self._cache[token]
        claims = self._decode(token)
        principal = self._principal(claims)
        with self._lock:
            self._cache[token] = (float(claims["exp"]), principal)
            if len(self._cache) > self.CACHE_SIZE:
                self._cache.popitem(last=False)
        return principal

    def _decode(self, token: str) -> dict[str, Any]:
        options: Any = {"require": ["exp", "sub"]}
        try:
            if self._jwks is not None:
                signing_key = self._jwks.get_signing_key_from_jwt(token).key
                issuer: str | None = self.settings.auth_issuer
            else:
                assert self.key is not None
                signing_key = self.key.public_key
                self._check_kid(token)
                # Only our own key signs builtin tokens; the issuer is checked when one is configured.
                issuer = self.settings.auth_issuer or None
            claims: dict[str, Any] = jwt.decode(
                token,
                signing_key,
                algorithms=["RS256", "RS384", "RS512", "ES256", "ES384", "PS256"],
                audience=self.settings.auth_audience,
                issuer=issuer,
                options=options,
                leeway=30,
            )
        except (jwt.PyJWTError, ValueError) as exc:
            raise Unauthorized() from exc
        scopes = _scopes(claims)
        if self.settings.auth_required_scope and self.settings.auth_required_scope not in scopes:
            scope = self.settings.auth_required_scope
            raise Unauthorized(f"Access denied: the access token does not carry the '{scope}' scope.")
        return claims

    def _check_kid(self, token: str) -> None:
        """A builtin token signed by another key (another data folder's, or another host's that does not
        share this one's keys) says so, rather than the bare 401 a bad signature gets."""
        assert self.key is not None
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.PyJWTError:
            return  # not a JWT at all: the plain 401
        if isinstance(kid, str) and kid != self.key.kid:
            raise Unauthorized(
                f"Access denied: the access token was signed by a key this server does not know (kid {kid}; "
                f"this server signs with kid {self.key.kid}). A token from `twinbase token` must be made "
                "with the server's data folder (or keys folder); hosts serving one deployment must share "
                "their keys (TWINBASE_KEYS_DIR or TWINBASE_SIGNING_KEY_FILE)."
            )

    @staticmethod
    def _principal(claims: dict[str, Any]) -> Principal:
        sub = str(claims["sub"])
        client_id = str(claims.get("client_id") or claims.get("azp") or "")
        is_service = bool(claims.get("twinbase_service")) or sub == client_id
        given = str(claims.get("given_name") or "")
        family = str(claims.get("family_name") or "")
        name = str(claims.get("name") or " ".join(p for p in (given, family) if p) or sub)
        email = claims.get("email") if _is_true(claims.get("email_verified")) else None
        return Principal(
            user_id=sub,
            display_name=name,
            given_name=given,
            surname=family,
            email=str(email).lower() if email else None,
            client_id=client_id,
            scopes=frozenset(_scopes(claims)),
            is_service=is_service,
        )


def _is_true(claim: Any) -> bool:
    """``email_verified`` is a JSON boolean; some issuers send the string ``"true"``."""
    return claim is True or (isinstance(claim, str) and claim.lower() == "true")


def _scopes(claims: dict[str, Any]) -> set[str]:
    raw = claims.get("scope", claims.get("scp", ""))
    if isinstance(raw, list):
        return {str(s) for s in raw}
    return set(str(raw).split())
