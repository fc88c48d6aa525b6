"""The Avro schema the message catalog implies: how a new ``envelope.vN.avsc`` is authored.

``python -m foldflow.schemas.schemagen [--version N]`` prints the envelope schema that the
dataclasses of :mod:`foldflow.schemas.messages` describe. A published file is never edited: when the
catalog changes, write the output to a new version file, and the contract tests check that
it is backward compatible with every earlier version and equal to the dataclasses.

Type mapping: ``str`` -> string, ``bool`` -> boolean, ``int`` -> int except times and
durations (``*_ms``, ``due_at``, ``retry_at``, ``until``, ``timestamp``, ``sequence``)
-> long, ``X | None`` -> ``["null", X]`` with default null; dataclass defaults become
Avro defaults.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import types
import typing
from typing import Any

from foldflow.schemas import messages

__all__ = ["LONG_FIELDS", "NAMESPACE", "avro_type", "envelope_schema", "record_schema"]

NAMESPACE = "foldflow"

#: int fields that hold epoch milliseconds, durations or counters that may exceed 2**31.
LONG_FIELDS = frozenset({"due_at", "retry_at", "until", "timestamp", "sequence"})

_PRIMITIVES: dict[type, str] = {str: "string", bool: "boolean"}


def _is_long(field_name: str) -> bool:
    return field_name in LONG_FIELDS or field_name.endswith("_ms")


def avro_type(field_name: str, hint: Any) -> Any:
    """The Avro type of one dataclass field (a ``str | None`` hint gives ``["null", "string"]``)."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) != 1 or len(typing.get_args(hint)) != 2:
            raise TypeError(f"{field_name}: only `T | None` unions are supported, got {hint}")
        return ["null", avro_type(field_name, args[0])]
    if hint is int:
        return "long" if _is_long(field_name) else "int"
    if hint in _PRIMITIVES:
        return _PRIMITIVES[hint]
    raise TypeError(f"{field_name}: no Avro mapping for {hint!r}")


def record_schema(cls: type) -> dict[str, Any]:
    """The Avro record of one payload dataclass: same name, same fields in the same order."""
    hints = typing.get_type_hints(cls)
    fields: list[dict[str, Any]] = []
    for f in dataclasses.fields(cls):
        field: dict[str, Any] = {"name": f.name, "type": avro_type(f.name, hints[f.name])}
        if f.default is not dataclasses.MISSING:
            field["default"] = f.default
        elif isinstance(field["type"], list):
            field["default"] = None
        fields.append(field)
    return {"type": "record", "name": cls.__name__, "namespace": NAMESPACE, "fields": fields}


def envelope_schema(version: int) -> dict[str, Any]:
    """The envelope record of the given version with the payload union of the whole catalog.

    v1: the envelope of docs/architecture.md (the event contract). v2 adds ``tenant`` (the
    caller's tenant, on every message, so consumers can scope a message without looking up
    its workflow). v3 has the v2 envelope; its ``TaskFailed`` adds ``timed_out`` (default
    false).
    """
    payloads = [record_schema(cls) for cls, _ in messages.MESSAGE_TYPES.values()]
    fields: list[dict[str, Any]] = [
        {"name": "event_id", "type": "string"},
        {"name": "event_type", "type": "string"},
        {"name": "timestamp", "type": "long"},
        {"name": "source", "type": "string"},
        {"name": "correlation_id", "type": "string"},
        {"name": "workflow_id", "type": "string"},
        {"name": "sequence", "type": ["null", "long"], "default": None},
        {"name": "causation_id", "type": ["null", "string"], "default": None},
        {"name": "payload", "type": payloads},
    ]
    if version >= 2:
        fields.append({"name": "tenant", "type": ["null", "string"], "default": None})
    if version > 3:
        raise ValueError(f"no envelope version {version} is defined yet")
    return {
        "type": "record",
        "name": "Envelope",
        "namespace": NAMESPACE,
        "doc": f"Foldflow message envelope, version {version}.",
        "fields": fields,
    }


def main() -> None:
    """Print the envelope schema implied by the catalog."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--version", type=int, default=3)
    args = parser.parse_args()
    print(json.dumps(envelope_schema(args.version), indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
