"""The files outside the packages that the CLI needs: found in a checkout, shipped in the
wheel under the names foldflow.resources looks for (the wheel test installs them)."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

from foldflow import resources

REPO = Path(__file__).resolve().parents[3]


def _shipped_folders() -> dict[str, str]:
    tree = ast.parse((REPO / "setup.py").read_text())
    (value,) = (node.value for node in tree.body if isinstance(node, ast.Assign)
                and any(getattr(t, "id", "") == "SHIPPED_FOLDERS" for t in node.targets))
    found: dict[str, str] = ast.literal_eval(value)
    return found


def test_a_checkout_uses_its_own_folders() -> None:
    assert resources.deploy_local_dir() == REPO / "deploy" / "local"
    assert resources.examples_dir() == REPO / "examples"
    assert (resources.deploy_local_dir() / "server.properties.template").is_file()


def test_the_wheel_ships_them_where_the_code_looks() -> None:
    shipped = _shipped_folders()
    assert shipped == {"foldflow._files.local": "deploy/local",
                       "foldflow._files.examples": "examples"}
    package_data = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"]
    for package, folder in shipped.items():
        patterns = package_data[package]
        files = [p for p in (REPO / folder).iterdir() if p.is_file()]
        assert files and all(any(p.match(pattern) for pattern in patterns) for p in files)
