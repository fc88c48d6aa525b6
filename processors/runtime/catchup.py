"""After a recovery, fold into the table the events its values do not cover yet.

The orchestrator stores a workflow's state only after its events were acked (DESIGN §5),
and the table's changelog reaches Kafka later still, at faust's next commit. An
orchestrator killed in between leaves events on ``wf.events`` that the recovered state
does not know. Re-handling the inputs behind them gives the same events only if they
come again in the same order, before anything else for that workflow; a timer the new
owner fires first, or the other input topic read first, forks the workflow's history
(the chaos test saw sequence 5 emitted as "completed" by one orchestrator and as "attempt
timed out" by the next).

So the event log, not the changelog, is the truth: each input partition's table carries
a marker, the ``wf.events`` offset up to which the stored states cover the partition's
events (written with every batch), and a recovery folds the events after it into the
states with :func:`processors.decider.evolve.evolve` — the same fold that made them — before any
input is handled. The inputs behind those events are then recognised as applied (their
ids are in ``state.applied``) and produce nothing.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable, Iterable

from processors.decider.evolve import evolve, initial_state
from processors.decider.state import state_from_bytes, state_to_bytes
from processors.runtime.stored import Stored
from schemas.messages import Envelope

__all__ = ["MARKER_PREFIX", "fold_events", "is_marker", "marker_key", "marker_offset",
           "marker_value"]  # fmt: skip

log = logging.getLogger(__name__)

#: Table keys of the markers (no workflow id starts with a NUL byte).
MARKER_PREFIX = b"\x00foldflow.events-offset\x00"
_OFFSET = struct.Struct(">q")


def marker_key(partition: int) -> bytes:
    """The table key of input partition ``partition``'s marker."""
    return MARKER_PREFIX + str(partition).encode()


def is_marker(key: bytes) -> bool:
    """Whether a table key is a marker rather than a workflow id."""
    return key.startswith(MARKER_PREFIX)


def marker_value(offset: int) -> bytes:
    """The stored marker: the next ``wf.events`` offset not covered yet."""
    return _OFFSET.pack(offset)


def marker_offset(value: bytes | None) -> int | None:
    """The offset a stored marker holds (None: no marker yet)."""
    return _OFFSET.unpack(value)[0] if value and len(value) == _OFFSET.size else None


def fold_events(
    load: Callable[[bytes], bytes | None], events: Iterable[Envelope]
) -> dict[bytes, bytes]:
    """The new table values of the workflows whose state lags behind ``events``.

    ``load(key)`` reads a stored value. An event at or below a state's sequence is in it
    already; one past the next sequence cannot be folded (logged: the state stays as it
    is, and the orchestrator goes on from it as before).
    """
    changed: dict[bytes, bytes] = {}
    for event in events:
        key = event.workflow_id.encode()
        raw = changed.get(key) or load(key)
        stored = Stored.from_bytes(raw) if raw else Stored(b"")
        state = state_from_bytes(stored.state) if raw else initial_state(event.workflow_id)
        sequence = event.sequence or 0
        if sequence <= state.sequence:
            continue
        if sequence > state.sequence + 1:
            log.error("cannot fold %s: sequence %d after %d", event.event_type, sequence,
                      state.sequence, extra={"workflow_id": event.workflow_id})  # fmt: skip
            continue
        changed[key] = Stored(state_to_bytes(evolve(state, event)), stored.offsets).to_bytes()
    return changed
