"""A local Kafka of several nodes: ``foldflow stack up --brokers N`` (N ≥ 2).

Every node is a combined broker + controller (KRaft) and a voter of one controller quorum:
node k listens on the bootstrap port + 2(k-1), its controller on the port after, and keeps
its log in ``<kafka_data_dir>-cluster/node-k`` (:func:`foldflow.stack.common.local_nodes`).
All nodes run the same cached jars. The storage of every node is formatted once, with one
cluster id and the same ``--initial-controllers`` (the dynamic quorum of KIP-853); the
cluster id and node count are kept in ``<kafka_data_dir>-cluster/cluster.json``.

With three nodes or more, the internal topics and every topic created without its own
replication get 3 replicas and ``min.insync.replicas=2`` (:func:`replication_for`).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Collection
from pathlib import Path

from foldflow.settings import Settings
from foldflow.stack.common import (
    KafkaNode,
    Report,
    StackError,
    broker_count,
    cluster_data_dir,
    local_nodes,
    port_open,
)
from foldflow.stack.kafka import (
    STORAGE_TOOL,
    cached_libs,
    check_tools,
    is_kafka_process,
    java_cmd,
    launch,
    logs_of,
    new_cluster_id,
    pid_alive,
    render_server_properties,
    resolve_jars,
)

__all__ = [
    "cluster_file",
    "node_pid",
    "start_cluster",
    "stop_nodes",
]


def cluster_file(settings: Settings) -> Path:
    """``<kafka_data_dir>-cluster/cluster.json``: the cluster id and node count of the storage."""
    return cluster_data_dir(settings) / "cluster.json"


def node_pid(node: KafkaNode) -> int | None:
    """The pid of ``node`` if the process its pid file names is still a running broker."""
    try:
        pid = int((node.run_dir / "kafka.pid").read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if pid_alive(pid) and is_kafka_process(pid) else None


def _write_config(settings: Settings, node: KafkaNode, nodes: list[KafkaNode]) -> Path:
    node.run_dir.mkdir(parents=True, exist_ok=True)
    config = node.run_dir / "server.properties"
    config.write_text(
        render_server_properties(settings, data_dir=node.data_dir, node=node, cluster=nodes)
    )
    return config


def _format(settings: Settings, nodes: list[KafkaNode], *, libs: Path, report: Report) -> None:
    """Format every node's storage once: one cluster id, the same initial controllers."""
    meta = cluster_file(settings)
    formatted = [n for n in nodes if (n.data_dir / "meta.properties").exists()]
    if meta.exists():
        recorded = json.loads(meta.read_text())
        if recorded.get("nodes") != len(nodes):
            raise StackError(
                f"The local Kafka storage in {meta.parent} was formatted for "
                f"{recorded.get('nodes')} nodes, not {len(nodes)}: use --brokers "
                f"{recorded.get('nodes')}, or stop it and remove that directory to start over."
            )
    if len(formatted) == len(nodes):
        return
    if formatted:
        raise StackError(
            f"Only node(s) {', '.join(str(n.node_id) for n in formatted)} of the local Kafka in "
            f"{meta.parent} have storage: a node that lost its log cannot rejoin the quorum "
            "as it was. Stop the cluster (`foldflow stack down`) and remove that directory."
        )
    cluster_id = new_cluster_id()
    directory_ids = {n.node_id: new_cluster_id() for n in nodes}
    initial = ",".join(
        f"{n.node_id}@{n.controller_address}:{directory_ids[n.node_id]}" for n in nodes
    )
    for node in nodes:
        node.data_dir.mkdir(parents=True, exist_ok=True)
        config = _write_config(settings, node, nodes)
        cmd = java_cmd(
            settings, libs, node.run_dir / "logs", STORAGE_TOOL,
            "format", "-t", cluster_id, "-c", str(config), "--initial-controllers", initial,
        )  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise StackError(f"Formatting {node.data_dir} failed:\n{proc.stdout}{proc.stderr}")
    meta.write_text(json.dumps({"cluster_id": cluster_id, "nodes": len(nodes)}, indent=2))
    report(f"Formatted the storage of {len(nodes)} Kafka nodes in {meta.parent}")


def start_cluster(
    settings: Settings,
    count: int,
    *,
    report: Report,
    only: Collection[int] | None = None,
    wait: float = 120.0,
) -> dict[int, int]:
    """Start the nodes of a ``count``-node local Kafka that are not running; return
    ``{node id: pid}`` of every running node.

    ``only`` limits the starts to these node ids (a test bringing back one node of two).
    Waits until every running node answers a metadata request listing every running node.
    Raises :class:`StackError` (a port taken by something else, a node that exits, or
    storage formatted for another count).
    """
    if count < 2:
        raise ValueError("a local cluster has at least two nodes; one is `start_kafka`")
    check_tools(need_maven=cached_libs(settings) is None)
    nodes = local_nodes(settings, count)
    running = {n.node_id: pid for n in nodes if (pid := node_pid(n)) is not None}
    todo = [n for n in nodes if n.node_id not in running and (only is None or n.node_id in only)]
    busy = [
        f"{n.host}:{p}" for n in todo for p in (n.port, n.controller_port) if port_open(n.host, p)
    ]
    if busy:
        raise StackError(
            f"Port(s) {', '.join(busy)} are taken by something that is not a node started "
            "here; free them or set FOLDFLOW_KAFKA_BOOTSTRAP to another base port (node k "
            "uses the base port + 2(k-1) and the port after it)."
        )
    libs = resolve_jars(settings, report)
    _format(settings, nodes, libs=libs, report=report)
    started: dict[int, subprocess.Popen[bytes]] = {}
    for node in todo:
        config = _write_config(settings, node, nodes)
        started[node.node_id] = launch(settings, libs=libs, run=node.run_dir, config=config)
        running[node.node_id] = started[node.node_id].pid
        report(f"Started Kafka node {node.node_id} (pid {running[node.node_id]}) at "
               f"{node.address}")  # fmt: skip
    _wait_answering(
        [n for n in nodes if n.node_id in running], started, expected=len(running), wait=wait
    )
    return running


def _wait_answering(
    nodes: list[KafkaNode],
    started: dict[int, subprocess.Popen[bytes]],
    *,
    expected: int,
    wait: float,
) -> None:
    deadline = time.monotonic() + wait
    pending = list(nodes)
    while pending:
        for node in list(pending):
            proc = started.get(node.node_id)
            if proc is not None and proc.poll() is not None:
                raise StackError(
                    f"Kafka node {node.node_id} exited with code {proc.returncode}. "
                    f"{logs_of(node.run_dir)}"
                )
            if (broker_count(node.address, timeout=2.0) or 0) >= expected:
                pending.remove(node)
        if not pending:
            return
        if time.monotonic() > deadline:
            names = ", ".join(f"node {n.node_id} ({n.address})" for n in pending)
            raise StackError(
                f"{names} did not list {expected} brokers within {wait:.0f}s. "
                f"{logs_of(pending[0].run_dir)}"
            )
        time.sleep(0.5)


def stop_nodes(pids: Collection[int], *, grace: float = 30.0) -> None:
    """SIGTERM every node at once (each shuts down cleanly), SIGKILL the ones left after
    ``grace`` seconds: stopped one by one, the last nodes would wait for a lost quorum."""
    alive = [pid for pid in pids if pid_alive(pid) and is_kafka_process(pid)]
    for pid in alive:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        for pid in alive:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)  # reap our own children (tests)
        alive = [pid for pid in alive if pid_alive(pid)]
        if not alive:
            return
        time.sleep(0.2)
    for pid in alive:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
