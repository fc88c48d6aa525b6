"""The projector against the real Kafka and PostgreSQL: scenarios, duplicates, gaps, DLQ."""

from __future__ import annotations

import dataclasses
import uuid

from confluent_kafka import Consumer, Producer
from projection_fixtures import RunProjector
from projection_support import (
    SCENARIOS,
    TIMEOUT,
    Script,
    caught_up,
    compensation_lost,
    completed,
    deadline,
    definition_envelope,
    dump_tables,
    exhausted,
    publish,
    saga_after_timeout,
    timed_out,
    wait_for_events,
    wait_until,
)
from prometheus_client import REGISTRY
from sqlalchemy import Engine, func, select

from foldflow.kafka import kafka_config
from foldflow.observability.outcomes import OUTCOMES
from foldflow.producers import Publisher
from foldflow.projections import queries
from foldflow.projections.models import workflow_events, workflow_instances
from foldflow.projections.projector import ProjectorOptions
from foldflow.schemas import messages as m
from foldflow.settings import Settings
from foldflow.topics import Topology


def test_every_kind_of_workflow_is_projected_as_its_events_say(
    settings: Settings, engine: Engine, publisher: Publisher, run_projector: RunProjector
) -> None:
    scripts = {name: make(f"wf-{name}-{uuid.uuid4().hex[:6]}", "acme")
               for name, make in SCENARIOS.items()}
    defs = [definition_envelope("order", v, tenant="acme") for v in (1, 2)]
    publisher.publish_many([(Topology.of(settings).definitions, d) for d in defs])
    refused = Script(f"wf-refused-{uuid.uuid4().hex[:6]}", "acme")
    refused.add(m.WorkflowFailed("unknown definition nope v7"))
    n = publish(publisher, settings, [*scripts.values(), refused])
    with run_projector():
        wait_for_events(engine, n)
        wait_until(lambda: queries.list_definitions(engine, "acme"), timeout=TIMEOUT,
                   what="definitions")

    expected_status = {"completed": "completed", "retried": "completed", "failed": "failed",
                       "compensated": "compensated", "cancelled": "cancelled",
                       "signalled": "completed", "terminated": "terminated"}
    for name, script in scripts.items():
        wid = script.workflow_id
        detail = queries.get_workflow(engine, "acme", wid)
        assert detail is not None, name
        assert detail.status == expected_status[name], name
        assert detail.last_sequence == len(script.events)
        assert detail.created_at.timestamp() * 1000 == script.events[0].timestamp
        history = queries.get_history(engine, "acme", wid, limit=1000)
        assert history is not None
        assert [(e.sequence, e.event_id, e.event_type) for e in history] == [
            (e.sequence, e.event_id, e.event_type) for e in script.events]
        assert queries.get_workflow(engine, "other-tenant", wid) is None
        assert queries.get_history(engine, "other-tenant", wid) is None

    failed_at_start = queries.get_workflow(engine, "acme", refused.workflow_id)
    assert failed_at_start is not None
    assert (failed_at_start.status, failed_at_start.definition, failed_at_start.version) == (
        "failed", "nope", 7)
    done = queries.get_workflow(engine, "acme", scripts["completed"].workflow_id)
    assert done is not None and done.terminal
    assert done.output == {"paid": 42}
    assert [(s.step_id, s.status, s.attempts, s.output) for s in done.steps] == [
        ("reserve", "succeeded", 1, {"reservation": "r-1"}),
        ("charge", "succeeded", 1, {"paid": 42}),
    ]
    retried = queries.get_workflow(engine, "acme", scripts["retried"].workflow_id)
    assert retried is not None
    assert [(s.step_id, s.attempts, s.error) for s in retried.steps] == [("call", 3, "boom 2")]
    saga = queries.get_workflow(engine, "acme", scripts["compensated"].workflow_id)
    assert saga is not None
    assert {s.step_id: (s.status, s.compensation_status, s.compensation_attempts)
            for s in saga.steps} == {"reserve": ("succeeded", "compensated", 2),
                                     "charge": ("failed", None, 0)}
    signalled = queries.get_workflow(engine, "acme", scripts["signalled"].workflow_id)
    assert signalled is not None
    assert [(s.step_id, s.status) for s in signalled.steps] == [
        ("approve", "succeeded"), ("escalate", "skipped"), ("ship", "succeeded")]
    page = queries.get_history(engine, "acme", scripts["signalled"].workflow_id,
                               after_sequence=2, limit=2)
    assert page is not None and [e.sequence for e in page] == [3, 4]
    assert page[0].payload == {"name": "approval", "data": {"by": "alice"}, "step_id": "approve"}

    assert [(d.name, d.version) for d in queries.list_definitions(engine, "acme")] == [
        ("order", 1), ("order", 2)]
    assert queries.workflow_status(engine, "acme", scripts["failed"].workflow_id) == "failed"
    assert queries.workflow_status(engine, "other-tenant", scripts["failed"].workflow_id) is None
    assert queries.workflow_status(engine, "acme", "no-such-workflow") is None
    latest = queries.get_definition(engine, "acme", "order")
    assert latest is not None and latest.version == 2
    assert queries.get_definition(engine, "other-tenant", "order") is None
    assert queries.wait_for_status(engine, "acme", scripts["failed"].workflow_id,
                                   timeout=1).status == "failed"  # type: ignore[union-attr]


def test_events_delivered_twice_change_nothing(
    settings: Settings, engine: Engine, publisher: Publisher, run_projector: RunProjector
) -> None:
    scripts = [make(f"wf-dup-{name}-{uuid.uuid4().hex[:6]}", "default")
               for name, make in SCENARIOS.items()]
    n = publish(publisher, settings, scripts)
    with run_projector():
        wait_for_events(engine, n)
        before = dump_tables(engine)
        # the orchestrator re-emits after a crash: the same events (ids, sequences) again
        publish(publisher, settings, scripts)
        publish(publisher, settings, [Script(s.workflow_id, events=s.events[2:5]) for s in scripts])
        wait_until(lambda: caught_up(engine, settings), timeout=TIMEOUT, what="offsets at the end")
    after = dump_tables(engine)
    assert before["projection_offsets"] != after["projection_offsets"]  # it did consume them
    for table in ("workflow_instances", "step_executions", "workflow_events"):
        assert after[table] == before[table], table


def test_a_gap_stops_the_batch_and_is_never_skipped(
    settings: Settings, engine: Engine, publisher: Publisher, run_projector: RunProjector
) -> None:
    s = completed(f"wf-gap-{uuid.uuid4().hex[:6]}")
    other = completed(f"wf-ok-{uuid.uuid4().hex[:6]}")
    topic = Topology.of(settings).events
    gaps_before = REGISTRY.get_sample_value("foldflow_projection_gaps_total") or 0.0
    publisher.publish_many([(topic, e) for e in (s.events[0], s.events[1], s.events[3])])
    with run_projector():
        wait_until(lambda: (REGISTRY.get_sample_value("foldflow_projection_gaps_total") or 0)
                   >= gaps_before + 2, timeout=TIMEOUT, what="the gap to be met (twice)")
        with engine.connect() as conn:
            seqs = conn.execute(select(workflow_events.c.sequence).where(
                workflow_events.c.workflow_id == s.workflow_id)).scalars().all()
        assert 4 not in seqs
        assert set(seqs) <= {1, 2}
        # the missing event arrives (late), then the rest
        publisher.publish_many([(topic, s.events[2]), *((topic, e) for e in s.events[4:]),
                                *((topic, e) for e in other.events)])
        wait_for_events(engine, len(s.events) + len(other.events))
    history = queries.get_history(engine, "default", s.workflow_id)
    assert history is not None
    assert [e.sequence for e in history] == [1, 2, 3, 4, 5, 6]
    detail = queries.get_workflow(engine, "default", s.workflow_id)
    assert detail is not None and detail.status == "completed"


def test_undecodable_records_go_to_the_dlq_and_the_projector_moves_on(
    settings: Settings, engine: Engine, publisher: Publisher, run_projector: RunProjector
) -> None:
    topo = Topology.of(settings)
    s = completed(f"wf-dlq-{uuid.uuid4().hex[:6]}")
    publisher.publish_many([(topo.events, e) for e in s.events[:3]])
    raw = Producer(kafka_config(settings, {
                    "partitioner": "murmur2_random"}))
    raw.produce(topo.events, key=s.workflow_id.encode(), value=b"\xc3\x01not avro at all")
    command = m.Envelope(event_id=str(uuid.uuid4()), timestamp=1, source="x",
                         correlation_id="c", workflow_id=s.workflow_id,
                         payload=m.CancelWorkflow("wrong topic"))
    assert raw.flush(10) == 0
    publisher.publish(topo.events, command)
    publisher.publish_many([(topo.events, e) for e in s.events[3:]])
    with run_projector():
        wait_for_events(engine, len(s.events))
        wait_until(lambda: caught_up(engine, settings), timeout=TIMEOUT, what="offsets at end")

    c = Consumer(kafka_config(settings, {"group.id": str(uuid.uuid4()),
                  "auto.offset.reset": "earliest"}))
    c.subscribe([topo.dlq])
    parked: list[dict[str, bytes]] = []
    try:
        def two() -> bool:
            msg = c.poll(1.0)
            if msg is not None and msg.error() is None:
                parked.append(dict(msg.headers() or []))
            return len(parked) >= 2
        wait_until(two, timeout=TIMEOUT, interval=0, what="two DLQ records")
    finally:
        c.close()
    reasons = sorted(h["dlq.reason_kind"].decode() for h in parked)
    assert reasons == ["UnknownSchemaError", "UnprojectableError"]
    assert all(h["dlq.topic"].decode() == topo.events for h in parked)


def test_a_restarted_projector_continues_from_the_stored_positions(
    settings: Settings, engine: Engine, publisher: Publisher, run_projector: RunProjector
) -> None:
    def sample(name: str) -> float:
        return REGISTRY.get_sample_value(name) or 0.0

    applied_before = sample("foldflow_projection_events_applied_total")
    batches_before = sample("foldflow_projection_batch_size_events_count")
    lags_before = sample("foldflow_projection_lag_seconds_count")
    first = [completed(f"wf-a{i}-{uuid.uuid4().hex[:6]}") for i in range(20)]
    n1 = publish(publisher, settings, first)
    with run_projector():
        wait_for_events(engine, n1)
    assert sample("foldflow_projection_events_applied_total") - applied_before == n1
    assert sample("foldflow_projection_lag_seconds_count") - lags_before == n1
    assert sample("foldflow_projection_batch_size_events_count") > batches_before
    second = [completed(f"wf-b{i}-{uuid.uuid4().hex[:6]}") for i in range(20)]
    n2 = publish(publisher, settings, second)
    with run_projector():
        wait_for_events(engine, n1 + n2)
        wait_until(lambda: caught_up(engine, settings), timeout=TIMEOUT, what="offsets at end")
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(workflow_instances).where(
            workflow_instances.c.status == "completed")).scalar_one() == 40


def test_a_batch_is_written_when_its_first_record_arrives_not_after_the_wait(
    settings: Settings, engine: Engine, publisher: Publisher, run_projector: RunProjector
) -> None:
    # batch_timeout is how long the loop waits for a first record; records that arrive are
    # written at once, with whatever else came, not held until the wait is over
    first = completed(f"wf-first-{uuid.uuid4().hex[:6]}")
    n1 = publish(publisher, settings, [first])
    with run_projector(ProjectorOptions(batch_timeout=8.0)):
        wait_for_events(engine, n1)  # assigned and caught up
        n2 = publish(publisher, settings, [completed(f"wf-next-{uuid.uuid4().hex[:6]}")])
        wait_for_events(engine, n1 + n2, timeout=4.0)  # well inside the 8 s wait


def test_each_applied_event_continues_the_trace_that_produced_it(
    settings: Settings, engine: Engine, publisher: Publisher, run_projector: RunProjector
) -> None:
    from opentelemetry import trace
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import SpanKind

    from foldflow.observability.tracing import configure_tracing

    exporter = InMemorySpanExporter()
    configure_tracing(settings, service="test").add_span_processor(SimpleSpanProcessor(exporter))
    s = completed(f"wf-trace-{uuid.uuid4().hex[:6]}")
    with trace.get_tracer(__name__).start_as_current_span("orchestrate") as parent:
        n = publish(publisher, settings, [s])
    ctx = parent.get_span_context()
    with run_projector():
        wait_for_events(engine, n)
    finished = exporter.get_finished_spans()
    sends = {sp.context.span_id: sp for sp in finished
             if sp.kind is SpanKind.PRODUCER and sp.context is not None}
    spans = [sp for sp in finished if sp.name == f"process {settings.topic_prefix}wf.events"
             and sp.attributes and sp.attributes.get("foldflow.workflow_id") == s.workflow_id]
    assert sorted(sp.attributes["foldflow.sequence"] for sp in spans) == [  # type: ignore[index]
        1, 2, 3, 4, 5, 6]
    for sp in spans:
        assert sp.kind is SpanKind.CONSUMER
        assert sp.context is not None and sp.context.trace_id == ctx.trace_id
        # parent: the `send` span of the publish, itself a child of "orchestrate"
        assert sp.parent is not None and sp.parent.span_id in sends
        send = sends[sp.parent.span_id]
        assert send.parent is not None and send.parent.span_id == ctx.span_id
        assert sp.attributes["messaging.kafka.offset"] == send.attributes[  # type: ignore[index]
            "messaging.kafka.offset"]
        assert sp.attributes["messaging.consumer.group.name"]  # type: ignore[index]
        [batch_link] = sp.links
        batches = [b for b in finished if b.context is not None
                   and b.context.span_id == batch_link.context.span_id]
        assert batches and batches[0].name == "process batch"


def _renamed(script: Script, definition: str) -> Script:
    """The same log under another definition name (so counters start from zero)."""
    first = script.events[0]
    if isinstance(first.payload, m.WorkflowStarted):
        payload = dataclasses.replace(first.payload, definition_name=definition)
        script.events[0] = dataclasses.replace(first, payload=payload)
    return script


def test_each_ended_workflow_is_counted_once_with_the_cause_of_its_end(
    settings: Settings, engine: Engine, publisher: Publisher, run_projector: RunProjector
) -> None:
    definition = f"outcomes-{uuid.uuid4().hex[:6]}"
    builders = {"completed": completed, "failed": lambda w: SCENARIOS["failed"](w, "default"),
                "cancelled": lambda w: SCENARIOS["cancelled"](w, "default"),
                "timed_out": timed_out, "exhausted": exhausted,
                "saga_after_timeout": saga_after_timeout, "deadline": deadline,
                "compensation_lost": compensation_lost}
    scripts = {name: _renamed(make(f"wf-{name}-{uuid.uuid4().hex[:6]}"), definition)
               for name, make in builders.items()}

    def counted() -> dict[tuple[str, str], float]:
        out: dict[tuple[str, str], float] = {}
        for family in REGISTRY.collect():
            for sample in family.samples:
                if (sample.name == "foldflow_workflow_outcomes_total"
                        and sample.labels["definition"] == definition):
                    out[(sample.labels["status"], sample.labels["cause"])] = sample.value
        return out

    # The saga's failure and its end land in different batches (and projector runs):
    # the cause comes from the stored history, not from what one batch saw.
    saga = scripts["saga_after_timeout"]
    split = next(i for i, e in enumerate(saga.events)
                 if isinstance(e.payload, m.WorkflowCompensating)) + 1
    head = Script(saga.workflow_id, events=saga.events[:split])
    rest = [s for name, s in scripts.items() if name != "saga_after_timeout"]
    n1 = publish(publisher, settings, [head, *rest])
    with run_projector():
        wait_for_events(engine, n1)
    tail = Script(saga.workflow_id, events=saga.events[split:])
    n2 = publish(publisher, settings, [tail])
    # the whole log of an ended workflow again: skipped as duplicates, not counted again
    publish(publisher, settings, [scripts["timed_out"]])
    with run_projector():
        wait_for_events(engine, n1 + n2)
        wait_until(lambda: caught_up(engine, settings), timeout=TIMEOUT, what="offsets at end")

    every = counted()
    assert set(every) == set(OUTCOMES)  # at 0 from the first start on: no first increment lost
    assert {k: v for k, v in every.items() if v} == {
        ("completed", "none"): 1.0,
        ("failed", "business"): 1.0,
        ("cancelled", "requested"): 1.0,
        ("failed", "timeout"): 1.0,
        ("failed", "error"): 1.0,
        ("compensated", "timeout"): 1.0,
        ("failed", "deadline"): 1.0,
        ("compensation_failed", "timeout"): 1.0,
    }


def test_outcome_series_start_at_zero_for_every_known_definition(
    settings: Settings, engine: Engine, publisher: Publisher, run_projector: RunProjector
) -> None:
    from foldflow.observability.metrics import WORKFLOW_OUTCOMES

    name = f"zeroes-{uuid.uuid4().hex[:6]}"

    def series() -> dict[tuple[str, str], float]:
        return {(s.labels["status"], s.labels["cause"]): s.value
                for family in REGISTRY.collect() for s in family.samples
                if s.name == "foldflow_workflow_outcomes_total"
                and s.labels["definition"] == name}

    publisher.publish(Topology.of(settings).definitions, definition_envelope(name, 1))
    with run_projector():
        wait_until(lambda: queries.list_definitions(engine, "default"), timeout=TIMEOUT,
                   what="the definition")
        wait_until(series, timeout=TIMEOUT, what="outcome series of the registered definition")
    assert series() == dict.fromkeys(OUTCOMES, 0.0)

    for status, cause in OUTCOMES:  # as a freshly started process has them: none
        WORKFLOW_OUTCOMES.remove(name, status, cause)
    with run_projector():  # a restart: the known definitions come from PostgreSQL
        wait_until(series, timeout=TIMEOUT, what="outcome series after a restart")
    assert series() == dict.fromkeys(OUTCOMES, 0.0)
