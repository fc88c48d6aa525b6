"""Load on the gateway's start path: ``POST /v1/workflows`` over HTTP, as clients send it.

An asyncio httpx driver, a process apart from the gateway. Two shapes:

- closed loop (no ``rate``): ``concurrency`` clients each send a start, wait for the
  answer, send the next: the most the gateway sustains;
- open loop (``rate``): starts are sent on a fixed schedule whatever the answers, at most
  ``concurrency`` in flight; a start that finds every slot busy is counted as *late* and
  not sent, so the achieved rate never hides a gateway that fell behind.

The first ``warmup`` seconds are left out of every figure. The report: starts/s (202s
answered inside the window), latency p50/p95/p99 of those 202s, answers by status (a
failed connection counts as ``error:<kind>``), and, for the process ids given with
``watch``, the CPU they used inside the window per accepted start (a gateway with several
workers is its supervisor plus the workers below it: pass the supervisor). Every 202's
workflow id is kept, so a test can check each accepted start reached ``wf.commands``.

Standalone::

    python -m foldflow.bench.http_load --url http://127.0.0.1:8080 \\
        --key "$(cat .foldflow/api-key)" --definition order --concurrency 64 --duration 20 \\
        --watch GATEWAY_PID

The gateway's per-client rate limit (``FOLDFLOW_GATEWAY_RATE_LIMIT``, 100/second by
default) applies to the driver's one key: raise it on the gateway under test.
"""

from __future__ import annotations

import asyncio
import json
import math
import resource
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx
import typer

from foldflow.bench.proc_cpu import CpuWindow, tree_cpu_seconds
from foldflow.bench.services import machine_cpu_times
from foldflow.bench.stats import LatencySummary, rate, summarize

__all__ = [
    "LoadReport",
    "LoadSpec",
    "Outcome",
    "analyse",
    "due",
    "main",
    "run_load",
]

PATH = "/v1/workflows"


@dataclass(frozen=True)
class LoadSpec:
    """What to send, how hard and for how long."""

    url: str
    key: str
    definition: str
    concurrency: int = 64
    rate: float | None = None  # starts/s (open loop); None: closed loop
    duration: float = 20.0
    warmup: float = 3.0
    timeout_s: float = 30.0
    idempotency_keys: bool = False  # send a fresh Idempotency-Key with each start
    watch: tuple[int, ...] = ()  # process ids whose CPU (with their children) is measured

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if self.rate is not None and not (self.rate > 0 and math.isfinite(self.rate)):
            raise ValueError("rate must be a positive number of starts/s")
        if not 0 <= self.warmup < self.duration:
            raise ValueError("warmup must be at least 0 and shorter than duration")


@dataclass(frozen=True)
class Outcome:
    """One request: when it was sent and answered (s since the run began) and how."""

    sent_s: float
    done_s: float
    status: str  # "202", "503", ... or "error:<exception class>"
    workflow_id: str | None = None

    @property
    def latency_ms(self) -> float:
        """Sent → answered, in milliseconds."""
        return (self.done_s - self.sent_s) * 1000


@dataclass(frozen=True)
class LoadReport:
    """What a run measured inside its window (``warmup`` .. ``duration``)."""

    mode: str
    window_s: float
    sent: int  # in the whole run
    accepted: int  # 202s answered inside the window
    starts_per_s: float
    latency_ms: LatencySummary | None  # of the window's 202s
    by_status: dict[str, int]  # answers inside the window
    late: int  # open loop: starts due while every slot was busy (not sent)
    gateway_cores: float | None = None
    gateway_cpu_ms_per_start: float | None = None
    driver_cores: float | None = None
    machine_busy: float | None = None  # share of the machine's CPU busy in the window
    accepted_ids: tuple[str, ...] = field(default=(), repr=False)  # every 202 of the run

    @property
    def errors(self) -> int:
        """Answers inside the window that were not 202."""
        return sum(n for status, n in self.by_status.items() if status != "202")

    def to_json(self) -> dict[str, Any]:
        """The report as plain JSON values (without the accepted ids)."""
        data = asdict(self)
        data.pop("accepted_ids")
        return data


def due(rate_per_s: float, elapsed_s: float) -> int:
    """How many starts an open loop at ``rate_per_s`` has sent by ``elapsed_s``: the
    first at 0, then one every ``1/rate_per_s`` seconds."""
    if elapsed_s < 0:
        return 0
    return math.floor(rate_per_s * elapsed_s + 1e-9) + 1


def analyse(
    outcomes: Sequence[Outcome],
    *,
    warmup: float,
    end: float,
    mode: str,
    late: int = 0,
    gateway: CpuWindow | None = None,
    driver: CpuWindow | None = None,
    machine_busy: float | None = None,
) -> LoadReport:
    """The report of ``outcomes``: the window is answers in ``[warmup, end)``."""
    window = [o for o in outcomes if warmup <= o.done_s < end]
    accepted = [o for o in window if o.status == "202"]
    window_s = max(0.0, end - warmup)
    return LoadReport(
        mode=mode,
        window_s=window_s,
        sent=len(outcomes),
        accepted=len(accepted),
        starts_per_s=rate(len(accepted), window_s),
        latency_ms=summarize([o.latency_ms for o in accepted]),
        by_status=dict(sorted(Counter(o.status for o in window).items())),
        late=late,
        gateway_cores=gateway.cores if gateway else None,
        gateway_cpu_ms_per_start=gateway.ms_per(len(accepted)) if gateway else None,
        driver_cores=driver.cores if driver else None,
        machine_busy=machine_busy,
        accepted_ids=tuple(o.workflow_id for o in outcomes if o.status == "202" and o.workflow_id),
    )


def _own_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class _Meter:
    """CPU readings at the window's start and end: the watched tree, this process, the box."""

    def __init__(self, watch: Iterable[int]) -> None:
        self.watch = tuple(watch)
        self._start: tuple[float, float, float, tuple[float, float] | None] | None = None
        self.gateway: CpuWindow | None = None
        self.driver: CpuWindow | None = None
        self.machine_busy: float | None = None

    def _read(self) -> tuple[float, float, float, tuple[float, float] | None]:
        tree = tree_cpu_seconds(self.watch) if self.watch else 0.0
        return time.monotonic(), tree, _own_cpu_s(), machine_cpu_times()

    def begin(self) -> None:
        self._start = self._read()

    def end(self) -> None:
        if self._start is None:
            return
        (t0, tree0, own0, box0), (t1, tree1, own1, box1) = self._start, self._read()
        wall = t1 - t0
        if self.watch:
            self.gateway = CpuWindow(tree1 - tree0, wall)
        self.driver = CpuWindow(own1 - own0, wall)
        if box0 and box1 and box1[1] > box0[1]:
            self.machine_busy = (box1[0] - box0[0]) / (box1[1] - box0[1])


class _Run:
    """One run's state: the client, the outcomes, the clock."""

    def __init__(self, spec: LoadSpec, client: httpx.AsyncClient) -> None:
        self.spec = spec
        self.client = client
        self.outcomes: list[Outcome] = []
        self.began = time.monotonic()
        self.headers = {"Authorization": f"Bearer {spec.key}"}
        self.sent = 0

    def now(self) -> float:
        return time.monotonic() - self.began

    async def start_one(self) -> None:
        n = self.sent
        self.sent += 1
        headers = self.headers
        if self.spec.idempotency_keys:
            headers = {**headers, "Idempotency-Key": uuid.uuid4().hex}
        body = {"definition": self.spec.definition, "input": {"n": n}}
        sent = self.now()
        workflow_id: str | None = None
        try:
            answer = await self.client.post(PATH, json=body, headers=headers)
            status = str(answer.status_code)
            if answer.status_code == 202:
                workflow_id = answer.json()["id"]
        except httpx.HTTPError as exc:
            status = f"error:{type(exc).__name__}"
        self.outcomes.append(Outcome(sent, self.now(), status, workflow_id))


async def _closed_loop(run: _Run) -> int:
    async def client() -> None:
        while run.now() < run.spec.duration:
            await run.start_one()

    await asyncio.gather(*(client() for _ in range(run.spec.concurrency)))
    return 0


async def _open_loop(run: _Run, rate_per_s: float) -> int:
    late = 0
    in_flight: set[asyncio.Task[None]] = set()
    scheduled = 0
    while (elapsed := run.now()) < run.spec.duration:
        for _ in range(due(rate_per_s, elapsed) - scheduled):
            scheduled += 1
            if len(in_flight) >= run.spec.concurrency:
                late += 1
                continue
            task = asyncio.create_task(run.start_one())
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
        next_at = scheduled / rate_per_s
        await asyncio.sleep(max(0.0, next_at - run.now()))
    if in_flight:
        await asyncio.wait(in_flight)
    return late


async def run_load(
    spec: LoadSpec, *, progress: Callable[[str], None] = lambda _line: None
) -> LoadReport:
    """Drive the gateway at ``spec.url`` as ``spec`` says; the report of the window."""
    limits = httpx.Limits(max_connections=spec.concurrency,
                          max_keepalive_connections=spec.concurrency)
    meter = _Meter(spec.watch)
    async with httpx.AsyncClient(base_url=spec.url, limits=limits,
                                 timeout=spec.timeout_s) as client:
        run = _Run(spec, client)
        loop = asyncio.get_running_loop()
        loop.call_later(spec.warmup, meter.begin)
        loop.call_later(spec.duration, meter.end)
        mode = (f"open loop, {spec.rate:,.0f} starts/s, at most {spec.concurrency} in flight"
                if spec.rate is not None else f"closed loop, {spec.concurrency} in flight")
        progress(f"http load: {mode} for {spec.duration:g}s ({spec.warmup:g}s warm-up)")
        if spec.rate is None:
            late = await _closed_loop(run)
        else:
            late = await _open_loop(run, spec.rate)
    if meter._start is not None and meter.driver is None:
        meter.end()  # the run ended before the timer fired (requests outlived duration)
    return analyse(run.outcomes, warmup=spec.warmup, end=spec.duration, mode=mode, late=late,
                   gateway=meter.gateway, driver=meter.driver, machine_busy=meter.machine_busy)


def render(report: LoadReport) -> str:
    """The report as a few lines of text."""
    lat = report.latency_ms
    lines = [
        f"mode            {report.mode}",
        f"window          {report.window_s:.1f}s, {report.sent:,} sent in the run"
        + (f", {report.late:,} late (not sent)" if report.late else ""),
        f"starts/s        {report.starts_per_s:,.1f} ({report.accepted:,} x 202)",
        "latency of 202  " + (f"p50 {lat.p50:.1f} ms, p95 {lat.p95:.1f} ms, p99 {lat.p99:.1f} "
                              f"ms, max {lat.max:.1f} ms" if lat else "none"),
        "answers         " + (", ".join(f"{s}: {n:,}" for s, n in report.by_status.items())
                              or "none"),
    ]
    if report.gateway_cores is not None:
        per = report.gateway_cpu_ms_per_start
        lines.append(f"gateway CPU     {report.gateway_cores:.2f} cores"
                     + (f", {per:.3f} ms per start" if per is not None else ""))
    if report.driver_cores is not None:
        lines.append(f"driver CPU      {report.driver_cores:.2f} cores")
    if report.machine_busy is not None:
        lines.append(f"machine busy    {report.machine_busy:.0%} of all cores")
    return "\n".join(lines)


def command(
    url: str = typer.Option(..., help="The gateway, e.g. http://127.0.0.1:8080."),
    key: str = typer.Option(..., envvar="FOLDFLOW_API_KEY",
                            help="An API key with workflows:write."),
    definition: str = typer.Option(..., help="A registered definition to start."),
    concurrency: int = typer.Option(64, min=1, help="Requests in flight at most."),
    rate_per_s: float | None = typer.Option(
        None, "--rate", min=0.001, help="Starts/s (open loop); default: closed loop."),
    duration: float = typer.Option(20.0, min=0.5, help="Seconds the run lasts."),
    warmup: float = typer.Option(3.0, min=0.0, help="Seconds left out of the figures."),
    idempotency_keys: bool = typer.Option(
        False, help="Send a fresh Idempotency-Key with each start."),
    watch: list[int] = typer.Option(
        [], help="A gateway process id (its children count too); repeatable."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Drive POST /v1/workflows of a running gateway and report what it sustained."""
    try:
        spec = LoadSpec(url=url, key=key, definition=definition, concurrency=concurrency,
                        rate=rate_per_s, duration=duration, warmup=warmup,
                        idempotency_keys=idempotency_keys, watch=tuple(watch))
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    report = asyncio.run(run_load(spec, progress=lambda line: print(line, file=sys.stderr)))
    print(json.dumps(report.to_json(), indent=2) if as_json else render(report))


def main() -> None:
    """``python -m foldflow.bench.http_load``: one run against a running gateway."""
    typer.run(command)


if __name__ == "__main__":
    main()
