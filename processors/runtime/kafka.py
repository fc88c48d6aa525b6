"""The orchestrator's Kafka clients: names and configuration (docs/internals.md).

* consumer group ``<prefix>foldflow-orchestrator`` over ``wf.commands`` + ``wf.results``:
  ``range`` assignment (a workflow's commands and results partitions have one number,
  and stay together), ``read_committed``, offsets committed only through transactions;
* one transactional producer per process, ``transactional.id``
  ``<prefix>foldflow-orchestrator-<instance id>``: stable when the instance id is (a
  restarted instance fences its predecessor and aborts its open transaction at once),
  ``transaction.timeout.ms`` = the session timeout (a dead instance's open transaction
  blocks ``read_committed`` readers of its partitions until then), ``message.timeout.ms``
  below it, murmur2 partitioning like every Foldflow producer.
"""

from __future__ import annotations

import logging
from typing import Any

from foldflow.kafka import kafka_config
from foldflow.observability.identity import instance_name
from foldflow.producers import producer_config
from foldflow.settings import Settings

__all__ = [
    "MAX_POLL_INTERVAL_MS",
    "consumer_config",
    "group_id",
    "guard_seconds",
    "transactional_id",
    "transactional_producer_config",
]

#: How long the loop may go without polling before the group counts it gone.
MAX_POLL_INTERVAL_MS = 300_000

#: librdkafka's log lines go through Python logging (JSON lines, rate limited).
_LIBRDKAFKA_LOG = logging.getLogger("librdkafka")


def guard_seconds(settings: Settings) -> float:
    """How long one transactional call may block before the watchdog restarts the process.

    Each call has the session timeout as its own timeout, and the broker aborts a
    transaction older than that anyway, so a call still blocked at one and a half times
    it (15 s at least) can commit nothing: it is librdkafka #5456, and only a fresh start
    ends it. Each second past that is a second every owned workflow stands still after a
    broker restart (measured: 30 s at three session timeouts, 15 s at this one).
    """
    return max(15.0, 1.5 * settings.orchestrator_session_timeout_s)


def group_id(settings: Settings) -> str:
    """The orchestrator's consumer group."""
    return f"{settings.topic_prefix}foldflow-orchestrator"


def transactional_id(settings: Settings) -> str:
    """This instance's ``transactional.id`` (from ``instance_id``; host and pid without)."""
    return f"{settings.topic_prefix}foldflow-orchestrator-{instance_name(settings)}"


def _session_ms(settings: Settings) -> int:
    return int(settings.orchestrator_session_timeout_s * 1000)


def consumer_config(settings: Settings) -> dict[str, Any]:
    """The configuration of the orchestrator's input consumer."""
    session = _session_ms(settings)
    return kafka_config(settings, {
        "group.id": group_id(settings),
        "client.id": f"foldflow-orchestrator-{instance_name(settings)}",
        "partition.assignment.strategy": "range",
        "isolation.level": "read_committed",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "enable.partition.eof": False,
        "session.timeout.ms": session,
        "heartbeat.interval.ms": max(500, session // 4),
        "max.poll.interval.ms": MAX_POLL_INTERVAL_MS,
        "fetch.wait.max.ms": 50,
        "logger": _LIBRDKAFKA_LOG,
    })


def transactional_producer_config(settings: Settings) -> dict[str, Any]:
    """The configuration of the orchestrator's transactional producer."""
    session = _session_ms(settings)
    return {
        **producer_config(settings, source="orchestrator"),
        "transactional.id": transactional_id(settings),
        "transaction.timeout.ms": session,
        "message.timeout.ms": max(500, session - 2_000),
        # our own size check (foldflow.processors.runtime.effects) must be the one that trips
        "message.max.bytes": max(1_000_000, settings.orchestrator_max_message_bytes + 4_096),
        "linger.ms": 2,
        # A transaction begun as the last one commits can find the coordinator still
        # writing that one's markers (CONCURRENT_TRANSACTIONS): librdkafka retries after
        # this backoff, doubled up to retry.backoff.max.ms (1 s). Its default 100 ms made
        # a commit's tail (the bench's transactional hop: offsets + commit p95 98 ms at
        # 100, 4-5 ms at 10).
        "retry.backoff.ms": 10,
        "logger": _LIBRDKAFKA_LOG,
    }
