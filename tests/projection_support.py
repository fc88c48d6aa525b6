"""Helpers shared by the projection tests (unit, integration, chaos).

Scenarios are realistic event logs of each kind of workflow, built the way the
orchestrator builds them (deterministic ids, sequences from 1, ``source="orchestrator"``).
The service helpers give each test session its own PostgreSQL database and each test its
own topics, so the tests never touch the shared ``foldflow`` database or default topics.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import psycopg
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition
from psycopg import sql
from sqlalchemy import Engine, func, make_url, select, text

from foldflow.kafka import kafka_config
from foldflow.producers import Publisher
from foldflow.projections.models import workflow_events
from foldflow.projections.projector import PROJECTION
from foldflow.projections.store import Record
from foldflow.schemas import messages as m
from foldflow.schemas.codec import encode
from foldflow.settings import Settings
from foldflow.topics import Topology

T = TypeVar("T")

START_MS = 1_780_000_000_000


@dataclass
class Script:
    """The event log of one workflow, appended to like the orchestrator does.

    ``workflow_id`` is the tenant's own id; the events carry the workflow's ``key``.
    """

    workflow_id: str
    tenant: str = "default"
    clock: int = START_MS
    events: list[m.Envelope] = field(default_factory=list)

    @property
    def key(self) -> str:
        """The workflow's key (its Kafka key and the projection rows' id)."""
        return m.workflow_key(self.tenant, self.workflow_id)

    def add(self, payload: m.Payload, *, step_ms: int = 10) -> m.Envelope:
        """Append the next event (sequence + 1, time + ``step_ms``)."""
        self.clock += step_ms
        seq = len(self.events) + 1
        env = m.Envelope(
            event_id=m.event_id_for(self.key, seq),
            timestamp=self.clock,
            source="orchestrator",
            correlation_id=f"corr-{self.key}",
            workflow_id=self.key,
            payload=payload,
            sequence=seq,
            causation_id=str(uuid.uuid5(uuid.NAMESPACE_OID, f"{self.key}/{seq}")),
            tenant=self.tenant,
        )
        self.events.append(env)
        return env

    def start(self, definition: str = "order", *, input_: object = None) -> Script:
        """Append ``workflow.started``."""
        self.add(m.WorkflowStarted(
            definition_name=definition, definition_version=1,
            definition_json=m.dump_json({"name": definition, "version": 1}),
            input_json=m.dump_json(input_ if input_ is not None else {"n": 1}),
            tenant=self.tenant,
        ))
        return self

    def run_step(self, step: str, *, attempt: int = 1, output: object = None,
                 task_type: str = "builtin.echo") -> Script:
        """Append ``step.scheduled`` + ``step.completed``."""
        tid = m.task_id(self.key, step, attempt)
        self.add(m.StepScheduled(step, attempt, tid, task_type, m.dump_json({"s": step}), 5000))
        self.add(m.StepCompleted(step, attempt, m.dump_json(output if output is not None
                                                            else {"done": step}), tid))
        return self

    def fail_attempt(self, step: str, attempt: int, *, retry: bool) -> Script:
        """Append ``step.scheduled`` + ``step.attempt_failed`` (with ``retry_at`` if retry)."""
        tid = m.task_id(self.key, step, attempt)
        self.add(m.StepScheduled(step, attempt, tid, "builtin.fail", "{}", 5000))
        self.add(m.StepAttemptFailed(step, attempt, tid, f"boom {attempt}", retryable=retry,
                                     retry_at=self.clock + 100 if retry else None))
        return self


def completed(wid: str, tenant: str = "default") -> Script:
    """Two steps in a row, then completed."""
    s = Script(wid, tenant).start()
    s.run_step("reserve", output={"reservation": "r-1"}).run_step("charge", output={"paid": 42})
    s.add(m.WorkflowCompleted(m.dump_json({"paid": 42})))
    return s


def retried(wid: str, tenant: str = "default") -> Script:
    """A step that fails twice with retries, then succeeds on attempt 3."""
    s = Script(wid, tenant).start("flaky")
    s.fail_attempt("call", 1, retry=True).fail_attempt("call", 2, retry=True)
    s.run_step("call", attempt=3, output={"ok": True})
    s.add(m.WorkflowCompleted(m.dump_json({"ok": True})))
    return s


def failed(wid: str, tenant: str = "default") -> Script:
    """A non-retryable failure with nothing to compensate."""
    s = Script(wid, tenant).start("fragile")
    s.fail_attempt("call", 1, retry=False)
    s.add(m.StepFailed("call", 1, "boom 1"))
    s.add(m.WorkflowFailed("step call failed: boom 1", failed_step_id="call"))
    return s


def compensated(wid: str, tenant: str = "default") -> Script:
    """A failure after a completed step; its compensation fails once, then succeeds."""
    s = Script(wid, tenant).start("saga")
    s.run_step("reserve", output={"reservation": "r-9"})
    s.fail_attempt("charge", 1, retry=False)
    s.add(m.StepFailed("charge", 1, "boom 1"))
    s.add(m.WorkflowCompensating("failure", "step charge failed", failed_step_id="charge"))
    for attempt in (1, 2):
        tid = m.task_id(wid, "reserve", attempt, compensation=True)
        s.add(m.CompensationScheduled("reserve", attempt, tid, "builtin.echo", "{}", 5000))
        if attempt == 1:
            s.add(m.CompensationAttemptFailed("reserve", 1, tid, "undo failed",
                                              retry_at=s.clock + 50))
        else:
            s.add(m.CompensationCompleted("reserve", 2, tid))
    s.add(m.WorkflowCompensated("step charge failed"))
    return s


def cancelled(wid: str, tenant: str = "default") -> Script:
    """Paused, resumed, then cancelled: the completed step is compensated."""
    s = Script(wid, tenant).start("saga")
    s.run_step("reserve")
    s.add(m.WorkflowPaused("ops"))
    s.add(m.WorkflowResumed("ops"))
    s.add(m.WorkflowCompensating("cancel", "customer changed their mind"))
    tid = m.task_id(wid, "reserve", 1, compensation=True)
    s.add(m.CompensationScheduled("reserve", 1, tid, "builtin.echo", "{}", 5000))
    s.add(m.CompensationCompleted("reserve", 1, tid))
    s.add(m.WorkflowCancelled("customer changed their mind"))
    return s


def signalled(wid: str, tenant: str = "default") -> Script:
    """A signal step waits, the signal arrives, a later step is skipped by its condition."""
    s = Script(wid, tenant).start("approval")
    s.add(m.StepWaiting("approve", "signal", signal_name="approval"))
    s.add(m.SignalReceived("approval", m.dump_json({"by": "alice"}), step_id="approve"))
    s.add(m.StepCompleted("approve", 1, m.dump_json({"by": "alice"})))
    s.add(m.StepSkipped("escalate", "when: approval.by == null"))
    s.run_step("ship")
    s.add(m.WorkflowCompleted(m.dump_json({"shipped": True})))
    return s


def terminated(wid: str, tenant: str = "default") -> Script:
    """Terminated while a step runs."""
    s = Script(wid, tenant).start("long")
    tid = m.task_id(wid, "wait", 1)
    s.add(m.StepScheduled("wait", 1, tid, "builtin.sleep", m.dump_json({"seconds": 60}), 90000))
    s.add(m.WorkflowTerminated("stuck"))
    return s


# --- failures told apart by their cause (foldflow.observability.outcomes) ----------------


def timed_out(wid: str) -> Script:
    """Every attempt timed out (a worker dead or too slow): failed, cause timeout."""
    s = Script(wid).start("slow")
    for attempt in (1, 2):
        tid = m.task_id(wid, "call", attempt)
        s.add(m.StepScheduled("call", attempt, tid, "builtin.sleep", "{}", 1000))
        s.add(m.StepAttemptFailed("call", attempt, tid, f"attempt {attempt} timed out",
                                  retryable=True, timed_out=True,
                                  retry_at=s.clock + 100 if attempt == 1 else None))
    s.add(m.StepFailed("call", 2, "attempt 2 timed out"))
    s.add(m.WorkflowFailed("step call failed: attempt 2 timed out", failed_step_id="call"))
    return s


def exhausted(wid: str) -> Script:
    """Retryable failures outlast the retry policy: failed, cause error."""
    s = Script(wid).start("flaky")
    s.fail_attempt("call", 1, retry=True)
    tid = m.task_id(wid, "call", 2)
    s.add(m.StepScheduled("call", 2, tid, "builtin.fail", "{}", 5000))
    s.add(m.StepAttemptFailed("call", 2, tid, "boom 2", retryable=True))
    s.add(m.StepFailed("call", 2, "boom 2"))
    s.add(m.WorkflowFailed("step call failed: boom 2", failed_step_id="call"))
    return s


def saga_after_timeout(wid: str) -> Script:
    """A timed-out step stops the saga; its compensation succeeds: compensated, timeout."""
    s = Script(wid).start("saga").run_step("reserve")
    tid = m.task_id(wid, "charge", 1)
    s.add(m.StepScheduled("charge", 1, tid, "payment.charge", "{}", 1000))
    s.add(m.StepAttemptFailed("charge", 1, tid, "timed out", retryable=True, timed_out=True))
    s.add(m.StepFailed("charge", 1, "timed out"))
    s.add(m.WorkflowCompensating("failure", "step charge failed", failed_step_id="charge"))
    ctid = m.task_id(wid, "reserve", 1, compensation=True)
    s.add(m.CompensationScheduled("reserve", 1, ctid, "builtin.echo", "{}", 5000))
    s.add(m.CompensationCompleted("reserve", 1, ctid))
    s.add(m.WorkflowCompensated("step charge failed"))
    return s


def compensation_lost(wid: str) -> Script:
    """A business failure whose compensation keeps timing out: compensation_failed, timeout."""
    s = Script(wid).start("saga").run_step("reserve")
    s.fail_attempt("charge", 1, retry=False)
    s.add(m.StepFailed("charge", 1, "declined"))
    s.add(m.WorkflowCompensating("failure", "step charge failed", failed_step_id="charge"))
    ctid = m.task_id(wid, "reserve", 1, compensation=True)
    s.add(m.CompensationScheduled("reserve", 1, ctid, "builtin.echo", "{}", 5000))
    s.add(m.CompensationAttemptFailed("reserve", 1, ctid, "timed out", timed_out=True))
    s.add(m.CompensationFailed("reserve", 1, "timed out"))
    s.add(m.WorkflowCompensationFailed("compensation of reserve failed", "reserve"))
    return s


def deadline(wid: str) -> Script:
    """The workflow timeout fires, nothing to undo: failed, cause deadline."""
    s = Script(wid).start("long")
    s.add(m.StepWaiting("nap", "sleep", until=s.clock + 10_000))
    s.add(m.WorkflowFailed("workflow timed out after 1000ms"))
    return s


def deadline_with_compensation(wid: str) -> Script:
    """The workflow timeout fires, a step is undone: compensated, cause deadline."""
    s = Script(wid).start("long").run_step("reserve")
    s.add(m.WorkflowCompensating("timeout", "workflow timed out after 1000ms"))
    ctid = m.task_id(wid, "reserve", 1, compensation=True)
    s.add(m.CompensationScheduled("reserve", 1, ctid, "builtin.echo", "{}", 5000))
    s.add(m.CompensationCompleted("reserve", 1, ctid))
    s.add(m.WorkflowCompensated("workflow timed out after 1000ms"))
    return s


def signal_never_came(wid: str) -> Script:
    """The signal a step waits for does not come in time: failed, cause business."""
    s = Script(wid).start("approval")
    s.add(m.StepWaiting("approve", "signal", signal_name="approval"))
    s.add(m.StepFailed("approve", 1, "timed out waiting for signal 'approval'"))
    s.add(m.WorkflowFailed("step approve failed", failed_step_id="approve"))
    return s


def child_failed(wid: str) -> Script:
    """A child workflow step fails: failed, cause child."""
    s = Script(wid).start("parent")
    s.add(m.ChildWorkflowRequested("kid", f"{wid}/kid", "child", 1, "{}"))
    s.add(m.StepFailed("kid", 1, f"child workflow {wid}/kid ended failed"))
    s.add(m.WorkflowFailed("step kid failed", failed_step_id="kid"))
    return s


def refused_at_start(wid: str) -> Script:
    """An unknown definition: failed at sequence 1, cause invalid."""
    s = Script(wid)
    s.add(m.WorkflowFailed("unknown definition nope v1"))
    return s


def bad_input(wid: str) -> Script:
    """Input refused by the input schema: failed, cause invalid."""
    s = Script(wid).start("strict")
    s.add(m.WorkflowFailed("input does not match input_schema at n: 'x' is not an integer"))
    return s



SCENARIOS: dict[str, Callable[[str, str], Script]] = {
    "completed": completed,
    "retried": retried,
    "failed": failed,
    "compensated": compensated,
    "cancelled": cancelled,
    "signalled": signalled,
    "terminated": terminated,
}


def interleave(scripts: Sequence[Script]) -> list[m.Envelope]:
    """The scripts' events with the workflows' turns interleaved, as in a live partition."""
    longest = max(len(s.events) for s in scripts)
    return [s.events[n] for n in range(longest) for s in scripts if n < len(s.events)]


def records(events: Sequence[m.Envelope], tp: tuple[str, int] = ("wf.events", 0)
            ) -> list[Record]:
    """``events`` as the projector's records at offsets 0, 1, ... of ``tp``."""
    return [Record(tp[0], tp[1], i, e, size=len(encode(e))) for i, e in enumerate(events)]


def definition_envelope(name: str, version: int, *, tenant: str = "default") -> m.Envelope:
    """A ``definition.registered`` envelope as the CLI/gateway publish it."""
    return m.Envelope(
        event_id=str(uuid.uuid5(uuid.NAMESPACE_OID, f"{tenant}/{name}/{version}")),
        timestamp=START_MS,
        source="test",
        correlation_id="corr-def",
        workflow_id=f"{name}:{version}",
        payload=m.DefinitionRegistered(name, version, tenant,
                                       m.dump_json({"name": name, "version": version,
                                                    "steps": [{"id": "a"}]})),
        tenant=tenant,
    )


# --- services ---------------------------------------------------------------------------


def _admin_sql(base_url: str, statement: sql.Composable) -> None:
    """Run a database-level statement as the app role, or as the postgres superuser."""
    url = make_url(base_url)
    conninfo = (f"host={url.host} port={url.port or 5432} user={url.username} "
                f"password={url.password} dbname={url.database}")
    try:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(statement)
    except psycopg.errors.InsufficientPrivilege:
        with psycopg.connect(conninfo) as conn:
            text_sql = statement.as_string(conn)
        subprocess.run(["runuser", "-u", "postgres", "--", "psql", "-v", "ON_ERROR_STOP=1",
                        "-qc", text_sql], check=True, capture_output=True, timeout=60)


@contextlib.contextmanager
def scratch_database(base_url: str) -> Iterator[str]:
    """A fresh database (owned by the app role) for one test session; dropped after."""
    url = make_url(base_url)
    name = f"foldflow_t_{uuid.uuid4().hex[:8]}"
    _admin_sql(base_url, sql.SQL("CREATE DATABASE {} OWNER {}").format(
        sql.Identifier(name), sql.Identifier(url.username or "foldflow")))
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        _admin_sql(base_url, sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
            sql.Identifier(name)))


def database_names(base_url: str) -> set[str]:
    """The name of every database of ``base_url``'s server."""
    url = make_url(base_url)
    with psycopg.connect(host=url.host, port=url.port or 5432, user=url.username,
                         password=url.password, dbname=url.database) as conn:  # fmt: skip
        return {name for (name,) in conn.execute("SELECT datname FROM pg_database")}


TRUNCATE = ("TRUNCATE workflow_instances, step_executions, workflow_events, "
            "workflow_definitions, projection_offsets")


def reset_tables(engine: Engine) -> None:
    """Empty every projection table (between tests of one session database)."""
    with engine.begin() as conn:
        conn.execute(text(TRUNCATE))


def wait_until(check: Callable[[], T | None], *, timeout: float, interval: float = 0.2,
               what: str = "condition") -> T:
    """Poll ``check`` until it returns a truthy value; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)


def dump_tables(engine: Engine) -> dict[str, list[tuple[object, ...]]]:
    """Every projection table's rows, ordered: for equality between two projections."""
    orders = {
        "workflow_instances": "id",
        "step_executions": "workflow_id, step_id",
        "workflow_events": "workflow_id, sequence",
        "workflow_definitions": "tenant, name, version",
        "projection_offsets": "projection, topic, partition",
    }
    out: dict[str, list[tuple[object, ...]]] = {}
    with engine.connect() as conn:
        for table, order in orders.items():
            cols = "*" if table != "projection_offsets" else "projection, topic, partition, " \
                "next_offset"
            query = text(f"SELECT {cols} FROM {table} ORDER BY {order}")
            out[table] = [tuple(r) for r in conn.execute(query)]
    return out


# --- Kafka + PostgreSQL probes ----------------------------------------------------------

TIMEOUT = 60.0


def publish(publisher: Publisher, settings: Settings, scripts: list[Script]) -> int:
    """Publish every event of ``scripts`` to the events topic (acked); return how many."""
    topic = Topology.of(settings).events
    items = [(topic, e) for s in scripts for e in s.events]
    publisher.publish_many(items)
    return len(items)


def event_count(engine: Engine) -> int:
    """Rows of ``workflow_events``."""
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(workflow_events)).scalar_one())


def wait_for_events(engine: Engine, n: int, *, timeout: float = TIMEOUT) -> None:
    """Wait until ``n`` events are applied, then check there are not more."""
    wait_until(lambda: event_count(engine) >= n, timeout=timeout, what=f"{n} events applied")
    assert event_count(engine) == n


def end_offsets(settings: Settings) -> dict[tuple[str, int], int]:
    """Per partition of the events and definitions topics, the offset after its last
    record a ``read_committed`` reader gets (0 when none): where a consumer that applied
    everything stores its position. Not the high watermark: a transaction's commit marker
    takes an offset after the last record."""
    topo = Topology.of(settings)
    wanted = [(topo.events, p) for p in range(settings.partitions)] + [(topo.definitions, 0)]
    c = Consumer(kafka_config(settings, {"group.id": "probe",
                  "enable.partition.eof": True, "enable.auto.commit": False,
                  "isolation.level": "read_committed"}))
    try:
        c.assign([TopicPartition(t, p, OFFSET_BEGINNING) for t, p in wanted])
        out = dict.fromkeys(wanted, 0)
        todo = set(wanted)
        deadline = time.monotonic() + 30
        while todo and time.monotonic() < deadline:
            for msg in c.consume(num_messages=1000, timeout=0.5):
                tp = (msg.topic() or "", msg.partition() or 0)
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        todo.discard(tp)
                    continue
                out[tp] = (msg.offset() or 0) + 1
        return out
    finally:
        c.close()


def stored_offsets(engine: Engine) -> dict[tuple[str, int], int]:
    """The live projector's positions in ``projection_offsets``."""
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT topic, partition, next_offset FROM projection_offsets "
                                 "WHERE projection = :p"), {"p": PROJECTION})
        return {(r.topic, r.partition): r.next_offset for r in rows}


def caught_up(engine: Engine, settings: Settings) -> bool:
    """Whether the stored positions reached the end of every non-empty partition."""
    stored = stored_offsets(engine)
    return all(stored.get(tp, 0) >= end for tp, end in end_offsets(settings).items() if end)




def inconsistencies(engine: Engine) -> list[tuple[object, ...]]:
    """Workflows whose history is not exactly sequences 1..last_sequence (should be none)."""
    query = text("""
        SELECT wi.id, wi.last_sequence, e.n, e.lo, e.hi
        FROM workflow_instances wi
        LEFT JOIN (SELECT workflow_id, count(*) AS n, min(sequence) AS lo, max(sequence) AS hi
                   FROM workflow_events GROUP BY workflow_id) e ON e.workflow_id = wi.id
        WHERE e.n IS DISTINCT FROM wi.last_sequence OR e.lo <> 1 OR e.hi <> wi.last_sequence
        UNION ALL
        SELECT e.workflow_id, NULL, count(*), NULL, NULL FROM workflow_events e
        WHERE NOT EXISTS (SELECT 1 FROM workflow_instances wi WHERE wi.id = e.workflow_id)
        GROUP BY e.workflow_id
    """)
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(query)]
