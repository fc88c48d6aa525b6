"""``foldflow run orchestrator`` whose faust consumer drops two records once, after the
broker returned them: the first ``wf.commands`` record at offset 0 and the first
``wf.results`` record at offset 1 — as the orchestrator of the failed demo run did
(never delivered, then committed past). Run as a script by ``test_batch_failures.py``."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from typing import Any

import faust.transport.consumer as faust_consumer

from foldflow.cli.orchestrator import run_orchestrator

_getmany = faust_consumer.Consumer.getmany
_to_drop = {"wf.commands": 0, "wf.results": 1}


async def _dropping_getmany(self: Any, timeout: float) -> AsyncIterator[Any]:
    async for tp, message in _getmany(self, timeout):
        kind = ".".join(message.topic.split(".")[-2:])
        if _to_drop.get(kind) == message.offset:
            del _to_drop[kind]
            print(f"test: dropped {message.topic}[{message.partition}]@{message.offset}",
                  file=sys.stderr, flush=True)
            continue
        yield tp, message


faust_consumer.Consumer.getmany = _dropping_getmany  # type: ignore[method-assign]

if __name__ == "__main__":
    run_orchestrator()
