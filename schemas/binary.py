"""The Avro binary body of the newest envelope schema, written and read without fastavro.

Every service encodes or decodes each message it handles, and fastavro spends ~8 µs on
the body of an ``ExecuteTask`` envelope (~0.3 µs per string field, ~0.6 per nullable one).
The envelope uses only ``string``, ``int``, ``long``, ``boolean``, ``["null", T]`` unions,
records and the payload union, so :class:`Body` compiles each payload record's fields,
once, into a list of (name, type, index of null), and writes and reads the body with the
Avro spec's encodings directly: zig-zag varints, length-prefixed UTF-8, one byte per
boolean, a varint branch index per union. The bytes are fastavro's to the byte
(``tests/contract/test_codec_binary.py`` checks every payload type both ways against
fastavro); older schema versions stay with fastavro, which resolves them.

Only :mod:`foldflow.schemas.codec` uses this module: it checks the integer ranges before
writing, wraps every error in its typed ones, and checks what a body decodes to.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["Body"]

# Field types, as compiled from the schema.
_STRING, _LONG, _BOOLEAN = "string", "long", "boolean"
#: Avro ``int`` and ``long`` share their encoding (the ranges are checked by the codec).
_PRIMITIVES = {"string": _STRING, "int": _LONG, "long": _LONG, "boolean": _BOOLEAN}


class FieldError(ValueError):
    """A field's value could not be written (its name and why)."""


def _type(avro: Any, where: str) -> tuple[str, int]:
    """A field's (primitive type, index of ``null`` in its union or -1 when not nullable)."""
    if isinstance(avro, str) and avro in _PRIMITIVES:
        return _PRIMITIVES[avro], -1
    if isinstance(avro, list) and len(avro) == 2 and "null" in avro:
        (other,) = [t for t in avro if t != "null"]
        if isinstance(other, str) and other in _PRIMITIVES:
            return _PRIMITIVES[other], avro.index("null")
    raise ValueError(f"{where}: Avro type {avro!r} is not one this writer knows")


def _fields(record: dict[str, Any]) -> list[tuple[str, str, int]]:
    return [(f["name"], *_type(f["type"], f"{record['name']}.{f['name']}"))
            for f in record["fields"]]  # fmt: skip


def _write_long(n: int, out: bytearray) -> None:
    n = (n << 1) ^ (n >> 63)
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def _read_long(data: bytes, pos: int) -> tuple[int, int]:
    """The zig-zag varint at ``data[pos]`` and the position after it; a value past 64 bits
    is refused (Avro's long is 64 bits, and no decoded integer may exceed it)."""
    byte = data[pos]
    n, shift = byte & 0x7F, 7
    while byte & 0x80:
        pos += 1
        byte = data[pos]
        n |= (byte & 0x7F) << shift
        shift += 7
        if shift > 70:
            raise ValueError("a varint longer than 10 bytes")
    if n >> 64:
        raise ValueError("a varint past 64 bits")
    return (n >> 1) ^ -(n & 1), pos + 1


def _put(fields: list[tuple[str, str, int]], values: dict[str, Any], out: bytearray,
         prefix: str = "") -> None:  # fmt: skip
    """Write ``values`` as the record of ``fields`` (the hot loop: one-byte varints inline)."""
    name = ""
    try:
        for name, kind, null in fields:
            value = values.get(name)
            if null >= 0:
                if value is None:
                    out.append(null << 1)  # the branch index: a one-byte varint
                    continue
                out.append((1 - null) << 1)
            if kind is _STRING:
                if not isinstance(value, str):
                    raise TypeError(f"{value!r} is not a string")
                data = value.encode()
                size = len(data)
                if size < 64:
                    out.append(size << 1)
                else:
                    _write_long(size, out)
                out += data
            elif kind is _LONG:
                if not isinstance(value, int):
                    raise TypeError(f"{value!r} is not an integer")
                if 0 <= value < 64:
                    out.append(value << 1)
                else:
                    _write_long(value, out)
            else:
                out.append(1 if value else 0)
    except (TypeError, ValueError, OverflowError) as exc:
        raise FieldError(f"{prefix}{name}: {exc}") from exc


def _get(fields: list[tuple[str, str, int]], data: bytes, pos: int
         ) -> tuple[dict[str, Any], int]:  # fmt: skip
    """Read the record of ``fields`` at ``data[pos]``; raises IndexError past the end."""
    record: dict[str, Any] = {}
    for name, kind, null in fields:
        if null >= 0:
            branch = data[pos]
            pos += 1
            if branch == null << 1:
                record[name] = None
                continue
            if branch != (1 - null) << 1:
                raise ValueError(f"{name}: union branch byte {branch:#x}")
        if kind is _STRING:
            size = data[pos]
            if size < 0x80:
                pos += 1
                size = (size >> 1) ^ -(size & 1)
            else:
                size, pos = _read_long(data, pos)
            if size < 0:
                raise ValueError(f"{name}: negative string length {size}")
            end = pos + size
            if end > len(data):
                raise IndexError("the body ends inside a string")
            record[name] = data[pos:end].decode()
            pos = end
        elif kind is _LONG:
            value = data[pos]
            if value < 0x80:
                pos += 1
                record[name] = (value >> 1) ^ -(value & 1)
            else:
                record[name], pos = _read_long(data, pos)
        else:
            record[name] = data[pos] != 0  # as fastavro reads it: anything but 0 is true
            pos += 1
    return record, pos


class Body:
    """Writes and reads the body of one envelope schema (see the module docstring)."""

    def __init__(self, schema: dict[str, Any]) -> None:
        fields = schema["fields"]
        at = [f["name"] for f in fields].index("payload")
        self.before = _fields({"name": "envelope", "fields": fields[:at]})
        self.after = _fields({"name": "envelope", "fields": fields[at + 1 :]})
        union: Sequence[dict[str, Any]] = fields[at]["type"]
        #: per union branch: the payload record's name and fields
        self.branches = [(r["name"], _fields(r)) for r in union]
        #: payload record name -> (its branch index, its fields)
        self.records = {name: (i, fields) for i, (name, fields) in enumerate(self.branches)}

    def write(self, envelope: dict[str, Any]) -> bytes:
        """The body of ``envelope``: its fields by name, the payload as ``(record name,
        fields)``; raises :class:`FieldError` naming the field."""
        out = bytearray()
        _put(self.before, envelope, out)
        name, payload = envelope["payload"]
        branch, fields = self.records[name]
        _write_long(branch, out)
        _put(fields, payload, out, "payload.")
        _put(self.after, envelope, out)
        return bytes(out)

    def read(self, data: bytes, start: int) -> tuple[dict[str, Any], int]:
        """The envelope record at ``data[start:]`` (the payload as ``(name, fields)``, as
        fastavro's ``return_record_name`` gives it) and where it ended; raises
        :class:`EOFError` when the bytes end first."""
        try:
            record, pos = _get(self.before, data, start)
            branch, pos = _read_long(data, pos)
            if not 0 <= branch < len(self.branches):
                raise ValueError(f"payload: union branch {branch} of {len(self.branches)}")
            name, fields = self.branches[branch]
            payload, pos = _get(fields, data, pos)
            record["payload"] = (name, payload)
            rest, pos = _get(self.after, data, pos)
        except IndexError:
            raise EOFError("the body ends inside a field") from None
        record.update(rest)
        return record, pos
