"""API keys: random, shown once, stored as their SHA-256 in the ``api_keys`` table.

A key is ``ffk_`` + 32 random bytes (URL-safe base64): high entropy, so one unsalted
SHA-256 is enough to make a stolen table useless. :func:`create_api_key` is what
``foldflow keys create`` and ``foldflow up`` call; ``foldflow keys list|revoke`` call
:func:`list_api_keys` and :func:`revoke_api_key`. The gateway looks keys up by hash
(:func:`find_key`, which also notes when a key was last used); a revoked key is found no
more. The table comes from the Alembic revisions (``foldflow db upgrade``).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Engine,
    Identity,
    MetaData,
    String,
    Table,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY

__all__ = [
    "KEY_PREFIX",
    "MAX_TENANT_LENGTH",
    "SCOPES",
    "ApiKeyInfo",
    "StoredKey",
    "api_keys",
    "create_api_key",
    "find_key",
    "generate_key",
    "hash_key",
    "issue_api_key",
    "list_api_keys",
    "revoke_api_key",
    "valid_tenant",
]

KEY_PREFIX = "ffk_"
#: A tenant is a non-empty printable string of at most this many characters.
MAX_TENANT_LENGTH = 200
#: Every scope a key or token may carry (reading definitions needs ``workflows:read``).
#: ``dlq:read``/``dlq:replay`` open the console's view of ``wf.dlq``, whose records belong
#: to no tenant: give them to operators' keys only.
SCOPES = ("workflows:read", "workflows:write", "definitions:write", "dlq:read", "dlq:replay")

metadata = MetaData()

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("tenant", String(200), nullable=False),
    Column("scopes", ARRAY(String(64)), nullable=False),
    Column("name", String(200), nullable=False),
    Column("hash", String(64), nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("last_used_at", DateTime(timezone=True), nullable=True),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
)


@dataclass(frozen=True)
class StoredKey:
    """What the gateway knows about a key: never the key itself."""

    tenant: str
    scopes: frozenset[str]
    name: str


@dataclass(frozen=True)
class ApiKeyInfo:
    """A stored key as ``foldflow keys list`` shows it: everything but the key (or hash)."""

    id: int
    name: str
    tenant: str
    scopes: tuple[str, ...]
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None

    @property
    def revoked(self) -> bool:
        """Whether the key was revoked (the gateway refuses it)."""
        return self.revoked_at is not None


_INFO_COLUMNS = (
    api_keys.c.id, api_keys.c.name, api_keys.c.tenant, api_keys.c.scopes,
    api_keys.c.created_at, api_keys.c.last_used_at, api_keys.c.revoked_at,
)  # fmt: skip


def _info(row: Any) -> ApiKeyInfo:  # a Row of _INFO_COLUMNS
    return ApiKeyInfo(
        id=row.id, name=row.name, tenant=row.tenant, scopes=tuple(row.scopes),
        created_at=row.created_at, last_used_at=row.last_used_at, revoked_at=row.revoked_at,
    )  # fmt: skip


def valid_tenant(tenant: object) -> bool:
    """Whether ``tenant`` can name a tenant: 1 to 200 printable characters."""
    return (
        isinstance(tenant, str) and 0 < len(tenant) <= MAX_TENANT_LENGTH and tenant.isprintable()
    )


def generate_key() -> str:
    """A new random API key."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    """The hex SHA-256 a key is stored and looked up by."""
    return hashlib.sha256(key.encode()).hexdigest()


def _check_scopes(scopes: Iterable[str]) -> list[str]:
    wanted = list(dict.fromkeys(scopes))
    unknown = [s for s in wanted if s not in SCOPES]
    if unknown or not wanted:
        raise ValueError(f"scopes must be some of {', '.join(SCOPES)}; got {wanted!r}")
    return wanted


def issue_api_key(
    engine: Engine, tenant: str, scopes: Iterable[str], name: str
) -> tuple[int, str]:
    """Store a new key for ``tenant`` with ``scopes``; return its id and the key itself.

    The key is never shown again: only its SHA-256 is stored.
    """
    if not valid_tenant(tenant):
        raise ValueError(f"a key needs a tenant of 1 to {MAX_TENANT_LENGTH} printable characters")
    checked = _check_scopes(scopes)
    key = generate_key()
    with engine.begin() as conn:
        key_id: int = conn.execute(
            insert(api_keys)
            .values(tenant=tenant, scopes=checked, name=name, hash=hash_key(key))
            .returning(api_keys.c.id)
        ).scalar_one()
    return key_id, key


def create_api_key(engine: Engine, tenant: str, scopes: Iterable[str], name: str) -> str:
    """Store a new key for ``tenant`` with ``scopes`` and return it (the only time it is seen)."""
    return issue_api_key(engine, tenant, scopes, name)[1]


def find_key(engine: Engine, key_hash: str) -> StoredKey | None:
    """The unrevoked key with this hash (noting that it was used now), or None."""
    query = (
        update(api_keys)
        .where(api_keys.c.hash == key_hash, api_keys.c.revoked_at.is_(None))
        .values(last_used_at=func.now())
        .returning(api_keys.c.tenant, api_keys.c.scopes, api_keys.c.name)
    )
    with engine.begin() as conn:
        row = conn.execute(query).first()
    if row is None:
        return None
    return StoredKey(tenant=row.tenant, scopes=frozenset(row.scopes), name=row.name)


def list_api_keys(engine: Engine, *, tenant: str | None = None) -> list[ApiKeyInfo]:
    """Every stored key (of ``tenant``, if given), oldest first; revoked ones too."""
    query = select(*_INFO_COLUMNS).order_by(api_keys.c.id)
    if tenant is not None:
        query = query.where(api_keys.c.tenant == tenant)
    with engine.connect() as conn:
        return [_info(row) for row in conn.execute(query)]


def revoke_api_key(engine: Engine, key_id: int) -> ApiKeyInfo | None:
    """Revoke key ``key_id`` (again: a no-op); its info after, or None if there is none.

    A gateway refuses it once its cache of looked-up keys forgets it
    (``gateway_key_cache_s``, 5 s by default).
    """
    with engine.begin() as conn:
        conn.execute(
            update(api_keys)
            .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
            .values(revoked_at=func.now())
        )
        row = conn.execute(select(*_INFO_COLUMNS).where(api_keys.c.id == key_id)).first()
    return None if row is None else _info(row)
