"""The chaos tests' way to ``bench/scaleout.py`` and ``bench/logcheck.py`` (the
checkout's harness, not an installed package): deployments run by the `foldflow` CLI,
load, chaos and the checks."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.logcheck import (  # noqa: E402
    LiveTail,
    finished,
    histories,
    leaders,
    log_problems,
    lost,
    projection_differences,
    read_topics,
    under_replicated,
    wait_for,
)
from bench.scaleout import (  # noqa: E402
    CHAIN,
    AckedStarts,
    Chaos,
    GatewayStarts,
    UpDeployment,
    delete_topics_and_groups,
    free_ports,
)

__all__ = [
    "CHAIN",
    "AckedStarts",
    "Chaos",
    "GatewayStarts",
    "LiveTail",
    "UpDeployment",
    "delete_topics_and_groups",
    "finished",
    "free_ports",
    "histories",
    "leaders",
    "log_problems",
    "lost",
    "projection_differences",
    "read_topics",
    "under_replicated",
    "wait_for",
]
