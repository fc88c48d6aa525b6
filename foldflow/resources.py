"""Files Foldflow needs at run time that live outside the Python packages of a checkout.

A checkout keeps them where the layout puts them (``deploy/local/``, ``examples/``); the
wheel ships the same files inside the ``foldflow`` package (``foldflow/_files/…``, mapped
in ``setup.py``), so ``foldflow up``, ``foldflow demo`` and ``foldflow bench`` work from an
installed wheel alone. Each function returns the checkout's folder when there is one, else
the installed copy.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["deploy_local_dir", "examples_dir"]

_PACKAGE = Path(__file__).resolve().parent
_CHECKOUT = _PACKAGE.parent


def _first(checkout: str, installed: str) -> Path:
    candidate = _CHECKOUT / checkout
    return candidate if candidate.is_dir() else _PACKAGE / "_files" / installed


def deploy_local_dir() -> Path:
    """The local broker's files: ``pom.xml``, ``log4j2.properties``, the
    ``server.properties`` template."""
    return _first("deploy/local", "local")


def examples_dir() -> Path:
    """The ready-to-run workflow definitions the demo registers."""
    return _first("examples", "examples")
