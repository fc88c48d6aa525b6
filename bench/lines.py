"""The report's lines: each figure of a run beside its target and its raw-Kafka baseline.

:func:`build_figures` turns a :class:`~foldflow.bench.results.BenchResult` into the
:class:`~foldflow.bench.figures.Figure` lines the table and the JSON show (pure).
"""

from __future__ import annotations

from foldflow.bench.figures import Figure, Target, targets_for
from foldflow.bench.results import CPU_BUDGET_MS, BenchResult
from foldflow.bench.stats import LatencySummary

__all__ = ["build_figures", "messages_per_workflow"]


def messages_per_workflow(steps: int) -> int:
    """Kafka records one sequential k-step workflow writes on the domain topics.

    1 start command, k task commands, k results and 2k + 2 events (started, k scheduled,
    k completed, completed); the orchestrator's state records come on top.
    """
    return 1 + steps + steps + (2 * steps + 2)


#: A latency's raw-Kafka floor: so many hops of each kind (their quantiles added up).
Hops = tuple[tuple[LatencySummary, int], ...]


def _floors(result: BenchResult) -> tuple[Hops, str, Hops, str, Hops]:
    """The raw-Kafka floors of a dispatch and of a whole workflow, each with its label, and
    one plain hop. The orchestrator's k + 1 hops are transactional (a dispatch is one of
    them) and the workers' k plain, when the run measured both kinds."""
    k, base = result.steps, result.baseline
    plain = base.hop_ms if base is not None else None
    if plain is None:
        return (), "", (), "", ()
    hop: Hops = ((plain, 1),)
    txn = base.transactional_hop_ms if base is not None else None
    if txn is None:
        return hop, "1 hop", ((plain, 2 * k + 1),), f"{2 * k + 1} hops", hop
    workflow: Hops = ((txn, k + 1), (plain, k))
    return ((txn, 1),), "1 transactional hop", workflow, f"{k + 1} txn + {k} hops", hop


def _cpu_figures(result: BenchResult, load: str) -> list[Figure]:
    """Each service's CPU ms per workflow in the closed loop, against its budget (for
    three steps, the budget's workflow); the projector's includes PostgreSQL's."""
    spent = result.machine.closed_loop_cpu_ms_per_workflow
    figures = []
    for service, budget in CPU_BUDGET_MS.items():
        if service not in spent:
            continue
        value, label = spent[service], f"{service} CPU ms per workflow"
        if service == "projector":
            value, label = value + spent.get("postgresql", 0.0), label + " (+ PostgreSQL)"
        target = Target(budget, "lower", "budget") if result.steps == 3 else None
        figures.append(Figure(f"{service}_cpu_ms_per_workflow", label, value, "ms", target,
                              load=load))
    return figures


def _latency_figures(
    key: str,
    label: str,
    summary: LatencySummary | None,
    *,
    quantiles: tuple[str, ...],
    load: str,
    target: Target | None = None,
    target_q: str = "p99",
    baseline: Hops = (),
    baseline_label: str = "",
) -> list[Figure]:
    figures = []
    for q in quantiles:
        base = sum(hop.at(q) * n for hop, n in baseline) if baseline else None
        figures.append(
            Figure(
                key=f"{key}_{q}_ms",
                label=f"{label} {q}",
                value=summary.at(q) if summary is not None else None,
                unit="ms",
                target=target if q == target_q else None,
                baseline=base,
                baseline_label=baseline_label,
                load=load,
            )
        )
    return figures


def build_figures(result: BenchResult) -> list[Figure]:
    """The report lines of ``result``, in the order the table shows them."""
    k = result.steps
    targets = targets_for(k)
    base = result.baseline
    raw = base.produce_consume_per_s if base is not None else None
    per_wf = messages_per_workflow(k)
    dispatch_floor, dispatch_label, workflow_floor, workflow_label, hop = _floors(result)
    figures: list[Figure] = []

    throughput = result.phase("throughput")
    if throughput is not None:
        load = throughput.mode
        ceiling_wf = raw / per_wf if raw is not None else None
        figures += [
            Figure("workflows_per_s", "workflows/s", throughput.workflows_per_s, "/s",
                   targets.workflows_per_s, ceiling_wf,
                   f"ceiling: {per_wf} msgs/workflow", load),
            Figure("task_runs_per_s", "task runs/s", throughput.task_runs_per_s, "/s",
                   targets.task_runs_per_s,
                   ceiling_wf * k if ceiling_wf is not None else None,
                   "ceiling", load),
            Figure("events_per_s", "events/s (wf.events)", throughput.events_per_s, "/s",
                   targets.events_per_s, raw, "msgs/s", load),
            Figure("kafka_messages_per_s", "Kafka records/s (wf.*)",
                   throughput.kafka_messages_per_s, "/s", None, raw, "msgs/s", load),
        ]
        if throughput.agent is not None:
            figures += [
                Figure("orchestrator_inputs_per_s", "orchestrator inputs/s",
                       throughput.agent.inputs_per_s, "/s", load=load),
                Figure("orchestrator_ms_per_input", "orchestrator ms per input (→ acked)",
                       throughput.agent.mean_ms, "ms", load=load),
            ]
        if throughput.workers is not None:
            figures.append(Figure("worker_ms_per_task", "worker ms per task (→ acked)",
                                  throughput.workers.mean_ms, "ms", load=load))
        figures += _cpu_figures(result, load)
        figures += _latency_figures(
            "saturated_start_to_completed", "start→completed",
            throughput.start_to_completed_ms, quantiles=("p50", "p99"), load=load,
            baseline=workflow_floor, baseline_label=workflow_label,
        )

    latency = result.phase("latency")
    if latency is not None:
        load = latency.mode
        figures.append(
            Figure("half_load_workflows_per_s", "workflows/s",
                   latency.workflows_per_s, "/s", None, None, "", load)
        )
        figures += _latency_figures(
            "start_to_completed", "start→completed", latency.start_to_completed_ms,
            quantiles=("p50", "p95", "p99"), load=load,
            target=targets.start_to_completed_p50_ms, target_q="p50",
            baseline=workflow_floor, baseline_label=workflow_label,
        )
        figures += _latency_figures(
            "dispatch", "step dispatch", latency.dispatch_ms,
            quantiles=("p50", "p95", "p99"), load=load, target=targets.dispatch_p99_ms,
            baseline=dispatch_floor, baseline_label=dispatch_label,
        )
        figures += _latency_figures(
            "worker_turnaround", "worker turnaround", latency.turnaround_ms,
            quantiles=("p50", "p99"), load=load, baseline=hop, baseline_label="1 hop",
        )
        figures += _latency_figures(
            "projection_lag", "projection lag", latency.projection_lag_ms,
            quantiles=("p50", "p95", "p99"), load=load, target=targets.projection_lag_p99_ms,
            baseline=hop, baseline_label="1 hop",
        )

    alone = result.alone
    if alone is not None:
        load = f"orchestrator alone, {alone.workflows:,} starts then as many results"
        figures += [
            Figure("alone_inputs_per_s", "orchestrator inputs/s", alone.inputs_per_s, "/s",
                   targets.alone_inputs_per_s, raw, "msgs/s", load),
            Figure("alone_cpu_ms_per_input", "orchestrator CPU ms per input",
                   alone.cpu_ms_per_input, "ms", targets.alone_cpu_ms_per_input, load=load),
            Figure("alone_rss_active_mb", f"RSS with {alone.workflows:,} active",
                   alone.rss_active_mb, "MB", load=load),
            Figure("alone_rss_per_100k_mb", "RSS growth per 100k active",
                   alone.rss_per_100k_mb, "MB", load=load),
        ]

    memory = result.memory
    if memory is not None:
        load = f"orchestrator, {memory.store}, {memory.workflows_held:,} workflows held"
        figures += [
            Figure("orchestrator_rss_peak_mb", "RSS peak", memory.rss_peak_mb, "MB",
                   load=load),
            Figure("orchestrator_state_bytes", "stored state per workflow", memory.state_bytes,
                   "B", load=load),
            Figure("orchestrator_rss_projected_mb",
                   f"RSS at 100k workflows (from {memory.projected_from})",
                   memory.projected_mb, "MB", targets.rss_mb_at_100k, load=load),
        ]
    return figures
