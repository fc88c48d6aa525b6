"""The local stack without Docker: one Apache Kafka 4.x node (KRaft) and the machine's PostgreSQL.

DESIGN §12. ``foldflow stack up|down|status`` and the test session fixture call
:func:`up`, :func:`down` and :func:`status`. Kafka's jars come from Maven Central into
``settings.cache_dir`` (outside the repo); the broker's data lives in
``settings.cache_dir / "kafka-data"`` and survives restarts. What ``up`` started is
recorded in ``settings.state_dir / "stack.json"`` so ``down`` stops only that.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from string import Template

from sqlalchemy.engine import make_url

from foldflow.settings import Settings

__all__ = [
    "DEPLOY_DIR",
    "PartStatus",
    "StackError",
    "down",
    "kafka_reachable",
    "postgres_reachable",
    "render_server_properties",
    "status",
    "up",
]

DEPLOY_DIR = Path(__file__).resolve().parent.parent / "deploy" / "local"
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
KAFKA_MAIN = "kafka.Kafka"
STORAGE_TOOL = "kafka.tools.StorageTool"

Report = Callable[[str], None]


class StackError(RuntimeError):
    """The local stack could not be brought up (missing tool, broker did not start, ...)."""


@dataclass(frozen=True)
class PartStatus:
    """One row of ``foldflow stack status``."""

    name: str
    address: str
    running: bool
    managed: bool
    detail: str


# --------------------------------------------------------------------------- addresses


def split_host_port(address: str, default_port: int) -> tuple[str, int]:
    """``"127.0.0.1:9092"`` → ``("127.0.0.1", 9092)``; the first of a comma list."""
    first = address.split(",")[0].strip()
    if "://" in first:
        first = first.split("://", 1)[1]
    host, _, port = first.rpartition(":")
    if not host:
        return first, default_port
    return host.strip("[]"), int(port)


def kafka_address(settings: Settings) -> tuple[str, int]:
    """Host and port of the (first) bootstrap server."""
    return split_host_port(settings.kafka_bootstrap, 9092)


def postgres_address(settings: Settings) -> tuple[str, int]:
    """Host and port of the database server in ``settings.database_url``."""
    url = make_url(settings.database_url)
    return url.host or "127.0.0.1", url.port or 5432


def is_local_kafka(settings: Settings) -> bool:
    """True when the bootstrap address is one this module can start (loopback)."""
    host, _ = kafka_address(settings)
    return host in LOOPBACK and "," not in settings.kafka_bootstrap.strip(",")


def is_local_postgres(settings: Settings) -> bool:
    """True when the database URL points at the machine's PostgreSQL on loopback."""
    host, _ = postgres_address(settings)
    return host in LOOPBACK


# --------------------------------------------------------------------------- paths


def _abs(path: Path) -> Path:
    return path.expanduser().resolve()


def state_dir(settings: Settings) -> Path:
    """Where pid files, rendered configs and logs of this checkout's stack live."""
    return _abs(settings.state_dir)


def kafka_home(settings: Settings) -> Path:
    """The cache dir holding one Kafka version's jars (``.../kafka-<version>/libs``)."""
    return _abs(settings.cache_dir) / f"kafka-{settings.kafka_version}"


def kafka_data_dir(settings: Settings) -> Path:
    """The broker's log dir: formatted once, kept across restarts."""
    return _abs(settings.cache_dir) / "kafka-data"


def _state_file(settings: Settings) -> Path:
    return state_dir(settings) / "stack.json"


def _load_state(settings: Settings) -> dict[str, dict[str, object]]:
    try:
        data = json.loads(_state_file(settings).read_text())
    except (FileNotFoundError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _save_state(settings: Settings, state: dict[str, dict[str, object]]) -> None:
    path = _state_file(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2, sort_keys=True))
    tmp.replace(path)


@contextlib.contextmanager
def _machine_lock(settings: Settings) -> Iterator[None]:
    """Serialise ``up``/``down`` across processes (two test sessions starting at once)."""
    lock_dir = _abs(settings.cache_dir)
    lock_dir.mkdir(parents=True, exist_ok=True)
    with (lock_dir / "stack.lock").open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# --------------------------------------------------------------------------- probes


def _port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def kafka_reachable(settings: Settings, *, timeout: float = 3.0) -> bool:
    """True when the broker answers a metadata request."""
    host, port = kafka_address(settings)
    if not _port_open(host, port):
        return False
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap, "log_level": 0})
    try:
        admin.list_topics(timeout=timeout)
    except Exception:
        return False
    return True


def postgres_reachable(settings: Settings, *, timeout: int = 3) -> bool:
    """True when the database in ``settings.database_url`` accepts a login."""
    import psycopg

    url = make_url(settings.database_url)
    try:
        with psycopg.connect(
            host=url.host or "127.0.0.1",
            port=url.port or 5432,
            user=url.username,
            password=url.password,
            dbname=url.database,
            connect_timeout=timeout,
        ) as conn:
            conn.execute("select 1")
    except psycopg.Error:
        return False
    return True


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _is_kafka_process(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return KAFKA_MAIN.encode() in cmdline


# --------------------------------------------------------------------------- Kafka


def render_server_properties(
    settings: Settings, *, data_dir: Path, template: str | None = None
) -> str:
    """The broker's ``server.properties`` for the bootstrap address in ``settings``."""
    host, port = kafka_address(settings)
    text = (
        template
        if template is not None
        else (DEPLOY_DIR / "server.properties.template").read_text()
    )
    return Template(text).substitute(
        host=host,
        port=port,
        controller_port=port + 1,
        data_dir=str(data_dir),
        partitions=settings.partitions,
    )


def new_cluster_id() -> str:
    """A Kafka cluster id: a random UUID, URL-safe base64 without padding (as Kafka's Uuid)."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


def java_major_version(java: str = "java") -> int | None:
    """The major version of ``java`` on PATH, or None when it is missing."""
    exe = shutil.which(java)
    if exe is None:
        return None
    out = subprocess.run([exe, "-version"], capture_output=True, text=True, check=False)
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if not match:
        return None
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


def check_tools() -> None:
    """Raise :class:`StackError` naming what to install when Java 17+ or Maven is missing."""
    problems = []
    major = java_major_version()
    if major is None:
        problems.append(
            "Java 17 or newer (Debian/Ubuntu: apt-get install -y openjdk-17-jre-headless)"
        )
    elif major < 17:
        problems.append(
            f"Java 17 or newer (found Java {major}; apt-get install -y openjdk-17-jre-headless)"
        )
    if shutil.which("mvn") is None:
        problems.append("Apache Maven (Debian/Ubuntu: apt-get install -y maven)")
    if problems:
        raise StackError(
            "The local Kafka needs: " + "; ".join(problems) + ". Or point "
            "FOLDFLOW_KAFKA_BOOTSTRAP at a Kafka of your own."
        )


def resolve_jars(settings: Settings, report: Report) -> Path:
    """Copy the broker's jars from Maven Central into the cache once; return the libs dir."""
    libs = kafka_home(settings) / "libs"
    if libs.is_dir() and any(libs.glob("kafka_2.13-*.jar")):
        return libs
    report(f"Resolving Apache Kafka {settings.kafka_version} from Maven Central into {libs} ...")
    tmp = libs.with_name("libs.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    cmd = [
        "mvn", "-B", "-q",
        "-f", str(DEPLOY_DIR / "pom.xml"),
        "dependency:copy-dependencies",
        f"-Dkafka.version={settings.kafka_version}",
        f"-Dlog4j.version={settings.log4j_version}",
        f"-DoutputDirectory={tmp}",
        "-DincludeScope=runtime",
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0 or not any(tmp.glob("kafka_2.13-*.jar")):
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-30:])
        raise StackError(f"Maven could not resolve Kafka {settings.kafka_version}:\n{tail}")
    shutil.rmtree(libs, ignore_errors=True)
    tmp.replace(libs)
    return libs


def _java_cmd(settings: Settings, libs: Path, logs: Path, main: str, *args: str) -> list[str]:
    return [
        "java",
        f"-Xmx{settings.kafka_heap}",
        "-Xms128m",
        "-server",
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
        "-XX:+ExitOnOutOfMemoryError",
        "-Djava.awt.headless=true",
        f"-Dkafka.logs.dir={logs}",
        f"-Dlog4j2.configurationFile={DEPLOY_DIR / 'log4j2.properties'}",
        "-cp",
        str(libs / "*"),
        main,
        *args,
    ]


def format_storage(settings: Settings, *, libs: Path, config: Path, logs: Path) -> bool:
    """Format the data dir once (``--standalone``); return True if it formatted now."""
    data = kafka_data_dir(settings)
    if (data / "meta.properties").exists():
        return False
    data.mkdir(parents=True, exist_ok=True)
    cmd = _java_cmd(
        settings, libs, logs, STORAGE_TOOL,
        "format", "--standalone", "--ignore-formatted",
        "-t", new_cluster_id(), "-c", str(config),
    )  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise StackError(f"Formatting {data} failed:\n{proc.stdout}{proc.stderr}")
    return True


def _log_tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {path})"


def start_kafka(settings: Settings, report: Report, *, wait: float = 90.0) -> int:
    """Start the broker detached, wait until it answers metadata; return its pid."""
    check_tools()
    libs = resolve_jars(settings, report)
    run = state_dir(settings) / "kafka"
    logs = run / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    config = run / "server.properties"
    config.write_text(render_server_properties(settings, data_dir=kafka_data_dir(settings)))
    if format_storage(settings, libs=libs, config=config, logs=logs):
        report(f"Formatted Kafka storage in {kafka_data_dir(settings)}")

    console_log = logs / "console.log"
    with console_log.open("ab") as out:
        proc = subprocess.Popen(
            _java_cmd(settings, libs, logs, KAFKA_MAIN, str(config)),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # outlive the shell or test session that started it
            close_fds=True,
        )
    (run / "kafka.pid").write_text(f"{proc.pid}\n")
    report(f"Started Kafka (pid {proc.pid}), waiting for {settings.kafka_bootstrap} ...")

    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise StackError(
                f"Kafka exited with code {proc.returncode}. Log tail ({logs}):\n"
                f"{_log_tail(logs / 'server.log')}\n{_log_tail(console_log, 15)}"
            )
        if kafka_reachable(settings, timeout=2.0):
            return proc.pid
        time.sleep(0.5)
    _terminate(proc.pid)
    raise StackError(
        f"Kafka did not answer a metadata request within {wait:.0f}s. Log tail ({logs}):\n"
        f"{_log_tail(logs / 'server.log')}\n{_log_tail(console_log, 15)}"
    )


def _terminate(pid: int, *, grace: float = 30.0) -> None:
    if not _pid_alive(pid):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        # Reap our own child if we are its parent (tests); otherwise just poll.
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        if not _pid_alive(pid):
            return
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


# --------------------------------------------------------------------------- PostgreSQL


def _as_postgres(cmd: list[str]) -> list[str]:
    if os.geteuid() == 0:
        runuser = shutil.which("runuser")
        return (
            [runuser, "-u", "postgres", "--", *cmd]
            if runuser
            else ["su", "postgres", "-c", " ".join(cmd)]
        )
    return ["sudo", "-n", "-u", "postgres", *cmd]


def _clusters() -> list[tuple[str, str, int, str]]:
    """``pg_lsclusters``: (version, name, port, status) for each cluster."""
    out = subprocess.run(["pg_lsclusters", "-h"], capture_output=True, text=True, check=True)
    rows = []
    for line in out.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 4:
            rows.append((parts[0], parts[1], int(parts[2]), parts[3]))
    return rows


def ensure_postgres_installed(report: Report) -> None:
    """Install Debian's ``postgresql`` when ``pg_ctlcluster`` is missing (root only)."""
    if shutil.which("pg_ctlcluster"):
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise StackError(
            "PostgreSQL is not installed. Install it (Debian/Ubuntu: apt-get install -y "
            "postgresql) or point FOLDFLOW_DATABASE_URL at a PostgreSQL of your own."
        )
    report("Installing PostgreSQL (apt-get install -y postgresql) ...")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    proc = subprocess.run(
        ["apt-get", "install", "-y", "postgresql"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if proc.returncode != 0:
        raise StackError(f"apt-get install postgresql failed:\n{proc.stdout[-2000:]}{proc.stderr}")


def start_postgres(settings: Settings, report: Report) -> tuple[str, str] | None:
    """Start the cluster serving the URL's port if it is down; return it if we started it."""
    ensure_postgres_installed(report)
    _, port = postgres_address(settings)
    clusters = [c for c in _clusters() if c[2] == port]
    if not clusters:
        raise StackError(
            f"No local PostgreSQL cluster listens on port {port} (see pg_lsclusters). "
            "Point FOLDFLOW_DATABASE_URL at your PostgreSQL."
        )
    version, name, _, state = clusters[0]
    if state == "online":
        return None
    report(f"Starting PostgreSQL {version}/{name} on port {port} ...")
    proc = subprocess.run(
        ["pg_ctlcluster", version, name, "start"], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise StackError(f"pg_ctlcluster {version} {name} start failed:\n{proc.stderr}")
    return version, name


def _sql_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _sql_ident(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


def ensure_role_and_database(settings: Settings) -> None:
    """Create the URL's role (with its password) and database if missing; idempotent."""
    url = make_url(settings.database_url)
    user, password, db = url.username or "foldflow", url.password or "", url.database or "foldflow"
    _, port = postgres_address(settings)

    def psql(sql: str, dbname: str = "postgres") -> str:
        cmd = _as_postgres(
            ["psql", "-p", str(port), "-d", dbname, "-v", "ON_ERROR_STOP=1", "-qAtc", sql]
        )
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd="/")
        if proc.returncode != 0:
            raise StackError(f"psql failed ({sql.split()[0]} ...): {proc.stderr.strip()}")
        return proc.stdout.strip()

    role_sql = (
        f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = {_sql_literal(user)}) "
        f"THEN CREATE ROLE {_sql_ident(user)} LOGIN PASSWORD {_sql_literal(password)}; "
        f"ELSE ALTER ROLE {_sql_ident(user)} LOGIN PASSWORD {_sql_literal(password)}; "
        "END IF; END $$;"
    )
    psql(role_sql)
    if psql(f"SELECT 1 FROM pg_database WHERE datname = {_sql_literal(db)}") != "1":
        psql(f"CREATE DATABASE {_sql_ident(db)} OWNER {_sql_ident(user)}")
    psql(f"GRANT ALL ON SCHEMA public TO {_sql_ident(user)}", dbname=db)


# --------------------------------------------------------------------------- up / down / status


def _say(_: str) -> None:
    return None


def up(settings: Settings, *, report: Report = _say) -> list[str]:
    """Bring Kafka and PostgreSQL up if they are local and not running; idempotent.

    Returns one line per part saying what happened. Raises :class:`StackError`.
    """
    lines: list[str] = []
    with _machine_lock(settings):
        state = _load_state(settings)

        if not is_local_kafka(settings):
            lines.append(
                f"Kafka: {settings.kafka_bootstrap} is not local; `foldflow stack` only manages "
                "the local stack (leaving it alone)"
            )
        elif kafka_reachable(settings):
            lines.append(f"Kafka: already up at {settings.kafka_bootstrap}")
        else:
            pid = start_kafka(settings, report)
            state["kafka"] = {"pid": pid, "bootstrap": settings.kafka_bootstrap}
            _save_state(settings, state)
            lines.append(f"Kafka: started at {settings.kafka_bootstrap} (pid {pid})")
        report(lines[-1])

        host, port = postgres_address(settings)
        if not is_local_postgres(settings):
            lines.append(
                f"PostgreSQL: {host}:{port} is not local; `foldflow stack` only manages the "
                "local stack (leaving it alone)"
            )
        elif postgres_reachable(settings):
            lines.append(f"PostgreSQL: already up at {host}:{port}")
        else:
            started = start_postgres(settings, report)
            if started:
                state["postgres"] = {"version": started[0], "cluster": started[1]}
                _save_state(settings, state)
            ensure_role_and_database(settings)
            if not postgres_reachable(settings, timeout=10):
                raise StackError(
                    f"PostgreSQL at {host}:{port} still refuses the login of "
                    f"{settings.database_url!r}; check pg_hba.conf"
                )
            verb = "started" if started else "was running; role and database ensured"
            lines.append(f"PostgreSQL: {verb} at {host}:{port}")
        report(lines[-1])
    return lines


def down(settings: Settings, *, report: Report = _say) -> list[str]:
    """Stop what :func:`up` started from this checkout (per the state file), nothing else."""
    lines: list[str] = []
    with _machine_lock(settings):
        state = _load_state(settings)
        kafka = state.pop("kafka", None)
        if kafka and isinstance(kafka.get("pid"), int):
            pid = int(kafka["pid"])  # type: ignore[call-overload]
            if _pid_alive(pid) and _is_kafka_process(pid):
                _terminate(pid)
                lines.append(f"Kafka: stopped (pid {pid})")
            else:
                lines.append("Kafka: was not running")
            (state_dir(settings) / "kafka" / "kafka.pid").unlink(missing_ok=True)
        else:
            lines.append("Kafka: not started by `foldflow stack up` here; left alone")
        report(lines[-1])

        pg = state.pop("postgres", None)
        if pg:
            version, name = str(pg["version"]), str(pg["cluster"])
            subprocess.run(
                ["pg_ctlcluster", version, name, "stop"], check=False, capture_output=True
            )
            lines.append(f"PostgreSQL: stopped cluster {version}/{name}")
        else:
            lines.append("PostgreSQL: not started by `foldflow stack up` here; left alone")
        report(lines[-1])
        _save_state(settings, state)
    return lines


def status(settings: Settings) -> list[PartStatus]:
    """Whether each part answers, and whether this checkout's ``stack up`` started it."""
    state = _load_state(settings)
    kafka = state.get("kafka") or {}
    pid = kafka.get("pid")
    managed_kafka = isinstance(pid, int) and _pid_alive(pid) and _is_kafka_process(pid)
    kafka_up = kafka_reachable(settings)
    kafka_detail = (
        f"pid {pid}, data {kafka_data_dir(settings)}"
        if managed_kafka
        else ("not started here" if kafka_up else "down")
    )
    if not is_local_kafka(settings):
        kafka_detail = "external (not managed)"

    host, port = postgres_address(settings)
    pg_up = postgres_reachable(settings)
    pg_detail = (
        "cluster started here"
        if state.get("postgres")
        else ("machine's server" if pg_up else "down")
    )
    if not is_local_postgres(settings):
        pg_detail = "external (not managed)"
    return [
        PartStatus("Kafka", settings.kafka_bootstrap, kafka_up, managed_kafka, kafka_detail),
        PartStatus("PostgreSQL", f"{host}:{port}", pg_up, bool(state.get("postgres")), pg_detail),
    ]
