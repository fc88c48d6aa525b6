"""The co-partitioning rule of DESIGN §3, without a broker."""

from __future__ import annotations

import pytest

from foldflow.admin import PartitionMismatch, _check_co_partitioned
from foldflow.settings import Settings


def test_matching_or_missing_co_partitioned_topics_pass() -> None:
    settings = Settings(partitions=6, topic_prefix="x.")
    _check_co_partitioned(settings, {"x.wf.commands": 6, "x.wf.definitions": 1})


def test_a_differing_co_partitioned_topic_is_refused_with_its_name() -> None:
    settings = Settings(partitions=6, topic_prefix="x.")
    with pytest.raises(PartitionMismatch, match=r"x\.wf\.events has 3"):
        _check_co_partitioned(settings, {"x.wf.commands": 6, "x.wf.events": 3})
