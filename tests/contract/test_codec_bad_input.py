"""Bad input never crashes: each kind of bad bytes or payload raises its typed error."""

from __future__ import annotations

import io

import fastavro
import pytest
from hypothesis import given
from hypothesis import strategies as st

from foldflow.schemas.codec import (
    MAGIC,
    CodecError,
    MalformedMessageError,
    NotAvroError,
    SchemaViolationError,
    UnknownSchemaError,
    decode,
    encode,
    schema_versions,
)
from foldflow.schemas.fixtures import fixture_path, sample_envelope
from foldflow.schemas.messages import Envelope, ExecuteTask, StepCompleted

GOOD = encode(sample_envelope("step.scheduled.v1"))
NEWEST = schema_versions()[-1]


def _envelope(payload: object, **fields: object) -> Envelope:
    base = dict(
        event_id="e", timestamp=1, source="s", correlation_id="c", workflow_id="w", payload=payload
    )
    return Envelope(**{**base, **fields})  # type: ignore[arg-type]


@pytest.mark.parametrize("data", [b"", b"\xc3", b"garbage", b"{\"json\": true}", b"\x01\xc3"])
def test_bytes_without_the_marker_are_not_avro(data: bytes) -> None:
    with pytest.raises(NotAvroError, match="C3 01"):
        decode(data)


def test_none_and_confluent_framing_are_refused_clearly() -> None:
    with pytest.raises(NotAvroError, match="tombstone"):
        decode(None)
    with pytest.raises(NotAvroError, match="Confluent framing not supported yet"):
        decode(b"\x00\x00\x00\x00\x2a" + GOOD[10:])


def test_unknown_fingerprint() -> None:
    with pytest.raises(UnknownSchemaError, match="0102030405060708"):
        decode(MAGIC + bytes(range(1, 9)) + GOOD[10:])


@pytest.mark.parametrize("cut", range(2, len(GOOD)))
def test_every_truncation_is_malformed(cut: int) -> None:
    with pytest.raises(MalformedMessageError, match="truncated"):
        decode(GOOD[:cut])


def test_trailing_bytes_are_malformed() -> None:
    with pytest.raises(MalformedMessageError, match="trailing"):
        decode(GOOD + b"\x00")


def test_old_version_fixture_truncated_is_malformed() -> None:
    old = fixture_path(schema_versions()[0].version, "workflow.started.v1").read_bytes()
    with pytest.raises(MalformedMessageError):
        decode(old[:-3])


def test_event_type_that_contradicts_the_payload_is_malformed() -> None:
    record = {
        "event_id": "e", "event_type": "workflow.started.v1", "timestamp": 1, "source": "s",
        "correlation_id": "c", "workflow_id": "w", "sequence": None, "causation_id": None,
        "tenant": None, "payload": ("foldflow.StepCompleted", StepCompleted("s", 1).__dict__),
    }
    out = io.BytesIO()
    fastavro.schemaless_writer(out, NEWEST.schema, record)
    with pytest.raises(MalformedMessageError, match="does not match"):
        decode(MAGIC + NEWEST.fingerprint + out.getvalue())


def test_invalid_utf8_in_a_string_is_malformed() -> None:
    body = bytearray(GOOD)
    body[12] = 0xFF  # inside event_id, a UTF-8 string
    with pytest.raises(MalformedMessageError):
        decode(bytes(body))


@given(st.binary(max_size=200))
def test_arbitrary_bytes_raise_only_codec_errors(data: bytes) -> None:
    for candidate in (data, MAGIC + NEWEST.fingerprint + data):
        try:
            result = decode(candidate)
        except CodecError as exc:
            assert str(exc)  # a reason the DLQ can carry
        else:
            assert isinstance(result, Envelope)


@pytest.mark.parametrize(
    ("payload", "fields", "match"),
    [
        (StepCompleted(step_id="s", attempt="one"), {}, "attempt"),  # type: ignore[arg-type]
        (StepCompleted(step_id=5, attempt=1), {}, "step_id"),  # type: ignore[arg-type]
        (StepCompleted(step_id="s", attempt=1, task_id=7), {}, "task_id"),  # type: ignore[arg-type]
        (StepCompleted(step_id="s", attempt=2**31), {}, "attempt=2147483648"),
        (ExecuteTask("t", "x", "s", 1, "step", "{}", 2**63), {}, "timeout_ms"),
        (StepCompleted(step_id="s", attempt=1), {"timestamp": "now"}, "timestamp"),
        (StepCompleted(step_id="s", attempt=1), {"sequence": -(2**63) - 1}, "sequence"),
        ("not a payload", {}, "not in the message catalog"),
    ],
)
def test_payload_violating_its_schema_is_refused_on_encode(
    payload: object, fields: dict[str, object], match: str
) -> None:
    with pytest.raises(SchemaViolationError, match=match):
        encode(_envelope(payload, **fields))


def test_encoding_an_old_version_refuses_to_drop_a_field() -> None:
    with pytest.raises(SchemaViolationError, match="tenant"):
        encode(_envelope(StepCompleted("s", 1), tenant="acme"), version=1)
    with pytest.raises(CodecError, match="no envelope version 99"):
        encode(_envelope(StepCompleted("s", 1)), version=99)
