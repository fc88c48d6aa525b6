"""The built wheel on its own: installed into fresh virtual environments and run from a
directory outside any checkout, with nothing of the source tree on the path.

The wheel is built from an sdist (as a release does: its version then comes from the
sdist's metadata, not from git). The worker-only install gets the base dependencies; the
server install gets ``foldflow[server]``. Both install from PyPI (pinned by
constraints.txt), so the first run downloads them.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path

import httpx
import pytest
from confluent_kafka import Consumer
from projection_support import database_names, scratch_database

from foldflow.admin import ensure_topics
from foldflow.kafka import kafka_config
from foldflow.producers import Publisher
from foldflow.schemas.codec import decode
from foldflow.schemas.messages import Envelope, ExecuteTask, TaskSucceeded, dump_json, task_id
from foldflow.settings import Settings
from foldflow.topics import Topology

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("fastapi", "starlette", "uvicorn", "sqlalchemy", "alembic", "psycopg", "faust", "jwt")
INSTALL_TIMEOUT = 900


def _free_port(*, pair: bool = False) -> int:
    """A free loopback port (with ``pair``, the next one is free too: Kafka's controller)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if not pair:
            return port
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 1))
                return port
            except OSError:
                continue
    raise RuntimeError("no free port pair")


def _clean_env(**extra: str) -> dict[str, str]:
    """The environment without FOLDFLOW_* settings or a Python path of the checkout."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("FOLDFLOW_") and k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return {**env, "COLUMNS": "200", "PYTHONDONTWRITEBYTECODE": "1", **extra}


def _run(argv: list[str], *, cwd: Path, env: Mapping[str, str], timeout: float = 300,
         ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, env=dict(env), capture_output=True, text=True,
                          timeout=timeout, check=False)


def _ok(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, \
        f"{proc.args} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built from the sdist of a snapshot of this checkout."""
    out = tmp_path_factory.mktemp("dist")
    source = _snapshot(tmp_path_factory.mktemp("source"))
    _ok(_run([sys.executable, "-m", "build", "--outdir", str(out), str(source)], cwd=source,
             env=os.environ, timeout=INSTALL_TIMEOUT))
    (found,) = out.glob("foldflow-*.whl")
    return found


def _snapshot(where: Path) -> Path:
    """A copy of the checkout's files (tracked, and new ones git does not ignore) and its
    git metadata, for the sdist's version and file list. The build walks and copies the
    package folders; in the checkout itself, another test's files appearing and vanishing
    there meanwhile would fail it."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=REPO, capture_output=True, check=True).stdout
    for name in filter(None, listed.decode().split("\0")):
        (where / name).parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):  # deleted since: left out, as by git
            shutil.copy2(REPO / name, where / name, follow_symlinks=False)
    shutil.copytree(REPO / ".git", where / ".git", symlinks=True)
    return where


def _version_of(wheel: Path) -> str:
    return wheel.name.split("-")[1]


def _venv(where: Path, *requirements: str) -> Path:
    """A fresh venv at ``where`` with ``requirements`` (pinned by constraints.txt); its bin."""
    _ok(_run([sys.executable, "-m", "venv", str(where)], cwd=where.parent, env=_clean_env()))
    _ok(_run([str(where / "bin" / "python"), "-m", "pip", "install", "-q",
              "--disable-pip-version-check", "-c", str(REPO / "constraints.txt"), *requirements],
             cwd=where.parent, env=_clean_env(), timeout=INSTALL_TIMEOUT))
    return where / "bin"


@pytest.fixture(scope="module")
def worker_bin(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv with the wheel alone (the base install of a task handler author)."""
    return _venv(tmp_path_factory.mktemp("venvs") / "worker", str(wheel))


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A working directory outside any checkout (no .env, no examples/, no deploy/)."""
    work = tmp_path / "elsewhere"
    work.mkdir()
    assert not any(p for p in (work, *work.parents) if (p / ".git").exists())
    return work


IMPORT_CHECK = f"""
import importlib.util, json, sys
HEAVY = {HEAVY!r}
import foldflow, foldflow.cli.main, foldflow.producers, foldflow.schemas.codec, foldflow.workers
from foldflow.workers import NonRetryableError, RetryableError, TaskContext, task
from foldflow.producers import Publisher
from foldflow.resilience import circuit_breaker, retry, with_timeout
print(json.dumps({{
    "foldflow": foldflow.__file__,
    "installed": sorted(m for m in HEAVY if importlib.util.find_spec(m)),
    "imported": sorted({{m.split(".")[0] for m in sys.modules}} & set(HEAVY)),
}}))
"""


def test_a_worker_only_install_runs_the_cli_and_the_worker_sdk(
    worker_bin: Path, wheel: Path, outside: Path
) -> None:
    env = _clean_env()
    foldflow = str(worker_bin / "foldflow")
    assert _ok(_run([foldflow, "--version"], cwd=outside, env=env)).strip() == \
        f"foldflow {_version_of(wheel)}"
    assert "definitions" in _ok(_run([foldflow, "--help"], cwd=outside, env=env))
    assert "--types" in _ok(_run([foldflow, "run", "worker", "--help"], cwd=outside, env=env))

    found = json.loads(_ok(_run([str(worker_bin / "python"), "-c", IMPORT_CHECK], cwd=outside,
                                env=env)))
    assert found["foldflow"].startswith(str(worker_bin.parent)), found  # not the checkout's
    assert found["installed"] == [], found  # no server library came with the base install
    assert found["imported"] == [], found

    # the examples ship inside the package; validating needs no server either
    examples = Path(found["foldflow"]).parent / "_files" / "examples"
    checked = json.loads(_ok(_run([foldflow, "definitions", "validate", "--json",
                                   *map(str, sorted(examples.glob("*.yaml")))],
                                  cwd=outside, env=env)))
    assert len(checked) == 4 and all(c["valid"] for c in checked), checked

    # a command that needs the server says how to get it
    status = _run([foldflow, "status", "some-id"], cwd=outside, env=env)
    assert status.returncode == 2, status.stdout + status.stderr
    assert "pip install 'foldflow[server]'" in status.stderr


def test_a_worker_only_install_serves_tasks(
    worker_bin: Path, outside: Path, stack: Settings
) -> None:
    """``foldflow run worker`` from the base install takes a task and publishes its result."""
    prefix = f"wheel-{uuid.uuid4().hex[:8]}."
    settings = stack.model_copy(update={"topic_prefix": prefix})
    ensure_topics(settings, task_types=("builtin.echo",))
    topology = Topology.of(settings)
    port = _free_port()
    env = _clean_env(FOLDFLOW_KAFKA_BOOTSTRAP=stack.kafka_bootstrap, FOLDFLOW_TOPIC_PREFIX=prefix,
                     FOLDFLOW_METRICS_PORT=str(port))
    log = (outside / "worker.log").open("w")
    worker = subprocess.Popen([str(worker_bin / "foldflow"), "run", "worker", "--types",
                               "builtin.echo"], cwd=outside, env=env, stdout=log,
                              stderr=subprocess.STDOUT)
    consumer = Consumer(kafka_config(stack, {
                         "group.id": f"t-{uuid.uuid4().hex}", "auto.offset.reset": "earliest"}))
    try:
        wf = f"wf-{uuid.uuid4().hex[:8]}"
        command = Envelope(str(uuid.uuid4()), int(time.time() * 1000), "test", "c", wf,
                           ExecuteTask(task_id=task_id(wf, "s1", 1), task_type="builtin.echo",
                                       step_id="s1", attempt=1, kind="step",
                                       input_json=dump_json({"hello": "wheel"}),
                                       timeout_ms=30_000))
        with Publisher(settings, source="test") as publisher:
            publisher.publish(topology.task("builtin.echo"), command)
        consumer.subscribe([topology.results])
        result = None
        deadline = time.monotonic() + 90
        while result is None and time.monotonic() < deadline and worker.poll() is None:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                result = decode(msg.value() or b"")
        assert result is not None, (outside / "worker.log").read_text()[-3000:]
        assert isinstance(result.payload, TaskSucceeded)
        assert json.loads(result.payload.output_json) == {"hello": "wheel"}
        assert httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).status_code == 200
    finally:
        consumer.close()
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=60) == 0, (outside / "worker.log").read_text()[-3000:]
        log.close()


#: What our wheel installed, by top-level name in site-packages (its RECORD; the console
#: script, outside site-packages, left out).
INSTALLED_NAMES = """
import importlib.metadata, json
files = importlib.metadata.files("foldflow") or []
print(json.dumps(sorted({f.parts[0] for f in files if f.parts[0] != ".."})))
"""


def test_the_wheel_works_beside_a_colliding_schemas_package(
    wheel: Path, tmp_path: Path, outside: Path
) -> None:
    """PyPI's ``schemas`` (an unrelated package) installed after ours breaks nothing: the
    wheel puts nothing but ``foldflow`` (and its dist-info) into site-packages."""
    bin_ = _venv(tmp_path / "venv", str(wheel))
    env = _clean_env()
    names = json.loads(_ok(_run([str(bin_ / "python"), "-c", INSTALLED_NAMES], cwd=outside,
                                env=env)))
    assert names == ["foldflow", f"foldflow-{_version_of(wheel)}.dist-info"], names
    _ok(_run([str(bin_ / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
              "schemas"], cwd=outside, env=_clean_env(), timeout=INSTALL_TIMEOUT))
    assert _ok(_run([str(bin_ / "foldflow"), "--version"], cwd=outside, env=env)).strip() == \
        f"foldflow {_version_of(wheel)}"
    _ok(_run([str(bin_ / "foldflow"), "--help"], cwd=outside, env=env))
    _ok(_run([str(bin_ / "python"), "-c", IMPORT_CHECK], cwd=outside, env=env))


@pytest.fixture
def server_bin(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv with ``foldflow[server]`` from the wheel."""
    return _venv(tmp_path_factory.mktemp("venvs") / "server", f"{wheel}[server]")


@pytest.fixture
def two_databases(stack: Settings) -> Iterator[tuple[str, str]]:
    """A scratch database for ``up`` and ``demo``, another for ``bench`` (it wants its own)."""
    with scratch_database(stack.database_url) as one, scratch_database(stack.database_url) as two:
        yield one, two


def test_the_wheel_alone_starts_a_fresh_stack_runs_the_demo_and_the_bench(
    server_bin: Path, outside: Path, two_databases: tuple[str, str]
) -> None:
    """From the wheel alone: ``up`` starts a new broker (its jars resolved through the
    shipped pom.xml into an empty cache, its config from the shipped template), the demo
    registers the shipped examples, ``bench --duration 5`` runs; ``down --stack`` stops it."""
    up_db, bench_db = two_databases
    kafka_port = _free_port(pair=True)
    env = _clean_env(
        FOLDFLOW_KAFKA_BOOTSTRAP=f"127.0.0.1:{kafka_port}",
        FOLDFLOW_CACHE_DIR=str(outside / "cache"),
        FOLDFLOW_DATABASE_URL=up_db,
        FOLDFLOW_GATEWAY_PORT=str(_free_port()),
        FOLDFLOW_ORCHESTRATOR_METRICS_PORT=str(_free_port()),
        FOLDFLOW_WORKER_METRICS_PORT=str(_free_port()),
        FOLDFLOW_PROJECTOR_METRICS_PORT=str(_free_port()),
        FOLDFLOW_SERVICE_STOP_GRACE="15",
    )
    foldflow = str(server_bin / "foldflow")
    try:
        up = _ok(_run([foldflow, "up"], cwd=outside, env=env, timeout=900))
        assert re.search(r"Started Kafka \(pid \d+\)", up), up
        assert (outside / "cache" / "kafka-data" / "meta.properties").exists()
        ps = json.loads(_ok(_run([foldflow, "ps", "--json"], cwd=outside, env=env)))
        assert {s["name"]: s["state"] for s in ps} == dict.fromkeys(
            ("orchestrator", "worker", "projector", "gateway"), "ready")

        demo = _ok(_run([foldflow, "demo", "--no-up", "--batch", "5", "--timeout", "4m"],
                        cwd=outside, env=env, timeout=600))
        assert "5/5 as expected" in demo and "5/5 agree" in demo, demo

        bench = _run([foldflow, "bench", "--duration", "5", "--latency-duration", "5",
                      "--concurrency", "20", "--baseline-messages", "2000",
                      "--alone-workflows", "2000", "--warm-up-load", "2", "--json"],
                     cwd=outside, env={**env, "FOLDFLOW_DATABASE_URL": bench_db}, timeout=900)
        report = json.loads(_ok(bench))
        assert report["figures"], report
        # it projected into a database of its own, dropped at the end
        own = "foldflow_" + report["run_id"].replace("-", "_")
        assert re.search(rf"database\s+{own}_[0-9a-f]{{8}}", bench.stderr), bench.stderr
        assert not [n for n in report["notes"] if n.startswith("ran in database")], report
        assert not [n for n in database_names(bench_db) if n.startswith(own)]
        assert report["config"]["warm_up_load"] == 2.0, report["config"]
        judged = {f["key"] for f in report["figures"] if f.get("target") is not None}
        assert {f"{service}_cpu_ms_per_workflow" for service in
                ("orchestrator", "worker", "projector")} <= judged, judged  # fmt: skip
    finally:
        down = _run([foldflow, "down", "--stack"], cwd=outside, env=env, timeout=300)
    assert down.returncode == 0, down.stdout + down.stderr
    after = _run([foldflow, "stack", "status", "--json"], cwd=outside, env=env)
    parts = {p["name"]: p for p in json.loads(after.stdout)}
    assert after.returncode == 1 and not parts["Kafka"]["running"], after.stdout  # stopped
