"""Where the orchestrator's time goes: py-spy samples, summarised.

:func:`record` runs ``py-spy record --format raw`` against a running process (collapsed
stacks: ``frame;frame;...;leaf count`` per line, loadable in speedscope or
``flamegraph.pl``); :func:`summarize_collapsed` is the pure part that turns those
stacks into shares by component (the package of the leaf frame), by function (self) and
by function (inclusive).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ProfileSummary", "component_of", "find_py_spy", "record", "summarize_collapsed"]

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")
_PROJECT_PACKAGES = ("processors", "producers", "schemas", "foldflow", "workers", "projections")


@dataclass(frozen=True)
class ProfileSummary:
    """Shares (0..1) of the sampled busy time; ``threads``: each thread's busy share of
    the wall time (its samples / the samples py-spy would take of an always-busy thread)."""

    samples: int
    by_component: list[tuple[str, float]]
    top_self: list[tuple[str, float]]
    top_inclusive: list[tuple[str, float]]
    threads: list[tuple[str, float]]


def find_py_spy() -> str | None:
    """The py-spy executable next to this Python (the dev dependency) or on PATH."""
    beside = Path(sys.executable).with_name("py-spy")
    if beside.exists():
        return str(beside)
    return shutil.which("py-spy")


def component_of(frame: str) -> str:
    """The package a py-spy frame (``func (path:line)``) belongs to.

    Site-packages frames are named by their top-level distribution directory
    (``aiokafka``, ``faust``, ``confluent_kafka``...), the project's own by package
    (``processors``...), the standard library as ``stdlib:<top module>`` (``asyncio``).
    """
    match = _FRAME.match(frame.strip())
    path = match.group("file") if match else frame
    parts = Path(path).parts
    folders = parts[:-1]
    if "site-packages" in parts:
        index = parts.index("site-packages")
        if index + 1 < len(parts) and parts[index + 1] != "foldflow":
            return Path(parts[index + 1]).stem
        folders = parts[index + 1:-1]
    # the innermost: foldflow/processors/... (installed, or a checkout's symlink) is processors
    for folder in reversed(folders):
        if folder in _PROJECT_PACKAGES:
            return folder
    for index, part in enumerate(parts[:-1]):
        if re.fullmatch(r"python3\.\d+", part):  # the standard library: its top module
            return f"stdlib:{Path(parts[index + 1]).stem}"
    return Path(path).stem or "?"


def _is_project_code(frame: str) -> bool:
    """A frame of Foldflow's own packages, the CLI's composition roots left out (they wrap
    every sample of a service)."""
    return component_of(frame) in _PROJECT_PACKAGES and "/foldflow/cli/" not in frame


def _function(frame: str) -> str:
    match = _FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    file = Path(match.group("file")).name
    return f"{match.group('func')} ({file})"


_THREAD = re.compile(r"^thread \((?P<id>[^)]*)\)(?::\s*(?P<name>.*))?$")


def summarize_collapsed(
    lines: Iterable[str], *, top: int = 10, expected_samples: int | None = None
) -> ProfileSummary:
    """Shares by component, by function self time and by function inclusive time (the
    project's own functions only: the event loop and the CLI frames are in every stack).

    py-spy records only threads that are running (not idle), so with
    ``expected_samples`` (rate x seconds) a thread's sample count says how busy it was.
    """
    threads: Counter[str] = Counter()
    components: Counter[str] = Counter()
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in lines:
        line = line.rstrip("\n")
        if not line.strip():
            continue
        stack, _, count_text = line.rpartition(" ")
        try:
            count = int(count_text)
        except ValueError:
            continue
        frames = [f for f in stack.split(";") if f]
        # --threads puts a "thread (id): name" pseudo-frame first (--subprocesses "process")
        for frame in frames[:2]:
            match = _THREAD.match(frame)
            if match:
                threads[match.group("name") or match.group("id")] += count
        frames = [f for f in frames if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        total += count
        leaf = frames[-1]
        components[component_of(leaf)] += count
        self_time[_function(leaf)] += count
        for name in {_function(f) for f in frames if _is_project_code(f)}:
            inclusive[name] += count

    def shares(counter: Counter[str]) -> list[tuple[str, float]]:
        ranked = sorted(counter.items(), key=lambda item: (-item[1], item[0]))[:top]
        return [(name, n / total) for name, n in ranked] if total else []

    busy = [(name, n / expected_samples) for name, n in threads.most_common(top)
            ] if expected_samples else []
    return ProfileSummary(total, shares(components), shares(self_time), shares(inclusive), busy)


def record(pid: int, *, seconds: float, output: Path, rate: int = 100) -> subprocess.Popen[bytes]:
    """Start py-spy sampling ``pid`` for ``seconds`` into ``output`` (collapsed stacks).

    Returns the py-spy process; wait for it, then read ``output``. Raises
    ``FileNotFoundError`` when py-spy is not installed.
    """
    exe = find_py_spy()
    if exe is None:
        raise FileNotFoundError("py-spy is not installed (pip install py-spy; a dev dependency)")
    return subprocess.Popen(
        [exe, "record", "--pid", str(pid), "--duration", str(max(1, round(seconds))),
         "--rate", str(rate), "--format", "raw", "--output", str(output), "--nonblocking",
         "--full-filenames", "--threads"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
