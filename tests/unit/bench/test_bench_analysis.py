"""A phase's figures from made-up observations; the latency phase's rate; profiles."""

from __future__ import annotations

import pytest

from foldflow.bench.analysis import Observations, analyse_phase, steady_window
from foldflow.bench.metrics import HandlingTotals, agent_load, handling_totals
from foldflow.bench.profile import component_of, summarize_collapsed
from foldflow.bench.results import Completion, PhaseWindow
from foldflow.bench.run import BenchConfig, bench_definition, latency_rate
from foldflow.bench.session import CROWDED_BROKER_PARTITIONS, crowded_broker_note

T0 = 1_700_000_000_000.0


def observations(n: int, *, every_ms: float, took_ms: int) -> tuple[PhaseWindow, Observations]:
    """``n`` 3-step workflows started every ``every_ms``; each step: task +1, result +3."""
    ids = tuple(f"w{i}" for i in range(n))
    starts, completions, seen = {}, {}, {}
    results: dict[str, list[int]] = {}
    tasks: dict[str, list[int]] = {}
    events: list[int] = []
    for i, wid in enumerate(ids):
        start = T0 + i * every_ms
        starts[wid] = start
        t = int(start)
        tasks[wid], results[wid] = [], []
        for _ in range(3):
            tasks[wid].append(t + 1)
            results[wid].append(t + 4)
            t += 5
        done = int(start) + took_ms
        completions[wid] = Completion("completed", done)
        seen[wid] = done + 40.0
        events += [int(start)] * 7 + [done]
    stopped = T0 + n * every_ms
    window = PhaseWindow("latency", "open loop", T0, stopped, ids)
    obs = Observations(starts, completions, seen, events, results, tasks,
                       [t for ts in [*results.values(), *tasks.values()] for t in ts])
    return window, obs


def test_a_steady_phase() -> None:
    window, obs = observations(1000, every_ms=10.0, took_ms=20)  # 100/s for 10 s
    result = analyse_phase(window, obs, steps=3, warmup_s=2.0)
    assert result.started == result.completed == 1000
    assert result.failed == 0
    assert result.seconds == pytest.approx(10.0)
    assert result.workflows_per_s == pytest.approx(100.0)
    assert result.task_runs_per_s == pytest.approx(300.0)
    assert result.events_per_s == pytest.approx(800.0)
    assert result.kafka_messages_per_s == pytest.approx(1400.0)  # events + tasks + results
    assert result.start_to_completed_ms is not None
    assert result.start_to_completed_ms.p99 == pytest.approx(20.0)
    assert result.start_to_completed_ms.count == 800  # started inside the steady window
    assert result.dispatch_ms is not None and result.dispatch_ms.p50 == 2.0  # +4 → +6
    assert result.turnaround_ms is not None and result.turnaround_ms.max == 3.0
    assert result.projection_lag_ms is not None and result.projection_lag_ms.p50 == 40.0


def test_unfinished_workflows_count_as_not_completed() -> None:
    window, obs = observations(100, every_ms=100.0, took_ms=20)
    completions = dict(obs.completions)
    completions["w5"] = Completion("failed", completions["w5"].kafka_ms)
    del completions["w6"]
    obs = Observations(obs.starts, completions, obs.seen, obs.event_times, obs.results,
                       obs.tasks, obs.other_times)
    result = analyse_phase(window, obs, steps=3, warmup_s=0.0)
    assert result.completed == 98
    assert result.failed == 2


def test_a_tiny_phase_falls_back_to_the_whole_phase() -> None:
    window = PhaseWindow("t", "m", T0, T0 + 500, ())
    assert steady_window(window, 3.0, [T0 + 700]) == (T0, T0 + 700)
    long = PhaseWindow("t", "m", T0, T0 + 10_000, ())
    assert steady_window(long, 3.0) == (T0 + 3000, T0 + 10_000)


def test_latency_phase_runs_at_half_the_target_or_half_what_was_sustained() -> None:
    config = BenchConfig(steps=3)
    assert latency_rate(config, 900.0) == (250.0, "half the target")
    rate, why = latency_rate(config, 120.0)
    assert rate == 60.0
    assert "half the measured throughput" in why
    assert latency_rate(BenchConfig(latency_rate=42.0), 120.0)[0] == 42.0


def test_the_bench_definition_is_a_chain_of_echo_steps() -> None:
    definition = bench_definition(3)
    assert definition.name == "bench.noop-k3"
    assert [s.id for s in definition.steps] == ["s1", "s2", "s3"]
    assert [list(s.after) for s in definition.steps] == [[], ["s1"], ["s2"]]


ASYNCIO = "/usr/lib/python3.11/asyncio/base_events.py"
LOOP = f"run_forever ({ASYNCIO}:600)"
COLLAPSED = [  # py-spy record --format raw --threads --full-filenames
    f"thread (28847): MainThread;{LOOP};"
    f"_run_once ({ASYNCIO}:1900);select (/usr/lib/python3.11/selectors.py:468) 30",
    f"thread (28847): MainThread;{LOOP};handle (/work/main/processors/runner.py:99);"
    "encode (/work/main/schemas/codec.py:50) 50",
    f"thread (28850): publisher-orchestrator;{LOOP};"
    "run_orchestrator (/work/main/foldflow/cli/orchestrator.py:60);"
    "getmany (/app/.venv/lib/python3.11/site-packages/aiokafka/consumer/consumer.py:1) 20",
]


def test_profile_shares_by_component_and_function() -> None:
    summary = summarize_collapsed(COLLAPSED, expected_samples=200)
    assert summary.samples == 100
    assert summary.threads == [("MainThread", 0.4), ("publisher-orchestrator", 0.1)]
    assert dict(summary.by_component) == {"schemas": 0.5, "stdlib:selectors": 0.3,
                                          "aiokafka": 0.2}
    assert summary.top_self[0] == ("encode (codec.py)", 0.5)
    assert summary.top_inclusive == [("encode (codec.py)", 0.5), ("handle (runner.py)", 0.5)]


def test_components_of_frames() -> None:
    site = "poll (/x/.venv/lib/python3.11/site-packages/confluent_kafka/__init__.py:3)"
    assert component_of(site) == "confluent_kafka"
    assert component_of("decide (/work/main/processors/decider.py:10)") == "processors"
    # imported as foldflow.processors: from a checkout (its symlink) or from the wheel
    assert component_of("decide (/work/main/foldflow/processors/decider/x.py:1)") == "processors"
    installed = "/v/lib/python3.11/site-packages/foldflow"
    assert component_of(f"run ({installed}/workers/runtime.py:5)") == "workers"
    assert component_of(f"load ({installed}/settings.py:5)") == "foldflow"
    assert component_of("loads (/usr/lib/python3.11/json/__init__.py:346)") == "stdlib:json"
    assert component_of("_run_once (/usr/lib/python3.11/asyncio/base_events.py:1)") == (
        "stdlib:asyncio"
    )
    assert summarize_collapsed([]).samples == 0
    assert summarize_collapsed(COLLAPSED).threads == []  # no expected count: no busy share


METRICS = """\
# HELP foldflow_message_handling_seconds Time to handle one Kafka message.
foldflow_message_handling_seconds_bucket{handler="orchestrator",le="0.005",topic="p.wf.results"} 3.0
foldflow_message_handling_seconds_count{handler="orchestrator",topic="p.wf.results"} 300.0
foldflow_message_handling_seconds_sum{handler="orchestrator",topic="p.wf.results"} 2.5
foldflow_message_handling_seconds_count{handler="orchestrator",topic="p.wf.commands"} 100.0
foldflow_message_handling_seconds_sum{handler="orchestrator",topic="p.wf.commands"} 1.5
foldflow_message_handling_seconds_sum{handler="worker",topic="p.wf.tasks.x"} 9.0
foldflow_transaction_duration_seconds_count 50.0
foldflow_transaction_duration_seconds_sum 1.25
foldflow_transaction_commit_seconds_count 50.0
foldflow_transaction_commit_seconds_sum 0.25
"""


def test_agent_load_from_two_scrapes() -> None:
    after = handling_totals(METRICS)
    assert after == HandlingTotals(seconds=4.0, count=400.0, transactions=50.0, open_s=1.25,
                                   commit_s=0.25)
    load = agent_load(HandlingTotals(1.0, 100.0), after, 5.0)
    assert load.inputs_per_s == pytest.approx(60.0)
    assert load.mean_ms == pytest.approx(10.0)
    assert load.in_flight == pytest.approx(0.6)
    assert load.commits_per_s == pytest.approx(10.0)
    assert load.transaction_ms == pytest.approx(25.0)
    assert load.commit_ms == pytest.approx(5.0)
    idle = agent_load(after, after, 5.0)
    assert idle.mean_ms is None and idle.commits_per_s is None and idle.commit_ms is None


def test_only_the_orchestrator_has_transactions() -> None:
    assert handling_totals(METRICS, handler="worker") == HandlingTotals(seconds=9.0, count=0.0)


def test_a_broker_crowded_with_other_partitions_gets_a_note_saying_what_to_do() -> None:
    assert crowded_broker_note(0) is None
    assert crowded_broker_note(CROWDED_BROKER_PARTITIONS) is None
    note = crowded_broker_note(4_877)
    assert note is not None and "4,877 partitions" in note and "delete the topics" in note
