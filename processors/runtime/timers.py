"""The pending timers of the workflows this instance owns, ordered by when they are due.

The loop must not scan every state for due timers (docs/internals.md), and it sleeps until the
next one is due instead of ticking, so timers fire on time. Per workflow the index keeps
the partition it lives on and its pending timers (``timer_id -> due_at`` ms); a heap
orders them, and entries go stale when a state changes (skipped lazily).

A fired timer is pushed back ``refire_ms`` later: once its ``timer.fire.v1`` is applied
the timer leaves the state and the entry is stale; if it is not (the partition moved,
the transaction carrying the fire aborted), it fires again with the same deterministic
id, which the decider de-duplicates. Pure data structure, no I/O.
"""

from __future__ import annotations

import heapq
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

__all__ = ["DueTimer", "TimerIndex"]


@dataclass(frozen=True)
class DueTimer:
    """A timer of workflow ``workflow_id`` (on input ``partition``) that is due and should fire."""

    workflow_id: str
    timer_id: str
    due_at: int  # ms since the epoch
    partition: int


@dataclass(slots=True)
class _Entry:
    partition: int
    timers: tuple[tuple[str, int], ...]  # a workflow has a few: a tuple is the smallest
    trace: bytes | None = None  # the traceparent of the input that set them

    def due(self, timer_id: str) -> int | None:
        for name, due_at in self.timers:
            if name == timer_id:
                return due_at
        return None


class TimerIndex:
    """Pending timers of the workflows of the partitions owned here."""

    def __init__(self, *, refire_ms: int = 5_000) -> None:
        self._refire_ms = refire_ms
        self._entries: dict[str, _Entry] = {}
        # (fire_at, due_at, workflow_id, timer_id); stale when the entry no longer has
        # timer_id at due_at.
        self._heap: list[tuple[int, int, str, str]] = []
        self._live = 0  # timers in _entries

    def __len__(self) -> int:
        return len(self._entries)

    def pending_count(self) -> int:
        """How many timers are pending."""
        return self._live

    def update(self, workflow_id: str, *, partition: int, timers: Mapping[str, int],
               trace: bytes | None = None) -> None:  # fmt: skip
        """Record the committed timers of one workflow (after every state change), and the
        trace context they fire under."""
        old = self._entries.pop(workflow_id, None)
        if old is not None:
            self._live -= len(old.timers)
        if timers:
            self._entries[workflow_id] = _Entry(partition, tuple(timers.items()), trace)
            self._live += len(timers)
            for timer_id, due_at in timers.items():
                if old is None or old.due(timer_id) != due_at:
                    heapq.heappush(self._heap, (due_at, due_at, workflow_id, timer_id))
        self._maybe_compact()

    def trace(self, workflow_id: str) -> bytes | None:
        """The trace context the timers of a workflow fire under."""
        entry = self._entries.get(workflow_id)
        return entry.trace if entry is not None else None

    def add_partition(self, entries: Iterable[tuple[str, Mapping[str, int]]], *,
                      partition: int) -> None:  # fmt: skip
        """Add the ``(workflow_id, timers)`` of a partition just restored."""
        for workflow_id, timers in entries:
            self.update(workflow_id, partition=partition, timers=timers)

    def resume_partition(self, partition: int) -> None:
        """Schedule again the timers of a partition owned anew whose entries were kept
        (retained across a rebalance): :meth:`pop_due` dropped the heap items that came
        due while the partition was not owned, so each pending timer gets a fresh one."""
        for wf, entry in self._entries.items():
            if entry.partition == partition:
                for timer_id, due_at in entry.timers:
                    heapq.heappush(self._heap, (due_at, due_at, wf, timer_id))

    def remove_partition(self, partition: int) -> None:
        """Forget the timers of a partition no longer owned."""
        gone = [wf for wf, e in self._entries.items() if e.partition == partition]
        for wf in gone:
            self._live -= len(self._entries.pop(wf).timers)
        if gone:
            self._compact()

    def next_due(self) -> int | None:
        """When (ms) the earliest pending timer is due, None when there is none."""
        while self._heap:
            _, due_at, wf, timer_id = self._heap[0]
            entry = self._entries.get(wf)
            if entry is not None and entry.due(timer_id) == due_at:
                return self._heap[0][0]
            heapq.heappop(self._heap)  # stale
        return None

    def pop_due(self, now: int, *, owned: Collection[int], limit: int = 1_000) -> list[DueTimer]:
        """The timers due at ``now`` on ``owned`` partitions, each re-armed ``refire_ms`` later."""
        due: list[DueTimer] = []
        rearm: list[tuple[int, int, str, str]] = []
        popped: set[tuple[str, str]] = set()
        while self._heap and self._heap[0][0] <= now and len(due) < limit:
            _, due_at, wf, timer_id = heapq.heappop(self._heap)
            entry = self._entries.get(wf)
            if entry is None or entry.due(timer_id) != due_at:
                continue  # stale: the timer fired, was cancelled or moved
            if entry.partition not in owned or (wf, timer_id) in popped:
                continue  # not ours now (resume_partition schedules it again), or a duplicate
            popped.add((wf, timer_id))
            due.append(DueTimer(wf, timer_id, due_at, entry.partition))
            rearm.append((now + self._refire_ms, due_at, wf, timer_id))
        for item in rearm:
            heapq.heappush(self._heap, item)
        return due

    def rearm(self, timers: Iterable[DueTimer], *, at: int) -> None:
        """Make timers due again at ``at`` (their fire commands were not committed)."""
        for t in timers:
            heapq.heappush(self._heap, (at, t.due_at, t.workflow_id, t.timer_id))

    def _maybe_compact(self) -> None:
        if len(self._heap) > 2 * self._live + 1_024:
            self._compact()

    def _compact(self) -> None:
        self._heap = [
            item
            for item in self._heap
            if (e := self._entries.get(item[2])) is not None and e.due(item[3]) == item[1]
        ]
        heapq.heapify(self._heap)
