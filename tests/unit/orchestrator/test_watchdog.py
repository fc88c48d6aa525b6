"""The orchestrator's watchdog, on real processes: a call blocked past its deadline starts
the process afresh in place (same pid), and a stop signal the blocked main thread cannot
answer ends the process after the grace period instead of being ignored."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from foldflow.processors.runtime.kafka import guard_seconds
from foldflow.processors.runtime.watchdog import EXIT_HUNG, RESTARTS_ENV
from foldflow.settings import Settings

SCRIPT = textwrap.dedent(f"""
    import os, signal, sys, threading, time
    from foldflow.processors.runtime.watchdog import Watchdog

    restarts = os.environ.get({RESTARTS_ENV!r}, "0")
    print("start", os.getpid(), restarts, flush=True)
    if restarts != "0":
        sys.exit(0)
    signal.signal(signal.SIGTERM, lambda *_: print("handler ran", flush=True))
    dog = Watchdog(check_every=0.05, signal_grace_s=float(sys.argv[2]))
    blocked = threading.Lock()
    blocked.acquire()
    with dog.guard("a call that never returns", float(sys.argv[1])):
        print("blocked", flush=True)
        while True:
            blocked.acquire()  # a signal interrupts it, the handler runs, it blocks again
""")


def _start(tmp_path: Path, deadline_s: float, grace_s: float) -> subprocess.Popen[str]:
    script = tmp_path / "hang.py"
    script.write_text(SCRIPT)
    env = {k: v for k, v in os.environ.items() if k != RESTARTS_ENV}
    proc = subprocess.Popen([sys.executable, str(script), str(deadline_s), str(grace_s)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env)  # fmt: skip
    assert proc.stdout is not None
    assert proc.stdout.readline().split()[0] == "start"
    assert proc.stdout.readline().strip() == "blocked"
    return proc


def test_a_call_blocked_past_its_deadline_restarts_the_process_in_place(tmp_path: Path) -> None:
    proc = _start(tmp_path, deadline_s=0.5, grace_s=60)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    restarted = [line.split() for line in out.splitlines() if line.startswith("start ")]
    assert restarted == [["start", str(proc.pid), "1"]], out
    assert "starting afresh in place (restart 1)" in out


def test_a_stop_signal_the_blocked_loop_cannot_answer_ends_the_process(tmp_path: Path) -> None:
    proc = _start(tmp_path, deadline_s=600, grace_s=0.5)
    time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == EXIT_HUNG, out
    assert "handler ran" in out  # the loop was told, and could do nothing about it
    assert "a stop signal has gone unanswered" in out
    assert "start" not in out  # not started afresh: stopped


def test_without_a_signal_or_a_late_call_the_watchdog_does_nothing(tmp_path: Path) -> None:
    proc = _start(tmp_path, deadline_s=600, grace_s=600)
    time.sleep(1.0)
    assert proc.poll() is None
    proc.kill()
    proc.wait(timeout=10)


def test_the_deadline_leaves_each_call_its_own_timeout_and_little_more() -> None:
    """A transactional call times out at the session timeout; the watchdog waits half as
    long again (15 s at least) before it takes the call for librdkafka #5456's hang: each
    second more is a second every owned workflow stands still after a broker restart."""
    for session, deadline in ((1.0, 15.0), (10.0, 15.0), (60.0, 90.0)):
        settings = Settings(orchestrator_session_timeout_s=session)
        assert guard_seconds(settings) == deadline
        assert guard_seconds(settings) > settings.orchestrator_session_timeout_s
