"""The local stack without Docker: Apache Kafka 4.x (KRaft) and the machine's PostgreSQL.

See docs/cli.md. ``foldflow stack up|down|status`` and the test session fixture call
:func:`up`, :func:`down` and :func:`status`. Kafka's jars come from Maven Central into
``settings.cache_dir`` (outside the repo); the broker's data lives in
``settings.cache_dir / "kafka-data"`` and survives restarts. With
``settings.kafka_brokers`` ≥ 2 (``stack up --brokers 3``) Kafka is a cluster of that many
nodes on one machine (:mod:`foldflow.stack.cluster`). What ``up`` started is recorded in
``settings.state_dir / "stack.json"`` so ``down`` stops only that.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from foldflow.kafka import connection_failure
from foldflow.settings import Settings
from foldflow.stack.cluster import node_pid, start_cluster, stop_nodes
from foldflow.stack.common import (
    DEPLOY_DIR,
    KafkaNode,
    Report,
    StackError,
    broker_count,
    is_local_kafka,
    is_local_postgres,
    kafka_data_dir,
    kafka_reachable,
    local_nodes,
    postgres_address,
    postgres_reachable,
    resolved,
    say_nothing,
    split_host_port,
    state_dir,
)
from foldflow.stack.kafka import (
    check_tools,
    is_kafka_process,
    new_cluster_id,
    pid_alive,
    render_server_properties,
    replication_for,
    start_kafka,
    terminate,
)
from foldflow.stack.postgres import ensure_role_and_database, start_postgres

__all__ = [
    "DEPLOY_DIR",
    "KafkaNode",
    "PartStatus",
    "Report",
    "StackError",
    "broker_count",
    "check_tools",
    "down",
    "is_local_kafka",
    "kafka_reachable",
    "local_nodes",
    "managed_kafka_pid",
    "managed_nodes",
    "new_cluster_id",
    "postgres_reachable",
    "render_server_properties",
    "replication_for",
    "restart_kafka",
    "split_host_port",
    "start_cluster",
    "status",
    "up",
]


@dataclass(frozen=True)
class PartStatus:
    """One row of ``foldflow stack status``."""

    name: str
    address: str
    running: bool
    managed: bool
    detail: str


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
    lock_dir = resolved(settings.cache_dir)
    lock_dir.mkdir(parents=True, exist_ok=True)
    with (lock_dir / "stack.lock").open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def up(settings: Settings, *, report: Report = say_nothing) -> list[str]:
    """Bring Kafka and PostgreSQL up if they are local and not running; idempotent.

    Returns one line per part saying what happened. Raises :class:`StackError`.
    """
    lines: list[str] = []
    with _machine_lock(settings):
        state = _load_state(settings)
        probed = time.monotonic()  # a refusal met before this was another client's

        if not is_local_kafka(settings):
            lines.append(
                f"Kafka: {settings.kafka_bootstrap} is not local; `foldflow stack` only manages "
                "the local stack (leaving it alone)"
            )
        elif settings.kafka_brokers > 1:
            lines.append(_cluster_up(settings, state, report))
        elif kafka_reachable(settings):
            lines.append(f"Kafka: already up at {settings.kafka_bootstrap}")
        elif (failure := connection_failure(since=probed)) is not None:
            raise StackError(failure)  # it runs, but refuses us: starting another won't help
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


def _cluster_up(settings: Settings, state: dict[str, dict[str, object]], report: Report) -> str:
    count = settings.kafka_brokers
    nodes = local_nodes(settings, count)
    if managed_kafka_pid(settings) is not None:
        raise StackError(
            f"A single Kafka broker started here runs at {nodes[0].address}; stop it "
            "(`foldflow stack down`) before starting a local cluster on the same ports."
        )
    if "kafka_cluster" not in state and kafka_reachable(settings):
        brokers = broker_count(nodes[0].address)
        return (f"Kafka: already up at {nodes[0].address} ({brokers} broker(s), not started "
                "here)")  # fmt: skip
    before = set(managed_nodes(settings))
    pids = start_cluster(settings, count, report=report)
    state["kafka_cluster"] = {"nodes": count, "pids": {str(k): v for k, v in pids.items()}}
    _save_state(settings, state)
    bootstrap = ",".join(n.address for n in nodes)
    again = sorted(set(pids) - before)
    if not again:
        verb = "already up"
    elif before:
        verb = f"up (started node(s) {', '.join(map(str, again))} again)"
    else:
        verb = "started"
    line = f"Kafka: {count} nodes {verb} at {bootstrap}"
    if settings.kafka_bootstrap.replace(" ", "") != bootstrap:
        line += (f" (set FOLDFLOW_KAFKA_BOOTSTRAP={bootstrap} so clients still start while "
                 "node 1 is down)")  # fmt: skip
    return line


def managed_nodes(settings: Settings) -> dict[int, int]:
    """``{node id: pid}`` of the running nodes of the local cluster ``up`` started here."""
    recorded = _load_state(settings).get("kafka_cluster") or {}
    count = recorded.get("nodes")
    if not isinstance(count, int):
        return {}
    return {n.node_id: pid for n in local_nodes(settings, count) if (pid := node_pid(n))}


def managed_kafka_pid(settings: Settings) -> int | None:
    """The pid of the broker ``up`` started from this checkout, if it still runs."""
    pid = (_load_state(settings).get("kafka") or {}).get("pid")
    return pid if isinstance(pid, int) and pid_alive(pid) and is_kafka_process(pid) else None


def restart_kafka(
    settings: Settings, *, report: Report = say_nothing, wait: float = 90.0
) -> int:
    """Stop the broker ``up`` started here (SIGTERM: a clean shutdown) and start it again
    on the same storage; return the new pid. Raises :class:`StackError` when this checkout
    did not start the running broker (it is not ours to restart), or when it does not
    answer within ``wait`` seconds."""
    with _machine_lock(settings):
        pid = managed_kafka_pid(settings)
        if pid is None:
            raise StackError(
                f"the broker at {settings.kafka_bootstrap} was not started by `foldflow stack "
                "up` from here; restart it the way it was started"
            )
        terminate(pid)
        report(f"Kafka: stopped (pid {pid})")
        new = start_kafka(settings, report, wait=wait)
        state = _load_state(settings)
        state["kafka"] = {"pid": new, "bootstrap": settings.kafka_bootstrap}
        _save_state(settings, state)
        report(f"Kafka: started at {settings.kafka_bootstrap} (pid {new})")
        return new


def down(settings: Settings, *, report: Report = say_nothing) -> list[str]:
    """Stop what :func:`up` started from this checkout (per the state file), nothing else."""
    lines: list[str] = []
    with _machine_lock(settings):
        state = _load_state(settings)
        kafka: list[str] = []
        pid = (state.pop("kafka", None) or {}).get("pid")
        if isinstance(pid, int):
            if pid_alive(pid) and is_kafka_process(pid):
                terminate(pid)
                kafka.append(f"Kafka: stopped (pid {pid})")
            else:
                kafka.append("Kafka: was not running")
            (state_dir(settings) / "kafka" / "kafka.pid").unlink(missing_ok=True)
        if "kafka_cluster" in state:
            nodes = managed_nodes(settings)
            stop_nodes(list(nodes.values()))
            state.pop("kafka_cluster")
            pids = ", ".join(map(str, nodes.values()))
            kafka.append(f"Kafka: stopped {len(nodes)} node(s)" + (f" (pids {pids})" if pids
                                                                      else ""))  # fmt: skip
        if not kafka:
            kafka.append("Kafka: not started by `foldflow stack up` here; left alone")
        for line in kafka:
            report(line)
        lines += kafka

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
    pid = managed_kafka_pid(settings)
    managed_kafka = pid is not None
    kafka_up = kafka_reachable(settings)
    kafka_detail = (
        f"pid {pid}, data {kafka_data_dir(settings)}"
        if managed_kafka
        else ("not started here" if kafka_up else "down")
    )
    if not is_local_kafka(settings):
        kafka_detail = "external (not managed)"

    kafka_rows = [
        PartStatus("Kafka", settings.kafka_bootstrap, kafka_up, managed_kafka, kafka_detail)
    ]
    count = (state.get("kafka_cluster") or {}).get("nodes")
    if isinstance(count, int):
        kafka_rows = [_node_status(node) for node in local_nodes(settings, count)]

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
        *kafka_rows,
        PartStatus("PostgreSQL", f"{host}:{port}", pg_up, bool(state.get("postgres")), pg_detail),
    ]


def _node_status(node: KafkaNode) -> PartStatus:
    pid = node_pid(node)
    brokers = broker_count(node.address, timeout=2.0)
    detail = (
        f"pid {pid}, {brokers} broker(s) in its metadata, data {node.data_dir}"
        if brokers is not None
        else (f"pid {pid}, not answering yet, data {node.data_dir}" if pid else "down")
    )
    return PartStatus(f"Kafka node {node.node_id}", node.address, brokers is not None,
                      pid is not None, detail)  # fmt: skip
