"""The report: figures built from a result, the rich table, the JSON document."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from rich.console import Console

from foldflow.bench.lines import build_figures
from foldflow.bench.readings import diagnose, time_breakdown
from foldflow.bench.report import (
    Previous,
    change_text,
    format_value,
    load_previous,
    render,
    to_json,
    to_json_text,
)
from foldflow.bench.results import (
    AgentLoad,
    AloneResult,
    BaselineResult,
    BenchResult,
    MachineLoad,
    MemoryResult,
    PhaseResult,
    ProfileResult,
    cpu_ms_per_workflow,
)
from foldflow.bench.stats import LatencySummary


def lat(p50: float, p95: float, p99: float) -> LatencySummary:
    return LatencySummary(count=100, p50=p50, p95=p95, p99=p99, max=p99, mean=p50)


def phase(name: str, mode: str, wf_s: float, *, dispatch: LatencySummary | None = None,
          lag: LatencySummary | None = None) -> PhaseResult:
    return PhaseResult(
        name=name, mode=mode, seconds=30.0, started=3000, completed=3000, failed=0,
        workflows_per_s=wf_s, task_runs_per_s=wf_s * 3, events_per_s=wf_s * 8,
        kafka_messages_per_s=wf_s * 15, start_to_completed_ms=lat(40, 80, 120),
        dispatch_ms=dispatch, turnaround_ms=lat(3, 6, 9), projection_lag_ms=lag,
    )


def result(*, profile: ProfileResult | None = None) -> BenchResult:
    return BenchResult(
        run_id="bench-test",
        started_at="2026-11-29T03:30:00+00:00",
        steps=3,
        config={"concurrency": 200},
        machine=MachineLoad(2, (1.0, 1.0, 1.0), (2.0, 1.5, 1.0), 0.7, 0.6,
                            {"orchestrator": 0.8, "harness": 0.1}),
        baseline=BaselineResult(100_000, 250, 60_000.0, 30_000.0, lat(5, 8, 10), lat(5, 7, 9)),
        phases=[
            phase("throughput", "closed loop, 200 in flight", 400.0),
            phase("latency", "open loop, 200 starts/s", 200.0,
                  dispatch=lat(8, 15, 75), lag=lat(50, 100, 200)),
        ],
        memory=MemoryResult("memory", 100.0, 160.0, 150.0, 20_000, 350.0),
        profile=profile,
        notes=["a note"],
    )


def by_key(res: BenchResult) -> dict[str, object]:
    return {f.key: f for f in build_figures(res)}


def test_throughput_figures_are_judged_and_related_to_the_raw_ceiling() -> None:
    figures = by_key(result())
    wf = figures["workflows_per_s"]
    assert wf.value == 400.0  # type: ignore[attr-defined]
    assert wf.verdict.text == "missed by 20% (400 of 500)"  # type: ignore[attr-defined]
    # raw 30,000 msgs/s over 15 msgs per workflow: a 2,000 wf/s ceiling
    assert wf.baseline == pytest.approx(2000.0)  # type: ignore[attr-defined]
    assert wf.ratio == pytest.approx(0.2)  # type: ignore[attr-defined]
    assert figures["task_runs_per_s"].ratio == pytest.approx(0.2)  # type: ignore[attr-defined]
    assert figures["kafka_messages_per_s"].ratio == pytest.approx(0.2)  # type: ignore[attr-defined]


def test_latency_targets_apply_to_one_quantile_at_half_load_only() -> None:
    figures = by_key(result())
    assert figures["dispatch_p99_ms"].verdict.text == "missed by 50%"  # type: ignore[attr-defined]
    assert figures["dispatch_p50_ms"].verdict is None  # type: ignore[attr-defined]
    assert figures["projection_lag_p99_ms"].verdict.met  # type: ignore[attr-defined]
    # one dispatch against one raw hop; start→completed against 2k+1 = 7 hops
    assert figures["dispatch_p99_ms"].ratio == pytest.approx(7.5)  # type: ignore[attr-defined]
    assert figures["start_to_completed_p50_ms"].baseline == 35.0  # type: ignore[attr-defined]
    assert figures["start_to_completed_p50_ms"].verdict is not None  # type: ignore[attr-defined]
    assert figures["start_to_completed_p99_ms"].verdict is None  # type: ignore[attr-defined]
    assert "saturated_start_to_completed_p99_ms" in figures


def test_with_a_transactional_hop_the_orchestrator_hops_are_judged_against_it() -> None:
    res = result()
    base = replace(res.baseline, transactional_hop_ms=lat(6, 9, 15), commit_ms=lat(4, 5, 6))
    res = replace(res, baseline=base)
    figures = by_key(res)
    # a dispatch is one orchestrator hop: a transaction (p99 75 against 15)
    assert figures["dispatch_p99_ms"].ratio == pytest.approx(5.0)  # type: ignore[attr-defined]
    assert figures["dispatch_p99_ms"].baseline_label == "1 transactional hop"  # type: ignore[attr-defined]
    # a 3-step workflow: 4 transactional hops (the orchestrator's) + 3 plain (results)
    assert figures["start_to_completed_p50_ms"].baseline == 4 * 6 + 3 * 5  # type: ignore[attr-defined]
    assert figures["start_to_completed_p50_ms"].baseline_label == "4 txn + 3 hops"  # type: ignore[attr-defined]
    # the workers' and the projector's hops stay plain ones
    assert figures["worker_turnaround_p99_ms"].baseline == 10  # type: ignore[attr-defined]
    text = " ".join(rendered(res).split())  # the raw Kafka line wraps
    assert "one transactional hop (produce→committed→consumed) p50 6.0 ms, p99 15.0 ms" in text
    assert "(offsets + commit p50 4.0 ms)" in text


def test_memory_figures() -> None:
    figures = by_key(result())
    assert figures["orchestrator_rss_peak_mb"].verdict is None  # type: ignore[attr-defined]
    assert figures["orchestrator_rss_projected_mb"].verdict.text == "missed by 17%"  # type: ignore[attr-defined]


def test_without_baseline_there_are_no_ratios() -> None:
    res = result()
    res = BenchResult(**{**res.__dict__, "baseline": None})
    assert all(f.ratio is None for f in build_figures(res))


def rendered(res: BenchResult) -> str:
    console = Console(width=200, record=True, color_system=None)
    console.print(render(res))
    return console.export_text()


def test_the_table_shows_value_target_verdict_and_ratio() -> None:
    text = rendered(result())
    assert "closed loop, 200 in flight" in text
    assert "≥ 500/s" in text
    assert "missed by 20% (400 of 500)" in text
    assert "0.20x · 2,000/s (ceiling: 15 msgs/workflow)" in text
    assert "≤ 50.0 ms (at half load)" in text
    assert "orchestrator 0.80, harness 0.10" in text
    assert "5 target(s) missed" in text
    assert "a note" in text


def test_cpu_per_workflow_sums_the_instances_of_a_service_and_shows_both_readings() -> None:
    cores = {"orchestrator": 0.5, "worker-1": 0.2, "worker-2": 0.1, "kafka": 0.4}
    per = cpu_ms_per_workflow(cores, seconds=10.0, workflows=1000)
    assert per == pytest.approx({"orchestrator": 5.0, "worker": 3.0, "kafka": 4.0})
    assert cpu_ms_per_workflow(cores, seconds=10.0, workflows=0) == {}
    res = result()
    res = replace(res, machine=replace(res.machine, cpu_ms_per_workflow=per,
                                       closed_loop_cpu_ms_per_workflow={"orchestrator": 0.9}))
    text = " ".join(rendered(res).split())
    assert "CPU ms per workflow, closed loop orchestrator 0.90" in text
    assert "CPU ms per workflow, both phases orchestrator 5.00, worker 3.00, kafka 4.00" in text


def test_the_closed_loops_cpu_per_workflow_is_judged_against_each_budget() -> None:
    spent = {"orchestrator": 0.9, "worker": 0.7, "projector": 0.4, "postgresql": 0.3,
             "kafka": 1.5}
    res = result()
    res = replace(res, machine=replace(res.machine, closed_loop_cpu_ms_per_workflow=spent))
    figures = by_key(res)
    orchestrator = figures["orchestrator_cpu_ms_per_workflow"]
    assert orchestrator.verdict.met  # type: ignore[attr-defined]
    worker = figures["worker_cpu_ms_per_workflow"]
    assert worker.verdict.text == "missed by 17%"  # type: ignore[attr-defined]
    projector = figures["projector_cpu_ms_per_workflow"]  # PostgreSQL's included
    assert projector.value == pytest.approx(0.7)  # type: ignore[attr-defined]
    assert projector.label == "projector CPU ms per workflow (+ PostgreSQL)"  # type: ignore[attr-defined]
    assert not projector.verdict.met  # type: ignore[attr-defined]
    assert "kafka_cpu_ms_per_workflow" not in figures  # no budget of its own
    # the budgets are for three-step workflows; other runs show the figures unjudged
    other = by_key(replace(res, steps=5))
    assert other["orchestrator_cpu_ms_per_workflow"].verdict is None  # type: ignore[attr-defined]
    # a record from before the closed loop was measured on its own has none
    assert "orchestrator_cpu_ms_per_workflow" not in by_key(result())


def test_the_profile_table_is_shown_when_there_is_one() -> None:
    prof = ProfileResult("/tmp/x.txt", 8.0, 800, [("aiokafka", 0.4)],
                         [("select (selectors.py)", 0.3)], [("handle (runner.py)", 0.6)])
    text = rendered(result(profile=prof))
    assert "where the orchestrator's time goes" in text
    assert "aiokafka" in text and "40%" in text and "handle (runner.py)" in text


def test_json_holds_the_record_and_the_judged_figures() -> None:
    doc = json.loads(to_json_text(result()))
    assert doc["schema"] == "foldflow-bench/1"
    assert doc["run_id"] == "bench-test"
    assert doc["phases"][0]["workflows_per_s"] == 400.0
    assert doc["baseline"]["hop_ms"]["p99"] == 10
    wf = next(f for f in doc["figures"] if f["key"] == "workflows_per_s")
    assert wf["met"] is False
    assert wf["target"] == {"limit": 500.0, "better": "higher", "note": ""}
    assert wf["ratio_to_raw_kafka"] == pytest.approx(0.2)
    assert to_json(result())["figures"] == doc["figures"]


@pytest.mark.parametrize(
    ("value", "unit", "text"),
    [(None, "ms", "—"), (1234.5, "/s", "1,234/s"), (12.34, "/s", "12.3/s"),
     (17.44, "ms", "17.4 ms"), (250.0, "ms", "250 ms"), (301.2, "MB", "301 MB")],
)
def test_format_value(value: float | None, unit: str, text: str) -> None:
    assert format_value(value, unit) == text


def test_a_serial_agent_that_barely_uses_cpu_is_waiting() -> None:
    res = result()
    busy = replace(res.phases[0], agent=AgentLoad(80.0, 12.0, 0.95))
    res = replace(res, phases=[busy, res.phases[1]],
                  machine=replace(res.machine, process_cores={"orchestrator": 0.3}))
    (note,) = [n for n in diagnose(res) if n.startswith("orchestrator")]
    assert "80 inputs/s, 12.0 ms" in note and "0.9 inputs in hand" in note
    assert "~83 inputs/s (~21 workflows/s at 4 inputs each)" in note
    assert "waiting" in note


def test_an_orchestrator_waiting_for_a_cpu_is_short_of_cpu() -> None:
    res = result()
    starved = replace(res.phases[0], agent=AgentLoad(1_800.0, 0.4, 0.8, ran_share=0.52,
                                                     waited_share=0.32))
    res = replace(res, phases=[starved],
                  machine=replace(res.machine, process_cores={"orchestrator": 0.49}))
    (note,) = [n for n in diagnose(res) if n.startswith("orchestrator")]
    assert "ran 52% of the phase and waited 32% for a CPU" in note
    assert "short of CPU" in note
    calm = replace(starved, agent=replace(starved.agent, waited_share=0.05))
    (note,) = [n for n in diagnose(replace(res, phases=[calm])) if n.startswith("orchestrator")]
    assert "waited 5% for a CPU" in note and "short of CPU" not in note


def test_the_orchestrator_transactions_of_each_phase_are_read_next_to_raw_kafka() -> None:
    res = result()
    phase = replace(res.phases[1], agent=AgentLoad(600.0, 0.7, 0.4, commits_per_s=45.0,
                                                   transaction_ms=22.1, commit_ms=6.5))
    res = replace(res, phases=[res.phases[0], phase],
                  baseline=BaselineResult(100_000, 250, 60_000.0, 30_000.0, None, None,
                                          commit_ms=lat(5, 7, 9)))
    (note,) = [n for n in diagnose(res) if n.startswith("orchestrator transactions")]
    assert f"in the {phase.name} phase: 45 commits/s, each 22.1 ms" in note
    assert "6.5 ms of it committing (raw Kafka, one record: 5.0 ms)" in note
    assert not [n for n in diagnose(replace(res, phases=[res.phases[0]]))
                if n.startswith("orchestrator transactions")]


def test_a_cpu_bound_orchestrator() -> None:
    res = result()
    batched = replace(res.phases[0], agent=AgentLoad(900.0, 40.0, 36.0))
    res = replace(res, phases=[batched],
                  machine=replace(res.machine, process_cores={"orchestrator": 0.95}))
    (note,) = [n for n in diagnose(res) if n.startswith("orchestrator")]
    assert "36.0 inputs in hand" in note and "CPU-bound" in note


def test_a_saturated_machine_is_said_first() -> None:
    res = replace(result(), phases=[])
    busy_machine = replace(res.machine, busy_share=0.97, ours_share=0.3)
    notes = diagnose(replace(res, machine=busy_machine))
    assert notes == ["the machine's CPUs were 97% busy during the phases (67% by other "
                     "processes): absolute figures are those of a shared machine; compare runs "
                     "by the raw-Kafka ratios"]
    assert diagnose(res) == []  # no phases, a machine at 70%: nothing to say
    # busy with this run's own processes (Kafka and PostgreSQL count as the run's)
    own_load = replace(res.machine, busy_share=0.94, ours_share=0.9)
    assert diagnose(replace(res, machine=own_load)) == [
        "the machine's CPUs were 94% busy during the phases, 90% by this run (services, "
        "harness, Kafka and PostgreSQL): the run is bound by this machine's CPUs"]


def test_where_a_workflow_spends_its_time() -> None:
    latency = result().phases[1]  # mean 40 ms; turnaround mean 3, dispatch mean 8
    assert time_breakdown(latency, 3) == [
        ("workers", 9.0), ("orchestrator between steps", 16.0), ("start and finish", 15.0)
    ]
    assert time_breakdown(result().phases[0], 3) is None  # no dispatch figures
    (note,) = diagnose(replace(result(), phases=[latency]))
    assert note == ("latency phase (open loop, 200 starts/s): a workflow's mean 40 ms goes to "
                    "workers 22% (9 ms), orchestrator between steps 40% (16 ms), start and "
                    "finish 38% (15 ms)")


def test_comparing_with_an_earlier_run_uses_the_ratios() -> None:
    earlier = load_previous(json.loads(to_json_text(result())))
    faster = replace(result().phases[0], workflows_per_s=480.0)
    now = replace(result(), phases=[faster, result().phases[1]])
    figures = {f.key: f for f in build_figures(now)}
    # 400 → 480 wf/s against the same 2,000 wf/s ceiling: ratio 0.2 → 0.24
    assert change_text(figures["workflows_per_s"], earlier["workflows_per_s"]) == (
        "ratio 0.2 → 0.24 (+20%)"
    )
    # no ratio (no baseline figure): by value
    assert change_text(figures["orchestrator_rss_peak_mb"], Previous(128.0, None)) == (
        "128 MB → now (+25%)"
    )
    assert change_text(figures["workflows_per_s"], None) == ""
    console = Console(width=250, record=True, color_system=None)
    console.print(render(now, previous=earlier))
    assert "since the earlier run" in console.export_text()


def test_an_unrelated_document_has_no_previous_figures() -> None:
    assert load_previous({}) == {}
    assert load_previous({"figures": [{"value": 1}]}) == {}


def test_workers_holding_workflows_back_are_named() -> None:
    res = result()
    slow_workers = replace(res.phases[0], start_to_completed_ms=lat(3000, 3000, 3000),
                           turnaround_ms=lat(950, 990, 999), dispatch_ms=lat(40, 60, 80))
    notes = diagnose(replace(res, phases=[slow_workers]))
    assert any("95% of a workflow's time" in n and "the workers are the bottleneck" in n
               for n in notes)


def test_tasks_waiting_before_a_worker_takes_them() -> None:
    res = result()
    slow = replace(res.phases[0], turnaround_ms=lat(900, 990, 999),
                   workers=AgentLoad(40.0, 12.0, 0.5))
    notes = diagnose(replace(res, phases=[slow]))
    (note,) = [n for n in notes if n.startswith("workers in the throughput phase")]
    assert "40 tasks/s, 12.0 ms from taking a task" in note
    assert "~888 ms before a worker takes it" in note and "not in the handler" in note


def test_the_orchestrator_alone_phase_reports_inputs_cpu_and_memory() -> None:
    alone = AloneResult(workflows=50_000, start_seconds=20.0, start_cpu_seconds=10.0,
                        result_seconds=30.0, result_cpu_seconds=20.0, rss_before_mb=80.0,
                        rss_active_mb=155.0, rss_after_mb=120.0)  # fmt: skip
    assert alone.inputs_per_s == pytest.approx(2_000.0)  # 100,000 inputs in 50 s
    assert alone.cpu_ms_per_input == pytest.approx(0.3)  # 30 CPU s for 100,000 inputs
    assert alone.rss_per_100k_mb == pytest.approx(150.0)  # 75 MB for 50,000 active
    figures = by_key(replace(result(), alone=alone))
    assert figures["alone_inputs_per_s"].verdict.met  # type: ignore[attr-defined]
    assert figures["alone_inputs_per_s"].ratio == pytest.approx(2_000 / 30_000)
    assert figures["alone_cpu_ms_per_input"].verdict.met  # type: ignore[attr-defined]
    assert figures["alone_rss_per_100k_mb"].value == pytest.approx(150.0)
    slow = replace(alone, start_cpu_seconds=40.0)
    assert not by_key(replace(result(), alone=slow))[
        "alone_cpu_ms_per_input"].verdict.met  # type: ignore[attr-defined]
