"""The local Apache Kafka 4.x broker: jars from Maven Central, KRaft storage, the process."""

from __future__ import annotations

import base64
import contextlib
import os
import re
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from string import Template

from foldflow.settings import Settings
from foldflow.stack.common import (
    DEPLOY_DIR,
    KafkaNode,
    Report,
    StackError,
    kafka_address,
    kafka_data_dir,
    kafka_home,
    kafka_reachable,
    port_open,
    state_dir,
)

KAFKA_MAIN = "kafka.Kafka"
#: Partitions of __consumer_offsets and __transaction_state on a local multi-node Kafka
#: (one node keeps Kafka's default, 50).
CLUSTER_INTERNAL_PARTITIONS = 12
STORAGE_TOOL = "kafka.tools.StorageTool"


def pid_alive(pid: int) -> bool:
    """True when ``pid`` runs (a zombie awaiting its parent's wait() counts as gone)."""
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


def is_kafka_process(pid: int) -> bool:
    """True when ``pid`` is a broker (``kafka.Kafka`` on its command line), not a reused pid."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return KAFKA_MAIN.encode() in cmdline


def replication_for(nodes: int) -> tuple[int, int]:
    """Replicas and ``min.insync.replicas`` of a local Kafka of ``nodes`` nodes.

    One node: 1 and 1. Three or more: 3 and 2 (acks=all survives any one node down).
    """
    replicas = min(3, max(1, nodes))
    return replicas, max(1, replicas - 1)


def render_server_properties(
    settings: Settings,
    *,
    data_dir: Path,
    template: str | None = None,
    node: KafkaNode | None = None,
    cluster: Sequence[KafkaNode] = (),
) -> str:
    """A node's ``server.properties``: the single broker of ``settings`` by default, or
    ``node`` of ``cluster`` (every node of it a voter of the controller quorum)."""
    host, port = kafka_address(settings)
    if node is not None:
        host, port = node.host, node.port
    voters = [n.controller_address for n in cluster] or [f"{host}:{port + 1}"]
    replicas, min_isr = replication_for(len(voters))
    text = (
        template
        if template is not None
        else (DEPLOY_DIR / "server.properties.template").read_text()
    )
    return Template(text).substitute(
        node_id=node.node_id if node is not None else 1,
        quorum=",".join(voters),
        host=host,
        port=port,
        controller_port=port + 1,
        data_dir=str(data_dir),
        partitions=settings.partitions,
        replicas=replicas,
        min_isr=min_isr,
        internal_partitions=50 if len(voters) == 1 else CLUSTER_INTERNAL_PARTITIONS,
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


def check_tools(*, need_maven: bool = True) -> None:
    """Raise :class:`StackError` naming what to install when Java 17+ or Maven is missing.

    Maven is only needed while the jars are not yet in the cache.
    """
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
    if need_maven and shutil.which("mvn") is None:
        problems.append("Apache Maven (Debian/Ubuntu: apt-get install -y maven)")
    if problems:
        raise StackError(
            "The local Kafka needs: " + "; ".join(problems) + ". Or point "
            "FOLDFLOW_KAFKA_BOOTSTRAP at a Kafka of your own."
        )


def cached_libs(settings: Settings) -> Path | None:
    """The libs dir of ``settings.kafka_version`` if its jars are already in the cache."""
    libs = kafka_home(settings) / "libs"
    return libs if libs.is_dir() and any(libs.glob("kafka_2.13-*.jar")) else None


def resolve_jars(settings: Settings, report: Report) -> Path:
    """Copy the broker's jars from Maven Central into the cache once; return the libs dir."""
    libs = kafka_home(settings) / "libs"
    if cached_libs(settings):
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


def java_cmd(settings: Settings, libs: Path, logs: Path, main: str, *args: str) -> list[str]:
    """The ``java`` command line running ``main`` from the cached jars, heap bounded."""
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
    cmd = java_cmd(
        settings, libs, logs, STORAGE_TOOL,
        "format", "--standalone", "--ignore-formatted",
        "-t", new_cluster_id(), "-c", str(config),
    )  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise StackError(f"Formatting {data} failed:\n{proc.stdout}{proc.stderr}")
    return True


def log_tail(path: Path, lines: int = 25) -> str:
    """The last lines of a log, after its last few ERROR / ``Caused by`` lines (the why)."""
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return f"(no log at {path})"
    causes = [ln for ln in text if " ERROR " in ln or ln.startswith("Caused by")][-5:]
    head = ["Errors:", *causes, "Tail:"] if causes else []
    return "\n".join([*head, *text[-lines:]])


def logs_of(run: Path) -> str:
    """The tails of a node's server and console logs, for an error message."""
    logs = run / "logs"
    return (
        f"Log tail ({logs}):\n{log_tail(logs / 'server.log')}\n"
        f"{log_tail(logs / 'console.log', 15)}"
    )


def launch(settings: Settings, *, libs: Path, run: Path, config: Path) -> subprocess.Popen[bytes]:
    """Start one node detached (its own session, outliving its starter); pid in ``run``."""
    logs = run / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    with (logs / "console.log").open("ab") as out:
        proc = subprocess.Popen(
            java_cmd(settings, libs, logs, KAFKA_MAIN, str(config)),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # outlive the shell or test session that started it
            close_fds=True,
        )
    (run / "kafka.pid").write_text(f"{proc.pid}\n")
    return proc


def start_kafka(settings: Settings, report: Report, *, wait: float = 90.0) -> int:
    """Start the broker detached, wait until it answers metadata; return its pid."""
    check_tools(need_maven=cached_libs(settings) is None)
    host, port = kafka_address(settings)
    busy = [p for p in (port, port + 1) if port_open(host, p)]
    if busy:
        raise StackError(
            f"Port(s) {', '.join(map(str, busy))} on {host} are taken by something that is not "
            "a Kafka broker answering metadata requests; free them or set "
            "FOLDFLOW_KAFKA_BOOTSTRAP to another port (the controller uses port + 1)."
        )
    libs = resolve_jars(settings, report)
    run = state_dir(settings) / "kafka"
    logs = run / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    config = run / "server.properties"
    config.write_text(render_server_properties(settings, data_dir=kafka_data_dir(settings)))
    if format_storage(settings, libs=libs, config=config, logs=logs):
        report(f"Formatted Kafka storage in {kafka_data_dir(settings)}")

    proc = launch(settings, libs=libs, run=run, config=config)
    report(f"Started Kafka (pid {proc.pid}), waiting for {settings.kafka_bootstrap} ...")

    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise StackError(f"Kafka exited with code {proc.returncode}. {logs_of(run)}")
        if kafka_reachable(settings, timeout=2.0):
            return proc.pid
        time.sleep(0.5)
    terminate(proc.pid)
    raise StackError(f"Kafka did not answer a metadata request within {wait:.0f}s. {logs_of(run)}")


def terminate(pid: int, *, grace: float = 30.0) -> None:
    """SIGTERM (the broker shuts down cleanly), then SIGKILL after ``grace`` seconds."""
    if not pid_alive(pid):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        # Reap our own child if we are its parent (tests); otherwise just poll.
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        if not pid_alive(pid):
            return
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
