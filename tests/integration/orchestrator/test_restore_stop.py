"""A stop asked while the orchestrator reads its states back ends the read at once, instead
of waiting for the read to finish (in-process, against the real broker)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from orchestrator_harness import delete_private_topics, private_settings

from foldflow.processors.runtime.bootstrap import build
from foldflow.processors.runtime.errors import Stopped
from foldflow.processors.runtime.records import DefinitionTable
from foldflow.processors.runtime.recovery import StateReader
from foldflow.processors.runtime.watchdog import Watchdog
from foldflow.settings import Settings
from foldflow.topics import Topology


@pytest.fixture
def settings(stack: Settings) -> Iterator[Settings]:
    private = private_settings(stack, partitions=2)
    yield private
    delete_private_topics(private)


def test_a_restore_reads_to_the_end_unless_a_stop_is_asked(settings: Settings) -> None:
    reader = StateReader(settings, Topology.of(settings).orchestrator_state,
                         definitions=DefinitionTable())  # fmt: skip
    assert sorted(reader.restore([0, 1], timeout=60)) == [0, 1]  # empty: read to the end
    with pytest.raises(Stopped, match=r"stopped while restoring .* partitions \[0, 1\]"):
        reader.restore([0, 1], timeout=60, stopping=lambda: True)


def test_an_orchestrator_stopped_while_it_restores_ends_its_run(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="foldflow")
    watchdog = Watchdog()
    orchestrator = build(settings, watchdog=watchdog)
    reader = orchestrator.reader
    asked: list[list[int]] = []

    def restore(partitions: list[int], **options: Any) -> Any:  # SIGTERM arrives mid-read
        asked.append(sorted(partitions))
        orchestrator.stop()
        return StateReader.restore(reader, partitions, **options)

    reader.restore = restore  # type: ignore[method-assign]
    failed: list[BaseException] = []

    def run() -> None:
        try:
            orchestrator.run()
        except BaseException as exc:
            failed.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    try:
        thread.start()
        thread.join(90)
        assert not thread.is_alive(), "run() did not return after the stop"
        assert failed == []
        assert asked == [[0, 1]]  # the stop came during the read of the assignment
        said = [r.getMessage() for r in caplog.records]
        assert any(m.startswith("stopped while restoring") for m in said), said
        assert not any(m.startswith("recovered") for m in said), said  # the read was cut
    finally:
        watchdog.close()
