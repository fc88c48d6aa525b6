"""One input decided by the runtime's handler: outputs, checks, DLQ, failing a workflow."""

from __future__ import annotations

from engine_support import CHILD, TOPOLOGY, message, start

from foldflow.definitions import Definition
from foldflow.processors.runtime.handling import Current, InputHandler, InputRecord, Outcome
from foldflow.processors.runtime.records import DefinitionTable, decode_value
from foldflow.processors.runtime.store import FINISHED
from foldflow.schemas.codec import decode, encode
from foldflow.schemas.messages import (
    Envelope,
    StartWorkflow,
    TaskSucceeded,
    WorkflowCompleted,
    WorkflowFailed,
    dump_json,
)

BIG = Definition.from_data({
    "name": "big",
    "steps": [{"id": "s", "task": "t.x",
               "input": {"a": "${input.blob}", "b": "${input.blob}", "c": "${input.blob}"}}],
})  # fmt: skip
# The door refuses a sleep past 365 d; a definition registered before that bound existed
# may still hold one whose end no Avro long can carry.
_DAY = Definition.from_data({"name": "forever", "steps": [{"id": "z", "sleep": "1d"}]})
_ENDLESS = _DAY.steps[0].model_copy(update={"sleep": 10**17 * 86_400_000})
FOREVER = _DAY.model_copy(update={"steps": [_ENDLESS]})
DEFINITIONS = {"child": CHILD, "big": BIG, "forever": FOREVER}


def _handler(states: dict[str, object], *, limit: int = 1_000_000) -> InputHandler:
    return InputHandler(
        topology=TOPOLOGY, definitions=DefinitionTable(), max_message_bytes=limit,
        lookup=lambda wf, partition: states.get(wf),
        resolve=lambda tenant, name, version: DEFINITIONS.get(name),
    )  # fmt: skip


def _record(envelope: Envelope | None, *, offset: int = 10, topic: str = "p.wf.commands",
            key: bytes | None = None, value: bytes | None = None) -> InputRecord:  # fmt: skip
    if envelope is not None:
        key, value = key or envelope.workflow_id.encode(), encode(envelope)
    return InputRecord(topic, 0, offset, key, value, [("traceparent", b"tp")])


def _handle(handler: InputHandler, record: InputRecord) -> Outcome:
    return handler.handle(record, trace_headers=lambda: [("traceparent", b"00-span")])


def test_a_start_produces_its_events_and_task_and_a_state_record() -> None:
    handler = _handler({})
    begin = message("wf-1", StartWorkflow("child", None, dump_json({})))
    outcome = _handle(handler, _record(begin))
    assert outcome.label == "ok" and outcome.change is not None
    assert [r.topic for r in outcome.records] == ["p.wf.events", "p.wf.events",
                                                  "p.wf.tasks.t.x"]  # fmt: skip
    assert all(("traceparent", b"00-span") in r.headers for r in outcome.records)
    assert outcome.task_types == frozenset({"t.x"})
    assert outcome.change.offsets == (10, -1)  # the input is covered by the state
    live = decode_value(b"wf-1", outcome.change.record, handler.definitions)
    assert live.state == outcome.change.state  # type: ignore[union-attr]


def test_an_input_the_state_already_covers_is_skipped() -> None:
    state = start("wf-1", CHILD)
    handler = _handler({"wf-1": Current(state, (10, -1))})
    again = message("wf-1", StartWorkflow("child", None, dump_json({})), 7)
    assert _handle(handler, _record(again, offset=10)).label == "skipped"


def test_inputs_for_a_finished_workflow_no_longer_in_memory_change_nothing() -> None:
    handler = _handler({"wf-1": FINISHED})
    duplicate_start = message("wf-1", StartWorkflow("child", None, dump_json({})), 8)
    late_result = message("wf-1", TaskSucceeded("wf-1:x:run:1", "x", 1, "step"), 9)
    for envelope in (duplicate_start, late_result):
        outcome = _handle(handler, _record(envelope))
        assert outcome.label == "skipped" and outcome.records == []


def test_undecodable_and_misaddressed_records_go_to_the_dlq_with_a_reason() -> None:
    handler = _handler({})
    junk = _handle(handler, _record(None, key=b"wf-x", value=b"not avro"))
    assert junk.label == "dlq" and junk.dead_letter_kind == "NotAvroError"
    (parked,) = junk.records
    assert parked.topic == "p.wf.dlq" and parked.value == b"not avro"
    headers = dict(parked.headers)
    assert headers["dlq.topic"] == b"p.wf.commands" and headers["dlq.offset"] == b"10"
    assert headers["traceparent"] == b"tp"  # the original headers travel along
    event = message("wf-x", WorkflowCompleted())
    wrong = _handle(handler, _record(event))
    assert wrong.label == "dlq" and wrong.dead_letter_kind == "InvalidInput"
    other_key = _handle(handler, _record(message("wf-y", StartWorkflow("child", None, "{}")),
                                         key=b"wf-z"))  # fmt: skip
    assert other_key.label == "dlq" and b"differs" in dict(other_key.records[0].headers)[
        "dlq.reason"]  # fmt: skip


def test_a_task_command_over_the_size_limit_fails_only_that_workflow() -> None:
    # under the decider's own bound on a rendered input, over this producer's record limit
    handler = _handler({}, limit=150_000)
    begin = message("wf-big", StartWorkflow("big", None, dump_json({"blob": "x" * 60_000})))
    outcome = _handle(handler, _record(begin))
    assert outcome.label == "error"
    (failed,) = [decode(r.value or b"") for r in outcome.records]
    assert isinstance(failed.payload, WorkflowFailed) and failed.sequence == 1
    assert "step.scheduled.v1 of step s" in failed.payload.error
    assert "over the 150,000-byte record limit" in failed.payload.error
    assert outcome.change is not None and outcome.change.state.status == "failed"
    assert outcome.change.record.startswith(b"F1")  # a finished summary, small
    assert outcome.change.state.applied == (begin.event_id,)  # a replay changes nothing


def test_a_definition_past_the_bounds_parks_its_start_with_the_problem() -> None:
    """A sleep whose end no Avro long holds cannot be registered any more; one registered
    before the bounds existed is refused when the definition is read, not wedged on."""
    outcome = _handle(_handler({}), _record(message("wf-z", StartWorkflow("forever", None, "{}"))))
    assert outcome.label == "dlq" and outcome.change is None
    reason = dict(outcome.records[0].headers)["dlq.reason"]
    assert b"steps[0].sleep" in reason and b"not a duration" in reason


def test_an_input_whose_failure_cannot_be_produced_either_goes_to_the_dlq() -> None:
    # a limit no WorkflowFailed fits: nothing of the workflow can be produced
    handler = _handler({}, limit=10)
    begin = message("wf-1", StartWorkflow("child", None, dump_json({})))
    outcome = _handle(handler, _record(begin))
    assert outcome.label == "dlq" and outcome.dead_letter_kind == "Unproducible"
    assert outcome.change is None  # the workflow's state does not move


def test_a_state_too_large_to_store_fails_the_workflow() -> None:
    state = start("wf-s", CHILD)
    handler = _handler({"wf-s": Current(state, (1, -1))}, limit=20_000)
    big_output = dump_json({"out": "y" * 25_000})
    done = message("wf-s", TaskSucceeded("wf-s:x:run:1", "x", 1, "step", big_output), 2)
    outcome = _handle(handler, _record(done, topic="p.wf.results", offset=3))
    assert outcome.label == "error"
    assert outcome.change is not None and outcome.change.state.status == "failed"
