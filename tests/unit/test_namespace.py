"""Everything is ``foldflow.<name>``: the checkout's top-level folders (``schemas/``,
``producers/``, …) are imported and installed under the ``foldflow`` namespace only.

A second name for the same file (a bare ``schemas`` beside ``foldflow.schemas``) would be a
second module: its classes would fail ``isinstance`` against the other's, its
registries would be separate. tests/e2e/test_wheel.py proves the installed wheel beside a
colliding ``schemas`` package; these are the quick guards of a checkout.
"""

from __future__ import annotations

import json
import runpy
import subprocess
import sys
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

REPO = Path(__file__).resolve().parents[2]
SUBPACKAGES = ("schemas", "producers", "processors", "workers", "projections", "gateway",
               "bench")


def test_nothing_names_a_package_outside_the_namespace() -> None:
    """After a merge of a branch written before the move: run the script it names."""
    proc = subprocess.run([sys.executable, str(REPO / ".ci" / "namespace_imports.py"),
                           "--check"], cwd=REPO, capture_output=True, text=True, timeout=120,
                          check=False)
    assert proc.returncode == 0, (
        "imports or module names without foldflow. (run .venv/bin/python "
        f".ci/namespace_imports.py):\n{proc.stdout}{proc.stderr}")


@pytest.mark.parametrize("name", SUBPACKAGES)
def test_each_folder_is_linked_into_the_namespace(name: str) -> None:
    link = REPO / "foldflow" / name
    assert link.is_symlink() and link.readlink() == Path("..") / name
    assert link.resolve() == REPO / name


def test_the_wheel_maps_every_package_under_foldflow() -> None:
    with mock.patch("setuptools.setup") as setup:
        runpy.run_path(str(REPO / "setup.py"))
    options: dict[str, Any] = setup.call_args.kwargs
    packages: list[str] = options["packages"]
    assert all(p == "foldflow" or p.startswith("foldflow.") for p in packages), packages
    assert len(packages) == len(set(packages))
    for name in SUBPACKAGES:
        assert options["package_dir"][f"foldflow.{name}"] == name
        assert f"foldflow.{name}" in packages
    assert "foldflow.processors.decider" in packages and "foldflow.schemas.avro" in packages


IMPORT_ALL = """
import importlib, json, pkgutil, sys
import foldflow
skipped = ("__main__", ".migrations")  # run as scripts: python -m, alembic
for info in pkgutil.walk_packages(foldflow.__path__, "foldflow."):
    if not any(part in info.name for part in skipped):
        importlib.import_module(info.name)
print(json.dumps({
    "modules": sum(1 for m in sys.modules if m.startswith("foldflow.")),
    "outside": sorted({m.split(".")[0] for m in sys.modules} & set(SUBPACKAGES)),
}))
"""


def test_importing_every_module_loads_none_outside_the_namespace() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", f"SUBPACKAGES = {SUBPACKAGES!r}\n{IMPORT_ALL}"], cwd=REPO,
        capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    assert found["outside"] == [], found
    assert found["modules"] > 150, found  # the walk went through the links
