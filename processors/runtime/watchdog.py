"""A watchdog for the librdkafka calls that can block past their own timeout.

``send_offsets_to_transaction`` can hang when the group coordinator is down
(librdkafka #5456: its timeout is never checked). The loop is a single thread, so a hung
call stops everything; a producer in that state cannot be trusted with the transaction
either. The watchdog thread ends the process (exit code :data:`EXIT_HUNG`) when a guarded
call outlives its deadline: the supervisor restarts it, and the restarted instance's
``init_transactions`` aborts what the hung one left open.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator

__all__ = ["EXIT_HUNG", "Watchdog"]

EXIT_HUNG = 75
log = logging.getLogger(__name__)


class Watchdog:
    """Ends the process when a guarded block runs past its deadline."""

    def __init__(
        self, *, check_every: float = 0.5, on_hung: Callable[[str, float], None] | None = None
    ) -> None:
        self._check_every = check_every
        self._on_hung = on_hung or _exit_hung
        self._lock = threading.Lock()
        self._guarded: tuple[str, float, float] | None = None  # (what, started, deadline)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="orchestrator-watchdog",
                                        daemon=True)  # fmt: skip
        self._thread.start()

    @contextlib.contextmanager
    def guard(self, what: str, seconds: float) -> Iterator[None]:
        """Run the block under a deadline of ``seconds``."""
        now = time.monotonic()
        with self._lock:
            self._guarded = (what, now, now + seconds)
        try:
            yield
        finally:
            with self._lock:
                self._guarded = None

    def close(self) -> None:
        """Stop watching."""
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self._check_every):
            with self._lock:
                guarded = self._guarded
            if guarded is not None and time.monotonic() > guarded[2]:
                what, started, _ = guarded
                self._on_hung(what, time.monotonic() - started)
                return


def _exit_hung(what: str, seconds: float) -> None:
    log.critical("%s has blocked for %.1fs, past its deadline (librdkafka #5456): exiting so "
                 "a fresh start aborts the open transaction", what, seconds)  # fmt: skip
    logging.shutdown()
    os._exit(EXIT_HUNG)
