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
_TEXT = st.text(max_size=40)
_BY_AVRO: dict[str, st.SearchStrategy[Any]] = {
    "int": _INT,
    "long": _LONG,
    "boolean": st.booleans(),
}


def _field_strategy(avro: Any, text: st.SearchStrategy[str]) -> st.SearchStrategy[Any]:
    if isinstance(avro, list):
        (branch,) = [t for t in avro if t != "null"]
        return st.none() | _field_strategy(branch, text)
    return text if avro == "string" else _BY_AVRO[avro]


def payloads(cls: type, text: st.SearchStrategy[str] = _TEXT) -> st.SearchStrategy[Payload]:
    """Any instance of ``cls`` whose values fit their Avro types (strings drawn from ``text``)."""
    hints = typing.get_type_hints(cls)
    fields = {
        f.name: _field_strategy(avro_type(f.name, hints[f.name]), text)
        for f in dataclasses.fields(cls)
    }
    return st.builds(cls, **fields)


def envelopes(event_type: str, text: st.SearchStrategy[str] = _TEXT
              ) -> st.SearchStrategy[Envelope]:  # fmt: skip
    """Any envelope carrying a payload of ``event_type`` (strings drawn from ``text``)."""
    return st.builds(
        Envelope,
        event_id=text,
        timestamp=_LONG,
        source=text,
        correlation_id=text,
        workflow_id=text,
        payload=payloads(MESSAGE_TYPES[event_type][0], text),
        sequence=st.none() | _LONG,
        causation_id=st.none() | text,
        tenant=st.none() | text,
    )
