"""In-order commit points per partition (at-least-once with concurrent handlers).

Messages of one partition finish out of order when handlers run concurrently. The offset
committed for a partition must never pass a message that is still running, or a crash
would lose it: :class:`PartitionOffsets` hands out the commit point as "one past the last
offset of the finished prefix".
"""

from __future__ import annotations

from collections import deque

__all__ = ["PartitionOffsets"]


class PartitionOffsets:
    """The offsets of one partition handed to handlers, in delivery (= offset) order."""

    def __init__(self) -> None:
        self._started: deque[int] = deque()
        self._finished: set[int] = set()
        self._commit_point: int | None = None
        self._committed: int | None = None

    def start(self, offset: int) -> None:
        """A message at ``offset`` was handed to a handler."""
        if self._started and offset <= self._started[-1]:
            raise ValueError(f"offset {offset} is not after {self._started[-1]}")
        self._started.append(offset)

    def finish(self, offset: int) -> None:
        """The message at ``offset`` is done (its result or DLQ copy acked)."""
        if offset not in self._started:
            return
        self._finished.add(offset)
        while self._started and self._started[0] in self._finished:
            done = self._started.popleft()
            self._finished.discard(done)
            self._commit_point = done + 1

    @property
    def in_flight(self) -> int:
        """How many started messages are not finished."""
        return len(self._started) - len(self._finished)

    @property
    def commit_point(self) -> int | None:
        """One past the last offset of the finished prefix (None: nothing finished yet)."""
        return self._commit_point

    def to_commit(self) -> int | None:
        """The offset to commit now (one past the finished prefix), if it moved since
        :meth:`committed` was last called; else None."""
        if self._commit_point is None or self._commit_point == self._committed:
            return None
        return self._commit_point

    def committed(self, offset: int) -> None:
        """Record that ``offset`` was committed."""
        self._committed = offset
