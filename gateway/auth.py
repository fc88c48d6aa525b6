"""Who is calling: API keys (settings or the ``api_keys`` table) and JWT bearer tokens.

A credential arrives as ``Authorization: Bearer <credential>`` or ``X-API-Key: <key>``.
A bearer credential with two dots is a JWT (verified with pyjwt against the configured
secret or public key, algorithms, audience and issuer; it must carry ``exp``, a
``tenant`` claim and scopes in ``scope`` (space separated) or ``scopes``); anything else
is an API key, looked up by its SHA-256 (a key found in the table is remembered for 30 s).
Either way the result is a :class:`Principal`: a tenant and a set of scopes. No
credential, or a bad one, is a 401; a missing scope a 403.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import jwt
from sqlalchemy import Engine

from foldflow.settings import Settings
from gateway.db import call_db
from gateway.errors import ProblemError
from gateway.keys import StoredKey, find_key, hash_key

__all__ = ["Authenticator", "Principal", "forbidden", "unauthorized"]

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="foldflow"'}
#: An HMAC key shorter than the hash output (HS256: 32 bytes) is refused at startup.
MIN_SECRET_BYTES = 32
#: Keys found in the table are remembered this long (keys are never changed in place).
_CACHE_TTL_S = 30.0
_CACHE_SIZE = 4096


def unauthorized(detail: str) -> ProblemError:
    """A 401 problem with the Bearer challenge."""
    return ProblemError(401, detail, kind="unauthenticated", headers=_CHALLENGE)


def forbidden(detail: str) -> ProblemError:
    """A 403 problem."""
    return ProblemError(403, detail, kind="forbidden")


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: the tenant it acts for and what it may do."""

    tenant: str
    scopes: frozenset[str]
    subject: str

    def require(self, scope: str) -> None:
        """Raise a 403 problem unless the caller holds ``scope``."""
        if scope not in self.scopes:
            raise forbidden(f"this operation needs the scope {scope!r}")


def _scopes_of(claims: dict[str, Any]) -> frozenset[str]:
    raw = claims.get("scopes", claims.get("scope", ()))
    if isinstance(raw, str):
        return frozenset(raw.split())
    if isinstance(raw, list) and all(isinstance(s, str) for s in raw):
        return frozenset(raw)
    raise unauthorized("invalid token: 'scope'/'scopes' must be a string or a list of strings")


class Authenticator:
    """Turns a presented credential into a :class:`Principal` (or a 401 problem)."""

    def __init__(self, settings: Settings, *, engine: Engine | None) -> None:
        self._engine = engine
        self._db_timeout_s = settings.gateway_db_timeout_s
        self._static: dict[str, StoredKey] = {}
        self._stored: dict[str, tuple[float, StoredKey]] = {}  # table keys found lately
        for configured in settings.api_keys:
            digest = configured.sha256 or hash_key(
                configured.key.get_secret_value() if configured.key else ""
            )
            self._static[digest] = StoredKey(
                tenant=configured.tenant, scopes=frozenset(configured.scopes), name=configured.name
            )
        secret = settings.jwt_secret
        if secret is not None and len(secret.get_secret_value().encode()) < MIN_SECRET_BYTES:
            raise ValueError(
                f"jwt_secret must be at least {MIN_SECRET_BYTES} bytes (RFC 7518 §3.2)"
            )
        self._jwt_key = secret.get_secret_value() if secret else settings.jwt_public_key
        self._algorithms = list(settings.jwt_algorithms)
        self._audience = settings.jwt_audience
        self._issuer = settings.jwt_issuer

    async def authenticate(self, credential: str | None) -> Principal:
        """The caller behind ``credential``; raises a 401 problem when there is none."""
        if not credential:
            raise unauthorized(
                "send an API key (Authorization: Bearer KEY or X-API-Key: KEY) or a JWT"
            )
        if credential.count(".") == 2:
            return self._from_jwt(credential)
        return await self._from_key(credential)

    async def _from_key(self, key: str) -> Principal:
        digest = hash_key(key)
        stored = self._static.get(digest) or self._cached(digest)
        if stored is None and self._engine is not None:
            stored = await call_db(self._db_timeout_s, find_key, self._engine, digest)
            if stored is not None:
                self._remember(digest, stored)
        if stored is None:
            raise unauthorized("unknown API key")
        return Principal(tenant=stored.tenant, scopes=stored.scopes, subject=f"key:{stored.name}")

    def _cached(self, digest: str) -> StoredKey | None:
        hit = self._stored.get(digest)
        if hit is None or hit[0] < time.monotonic():
            return None
        return hit[1]

    def _remember(self, digest: str, stored: StoredKey) -> None:
        if len(self._stored) >= _CACHE_SIZE:
            self._stored.clear()
        self._stored[digest] = (time.monotonic() + _CACHE_TTL_S, stored)

    def _from_jwt(self, token: str) -> Principal:
        if self._jwt_key is None:
            raise unauthorized("JWT bearer tokens are not accepted here (no JWT key configured)")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._jwt_key,
                algorithms=self._algorithms,
                audience=self._audience,
                issuer=self._issuer,
                options={"require": ["exp"], "verify_aud": self._audience is not None},
            )
        except jwt.PyJWTError as exc:
            raise unauthorized(f"invalid token: {exc}") from exc
        tenant = claims.get("tenant")
        if not isinstance(tenant, str) or not tenant:
            raise unauthorized("invalid token: no 'tenant' claim")
        subject = claims.get("sub")
        return Principal(
            tenant=tenant,
            scopes=_scopes_of(claims),
            subject=f"jwt:{subject}" if isinstance(subject, str) else "jwt",
        )


def credential_of(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The credential a raw ASGI header list presents (X-API-Key wins over Authorization)."""
    bearer: str | None = None
    for name, value in headers:
        if name == b"x-api-key" and value:
            return value.decode("latin-1")
        if name == b"authorization":
            scheme, _, rest = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and rest.strip():
                bearer = rest.strip()
    return bearer
