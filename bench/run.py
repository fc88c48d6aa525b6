"""One benchmark run, end to end (DESIGN §14): the composition root of the harness.

1. private topics (a unique prefix) and migrations on the given database;
2. the raw-Kafka baseline on the idle services' machine;
3. ``foldflow run orchestrator``, ``projector`` and ``worker`` (builtin.echo) as real
   subprocesses with the private settings, ready when their ``/metrics`` answers;
4. a definition of k sequential ``builtin.echo`` steps, a short warm-up, then the
   throughput phase (closed loop, N in flight) and the latency phase (open loop at half
   the target load, or half the measured throughput when that is lower);
5. the topics read back for per-step timings, figures computed, optionally py-spy on the
   orchestrator under load when targets were missed;
6. services stopped, private topics deleted.
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from bench.analysis import Observations, analyse_phase
from bench.baseline import RawTopics, run_baseline
from bench.collect import find_topic, read_topic
from bench.driver import Driver
from bench.figures import targets_for
from bench.metrics import agent_load, scrape
from bench.profile import find_py_spy, record, summarize_collapsed
from bench.results import (
    ENTRY_OVERHEAD_BYTES,
    MIN_WORKFLOWS_TO_PROJECT,
    AgentLoad,
    BaselineResult,
    BenchResult,
    MachineLoad,
    MemoryResult,
    PhaseWindow,
    ProfileResult,
    build_figures,
    diagnose,
    projected_from_state_mb,
    projected_rss_mb,
)
from bench.services import (
    ServiceProcess,
    cpu_seconds,
    machine_cpu_times,
    start_service,
)
from bench.watchers import EventWatcher, ProjectionWatcher, RssSampler
from foldflow.definitions import Definition
from foldflow.settings import Settings
from foldflow.topics import Topology
from producers import Publisher
from schemas.messages import DefinitionRegistered, Envelope

__all__ = ["BenchConfig", "BenchError", "bench_definition", "code_version", "latency_rate",
           "run_benchmark"]

TASK_TYPE = "builtin.echo"
PROFILE_RATE = 100
CHANGELOG_TABLE = "workflows"  # processors.app.TABLE_NAME (not imported: it pulls in faust)
SERVICE_PACKAGES = ("foldflow", "schemas", "producers", "processors", "workers", "projections")
Progress = Callable[[str], None]


class BenchError(RuntimeError):
    """The run could not be carried out (a service did not start, nothing completed...)."""


@dataclass(frozen=True)
class BenchConfig:
    """What to run; every field is a ``foldflow bench`` option."""

    steps: int = 3
    concurrency: int = 200
    duration: float = 30.0
    total: int | None = None
    latency_duration: float = 30.0
    latency_rate: float | None = None
    warmup: float = 3.0
    workers: int = 1
    worker_concurrency: int = 32
    baseline_messages: int = 100_000
    profile: bool = False
    profile_seconds: float = 8.0
    keep_topics: bool = False
    log_level: str | None = None
    poll_interval: float = 0.02
    drain_timeout: float = 60.0


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


def code_version() -> str:
    """Which code the services run: its directory, git commit and uncommitted changes
    (or ``FOLDFLOW_BENCH_CODE``, say for a ``git archive`` snapshot)."""
    import subprocess

    import foldflow

    root = Path(foldflow.__file__).resolve().parents[1]
    label = os.environ.get("FOLDFLOW_BENCH_CODE")  # e.g. the commit a snapshot came from
    if label:
        return f"{root} ({label})"
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=10, check=True).stdout
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--", *SERVICE_PACKAGES],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.splitlines()
    except (OSError, subprocess.SubprocessError):
        return f"{root} (not a git checkout)"
    changes = f", {len(dirty)} uncommitted change(s) in the services' packages" if dirty else ""
    return f"{root} at {head.strip()}{changes}"


def _service_env(settings: Settings, log_level: str | None) -> dict[str, str]:
    env = {
        "FOLDFLOW_TOPIC_PREFIX": settings.topic_prefix,
        "FOLDFLOW_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "FOLDFLOW_PARTITIONS": str(settings.partitions),
        "FOLDFLOW_REPLICATION_FACTOR": str(settings.replication_factor),
        "FOLDFLOW_MIN_INSYNC_REPLICAS": str(settings.min_insync_replicas),
        "FOLDFLOW_DATABASE_URL": settings.database_url,
        "FOLDFLOW_ORCHESTRATOR_STORE": settings.orchestrator_store,
        "FOLDFLOW_PROCESSING_GUARANTEE": settings.processing_guarantee,
    }
    if log_level:
        env["FOLDFLOW_LOG_LEVEL"] = log_level
    return env


def _delete_topics(settings: Settings, prefix: str) -> int:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    names = [n for n in admin.list_topics(timeout=30).topics if n.startswith(prefix)]
    if names:
        for future in admin.delete_topics(names, operation_timeout=30).values():
            with contextlib.suppress(Exception):
                future.result()
    return len(names)


class _Run:
    """The mutable state of one run (services, observers), torn down by :meth:`close`."""

    def __init__(self, settings: Settings, config: BenchConfig, progress: Progress) -> None:
        self.config = config
        self.progress = progress
        self.run_id = f"bench-{datetime.now(UTC):%H%M%S}-{uuid.uuid4().hex[:6]}"
        self.settings = settings.model_copy(update={"topic_prefix": f"{self.run_id}."})
        self.topology = Topology.of(self.settings)
        self.run_dir = (Path(settings.state_dir) / "bench" / self.run_id).resolve()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.services: list[ServiceProcess] = []
        self.publisher: Publisher | None = None
        self.events: EventWatcher | None = None
        self.projection: ProjectionWatcher | None = None
        self.rss: RssSampler | None = None
        self.notes: list[str] = []

    # --- set-up -------------------------------------------------------------------------

    def prepare(self) -> None:
        from foldflow.admin import ensure_topics
        from projections.db import upgrade

        self.progress(f"run {self.run_id}: topics {self.settings.topic_prefix}*, "
                      f"database {self.settings.database_url.rsplit('/', 1)[-1]}")
        upgrade(self.settings.database_url)
        ensure_topics(self.settings, task_types=(TASK_TYPE,))

    def baseline(self) -> BaselineResult:
        self.progress(f"raw Kafka baseline: {self.config.baseline_messages:,} messages")
        return run_baseline(
            self.settings,
            RawTopics(self.settings.topic_prefix + "bench.raw",
                      self.settings.topic_prefix + "bench.raw-probe"),
            messages=self.config.baseline_messages,
        )

    def start_services(self) -> None:
        env = _service_env(self.settings, self.config.log_level)
        self.services.append(start_service("orchestrator", ["orchestrator"], env=env,
                                           run_dir=self.run_dir))
        self.services.append(start_service("projector", ["projector"], env=env,
                                           run_dir=self.run_dir))
        for i in range(self.config.workers):
            self.services.append(start_service(
                f"worker-{i + 1}",
                ["worker", "--types", TASK_TYPE,
                 "--concurrency", str(self.config.worker_concurrency)],
                env=env, run_dir=self.run_dir,
            ))
        self.progress("starting " + ", ".join(s.name for s in self.services))
        for service in self.services:
            service.wait_ready(timeout=self.settings.service_ready_timeout)

    @property
    def orchestrator(self) -> ServiceProcess:
        return self.services[0]

    def register(self, definition: Definition) -> None:
        assert self.publisher is not None
        payload = DefinitionRegistered(definition.name, definition.version, "default",
                                       definition.canonical_json())
        self.publisher.publish(self.topology.definitions, Envelope(
            event_id=str(uuid.uuid4()), timestamp=int(time.time() * 1000), source="bench",
            correlation_id=str(uuid.uuid4()), workflow_id=definition.key, payload=payload,
            tenant="default",
        ))

    def observe(self, driver: Driver) -> None:
        projection = ProjectionWatcher(self.settings.database_url,
                                       interval=self.config.poll_interval)

        def on_terminal(workflow_id: str) -> None:
            driver.finished(workflow_id)
            projection.watch(workflow_id)

        self.projection = projection
        self.events = EventWatcher(self.settings, self.topology.events, on_terminal=on_terminal)
        self.rss = RssSampler(self.orchestrator.pid)
        projection.start()
        self.events.start()
        self.rss.start()

    def check_alive(self) -> None:
        dead = [s for s in self.services if not s.alive()]
        if dead:
            raise BenchError("; ".join(f"{s.name} exited ({s.process.returncode}):\n{s.tail()}"
                                       for s in dead))

    # --- tear-down ----------------------------------------------------------------------

    def close(self) -> None:
        for observer in (self.events, self.projection, self.rss):
            if observer is not None:
                with contextlib.suppress(Exception):
                    observer.stop()
        for service in reversed(self.services):
            with contextlib.suppress(Exception):
                service.stop(grace=self.settings.service_stop_grace)
        if self.publisher is not None:
            with contextlib.suppress(Exception):
                self.publisher.close()
        for data_dir in self.run_dir.glob("*-data"):
            shutil.rmtree(data_dir, ignore_errors=True)
        if not self.config.keep_topics:
            with contextlib.suppress(Exception):
                n = _delete_topics(self.settings, self.settings.topic_prefix)
                self.progress(f"deleted {n} topics {self.settings.topic_prefix}*")


@contextlib.contextmanager
def _cpu_meter(run: _Run) -> Iterator[dict[str, float]]:
    """CPU used while the block runs: ``busy``/``ours`` as shares of the whole machine,
    ``cores:<process>`` as the average number of cores each process kept busy."""
    out: dict[str, float] = {}

    def per_process() -> dict[str, float]:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        used = {s.name: cpu_seconds(s.pid) or 0.0 for s in run.services}
        used["harness"] = usage.ru_utime + usage.ru_stime
        return used

    machine_before, before, wall = machine_cpu_times(), per_process(), time.monotonic()
    yield out
    machine_after, after, wall = machine_cpu_times(), per_process(), time.monotonic() - wall
    for name, seconds in after.items():
        out[f"cores:{name}"] = (seconds - before.get(name, 0.0)) / max(wall, 1e-3)
    if machine_before and machine_after:
        total = machine_after[1] - machine_before[1]
        if total > 0:
            out["busy"] = (machine_after[0] - machine_before[0]) / total
            out["ours"] = sum(after.values()) - sum(before.values())
            out["ours"] /= total


def _measured(run: _Run, phase: Callable[[], PhaseWindow]
              ) -> tuple[PhaseWindow, AgentLoad | None]:
    """Run a load phase between two scrapes of the orchestrator's handling metrics."""
    port = run.orchestrator.metrics_port
    before, began = scrape(port), time.monotonic()
    window = phase()
    after, wall = scrape(port), time.monotonic() - began
    return window, agent_load(before, after, wall) if before and after else None


def _warm_up(run: _Run, driver: Driver, concurrency: int) -> None:
    count = max(1, min(20, concurrency))
    run.progress(f"warm-up: {count} workflows end to end")
    driver.closed_loop("warmup", concurrency=count, seconds=120, total=count)
    if not driver.drain(timeout=120):
        run.check_alive()
        raise BenchError(f"warm-up workflows did not complete in 120s; logs in {run.run_dir}\n"
                         f"{run.orchestrator.tail()}")


def _drain(run: _Run, driver: Driver, phase: str) -> None:
    if not driver.drain(timeout=run.config.drain_timeout):
        run.check_alive()
        run.notes.append(f"{phase}: {driver.in_flight():,} workflows still running "
                         f"{run.config.drain_timeout:.0f}s after the phase")


def _observations(run: _Run, driver: Driver) -> Observations:
    assert run.events is not None and run.projection is not None
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
        tasks=dict(tasks.by_key),
        other_times=[*results.all_times, *tasks.all_times, *commands.all_times],
    )


def _state_bytes(run: _Run) -> float | None:
    """Mean size of a workflow's stored state: the last record per key of the changelog."""
    topic = find_topic(run.settings, prefix=run.settings.topic_prefix,
                       suffix=f"-{CHANGELOG_TABLE}-changelog")
    if topic is None:
        return None
    sizes = [n for n in read_topic(run.settings, topic).last_size.values() if n > 0]
    return sum(sizes) / len(sizes) if sizes else None


def _first_look(run: _Run, window: PhaseWindow) -> float:
    """Workflows/s of a phase from its completions alone (before the topics are read)."""
    assert run.events is not None
    ends = [run.events.completions[w].kafka_ms for w in window.workflow_ids
            if w in run.events.completions]
    if not ends:
        return 0.0
    return len(ends) / max(1e-3, (max(ends) - window.started_ms) / 1000)


def latency_rate(config: BenchConfig, measured: float) -> tuple[float, str]:
    """The open-loop start rate of the latency phase and why (DESIGN §14: half load)."""
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


def _profile(run: _Run, driver: Driver) -> ProfileResult | None:
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


def run_benchmark(
    settings: Settings, config: BenchConfig, *, progress: Progress = lambda _l: None
) -> BenchResult:
    """Carry out one run and return what it measured (see the module docstring)."""
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    load_before = os.getloadavg()
    run = _Run(settings, config, progress)
    try:
        run.prepare()
        baseline = run.baseline() if config.baseline_messages > 0 else None
        run.start_services()
        definition = bench_definition(config.steps)
        run.publisher = Publisher(run.settings, source="bench")
        run.register(definition)
        driver = Driver(run.publisher, run.topology, definition=definition.name,
                        run_id=run.run_id, progress=progress)
        run.observe(driver)
        assert run.rss is not None
        _warm_up(run, driver, config.concurrency)
        rss_idle, held_idle = run.rss.now() or 0.0, len(driver.starts)

        with _cpu_meter(run) as cpu:
            progress(f"throughput phase: {config.concurrency} in flight for "
                     f"{config.duration:.0f}s" + (f" or {config.total:,} starts"
                                                    if config.total else ""))
            windows = [_measured(run, lambda: driver.closed_loop(
                "throughput", concurrency=config.concurrency, seconds=config.duration,
                total=config.total))]
            _drain(run, driver, "throughput")
            run.check_alive()
            if config.latency_duration > 0:
                per_second, why = latency_rate(config, _first_look(run, windows[0][0]))
                run.notes.append(f"latency phase at {per_second:,.0f} starts/s: {why}")
                progress(f"latency phase: {per_second:,.0f} starts/s for "
                         f"{config.latency_duration:.0f}s")
                windows.append(_measured(run, lambda: driver.open_loop(
                    "latency", per_second=per_second, seconds=config.latency_duration,
                    max_in_flight=max(config.concurrency, int(per_second * 30)),
                )))
                _drain(run, driver, "latency")
        run.check_alive()
        assert run.projection is not None
        deadline = time.monotonic() + 30
        while run.projection.pending() and time.monotonic() < deadline:
            time.sleep(0.1)
        rss_end = run.rss.now() or 0.0
        obs = _observations(run, driver)
        phases = [replace(analyse_phase(w, obs, steps=config.steps, warmup_s=config.warmup),
                          agent=agent) for w, agent in windows]
        rss_samples = run.rss.samples or [rss_end]
        held = len(driver.starts) - held_idle
        state_bytes = _state_bytes(run)
        projected, projected_from = projected_rss_mb(rss_idle, rss_end, held), "RSS slope"
        if projected is None:
            projected = projected_from_state_mb(rss_idle, state_bytes)
            projected_from = "state size"
            run.notes.append(
                f"RSS at 100k projected from the stored state size (+{ENTRY_OVERHEAD_BYTES} B "
                f"per entry), not from the RSS slope: {held:,} workflows held is too few "
                f"(< {MIN_WORKFLOWS_TO_PROJECT:,}) for a meaningful slope")
        memory = MemoryResult(
            store=run.settings.orchestrator_store.split(":", 1)[0],
            rss_idle_mb=rss_idle,
            rss_peak_mb=max(rss_samples),
            rss_end_mb=rss_end,
            workflows_held=held,
            projected_mb=projected,
            state_bytes=state_bytes,
            projected_from=projected_from,
        )
        if memory.store == "memory":
            run.notes.append("orchestrator store memory:// keeps every workflow's state in RAM "
                             "(terminal ones too); the RSS target is for rocksdb://")
        result = BenchResult(
            run_id=run.run_id,
            started_at=started_at,
            steps=config.steps,
            config={k: v for k, v in vars(config).items()},
            code=code_version(),
            machine=MachineLoad(
                cpus=os.cpu_count() or 1,
                loadavg_before=load_before,
                loadavg_after=os.getloadavg(),
                busy_share=cpu.get("busy"),
                ours_share=cpu.get("ours"),
                process_cores={k.split(":", 1)[1]: v for k, v in cpu.items()
                               if k.startswith("cores:")},
            ),
            baseline=baseline,
            phases=phases,
            memory=memory,
            notes=run.notes,
        )
        result.notes.extend(diagnose(result))
        missed = [f for f in build_figures(result) if f.verdict is not None and not f.verdict.met]
        if config.profile:
            if missed:
                result = replace(result, profile=_profile(run, driver), notes=run.notes)
            else:
                run.notes.append("--profile: every target met, no profile taken")
        return result
    finally:
        run.close()
