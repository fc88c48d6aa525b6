"""The container health probe: ``python -m foldflow.observability.probe`` (exit 0 healthy).

One image runs every service, so the probe asks the one this container runs: a service
with a ``/metrics`` port (``FOLDFLOW_METRICS_PORT``: orchestrator, worker, projector)
answers there once it serves; the gateway (no metrics port of its own) answers
``/healthz`` on ``FOLDFLOW_GATEWAY_PORT``. Both are asked on 127.0.0.1, which a server
bound to 0.0.0.0 answers too.
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request

from foldflow.settings import Settings

__all__ = ["main", "probe_url"]


def probe_url(settings: Settings) -> str:
    """The URL that answers 200 while this container's service is healthy."""
    if settings.metrics_port > 0:
        return f"http://127.0.0.1:{settings.metrics_port}/metrics"
    return f"http://127.0.0.1:{settings.gateway_port}/healthz"


def main(*, timeout: float = 3.0) -> int:
    """Probe once; print why on failure; 0 when healthy, 1 when not."""
    url = probe_url(Settings())
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            if answer.status == 200:
                return 0
            print(f"{url}: HTTP {answer.status}", file=sys.stderr)
    except (urllib.error.URLError, OSError) as exc:
        print(f"{url}: {exc}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
