"""Plain-language readings of a run: where a workflow's time goes, what held it back (pure)."""

from __future__ import annotations

from foldflow.bench.results import BenchResult, PhaseResult

__all__ = ["diagnose", "time_breakdown"]

#: Busy CPU share used by processes outside the run past which the machine counts as shared.
SHARED_MACHINE_SHARE = 0.1
#: The orchestrator's loop thread waiting this share of a saturated phase for a CPU it
#: could run on is short of CPU, whatever its own use.
STARVED_SHARE = 0.2


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


def _workers_note(phase: PhaseResult) -> str | None:
    """Split the worker turnaround into waiting to be taken and being handled."""
    workers, turnaround = phase.workers, phase.turnaround_ms
    if workers is None or workers.mean_ms is None or turnaround is None:
        return None
    waiting = max(0.0, turnaround.mean - workers.mean_ms)
    line = (f"workers in the {phase.name} phase: {workers.inputs_per_s:,.0f} tasks/s, "
            f"{workers.mean_ms:.1f} ms from taking a task to its result acked, "
            f"{workers.in_flight:.1f} in hand on average; of a {turnaround.mean:,.0f} ms "
            f"turnaround a task spends ~{waiting:,.0f} ms before a worker takes it")
    if waiting > 2 * workers.mean_ms and waiting > 50:
        line += (" — in the topic or the worker before its handler starts (fetch, poll "
                 "loop, a free slot), not in the handler")
    return line


def _transactions_note(phase: PhaseResult, result: BenchResult) -> str | None:
    """The orchestrator's transactions in a phase: how long one stays open, how much of
    that is the commit (means; next to raw Kafka's mean commit of one record)."""
    agent = phase.agent
    if (agent is None or agent.commits_per_s is None or agent.transaction_ms is None
            or agent.commit_ms is None):  # fmt: skip
        return None  # no commits in the phase (``agent_load`` sets the three together)
    line = (f"orchestrator transactions in the {phase.name} phase: "
            f"{agent.commits_per_s:,.0f} commits/s, each {agent.transaction_ms:.1f} ms from "
            f"its first input to its commit's return, {agent.commit_ms:.1f} ms of it committing")
    raw = result.baseline.commit_ms if result.baseline is not None else None
    if raw is not None:
        line += f" (raw Kafka, one record: {raw.mean:.1f} ms)"
    return line + ": every orchestrator hop of a workflow waits for a part of this"


def diagnose(result: BenchResult) -> list[str]:
    """Plain-language readings of the run: where the time goes."""
    notes: list[str] = []
    for p in result.phases:
        note = _breakdown_note(p, result.steps)
        if note is not None:
            notes.append(note)
        note = _transactions_note(p, result)
        if note is not None:
            notes.append(note)
    saturated = result.phase("throughput")
    if saturated is not None:
        note = _workers_note(saturated)
        if note is not None:
            notes.append(note)
    parts = time_breakdown(saturated, result.steps) if saturated is not None else None
    if parts is not None:
        total = sum(ms for _, ms in parts) or 1.0
        workers = dict(parts)["workers"] / total
        if workers >= 0.6:
            notes.append(f"under saturation {workers:.0%} of a workflow's time is spent between "
                         "a task command and its result: the workers are the bottleneck "
                         "(their queue, not the handler); try more --workers or "
                         "--worker-concurrency to see how far the rest goes")
    machine = result.machine
    if machine.busy_share is not None and machine.busy_share >= 0.9:
        busy = f"the machine's CPUs were {machine.busy_share:.0%} busy during the phases"
        others = machine.busy_share - (machine.ours_share or 0.0)
        if machine.ours_share is None or others >= SHARED_MACHINE_SHARE:
            notes.append(f"{busy} ({others:.0%} by other processes): absolute figures are those "
                         "of a shared machine; compare runs by the raw-Kafka ratios")
        else:
            notes.append(f"{busy}, {machine.ours_share:.0%} by this run (services, harness, "
                         "Kafka and PostgreSQL): the run is bound by this machine's CPUs")
    phase = result.phase("throughput")
    agent = phase.agent if phase is not None else None
    mean_ms = agent.mean_ms if agent is not None else None
    if agent is None or not mean_ms:
        return notes
    cores = machine.process_cores.get("orchestrator")
    facts = (f"orchestrator at saturation: {agent.inputs_per_s:,.0f} inputs/s, {mean_ms:.1f} ms "
             f"from taking an input to its acks, {agent.in_flight:.1f} inputs in hand on "
             "average" + (f", {cores:.2f} cores" if cores is not None else ""))
    if agent.ran_share is not None and agent.waited_share is not None:
        facts += (f"; its loop thread ran {agent.ran_share:.0%} of the phase and waited "
                  f"{agent.waited_share:.0%} for a CPU")
    if agent.waited_share is not None and agent.waited_share >= STARVED_SHARE:
        notes.append(f"{facts}: a serial agent short of CPU (the other processes held the "
                     "cores), so CPU spent less elsewhere on the machine, or a core of its "
                     "own, is what raises throughput")
    elif cores is not None and cores >= 0.8:
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
