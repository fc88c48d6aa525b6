"""A private set of topics per test (its own prefix), deleted afterwards."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from confluent_kafka.admin import AdminClient

from foldflow.admin import ensure_topics
from foldflow.settings import Settings


@pytest.fixture
def topics(
    stack: Settings, admin: AdminClient, unique_name: Callable[..., str]
) -> Iterator[Settings]:
    """Settings whose topic prefix is this test's own, with every topic of DESIGN §3 created."""
    settings = stack.model_copy(update={"topic_prefix": unique_name("cli") + "."})
    ensure_topics(settings)
    yield settings
    mine = [t for t in admin.list_topics(timeout=10).topics if t.startswith(settings.topic_prefix)]
    if mine:
        for future in admin.delete_topics(mine, operation_timeout=30).values():
            future.result()
