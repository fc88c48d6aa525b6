"""Hypothesis strategies for the message catalog, derived from the dataclasses' Avro types."""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

from hypothesis import strategies as st

from foldflow.schemas.messages import MESSAGE_TYPES, Envelope, Payload
from foldflow.schemas.schemagen import avro_type

_INT = st.integers(-(2**31), 2**31 - 1)
_LONG = st.integers(-(2**63), 2**63 - 1)
_BY_AVRO: dict[str, st.SearchStrategy[Any]] = {
    "string": st.text(max_size=40),
    "int": _INT,
    "long": _LONG,
    "boolean": st.booleans(),
}


def _field_strategy(avro: Any) -> st.SearchStrategy[Any]:
    if isinstance(avro, list):
        (branch,) = [t for t in avro if t != "null"]
        return st.none() | _field_strategy(branch)
    return _BY_AVRO[avro]


def payloads(cls: type) -> st.SearchStrategy[Payload]:
    """Any instance of ``cls`` whose values fit their Avro types."""
    hints = typing.get_type_hints(cls)
    fields = {
        f.name: _field_strategy(avro_type(f.name, hints[f.name])) for f in dataclasses.fields(cls)
    }
    return st.builds(cls, **fields)


def envelopes(event_type: str) -> st.SearchStrategy[Envelope]:
    """Any envelope carrying a payload of ``event_type``."""
    text = st.text(max_size=40)
    return st.builds(
        Envelope,
        event_id=text,
        timestamp=_LONG,
        source=text,
        correlation_id=text,
        workflow_id=text,
        payload=payloads(MESSAGE_TYPES[event_type][0]),
        sequence=st.none() | _LONG,
        causation_id=st.none() | text,
        tenant=st.none() | text,
    )
