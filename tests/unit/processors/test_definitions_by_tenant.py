"""The definitions cache's fold of ``wf.definitions`` records: one namespace per tenant."""

from __future__ import annotations

import uuid

import pytest

from foldflow.definitions import Definition
from foldflow.processors.runtime.definitions_cache import DefinitionsCache
from foldflow.schemas.codec import encode
from foldflow.schemas.messages import (
    DEFAULT_TENANT,
    DefinitionRegistered,
    Envelope,
    definition_key,
    parse_definition_key,
)
from foldflow.settings import Settings


def _definition(name: str, version: int, task: str) -> Definition:
    return Definition.from_data(
        {"name": name, "version": version, "steps": [{"id": "s", "task": task}]}
    )


def _record(
    tenant: str, definition: Definition, *, key: str | None = None, envelope_version: int = 2
) -> tuple[bytes, bytes]:
    key = key or definition_key(tenant, definition.name, definition.version)
    payload = DefinitionRegistered(
        definition.name, definition.version, tenant, definition.canonical_json()
    )
    envelope = Envelope(
        event_id=str(uuid.uuid4()), timestamp=1, source="test", correlation_id="c",
        workflow_id=key, payload=payload, tenant=tenant or None,
    )  # fmt: skip
    return key.encode(), encode(envelope, version=envelope_version)


@pytest.fixture
def cache() -> DefinitionsCache:
    return DefinitionsCache(Settings())


def test_each_tenant_resolves_its_own_name_and_version(cache: DefinitionsCache) -> None:
    cache.apply(*_record("acme", _definition("order", 1, "acme.charge")))
    cache.apply(*_record("globex", _definition("order", 1, "globex.charge")))
    acme = cache.get("acme", "order", 1)
    globex = cache.get("globex", "order", 1)
    assert acme is not None and acme.steps[0].task == "acme.charge"
    assert globex is not None and globex.steps[0].task == "globex.charge"
    assert cache.get("initech", "order", 1) is None
    assert cache.get(DEFAULT_TENANT, "order", None) is None


def test_latest_is_per_tenant(cache: DefinitionsCache) -> None:
    cache.apply(*_record("acme", _definition("order", 1, "a.v1")))
    cache.apply(*_record("acme", _definition("order", 2, "a.v2")))
    cache.apply(*_record("globex", _definition("order", 1, "g.v1")))
    cache.apply(*_record("globex", _definition("order", 5, "g.v5")))
    acme = cache.get("acme", "order", None)
    globex = cache.get("globex", "order", None)
    assert acme is not None and acme.version == 2
    assert globex is not None and globex.version == 5


def test_old_name_version_records_load_as_the_default_tenant(cache: DefinitionsCache) -> None:
    old = _definition("billing", 3, "builtin.echo")
    cache.apply(*_record("", old, key="billing:3", envelope_version=1))  # no tenant anywhere
    found = cache.get(DEFAULT_TENANT, "billing", None)
    assert found is not None and found.version == 3
    assert cache.get("acme", "billing", 3) is None


def test_a_tombstone_withdraws_only_that_tenants_version(cache: DefinitionsCache) -> None:
    cache.apply(*_record("acme", _definition("order", 1, "a")))
    cache.apply(*_record(DEFAULT_TENANT, _definition("order", 1, "d")))
    cache.apply(definition_key("acme", "order", 1).encode(), None)
    assert cache.get("acme", "order", 1) is None
    assert cache.get(DEFAULT_TENANT, "order", 1) is not None
    cache.apply(b"order:1", None)
    assert cache.get(DEFAULT_TENANT, "order", 1) is None


@pytest.mark.parametrize("tenant", [DEFAULT_TENANT, "acme", "a/b", "x:1", "team one"])
def test_definition_keys_round_trip(tenant: str) -> None:
    key = definition_key(tenant, "order-fulfilment.v2", 7)
    assert parse_definition_key(key) == (tenant, "order-fulfilment.v2", 7)


def test_the_default_tenant_keeps_the_old_key() -> None:
    assert definition_key(DEFAULT_TENANT, "order", 1) == "order:1"
    assert definition_key("acme", "order", 1) == "acme/order:1"
    assert parse_definition_key("order") is None
    assert parse_definition_key("/order:1") is None
