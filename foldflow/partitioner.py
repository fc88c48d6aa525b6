"""Kafka's default partitioner, so every Foldflow process agrees where a key lives.

The Java client (and librdkafka's ``murmur2_random``, which every Foldflow producer sets,
docs/internals.md) hash a record key with Kafka's variant of MurmurHash2 (seed ``0x9747b28c``)
and take ``(hash & 0x7fffffff) % partitions``. Readers that go straight to one
partition (the CLI's follower, the orchestrator's timers and recovery) use
:func:`partition_for`; a test proves a confluent producer lands each key there.
"""

from __future__ import annotations

__all__ = ["murmur2", "partition_for"]

_M = 0x5BD1E995
_SEED = 0x9747B28C
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 of ``data`` as the Java client returns it (a signed 32-bit int)."""
    length = len(data)
    h = (_SEED ^ length) & _MASK
    tail = length & ~3
    for i in range(0, tail, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    left = length & 3
    if left == 3:
        h ^= data[tail + 2] << 16
    if left >= 2:
        h ^= data[tail + 1] << 8
    if left >= 1:
        h ^= data[tail]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def partition_for(key: str | bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner (murmur2) gives ``key`` out of ``partitions``."""
    data = key.encode() if isinstance(key, str) else key
    return (murmur2(data) & 0x7FFFFFFF) % partitions
