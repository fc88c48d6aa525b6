"""The orchestrator's workflow states: what is committed, and what one transaction changes.

:class:`Store` holds, per input partition this instance owns, the committed record of
every running workflow (the bytes last written to ``wf.orchestrator-state``: compact,
decoded on use), the ids of finished workflows, and the committed input positions. A
:class:`Transaction` collects what the inputs of one Kafka transaction change; only after
the broker committed it does :meth:`Store.merge` fold it in (docs/internals.md: the in-memory
store changes only after the commit). An aborted transaction is simply dropped.

Finished workflows stay in memory for ``finished_retention_s`` (late inputs are then told
apart as duplicates or stale results), as records too, then only their id is kept. Pure:
no I/O, the clock is passed in.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from foldflow.processors.decider.plan import Plan
from foldflow.processors.decider.state import TERMINAL_STATUSES, WorkflowState
from foldflow.processors.runtime.effects import OutputRecord
from foldflow.processors.runtime.records import (
    DefinitionTable,
    FinishedIds,
    Live,
    decode_live,
    live_record,
)
from foldflow.processors.runtime.timers import DueTimer

__all__ = ["FINISHED", "Change", "PartitionState", "Store", "Transaction"]


class _FinishedMarker:
    """The state of a workflow that finished and left memory (see :data:`FINISHED`)."""

    def __repr__(self) -> str:
        return "FINISHED"


#: What :meth:`Store.lookup` gives for a finished workflow no longer held in memory.
FINISHED = _FinishedMarker()


@dataclass
class PartitionState:
    """The committed state of one input partition (``wf.commands``/``wf.results`` p)."""

    partition: int
    live: dict[str, bytes] = field(default_factory=dict)
    finished: FinishedIds = field(default_factory=FinishedIds)
    #: digests of the definition records already on this partition of the state topic
    definitions: set[str] = field(default_factory=set)
    #: input topic -> committed next offset (what the group's offsets say)
    positions: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Change:
    """The latest state one transaction gives a workflow, and its state record.

    ``offsets``: the last ``wf.commands`` and ``wf.results`` offsets applied to it;
    ``digest``: the definition the record references (written once per partition).
    """

    partition: int
    state: WorkflowState
    record: bytes
    offsets: tuple[int, int] = (-1, -1)
    digest: str | None = None

    @property
    def terminal(self) -> bool:
        """Whether the workflow finished."""
        return self.state.status in TERMINAL_STATUSES


@dataclass
class Transaction:
    """What the inputs of one open Kafka transaction changed (dropped if it aborts)."""

    started: float
    inputs: int = 0
    changes: dict[str, Change] = field(default_factory=dict)
    #: (input topic, partition) -> next offset once this transaction commits
    positions: dict[tuple[str, int], int] = field(default_factory=dict)
    #: (state partition, digest) of definition records this transaction writes
    definitions: set[tuple[int, str]] = field(default_factory=set)
    #: what to count once committed: applied plans, dead letters (topic, reason kind)
    plans: list[Plan] = field(default_factory=list)
    dead_letters: list[tuple[str, str]] = field(default_factory=list)
    #: timers whose fire commands this transaction produces
    fired: list[DueTimer] = field(default_factory=list)
    #: workflow id -> traceparent of the input that last changed it (its timers' trace)
    traces: dict[str, bytes | None] = field(default_factory=dict)
    #: whether the producer's transaction began: one opened while the previous one is
    #: still committing holds its records in ``pending`` until then
    begun: bool = True
    pending: list[tuple[OutputRecord, int | None]] = field(default_factory=list)

    def change(self, change: Change) -> None:
        """Record the newest state of a workflow (coalesced: the last one wins)."""
        self.changes[change.state.workflow_id] = change

    def advance(self, topic: str, partition: int, offset: int) -> None:
        """Note that the input at ``offset`` was handled."""
        self.positions[(topic, partition)] = offset + 1

    @property
    def partitions(self) -> set[int]:
        """The input partitions this transaction consumed from."""
        return {p for _, p in self.positions}


class Store:
    """The committed workflow states of the partitions this instance owns."""

    def __init__(self, *, definitions: DefinitionTable, finished_retention_s: float) -> None:
        self.definitions = definitions
        self.retention_s = finished_retention_s
        self.partitions: dict[int, PartitionState] = {}
        #: finished workflows still held, as live records (bytes, which the garbage
        #: collector does not walk: held decoded, a few thousand of them made each of its
        #: full collections 25-50 ms, a pause every input waited out)
        self._recent: dict[str, bytes] = {}
        #: (forget at, id, partition), oldest first
        self._expiry: deque[tuple[float, str, int]] = deque()

    # --- ownership -----------------------------------------------------------------------

    def install(self, state: PartitionState) -> None:
        """Take over a partition whose state was restored (or retained)."""
        self.partitions[state.partition] = state

    def remove(self, partition: int) -> PartitionState | None:
        """Let go of a partition; returns its state (to retain across a rebalance)."""
        part = self.partitions.pop(partition, None)
        if part is not None:
            for wf in [w for w, p in self._recent_partition() if p == partition]:
                self._recent.pop(wf, None)
        return part

    def _recent_partition(self) -> Iterator[tuple[str, int]]:
        for _, wf, partition in self._expiry:
            if wf in self._recent:
                yield wf, partition

    # --- reading -------------------------------------------------------------------------

    def lookup(self, workflow_id: str, partition: int) -> Live | _FinishedMarker | None:
        """The committed state of a workflow (decoded), :data:`FINISHED`, or None (unknown).

        A finished workflow still held comes back with offsets ``(-1, -1)``: no input
        changes a finished workflow, so none needs skipping.
        """
        part = self.partitions.get(partition)
        if part is None:
            return None
        record = part.live.get(workflow_id)
        if record is not None:
            return decode_live(record, self.definitions)
        recent = self._recent.get(workflow_id)
        if recent is not None:
            return decode_live(recent, self.definitions)
        if workflow_id in part.finished:
            return FINISHED
        return None

    def active(self) -> int:
        """Running (non-terminal) workflows on the owned partitions."""
        return sum(len(p.live) for p in self.partitions.values())

    def position(self, topic: str, partition: int) -> int | None:
        """The committed next offset of an input partition, if known."""
        part = self.partitions.get(partition)
        return part.positions.get(topic) if part is not None else None

    # --- writing -------------------------------------------------------------------------

    def merge(self, txn: Transaction, *, now: float) -> list[Change]:
        """Fold a committed transaction in; return its changes (for the timer index)."""
        for (topic, partition), offset in txn.positions.items():
            part = self.partitions.get(partition)
            if part is not None:
                part.positions[topic] = offset
        for partition, digest in txn.definitions:
            part = self.partitions.get(partition)
            if part is not None:
                part.definitions.add(digest)
        merged = []
        for wf, change in txn.changes.items():
            part = self.partitions.get(change.partition)
            if part is None:
                continue  # revoked meanwhile (the transaction still committed for it)
            merged.append(change)
            if change.terminal:
                part.live.pop(wf, None)
                part.finished.add(wf)
                if self.retention_s > 0:
                    self._recent[wf] = self._held(change.state)
                    self._expiry.append((now + self.retention_s, wf, change.partition))
            else:
                part.live[wf] = change.record
        self.expire(now=now)
        return merged

    def _held(self, state: WorkflowState) -> bytes:
        """A finished state as the live record that :meth:`lookup` decodes (offsets -1)."""
        digest = (None if state.definition_json is None
                  else self.definitions.add(state.definition_json))
        return live_record(state, digest=digest, offsets=(-1, -1))

    def expire(self, *, now: float) -> int:
        """Forget the states of workflows finished longer than the retention ago."""
        dropped = 0
        while self._expiry and self._expiry[0][0] <= now:
            _, wf, _ = self._expiry.popleft()
            if self._recent.pop(wf, None) is not None:
                dropped += 1
        return dropped

    def held(self) -> Iterable[str]:
        """Ids of the finished workflows still held (for tests and gauges)."""
        return self._recent.keys()
