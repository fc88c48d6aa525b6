"""Combine the coverage data of a `make test` run, print the report, enforce the floors.

    COVERAGE_FILE=$PWD/.coverage .venv/bin/python .ci/coverage_report.py

Line and branch coverage of the suite and of every service process it started (their data
files are combined first). The floors are in pyproject.toml, ``[tool.foldflow.coverage]``:
one for everything, one per group (the pure decider, the definition language). Prints the
whole table, one line per floor, and the README's badge line; exits 1 if a floor is missed.
"""

from __future__ import annotations

import io
import sys
import tomllib
from pathlib import Path

from coverage import Coverage
from coverage.exceptions import NoDataError

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    """Report; 0 when every floor is met."""
    floors = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["foldflow"]["coverage"]
    cov = Coverage(config_file=str(REPO / "pyproject.toml"))
    cov.combine(keep=False, strict=False)  # no-op when a previous call combined them already
    cov.save()
    cov.load()
    try:
        total = cov.report(file=sys.stdout, ignore_errors=True)
    except NoDataError:
        print("coverage: no data (run the tests under `coverage run`, e.g. `make test`)")
        return 1
    results = [("overall", total, float(floors["overall"]))]
    for group in floors.get("groups", []):
        try:
            value = cov.report(include=group["include"], file=io.StringIO(), ignore_errors=True)
        except NoDataError:
            value = 0.0
        results.append((group["name"], value, float(group["floor"])))
    print()
    failed = False
    for name, value, floor in results:
        ok = value >= floor
        failed |= not ok
        print(f"coverage {name:<12} {value:5.1f}%  floor {floor:g}%  {'ok' if ok else 'MISSED'}")
    badge = " · ".join(f"{name} {value:.1f}%" for name, value, _ in results)
    print(f"\nbadge: coverage (lines + branches): {badge}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
