"""The gateway phase: starts over HTTP through ``foldflow run gateway``, with two ceilings.

Three measurements in a row, each alone on the machine's share the run gets:

1. **raw produce**: ``workflow.start.v1`` envelopes published with the gateway's own
   :class:`~producers.Publisher` (``acks=all``, idempotent), ``concurrency`` at a time,
   each awaited like a 202 awaits its ack, on a private topic: acks/s;
2. **empty route**: :mod:`foldflow.bench.empty_app` (a start route that does nothing) served by
   uvicorn as the gateway is, driven by :mod:`foldflow.bench.http_load`: requests/s;
3. **gateway**: ``foldflow run gateway --workers N`` (a key of tenant ``default`` given
   by settings, the per-client rate limit lifted), driven the same way: starts/s,
   latency, errors, and the CPU per start of the gateway's processes (from ``/proc``).

The figures of a loaded machine move together, so the phase reports starts/s as shares
of (1) and (2) measured minutes apart, and the machine's busy share during each.
:func:`run_gateway_phase` needs topics and a database whose projector has the definition
(``foldflow bench`` has both); ``python -m foldflow.bench.gateway_phase`` sets up its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import typer

from foldflow.bench.http_load import LoadReport, LoadSpec, render, run_load
from foldflow.bench.services import ServiceProcess, free_port, start_service
from foldflow.schemas.messages import Envelope, StartWorkflow, dump_json
from foldflow.settings import Settings

__all__ = [
    "GatewayPhaseConfig",
    "GatewayPhaseResult",
    "gateway_env",
    "raw_produce_rate",
    "render_phase",
    "run_gateway_phase",
    "wait_definition_readable",
]

Progress = Callable[[str], None]
TENANT = "default"
#: The gateway under test may take every start the driver sends.
UNLIMITED = "1000000/second"


@dataclass(frozen=True)
class GatewayPhaseConfig:
    """How hard and how long each of the three measurements runs."""

    workers: int = 1
    concurrency: int = 64
    duration: float = 20.0
    warmup: float = 3.0
    baselines: bool = True  # measure raw produce and the empty route too


@dataclass(frozen=True)
class GatewayPhaseResult:
    """The phase's figures (see the module docstring)."""

    workers: int
    gateway: LoadReport
    raw_produce_per_s: float | None = None
    raw_produce_busy: float | None = None
    empty_route: LoadReport | None = None
    loadavg_before: tuple[float, float, float] = (0.0, 0.0, 0.0)
    loadavg_after: tuple[float, float, float] = (0.0, 0.0, 0.0)
    notes: list[str] = field(default_factory=list)

    @property
    def share_of_raw_produce(self) -> float | None:
        """Gateway starts/s over raw acked publishes/s."""
        raw = self.raw_produce_per_s
        return self.gateway.starts_per_s / raw if raw else None

    @property
    def share_of_empty_route(self) -> float | None:
        """Gateway starts/s over the empty route's requests/s."""
        empty = self.empty_route.starts_per_s if self.empty_route else None
        return self.gateway.starts_per_s / empty if empty else None

    def to_json(self) -> dict[str, Any]:
        """The result as plain JSON values."""
        return {
            "workers": self.workers,
            "gateway": self.gateway.to_json(),
            "raw_produce_per_s": self.raw_produce_per_s,
            "raw_produce_busy": self.raw_produce_busy,
            "empty_route": self.empty_route.to_json() if self.empty_route else None,
            "share_of_raw_produce": self.share_of_raw_produce,
            "share_of_empty_route": self.share_of_empty_route,
            "loadavg_before": list(self.loadavg_before),
            "loadavg_after": list(self.loadavg_after),
            "notes": list(self.notes),
        }


def gateway_env(env: Mapping[str, str], *, key: str, port: int, workers: int) -> dict[str, str]:
    """The environment of the gateway under test: ``env`` (topics, database) plus a key
    of tenant ``default`` given by settings, no rate limit to speak of, its port."""
    keys = [{"tenant": TENANT, "scopes": ["workflows:read", "workflows:write"],
             "name": "bench", "key": key}]
    return {
        **env,
        "FOLDFLOW_API_KEYS": json.dumps(keys),
        "FOLDFLOW_GATEWAY_RATE_LIMIT": UNLIMITED,
        "FOLDFLOW_GATEWAY_PORT": str(port),
        "FOLDFLOW_GATEWAY_WORKERS": str(workers),
    }


def _start_envelope(definition: str, n: int) -> Envelope:
    workflow_id = str(uuid.uuid4())
    return Envelope(
        event_id=str(uuid.uuid4()), timestamp=int(time.time() * 1000), source="bench",
        correlation_id=uuid.uuid4().hex, workflow_id=workflow_id,
        payload=StartWorkflow(definition, 1, dump_json({"n": n}), TENANT), tenant=TENANT,
    )  # fmt: skip


async def _publish_for(
    settings: Settings, topic: str, definition: str, *, concurrency: int, duration: float,
    warmup: float,
) -> tuple[float, float | None]:
    from foldflow.bench.services import machine_cpu_times
    from foldflow.producers import Publisher

    acked: list[float] = []
    with Publisher(settings, source="bench-raw") as publisher:
        began = time.monotonic()

        async def client() -> None:
            n = 0
            while (now := time.monotonic() - began) < duration:
                await publisher.publish_async(topic, _start_envelope(definition, n))
                n += 1
                acked.append(now)

        box: list[tuple[float, float] | None] = []
        loop = asyncio.get_running_loop()
        loop.call_later(warmup, lambda: box.append(machine_cpu_times()))
        loop.call_later(duration, lambda: box.append(machine_cpu_times()))
        await asyncio.gather(*(client() for _ in range(concurrency)))
    window = [t for t in acked if warmup <= t < duration]
    busy = None
    if len(box) == 2 and box[0] and box[1] and box[1][1] > box[0][1]:
        busy = (box[1][0] - box[0][0]) / (box[1][1] - box[0][1])
    return len(window) / (duration - warmup), busy


def raw_produce_rate(
    settings: Settings, definition: str, *, concurrency: int, duration: float, warmup: float
) -> tuple[float, float | None]:
    """Acked publishes/s of start envelopes through a :class:`~producers.Publisher`,
    ``concurrency`` awaited at a time, on a private topic (created, then deleted); and
    the machine's busy share meanwhile."""
    from confluent_kafka.admin import NewTopic

    from foldflow.admin import admin_client

    topic = f"{settings.topic_prefix}bench.gateway-raw-{uuid.uuid4().hex[:6]}"
    admin = admin_client(settings)
    for future in admin.create_topics(
        [NewTopic(topic, num_partitions=settings.partitions,
                  replication_factor=settings.replication_factor or -1)],  # -1: the cluster's
        operation_timeout=30,
    ).values():  # fmt: skip
        future.result()
    try:
        return asyncio.run(_publish_for(settings, topic, definition, concurrency=concurrency,
                                        duration=duration, warmup=warmup))
    finally:
        for future in admin.delete_topics([topic], operation_timeout=30).values():
            future.result()


def _wait_answering(url: str, process: ServiceProcess, *, timeout: float) -> None:
    """Until ``url`` answers 200 (GET); RuntimeError with the log tail if the process
    exits or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not process.alive():
            raise RuntimeError(f"{process.name} exited ({process.process.returncode}):\n"
                               f"{process.tail()}")
        try:
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{process.name} not ready after {timeout:.0f}s:\n{process.tail()}")


def _start_empty_app(port: int, workers: int, run_dir: Path) -> ServiceProcess:
    import subprocess

    log = run_dir / "empty-route.log"
    log_file = log.open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "foldflow.bench.empty_app", "--port", str(port),
         "--workers", str(workers)],
        stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    return ServiceProcess("empty-route", process, port, log, log_file)


def _drive(url: str, key: str, definition: str, config: GatewayPhaseConfig,
           watch: tuple[int, ...], progress: Progress) -> LoadReport:
    spec = LoadSpec(url=url, key=key, definition=definition, concurrency=config.concurrency,
                    duration=config.duration, warmup=config.warmup, watch=watch)
    return asyncio.run(run_load(spec, progress=progress))


def wait_definition_readable(settings: Settings, name: str, *, timeout: float) -> bool:
    """Whether tenant ``default``'s definition ``name`` (any version) is in the database of
    ``settings`` within ``timeout`` seconds (the gateway reads definitions there)."""
    from foldflow.projections import queries
    from foldflow.projections.db import make_engine

    engine = make_engine(settings)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if queries.definition_version(engine, TENANT, name) is not None:
                return True
            time.sleep(0.2)
        return False
    finally:
        engine.dispose()


def run_gateway_phase(
    settings: Settings,
    *,
    definition: str,
    config: GatewayPhaseConfig,
    env: Mapping[str, str],
    run_dir: Path,
    ready_timeout: float = 120.0,
    progress: Progress = lambda _line: None,
) -> GatewayPhaseResult:
    """Measure the raw produce ceiling, the empty route, then the gateway (see the module
    docstring). ``env`` is the services' environment (``FOLDFLOW_TOPIC_PREFIX``, the
    bootstrap, partitions, ``FOLDFLOW_DATABASE_URL``: the gateway's ``wf.commands`` is
    the run's); ``definition`` is tenant ``default``'s, registered on the run's
    ``wf.definitions``: the phase waits (``ready_timeout``) until a projector stored it."""
    if not wait_definition_readable(settings, definition, timeout=ready_timeout):
        raise RuntimeError(f"definition {definition!r} of tenant {TENANT!r} is not in "
                           f"{settings.database_url.rsplit('/', 1)[-1]}: is a projector running?")
    load_before = os.getloadavg()
    raw = busy = None
    empty: LoadReport | None = None
    if config.baselines:
        progress(f"gateway phase: raw produce through the Publisher, {config.concurrency} "
                 f"awaited at a time, {config.duration:g}s")
        raw, busy = raw_produce_rate(settings, definition, concurrency=config.concurrency,
                                     duration=config.duration, warmup=config.warmup)
        port = free_port()
        server = _start_empty_app(port, config.workers, run_dir)
        try:
            _wait_port(port, server, timeout=ready_timeout)
            progress("gateway phase: the empty route")
            empty = _drive(f"http://127.0.0.1:{port}", "none", definition, config,
                           (server.pid,), progress)
        finally:
            server.stop(grace=10)
    key = "ffk_bench_" + secrets.token_urlsafe(24)
    port = free_port()
    gateway = start_service(  # port and workers from gateway_env's settings
        "gateway", ["gateway"], env=gateway_env(env, key=key, port=port, workers=config.workers),
        run_dir=run_dir,
    )  # fmt: skip
    try:
        _wait_answering(f"http://127.0.0.1:{port}/readyz", gateway, timeout=ready_timeout)
        progress(f"gateway phase: foldflow run gateway --workers {config.workers}")
        report = _drive(f"http://127.0.0.1:{port}", key, definition, config,
                        (gateway.pid,), progress)
    finally:
        gateway.stop(grace=15)
    notes = []
    if report.errors:
        notes.append(f"the gateway answered {report.errors:,} starts with an error: "
                     f"{report.by_status}; its log: {gateway.log}")
    return GatewayPhaseResult(workers=config.workers, gateway=report, raw_produce_per_s=raw,
                              raw_produce_busy=busy, empty_route=empty,
                              loadavg_before=load_before, loadavg_after=os.getloadavg(),
                              notes=notes)


def _wait_port(port: int, process: ServiceProcess, *, timeout: float) -> None:
    """Until something accepts connections on ``port``."""
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not process.alive():
            raise RuntimeError(f"{process.name} exited:\n{process.tail()}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise RuntimeError(f"{process.name} not listening after {timeout:.0f}s")


def render_phase(result: GatewayPhaseResult) -> str:
    """The phase as text: the gateway's report, then the ceilings and shares."""
    lines = [f"gateway ({result.workers} worker(s))", render(result.gateway)]
    if result.empty_route is not None:
        lines += ["", "empty route (same uvicorn setup)", render(result.empty_route)]
    if result.raw_produce_per_s is not None:
        busy = (f", machine {result.raw_produce_busy:.0%} busy"
                if result.raw_produce_busy is not None else "")
        lines += ["", f"raw produce     {result.raw_produce_per_s:,.1f} acked publishes/s{busy}"]
    shares = []
    if (raw := result.share_of_raw_produce) is not None:
        shares.append(f"{raw:.1%} of raw produce")
    if (empty := result.share_of_empty_route) is not None:
        shares.append(f"{empty:.1%} of the empty route")
    if shares:
        lines.append(f"gateway starts  {', '.join(shares)}")
    lines.append("load average    " + " ".join(f"{v:.1f}" for v in result.loadavg_before)
                 + " before, " + " ".join(f"{v:.1f}" for v in result.loadavg_after) + " after")
    lines += result.notes
    return "\n".join(lines)



# --- standalone: python -m foldflow.bench.gateway_phase ------------------------------------


def standalone(
    workers: int = typer.Option(1, min=1, max=64, help="Gateway worker processes."),
    concurrency: int = typer.Option(64, min=1, help="Requests (and publishes) in flight."),
    duration: float = typer.Option(20.0, min=2.0, help="Seconds each measurement lasts."),
    warmup: float = typer.Option(3.0, min=0.0, help="Seconds left out of each measurement."),
    baselines: bool = typer.Option(True, help="Measure raw produce and the empty route too."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Run the gateway phase on private topics of FOLDFLOW_KAFKA_BOOTSTRAP and the
    database of FOLDFLOW_DATABASE_URL (migrated; a projector runs meanwhile)."""
    from foldflow.admin import ensure_topics
    from foldflow.definitions import Definition
    from foldflow.producers import Publisher
    from foldflow.projections.db import upgrade
    from foldflow.schemas.messages import DefinitionRegistered
    from foldflow.settings import get_settings
    from foldflow.topics import Topology, topic_specs

    run_id = f"gwphase-{time.strftime('%H%M%S')}-{uuid.uuid4().hex[:6]}"
    settings = get_settings().model_copy(update={"topic_prefix": f"{run_id}."})
    run_dir = (Path(settings.state_dir) / "bench" / run_id).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    progress: Progress = lambda line: print(line, file=sys.stderr)  # noqa: E731
    progress(f"{run_id}: topics {settings.topic_prefix}*, logs in {run_dir}")
    upgrade(settings)
    ensure_topics(settings, task_types=())
    env = {"FOLDFLOW_TOPIC_PREFIX": settings.topic_prefix,
           "FOLDFLOW_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
           "FOLDFLOW_PARTITIONS": str(settings.partitions),
           "FOLDFLOW_DATABASE_URL": settings.database_url,
           "FOLDFLOW_STATE_DIR": str(run_dir / "state")}  # fmt: skip
    projector = start_service("projector", ["projector"], env=env, run_dir=run_dir)
    try:
        projector.wait_ready(timeout=settings.service_ready_timeout)
        definition = Definition.from_data({
            "name": "bench.gateway-noop", "version": 1,
            "steps": [{"id": "s1", "task": "builtin.echo"}],
        })  # fmt: skip
        with Publisher(settings, source="bench") as publisher:
            publisher.publish(Topology.of(settings).definitions, Envelope(
                event_id=str(uuid.uuid4()), timestamp=int(time.time() * 1000),
                source="bench", correlation_id=run_id, workflow_id=definition.key,
                payload=DefinitionRegistered(definition.name, definition.version, TENANT,
                                             definition.canonical_json()),
                tenant=TENANT,
            ))  # fmt: skip
        config = GatewayPhaseConfig(workers=workers, concurrency=concurrency,
                                    duration=duration, warmup=warmup, baselines=baselines)
        result = run_gateway_phase(settings, definition=definition.name, config=config,
                                   env=env, run_dir=run_dir, progress=progress)
    finally:
        projector.stop(grace=15)
        from foldflow.admin import admin_client

        names = [spec.name for spec in topic_specs(settings, task_types=())]
        for future in admin_client(settings).delete_topics(names, operation_timeout=30).values():
            with contextlib.suppress(Exception):
                future.result()
    print(json.dumps(result.to_json(), indent=2) if as_json else render_phase(result))


def main() -> None:
    """``python -m foldflow.bench.gateway_phase``."""
    typer.run(standalone)


if __name__ == "__main__":
    main()
