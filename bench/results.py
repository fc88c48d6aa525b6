"""What one benchmark run measured, and the report lines derived from it (pure).

:class:`BenchResult` is the whole record of a run (it is what ``--json`` writes);
:func:`build_figures` turns it into the :class:`~bench.figures.Figure` lines of the
report, each with its DESIGN §14 target and its raw-Kafka baseline.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bench.figures import RSS_TARGET_WORKFLOWS, Figure, Target, targets_for
from bench.stats import LatencySummary

#: Below this many held workflows the RSS slope is noise and nothing is projected.
MIN_WORKFLOWS_TO_PROJECT = 5_000
#: What one entry of faust's memory:// store costs besides the state bytes (CPython: a
#: dict slot, a bytes key and a bytes value object), for the projection from state size.
ENTRY_OVERHEAD_BYTES = 200

__all__ = [
    "AgentLoad",
    "BaselineResult",
    "BenchResult",
    "Completion",
    "MachineLoad",
    "MemoryResult",
    "PhaseResult",
    "PhaseWindow",
    "ProfileResult",
    "build_figures",
    "diagnose",
    "messages_per_workflow",
    "projected_from_state_mb",
    "projected_rss_mb",
    "time_breakdown",
]


@dataclass(frozen=True)
class Completion:
    """A workflow's terminal event: its status and Kafka timestamp (ms)."""

    status: str
    kafka_ms: int


@dataclass(frozen=True)
class PhaseWindow:
    """When a load phase ran (wall clock, ms) and which workflows it started."""

    name: str
    mode: str
    started_ms: float
    stopped_ms: float
    workflow_ids: tuple[str, ...]


@dataclass(frozen=True)
class MachineLoad:
    """The machine the run shared: CPU count, load averages, who used the CPU.

    ``busy_share`` is the fraction of all CPU time that was busy during the measured
    phases; ``ours_share`` the fraction used by the services under test plus the harness
    (the rest of ``busy_share`` is everyone else on the machine); ``process_cores`` the
    average number of cores each of those processes kept busy.
    """

    cpus: int
    loadavg_before: tuple[float, float, float]
    loadavg_after: tuple[float, float, float]
    busy_share: float | None = None
    ours_share: float | None = None
    process_cores: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class BaselineResult:
    """Raw Kafka on this machine, same run: confluent-kafka with the Publisher's settings."""

    messages: int
    message_bytes: int
    produce_per_s: float
    produce_consume_per_s: float
    hop_ms: LatencySummary | None
    ack_ms: LatencySummary | None


@dataclass(frozen=True)
class AgentLoad:
    """The orchestrator over a phase: inputs/s, mean ms per input (taken → its messages
    acked) and the mean number of inputs in hand (Little's law: 1.0 for a serial agent
    that is never idle)."""

    inputs_per_s: float
    mean_ms: float | None
    in_flight: float


@dataclass(frozen=True)
class PhaseResult:
    """One load phase: closed loop (N in flight) or open loop (a fixed start rate)."""

    name: str
    mode: str
    seconds: float
    started: int
    completed: int
    failed: int
    workflows_per_s: float
    task_runs_per_s: float
    events_per_s: float
    kafka_messages_per_s: float
    start_to_completed_ms: LatencySummary | None
    dispatch_ms: LatencySummary | None
    turnaround_ms: LatencySummary | None
    projection_lag_ms: LatencySummary | None
    agent: AgentLoad | None = None


@dataclass(frozen=True)
class MemoryResult:
    """The orchestrator's resident memory (VmRSS) over the run.

    ``state_bytes`` is the mean stored state of a workflow (its last changelog record);
    ``projected_from`` says how ``projected_mb`` was reached ("RSS slope" over the run,
    or "state size" when too few workflows were held for a slope).
    """

    store: str
    rss_idle_mb: float
    rss_peak_mb: float
    rss_end_mb: float
    workflows_held: int
    projected_mb: float | None
    state_bytes: float | None = None
    projected_from: str = "RSS slope"


@dataclass(frozen=True)
class ProfileResult:
    """Where the orchestrator's CPU time went while py-spy sampled it."""

    file: str
    seconds: float
    samples: int
    by_component: list[tuple[str, float]]
    top_self: list[tuple[str, float]]
    top_inclusive: list[tuple[str, float]]
    threads: list[tuple[str, float]] = field(default_factory=list)


@dataclass(frozen=True)
class BenchResult:
    """Everything one ``foldflow bench`` run measured."""

    run_id: str
    started_at: str
    steps: int
    config: dict[str, object]
    machine: MachineLoad
    baseline: BaselineResult | None
    phases: list[PhaseResult]
    memory: MemoryResult | None
    profile: ProfileResult | None = None
    notes: list[str] = field(default_factory=list)
    code: str = ""

    def phase(self, name: str) -> PhaseResult | None:
        """The phase called ``name``, if it ran."""
        return next((p for p in self.phases if p.name == name), None)


def messages_per_workflow(steps: int) -> int:
    """Kafka records one sequential k-step workflow writes on the domain topics.

    1 start command, k task commands, k results and 2k + 2 events (started, k scheduled,
    k completed, completed); the orchestrator's changelog writes come on top.
    """
    return 1 + steps + steps + (2 * steps + 2)


def projected_rss_mb(
    idle_mb: float,
    end_mb: float,
    workflows: int,
    *,
    target_workflows: int = RSS_TARGET_WORKFLOWS,
    min_workflows: int = MIN_WORKFLOWS_TO_PROJECT,
) -> float | None:
    """Linear projection of RSS to ``target_workflows`` held states.

    ``idle_mb`` is the RSS before the measured workflows, ``end_mb`` with ``workflows``
    more states in the table. None below ``min_workflows``: with a few hundred states the
    slope is allocator noise, not state size.
    """
    if workflows < max(1, min_workflows):
        return None
    per_workflow = max(0.0, end_mb - idle_mb) / workflows
    return idle_mb + per_workflow * target_workflows


def projected_from_state_mb(
    idle_mb: float,
    state_bytes: float | None,
    *,
    target_workflows: int = RSS_TARGET_WORKFLOWS,
    entry_overhead: int = ENTRY_OVERHEAD_BYTES,
) -> float | None:
    """RSS at ``target_workflows`` if each held state costs its bytes plus the in-memory
    store's per-entry overhead (a dict slot and two ``bytes`` objects)."""
    if not state_bytes:
        return None
    return idle_mb + target_workflows * (state_bytes + entry_overhead) / (1024 * 1024)


def _latency_figures(
    key: str,
    label: str,
    summary: LatencySummary | None,
    *,
    quantiles: tuple[str, ...],
    load: str,
    target: Target | None = None,
    target_q: str = "p99",
    baseline: LatencySummary | None = None,
    baseline_hops: int = 1,
    baseline_label: str = "",
) -> list[Figure]:
    figures = []
    for q in quantiles:
        base = baseline.at(q) * baseline_hops if baseline is not None else None
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
    hop = base.hop_ms if base is not None else None
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
        figures += _latency_figures(
            "saturated_start_to_completed", "start→completed",
            throughput.start_to_completed_ms, quantiles=("p50", "p99"), load=load,
            baseline=hop, baseline_hops=2 * k + 1, baseline_label=f"{2 * k + 1} hops",
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
            baseline=hop, baseline_hops=2 * k + 1, baseline_label=f"{2 * k + 1} hops",
        )
        figures += _latency_figures(
            "dispatch", "step dispatch", latency.dispatch_ms,
            quantiles=("p50", "p95", "p99"), load=load, target=targets.dispatch_p99_ms,
            baseline=hop, baseline_label="1 hop",
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

    memory = result.memory
    if memory is not None:
        load = f"orchestrator, {memory.store} store, {memory.workflows_held:,} workflows held"
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


def time_breakdown(phase: PhaseResult, steps: int) -> list[tuple[str, float]] | None:
    """Where a workflow's mean start→completed time goes (ms), from the phase's means.

    ``steps`` worker turnarounds (task command sent → result sent: queueing in
    ``wf.tasks``, the handler, the publish), ``steps - 1`` dispatches between steps (the
    orchestrator: result → next task command), and the rest (start → first task command,
    last result → ``workflow.completed.v1``: the orchestrator again, plus the start's own
    publish). Means add up where percentiles do not.
    """
    total, turnaround, dispatch = (phase.start_to_completed_ms, phase.turnaround_ms,
                                   phase.dispatch_ms)
    if total is None or turnaround is None or (dispatch is None and steps > 1):
        return None
    workers = steps * turnaround.mean
    between = (steps - 1) * dispatch.mean if dispatch is not None else 0.0
    ends = max(0.0, total.mean - workers - between)
    return [("workers", workers), ("orchestrator between steps", between),
            ("start and finish", ends)]


def _breakdown_note(phase: PhaseResult, steps: int) -> str | None:
    parts = time_breakdown(phase, steps)
    if parts is None:
        return None
    total = sum(ms for _, ms in parts) or 1.0
    shares = ", ".join(f"{name} {ms / total:.0%} ({ms:,.0f} ms)" for name, ms in parts)
    return f"{phase.name} phase ({phase.mode}): a workflow's mean {total:,.0f} ms goes to {shares}"


def diagnose(result: BenchResult) -> list[str]:
    """Plain-language readings of the run: where the time goes."""
    notes: list[str] = []
    for p in result.phases:
        note = _breakdown_note(p, result.steps)
        if note is not None:
            notes.append(note)
    machine = result.machine
    if machine.busy_share is not None and machine.busy_share >= 0.9:
        others = machine.busy_share - (machine.ours_share or 0.0)
        notes.append(f"the machine's CPUs were {machine.busy_share:.0%} busy during the phases "
                     f"({others:.0%} by other processes): absolute figures are those of a "
                     "shared machine; compare runs by the raw-Kafka ratios")
    phase = result.phase("throughput")
    agent = phase.agent if phase is not None else None
    mean_ms = agent.mean_ms if agent is not None else None
    if agent is None or not mean_ms:
        return notes
    cores = machine.process_cores.get("orchestrator")
    facts = (f"orchestrator at saturation: {agent.inputs_per_s:,.0f} inputs/s, {mean_ms:.1f} ms "
             f"from taking an input to its acks, {agent.in_flight:.1f} inputs in hand on "
             "average" + (f", {cores:.2f} cores" if cores is not None else ""))
    if cores is not None and cores >= 0.8:
        notes.append(f"{facts}: CPU-bound (one Python process, one core); the profile "
                     "(--profile) shows what it computes")
    elif agent.in_flight <= 1.2 and agent.in_flight >= 0.8:
        ceiling = 1000 / mean_ms
        inputs = result.steps + 1  # the start and one result per step
        notes.append(f"{facts}: a serial agent that is never idle, so ~{ceiling:,.0f} "
                     f"inputs/s (~{ceiling / inputs:,.0f} workflows/s at {inputs} inputs each) "
                     "is its ceiling" + (", and with this little CPU most of each input is "
                                         "waiting (publish acks, linger.ms, a CPU it could not "
                                         "get), not computing" if cores is not None
                                         and cores < 0.6 else ""))
    elif cores is not None and cores < 0.5:
        notes.append(f"{facts}: neither CPU-bound nor a saturated serial agent; the time goes "
                     "to waiting (batch windows, acks, fetches) or the bottleneck is elsewhere "
                     "(workers, projector, broker, the machine)")
    else:
        notes.append(facts)
    return notes
