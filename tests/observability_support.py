"""Real observability backends for the tests: Jaeger v2 (built once from the Go module
proxy by deploy/local/build-jaeger.sh), Prometheus and Alertmanager (Debian's packages),
each a process on free loopback ports with its files under a test's temporary directory.
"""

from __future__ import annotations

import contextlib
import math
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import yaml

REPO = Path(__file__).resolve().parents[1]
JAEGER_VERSION = "v1.75.0"
T = TypeVar("T")


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(check: Callable[[], T | None], *, timeout: float, what: str,
             interval: float = 0.5) -> T:
    """Poll ``check`` until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


@dataclass
class Process:
    """A background process whose output goes to a log file."""

    proc: subprocess.Popen[bytes]
    log: Path

    def tail(self, chars: int = 3000) -> str:
        """The end of its log."""
        return self.log.read_text(errors="replace")[-chars:]

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 20 s."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


@contextlib.contextmanager
def _running(argv: list[str], log: Path) -> Iterator[Process]:
    with log.open("wb") as out:
        process = Process(subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT), log)
        try:
            yield process
        finally:
            process.stop()


# --- Jaeger ---------------------------------------------------------------------------------


def jaeger_binary(cache_dir: Path) -> Path | str:
    """The cached Jaeger binary (built now if Go is installed), or why there is none."""
    binary = cache_dir / f"jaeger-{JAEGER_VERSION}" / "jaeger"
    if binary.is_file():
        return binary
    if shutil.which("go") is None:
        return "the Go toolchain is not installed: Jaeger cannot be built (`make jaeger`)"
    built = subprocess.run([str(REPO / "deploy/local/build-jaeger.sh"), JAEGER_VERSION,
                            str(cache_dir)], capture_output=True, text=True, check=False)
    if built.returncode != 0 or not binary.is_file():
        raise AssertionError(f"building Jaeger failed:\n{built.stdout}\n{built.stderr}")
    return binary


@dataclass
class Jaeger:
    """A running Jaeger: OTLP in, the query API out."""

    otlp_grpc: str
    otlp_http: str
    api: str
    process: Process

    def trace(self, trace_id: str) -> dict[str, Any] | None:
        """One trace as the query API gives it (None while unknown)."""
        answer = httpx.get(f"{self.api}/api/traces/{trace_id}", timeout=10)
        if answer.status_code == 404:
            return None
        answer.raise_for_status()
        data = answer.json().get("data") or []
        return data[0] if data else None


@contextlib.contextmanager
def jaeger(binary: Path, workdir: Path) -> Iterator[Jaeger]:
    """Jaeger v2 with in-memory storage, OTLP gRPC and HTTP receivers, on free ports."""
    grpc, http, query, query_grpc = (free_port() for _ in range(4))
    config = {
        "service": {
            "extensions": ["jaeger_storage", "jaeger_query"],
            "pipelines": {"traces": {"receivers": ["otlp"], "processors": ["batch"],
                                     "exporters": ["jaeger_storage_exporter"]}},
            "telemetry": {"metrics": {"level": "none"}, "logs": {"level": "info"}},
        },
        "extensions": {
            "jaeger_storage": {"backends": {"memstore": {"memory": {"max_traces": 100000}}}},
            "jaeger_query": {"storage": {"traces": "memstore"}, "enable_tracing": False,
                             "http": {"endpoint": f"127.0.0.1:{query}"},
                             "grpc": {"endpoint": f"127.0.0.1:{query_grpc}"}},
        },
        "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": f"127.0.0.1:{grpc}"},
                                             "http": {"endpoint": f"127.0.0.1:{http}"}}}},
        "processors": {"batch": {"timeout": "100ms"}},
        "exporters": {"jaeger_storage_exporter": {"trace_storage": "memstore"}},
    }
    path = workdir / "jaeger.yaml"
    path.write_text(yaml.safe_dump(config))
    with _running([str(binary), "--config", str(path)], workdir / "jaeger.log") as process:
        running = Jaeger(f"http://127.0.0.1:{grpc}", f"http://127.0.0.1:{http}",
                         f"http://127.0.0.1:{query}", process)

        def ready() -> bool:
            if process.proc.poll() is not None:
                raise AssertionError(f"jaeger exited:\n{process.tail()}")
            with contextlib.suppress(httpx.HTTPError):
                return httpx.get(f"{running.api}/api/services", timeout=2).status_code == 200
            return False

        wait_for(ready, timeout=60, what="Jaeger's query API")
        yield running


# --- Prometheus and Alertmanager ------------------------------------------------------------

PROMETHEUS = shutil.which("prometheus")
ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")


@dataclass
class Api:
    """The HTTP API of a running Prometheus or Alertmanager."""

    url: str
    process: Process

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's result vector (Prometheus)."""
        answer = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10)
        body = answer.json()
        assert answer.status_code == 200 and body["status"] == "success", (expr, body)
        return list(body["data"]["result"])

    def value(self, expr: str) -> float | None:
        """The single value of a query (None when it has no result, or NaN: a ratio of rates
        whose denominator has not moved yet, before a second scrape, is 0/0)."""
        result = self.query(expr)
        assert len(result) <= 1, (expr, result)
        value = float(result[0]["value"][1]) if result else math.nan
        return None if math.isnan(value) else value

    def alerts(self, name: str) -> list[dict[str, Any]]:
        """The alerts named ``name`` that Alertmanager holds."""
        answer = httpx.get(f"{self.url}/api/v2/alerts",
                           params={"filter": f'alertname="{name}"'}, timeout=10)
        answer.raise_for_status()
        return list(answer.json())


@contextlib.contextmanager
def alertmanager(workdir: Path) -> Iterator[Api]:
    """Alertmanager with deploy/alertmanager/alertmanager.yml, no cluster, on a free port."""
    assert ALERTMANAGER is not None
    port = free_port()
    argv = [ALERTMANAGER, f"--config.file={REPO / 'deploy/alertmanager/alertmanager.yml'}",
            f"--storage.path={workdir / 'alertmanager-data'}",
            f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="]
    with _running(argv, workdir / "alertmanager.log") as process:
        api = Api(f"http://127.0.0.1:{port}", process)

        def ready() -> bool:
            if process.proc.poll() is not None:
                raise AssertionError(f"alertmanager exited:\n{process.tail()}")
            with contextlib.suppress(httpx.HTTPError):
                return httpx.get(f"{api.url}/-/ready", timeout=2).status_code == 200
            return False

        wait_for(ready, timeout=60, what="Alertmanager")
        yield api


RULE_FILES = ("alerts.yml", "slo.yml")


def prometheus_config(ports: dict[str, str], workdir: Path, *,
                      alertmanager_url: str | None = None) -> Path:
    """deploy/prometheus/prometheus.yml with the services on 127.0.0.1 at ``ports``
    (service name -> port), every rule file, 1 s scrapes and evaluations."""
    config = yaml.safe_load((REPO / "deploy/prometheus/prometheus.yml").read_text())
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    rules = []
    for name in RULE_FILES:
        shutil.copy(REPO / "deploy/prometheus" / name, workdir / name)
        rules.append(str(workdir / name))
    config["rule_files"] = rules
    if alertmanager_url is None:
        config.pop("alerting", None)
    else:
        target = alertmanager_url.removeprefix("http://")
        config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] = [target]
    for job in config["scrape_configs"]:
        service = job["static_configs"][0]["labels"]["service"]
        job["static_configs"][0]["targets"] = [f"127.0.0.1:{ports[service]}"]
    path = workdir / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


@contextlib.contextmanager
def prometheus(config: Path, workdir: Path) -> Iterator[Api]:
    """Prometheus with ``config`` on a free port."""
    assert PROMETHEUS is not None
    port = free_port()
    argv = [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={workdir / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}"]
    with _running(argv, workdir / "prometheus.log") as process:
        api = Api(f"http://127.0.0.1:{port}", process)

        def ready() -> bool:
            if process.proc.poll() is not None:
                raise AssertionError(f"prometheus exited:\n{process.tail()}")
            with contextlib.suppress(httpx.HTTPError):
                return httpx.get(f"{api.url}/-/ready", timeout=2).status_code == 200
            return False

        wait_for(ready, timeout=60, what="Prometheus")
        yield api
