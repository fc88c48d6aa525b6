"""The orchestrator's index of the workflows it owns: pending timers and liveness.

The timer loop must not scan every state on every tick (DESIGN §5), so the orchestrator
keeps, per workflow it stores, the partition it lives on, its pending timers
(``timer_id -> due_at`` ms) and whether it is still active. A heap orders the timers by
when they should fire; entries go stale when a state changes and are skipped lazily.

A fired timer is pushed back ``refire_ms`` later: if the ``timer.fire.v1`` was applied the
timer has left the state by then and the entry is stale; if it was not (an input is
still queued behind it, a rebalance moved the partition), it fires again with the same
deterministic id, which the decider de-duplicates. Pure data structure, no I/O.
"""

from __future__ import annotations

import heapq
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field

from foldflow.partitioner import murmur2

__all__ = ["DueTimer", "TimerIndex", "partition_for"]


def partition_for(key: bytes, partitions: int) -> int:
    """The partition the murmur2 partitioner (Java, aiokafka, faust) gives ``key``."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


@dataclass(frozen=True)
class DueTimer:
    """A timer of workflow ``workflow_id`` that is due (``due_at`` ms) and should fire."""

    workflow_id: str
    timer_id: str
    due_at: int


@dataclass
class _Entry:
    partition: int
    active: bool
    timers: dict[str, int] = field(default_factory=dict)


class TimerIndex:
    """Pending timers and active flags of the workflows of the partitions owned here."""

    def __init__(self, *, refire_ms: int = 5_000) -> None:
        self._refire_ms = refire_ms
        self._entries: dict[str, _Entry] = {}
        # (fire_at, due_at, workflow_id, timer_id); stale when the entry no longer has
        # timer_id at due_at.
        self._heap: list[tuple[int, int, str, str]] = []
        self._live = 0  # timers in _entries

    def __len__(self) -> int:
        return len(self._entries)

    def update(
        self, workflow_id: str, *, partition: int, timers: Mapping[str, int], active: bool
    ) -> None:
        """Record the stored state of one workflow (call after every state write)."""
        old = self._entries.pop(workflow_id, None)
        if old is not None:
            self._live -= len(old.timers)
        new_timers = dict(timers)
        if active or new_timers:  # a finished workflow without timers needs no entry
            self._entries[workflow_id] = _Entry(partition, active, new_timers)
            self._live += len(new_timers)
        for timer_id, due_at in new_timers.items():
            if old is None or old.timers.get(timer_id) != due_at:
                heapq.heappush(self._heap, (due_at, due_at, workflow_id, timer_id))
        self._maybe_compact()

    def rebuild(self, entries: Iterable[tuple[str, int, Mapping[str, int], bool]]) -> None:
        """Replace everything with ``(workflow_id, partition, timers, active)`` tuples."""
        self._entries.clear()
        self._heap.clear()
        for workflow_id, partition, timers, active in entries:
            if active or timers:
                self._entries[workflow_id] = _Entry(partition, active, dict(timers))
        self._live = sum(len(e.timers) for e in self._entries.values())
        self._heap = [
            (due_at, due_at, wf, timer_id)
            for wf, entry in self._entries.items()
            for timer_id, due_at in entry.timers.items()
        ]
        heapq.heapify(self._heap)

    def active_count(self, owned: Collection[int]) -> int:
        """How many active (non-terminal) workflows live on the ``owned`` partitions."""
        return sum(1 for e in self._entries.values() if e.active and e.partition in owned)

    def pending_count(self) -> int:
        """How many timers are pending (all partitions in the index)."""
        return self._live

    def pop_due(self, now: int, *, owned: Collection[int], limit: int = 1_000) -> list[DueTimer]:
        """The timers due at ``now`` on ``owned`` partitions, each re-armed ``refire_ms`` later.

        Timers of partitions not owned (revoked) are dropped from the heap; their new
        owner rebuilds its own index from the recovered states.
        """
        due: list[DueTimer] = []
        rearm: list[tuple[int, int, str, str]] = []
        while self._heap and self._heap[0][0] <= now and len(due) < limit:
            _, due_at, wf, timer_id = heapq.heappop(self._heap)
            entry = self._entries.get(wf)
            if entry is None or entry.timers.get(timer_id) != due_at:
                continue  # stale: the timer fired, was cancelled or moved
            if entry.partition not in owned:
                continue
            due.append(DueTimer(wf, timer_id, due_at))
            rearm.append((now + self._refire_ms, due_at, wf, timer_id))
        for item in rearm:
            heapq.heappush(self._heap, item)
        return due

    def _maybe_compact(self) -> None:
        if len(self._heap) > 2 * self._live + 1_024:
            self._heap = [
                item
                for item in self._heap
                if (e := self._entries.get(item[2])) is not None
                and e.timers.get(item[3]) == item[1]
            ]
            heapq.heapify(self._heap)
