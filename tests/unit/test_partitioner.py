"""Our murmur2 partitioner against the values Kafka's Java client and librdkafka give."""

from __future__ import annotations

import pytest

from foldflow.partitioner import murmur2, partition_for

# Kafka's UtilsTest.testMurmur2 (org.apache.kafka.common.utils), plus the empty key.
JAVA_VECTORS = [
    (b"21", -973932308),
    (b"foobar", -790332482),
    (b"a-little-bit-long-string", -985981536),
    (b"a-little-bit-longer-string", -1486304829),
    (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
    (b"abc", 479470107),
    (b"", 275646681),
]


@pytest.mark.parametrize(("key", "expected"), JAVA_VECTORS)
def test_murmur2_matches_the_java_client(key: bytes, expected: int) -> None:
    assert murmur2(key) == expected


def test_partition_is_the_positive_hash_modulo_the_count() -> None:
    # toPositive(murmur2("foobar")) = -790332482 & 0x7fffffff = 1357151166
    assert partition_for(b"foobar", 50) == 1357151166 % 50 == 16
    for key, expected in JAVA_VECTORS:
        assert partition_for(key, 7) == (expected & 0x7FFFFFFF) % 7
    assert partition_for("21", 6) == partition_for(b"21", 6)  # str keys hash their UTF-8


# librdkafka's own unit test (src/rdmurmur2.c): every tail length, unaligned starts.
LIBRDKAFKA_VECTORS = [
    (b"kafka", 0xD067CF64),
    (b"giberish123456789", 0x8F552B0C),
    (b"1234", 0x9FC97B14),
    (b"234", 0xE7C009CA),
    (b"34", 0x873930DA),
    (b"4", 0x5A4B5CA1),
    (b"PreAmbleWillBeRemoved,ThePrePartThatIs", 0x78424F1C),
    (b"reAmbleWillBeRemoved,ThePrePartThatIs", 0x4A62B377),
    (b"eAmbleWillBeRemoved,ThePrePartThatIs", 0xE0E4E09E),
    (b"AmbleWillBeRemoved,ThePrePartThatIs", 0x62B8B43F),
    (b"", 0x106E08D9),
]


@pytest.mark.parametrize(("key", "expected"), LIBRDKAFKA_VECTORS)
def test_murmur2_matches_librdkafka(key: bytes, expected: int) -> None:
    assert murmur2(key) & 0xFFFFFFFF == expected
