"""The orchestrator's definitions cache against the real broker (in-process, asyncio)."""

from __future__ import annotations

import pytest
from orchestrator_harness import Deployment, private_settings

from foldflow.definitions import Definition
from foldflow.settings import Settings
from processors.runtime.definitions_cache import DefinitionsCache


def _definition(name: str, version: int, task: str = "builtin.echo") -> Definition:
    return Definition.from_data(
        {"name": name, "version": version, "steps": [{"id": "s", "task": task}]}
    )


@pytest.fixture
def cache_settings(stack: Settings) -> Settings:
    return private_settings(stack, partitions=1)


async def test_a_miss_catches_up_with_the_topic_before_answering(cache_settings: Settings) -> None:
    deployment = Deployment(cache_settings)
    deployment.register(_definition("billing", 1))
    deployment.register(_definition("billing", 2, task="builtin.sleep"))
    deployment.close()
    cache = DefinitionsCache(cache_settings, catch_up_timeout=30.0)
    await cache.start()
    try:
        assert cache.get("default", "billing", None) is None  # nothing fetched yet: the race
        latest = await cache.resolve("default", "billing", None)  # waits until the end offsets
        assert latest is not None and latest.version == 2
        first = await cache.resolve("default", "billing", 1)
        assert first is not None and first.steps[0].task == "builtin.echo"
        assert await cache.resolve("default", "nowhere", None) is None
        assert await cache.resolve("default", "billing", 3) is None
        assert await cache.catch_up(timeout=30.0)  # a miss is answered after catching up
    finally:
        await cache.stop()


async def test_definitions_registered_later_are_picked_up(cache_settings: Settings) -> None:
    cache = DefinitionsCache(cache_settings, catch_up_timeout=30.0)
    await cache.start()
    deployment = Deployment(cache_settings)
    try:
        assert await cache.resolve("default", "late", None) is None
        deployment.register(_definition("late", 1))  # acked before the next resolve
        found = await cache.resolve("default", "late", 1)
        assert found is not None and found.name == "late"
    finally:
        deployment.close()
        await cache.stop()


async def test_tenants_resolve_their_own_definitions(cache_settings: Settings) -> None:
    deployment = Deployment(cache_settings)
    deployment.register(_definition("shared", 1), tenant="acme")
    deployment.register(_definition("shared", 1, task="builtin.sleep"), tenant="globex")
    deployment.register(_definition("shared", 2, task="builtin.fail"), tenant="globex")
    deployment.close()
    cache = DefinitionsCache(cache_settings, catch_up_timeout=30.0)
    await cache.start()
    try:
        acme = await cache.resolve("acme", "shared", None)
        assert acme is not None and (acme.version, acme.steps[0].task) == (1, "builtin.echo")
        globex = await cache.resolve("globex", "shared", 1)
        assert globex is not None and globex.steps[0].task == "builtin.sleep"
        latest = await cache.resolve("globex", "shared", None)
        assert latest is not None and latest.version == 2
        assert await cache.resolve("acme", "shared", 2) is None
        assert await cache.resolve("default", "shared", None) is None
    finally:
        await cache.stop()
