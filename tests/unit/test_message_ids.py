"""Deterministic message ids are RFC 4122 version-5 UUIDs: the ones already on the wire."""

from __future__ import annotations

import uuid

from hypothesis import given
from hypothesis import strategies as st

from foldflow.schemas import messages

NAMESPACE = uuid.UUID("6f0c3d3e-6a52-4d8e-9d1c-5f0a1b2c3d4e")
NAMES = st.text(st.characters(exclude_categories=("Cs",)), max_size=300)


@given(NAMES, st.integers(min_value=0, max_value=2**63))
def test_ids_are_the_uuid5_of_their_name(name: str, number: int) -> None:
    assert messages.event_id_for(name, number) == str(uuid.uuid5(NAMESPACE, f"{name}#{number}"))
    assert messages.derived_id(name, number) == str(uuid.uuid5(NAMESPACE, f"{name}/{number}"))


def test_a_known_id_stays_the_same() -> None:
    assert messages.event_id_for("order-1", 1) == "7e55e686-fbdf-5c3e-b5a0-575a750ee9d2"
    assert uuid.UUID(messages.event_id_for("order-1", 1)).version == 5
