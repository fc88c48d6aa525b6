"""What every part of the local stack shares: errors, addresses, paths and probes."""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from foldflow.resources import deploy_local_dir
from foldflow.security import postgres_connect_args
from foldflow.settings import Settings

DEPLOY_DIR = deploy_local_dir()
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})

#: Receives one human-readable progress line at a time (the CLI prints them).
Report = Callable[[str], None]


class StackError(RuntimeError):
    """The local stack could not be brought up (missing tool, broker did not start, ...)."""


def say_nothing(_: str) -> None:
    """The default :data:`Report`: stay quiet."""


def split_host_port(address: str, default_port: int) -> tuple[str, int]:
    """``"127.0.0.1:9092"`` → ``("127.0.0.1", 9092)``; the first of a comma list."""
    first = address.split(",")[0].strip()
    if "://" in first:
        first = first.split("://", 1)[1]
    host, _, port = first.rpartition(":")
    if not host:
        return first, default_port
    return host.strip("[]"), int(port)


@dataclass(frozen=True)
class KafkaNode:
    """One local Kafka node (broker + controller): its id, ports, log dir and run dir."""

    node_id: int
    host: str
    port: int
    data_dir: Path
    run_dir: Path

    @property
    def controller_port(self) -> int:
        """The KRaft controller listener: the port after the broker's."""
        return self.port + 1

    @property
    def address(self) -> str:
        """``host:port`` of the broker listener (what clients bootstrap from)."""
        return f"{self.host}:{self.port}"

    @property
    def controller_address(self) -> str:
        """``host:port`` of the controller listener."""
        return f"{self.host}:{self.controller_port}"


def local_nodes(settings: Settings, count: int) -> list[KafkaNode]:
    """The layout of a local Kafka of ``count`` nodes.

    One node is the single broker: the bootstrap port (controller on the next), its log dir
    ``kafka_data_dir``. Node k of several listens on the bootstrap port + 2(k-1) (controller
    on the port after) and keeps its log in ``<kafka_data_dir>-cluster/node-k``.
    """
    host, port = kafka_address(settings)
    if count == 1:
        return [KafkaNode(1, host, port, kafka_data_dir(settings), state_dir(settings) / "kafka")]
    cluster, run = cluster_data_dir(settings), state_dir(settings)
    return [
        KafkaNode(k, host, port + 2 * (k - 1), cluster / f"node-{k}", run / f"kafka-node-{k}")
        for k in range(1, count + 1)
    ]


def cluster_data_dir(settings: Settings) -> Path:
    """Where the nodes of a local multi-node Kafka keep their logs (one dir each)."""
    base = kafka_data_dir(settings)
    return base.with_name(f"{base.name}-cluster")


def kafka_address(settings: Settings) -> tuple[str, int]:
    """Host and port of the (first) bootstrap server."""
    return split_host_port(settings.kafka_bootstrap, 9092)


def postgres_address(settings: Settings) -> tuple[str, int]:
    """Host and port of the database server in ``settings.database_url``."""
    from sqlalchemy.engine import make_url  # lazy: a worker-only install has no SQLAlchemy

    url = make_url(settings.database_url)
    return url.host or "127.0.0.1", url.port or 5432


def is_local_kafka(settings: Settings) -> bool:
    """True when every bootstrap address is on loopback: a Kafka this module can start.

    The first address is node 1; a list (``127.0.0.1:9092,127.0.0.1:9094,...``) names the
    nodes of a local multi-node Kafka, so clients still bootstrap while node 1 is down.
    """
    addresses = [a for a in settings.kafka_bootstrap.split(",") if a.strip()]
    return bool(addresses) and all(split_host_port(a, 9092)[0] in LOOPBACK for a in addresses)


def is_local_postgres(settings: Settings) -> bool:
    """True when the database URL points at the machine's PostgreSQL on loopback."""
    host, _ = postgres_address(settings)
    return host in LOOPBACK


def resolved(path: Path) -> Path:
    return path.expanduser().resolve()


def state_dir(settings: Settings) -> Path:
    """Where pid files, rendered configs and logs of this checkout's stack live."""
    return resolved(settings.state_dir)


def kafka_home(settings: Settings) -> Path:
    """The cache dir holding one Kafka version's jars (``.../kafka-<version>/libs``)."""
    return resolved(settings.cache_dir) / f"kafka-{settings.kafka_version}"


def kafka_data_dir(settings: Settings) -> Path:
    """The broker's log dir: formatted once, kept across restarts."""
    if settings.kafka_data_dir is not None:
        return resolved(settings.kafka_data_dir)
    return resolved(settings.cache_dir) / "kafka-data"


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def kafka_reachable(settings: Settings, *, timeout: float = 3.0) -> bool:
    """True when the (first) broker answers a metadata request."""
    host, port = kafka_address(settings)
    if not port_open(host, port):
        return False
    from foldflow.kafka import kafka_config  # lazy, as AdminClient below

    return _brokers_listed(kafka_config(settings, {"logger": _QUIET}), timeout=timeout) is not None


_QUIET = logging.getLogger("foldflow.stack.probe")
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False


def broker_count(address: str, *, timeout: float = 3.0) -> int | None:
    """How many brokers the metadata of the local (PLAINTEXT) broker at ``address`` lists;
    None: no answer."""
    host, port = split_host_port(address, 9092)
    if not port_open(host, port):
        return None
    # librdkafka's own lines ("Connect to ... failed") would land on the user's terminal
    return _brokers_listed({"bootstrap.servers": address, "logger": _QUIET}, timeout=timeout)


def _brokers_listed(config: dict[str, Any], *, timeout: float) -> int | None:
    from confluent_kafka.admin import AdminClient

    from foldflow.kafka import metadata

    try:
        return len(metadata(AdminClient(config), timeout=timeout).brokers)
    except Exception:
        return None


def postgres_reachable(settings: Settings, *, timeout: int = 3) -> bool:
    """True when the database in ``settings.database_url`` accepts a login."""
    import psycopg
    from sqlalchemy.engine import make_url  # lazy: a worker-only install has no SQLAlchemy

    url = make_url(settings.database_url)
    try:
        with psycopg.connect(
            host=url.host or "127.0.0.1",
            port=url.port or 5432,
            user=url.username,
            password=url.password,
            dbname=url.database,
            connect_timeout=timeout,
            **postgres_connect_args(settings),
        ) as conn:
            conn.execute("select 1")
    except psycopg.Error:
        return False
    return True
