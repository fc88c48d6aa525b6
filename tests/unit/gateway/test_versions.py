"""Which version a start pins: remembered reads, and when they must be read again."""

from __future__ import annotations

import asyncio

from foldflow.gateway.versions import DefinitionVersions


class Table:
    """Registered versions per (tenant, name), read with a controllable delay."""

    def __init__(self) -> None:
        self.versions: dict[tuple[str, str], list[int]] = {}
        self.reads: list[tuple[str, str, int | None]] = []
        self.gate: asyncio.Event | None = None  # when set, reads wait for it

    async def read(self, tenant: str, name: str, version: int | None) -> int | None:
        self.reads.append((tenant, name, version))
        known = list(self.versions.get((tenant, name), []))  # what the read's snapshot sees
        if self.gate is not None:
            await self.gate.wait()
        if version is None:
            return max(known, default=None)
        return version if version in known else None


async def reads(table: Table, count: int) -> None:
    """Let the loop run until ``table`` was read ``count`` times (fail if it never is)."""
    for _ in range(100):
        if len(table.reads) >= count:
            return
        await asyncio.sleep(0)
    raise AssertionError(f"{len(table.reads)} read(s), expected {count}")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_an_existing_exact_version_is_read_once_an_unknown_one_every_time() -> None:
    table, clock = Table(), Clock()
    versions = DefinitionVersions(table.read, ttl_s=0.2, clock=clock)
    table.versions[("acme", "order")] = [1, 2]
    assert await versions.resolve("acme", "order", 2) == 2
    clock.now += 3600
    assert await versions.resolve("acme", "order", 2) == 2  # a version never changes
    assert await versions.resolve("acme", "order", 3) is None
    assert await versions.resolve("acme", "order", 3) is None  # unknown: asked again
    assert await versions.resolve("globex", "order", 2) is None  # tenants apart
    assert table.reads == [("acme", "order", 2), ("acme", "order", 3), ("acme", "order", 3),
                           ("globex", "order", 2)]  # fmt: skip


async def test_the_latest_version_is_reused_for_ttl_from_when_its_read_began() -> None:
    table, clock = Table(), Clock()
    versions = DefinitionVersions(table.read, ttl_s=0.2, clock=clock)
    table.versions[("acme", "order")] = [1]
    assert await versions.resolve("acme", "order", None) == 1
    table.versions[("acme", "order")] = [1, 2]  # registered meanwhile
    clock.now += 0.19
    assert await versions.resolve("acme", "order", None) == 1  # still remembered
    clock.now += 0.01  # ttl after the read began: a registration's 201 comes no sooner
    assert await versions.resolve("acme", "order", None) == 2
    assert len(table.reads) == 2


async def test_an_unknown_latest_is_not_remembered() -> None:
    table, clock = Table(), Clock()
    versions = DefinitionVersions(table.read, ttl_s=10, clock=clock)
    assert await versions.resolve("acme", "fresh", None) is None
    table.versions[("acme", "fresh")] = [1]
    assert await versions.resolve("acme", "fresh", None) == 1


async def test_concurrent_starts_share_one_read_of_the_latest() -> None:
    table, clock = Table(), Clock()
    versions = DefinitionVersions(table.read, ttl_s=0.2, clock=clock)
    table.versions[("acme", "order")] = [4]
    table.gate = asyncio.Event()
    waiting = [asyncio.ensure_future(versions.resolve("acme", "order", None)) for _ in range(50)]
    for _ in range(5):
        await asyncio.sleep(0)
    table.gate.set()
    assert await asyncio.gather(*waiting) == [4] * 50
    assert len(table.reads) == 1


async def test_a_read_older_than_ttl_is_not_joined() -> None:
    """A start must not take the answer of a read that began before a registration's 201
    could have been sent: it reads for itself."""
    table, clock = Table(), Clock()
    versions = DefinitionVersions(table.read, ttl_s=0.2, clock=clock)
    table.versions[("acme", "order")] = [1]
    table.gate = asyncio.Event()
    slow = asyncio.ensure_future(versions.resolve("acme", "order", None))
    await reads(table, 1)  # the slow read took its snapshot
    table.versions[("acme", "order")] = [1, 2]
    clock.now += 0.5  # the slow read is older than ttl by now
    fresh = asyncio.ensure_future(versions.resolve("acme", "order", None))
    await reads(table, 2)  # the fresh start read for itself
    table.gate.set()
    assert await fresh == 2 and await slow == 1
    assert len(table.reads) == 2
    assert await versions.resolve("acme", "order", None) == 2  # the newer read is kept


async def test_a_zero_ttl_reads_every_time() -> None:
    table, clock = Table(), Clock()
    versions = DefinitionVersions(table.read, ttl_s=0, clock=clock)
    table.versions[("acme", "order")] = [1]
    for _ in range(3):
        assert await versions.resolve("acme", "order", None) == 1
    assert len(table.reads) == 3
