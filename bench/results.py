"""What one benchmark run measured: plain records (pure).

:class:`BenchResult` is the whole record of a run (it is what ``--json`` writes);
:mod:`foldflow.bench.lines` turns it into the report's figures, :mod:`foldflow.bench.readings` into
plain-language readings.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from foldflow.bench.stats import LatencySummary

__all__ = [
    "CPU_BUDGET_MS",
    "AgentLoad",
    "AloneResult",
    "BaselineResult",
    "BenchResult",
    "Completion",
    "MachineLoad",
    "MemoryResult",
    "PhaseResult",
    "PhaseWindow",
    "ProfileResult",
    "cpu_ms_per_workflow",
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
    phases; ``ours_share`` the fraction used by the run: the services under test, the
    harness, Kafka and PostgreSQL (the rest of ``busy_share`` is everyone else on the
    machine); ``process_cores`` the average number of cores each of them kept busy;
    ``cpu_ms_per_workflow`` what one completed workflow cost each service, Kafka and
    PostgreSQL in CPU time over the phases (see :func:`cpu_ms_per_workflow`);
    ``closed_loop_cpu_ms_per_workflow`` the same over the throughput phase alone (its
    drain and the projector's catching up included): the closed loop at saturation the
    budgets (:data:`CPU_BUDGET_MS`) are for, where the latency phase's half load spreads
    each service's fixed costs over half the workflows.
    """

    cpus: int
    loadavg_before: tuple[float, float, float]
    loadavg_after: tuple[float, float, float]
    busy_share: float | None = None
    ours_share: float | None = None
    process_cores: dict[str, float] = field(default_factory=dict)
    cpu_ms_per_workflow: dict[str, float] = field(default_factory=dict)
    closed_loop_cpu_ms_per_workflow: dict[str, float] = field(default_factory=dict)


#: CPU time per workflow each service may spend so that 500 three-step workflows/s fit on
#: two cores next to Kafka and PostgreSQL (docs/architecture.md); the projector's includes
#: PostgreSQL's.
CPU_BUDGET_MS = {"orchestrator": 1.0, "worker": 0.6, "projector": 0.6}


def cpu_ms_per_workflow(
    process_cores: dict[str, float], seconds: float, workflows: int
) -> dict[str, float]:
    """CPU ms per completed workflow by service (``worker-1`` and ``worker-2`` are one
    ``worker``), from the cores each process kept busy over ``seconds``."""
    if workflows <= 0 or seconds <= 0:
        return {}
    out: dict[str, float] = {}
    for name, cores in process_cores.items():
        service = name.rsplit("-", 1)[0] if name.rsplit("-", 1)[-1].isdigit() else name
        out[service] = out.get(service, 0.0) + cores * seconds * 1000 / workflows
    return out


@dataclass(frozen=True)
class BaselineResult:
    """Raw Kafka on this machine, same run: confluent-kafka with the Publisher's settings."""

    messages: int
    message_bytes: int
    produce_per_s: float
    produce_consume_per_s: float
    hop_ms: LatencySummary | None
    ack_ms: LatencySummary | None
    #: one record in a transaction of its own → seen ``read_committed`` (baseline.py)
    transactional_hop_ms: LatencySummary | None = None
    #: ``send_offsets_to_transaction`` + ``commit_transaction`` of those transactions
    commit_ms: LatencySummary | None = None


@dataclass(frozen=True)
class AgentLoad:
    """A service over a phase, from its ``foldflow_message_handling_seconds``: inputs/s,
    mean ms per input (taken → its messages acked) and the mean number of inputs in hand
    (Little's law: 1.0 for a serial agent that is never idle). ``PhaseResult.agent`` is
    the orchestrator's, ``PhaseResult.workers`` all workers' together. ``ran_share`` and
    ``waited_share``: the shares of the phase the orchestrator's loop thread ran on a CPU
    and waited, runnable, for one (the rest it slept: polls, commits); None for workers.
    ``commits_per_s``, ``transaction_ms`` (mean, first input → commit returned) and
    ``commit_ms`` (its offsets + commit calls): the orchestrator's transactions."""

    inputs_per_s: float
    mean_ms: float | None
    in_flight: float
    ran_share: float | None = None
    waited_share: float | None = None
    commits_per_s: float | None = None
    transaction_ms: float | None = None
    commit_ms: float | None = None


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
    workers: AgentLoad | None = None


@dataclass(frozen=True)
class MemoryResult:
    """The orchestrator's resident memory (VmRSS) over the run.

    ``state_bytes`` is the mean state record of a running workflow on the state topic;
    ``projected_from`` says how ``projected_mb`` was reached ("RSS slope" over the run,
    "state size" when too few workflows were held for a slope, or "N active" when the
    orchestrator-alone phase held that many at once).
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
class AloneResult:
    """The orchestrator alone at saturation (bench/alone.py): ``workflows`` starts taken
    from a backlog, then as many results; wall and CPU seconds of each half, and its RSS
    before, with every one of those workflows active, and after they finished."""

    workflows: int
    start_seconds: float
    start_cpu_seconds: float
    result_seconds: float
    result_cpu_seconds: float
    rss_before_mb: float
    rss_active_mb: float
    rss_after_mb: float

    @property
    def inputs_per_s(self) -> float:
        """Inputs (starts and results) per second, both halves together."""
        seconds = self.start_seconds + self.result_seconds
        return 2 * self.workflows / seconds if seconds > 0 else 0.0

    @property
    def cpu_ms_per_input(self) -> float:
        """CPU milliseconds the orchestrator process spent per input."""
        cpu = self.start_cpu_seconds + self.result_cpu_seconds
        return 1000 * cpu / (2 * self.workflows) if self.workflows else 0.0

    @property
    def rss_per_100k_mb(self) -> float:
        """RSS growth per 100,000 active workflows (measured, scaled linearly)."""
        grown = max(0.0, self.rss_active_mb - self.rss_before_mb)
        return grown * 100_000 / self.workflows if self.workflows else 0.0


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
    alone: AloneResult | None = None
    notes: list[str] = field(default_factory=list)
    code: str = ""

    def phase(self, name: str) -> PhaseResult | None:
        """The phase called ``name``, if it ran."""
        return next((p for p in self.phases if p.name == name), None)
