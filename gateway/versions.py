"""Which definition version a start pins, without a database read per start.

A start names a definition and maybe a version. A registered version never changes (other
content under the same version is refused), so "``name`` version ``v`` exists for this
tenant" is remembered for good (a bounded number of entries). "The latest version of
``name``" can change, so it is remembered for ``ttl_s`` counted from when its read
*began*, and a registration answers 201 only ``ttl_s`` after its definition became
readable (:mod:`foldflow.gateway.routes.definitions`): by then every gateway of the database has
forgotten whatever latest version it read before, so a start after the 201 runs the new
version on any gateway (read-your-writes). Concurrent starts of one definition share an
in-flight read when it began less than ``ttl_s`` ago (the same rule). A definition not
found is never remembered: the start route polls for it briefly.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

__all__ = ["DefinitionVersions", "ReadVersion"]

#: Reads the version of ``(tenant, name, version or None for the latest)``; None: unknown.
ReadVersion = Callable[[str, str, int | None], Awaitable[int | None]]
#: At most this many remembered entries of each kind (then all are forgotten at once).
MAX_ENTRIES = 4096


class DefinitionVersions:
    """The version a start pins, per tenant and name (see the module docstring)."""

    def __init__(
        self,
        read: ReadVersion,
        *,
        ttl_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._read = read
        self._ttl_s = ttl_s
        self._clock = clock
        self._pinned: set[tuple[str, str, int]] = set()
        self._latest: dict[tuple[str, str], tuple[float, int]] = {}  # -> (valid until, v)
        self._reading: dict[tuple[str, str], tuple[float, asyncio.Future[int | None]]] = {}

    async def resolve(self, tenant: str, name: str, version: int | None) -> int | None:
        """The version to pin (``version`` itself once it is known to exist), or None."""
        if version is not None:
            return await self._exact(tenant, name, version)
        if self._ttl_s <= 0:
            return await self._read(tenant, name, None)
        key = (tenant, name)
        now = self._clock()
        cached = self._latest.get(key)
        if cached is not None and now < cached[0]:
            return cached[1]
        reading = self._reading.get(key)
        if reading is not None and now < reading[0] + self._ttl_s:
            return await asyncio.shield(reading[1])
        return await self._read_latest(key, began=now)

    async def _exact(self, tenant: str, name: str, version: int) -> int | None:
        key = (tenant, name, version)
        if key in self._pinned:
            return version
        found = await self._read(tenant, name, version)
        if found is not None:
            if len(self._pinned) >= MAX_ENTRIES:
                self._pinned.clear()
            self._pinned.add(key)
        return found

    async def _read_latest(self, key: tuple[str, str], *, began: float) -> int | None:
        read = asyncio.ensure_future(self._read(key[0], key[1], None))
        self._reading[key] = (began, read)

        def done(finished: asyncio.Future[int | None]) -> None:
            if self._reading.get(key, (0.0, None))[1] is finished:
                del self._reading[key]
            if finished.cancelled() or finished.exception() is not None:
                return
            found = finished.result()
            current = self._latest.get(key)
            if found is not None and (current is None or current[0] < began + self._ttl_s):
                if len(self._latest) >= MAX_ENTRIES:
                    self._latest.clear()
                self._latest[key] = (began + self._ttl_s, found)

        read.add_done_callback(done)
        return await asyncio.shield(read)  # a caller that goes away leaves it for the others
