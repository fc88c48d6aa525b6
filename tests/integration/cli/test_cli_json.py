"""``--json`` of the CLI's listing commands on the real broker and database: stdout is one
JSON document (parsed here), messages go to stderr, exit codes as documented."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from foldflow.producers import Publisher
from foldflow.settings import Settings
from foldflow.topics import BUILTIN_TASK_TYPES, Topology

REPO = Path(__file__).resolve().parents[3]


def foldflow(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    """``foldflow ARGS`` as a process, with these settings."""
    env = {**os.environ, "COLUMNS": "200",
           "FOLDFLOW_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
           "FOLDFLOW_DATABASE_URL": settings.database_url,
           "FOLDFLOW_TOPIC_PREFIX": settings.topic_prefix}
    return subprocess.run([sys.executable, "-m", "foldflow.cli.main", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=180, check=False)


def parsed(proc: subprocess.CompletedProcess[str], code: int = 0) -> Any:
    assert proc.returncode == code, proc.stdout + proc.stderr
    return json.loads(proc.stdout)


def test_topics_ensure_and_list(topics: Settings) -> None:
    ensured = parsed(foldflow(topics, "topics", "ensure", "--json", "--task-type", "acme.x"))
    names = {t["name"]: t for t in ensured}
    topology = Topology.of(topics)
    assert {topology.commands, topology.events, topology.task("acme.x")} <= names.keys()
    assert names[topology.task("acme.x")]["outcome"] == "created"
    assert names[topology.events]["outcome"] == "ok"
    assert names[topology.definitions]["cleanup_policy"] == "compact"

    listed = parsed(foldflow(topics, "topics", "list", "--json"))
    assert listed["missing"] == []
    by_name = {t["name"]: t for t in listed["topics"]}
    assert by_name[topology.events]["retention_ms"] == -1
    assert by_name[topology.commands]["retention_ms"] == 7 * 86_400_000
    assert by_name[topology.commands]["partitions"] == topics.partitions
    assert by_name[topology.definitions]["role"] == "definitions"
    assert by_name[topology.task("acme.x")]["role"] == "tasks"
    assert {topology.task(t) for t in BUILTIN_TASK_TYPES} <= by_name.keys()


def test_topics_list_names_the_missing_ones(stack: Settings, unique_name: Any) -> None:
    empty = stack.model_copy(update={"topic_prefix": unique_name("none") + "."})
    listed = parsed(foldflow(empty, "topics", "list", "--json"))
    assert listed["topics"] == []
    assert Topology.of(empty).events in listed["missing"]


def test_stack_status(stack: Settings) -> None:
    parts = parsed(foldflow(stack, "stack", "status", "--json"))
    assert [p["name"] for p in parts] == ["Kafka", "PostgreSQL"]
    assert all(p["running"] for p in parts)


def test_dlq_list_and_replay(topics: Settings) -> None:
    topology = Topology.of(topics)
    with Publisher(topics, source="test") as publisher:
        publisher.send_to_dlq(topology.results, b"wf-json-1", b"\x00junk", [("a", b"1")],
                              ValueError("bad bytes"), partition=3, offset=9)
    (letter,) = parsed(foldflow(topics, "dlq", "list", "--json", "--since", "10m"))
    assert letter["origin_topic"] == topology.results
    assert (letter["origin_partition"], letter["origin_offset"]) == (3, 9)
    assert letter["reason_kind"] == "ValueError" and "bad bytes" in letter["reason"]
    assert letter["key"] == "wf-json-1"
    assert base64.b64decode(letter["value_base64"]) == b"\x00junk"
    assert letter["headers"]["a"] == "1"
    assert parsed(foldflow(topics, "dlq", "list", "--json", "--since", "2026-01-01T00:00")) \
        == [letter]
    bad = foldflow(topics, "dlq", "list", "--json", "--since", "yesterday")
    assert bad.returncode == 2 and bad.stdout == ""

    (sent,) = parsed(foldflow(topics, "dlq", "replay", "--json"))
    assert sent["origin_topic"] == topology.results


def test_db_current(stack: Settings) -> None:
    assert foldflow(stack, "db", "upgrade").returncode == 0
    found = parsed(foldflow(stack, "db", "current", "--json"))
    assert found["up_to_date"] is True
    assert found["current"] == found["heads"] and found["heads"]


def test_definitions_validate(stack: Settings, tmp_path: Path) -> None:
    good = REPO / "examples" / "approval.yaml"
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nsteps:\n  - {id: a, task: builtin.echo, after: [nowhere]}\n"
                   "  - {id: b, task: builtin.echo, timeout: soon}\n")
    checks = parsed(foldflow(stack, "definitions", "validate", "--json", str(good), str(bad)),
                    code=1)
    assert checks[0] == {"file": str(good), "valid": True, "name": "approval", "version": 1,
                         "steps": checks[0]["steps"], "problems": []}
    assert checks[1]["valid"] is False and checks[1]["name"] is None
    paths = {p["path"]: p["message"] for p in checks[1]["problems"]}
    assert "nowhere" in paths["steps[0].after[0]"]
    assert "not a duration" in paths["steps[1].timeout"]

    human = foldflow(stack, "definitions", "validate", str(good), str(bad))
    assert human.returncode == 1
    assert "steps[0].after[0]" in human.stdout and f"ok {good}" in " ".join(human.stdout.split())
