"""The state topic's records: exact round trips, definitions by reference, finished ids."""

from __future__ import annotations

import dataclasses

import pytest
from engine_support import CHILD, TOPOLOGY, message, start

from foldflow.processors.decider import apply_input
from foldflow.processors.runtime.records import (
    DefinitionRecord,
    DefinitionTable,
    Finished,
    FinishedIds,
    Live,
    RecordError,
    decode_live,
    decode_value,
    definition_key,
    definition_record,
    finished_record,
    live_record,
)
from foldflow.schemas.messages import TaskSucceeded


def test_a_running_state_round_trips_with_its_definition_by_reference() -> None:
    table = DefinitionTable()
    state = start("wf-1", CHILD)
    assert state.definition_json is not None
    digest = table.add(state.definition_json)
    value = live_record(state, digest=digest, offsets=(41, -1))
    assert state.definition_json.encode() not in value  # referenced, not copied
    decoded = decode_live(value, table)
    assert decoded == Live(state, digest, (41, -1))
    assert decoded.state.definition_json is table.get(digest)  # one shared string


def test_states_decoded_from_records_share_one_definition_string() -> None:
    table = DefinitionTable()
    a = start("wf-a", CHILD)
    b = dataclasses.replace(start("wf-b", CHILD),
                            definition_json=(a.definition_json or "") + " ")  # another copy
    b = dataclasses.replace(b, definition_json=(b.definition_json or "")[:-1])
    assert a.definition_json == b.definition_json and a.definition_json is not b.definition_json
    ra = live_record(a, digest=table.add(a.definition_json or ""), offsets=(1, -1))
    rb = live_record(b, digest=table.add(b.definition_json or ""), offsets=(2, -1))
    assert decode_live(ra, table).state.definition_json is decode_live(
        rb, table).state.definition_json  # fmt: skip


def test_a_finished_workflow_keeps_a_summary_only() -> None:
    state = start("wf-f", CHILD)
    done = TaskSucceeded(task_id="wf-f:x:run:1", step_id="x", attempt=1, kind="step",
                         output_json='{"big": "' + "x" * 10_000 + '"}')  # fmt: skip
    final = apply_input(state, message("wf-f", done, 2), definition=None,
                        topology=TOPOLOGY).state  # fmt: skip
    assert final.status == "completed"
    value = finished_record(final)
    assert len(value) < 200  # the 10 kB output is on wf.events, not here
    table = DefinitionTable()
    assert decode_value(b"wf-f", value, table) == Finished(
        "wf-f", "completed", final.sequence, "default", "child", 1
    )


def test_definition_records_are_checked_against_their_key() -> None:
    table = DefinitionTable()
    text = CHILD.canonical_json()
    digest = DefinitionTable().add(text)
    record = decode_value(definition_key(digest), definition_record(text), table)
    assert record == DefinitionRecord(digest, text)
    with pytest.raises(RecordError, match="holds digest"):
        decode_value(definition_key("0" * 32), definition_record(text), table)


def test_unknown_or_broken_records_are_refused_with_a_reason() -> None:
    table = DefinitionTable()
    with pytest.raises(RecordError, match="unknown record kind"):
        decode_value(b"k", b"ZZ{}", table)
    with pytest.raises(RecordError, match="unreadable"):
        decode_value(b"k", b"W1[not json", table)
    state = start("wf-u", CHILD)
    orphan = live_record(state, digest="f" * 32, offsets=(-1, -1))
    with pytest.raises(RecordError, match="unknown definition"):
        decode_value(b"wf-u", orphan, table)


def test_finished_ids_remember_exactly_the_ids_added() -> None:
    ids = FinishedIds()
    for i in range(10_000):
        ids.add(f"wf-{i}")
    assert len(ids) == 10_000
    assert all(f"wf-{i}" in ids for i in range(0, 10_000, 97))
    assert not any(f"wf-new-{i}" in ids for i in range(10_000))
    assert 42 not in ids


def test_the_largest_values_a_state_holds_round_trip_exactly() -> None:
    """Offsets up to 2**63 - 1, a due time 365 days ahead, any Unicode text: all exact."""
    table = DefinitionTable()
    state = start("wf-\u00e9\U0001f600\u0000", CHILD)
    due = 4_102_444_800_000 + 365 * 86_400_000  # 2100-01-01 plus the longest duration
    state = dataclasses.replace(
        state, sequence=2**31, pending_timers={"timeout": due},
        input_json='{"text": "\\u2028 \u00fc \U0001f600 \\"quoted\\" \\\\"}',
    )
    digest = table.add(state.definition_json or "")
    offsets = (2**63 - 1, 2**63 - 2)
    decoded = decode_live(live_record(state, digest=digest, offsets=offsets), table)
    assert decoded == Live(state, digest, offsets)
    assert type(decoded.state.pending_timers["timeout"]) is int
    assert type(decoded.offsets[0]) is int
