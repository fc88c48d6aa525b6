"""Helpers of the console's browser tests (imported by their conftest and the tests)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from foldflow.settings import Settings

REPO = Path(__file__).resolve().parents[3]
ARTIFACTS = REPO / ".foldflow" / "test-artifacts"
CHROMIUM = os.environ.get("FOLDFLOW_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]  # fmt: skip


def free_port() -> int:
    """A port nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Deployment:
    """A running private deployment: its URL, environment and keys."""

    url: str
    env: dict[str, str]
    settings: Settings
    key: str  # tenant default, every scope (what `foldflow up` wrote)
    read_only: str  # tenant default, workflows:read
    other_tenant: str  # tenant globex, every workflow scope



def run_foldflow(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI, from the checkout, with ``env``."""
    return subprocess.run([sys.executable, "-m", "foldflow.cli.main", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600, check=False)  # fmt: skip
