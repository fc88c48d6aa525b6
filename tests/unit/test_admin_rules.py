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


def test_without_replication_settings_topics_take_the_clusters_defaults() -> None:
    from foldflow.admin import _new_topic
    from foldflow.topics import topic_specs

    specs = topic_specs(Settings(_env_file=None))  # type: ignore[call-arg]
    assert {s.replication_factor for s in specs} == {None}
    assert all("min.insync.replicas" not in s.config for s in specs)
    # -1 asks the broker for its default.replication.factor (KIP-464)
    assert _new_topic(specs[0]).replication_factor == -1


def test_replication_settings_are_asked_for_and_checked() -> None:
    from foldflow.admin import _outcome
    from foldflow.topics import topic_specs

    specs = topic_specs(Settings(replication_factor=3, min_insync_replicas=2))
    assert {s.replication_factor for s in specs} == {3}
    assert {s.config["min.insync.replicas"] for s in specs} == {"2"}
    events = next(s for s in specs if s.name.endswith("wf.events"))
    ok = _outcome(events, 6, 3, created=False,
                  config={"cleanup.policy": "delete", "min.insync.replicas": "2"})
    assert (ok.outcome, ok.replication_factor, ok.min_insync_replicas) == ("ok", 3, 2)
    thin = _outcome(events, 6, 1, created=False,
                    config={"cleanup.policy": "delete", "min.insync.replicas": "1"})
    assert thin.outcome == "differs"
    assert "expected 3 replicas" in thin.note and "min.insync.replicas=2" in thin.note


def test_a_min_isr_as_high_as_the_replicas_is_flagged() -> None:
    from foldflow.admin import _outcome
    from foldflow.topics import topic_specs

    [spec, *_] = topic_specs(Settings(_env_file=None))  # type: ignore[call-arg]
    risky = _outcome(spec, 6, 2, created=True,
                     config={"cleanup.policy": "delete", "min.insync.replicas": "2"})
    assert risky.outcome == "differs" and "one broker down stops every write" in risky.note
