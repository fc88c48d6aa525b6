"""Kill -9 the orchestrator and the worker mid-run: every workflow still finishes, once.

Real processes (``foldflow run orchestrator|worker``), real Kafka, SIGKILL via os.kill.
Invariants checked on the raw ``wf.events`` log (duplicates included): per workflow the
sequences are contiguous from 1, a re-emitted sequence is byte-identical to the first,
each step completed exactly once and the workflow ended exactly once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient
from orchestrator_harness import (
    STARTUP_S,
    Deployment,
    EventLog,
    PauseWorkflow,
    ResumeWorkflow,
    Service,
    SignalWorkflow,
    assert_log_invariants,
)

from foldflow.definitions import Definition
from foldflow.kafka import kafka_config
from foldflow.processors.runtime.kafka import group_id
from foldflow.schemas.messages import StepCompleted
from foldflow.settings import Settings
from foldflow.topics import Topology

WAIT_S = 120.0
RECOVERED = "recovered \\d+ workflows"

#: Five steps: tasks that take a while, a sleep timer in the middle.
CHAIN = {
    "name": "chaos-chain",
    "steps": [
        {"id": "s1", "task": "builtin.echo", "input": {"n": 1}},
        {"id": "s2", "task": "builtin.sleep", "after": ["s1"], "input": {"seconds": 0.3}},
        {"id": "s3", "sleep": "700ms", "after": ["s2"]},
        {"id": "s4", "task": "builtin.sleep", "after": ["s3"], "input": {"seconds": 0.3}},
        {"id": "s5", "task": "builtin.echo", "after": ["s4"], "input": {"n": 5}},
    ],
}

#: A task slower than the worker survives, with a short attempt timeout and retries.
SLOW = {
    "name": "chaos-slow",
    "steps": [
        {
            "id": "slow",
            "task": "builtin.sleep",
            "input": {"seconds": 3},
            "timeout": "6s",
            "retry": {"max_attempts": 5, "initial_backoff": "200ms", "max_backoff": "1s"},
        },
        {"id": "after", "task": "builtin.echo", "after": ["slow"], "input": {}},
    ],
}

#: A retry backoff timer and a sleep timer, each long enough to kill the orchestrator in.
TIMERS = {
    "name": "chaos-timers",
    "steps": [
        {
            "id": "flaky",
            "task": "builtin.fail",
            "input": {"times": 1, "retryable": True},
            "retry": {"max_attempts": 2, "initial_backoff": "4s", "max_backoff": "4s",
                      "jitter": 0},
        },
        {"id": "nap", "sleep": "4s", "after": ["flaky"]},
        {"id": "end", "task": "builtin.echo", "after": ["nap"], "input": {}},
    ],
}


def test_orchestrator_sigkill_while_sharing_partitions(
    deployment: Deployment, events: EventLog, spawn: Callable[..., Service]
) -> None:
    deployment.register(Definition.from_data(CHAIN))
    first = spawn("orchestrator-a", "orchestrator")
    first.wait_for_log(RECOVERED, timeout=STARTUP_S)
    second = spawn("orchestrator-b", "orchestrator")
    second.wait_for_log(r"recovered \d+ workflows on partitions \[\d", timeout=STARTUP_S)
    spawn("worker", "worker", "--concurrency", "16")

    ids = [deployment.start("chaos-chain", {"i": i}) for i in range(30)]
    # kill the second orchestrator once the run is well under way, not finished
    events.wait(
        lambda log: sum(len(log.by_workflow.get(w, [])) for w in ids) >= 120,
        timeout=WAIT_S, what="120 events of the 30 workflows",
    )  # fmt: skip
    assert second.proc is not None and second.proc.poll() is None
    second.kill()

    statuses = events.wait_finished(ids, timeout=WAIT_S)
    assert set(statuses.values()) == {"completed"}
    assert_log_invariants(events, ids)
    # the survivor took over the dead one's partitions
    first.wait_for_log(r"recovered \d+ workflows on partitions \[0, 1, 2, 3\]", timeout=10)


def test_orchestrator_sigterm_under_load_loses_nothing(
    deployment: Deployment, events: EventLog, spawn: Callable[..., Service]
) -> None:
    """A graceful stop (a rolling restart) while inputs keep coming: the open transaction
    is committed (or aborted and left to the successor), never half of it."""
    deployment.register(Definition.from_data(CHAIN))
    first = spawn("orchestrator-1", "orchestrator")
    first.wait_for_log(RECOVERED, timeout=STARTUP_S)
    spawn("worker", "worker", "--concurrency", "16")
    ids = [deployment.start("chaos-chain", {"i": i}) for i in range(30)]
    events.wait(lambda log: sum(len(log.by_workflow.get(w, [])) for w in ids) >= 60,
                timeout=WAIT_S, what="60 events of the first 30 workflows")  # fmt: skip
    more: list[str] = []
    feeder = threading.Thread(
        target=lambda: more.extend(deployment.start("chaos-chain", {"j": j}) for j in range(60))
    )
    feeder.start()
    assert first.stop() == 0
    feeder.join(60)
    spawn("orchestrator-2", "orchestrator").wait_for_log(RECOVERED, timeout=STARTUP_S)

    statuses = events.wait_finished(ids + more, timeout=WAIT_S)
    assert set(statuses.values()) == {"completed"}, statuses
    assert_log_invariants(events, ids + more)


def test_worker_sigkill_mid_task(
    deployment: Deployment, events: EventLog, spawn: Callable[..., Service]
) -> None:
    deployment.register(Definition.from_data(SLOW))
    spawn("orchestrator", "orchestrator").wait_for_log(RECOVERED, timeout=STARTUP_S)
    doomed = spawn("worker-1", "worker", "--session-timeout-ms", "6000",
                   env={"FOLDFLOW_LOG_LEVEL": "DEBUG"})  # "task started" is a debug line
    wf = deployment.start("chaos-slow", {})
    doomed.wait_for_log('"message": "task started"', timeout=WAIT_S)
    doomed.kill()
    spawn("worker-2", "worker", "--session-timeout-ms", "6000")

    assert events.wait_finished([wf], timeout=WAIT_S) == {wf: "completed"}
    assert_log_invariants(events, [wf])


def test_timers_survive_orchestrator_restarts(
    deployment: Deployment, events: EventLog, spawn: Callable[..., Service]
) -> None:
    deployment.register(Definition.from_data(TIMERS))
    first = spawn("orchestrator-1", "orchestrator")
    first.wait_for_log(RECOVERED, timeout=STARTUP_S)
    spawn("worker", "worker")
    wf = deployment.start("chaos-timers", {})

    # 1. the retry backoff timer is pending: kill, restart
    events.wait(
        lambda log: "step.attempt_failed.v1" in log.types(wf), timeout=WAIT_S, what="backoff"
    )
    first.kill()
    second = spawn("orchestrator-2", "orchestrator")
    second.wait_for_log(RECOVERED, timeout=STARTUP_S)
    # 2. the sleep timer is pending: kill, restart
    events.wait(lambda log: "step.waiting.v1" in log.types(wf), timeout=WAIT_S, what="sleep")
    second.kill()
    spawn("orchestrator-3", "orchestrator").wait_for_log(RECOVERED, timeout=STARTUP_S)

    assert events.wait_finished([wf], timeout=WAIT_S) == {wf: "completed"}
    assert_log_invariants(events, [wf])
    completed = {
        e.payload.step_id: e.payload.attempt
        for e in events.by_workflow[wf]
        if isinstance(e.payload, StepCompleted)
    }
    assert set(completed) == {"flaky", "nap", "end"}
    assert completed["flaky"] == 2  # the retry after the backoff timer succeeded


def _rewind_orchestrator_group(settings: Settings) -> None:
    """Move the (empty) orchestrator group back to offset 0 on both input topics."""
    topology = Topology.of(settings)
    admin = AdminClient(kafka_config(settings))
    partitions = [
        TopicPartition(topic, p, 0)
        for topic in (topology.commands, topology.results)
        for p in range(settings.partitions)
    ]
    futures = admin.alter_consumer_group_offsets(
        [ConsumerGroupTopicPartitions(group_id(settings), partitions)]
    )
    for future in futures.values():
        future.result(timeout=30)


def test_inputs_replayed_after_a_rewind_change_nothing(
    settings: Settings, deployment: Deployment, events: EventLog, spawn: Callable[..., Service]
) -> None:
    orchestrator = spawn("orchestrator-1", "orchestrator")
    orchestrator.wait_for_log(RECOVERED, timeout=STARTUP_S)
    spawn("worker", "worker")
    wf = deployment.start("t-wait", {})
    events.wait(lambda log: "step.waiting.v1" in log.types(wf), timeout=WAIT_S, what="gate")
    deployment.command(wf, PauseWorkflow("first"))
    deployment.command(wf, PauseWorkflow("again"))  # a no-op: already paused
    deployment.command(wf, ResumeWorkflow("go on"))
    events.wait(lambda log: "workflow.resumed.v1" in log.types(wf), timeout=WAIT_S, what="resume")
    probe = deployment.start("t-child", {}, workflow_id=f"{wf}-probe")  # behind the resume
    events.wait_finished([probe], timeout=WAIT_S)
    assert orchestrator.stop() == 0  # commits, leaves the group

    # every input is read again, against the states recovered from the state topic
    _rewind_orchestrator_group(settings)
    spawn("orchestrator-2", "orchestrator").wait_for_log(RECOVERED, timeout=STARTUP_S)
    deployment.command(wf, SignalWorkflow("go"))
    assert events.wait_finished([wf], timeout=WAIT_S) == {wf: "completed"}
    assert events.types(wf).count("workflow.paused.v1") == 1  # the no-op pause stayed one
    assert events.types(wf).count("workflow.started.v1") == 1
    assert_log_invariants(events, [wf, probe])
