"""Fixtures of the projection integration tests (defined in ``tests/projection_fixtures``)."""

from projection_fixtures import (  # noqa: F401
    engine,
    projection_db,
    projector_process,
    publisher,
    run_projector,
    settings,
)
