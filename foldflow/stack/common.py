"""What every part of the local stack shares: errors, addresses, paths and probes."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

from foldflow.resources import deploy_local_dir
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


def kafka_address(settings: Settings) -> tuple[str, int]:
    """Host and port of the (first) bootstrap server."""
    return split_host_port(settings.kafka_bootstrap, 9092)


def postgres_address(settings: Settings) -> tuple[str, int]:
    """Host and port of the database server in ``settings.database_url``."""
    from sqlalchemy.engine import make_url  # lazy: a worker-only install has no SQLAlchemy

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
    """True when the broker answers a metadata request."""
    host, port = kafka_address(settings)
    if not port_open(host, port):
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
        ) as conn:
            conn.execute("select 1")
    except psycopg.Error:
        return False
    return True
