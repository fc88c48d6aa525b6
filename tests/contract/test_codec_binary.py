"""The codec's own body writer and reader against fastavro: the same bytes, both ways.

The newest envelope version is written and read by ``foldflow.schemas.binary`` instead of
fastavro; every payload type, with values at the edges of their Avro types (strings long
enough for multi-byte lengths, any Unicode, the int and long limits, every nullable field
null and set), must give fastavro's bytes to the byte and read back from fastavro's.
"""

from __future__ import annotations

import dataclasses
import io

import fastavro
import pytest
from catalog_strategies import envelopes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from foldflow.schemas import binary, codec
from foldflow.schemas.codec import (
    MAGIC,
    MalformedMessageError,
    SchemaViolationError,
    decode,
    encode,
)
from foldflow.schemas.fixtures import sample_envelope
from foldflow.schemas.messages import Envelope, StepCompleted

NEWEST = codec.schema_versions()[-1]


def fastavro_bytes(envelope: Envelope) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, NEWEST.schema, codec._to_record(envelope))
    return MAGIC + NEWEST.fingerprint + out.getvalue()


@settings(max_examples=80, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_the_body_is_fastavros_byte_for_byte_both_ways(event_type: str,
                                                       data: st.DataObject) -> None:  # fmt: skip
    envelope = data.draw(envelopes(event_type, text=st.text(max_size=300)))

    ours = encode(envelope)

    assert ours == fastavro_bytes(envelope)
    assert decode(ours) == envelope
    body = fastavro.schemaless_reader(io.BytesIO(ours[10:]), NEWEST.schema,
                                      return_record_name=True)  # fmt: skip
    assert body == codec._to_record(envelope)


@pytest.mark.parametrize("value", [0, 1, -1, 63, 64, -64, -65, 2**31 - 1, -(2**31),
                                   2**63 - 1, -(2**63)])  # fmt: skip
def test_varints_at_their_byte_boundaries(value: int) -> None:
    envelope = Envelope("e", value, "s", "c", "w", StepCompleted("s", 1), sequence=value)
    assert encode(envelope) == fastavro_bytes(envelope)
    assert decode(encode(envelope)) == envelope


def test_a_field_that_cannot_be_written_is_named() -> None:
    with pytest.raises(SchemaViolationError, match=r"payload\.step_id"):
        encode(Envelope("e", 1, "s", "c", "w", StepCompleted("a\ud800", 1)))
    with pytest.raises(SchemaViolationError, match="causation_id"):
        encode(Envelope("e", 1, "s", "c", "w", StepCompleted("s", 1),
                        causation_id=b"bytes"))  # type: ignore[arg-type]  # fmt: skip


def test_a_bad_union_branch_or_string_length_is_malformed() -> None:
    envelope = dataclasses.replace(sample_envelope("step.completed.v1"), causation_id=None)
    good = encode(envelope)
    # the first byte of the body is event_id's length: 0x01 is zig-zag -1
    with pytest.raises(MalformedMessageError, match="negative string length"):
        decode(good[:10] + b"\x01" + good[11:])
    # the payload's branch index follows the fields before it: make it 100 (of 34)
    before = bytearray()
    binary._put(codec._BODY.before, codec._to_record(envelope), before)
    at = 10 + len(before)
    assert good[at] == 2 * codec._BODY.records["foldflow.StepCompleted"][0]
    with pytest.raises(MalformedMessageError, match="union branch 100 of 34"):
        decode(good[:at] + b"\xc8\x01" + good[at + 1 :])
    # the timestamp (after event_id and event_type) as a varint past 64 bits, then 11 bytes
    head, stamp = bytearray(), bytearray()
    binary._put(codec._BODY.before[:2], codec._to_record(envelope), head)
    binary._write_long(envelope.timestamp, stamp)
    start = 10 + len(head)
    assert good[start : start + len(stamp)] == stamp
    rest = good[start + len(stamp) :]
    for varint, reason in ((b"\xff" * 9 + b"\x7f", "past 64 bits"),
                           (b"\xff" * 10 + b"\x01", "longer than 10 bytes")):  # fmt: skip
        with pytest.raises(MalformedMessageError, match=reason):
            decode(good[:start] + varint + rest)
    # causation_id (null, the field before the payload): a branch byte of neither kind
    assert good[at - 1] == 0
    with pytest.raises(MalformedMessageError, match="causation_id: union branch byte 0x4"):
        decode(good[:at - 1] + b"\x04" + good[at:])
