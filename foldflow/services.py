"""The background services of ``foldflow up|down|ps|scale``.

``up`` starts each instance of :func:`services` as a detached ``foldflow run <svc>``
process (its own session, so it outlives the shell). A service runs as one or more
instances (``settings.orchestrators``, ``workers``, ``projectors``, ``gateways``): the
first is named after its service (``worker``), instance k ≥ 2 ``worker-k``. The name is
the instance's ``FOLDFLOW_INSTANCE_ID`` (stable across restarts of that slot: the
orchestrator's transactional id and the projector's client id derive from it), its log
``<state_dir>/logs/<name>.log`` and its pid file ``<state_dir>/pids/<name>.pid``.

Readiness contract: every instance is started with ``FOLDFLOW_SERVICE_NAME=<svc>``,
``FOLDFLOW_INSTANCE_ID=<name>`` and its own port — ``FOLDFLOW_METRICS_PORT`` = the
service's port setting + 10(k-1); a gateway gets ``FOLDFLOW_GATEWAY_PORT`` =
``gateway_port`` + (k-1) — and is *ready* when ``GET http://127.0.0.1:<port><ready_path>``
answers 200: ``/metrics`` for the orchestrator, worker and projector, ``/readyz`` for the
gateway. A process that exits, or is not ready in ``settings.service_ready_timeout``,
makes ``up`` fail with the tail of its log.

``down`` stops every instance ``up`` or ``scale`` started (pid files + a command-line
check against pid reuse): SIGTERM to the process group, SIGKILL after
``settings.service_stop_grace``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import httpx
from pydantic import SecretStr

from foldflow.settings import Settings
from foldflow.topics import BUILTIN_TASK_TYPES

__all__ = [
    "KINDS",
    "ServiceError",
    "ServiceSpec",
    "ServiceStatus",
    "exclusive",
    "instance",
    "known",
    "log_path",
    "pid_path",
    "port_free",
    "scale",
    "services",
    "settings_env",
    "stable_instance_id",
    "start",
    "status",
    "stop",
    "wait_ready",
]

Report = Callable[[str], None]
State = Literal["ready", "starting", "stopped", "exited"]

#: The module every service process runs (``python -m foldflow.cli.main run <svc>``).
CLI_MODULE = "foldflow.cli.main"

#: The services, in start order.
KINDS = ("orchestrator", "worker", "projector", "gateway")
#: Instance k of a service serves /metrics on its port + PORT_STRIDE·(k-1): the three
#: metrics ports are adjacent by default, so a stride of 1 would collide.
PORT_STRIDE = 10


class ServiceError(RuntimeError):
    """A service could not be started or did not become ready."""


@dataclass(frozen=True)
class ServiceSpec:
    """One instance of a background service: its name, ``foldflow`` arguments and port."""

    name: str  # the instance: "worker", "worker-2", ... (its instance id, log and pid file)
    argv: tuple[str, ...]
    port_setting: str  # the Settings field holding the port of instance 1
    port: int
    ready_path: str = "/metrics"
    own_metrics_server: bool = True  # False: /metrics is served on its own port (gateway)
    kind: str = ""  # the service: "orchestrator", "worker", "projector" or "gateway"
    slot: int = 1

    @property
    def ready_url(self) -> str:
        """The URL that answers 200 once the service is ready."""
        return f"http://127.0.0.1:{self.port}{self.ready_path}"


def instance_name(kind: str, slot: int) -> str:
    """``worker`` for instance 1, ``worker-2``, ``worker-3``, ... for the others."""
    return kind if slot == 1 else f"{kind}-{slot}"


def instance(settings: Settings, kind: str, slot: int) -> ServiceSpec:
    """Instance ``slot`` (1-based) of service ``kind``."""
    if kind not in KINDS:
        raise ValueError(f"no service {kind!r}; the services are {', '.join(KINDS)}")
    if slot < 1:
        raise ValueError(f"instance numbers start at 1, not {slot}")
    name = instance_name(kind, slot)
    if kind == "gateway":
        return ServiceSpec(name, ("run", "gateway"), "gateway_port",
                           settings.gateway_port + slot - 1, "/readyz", False, kind, slot)
    argv: tuple[str, ...] = ("run", kind)
    if kind == "worker":
        argv += tuple(arg for t in BUILTIN_TASK_TYPES for arg in ("--task-type", t))
    setting = f"{kind}_metrics_port"
    port = getattr(settings, setting) + PORT_STRIDE * (slot - 1)
    return ServiceSpec(name, argv, setting, port, "/metrics", True, kind, slot)


def count_of(settings: Settings, kind: str) -> int:
    """How many instances of ``kind`` settings ask for (``settings.workers``, ...)."""
    return int(getattr(settings, f"{kind}s"))


def services(settings: Settings) -> tuple[ServiceSpec, ...]:
    """What ``foldflow up`` runs, in start order: every instance of every service."""
    return tuple(
        instance(settings, kind, slot)
        for kind in KINDS
        for slot in range(1, count_of(settings, kind) + 1)
    )


def _slots_on_disk(settings: Settings, kind: str) -> set[int]:
    """The instances of ``kind`` that have a pid file (started by ``up`` or ``scale``)."""
    slots = set()
    for path in _dir(settings, "pids").glob(f"{kind}*.pid"):
        rest = path.stem[len(kind):]
        if rest == "":
            slots.add(1)
        elif rest.startswith("-") and rest[1:].isdigit() and int(rest[1:]) >= 2:
            slots.add(int(rest[1:]))
    return slots


def known(settings: Settings, kinds: tuple[str, ...] = KINDS) -> tuple[ServiceSpec, ...]:
    """The instances settings ask for plus every one with a pid file, in start order."""
    return tuple(
        instance(settings, kind, slot)
        for kind in kinds
        for slot in sorted(
            set(range(1, count_of(settings, kind) + 1)) | _slots_on_disk(settings, kind)
        )
    )


@dataclass(frozen=True)
class ServiceStatus:
    """One row of ``foldflow ps``."""

    name: str
    pid: int | None
    state: State
    uptime_s: float | None
    port: int
    log: Path


# --------------------------------------------------------------------------- paths


def _dir(settings: Settings, sub: str) -> Path:
    return (settings.state_dir.expanduser().resolve() / sub)


def pid_path(settings: Settings, name: str) -> Path:
    """``<state_dir>/pids/<name>.pid``."""
    return _dir(settings, "pids") / f"{name}.pid"


def log_path(settings: Settings, name: str) -> Path:
    """``<state_dir>/logs/<name>.log``."""
    return _dir(settings, "logs") / f"{name}.log"


def log_tail(path: Path, lines: int = 30) -> str:
    """The last ``lines`` lines of a log file (or a note that there is none)."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {path})"


@contextlib.contextmanager
def exclusive(settings: Settings) -> Iterator[None]:
    """Serialise ``up``/``down`` of one state dir across processes (two ``up`` at once)."""
    lock = _dir(settings, "pids") / ".lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with lock.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# --------------------------------------------------------------------------- processes


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)  # reap our own child (tests start and stop in one process)
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def _is_ours(pid: int, spec: ServiceSpec) -> bool:
    """True when ``pid`` runs ``foldflow run <spec.name>`` (guards against pid reuse)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    args = [a.decode(errors="replace") for a in cmdline]
    return CLI_MODULE in args and args[args.index(CLI_MODULE) + 1 :][:2] == list(spec.argv[:2])


def running_pid(settings: Settings, spec: ServiceSpec) -> int | None:
    """The pid of this service if ``up`` started it and it is still running."""
    try:
        pid = int(pid_path(settings, spec.name).read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _alive(pid) and _is_ours(pid, spec) else None


def settings_env(settings: Settings) -> dict[str, str]:
    """The settings given explicitly (environment, ``.env`` or arguments) as ``FOLDFLOW_*``
    variables, plus the absolute ``state_dir``, so a child process sees the same settings.
    """
    dumped = settings.model_dump(mode="json")
    env: dict[str, str] = {}
    for name in settings.model_fields_set:
        value = getattr(settings, name)
        if value is None:
            continue
        if isinstance(value, SecretStr):
            text = value.get_secret_value()
        elif isinstance(value, Path):
            text = str(value.expanduser().resolve())
        elif isinstance(value, str | int | float | bool):
            text = str(value)
        else:
            text = json.dumps(dumped[name])
        env[f"FOLDFLOW_{name.upper()}"] = text
    env["FOLDFLOW_STATE_DIR"] = str(settings.state_dir.expanduser().resolve())
    return env


def stable_instance_id(settings: Settings, name: str) -> str:
    """An instance id for service ``name`` that is the same on every ``up`` of this state
    dir and differs between state dirs: the orchestrator's ``transactional.id`` comes from
    it, so a restarted orchestrator fences its predecessor at once, and two checkouts on
    one broker never fence each other."""
    where = str(settings.state_dir.expanduser().resolve()).encode()
    return f"{name}-{hashlib.blake2b(where, digest_size=4).hexdigest()}"


def service_env(settings: Settings, spec: ServiceSpec, base: Mapping[str, str]) -> dict[str, str]:
    """The environment a service starts with: ``base`` + the settings + its name and port
    (and, unless one was set, a stable instance id)."""
    env = {**base, **settings_env(settings)}
    env["FOLDFLOW_SERVICE_NAME"] = spec.kind or spec.name
    # Distinct and stable per slot: two orchestrators must never share a transactional
    # id, and a restarted one must take its own back. A configured instance id (one per
    # machine running `foldflow up` against the same Kafka) prefixes it; without one, the
    # state dir tells two checkouts on one broker apart.
    env["FOLDFLOW_INSTANCE_ID"] = (
        f"{settings.instance_id}.{spec.name}"
        if settings.instance_id
        else stable_instance_id(settings, spec.name)
    )
    env["FOLDFLOW_METRICS_PORT"] = str(spec.port if spec.own_metrics_server else 0)
    if spec.kind == "gateway":
        env["FOLDFLOW_GATEWAY_PORT"] = str(spec.port)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def port_free(port: int) -> bool:
    """True when nothing listens on ``port`` (checked by binding it on every interface)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def start(settings: Settings, spec: ServiceSpec) -> tuple[int, bool]:
    """Start ``spec`` detached unless it already runs; return ``(pid, started_now)``."""
    pid = running_pid(settings, spec)
    if pid is not None:
        return pid, False
    if not port_free(spec.port):
        # Someone else's process would answer the readiness check in our service's place.
        stride = "" if spec.slot == 1 else f" (instance {spec.slot} of {spec.kind})"
        raise ServiceError(
            f"{spec.name}: port {spec.port}{stride} is taken by another process; stop it or "
            f"set FOLDFLOW_{spec.port_setting.upper()}"
        )
    log = log_path(settings, spec.name)
    log.parent.mkdir(parents=True, exist_ok=True)
    pid_file = pid_path(settings, spec.name)
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", CLI_MODULE, *spec.argv],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=service_env(settings, spec, os.environ),
            start_new_session=True,
            close_fds=True,
        )
    pid_file.write_text(f"{proc.pid}\n")
    return proc.pid, True


def is_ready(spec: ServiceSpec, *, timeout: float = 2.0) -> bool:
    """True when the service's readiness URL answers 200."""
    try:
        return httpx.get(spec.ready_url, timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


def wait_ready(settings: Settings, spec: ServiceSpec, pid: int) -> None:
    """Wait until ``spec`` is ready; raise :class:`ServiceError` with its log tail if not."""
    log = log_path(settings, spec.name)
    deadline = time.monotonic() + settings.service_ready_timeout
    while True:
        if not _alive(pid):
            raise ServiceError(
                f"{spec.name} (pid {pid}) exited before it was ready. Log tail ({log}):\n"
                f"{log_tail(log)}"
            )
        if is_ready(spec):
            return
        if time.monotonic() >= deadline:
            raise ServiceError(
                f"{spec.name} (pid {pid}) was not ready at {spec.ready_url} within "
                f"{settings.service_ready_timeout:.0f}s. Log tail ({log}):\n{log_tail(log)}"
            )
        time.sleep(0.5)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)  # the service is its own session leader: its group is its pid
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def stop(settings: Settings, specs: tuple[ServiceSpec, ...], *, report: Report) -> list[str]:
    """SIGTERM every running service of ``specs`` at once, SIGKILL the ones left after grace."""
    running: dict[str, int] = {}
    for spec in specs:
        pid = running_pid(settings, spec)
        if pid is None:
            report(f"{spec.name}: not running")
        else:
            _signal_group(pid, signal.SIGTERM)
            running[spec.name] = pid
    deadline = time.monotonic() + settings.service_stop_grace
    while any(_alive(pid) for pid in running.values()) and time.monotonic() < deadline:
        time.sleep(0.2)
    stopped: list[str] = []
    for name, pid in running.items():
        if _alive(pid):
            _signal_group(pid, signal.SIGKILL)
            report(f"{name}: killed (pid {pid}, still running after "
                   f"{settings.service_stop_grace:.0f}s)")
        else:
            report(f"{name}: stopped (pid {pid})")
        stopped.append(name)
    for spec in specs:
        pid_path(settings, spec.name).unlink(missing_ok=True)
    return stopped


def status(settings: Settings, specs: tuple[ServiceSpec, ...]) -> list[ServiceStatus]:
    """The state of each service: ready, starting (alive, not ready), exited or stopped."""
    rows: list[ServiceStatus] = []
    for spec in specs:
        pid_file = pid_path(settings, spec.name)
        pid = running_pid(settings, spec)
        if pid is not None:
            uptime = max(0.0, time.time() - pid_file.stat().st_mtime)
            state: State = "ready" if is_ready(spec, timeout=1.0) else "starting"
        else:
            uptime = None
            state = "exited" if pid_file.exists() else "stopped"
        rows.append(ServiceStatus(spec.name, pid, state, uptime, spec.port,
                                  log_path(settings, spec.name)))
    return rows


def scale(settings: Settings, kind: str, count: int, *, report: Report) -> None:
    """Run exactly ``count`` instances of ``kind``: start the ones of 1..count that do not
    run and wait until they are ready, then stop (SIGTERM, a clean leave of the consumer
    group) the ones above ``count``. Raises :class:`ServiceError`."""
    fresh: list[tuple[ServiceSpec, int]] = []
    for slot in range(1, count + 1):
        spec = instance(settings, kind, slot)
        pid, started = start(settings, spec)
        report(f"{spec.name}: {'started' if started else 'already running'} (pid {pid})")
        if started:
            fresh.append((spec, pid))
    for spec, pid in fresh:
        wait_ready(settings, spec, pid)
        report(f"{spec.name}: ready at {spec.ready_url}")
    extra = tuple(spec for spec in known(settings, (kind,)) if spec.slot > count)
    if extra:
        stop(settings, extra, report=report)
