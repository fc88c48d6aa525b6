"""The orchestrator's definitions cache against the real broker (in-process)."""

from __future__ import annotations

import time
import uuid

import pytest
from confluent_kafka import Producer
from orchestrator_harness import Deployment, private_settings

from foldflow.definitions import Definition
from foldflow.processors.runtime.definitions_cache import DefinitionsCache
from foldflow.producers import producer_config
from foldflow.schemas.codec import encode
from foldflow.schemas.messages import DefinitionRegistered, definition_key
from foldflow.settings import Settings
from foldflow.topics import Topology


def _definition(name: str, version: int, task: str = "builtin.echo") -> Definition:
    return Definition.from_data(
        {"name": name, "version": version, "steps": [{"id": "s", "task": task}]}
    )


@pytest.fixture
def cache_settings(stack: Settings) -> Settings:
    return private_settings(stack, partitions=1)


def test_a_miss_catches_up_with_the_topic_before_answering(cache_settings: Settings) -> None:
    deployment = Deployment(cache_settings)
    deployment.register(_definition("billing", 1))
    deployment.register(_definition("billing", 2, task="builtin.sleep"))
    deployment.close()
    cache = DefinitionsCache(cache_settings, catch_up_timeout=30.0)
    cache.start()
    try:
        assert cache.get("default", "billing", None) is None  # nothing fetched yet: the race
        latest = cache.resolve("default", "billing", None)  # waits until the end offsets
        assert latest is not None and latest.version == 2
        first = cache.resolve("default", "billing", 1)
        assert first is not None and first.steps[0].task == "builtin.echo"
        assert cache.resolve("default", "nowhere", None) is None
        assert cache.resolve("default", "billing", 3) is None
        assert cache.catch_up(timeout=30.0)  # a miss is answered after catching up
    finally:
        cache.close()


def test_definitions_registered_later_are_picked_up(cache_settings: Settings) -> None:
    cache = DefinitionsCache(cache_settings, catch_up_timeout=30.0)
    cache.start()
    deployment = Deployment(cache_settings)
    try:
        assert cache.resolve("default", "late", None) is None
        deployment.register(_definition("late", 1))  # acked before the next resolve
        found = cache.resolve("default", "late", 1)
        assert found is not None and found.name == "late"
    finally:
        deployment.close()
        cache.close()


def test_tenants_resolve_their_own_definitions(cache_settings: Settings) -> None:
    deployment = Deployment(cache_settings)
    deployment.register(_definition("shared", 1), tenant="acme")
    deployment.register(_definition("shared", 1, task="builtin.sleep"), tenant="globex")
    deployment.register(_definition("shared", 2, task="builtin.fail"), tenant="globex")
    deployment.close()
    cache = DefinitionsCache(cache_settings, catch_up_timeout=30.0)
    cache.start()
    try:
        acme = cache.resolve("acme", "shared", None)
        assert acme is not None and (acme.version, acme.steps[0].task) == (1, "builtin.echo")
        globex = cache.resolve("globex", "shared", 1)
        assert globex is not None and globex.steps[0].task == "builtin.sleep"
        latest = cache.resolve("globex", "shared", None)
        assert latest is not None and latest.version == 2
        assert cache.resolve("acme", "shared", 2) is None
        assert cache.resolve("default", "shared", None) is None
    finally:
        cache.close()


def test_catching_up_past_transaction_markers(cache_settings: Settings) -> None:
    """A transactional writer leaves a commit marker after its records: the topic's end
    offset is past the last record, and the catch-up must still see it is at the end."""
    deployment = Deployment(cache_settings)
    key = definition_key("default", "marked", 1)
    envelope = deployment._envelope(key, DefinitionRegistered(
        "marked", 1, "default", _definition("marked", 1).canonical_json()))  # fmt: skip
    deployment.close()
    producer = Producer({**producer_config(cache_settings, source="test"),
                         "transactional.id": f"test-{uuid.uuid4().hex}"})  # fmt: skip
    producer.init_transactions(30)
    producer.begin_transaction()
    producer.produce(Topology.of(cache_settings).definitions, encode(envelope), key.encode())
    producer.commit_transaction(30)
    cache = DefinitionsCache(cache_settings, catch_up_timeout=30.0)
    cache.start()
    try:
        found = cache.resolve("default", "marked", 1)
        assert found is not None and found.name == "marked"
        started = time.monotonic()
        assert cache.catch_up(timeout=10.0)  # at the end, marker and all
        assert time.monotonic() - started < 5.0
    finally:
        cache.close()
