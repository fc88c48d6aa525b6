"""Who is speaking: the service instance name shared by logs, traces and metrics."""

from __future__ import annotations

import os
import socket

from foldflow.settings import Settings

__all__ = ["instance_name"]


def instance_name(settings: Settings) -> str:
    """``settings.instance_id``, or ``<hostname>-<pid>`` when none is configured."""
    return settings.instance_id or f"{socket.gethostname()}-{os.getpid()}"
