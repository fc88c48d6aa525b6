"""Who is calling: API keys (settings or the ``api_keys`` table) and JWT bearer tokens.

A credential arrives as ``Authorization: Bearer <credential>`` or ``X-API-Key: <key>``.
A bearer credential with two dots is a JWT, verified with pyjwt against the configured
secret or public key, algorithms, issuer and (always) audience: it must carry ``aud``,
``exp`` and ``iat`` with ``exp - iat`` at most ``jwt_max_lifetime_s``, a ``tenant``
claim and scopes in ``scope`` (space separated) or ``scopes``. Anything else is an API
key, looked up by its SHA-256; what a lookup found, or did not, is remembered for
``gateway_key_cache_s`` (so a revoked key works at most that long), and concurrent
requests with a key not cached share one lookup. Either way the result
is a :class:`Principal`: a tenant and a set of scopes. No credential, or a bad one, is a
401 naming what is wrong; a missing scope a 403.

Failed authentications are counted per client address and overall
(:class:`FailureBudget`). Once a budget is spent, a credential that fails, or that only
the database could vouch for, is answered 429 without a lookup: a flood of made-up keys
costs the database nothing. Keys already known and valid JWTs still pass.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import jwt
import limits
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from sqlalchemy import Engine

from foldflow.gateway.db import call_db
from foldflow.gateway.errors import ProblemError
from foldflow.gateway.keys import MAX_TENANT_LENGTH, StoredKey, find_key, hash_key, valid_tenant
from foldflow.settings import Settings

__all__ = [
    "Authenticator",
    "FailureBudget",
    "Principal",
    "credential_of",
    "forbidden",
    "unauthorized",
]

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="foldflow"'}
#: An HMAC key shorter than the hash output (HS256: 32 bytes) is refused at startup.
MIN_SECRET_BYTES = 32
#: At most this many key lookups (found or not) are remembered.
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


def _token_problem(exc: jwt.PyJWTError, *, audience: str) -> ProblemError:
    """A 401 that says what is wrong with a token."""
    reasons: list[tuple[type[jwt.PyJWTError], str]] = [
        (jwt.ExpiredSignatureError, "the token has expired"),
        (jwt.ImmatureSignatureError, "the token is not valid yet (iat or nbf in the future)"),
        (jwt.InvalidAudienceError, f"the token's audience ('aud') is not {audience!r}"),
        (jwt.InvalidIssuerError, "the token's issuer ('iss') is not the configured one"),
        (jwt.InvalidAlgorithmError, "the token's algorithm is not accepted"),
        (jwt.InvalidSignatureError, "the token's signature does not verify"),
    ]
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return unauthorized(f"invalid token: it has no {exc.claim!r} claim")
    for kind, reason in reasons:
        if isinstance(exc, kind):
            return unauthorized(f"invalid token: {reason}")
    return unauthorized(f"invalid token: {exc}")


class FailureBudget:
    """Failed authentications allowed per client address and overall (moving windows).

    Lookups still in flight count as failures-to-be, so a burst of concurrent requests
    cannot all pass the check before the first of them failed. The overall budget holds
    back only clients that failed lately themselves: a flood from many addresses costs
    each of them one lookup, and clients that never failed are not locked out by it.
    """

    _ALL = ("auth-failed", "all")

    def __init__(self, *, per_client: str, overall: str) -> None:
        self._per_client = limits.parse_many(per_client)
        self._overall = limits.parse_many(overall)
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        self._in_flight: Counter[tuple[str, ...]] = Counter()

    @staticmethod
    def _mine(client: str) -> tuple[str, ...]:
        return ("auth-failed", "client", client)

    def _spent(self, items: list[limits.RateLimitItem], ids: tuple[str, ...]) -> int | None:
        for item in items:
            if not self._limiter.test(item, *ids, cost=self._in_flight[ids] + 1):
                reset = self._limiter.get_window_stats(item, *ids).reset_time
                return max(1, math.ceil(reset - time.time()))
        return None

    def _failed_lately(self, client: str) -> bool:
        mine = self._mine(client)
        return self._in_flight[mine] > 0 or any(
            self._limiter.get_window_stats(item, *mine).remaining < item.amount
            for item in self._per_client
        )

    def retry_after(self, client: str) -> int | None:
        """Seconds until ``client`` may fail again (None: it may fail once more now)."""
        spent = self._spent(self._per_client, self._mine(client))
        if spent is None and self._failed_lately(client):
            spent = self._spent(self._overall, self._ALL)
        return spent

    @contextmanager
    def in_flight(self, client: str) -> Iterator[None]:
        """Count an attempt that may still fail (a lookup) against the budgets."""
        ids = (self._mine(client), self._ALL)
        self._in_flight.update(ids)
        try:
            yield
        finally:
            self._in_flight.subtract(ids)
            for key in ids:
                if self._in_flight[key] <= 0:
                    del self._in_flight[key]

    def failed(self, client: str) -> None:
        """Count one failed authentication of ``client``."""
        for item in self._per_client:
            self._limiter.hit(item, *self._mine(client))
        for item in self._overall:
            self._limiter.hit(item, *self._ALL)


class Authenticator:
    """Turns a presented credential into a :class:`Principal` (or a 401/429 problem)."""

    def __init__(self, settings: Settings, *, engine: Engine | None) -> None:
        self._engine = engine
        self._db_timeout_s = settings.gateway_db_timeout_s
        self._cache_s = settings.gateway_key_cache_s
        self._static: dict[str, StoredKey] = {}
        self._looked_up: dict[str, tuple[float, StoredKey | None]] = {}  # digest -> (until, key)
        self._pending: dict[str, asyncio.Future[StoredKey | None]] = {}  # lookups under way
        self._failures = FailureBudget(
            per_client=settings.gateway_auth_failure_limit,
            overall=settings.gateway_auth_failure_global_limit,
        )
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
        if self._jwt_key is not None and not settings.jwt_audience:
            raise ValueError(
                "jwt_audience is required when JWTs are accepted (jwt_secret or "
                "jwt_public_key is set): tokens minted for another service must not pass"
            )
        self._algorithms = list(settings.jwt_algorithms)
        self._audience = settings.jwt_audience or ""
        self._issuer = settings.jwt_issuer
        self._max_lifetime_s = settings.jwt_max_lifetime_s
        self._leeway_s = settings.jwt_leeway_s

    async def authenticate(self, credential: str | None, *, client: str = "unknown") -> Principal:
        """The caller behind ``credential``, presented from address ``client``.

        Raises a 401 problem when there is no valid credential, a 429 once ``client`` (or
        everyone) failed too often lately.
        """
        if not credential:
            raise unauthorized(
                "send an API key (Authorization: Bearer KEY or X-API-Key: KEY) or a JWT"
            )
        try:
            if credential.count(".") == 2:
                return self._from_jwt(credential)
            return await self._from_key(credential, client)
        except ProblemError as exc:
            if exc.status == 401:
                self._spent(client)  # a failure once the budget is gone is a 429
                self._failures.failed(client)
            raise

    def _spent(self, client: str) -> None:
        """Raise a 429 problem if ``client`` (or everyone) has no failures left."""
        retry_after = self._failures.retry_after(client)
        if retry_after is not None:
            raise ProblemError(
                429,
                f"too many failed authentications; retry in {retry_after}s",
                kind="rate-limited",
                headers={"Retry-After": str(retry_after)},
            )

    async def _from_key(self, key: str, client: str) -> Principal:
        digest = hash_key(key)
        stored = self._static.get(digest)
        if stored is None:
            until, stored = self._looked_up.get(digest, (0.0, None))
            if until < time.monotonic():  # never looked up, or forgotten: ask the table
                stored = await self._look_up_once(digest, client)
        if stored is None:
            raise unauthorized("unknown or revoked API key")
        return Principal(tenant=stored.tenant, scopes=stored.scopes, subject=f"key:{stored.name}")

    async def _look_up_once(self, digest: str, client: str) -> StoredKey | None:
        """The table's answer for ``digest``; concurrent requests with one key share a lookup.

        Without sharing, a burst of requests with a key not cached yet (or just forgotten)
        would each run a lookup and count as failures-to-be: a valid key sent by 64
        clients at once would spend the failure budget and get 429s. Sharing is only done
        with a cache (``gateway_key_cache_s`` > 0): without one, each request must see
        the table as it is when the request arrives (a revocation counts at once).
        """
        shared = self._pending.get(digest) if self._cache_s > 0 else None
        if shared is not None:
            return await asyncio.shield(shared)
        self._spent(client)  # a client out of failures gets no lookup
        with self._failures.in_flight(client):
            if self._cache_s <= 0:
                return await self._lookup(digest)
            lookup = asyncio.ensure_future(self._lookup(digest))
            self._pending[digest] = lookup
            lookup.add_done_callback(lambda _done: self._pending.pop(digest, None))
            return await asyncio.shield(lookup)  # a caller that goes away leaves it running

    async def _lookup(self, digest: str) -> StoredKey | None:
        if self._engine is None:
            return None
        stored = await call_db(self._db_timeout_s, find_key, self._engine, digest)
        if self._cache_s > 0:
            if len(self._looked_up) >= _CACHE_SIZE:
                self._looked_up.clear()
            self._looked_up[digest] = (time.monotonic() + self._cache_s, stored)
        return stored

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
                leeway=self._leeway_s,
                options={"require": ["exp", "iat", "aud"], "verify_aud": True},
            )
        except jwt.PyJWTError as exc:
            raise _token_problem(exc, audience=self._audience) from exc
        lifetime = float(claims["exp"]) - float(claims["iat"])
        if lifetime > self._max_lifetime_s:
            raise unauthorized(
                f"invalid token: it lives {lifetime:.0f}s (exp - iat); "
                f"at most {self._max_lifetime_s}s are accepted"
            )
        tenant = claims.get("tenant")
        if not valid_tenant(tenant):
            raise unauthorized(
                "invalid token: the 'tenant' claim must be a string of 1 to "
                f"{MAX_TENANT_LENGTH} printable characters"
            )
        assert isinstance(tenant, str)
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
