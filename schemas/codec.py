"""Avro single-object encoding of :class:`~foldflow.schemas.messages.Envelope`.

Wire format: ``C3 01``, the 8-byte little-endian CRC-64-AVRO fingerprint of the writer
schema's parsing canonical form, then the Avro binary body. :func:`encode` always writes
with the newest ``schemas/avro/envelope.vN.avsc``; :func:`decode` finds the writer schema
among every version by its fingerprint and resolves it to the newest (fastavro does the
resolution), so a consumer reads every message ever published. Bodies of the newest
version are written and read by :mod:`foldflow.schemas.binary`: the same bytes as
fastavro, for about half its CPU.

Every schema is parsed and fingerprinted once, at import. Errors are typed and their
message says what is wrong, so a consumer can send the raw bytes to ``wf.dlq`` with
``str(error)`` as the reason.
"""

from __future__ import annotations

import dataclasses
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fastavro
from fastavro.schema import fingerprint, to_parsing_canonical_form

from foldflow.frozen import build, field_names
from foldflow.schemas.binary import Body
from foldflow.schemas.messages import MESSAGE_TYPES, TYPE_NAMES, Envelope

__all__ = [
    "MAGIC",
    "CodecError",
    "MalformedMessageError",
    "NotAvroError",
    "SchemaVersion",
    "SchemaViolationError",
    "UnknownSchemaError",
    "decode",
    "encode",
    "fingerprint_of",
    "schema_versions",
]

#: The single-object encoding marker (Avro spec).
MAGIC = b"\xc3\x01"
_HEADER_LEN = len(MAGIC) + 8
_NAMESPACE = "foldflow."
_AVRO_DIR = Path(__file__).parent / "avro"
_FILE_RE = re.compile(r"^envelope\.v(\d+)\.avsc$")


class CodecError(ValueError):
    """Bytes that cannot become an :class:`Envelope`, or an envelope that cannot become bytes."""


class NotAvroError(CodecError):
    """The bytes do not start with the ``C3 01`` single-object marker."""


class UnknownSchemaError(CodecError):
    """The writer fingerprint is not one of the published envelope versions."""


class MalformedMessageError(CodecError):
    """The body does not decode with its writer schema (truncated, corrupt, inconsistent)."""


class SchemaViolationError(CodecError):
    """An envelope to encode does not fit the schema (wrong type, value out of range)."""


@dataclass(frozen=True)
class SchemaVersion:
    """One published envelope schema: its version, parsed schema and 8-byte fingerprint."""

    version: int
    schema: dict[str, Any]
    fingerprint: bytes

    @property
    def envelope_fields(self) -> frozenset[str]:
        """The names of the envelope record's fields in this version."""
        return frozenset(f["name"] for f in self.schema["fields"])

    @property
    def payload_fields(self) -> dict[str, frozenset[str]]:
        """Payload record name (``foldflow.X``) -> its field names, in this version."""
        (union,) = [f["type"] for f in self.schema["fields"] if f["name"] == "payload"]
        return {r["name"]: frozenset(f["name"] for f in r["fields"]) for r in union}


def fingerprint_of(schema: dict[str, Any]) -> bytes:
    """The 8-byte little-endian CRC-64-AVRO fingerprint of a (parsed) schema."""
    return bytes.fromhex(fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO"))


def _load_versions() -> tuple[SchemaVersion, ...]:
    found: list[SchemaVersion] = []
    for entry in _AVRO_DIR.iterdir():
        match = _FILE_RE.match(entry.name)
        if match is None:
            continue
        parsed = fastavro.parse_schema(json.loads(entry.read_text(encoding="utf-8")))
        if not isinstance(parsed, dict):
            raise RuntimeError(f"{entry} is not an Avro record schema")
        found.append(SchemaVersion(int(match.group(1)), parsed, fingerprint_of(parsed)))
    if not found:
        raise RuntimeError(f"no envelope.vN.avsc found in {_AVRO_DIR}")
    found.sort(key=lambda v: v.version)
    return tuple(found)


_VERSIONS = _load_versions()
_NEWEST = _VERSIONS[-1]
_BY_FINGERPRINT = {v.fingerprint: v for v in _VERSIONS}
#: writer fingerprint -> the reader schema fastavro should resolve to (None: same schema).
_READER_FOR: dict[bytes, dict[str, Any] | None] = {
    v.fingerprint: None if v is _NEWEST else _NEWEST.schema for v in _VERSIONS
}
_ENVELOPE_FIELDS = dataclasses.fields(Envelope)
#: payload record name -> {field: dataclass default} (fields without a default are absent)
_DEFAULTS = {
    _NAMESPACE + cls.__name__: {
        f.name: f.default for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING
    }
    for cls in TYPE_NAMES
}
_CLASS_BY_RECORD = {_NAMESPACE + cls.__name__: cls for cls in TYPE_NAMES}
_BODY = Body(_NEWEST.schema)
_FIELD_NAMES = {cls: field_names(cls) for cls in (Envelope, *TYPE_NAMES)}


def schema_versions() -> tuple[SchemaVersion, ...]:
    """Every published envelope version, oldest first (the last one is what encode writes)."""
    return _VERSIONS


def _int_ranges(record_schema: dict[str, Any]) -> tuple[tuple[str, int, int], ...]:
    """(field, min, max) of every int/long field: fastavro writes any Python int silently."""
    ranges = []
    for field in record_schema["fields"]:
        types = field["type"] if isinstance(field["type"], list) else [field["type"]]
        for avro_type, bits in (("int", 32), ("long", 64)):
            if avro_type in types:
                ranges.append((field["name"], -(2 ** (bits - 1)), 2 ** (bits - 1) - 1))
    return tuple(ranges)


_RANGES: dict[str, tuple[tuple[str, int, int], ...]] = {
    branch["name"]: _int_ranges(branch)
    for field in _NEWEST.schema["fields"]
    if field["name"] == "payload"
    for branch in field["type"]
}
_ENVELOPE_RANGES = _int_ranges(_NEWEST.schema)


def _check_ranges(values: dict[str, Any], ranges: tuple[tuple[str, int, int], ...]) -> None:
    for name, low, high in ranges:
        value = values.get(name)
        if isinstance(value, int) and not low <= value <= high:
            kind = "int" if high < 2**32 else "long"
            raise SchemaViolationError(f"{name}={value} is out of the Avro {kind} range")


def _to_record(envelope: Envelope) -> dict[str, Any]:
    payload = envelope.payload
    cls = type(payload)
    if cls not in TYPE_NAMES:
        raise SchemaViolationError(
            f"payload of type {cls.__qualname__} is not in the message catalog"
        )
    name = _NAMESPACE + cls.__name__
    record = {f.name: getattr(envelope, f.name) for f in _ENVELOPE_FIELDS}
    _check_ranges(record, _ENVELOPE_RANGES)
    _check_ranges(payload.__dict__, _RANGES[name])
    record["event_type"] = TYPE_NAMES[cls]
    # The tuple selects the union branch by name: no guessing among 34 records.
    record["payload"] = (name, payload.__dict__)
    return record


def encode(envelope: Envelope, *, version: int | None = None) -> bytes:
    """Single-object encode ``envelope`` with the newest envelope schema.

    ``version`` writes an older published version instead (recorded fixtures, readers
    that only know that version); an envelope field that version lacks must be None.
    Raises :class:`SchemaViolationError` when a field does not fit its Avro type.
    """
    target = _NEWEST if version is None else _by_version(version)
    try:
        record = _to_record(envelope)
        if target is _NEWEST:
            return MAGIC + target.fingerprint + _BODY.write(record)
        _check_representable(record, target)
        out = io.BytesIO()
        out.write(MAGIC + target.fingerprint)
        fastavro.schemaless_writer(out, target.schema, record)
    except SchemaViolationError as exc:
        raise SchemaViolationError(f"{_describe(envelope, target)}: {exc}") from None
    except (TypeError, ValueError, AttributeError, KeyError, OverflowError) as exc:
        raise SchemaViolationError(
            f"{_describe(envelope, target)}: {type(exc).__name__}: {exc}"
        ) from exc
    return out.getvalue()


def _by_version(version: int) -> SchemaVersion:
    for candidate in _VERSIONS:
        if candidate.version == version:
            return candidate
    raise CodecError(f"no envelope version {version} (published: {[v.version for v in _VERSIONS]})")


def _check_representable(record: dict[str, Any], target: SchemaVersion) -> None:
    """Refuse to write an older version that would silently drop a set value."""
    lost = sorted(n for n, v in record.items() if n not in target.envelope_fields and v is not None)
    name, payload = record["payload"]
    known = target.payload_fields.get(name)
    if known is None:
        raise SchemaViolationError(f"envelope v{target.version} has no payload record {name}")
    defaults = _DEFAULTS[name]
    lost += sorted(
        f"payload.{n}"
        for n, v in payload.items()
        if n not in known and (n not in defaults or v != defaults[n])
    )
    if lost:
        raise SchemaViolationError(f"envelope v{target.version} has no field for {lost}")


def _describe(envelope: Envelope, target: SchemaVersion) -> str:
    event_type = TYPE_NAMES.get(type(envelope.payload), type(envelope.payload).__qualname__)
    return f"{event_type} (event {envelope.event_id!r}) does not fit envelope v{target.version}"


def decode(data: bytes | bytearray | memoryview | None) -> Envelope:
    """Decode single-object encoded bytes of any published envelope version.

    Takes a Kafka record value as the clients give it (None for a tombstone). Raises
    :class:`NotAvroError`, :class:`UnknownSchemaError` or :class:`MalformedMessageError`,
    all subclasses of :class:`CodecError`.
    """
    if data is None:
        raise NotAvroError("no value (a tombstone): expected an Avro single-object message")
    if not isinstance(data, bytes | bytearray | memoryview):
        raise NotAvroError(f"expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if data[:2] != MAGIC:
        if data[:1] == b"\x00" and len(data) >= 5:
            raise NotAvroError(
                "Confluent framing not supported yet (magic byte 0 + schema id "
                f"{int.from_bytes(data[1:5], 'big')}); expected Avro single-object C3 01"
            )
        got = data[:2].hex(" ") or "empty input"
        raise NotAvroError(
            f"not Avro single-object encoding: expected marker C3 01, got {got} "
            f"({len(data)} bytes)"
        )
    if len(data) < _HEADER_LEN:
        raise MalformedMessageError(
            f"truncated header: {len(data)} bytes, single-object encoding needs {_HEADER_LEN}"
        )
    fp = data[2:_HEADER_LEN]
    version = _BY_FINGERPRINT.get(fp)
    if version is None:
        known = ", ".join(f"v{v.version}={v.fingerprint.hex()}" for v in _VERSIONS)
        raise UnknownSchemaError(f"unknown writer schema fingerprint {fp.hex()} (known: {known})")
    record: Any
    try:
        if version is _NEWEST:
            record, end = _BODY.read(data, _HEADER_LEN)
        else:
            body = io.BytesIO(data)
            body.seek(_HEADER_LEN)
            record = fastavro.schemaless_reader(
                body, version.schema, _READER_FOR[fp], return_record_name=True
            )
            end = body.tell()
    except EOFError as exc:
        raise MalformedMessageError(
            f"truncated body: {len(data)} bytes end inside an envelope v{version.version} record"
        ) from exc
    except Exception as exc:  # fastavro raises ValueError, UnicodeError, IndexError, ...
        raise MalformedMessageError(
            f"body of {len(data)} bytes does not decode with envelope v{version.version} "
            f"(truncated or corrupt): {type(exc).__name__}: {exc}"
        ) from exc
    if end != len(data):
        raise MalformedMessageError(
            f"{len(data) - end} trailing bytes after an envelope v{version.version} body"
        )
    return _from_record(record, version)


def _from_record(record: Any, version: SchemaVersion) -> Envelope:
    if not isinstance(record, dict) or not isinstance(record.get("payload"), tuple):
        raise MalformedMessageError(f"envelope v{version.version} body is not a record")
    name, fields = record.pop("payload")
    cls = _CLASS_BY_RECORD.get(name)
    if cls is None:
        raise MalformedMessageError(f"payload record {name!r} is not in the message catalog")
    event_type = record.pop("event_type")
    if MESSAGE_TYPES.get(event_type, (None,))[0] is not cls:
        raise MalformedMessageError(
            f"event_type {event_type!r} does not match payload record {name!r}"
        )
    record["payload"] = build(cls, fields, _FIELD_NAMES[cls])
    return build(Envelope, record, _FIELD_NAMES[Envelope])
