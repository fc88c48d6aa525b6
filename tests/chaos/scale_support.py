"""The chaos tests' way to ``bench/scaleout.py`` and ``bench/logcheck.py`` (the
checkout's harness, not an installed package): deployments run by the `foldflow` CLI,
load, chaos and the checks."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from foldflow.bench.logcheck import (  # noqa: E402
    LiveTail,
    finished,
    group_lags,
    histories,
    leaders,
    log_problems,
    lost,
    projection_differences,
    read_topics,
    under_replicated,
    wait_for,
)
from foldflow.bench.scaleout import (  # noqa: E402
    CHAIN,
    AckedStarts,
    Chaos,
    GatewayStarts,
    UpDeployment,
    delete_topics_and_groups,
    free_ports,
    keep_logs,
)


def drain_failure(exc: AssertionError, deployment: UpDeployment, check: object, report: str,
                  name: str) -> AssertionError:
    """The failure of a drain wait, with what is pending, every group's lag and where the
    deployment's logs were kept."""
    settings = deployment.settings()
    pending = check.pending() if hasattr(check, "pending") else ""
    lags = group_lags(settings, settings.topic_prefix)
    kept = keep_logs(deployment, Path("/tmp") / f"foldflow-{name}-logs")
    return AssertionError(f"{exc}\n{pending}\nlag per group: {lags}\n{report}\n"
                          f"logs kept in {kept}\n{deployment.log_tails()}")

__all__ = [
    "CHAIN",
    "AckedStarts",
    "Chaos",
    "GatewayStarts",
    "LiveTail",
    "UpDeployment",
    "delete_topics_and_groups",
    "drain_failure",
    "finished",
    "free_ports",
    "group_lags",
    "histories",
    "leaders",
    "log_problems",
    "lost",
    "projection_differences",
    "read_topics",
    "under_replicated",
    "wait_for",
]
