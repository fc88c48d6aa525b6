"""``make soak`` / ``python -m foldflow.bench.soak``: the scaled-out system under steady load and
periodic kills for a long time (30 minutes by default), reported as a table and a plot.

A private deployment (`foldflow up` with several instances of every service, its own
topic prefix and scratch database, on the configured Kafka: one broker, or the cluster of
`foldflow stack up --brokers 3`) takes workflow starts through its gateways at a steady
rate while a random instance is SIGKILLed every ``--kill-every`` seconds and started again
by `foldflow scale`. Every ``--sample-every`` seconds the RSS of every instance and the lag
of every consumer group are sampled. At the end the load stops, the run drains, and the
report says per interval workflows/s and p99 start→completed, RSS and lag; over the run,
whether memory stayed flat, the DLQ count, and whether every accepted workflow ended
exactly once (in ``wf.events``) and PostgreSQL equals ``wf.events``. Files:
``bench/runs/soak-<time>-<commit>.md``, ``.png`` and ``.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import yaml
from confluent_kafka import Consumer, TopicPartition
from sqlalchemy import Engine, create_engine, text

from foldflow.bench.logcheck import (
    QUIET,
    group_lags,
    histories,
    log_problems,
    projection_differences,
    read_topics,
    wait_for,
)
from foldflow.bench.scaleout import (
    CHAIN,
    CHAIN_NAME,
    Chaos,
    GatewayStarts,
    UpDeployment,
    delete_topics_and_groups,
    scratch_database,
)
from foldflow.bench.services import rss_mb
from foldflow.bench.soak_report import Sample as SoakSample
from foldflow.bench.soak_report import SoakSummary, intervals, markdown, plot, rss_growth
from foldflow.bench.watchers import EventWatcher
from foldflow.kafka import kafka_config
from foldflow.settings import Settings
from foldflow.topics import Topology

__all__ = ["SoakConfig", "main", "run"]

RUNS = Path(__file__).resolve().parent / "runs"


@dataclass(frozen=True)
class SoakConfig:
    """How long, how hard, how often to kill, and how many instances of each service."""

    minutes: float = 30.0
    rate: float = 10.0
    kill_every_s: float = 60.0
    sample_every_s: float = 10.0
    interval_s: float = 60.0
    drain_s: float = 300.0
    orchestrators: int = 3
    workers: int = 3
    projectors: int = 2
    gateways: int = 2

    def counts(self) -> dict[str, int]:
        return {"orchestrator": self.orchestrators, "worker": self.workers,
                "projector": self.projectors, "gateway": self.gateways}  # fmt: skip


class Lags:
    """Consumer lag of every group of a deployment against the high watermarks: committed
    offsets, or for the projector the positions it stores in PostgreSQL."""

    def __init__(self, settings: Settings, engine: Engine) -> None:
        self.settings = settings
        self.prefix = settings.topic_prefix
        self.events = Topology.of(settings).events
        config: dict[str, Any] = kafka_config(settings, {
                                  "group.id": f"{self.prefix}soak-lag", "logger": QUIET})
        self.consumer = Consumer(config)
        self.engine = engine

    def sample(self) -> dict[str, int]:
        """``{group without prefix: records behind}``; ``projector`` from PostgreSQL."""
        out = group_lags(self.settings, self.prefix, skip=(
            f"{self.prefix}foldflow.projector", f"{self.prefix}bench-watcher",
            f"{self.prefix}soak-lag"))  # fmt: skip
        with self.engine.connect() as conn:
            stored = conn.execute(text(
                "SELECT partition, next_offset FROM projection_offsets WHERE topic = :t"
            ), {"t": self.events}).all()  # fmt: skip
        out["projector"] = sum(
            max(0, self.consumer.get_watermark_offsets(TopicPartition(self.events, p),
                                                       timeout=10)[1] - o)
            for p, o in stored
        )  # fmt: skip
        return out

    def close(self) -> None:
        self.consumer.close()


def _context(config: SoakConfig, settings: Settings) -> list[str]:
    root = Path(__file__).resolve().parents[1]
    head = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True, check=False).stdout.strip()  # fmt: skip
    load = os.getloadavg()
    return [
        f"- {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, commit {head or '?'}, "
        f"{os.cpu_count()} cores, load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} "
        "at the start (other work shares the machine)",
        f"- Kafka {settings.kafka_bootstrap}; instances {config.counts()}; "
        f"{config.rate:g} starts/s of a 3-step workflow; a random instance SIGKILLed every "
        f"{config.kill_every_s:g} s and started again by `foldflow scale`",
    ]


def run(config: SoakConfig, settings: Settings, *, out: Path = RUNS) -> tuple[Path, bool]:
    """Run one soak; return the path of its Markdown report and whether every verdict
    holds (each accepted workflow ended once, PostgreSQL equals wf.events, memory flat)."""
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    work = settings.state_dir.expanduser().resolve() / "soak" / stamp
    counts = config.counts()
    context = _context(config, settings)
    say(f"soak {stamp}: {config.minutes:g} min at {config.rate:g}/s, logs in {work}")
    with scratch_database(settings.database_url, prefix="foldflow_soak") as database:
        d = UpDeployment.create(kafka_bootstrap=settings.kafka_bootstrap,
                                database_url=database, state_dir=work / "state")  # fmt: skip
        try:
            return _run(config, d, counts, context, out=out, stamp=stamp)
        finally:
            say("stopping the deployment, deleting its topics")
            d.foldflow("down", timeout=300)
            delete_topics_and_groups(settings, d.env["FOLDFLOW_TOPIC_PREFIX"])


def _run(
    config: SoakConfig, d: UpDeployment, counts: dict[str, int], context: list[str], *,
    out: Path, stamp: str,
) -> tuple[Path, bool]:  # fmt: skip
    d.must("up", *(a for kind, n in counts.items() for a in (f"--{kind}s", str(n))),
           timeout=900)  # fmt: skip
    chain = d.state_dir / "chain.yaml"
    chain.write_text(yaml.safe_dump(CHAIN))
    d.must("definitions", "register", str(chain))
    settings = d.settings()
    urls = d.gateway_urls(config.gateways)
    auth = {"Authorization": f"Bearer {d.api_key}"}
    wait_for(lambda: all(httpx.get(f"{u}/v1/definitions/{CHAIN_NAME}", headers=auth,
                                   timeout=5).status_code == 200 for u in urls),
             timeout=120, what="the definition served by every gateway")  # fmt: skip

    engine = create_engine(settings.database_url)
    lags = Lags(settings, engine)
    watcher = EventWatcher(settings, Topology.of(settings).events, on_terminal=lambda _w: None)
    watcher.start()
    samples: list[SoakSample] = []
    began_ms = time.time() * 1000
    load = GatewayStarts(urls, d.api_key, rate=config.rate).start()
    chaos = Chaos(d, counts, every=config.kill_every_s).start()
    run_s = config.minutes * 60
    say(f"load and chaos running for {config.minutes:g} min")
    try:
        while (t := (time.time() * 1000 - began_ms) / 1000) < run_s:
            pids = d.pids()
            rss = {name: mb for name, pid in pids.items() if (mb := rss_mb(pid)) is not None}
            try:
                lag = lags.sample()
            except Exception as exc:  # Kafka or PostgreSQL busy: keep the RSS sample
                say(f"lag sample failed: {exc}")
                lag = {}
            samples.append(SoakSample(t, rss, pids, lag))
            done = len(watcher.completions)
            say(f"{t / 60:5.1f} min: {len(load.accepted):,} accepted, {done:,} ended, "
                f"{len(chaos.kills)} kills, lag {sum(lag.values()):,}")  # fmt: skip
            time.sleep(max(0.0, config.sample_every_s - ((time.time() * 1000 - began_ms)
                                                          / 1000 - t)))  # fmt: skip
    finally:
        load.stop()
        run_s = (time.time() * 1000 - began_ms) / 1000
        chaos.stop()  # waits for the last restarts
    say(f"draining: {len(load.accepted):,} accepted, {len(watcher.completions):,} ended")
    accepted = set(load.accepted)
    try:
        wait_for(lambda: accepted <= set(watcher.completions), timeout=config.drain_s,
                 what="every accepted workflow ended", every=2)  # fmt: skip
    except AssertionError as exc:
        say(str(exc))
    watcher.stop()

    events = read_topics(settings, [Topology.of(settings).events], timeout=300)
    by_workflow = histories(events)
    problems = log_problems(by_workflow, accepted)
    problems += [f"{wf}: in wf.events without a 202" for wf in sorted(set(by_workflow)
                                                                     - accepted)]  # fmt: skip
    try:
        wait_for(lambda: not projection_differences(engine, by_workflow, accepted),
                 timeout=config.drain_s, what="PostgreSQL equal to wf.events", every=5)  # fmt: skip
    except AssertionError as exc:
        say(str(exc))
    projection = projection_differences(engine, by_workflow, accepted)
    dlq = len(read_topics(settings, [Topology.of(settings).dlq]))
    lags.close()
    engine.dispose()

    ends_ms = {wf: float(c.kafka_ms) for wf, c in watcher.completions.items()}
    rows = intervals(began_ms=began_ms, starts_ms=load.began_ms, ends_ms=ends_ms,
                     samples=samples, kills=chaos.kills, width_s=config.interval_s,
                     run_s=run_s)  # fmt: skip
    growth = rss_growth(samples, run_s=run_s)
    ended_once = sum(1 for wf in accepted if wf in by_workflow
                     and not log_problems(by_workflow, [wf]))  # fmt: skip
    summary = SoakSummary(
        minutes=round(run_s / 60, 1), accepted=len(accepted), gave_up=len(load.gave_up),
        ended_once=ended_once, problems=problems, projection_problems=projection, dlq=dlq,
        kills=len(chaos.kills), context=[*context, *(f"- chaos error: {e[:300]}"
                                                     for e in chaos.errors)],
    )  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    base = out / f"soak-{stamp}"
    report = base.with_suffix(".md")
    report.write_text(markdown(summary, rows, growth))
    plot(base.with_suffix(".png"), rows=rows, samples=samples, kills=chaos.kills,
         title=f"Foldflow soak {stamp}: {summary.minutes:g} min")  # fmt: skip
    base.with_suffix(".json").write_text(json.dumps({
        "config": asdict(config), "summary": asdict(summary),
        "intervals": [asdict(r) for r in rows], "growth": [asdict(g) for g in growth],
        "samples": [asdict(s) for s in samples], "kills": chaos.kills,
        "http": {str(k): v for k, v in load.statuses.items()},
    }, indent=1, default=str))  # fmt: skip
    say(f"report: {report} (+ .png, .json)")
    passed = (ended_once == len(accepted) and not problems and not projection
              and not load.gave_up and all(g.flat for g in growth))  # fmt: skip
    return report, passed


def say(line: str) -> None:
    """Progress on stderr."""
    print(line, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    """``python -m foldflow.bench.soak [--minutes 30] ...``; exits 1 when a verdict fails."""
    parser = argparse.ArgumentParser(
        prog="python -m foldflow.bench.soak", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    defaults = SoakConfig()
    parser.add_argument("--minutes", type=float, default=defaults.minutes)
    parser.add_argument("--rate", type=float, default=defaults.rate,
                        help="workflow starts per second (default %(default)s)")  # fmt: skip
    parser.add_argument("--kill-every", type=float, default=defaults.kill_every_s,
                        help="seconds between SIGKILLs (default %(default)s)")  # fmt: skip
    parser.add_argument("--sample-every", type=float, default=defaults.sample_every_s)
    parser.add_argument("--interval", type=float, default=defaults.interval_s,
                        help="seconds per row of the table (default %(default)s)")  # fmt: skip
    for kind in ("orchestrators", "workers", "projectors", "gateways"):
        parser.add_argument(f"--{kind}", type=int, default=getattr(defaults, kind))
    parser.add_argument("--out", type=Path, default=RUNS)
    args = parser.parse_args(argv)
    config = SoakConfig(
        minutes=args.minutes, rate=args.rate, kill_every_s=args.kill_every,
        sample_every_s=args.sample_every, interval_s=args.interval,
        orchestrators=args.orchestrators, workers=args.workers, projectors=args.projectors,
        gateways=args.gateways,
    )  # fmt: skip
    report, passed = run(config, Settings(), out=args.out)
    print(report.read_text())
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
