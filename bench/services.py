"""The services under test as real subprocesses: ``foldflow run orchestrator|worker|projector``.

Each runs ``python -m foldflow.cli.main run <service>`` with the run's private settings
(topic prefix, database) in the environment, its working directory in the run's own
directory and its log in ``<run dir>/<name>.log``. A
service is ready when its ``/metrics`` answers (``FOLDFLOW_METRICS_PORT``, the same
contract ``foldflow up`` uses). Stopping is SIGTERM, then SIGKILL after a grace period.
Also here: reading a process's RSS and CPU time from ``/proc``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

__all__ = [
    "ServiceProcess",
    "cpu_seconds",
    "free_port",
    "machine_cpu_times",
    "rss_mb",
    "start_service",
]

CLI_MODULE = "foldflow.cli.main"


def free_port() -> int:
    """A TCP port on loopback nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class ServiceProcess:
    """One running service: its process, metrics port and log file."""

    name: str
    process: subprocess.Popen[bytes]
    metrics_port: int
    log: Path
    _log_file: object = field(repr=False, default=None)

    @property
    def pid(self) -> int:
        """The service's process id (the Python process itself, not a wrapper)."""
        return self.process.pid

    def alive(self) -> bool:
        """Whether the process still runs."""
        return self.process.poll() is None

    def wait_ready(self, *, timeout: float) -> None:
        """Block until ``/metrics`` answers; raise ``RuntimeError`` with the log tail if the
        process exits or ``timeout`` seconds pass."""
        deadline = time.monotonic() + timeout
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"{self.name} exited ({self.process.returncode}):\n"
                                   f"{self.tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url, timeout=1.0).status_code == 200:
                    return
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} not ready after {timeout:.0f}s:\n{self.tail()}")

    def tail(self, lines: int = 20) -> str:
        """The last ``lines`` lines of the service's log."""
        try:
            text = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(text[-lines:])

    def stop(self, *, grace: float = 15.0) -> int | None:
        """SIGTERM, wait up to ``grace`` seconds, then SIGKILL; returns the exit code."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    self.process.kill()
                self.process.wait(timeout=5)
        closer = getattr(self._log_file, "close", None)
        if closer is not None:
            closer()
        return self.process.returncode


def start_service(
    name: str,
    args: Sequence[str],
    *,
    env: Mapping[str, str],
    run_dir: Path,
) -> ServiceProcess:
    """Start ``foldflow run <args>`` as ``name`` with ``env`` added to this environment."""
    port = free_port()
    log = run_dir / f"{name}.log"
    log_file = log.open("ab")
    full_env = {
        **os.environ,
        **env,
        "FOLDFLOW_METRICS_PORT": str(port),
        "FOLDFLOW_SERVICE_NAME": name,
        "FOLDFLOW_INSTANCE_ID": name,
        "PYTHONUNBUFFERED": "1",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", CLI_MODULE, "run", *args],
        cwd=run_dir,
        env=full_env,
        stdin=subprocess.DEVNULL,
        stdout=log_file,
        stderr=subprocess.STDOUT,
    )
    return ServiceProcess(name, process, port, log, log_file)


def rss_mb(pid: int) -> float | None:
    """The resident set size of ``pid`` in MB (VmRSS), None when it is gone."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds ``pid`` has used so far, None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime, stime (fields 14, 15)


def infrastructure_cpu_seconds() -> dict[str, float]:
    """CPU seconds so far of the Kafka brokers (``java`` processes running Kafka) and of
    PostgreSQL (every ``postgres`` process: the server and its connection backends) on
    this machine. A backend that ends takes its time with it (under-counted, never
    double-counted)."""
    used = {"kafka": 0.0, "postgresql": 0.0}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/comm") as comm:
                command = comm.read().strip()
            if command == "java":
                with open(f"/proc/{name}/cmdline", "rb") as cmdline:
                    if b"kafka" not in cmdline.read():
                        continue
                kind = "kafka"
            elif command.startswith("postgres"):
                kind = "postgresql"
            else:
                continue
        except OSError:
            continue
        used[kind] += cpu_seconds(int(name)) or 0.0
    return used


def machine_cpu_times() -> tuple[float, float] | None:
    """(busy, total) CPU seconds of the whole machine since boot, from ``/proc/stat``."""
    try:
        with open("/proc/stat") as stat:
            first = stat.readline().split()
    except OSError:
        return None
    values = [int(v) for v in first[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    total = sum(values[:8])  # guest time is already counted in user
    ticks = os.sysconf("SC_CLK_TCK")
    return (total - idle) / ticks, total / ticks
