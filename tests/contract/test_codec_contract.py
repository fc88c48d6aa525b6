"""The wire contract: round trips, recorded fixtures of every version, schema/class parity."""

from __future__ import annotations

import dataclasses
import io
import json
import typing
from pathlib import Path

import fastavro
import pytest
from catalog_strategies import envelopes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from foldflow.schemas import codec
from foldflow.schemas.codec import decode, encode, schema_versions
from foldflow.schemas.fixtures import FIXTURES_DIR, event_types_of, fixture_path, sample_envelope
from foldflow.schemas.messages import MESSAGE_TYPES, Envelope
from foldflow.schemas.schemagen import envelope_schema

AVRO_DIR = Path(codec.__file__).parent / "avro"

#: Published schema files are immutable: their fingerprints are pinned here forever.
PUBLISHED = {1: "0e81b605a826e881", 2: "6cc7808b7f59e64d", 3: "0e9f7dd8ac6d3aae"}


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_every_message_type_round_trips(event_type: str, data: st.DataObject) -> None:
    envelope = data.draw(envelopes(event_type))

    encoded = encode(envelope)

    assert encoded[:2] == b"\xc3\x01"
    assert encoded[2:10] == schema_versions()[-1].fingerprint
    decoded = decode(encoded)
    assert decoded == envelope
    assert decoded.event_type == event_type


def test_every_version_has_a_recorded_fixture_of_every_type() -> None:
    expected = {
        fixture_path(v.version, t) for v in schema_versions() for t in event_types_of(v.version)
    }
    assert set(event_types_of(schema_versions()[-1].version)) == set(MESSAGE_TYPES)
    recorded = set(FIXTURES_DIR.glob("v*/*.bin"))
    assert expected <= recorded, f"missing: {sorted(map(str, expected - recorded))}"
    assert recorded <= expected, f"orphans: {sorted(map(str, recorded - expected))}"


@pytest.mark.parametrize("version", [v.version for v in schema_versions()])
def test_newest_reader_decodes_recorded_fixtures_of_every_version(
    version: int, event_type: str
) -> None:
    """BACKWARD_TRANSITIVE: bytes written by any published version decode with the newest."""
    if event_type not in event_types_of(version):
        pytest.skip(f"envelope v{version} had no {event_type}")
    data = fixture_path(version, event_type).read_bytes()

    decoded = decode(data)

    assert data[2:10].hex() == PUBLISHED[version]
    assert decoded == sample_envelope(event_type, version=version)
    writer = next(v for v in schema_versions() if v.version == version)
    if "tenant" not in writer.envelope_fields:
        assert decoded.tenant is None  # the reader's default for a field the writer lacked


def test_published_schemas_are_never_edited_and_fingerprints_are_unique() -> None:
    on_disk = {v.version: v.fingerprint.hex() for v in schema_versions()}
    assert on_disk == PUBLISHED, "a published .avsc changed: write a new version instead"
    assert len(set(on_disk.values())) == len(on_disk)
    assert sorted(p.name for p in AVRO_DIR.glob("*.avsc")) == [
        f"envelope.v{v}.avsc" for v in sorted(PUBLISHED)
    ]


def test_fingerprint_is_the_avro_spec_crc64() -> None:
    # Avro's own test vector (schema-tests.txt): "null" -> 7195948357588979594.
    assert codec.fingerprint_of("null") == (7195948357588979594).to_bytes(8, "little")  # type: ignore[arg-type]


def test_dataclasses_match_the_newest_schema_exactly() -> None:
    newest = schema_versions()[-1].version
    written = json.loads((AVRO_DIR / f"envelope.v{newest}.avsc").read_text())
    generated = envelope_schema(newest)

    # every record, field, order, type, default; the top-level doc of a published file is
    # prose outside the canonical form (its fingerprint) and stays as published
    assert {**written, "doc": None} == {**generated, "doc": None}


def test_envelope_dataclass_matches_the_envelope_record() -> None:
    newest = json.loads((AVRO_DIR / f"envelope.v{schema_versions()[-1].version}.avsc").read_text())
    avro = {f["name"]: f for f in newest["fields"] if f["name"] not in ("event_type", "payload")}
    hints = typing.get_type_hints(Envelope)
    fields = {f.name: f for f in dataclasses.fields(Envelope) if f.name != "payload"}

    assert fields.keys() == avro.keys()
    for name, field in fields.items():
        optional = type(None) in typing.get_args(hints[name])
        assert optional == isinstance(avro[name]["type"], list), name
        if optional:
            assert field.default is None and avro[name]["default"] is None, name


def test_union_branches_are_exactly_the_catalog() -> None:
    payload = next(f for f in schema_versions()[-1].schema["fields"] if f["name"] == "payload")
    names = [branch["name"] for branch in payload["type"]]
    assert names == [f"foldflow.{cls.__name__}" for cls, _ in MESSAGE_TYPES.values()]


def test_bodies_are_plain_avro_any_reader_can_decode(event_type: str) -> None:
    """Interop: strip the 10-byte header and a generic Avro reader with the .avsc decodes it."""
    newest = schema_versions()[-1]
    raw = json.loads((AVRO_DIR / f"envelope.v{newest.version}.avsc").read_text())
    data = encode(sample_envelope(event_type))

    record = fastavro.schemaless_reader(io.BytesIO(data[10:]), fastavro.parse_schema(raw))

    assert isinstance(record, dict)
    assert record["event_type"] == event_type
    assert record["tenant"] == "acme"


def test_recorded_fixtures_are_reproducible_byte_for_byte() -> None:
    """Encoding is deterministic: the recorder would write the same bytes again."""
    for version in schema_versions():
        for event_type in event_types_of(version.version):
            envelope = sample_envelope(event_type, version=version.version)
            recorded = fixture_path(version.version, event_type).read_bytes()
            assert encode(envelope, version=version.version) == recorded, (version, event_type)
