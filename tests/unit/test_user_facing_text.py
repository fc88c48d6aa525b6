"""What ships (the packages, their data, the docs, the deployment files) speaks only of what
users have: no reference to the team's internal design document or to the shared folder
beside the repository."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

#: Everything a user gets: the installed packages with their data, the docs, the examples,
#: the deployment files.
SHIPPED = ("foldflow", "schemas", "producers", "processors", "workers", "projections",
           "gateway", "bench", "docs", "examples", "deploy", "README.md", "CHANGELOG.md",
           "docker-compose.kafka.yml", "pyproject.toml", "Makefile", ".github")
TEXT = {".py", ".md", ".json", ".yaml", ".yml", ".toml", ".txt", ".ini", ".mako",
        ".properties", ".xml", ".template", ".avsc", ".cfg", ""}
FORBIDDEN = re.compile(r"DESIGN(?:\.md)? ?§|DESIGN\.md|\.\./shared|/work/shared")

#: Published schema files are never edited (their fingerprints are pinned forever); the
#: prose in their "doc" is outside the canonical form. Recorded benchmark runs are history.
IMMUTABLE = re.compile(r"^schemas/avro/envelope\.v[12]\.avsc$|^bench/runs/")


def _shipped_files() -> list[Path]:
    files: list[Path] = []
    for entry in SHIPPED:
        path = REPO / entry
        if path.is_file():
            files.append(path)
        elif path.is_dir():
            files += [p for p in path.rglob("*") if p.is_file() and p.suffix in TEXT
                      and "__pycache__" not in p.parts]
    return files


def test_shipped_text_cites_only_what_users_have() -> None:
    files = _shipped_files()
    assert len(files) > 100  # the walk found the tree
    hits = [
        f"{path.relative_to(REPO)}:{number}: {line.strip()}"
        for path in files
        if not IMMUTABLE.search(path.relative_to(REPO).as_posix())
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1)
        if FORBIDDEN.search(line)
    ]
    assert not hits, "cite docs/ instead:\n" + "\n".join(hits)


def test_the_docs_it_points_to_exist() -> None:
    """Every ``docs/<page>.md`` that shipped text names is there."""
    missing = {
        f"{path.relative_to(REPO)} → {name}"
        for path in _shipped_files()
        for name in re.findall(r"docs/([\w-]+\.md)", path.read_text(errors="replace"))
        if not (REPO / "docs" / name).exists()
    }
    assert not missing, missing
