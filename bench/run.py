"""One benchmark run, end to end: the composition root of the harness.

1. private topics (a unique prefix) and migrations on the given database;
2. ``foldflow run orchestrator``, ``projector`` and ``worker`` (builtin.echo) as real
   subprocesses with the private settings, ready when their ``/metrics`` answers;
3. a definition of k sequential ``builtin.echo`` steps and a warm-up (a few workflows,
   then ``--warm-up-load`` s of the throughput phase's load);
4. the raw-Kafka baseline, on the broker the warm-up warmed, while the services idle (a
   freshly started broker measured its first 100k messages a third slower than its
   next), then the throughput phase (closed loop, N in flight) and the latency phase
   (open loop at half the target load, or half the measured throughput when that is lower);
5. the orchestrator alone at saturation (bench/alone.py: workers and projector stopped, a
   backlog of starts then of results; inputs/s, CPU per input, RSS with them all active);
6. the topics read back for per-step timings, figures computed, optionally py-spy on the
   orchestrator under load when targets were missed;
7. services stopped, private topics deleted.

Every reader is ``read_committed``: a task is dispatched when such a reader can see it,
which is when the orchestrator's transaction committed, not when the record was appended.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime

from confluent_kafka import TIMESTAMP_LOG_APPEND_TIME

from foldflow.bench.alone import run_alone, sink_definition
from foldflow.bench.analysis import Observations, analyse_phase
from foldflow.bench.collect import read_topic
from foldflow.bench.config import TASK_TYPE, BenchConfig, BenchError
from foldflow.bench.driver import Driver
from foldflow.bench.figures import targets_for
from foldflow.bench.lines import build_figures
from foldflow.bench.metrics import HandlingTotals, agent_load, scrape
from foldflow.bench.proc_cpu import main_thread_sched
from foldflow.bench.profile import find_py_spy, record, summarize_collapsed
from foldflow.bench.readings import diagnose
from foldflow.bench.results import (
    AgentLoad,
    AloneResult,
    BenchResult,
    MachineLoad,
    MemoryResult,
    PhaseWindow,
    ProfileResult,
    cpu_ms_per_workflow,
)
from foldflow.bench.session import Progress, Session, code_version, cpu_meter
from foldflow.bench.stats import (
    ENTRY_OVERHEAD_BYTES,
    MIN_WORKFLOWS_TO_PROJECT,
    projected_from_state_mb,
    projected_rss_mb,
)
from foldflow.definitions import Definition
from foldflow.producers import Publisher
from foldflow.settings import Settings

__all__ = ["BenchConfig", "BenchError", "bench_definition", "latency_rate", "run_benchmark"]

PROFILE_RATE = 100


def bench_definition(steps: int) -> Definition:
    """``bench.noop-k<steps>``: ``steps`` sequential ``builtin.echo`` steps."""
    data = {
        "name": f"bench.noop-k{steps}",
        "version": 1,
        "description": "foldflow bench: sequential no-op steps",
        "steps": [
            {"id": f"s{i}", "task": TASK_TYPE, "input": {"step": i},
             **({"after": [f"s{i - 1}"]} if i > 1 else {})}
            for i in range(1, steps + 1)
        ],
    }
    return Definition.from_data(data)


@dataclass(frozen=True)
class _Loads:
    orchestrator: AgentLoad | None
    workers: AgentLoad | None


def _totals(run: Session, handler: str) -> HandlingTotals | None:
    """``handler``'s handling totals summed over every service process that serves it."""
    found = [scrape(s.metrics_port, handler=handler) for s in run.services]
    present = [t for t in found if t is not None and t.count > 0]
    if not present:
        return None if all(t is None for t in found) else HandlingTotals(0.0, 0.0)
    return HandlingTotals(*(sum(getattr(t, f.name) for t in present)
                            for f in fields(HandlingTotals)))


def _measured(run: Session, phase: Callable[[], PhaseWindow]) -> tuple[PhaseWindow, _Loads]:
    """Run a load phase between two scrapes of the services' handling metrics."""
    before = {h: _totals(run, h) for h in ("orchestrator", "worker")}
    sched_before = main_thread_sched(run.orchestrator.pid)
    began = time.monotonic()
    window = phase()
    wall = time.monotonic() - began
    sched_after = main_thread_sched(run.orchestrator.pid)
    after = {h: _totals(run, h) for h in ("orchestrator", "worker")}
    loads = {
        h: agent_load(b, a, wall) if (b := before[h]) and (a := after[h]) else None
        for h in before
    }
    orchestrator = loads["orchestrator"]
    if orchestrator is not None and sched_before is not None and sched_after is not None:
        orchestrator = replace(orchestrator,
                               ran_share=(sched_after[0] - sched_before[0]) / wall,
                               waited_share=(sched_after[1] - sched_before[1]) / wall)
    return window, _Loads(orchestrator, loads["worker"])


def _warm_up(run: Session, driver: Driver) -> None:
    """20 workflows end to end, then ``--warm-up-load`` s of the throughput phase's load
    (drained and projected before it begins), then an ANALYZE of the run's tables."""
    config = run.config
    count = max(1, min(20, config.concurrency))
    run.progress(f"warm-up: {count} workflows end to end")
    driver.closed_loop("warmup", concurrency=count, seconds=120, total=count)
    if not driver.drain(timeout=120):
        run.check_alive()
        raise BenchError(f"warm-up workflows did not complete in 120s; logs in {run.run_dir}\n"
                         f"{run.orchestrator.tail()}")
    if config.warm_up_load > 0:
        run.progress(f"warm-up load: {config.concurrency} in flight for "
                     f"{config.warm_up_load:.0f}s, not measured")
        driver.closed_loop("warmload", concurrency=config.concurrency,
                           seconds=config.warm_up_load)
        _settle(run, driver, "warm-up load")
    run.analyze()


def _drain(run: Session, driver: Driver, phase: str) -> None:
    if not driver.drain(timeout=run.config.drain_timeout):
        run.check_alive()
        run.notes.append(f"{phase}: {driver.in_flight():,} workflows still running "
                         f"{run.config.drain_timeout:.0f}s after the phase")


def _settle(run: Session, driver: Driver, phase: str) -> None:
    """After a loaded phase: its workflows ended and projected, every service alive."""
    _drain(run, driver, phase)
    _await_projection(run, phase)
    run.check_alive()


def _await_projection(run: Session, phase: str) -> None:
    """Wait until the projector has written every workflow that ended: the next phase then
    starts with no projection backlog (the projector yields the CPU at saturation and
    catches up after), and note how long that took."""
    assert run.projection is not None
    began = time.monotonic()
    while run.projection.pending() and time.monotonic() - began < run.config.drain_timeout:
        time.sleep(0.05)
    waited, pending = time.monotonic() - began, run.projection.pending()
    if pending:
        run.notes.append(f"{phase}: {pending:,} ended workflows not projected "
                         f"{run.config.drain_timeout:.0f}s after the phase")
    elif waited >= 1:
        run.notes.append(f"{phase}: the projector caught up {waited:.1f}s after the phase")


def _observations(run: Session, driver: Driver) -> Observations:
    assert run.events is not None and run.projection is not None and run.tasks is not None
    run.progress("reading the run's topics back")
    results = read_topic(run.settings, run.topology.results, event_type=b"task.succeeded.v1")
    tasks = read_topic(run.settings, run.topology.task(TASK_TYPE), event_type=b"task.execute.v1")
    commands = read_topic(run.settings, run.topology.commands)
    return Observations(
        starts=dict(driver.starts),
        completions=dict(run.events.completions),
        seen=dict(run.projection.seen),
        event_times=list(run.events.event_times),
        results=dict(results.by_key),
        # when a read_committed reader saw each task, not when it was appended
        tasks=dict(run.tasks.seen),
        other_times=[*results.all_times, *tasks.all_times, *commands.all_times],
    )


def _state_bytes(run: Session) -> float | None:
    """Mean size of a running workflow's record on the state topic (``W1`` records)."""
    times = read_topic(run.settings, run.topology.orchestrator_state)
    sizes = times.live_sizes
    return sum(sizes) / len(sizes) if sizes else None


def _first_look(run: Session, window: PhaseWindow) -> float:
    """Workflows/s of a phase from its completions alone (before the topics are read)."""
    assert run.events is not None
    ends = [run.events.completions[w].kafka_ms for w in window.workflow_ids
            if w in run.events.completions]
    if not ends:
        return 0.0
    return len(ends) / max(1e-3, (max(ends) - window.started_ms) / 1000)


def latency_rate(config: BenchConfig, measured: float) -> tuple[float, str]:
    """The open-loop start rate of the latency phase and why (the targets are at half load)."""
    if config.latency_rate is not None:
        return config.latency_rate, "as asked (--latency-rate)"
    half_target = targets_for(config.steps).workflows_per_s.limit / 2
    if measured <= 0:
        return half_target, "half the target"
    half_measured = measured / 2
    if half_measured < half_target:
        return max(1.0, half_measured), (
            f"half the measured throughput: the target's half load ({half_target:,.0f}/s) is "
            "beyond what this run sustained"
        )
    return half_target, "half the target"


def _profile(run: Session, driver: Driver) -> ProfileResult | None:
    config = run.config
    if find_py_spy() is None:
        run.notes.append("--profile: py-spy is not installed (a dev dependency)")
        return None
    output = run.run_dir / "orchestrator.pyspy.txt"
    run.progress(f"profiling the orchestrator under load for {config.profile_seconds:.0f}s")
    spy = record(run.orchestrator.pid, seconds=config.profile_seconds, output=output,
                 rate=PROFILE_RATE)
    driver.closed_loop("profile", concurrency=config.concurrency,
                       seconds=config.profile_seconds + 1)
    try:
        _, err = spy.communicate(timeout=config.profile_seconds + 30)
    except Exception:
        spy.kill()
        raise
    _drain(run, driver, "profile")
    if spy.returncode != 0 or not output.exists():
        run.notes.append(f"py-spy failed: {err.decode(errors='replace').strip()[-300:]}")
        return None
    summary = summarize_collapsed(output.read_text().splitlines(),
                                  expected_samples=int(PROFILE_RATE * config.profile_seconds))
    return ProfileResult(str(output), config.profile_seconds, summary.samples,
                         summary.by_component, summary.top_self, summary.top_inclusive,
                         summary.threads)


def _load_phases(run: Session, driver: Driver) -> tuple[
    list[tuple[PhaseWindow, _Loads]], dict[str, float], dict[str, float]
]:
    """The throughput phase, then the latency phase; each drained before the next. The CPU
    both used, and the throughput phase's alone."""
    config = run.config
    with cpu_meter(run) as cpu:
        run.progress(f"throughput phase: {config.concurrency} in flight for "
                     f"{config.duration:.0f}s" + (f" or {config.total:,} starts"
                                                    if config.total else ""))
        with cpu_meter(run) as closed_loop:
            windows = [_measured(run, lambda: driver.closed_loop(
                "throughput", concurrency=config.concurrency, seconds=config.duration,
                total=config.total))]
            _settle(run, driver, "throughput")
        if config.latency_duration > 0:
            per_second, why = latency_rate(config, _first_look(run, windows[0][0]))
            run.notes.append(f"latency phase at {per_second:,.0f} starts/s: {why}")
            run.progress(f"latency phase: {per_second:,.0f} starts/s for "
                         f"{config.latency_duration:.0f}s")
            windows.append(_measured(run, lambda: driver.open_loop(
                "latency", per_second=per_second, seconds=config.latency_duration,
                max_in_flight=max(config.concurrency, int(per_second * 30)),
            )))
            _drain(run, driver, "latency")
    run.check_alive()
    return windows, cpu, closed_loop


def _cores(cpu: dict[str, float]) -> dict[str, float]:
    """The cores each process kept busy, from a :func:`cpu_meter` reading."""
    return {k.split(":", 1)[1]: v for k, v in cpu.items() if k.startswith("cores:")}


def _memory(run: Session, *, idle_mb: float, end_mb: float, held: int,
            alone: AloneResult | None, state_bytes: float | None) -> MemoryResult:  # fmt: skip
    """The orchestrator's memory at 100k active workflows: measured with that many active
    in the orchestrator-alone phase; else from the RSS slope when enough workflows were
    held, else from the stored state size."""
    assert run.rss is not None
    if alone is not None and alone.workflows > 0:
        return MemoryResult(
            store="states in memory as state-topic records",
            rss_idle_mb=alone.rss_before_mb,
            rss_peak_mb=max([*run.rss.samples, alone.rss_active_mb]),
            rss_end_mb=alone.rss_after_mb,
            workflows_held=alone.workflows,
            projected_mb=alone.rss_before_mb + alone.rss_per_100k_mb,
            state_bytes=state_bytes,
            projected_from=f"{alone.workflows:,} active",
        )
    projected, projected_from = projected_rss_mb(idle_mb, end_mb, held), "RSS slope"
    if projected is None:
        projected = projected_from_state_mb(idle_mb, state_bytes)
        projected_from = "state size"
        run.notes.append(
            f"RSS at 100k projected from the stored state size (+{ENTRY_OVERHEAD_BYTES} B "
            f"per entry), not from the RSS slope: {held:,} workflows held is too few "
            f"(< {MIN_WORKFLOWS_TO_PROJECT:,}) for a meaningful slope")
    return MemoryResult(
        store="states in memory as state-topic records",
        rss_idle_mb=idle_mb,
        rss_peak_mb=max(run.rss.samples or [end_mb]),
        rss_end_mb=end_mb,
        workflows_held=held,
        projected_mb=projected,
        state_bytes=state_bytes,
        projected_from=projected_from,
    )


def run_benchmark(
    settings: Settings, config: BenchConfig, *, progress: Progress = lambda _l: None
) -> BenchResult:
    """Carry out one run and return what it measured (see the module docstring)."""
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    load_before = os.getloadavg()
    run = Session(settings, config, progress)
    try:
        run.prepare()
        run.start_services()
        definition = bench_definition(config.steps)
        run.publisher = Publisher(run.settings, source="bench")
        run.register(definition)
        run.register(sink_definition())
        driver = Driver(run.publisher, run.topology, definition=definition.name,
                        run_id=run.run_id, progress=progress)
        run.observe(driver)
        assert run.rss is not None and run.projection is not None
        _warm_up(run, driver)
        rss_idle, held_idle = run.rss.now() or 0.0, len(driver.starts)
        baseline = run.baseline() if config.baseline_messages > 0 else None

        windows, cpu, closed_loop = _load_phases(run, driver)
        _await_projection(run, windows[-1][0].name)
        rss_end = run.rss.now() or 0.0
        obs = _observations(run, driver)
        state_bytes = _state_bytes(run)
        if run.events is not None and run.events.timestamp_type != TIMESTAMP_LOG_APPEND_TIME:
            run.notes.append("Kafka timestamps are producer create times, not broker append "
                             "times: dispatch and turnaround include producer queueing")
        phases = [replace(analyse_phase(w, obs, steps=config.steps, warmup_s=config.warmup),
                          agent=loads.orchestrator, workers=loads.workers)
                  for w, loads in windows]
        cores, closed_cores = _cores(cpu), _cores(closed_loop)
        result = BenchResult(
            run_id=run.run_id,
            started_at=started_at,
            steps=config.steps,
            config=dict(vars(config)),
            code=code_version(),
            machine=MachineLoad(
                cpus=os.cpu_count() or 1,
                loadavg_before=load_before,
                loadavg_after=os.getloadavg(),
                busy_share=cpu.get("busy"),
                ours_share=cpu.get("ours"),
                process_cores=cores,
                cpu_ms_per_workflow=cpu_ms_per_workflow(
                    cores, cpu.get("seconds", 0.0), sum(p.completed for p in phases)),
                closed_loop_cpu_ms_per_workflow=cpu_ms_per_workflow(
                    closed_cores, closed_loop.get("seconds", 0.0), phases[0].completed),
            ),
            baseline=baseline,
            phases=phases,
            memory=None,
            notes=run.notes,
        )
        profile = None
        if config.profile:  # while the workers still run
            missed = [f for f in build_figures(result)
                      if f.verdict is not None and not f.verdict.met]
            if missed:
                profile = _profile(run, driver)
            else:
                run.notes.append("--profile: every target met, no profile taken")
        alone = None
        if config.alone_workflows > 0:
            run.progress("orchestrator alone: stopping the workers and the projector")
            run.stop_all_but_the_orchestrator()
            alone = run_alone(run.settings, run.orchestrator, workflows=config.alone_workflows,
                              run_id=run.run_id, progress=progress)  # fmt: skip
            run.progress(f"orchestrator alone: {alone.inputs_per_s:,.0f} inputs/s, "
                         f"{alone.cpu_ms_per_input:.2f} CPU ms each, RSS "
                         f"{alone.rss_before_mb:.0f} -> {alone.rss_active_mb:.0f} MB")
        memory = _memory(run, idle_mb=rss_idle, end_mb=rss_end,
                         held=len(driver.starts) - held_idle, alone=alone,
                         state_bytes=state_bytes)  # fmt: skip
        result = replace(result, memory=memory, alone=alone, profile=profile)
        result.notes.extend(diagnose(result))
        return result
    finally:
        run.close()
