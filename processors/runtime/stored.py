"""What the orchestrator's table holds per workflow: the state and the inputs it covers.

A value is ``FFO1``, the offsets of the last ``wf.commands`` and ``wf.results`` records
applied to this state (8-byte signed big-endian each, -1: none yet), then
``state_to_bytes(state)``. A replayed record at or below its topic's stored offset was
already handled before the state was stored; the orchestrator skips it. That closes the
decider's one gap (docs/internals.md): an input that produced nothing at the time could
act if replayed after later inputs changed the state (a no-op pause replayed after a
resume would pause).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

__all__ = ["COMMANDS", "RESULTS", "Stored"]

_MAGIC = b"FFO1"
_OFFSETS = struct.Struct(">qq")
_HEADER = len(_MAGIC) + _OFFSETS.size

COMMANDS = 0
RESULTS = 1


@dataclass(frozen=True)
class Stored:
    """One table value: state bytes plus the last applied offset per input topic."""

    state: bytes
    offsets: tuple[int, int] = (-1, -1)  # (wf.commands, wf.results)

    def covers(self, source: int, offset: int) -> bool:
        """Whether the record at ``offset`` of input ``source`` is already in this state."""
        return offset <= self.offsets[source]

    def advanced(self, state: bytes, source: int, offset: int) -> Stored:
        """The value after applying the record at ``offset`` of ``source``."""
        offsets = list(self.offsets)
        offsets[source] = max(offsets[source], offset)
        return Stored(state, (offsets[0], offsets[1]))

    def to_bytes(self) -> bytes:
        """The table value."""
        return _MAGIC + _OFFSETS.pack(*self.offsets) + self.state

    @classmethod
    def from_bytes(cls, data: bytes) -> Stored:
        """Read a table value written by :meth:`to_bytes`."""
        if not data.startswith(_MAGIC) or len(data) < _HEADER:
            raise ValueError("not an orchestrator table value (no FFO1 header)")
        commands, results = _OFFSETS.unpack_from(data, len(_MAGIC))
        return cls(data[_HEADER:], (commands, results))
