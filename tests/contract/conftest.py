"""Contract-test fixtures: one test per event type of the catalog."""

from __future__ import annotations

import pytest

from foldflow.schemas.messages import MESSAGE_TYPES


@pytest.fixture(params=sorted(MESSAGE_TYPES))
def event_type(request: pytest.FixtureRequest) -> str:
    """Every event type of the catalog, one test each."""
    return str(request.param)
