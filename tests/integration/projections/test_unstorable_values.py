"""Values PostgreSQL refuses never stop the projector (real Kafka, PostgreSQL, gateway).

The events are written straight to ``wf.events``, as a worker's output or a hostile
record would get there past the gateway: ``NaN``, ``±Infinity``, ``1e999``, ``\\u0000``,
lone surrogates, text that is not JSON, nesting 300 deep, an id over its column, a
timestamp past year 9999, and an event id another event already holds. Each is projected
(history contiguous, the workflow row advancing), flagged in ``altered``, parked on
``wf.dlq`` with its reason, and readable through the gateway; the clean workflows behind
them are projected as usual.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import uuid

import httpx
from confluent_kafka import Consumer
from fastapi import FastAPI
from projection_fixtures import ProjectorProcess, RunProjector
from projection_support import (
    Script,
    caught_up,
    completed,
    definition_envelope,
    dump_tables,
    event_count,
    inconsistencies,
    publish,
    wait_until,
)
from sqlalchemy import Engine, text

from foldflow.gateway.app import create_app
from foldflow.gateway.keys import SCOPES, create_api_key
from foldflow.kafka import kafka_config
from foldflow.producers import Publisher
from foldflow.projections import queries
from foldflow.projections.rebuild import Rebuild
from foldflow.schemas import messages as m
from foldflow.settings import Settings
from foldflow.topics import Topology

WAIT_S = 60.0


def _dlq_records(settings: Settings, n: int) -> list[dict[str, bytes]]:
    """The headers of the test's DLQ records, once at least ``n`` arrived (and 2 s more)."""
    consumer = Consumer(kafka_config(settings, {
                         "group.id": f"dlq-{uuid.uuid4().hex[:8]}",
                         "auto.offset.reset": "earliest"}))
    consumer.subscribe([Topology.of(settings).dlq])
    found: list[dict[str, bytes]] = []

    def more() -> bool:
        found.extend(dict(msg.headers() or []) for msg in consumer.consume(100, 0.5)
                     if msg.error() is None)
        return len(found) >= n

    try:
        wait_until(more, timeout=WAIT_S, what=f"{n} DLQ records")
        for _ in range(4):  # a duplicate would arrive right behind
            more()
    finally:
        consumer.close()
    return found


async def _get(app: FastAPI, key: str, paths: list[str]) -> dict[str, httpx.Response]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway",
                                 headers={"Authorization": f"Bearer {key}"}) as http:
        return {path: await http.get(path) for path in paths}


def _hostile_workflows(tenant: str, *, projected: m.Envelope) -> dict[str, Script]:
    nan = Script(f"wf-nan-{uuid.uuid4().hex[:6]}", tenant)
    nan.add(m.WorkflowStarted("order", 1, m.dump_json({"name": "order"}),
                              '{"x": NaN, "y": -Infinity, "z": [1e999]}', tenant))
    tid = m.task_id(nan.workflow_id, "a", 1)
    nan.add(m.StepScheduled("a", 1, tid, "builtin.http", '{"q": "a\\u0000b"}', 5000))
    nan.add(m.StepCompleted("a", 1, '{"body": "\\ud800 lone", "k\\u0000": 1}', tid))
    nan.add(m.WorkflowCompleted('{"deep": ' + "[" * 300 + "1" + "]" * 300 + "}"))

    text_ = Script(f"wf-text-{uuid.uuid4().hex[:6]}", tenant).start()
    tid = m.task_id(text_.workflow_id, "call", 1)
    text_.add(m.StepScheduled("call", 1, tid, "builtin.echo", "{}", 5000))
    text_.add(m.StepAttemptFailed("call", 1, tid, "boom \x00 at the end", True,
                                  retry_at=text_.clock + 100))
    text_.add(m.StepScheduled("call", 2, m.task_id(text_.workflow_id, "call", 2),
                              "builtin.echo", "{}", 5000))
    text_.add(m.StepCompleted("call", 2, "this is not json",
                              m.task_id(text_.workflow_id, "call", 2)))
    text_.add(m.WorkflowCompleted("null"))

    long_ids = Script(f"wf-long-{uuid.uuid4().hex[:6]}", tenant).start()
    long_ids.run_step("s" * 500)
    last = long_ids.add(m.WorkflowCompleted("{}"))
    long_ids.events[-1] = dataclasses.replace(last, timestamp=2**62)

    taken = Script(f"wf-taken-{uuid.uuid4().hex[:6]}", tenant).start()
    taken.run_step("a")
    # sequence 2 claims the event id of an event already projected
    taken.events[1] = dataclasses.replace(taken.events[1], event_id=projected.event_id)
    taken.add(m.WorkflowCompleted("{}"))
    return {"nan": nan, "text": text_, "long": long_ids, "taken": taken}


def _altered(engine: Engine) -> dict[tuple[str, int], dict[str, object]]:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT workflow_id, sequence, altered FROM workflow_events "
                                 "WHERE altered IS NOT NULL"))
        return {(r.workflow_id, r.sequence): r.altered for r in rows}


def test_unstorable_values_are_projected_flagged_and_dead_lettered(
    settings: Settings, engine: Engine, publisher: Publisher, run_projector: RunProjector
) -> None:
    tenant = "acme"
    clean = [completed(f"wf-clean-{i}-{uuid.uuid4().hex[:6]}", tenant) for i in range(6)]
    hostile = _hostile_workflows(tenant, projected=clean[0].events[0])
    bad_definition = definition_envelope("shaky", 1, tenant=tenant)
    bad_definition = dataclasses.replace(bad_definition, payload=dataclasses.replace(
        bad_definition.payload, definition_json='{"name": "shaky", "limit": NaN}'))
    publisher.publish(Topology.of(settings).definitions, bad_definition)
    first = publish(publisher, settings, clean[:1])

    with run_projector():  # a projector that dies fails the test with its error
        wait_until(lambda: event_count(engine) >= first, timeout=WAIT_S, what="the first")
        n = first + publish(publisher, settings, [*hostile.values(), *clean[1:]])
        wait_until(lambda: event_count(engine) >= n, timeout=WAIT_S,
                   what=f"{n} events projected")
        wait_until(lambda: queries.list_definitions(engine, tenant), timeout=WAIT_S,
                   what="the definition")
        assert event_count(engine) == n
        assert inconsistencies(engine) == []  # every history contiguous from 1

        for script in [*hostile.values(), *clean]:
            wid = script.workflow_id
            detail = queries.get_workflow(engine, tenant, wid)
            assert detail is not None and detail.status == "completed", wid
            assert detail.last_sequence == len(script.events)

        nan = queries.get_workflow(engine, tenant, hostile["nan"].workflow_id)
        assert nan is not None
        assert nan.input == {"x": None, "y": None, "z": [None]}
        assert nan.steps[0].input == {"q": "a\ufffdb"}
        assert nan.steps[0].output == {"body": "\ufffd lone", "k\ufffd": 1}
        text_ = queries.get_workflow(engine, tenant, hostile["text"].workflow_id)
        assert text_ is not None
        assert text_.steps[0].output is None and text_.steps[0].attempts == 2
        [long_step] = queries.get_workflow(engine, tenant,  # type: ignore[union-attr]
                                           hostile["long"].workflow_id).steps
        assert long_step.status == "succeeded" and len(long_step.step_id) == 200

        altered = _altered(engine)
        keys = {name: m.workflow_key(tenant, s.workflow_id) for name, s in hostile.items()}
        assert set(altered) == {
            (keys["nan"], 1), (keys["nan"], 2), (keys["nan"], 3), (keys["nan"], 4),
            (keys["text"], 3), (keys["text"], 5),
            (keys["long"], 2), (keys["long"], 3), (keys["long"], 4),
            (keys["taken"], 2),
        }
        nan_start = altered[(keys["nan"], 1)]
        assert nan_start["original"] == {  # type: ignore[index]
            "payload.input_json": '{"x": NaN, "y": -Infinity, "z": [1e999]}'}
        assert [p["path"] for p in nan_start["problems"]] == [  # type: ignore[index]
            "$.x", "$.y", "$.z[0]"]
        assert altered[(keys["text"], 3)]["original"] == {  # type: ignore[index]
            "payload.error": "boom \\u0000 at the end"}
        refused = altered[(keys["taken"], 2)]
        assert "UniqueViolation" in json.dumps(refused)
        assert refused["original"]["event_id"] == clean[0].events[0].event_id  # type: ignore[index]
        with engine.connect() as conn:
            definition = conn.execute(text(
                "SELECT definition, altered FROM workflow_definitions WHERE name = 'shaky'"
            )).one()
        assert definition.definition == {"name": "shaky", "limit": None}
        assert definition.altered["problems"][0]["path"] == "$.limit"

        # every altered record is on the DLQ once, with its reason
        dlq = _dlq_records(settings, len(altered) + 1)
        origins = [(h["dlq.topic"], h["dlq.partition"], h["dlq.offset"]) for h in dlq]
        assert len(origins) == len(set(origins)) == len(altered) + 1
        assert {h["dlq.reason_kind"] for h in dlq} == {b"UnstorableValueError"}
        assert any(b"NaN is not a JSON number" in h["dlq.reason"] for h in dlq)
        assert any(b"PostgreSQL refused it" in h["dlq.reason"] for h in dlq)

        # the gateway serves every stored row
        key = create_api_key(engine, tenant, SCOPES, "reader")
        app = create_app(settings.model_copy(update={"api_keys": ()}), publisher=publisher,
                         engine=engine)
        ids = {name: s.workflow_id for name, s in hostile.items()}
        answers = asyncio.run(_get(app, key, [
            path for wid in ids.values()
            for path in (f"/v1/workflows/{wid}", f"/v1/workflows/{wid}/events")
        ]))
        for path, response in answers.items():
            assert response.status_code == 200, (path, response.text[:300])
        assert answers[f"/v1/workflows/{ids['nan']}"].json()["output"]["deep"] is not None
        history = answers[f"/v1/workflows/{ids['nan']}/events"].json()["items"]
        assert history[0]["altered"]["problems"][0]["path"] == "$.x"
        assert history[0]["payload"]["input"] == {"x": None, "y": None, "z": [None]}


def test_a_rebuild_stores_altered_events_as_the_live_projector_did(
    settings: Settings, engine: Engine, publisher: Publisher, run_projector: RunProjector
) -> None:
    hostile = _hostile_workflows("acme", projected=completed("wf-unused", "acme").events[0])
    del hostile["taken"]  # which of two events holding one id wins depends on batching
    scripts = [*hostile.values(), *(completed(f"wf-c{i}-{uuid.uuid4().hex[:6]}", "acme")
                                    for i in range(10))]
    n = publish(publisher, settings, scripts)
    with run_projector():
        wait_until(lambda: event_count(engine) >= n, timeout=WAIT_S, what=f"{n} events")
        wait_until(lambda: caught_up(engine, settings), timeout=WAIT_S, what="offsets at end")
        live = dump_tables(engine)
        assert _altered(engine)
        Rebuild(settings, engine, batch=500).run()
        assert dump_tables(engine) == live


def test_the_projector_process_stays_up_on_a_value_postgresql_refuses(
    settings: Settings, engine: Engine, publisher: Publisher,
    projector_process: ProjectorProcess,
) -> None:
    """What `foldflow ps` showed as `exited` before: the process keeps running and serves
    the workflows behind the bad one."""
    bad = Script(f"wf-nan-{uuid.uuid4().hex[:6]}").start(input_=None)
    bad.events[0] = dataclasses.replace(bad.events[0], payload=dataclasses.replace(
        bad.events[0].payload, input_json='{"x": NaN}'))
    behind = [completed(f"wf-behind-{i}-{uuid.uuid4().hex[:6]}") for i in range(6)]
    n = publish(publisher, settings, [bad, *behind])
    projector_process.start()
    wait_until(lambda: event_count(engine) >= n or not projector_process.alive(),
               timeout=WAIT_S, what=f"{n} events projected")
    assert projector_process.alive(), projector_process.log.read_text()[-3000:]
    assert event_count(engine) == n
    assert set(_altered(engine)) == {(bad.workflow_id, 1)}
