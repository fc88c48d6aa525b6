"""The orchestrator's consumer-lag gauge (prometheus_client's default registry)."""

from __future__ import annotations

from prometheus_client import REGISTRY

from processors.telemetry import LagGauge


def _lag(group: str, topic: str, partition: int) -> float | None:
    return REGISTRY.get_sample_value(
        "foldflow_consumer_lag_messages",
        {"group": group, "topic": topic, "partition": str(partition)},
    )


def test_lag_is_log_end_minus_next_offset_and_revoked_partitions_lose_their_label() -> None:
    gauge = LagGauge("g-test-lag")
    ends = {("cmd", 0): 10, ("cmd", 1): 5, ("res", 0): None}
    gauge.handled("cmd", 0, 6)  # next to handle: 7
    gauge.handled("cmd", 1, 4)
    gauge.publish(ends, lambda topic, partition: ends[(topic, partition)])
    assert _lag("g-test-lag", "cmd", 0) == 3
    assert _lag("g-test-lag", "cmd", 1) == 0
    assert _lag("g-test-lag", "res", 0) is None  # no log end known yet: no sample
    gauge.publish([("cmd", 1)], lambda topic, partition: 9)
    assert _lag("g-test-lag", "cmd", 0) is None
    assert _lag("g-test-lag", "cmd", 1) == 4
