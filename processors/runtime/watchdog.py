"""A watchdog for the librdkafka calls that can block past their own timeout.

``send_offsets_to_transaction`` can hang when the group coordinator is down or restarts
(librdkafka #5456: its timeout is never checked; #5511). The loop is a single thread, so a
hung call stops everything, and a producer in that state cannot be trusted with the
transaction either. Python runs signal handlers only on the main thread between
bytecodes, so a hung call also makes the process deaf to SIGTERM.

The watchdog thread covers both:

- a guarded call that outlives its deadline: the process starts afresh in place
  (``execv`` of its own command line, same pid, so a supervisor or a test holding the
  process sees it carry on); the fresh instance's ``init_transactions`` aborts what the
  hung one left open and every state is read back, as after a restart;
- SIGTERM/SIGINT that the main thread has not acted on within the grace period (it is
  stuck in a call): the process exits (code :data:`EXIT_HUNG`) rather than ignore the
  signal. It learns of signals from :func:`signal.set_wakeup_fd`, which the C-level
  handler writes whichever thread is busy.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator

__all__ = ["EXIT_HUNG", "RESTARTS_ENV", "Watchdog"]

EXIT_HUNG = 75
#: How many times this process has started afresh in place (for its logs)
RESTARTS_ENV = "FOLDFLOW_WATCHDOG_RESTARTS"
log = logging.getLogger(__name__)


class Watchdog:
    """Restarts the process when a guarded block runs past its deadline, and ends it when a
    stop signal goes unanswered for ``signal_grace_s``."""

    def __init__(
        self,
        *,
        check_every: float = 0.5,
        signal_grace_s: float = 20.0,
        on_hung: Callable[[str, float], None] | None = None,
        on_deaf: Callable[[float], None] | None = None,
    ) -> None:
        self._check_every = check_every
        self._signal_grace_s = signal_grace_s
        self._on_hung = on_hung or _restart_in_place
        self._on_deaf = on_deaf or _exit_deaf
        self._lock = threading.Lock()
        self._guarded: tuple[str, float, float] | None = None  # (what, started, deadline)
        self._signalled: float | None = None
        self._stop = threading.Event()
        self._wakeup_r, self._previous_wakeup = self._listen_for_signals()
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
        if self._wakeup_r is not None:
            with contextlib.suppress(ValueError):  # not the main thread: leave it
                signal.set_wakeup_fd(self._previous_wakeup)
            os.close(self._wakeup_r)
            self._wakeup_r = None

    def _listen_for_signals(self) -> tuple[int | None, int]:
        """A pipe the C-level signal handler writes to (only from the main thread)."""
        if threading.current_thread() is not threading.main_thread():
            return None, -1
        r, w = os.pipe()
        os.set_blocking(r, False)
        os.set_blocking(w, False)
        previous = signal.set_wakeup_fd(w, warn_on_full_buffer=False)
        return r, previous

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wait_for_signal()
            now = time.monotonic()
            with self._lock:
                guarded = self._guarded
            if self._signalled is not None and now - self._signalled > self._signal_grace_s:
                self._on_deaf(now - self._signalled)
                return
            if guarded is not None and now > guarded[2]:
                what, started, _ = guarded
                self._on_hung(what, now - started)
                return

    def _wait_for_signal(self) -> None:
        if self._wakeup_r is None:
            self._stop.wait(self._check_every)
            return
        ready, _, _ = select.select([self._wakeup_r], [], [], self._check_every)
        if not ready:
            return
        with contextlib.suppress(BlockingIOError, OSError):
            got = os.read(self._wakeup_r, 64)
            if any(n in (signal.SIGTERM, signal.SIGINT) for n in got) and self._signalled is None:
                self._signalled = time.monotonic()


def _restart_in_place(what: str, seconds: float) -> None:
    restarts = int(os.environ.get(RESTARTS_ENV, "0")) + 1
    log.critical("%s has blocked for %.1fs, past its deadline (librdkafka #5456): starting "
                 "afresh in place (restart %d), every state read back", what, seconds,
                 restarts)  # fmt: skip
    logging.shutdown()
    os.environ[RESTARTS_ENV] = str(restarts)
    try:
        os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])
    except OSError:
        os._exit(EXIT_HUNG)


def _exit_deaf(seconds: float) -> None:
    log.critical("a stop signal has gone unanswered for %.1fs: the loop is stuck in a Kafka "
                 "call; exiting without its last commit (its successor aborts what was open)",
                 seconds)  # fmt: skip
    logging.shutdown()
    os._exit(EXIT_HUNG)
