"""API keys: random, shown once, stored as their SHA-256 in the ``api_keys`` table.

A key is ``ffk_`` + 32 random bytes (URL-safe base64): high entropy, so one unsalted
SHA-256 is enough to make a stolen table useless. :func:`create_api_key` is what
``foldflow keys create`` and ``foldflow up`` call; the gateway looks keys up by hash.
The table is created by the Alembic revision ``gateway_api_keys`` (``foldflow db upgrade``).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

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
)
from sqlalchemy.dialects.postgresql import ARRAY

__all__ = [
    "KEY_PREFIX",
    "SCOPES",
    "StoredKey",
    "api_keys",
    "create_api_key",
    "find_key",
    "generate_key",
    "hash_key",
]

KEY_PREFIX = "ffk_"
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
)


@dataclass(frozen=True)
class StoredKey:
    """What the gateway knows about a key: never the key itself."""

    tenant: str
    scopes: frozenset[str]
    name: str


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


def create_api_key(engine: Engine, tenant: str, scopes: Iterable[str], name: str) -> str:
    """Store a new key for ``tenant`` with ``scopes`` and return it (the only time it is seen)."""
    if not tenant:
        raise ValueError("a key needs a tenant")
    checked = _check_scopes(scopes)
    key = generate_key()
    with engine.begin() as conn:
        conn.execute(
            insert(api_keys).values(tenant=tenant, scopes=checked, name=name, hash=hash_key(key))
        )
    return key


def find_key(engine: Engine, key_hash: str) -> StoredKey | None:
    """The stored key with this hash, or None."""
    query = select(api_keys.c.tenant, api_keys.c.scopes, api_keys.c.name).where(
        api_keys.c.hash == key_hash
    )
    with engine.connect() as conn:
        row = conn.execute(query).first()
    if row is None:
        return None
    return StoredKey(tenant=row.tenant, scopes=frozenset(row.scopes), name=row.name)
