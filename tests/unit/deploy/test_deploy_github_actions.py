""".github/workflows/: actionlint finds nothing, and the jobs do what users' forks need.

actionlint is built from its Go module (pinned) into Foldflow's cache the first time; the
test skips only when Go is not installed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.yml"))
ACTIONLINT = "github.com/rhysd/actionlint/cmd/actionlint@v1.7.7"


@pytest.fixture(scope="module")
def actionlint() -> Path:
    go = shutil.which("go")
    if go is None:
        pytest.skip("Go is not installed: actionlint is built from its Go module "
                    "(apt-get install golang, or https://go.dev/dl)")
    version = ACTIONLINT.rsplit("@", 1)[1]
    bin_dir = Path.home() / ".cache" / "foldflow" / "tools" / f"actionlint-{version}"
    binary = bin_dir / "actionlint"
    if not binary.exists():
        proc = subprocess.run([go, "install", ACTIONLINT],
                              env={**os.environ, "GOBIN": str(bin_dir)},
                              capture_output=True, text=True, timeout=600, check=False)
        assert proc.returncode == 0, f"go install {ACTIONLINT} failed:\n{proc.stderr}"
    return binary


def test_actionlint_is_clean(actionlint: Path) -> None:
    assert WORKFLOWS, "no workflow in .github/workflows"
    proc = subprocess.run([str(actionlint), "-no-color", *map(str, WORKFLOWS)], cwd=REPO,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_workflow_lints_tests_builds_and_releases_on_tags() -> None:
    (ci,) = (yaml.safe_load(p.read_text()) for p in WORKFLOWS if p.name == "ci.yml")
    jobs = ci["jobs"]
    assert {"lint", "test", "build", "release"} <= jobs.keys()
    runs = {name: " ".join(step.get("run", "") for step in job["steps"])
            for name, job in jobs.items()}
    assert "make lint" in runs["lint"]
    assert "make test" in runs["test"]
    assert "python -m build" in runs["build"]
    assert any(step.get("with", {}).get("file") == "deploy/Dockerfile"
               for step in jobs["build"]["steps"])
    assert jobs["release"]["if"] == "startsWith(github.ref, 'refs/tags/v')"
    assert set(jobs["release"]["needs"]) == {"lint", "test", "build"}
    assert "v*" in ci[True]["push"]["tags"]  # YAML 1.1 reads the key `on` as True
    for job in jobs.values():  # setuptools-scm needs the tags
        checkout = next(s for s in job["steps"] if s.get("uses", "").startswith("actions/checkout"))
        assert checkout["with"]["fetch-depth"] == 0
