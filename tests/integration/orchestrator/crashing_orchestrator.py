"""``foldflow run orchestrator`` that dies (``os._exit``) right after the broker acked the
events of the first batch holding a task result, before the new states are stored: the
window DESIGN §5 leaves between "acked" and "stored". Run as a script by
``test_batch_failures.py``."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from foldflow.cli.orchestrator import run_orchestrator
from processors.runtime.runner import InputRecord, Orchestrator

_handle_batch = Orchestrator.handle_batch


async def _dying_handle_batch(
    self: Orchestrator, records: Sequence[InputRecord], load: Callable[[InputRecord], Any]
) -> Any:
    stored = await _handle_batch(self, records, load)  # everything published and acked
    if any(r.topic == self.topology.results for r in records):
        print("test: dying after the acks, before storing", file=sys.stderr, flush=True)
        os._exit(17)
    return stored


Orchestrator.handle_batch = _dying_handle_batch  # type: ignore[method-assign]

if __name__ == "__main__":
    run_orchestrator()
