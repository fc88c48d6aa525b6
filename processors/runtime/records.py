"""What the orchestrator writes to ``wf.orchestrator-state`` (compacted), and reads back.

One record per workflow, keyed by its id, the latest value winning:

* ``W1`` + JSON ``[definition digest, [commands offset, results offset], state]``: a
  workflow still running. The pinned definition is not copied into every record: it is
  referenced by a digest, and the definition itself is a record of its own on the same
  partition (``D1`` + its canonical JSON, key ``\\0definition:<digest>``), written once per
  partition. The two offsets are those of the last ``wf.commands`` and ``wf.results``
  records applied to the state: an input at or below them (after an operator rewound the
  group) is skipped, which closes the decider's no-op replay caveat (docs/internals.md).
* ``F1`` + JSON summary: a finished workflow (status, last sequence, tenant, definition).
  Nothing can change a finished workflow any more, so its steps and outputs are not kept
  (they are on ``wf.events``); the record is what tells a late duplicate start that the id
  was used.

Pure: no I/O. The JSON is compact, not canonical (records are compared by their decoded
value, never by their bytes), and written and read with orjson: a state record is written
for every input and read for most, and orjson does both several times faster than the
standard library. orjson reads an integer beyond 64 bits as a float; every integer of a
state is far inside (sequences, attempts, offsets, and due times at most 365 days ahead:
docs/definitions.md#bounds).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import orjson

from foldflow.frozen import build, field_names
from foldflow.processors.decider.state import StepState, WorkflowState

__all__ = [
    "DEFINITION_KEY_PREFIX",
    "DefinitionTable",
    "Finished",
    "FinishedIds",
    "Live",
    "RecordError",
    "decode_value",
    "definition_key",
    "definition_record",
    "finished_record",
    "live_record",
]

LIVE = b"W1"
FINISHED = b"F1"
DEFINITION = b"D1"
#: Keys of definition records; no workflow id starts with a NUL byte.
DEFINITION_KEY_PREFIX = b"\x00definition:"

_dumps = orjson.dumps
_loads = orjson.loads


class RecordError(ValueError):
    """A value of the state topic that this version cannot read."""


@dataclass(frozen=True)
class Live:
    """A running workflow's record: its state (without the definition JSON) and offsets."""

    state: WorkflowState
    definition: str | None
    offsets: tuple[int, int]


@dataclass(frozen=True)
class Finished:
    """A finished workflow's record: enough to say the id was used and how it ended."""

    workflow_id: str
    status: str
    sequence: int
    tenant: str
    definition_name: str | None
    definition_version: int | None


@dataclass(frozen=True)
class DefinitionRecord:
    """A pinned definition's canonical JSON, referenced by digest from live records."""

    digest: str
    definition_json: str


def definition_digest(definition_json: str) -> str:
    """The reference a live record uses for a definition's canonical JSON."""
    return hashlib.blake2b(definition_json.encode(), digest_size=16).hexdigest()


def definition_key(digest: str) -> bytes:
    """The key of the record holding the definition with ``digest``."""
    return DEFINITION_KEY_PREFIX + digest.encode()


class DefinitionTable:
    """Every pinned definition JSON seen, one shared string per definition, by digest.

    States decoded from records share these strings, so a hundred thousand workflows of
    one definition hold its JSON once.
    """

    def __init__(self) -> None:
        self._by_digest: dict[str, str] = {}
        self._digest_of: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self._by_digest)

    def add(self, definition_json: str) -> str:
        """Remember ``definition_json``; return its digest."""
        digest = self._digest_of.get(definition_json)
        if digest is None:
            digest = definition_digest(definition_json)
            self._digest_of[definition_json] = digest
            self._by_digest.setdefault(digest, definition_json)
        return digest

    def get(self, digest: str) -> str | None:
        """The definition JSON of ``digest``, if known."""
        return self._by_digest.get(digest)


def live_record(state: WorkflowState, *, digest: str | None, offsets: tuple[int, int]) -> bytes:
    """The record value of a running workflow (``digest`` references its definition)."""
    raw = dict(state.__dict__)
    del raw["definition_json"]
    return LIVE + _dumps([digest, offsets, raw])  # the steps: dataclasses, written as objects


def finished_record(state: WorkflowState) -> bytes:
    """The record value of a finished workflow."""
    return FINISHED + _dumps([
        state.workflow_id, state.status, state.sequence, state.tenant,
        state.definition_name, state.definition_version,
    ])  # fmt: skip


def definition_record(definition_json: str) -> bytes:
    """The record value holding a pinned definition."""
    return DEFINITION + definition_json.encode()


def decode_value(
    key: bytes, value: bytes, definitions: DefinitionTable
) -> Live | Finished | DefinitionRecord:
    """Read one record of the state topic.

    A live record's definition must already be in ``definitions`` (the partition's
    definition records are read first, see :func:`decode_live`); raises
    :class:`RecordError` for a value this version does not know.
    """
    kind = value[:2]
    try:
        if kind == LIVE:
            return decode_live(value, definitions)
        if kind == FINISHED:
            wf, status, sequence, tenant, name, version = _loads(memoryview(value)[2:])
            return Finished(wf, status, sequence, tenant, name, version)
        if kind == DEFINITION:
            text = value[2:].decode()
            digest = definitions.add(text)
            expected = key[len(DEFINITION_KEY_PREFIX) :].decode()
            if digest != expected:
                raise RecordError(f"definition record {expected} holds digest {digest}")
            return DefinitionRecord(digest, definitions.get(digest) or text)
    except (ValueError, TypeError, KeyError) as exc:
        if isinstance(exc, RecordError):
            raise
        raise RecordError(f"unreadable {kind!r} record: {exc}") from exc
    raise RecordError(f"unknown record kind {kind!r}")


def decode_live(value: bytes, definitions: DefinitionTable) -> Live:
    """Read a ``W1`` record; its definition JSON comes from ``definitions``."""
    if value[:2] != LIVE:
        raise RecordError(f"not a live workflow record ({value[:2]!r})")
    digest, offsets, raw = _loads(memoryview(value)[2:])
    return Live(_state(raw, digest, definitions), digest, (offsets[0], offsets[1]))


def _state(raw: dict[str, Any], digest: str | None, definitions: DefinitionTable) -> WorkflowState:
    definition_json = None
    if digest is not None:
        definition_json = definitions.get(digest)
        if definition_json is None:
            raise RecordError(f"workflow {raw.get('workflow_id')!r}: unknown definition {digest}")
    raw["definition_json"] = definition_json
    raw["steps"] = {k: build(StepState, v, _STEP_FIELDS) for k, v in raw["steps"].items()}
    raw["completion_order"] = tuple(raw["completion_order"])
    raw["buffered_signals"] = tuple((n, d) for n, d in raw["buffered_signals"])
    raw["applied"] = tuple(raw["applied"])
    return build(WorkflowState, raw, _STATE_FIELDS)


_STATE_FIELDS = field_names(WorkflowState)
_STEP_FIELDS = field_names(StepState)


class FinishedIds:
    """The ids of finished workflows that left memory, as 64-bit fingerprints.

    About 60 bytes per id instead of the id's string and state. A new id whose
    fingerprint equals a finished one's (odds of n / 2**64 with n finished ids) would be
    taken for a duplicate start; at a billion finished workflows that is one start in
    eighteen billion.
    """

    def __init__(self) -> None:
        self._ids: set[int] = set()

    def __len__(self) -> int:
        return len(self._ids)

    @staticmethod
    def _fingerprint(workflow_id: str) -> int:
        digest = hashlib.blake2b(workflow_id.encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big")

    def add(self, workflow_id: str) -> None:
        """Remember that ``workflow_id`` finished."""
        self._ids.add(self._fingerprint(workflow_id))

    def __contains__(self, workflow_id: object) -> bool:
        return isinstance(workflow_id, str) and self._fingerprint(workflow_id) in self._ids
