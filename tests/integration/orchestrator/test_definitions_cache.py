"""The orchestrator's definitions cache against the real broker (in-process, asyncio)."""

from __future__ import annotations

import pytest
from orchestrator_harness import Deployment, private_settings

from foldflow.definitions import Definition
from foldflow.settings import Settings
from processors.definitions_cache import DefinitionsCache


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
        assert cache.get("billing", None) is None  # nothing fetched yet: the race
        latest = await cache.resolve("billing", None)  # waits until the end offsets
        assert latest is not None and latest.version == 2
        first = await cache.resolve("billing", 1)
        assert first is not None and first.steps[0].task == "builtin.echo"
        assert await cache.resolve("nowhere", None) is None
        assert await cache.resolve("billing", 3) is None
        assert await cache.catch_up(timeout=30.0)  # a miss is answered after catching up
    finally:
        await cache.stop()


async def test_definitions_registered_later_are_picked_up(cache_settings: Settings) -> None:
    cache = DefinitionsCache(cache_settings, catch_up_timeout=30.0)
    await cache.start()
    deployment = Deployment(cache_settings)
    try:
        assert await cache.resolve("late", None) is None
        deployment.register(_definition("late", 1))  # acked before the next resolve
        found = await cache.resolve("late", 1)
        assert found is not None and found.name == "late"
    finally:
        deployment.close()
        await cache.stop()
