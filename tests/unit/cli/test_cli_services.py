"""The service list, command resolution, child settings and the `ps` table (no services)."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr
from rich.console import Console

from foldflow import services as svc
from foldflow.cli.introspect import resolve
from foldflow.cli.services import ps_table
from foldflow.settings import Settings


def _settings(tmp_path: Path, **kwargs: object) -> Settings:
    return Settings(state_dir=tmp_path, **kwargs)  # type: ignore[arg-type]


def test_up_runs_the_four_services_on_their_configured_ports(tmp_path: Path) -> None:
    settings = _settings(tmp_path, orchestrator_metrics_port=1, worker_metrics_port=2,
                         projector_metrics_port=3, gateway_port=4)
    specs = {s.name: s for s in svc.services(settings)}
    assert list(specs) == ["orchestrator", "worker", "projector", "gateway"]
    assert [specs[n].port for n in specs] == [1, 2, 3, 4]
    assert specs["gateway"].ready_url == "http://127.0.0.1:4/readyz"
    assert specs["worker"].ready_url == "http://127.0.0.1:2/metrics"
    assert "builtin.fail" in specs["worker"].argv


def test_every_service_command_exists_in_the_cli(tmp_path: Path) -> None:
    missing = [s.argv for s in svc.services(_settings(tmp_path)) if resolve(s.argv) is None]
    assert missing == []


def test_resolve_refuses_unknown_commands_and_options() -> None:
    assert resolve(["topics", "ensure", "--task-type", "x"]) is not None
    assert resolve(["topics", "ensure", "--no-such-option"]) is None
    assert resolve(["no-such-command"]) is None
    assert resolve(["stack"]) is None  # a group is not a command
    assert resolve(["start"]) is None  # missing NAME argument


def test_children_see_the_same_settings(tmp_path: Path) -> None:
    settings = _settings(tmp_path, topic_prefix="p.", gateway_port=18080,
                         jwt_secret=SecretStr("s3cret"), jwt_algorithms=("HS256", "HS512"))
    env = svc.settings_env(settings)
    saved = dict(os.environ)
    try:
        os.environ.update(env)
        child = Settings(_env_file=None)  # type: ignore[call-arg]
    finally:
        os.environ.clear()
        os.environ.update(saved)
    assert child.topic_prefix == "p."
    assert child.gateway_port == 18080
    assert child.jwt_secret is not None and child.jwt_secret.get_secret_value() == "s3cret"
    assert child.jwt_algorithms == ("HS256", "HS512")
    assert child.state_dir == tmp_path.resolve()


def test_each_service_gets_its_name_and_metrics_port(tmp_path: Path) -> None:
    settings = _settings(tmp_path, worker_metrics_port=19102, gateway_port=18080)
    specs = {s.name: s for s in svc.services(settings)}
    worker = svc.service_env(settings, specs["worker"], {"PATH": "/bin"})
    gateway = svc.service_env(settings, specs["gateway"], {})
    assert (worker["FOLDFLOW_SERVICE_NAME"], worker["FOLDFLOW_METRICS_PORT"]) == ("worker", "19102")
    assert worker["PATH"] == "/bin"
    # The gateway serves /metrics on its own port: no separate metrics server.
    assert gateway["FOLDFLOW_METRICS_PORT"] == "0"


def test_a_pid_file_of_another_process_is_not_taken_for_the_service(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    spec = svc.services(settings)[0]
    path = svc.pid_path(settings, spec.name)
    path.parent.mkdir(parents=True)
    path.write_text(f"{os.getpid()}\n")  # alive, but it is pytest, not `foldflow run`
    assert svc.running_pid(settings, spec) is None
    [row] = svc.status(settings, (spec,))
    assert (row.state, row.pid) == ("exited", None)
    assert svc.stop(settings, (spec,), report=lambda _l: None) == []
    assert not path.exists()


def test_ps_table_shows_state_pid_port_and_log(tmp_path: Path) -> None:
    rows = [
        svc.ServiceStatus("orchestrator", 4242, "ready", 3725.0, 9101, tmp_path / "o.log"),
        svc.ServiceStatus("gateway", None, "stopped", None, 8080, tmp_path / "g.log"),
    ]
    console = Console(record=True, width=200)
    console.print(ps_table(rows))
    text = console.export_text()
    assert "orchestrator" in text and "4242" in text and "ready" in text and "1h02m" in text
    assert "gateway" in text and "stopped" in text and "8080" in text
    assert str(tmp_path / "o.log") in text


def test_a_port_taken_by_someone_else_is_refused_before_starting(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = _settings(tmp_path, orchestrator_metrics_port=port)
        spec = svc.services(settings)[0]
        assert not svc.port_free(port)
        with pytest.raises(svc.ServiceError, match="FOLDFLOW_ORCHESTRATOR_METRICS_PORT"):
            svc.start(settings, spec)
    assert not svc.pid_path(settings, spec.name).exists()
    assert svc.port_free(port)


def test_up_and_down_of_one_state_dir_exclude_each_other(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    probe = (
        "import fcntl, sys; f = open(sys.argv[1], 'a')\n"
        "try:\n    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
        "except BlockingIOError:\n    sys.exit(3)\n"
    )
    lock = str(tmp_path / "pids" / ".lock")
    with svc.exclusive(settings):
        held = subprocess.run([sys.executable, "-c", probe, lock], check=False)
    free = subprocess.run([sys.executable, "-c", probe, lock], check=False)
    assert (held.returncode, free.returncode) == (3, 0)


def _fake_service(settings: Settings, spec: svc.ServiceSpec, *, ignore_term: bool) -> int:
    """A process whose command line reads like `foldflow run <spec>` (no real service)."""
    code = (
        "import signal, sys, time\n"
        + ("signal.signal(signal.SIGTERM, signal.SIG_IGN)\n" if ignore_term else "")
        + "print('up', flush=True)\n"
        + "time.sleep(120)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, "-m", svc.CLI_MODULE, *spec.argv],
                            stdout=subprocess.PIPE, start_new_session=True)
    assert proc.stdout is not None and proc.stdout.readline() == b"up\n"  # handler installed
    svc.pid_path(settings, spec.name).parent.mkdir(parents=True, exist_ok=True)
    svc.pid_path(settings, spec.name).write_text(f"{proc.pid}\n")
    return proc.pid


def test_down_terminates_and_kills_what_ignores_sigterm(tmp_path: Path) -> None:
    settings = _settings(tmp_path, service_stop_grace=0.5, orchestrator_metrics_port=1,
                         worker_metrics_port=1)
    orchestrator, worker = svc.services(settings)[:2]
    polite = _fake_service(settings, orchestrator, ignore_term=False)
    stubborn = _fake_service(settings, worker, ignore_term=True)
    rows = {r.name: r for r in svc.status(settings, (orchestrator, worker))}
    assert (rows["orchestrator"].pid, rows["orchestrator"].state) == (polite, "starting")
    assert (rows["worker"].pid, rows["worker"].state) == (stubborn, "starting")

    lines: list[str] = []
    assert svc.stop(settings, (orchestrator, worker), report=lines.append) == [
        "orchestrator", "worker"]
    assert f"orchestrator: stopped (pid {polite})" in lines
    assert any(line.startswith(f"worker: killed (pid {stubborn}") for line in lines)
    assert svc.running_pid(settings, orchestrator) is None
    assert svc.running_pid(settings, worker) is None
    assert [r.state for r in svc.status(settings, (orchestrator, worker))] == ["stopped"] * 2


def test_up_fails_with_the_log_tail_of_a_service_that_dies_or_never_gets_ready(
    tmp_path: Path,
) -> None:
    settings = _settings(tmp_path, service_ready_timeout=1.0, orchestrator_metrics_port=1)
    spec = svc.services(settings)[0]
    log = svc.log_path(settings, spec.name)
    log.parent.mkdir(parents=True)
    log.write_text("starting\nTraceback: boom, no broker\n")
    dead = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    dead.wait()
    with pytest.raises(svc.ServiceError, match="exited before it was ready") as died:
        svc.wait_ready(settings, spec, dead.pid)
    assert "Traceback: boom, no broker" in str(died.value)

    pid = _fake_service(settings, spec, ignore_term=False)
    with pytest.raises(svc.ServiceError, match=re.escape("was not ready at http://127.0.0.1:1/metrics")):
        svc.wait_ready(settings, spec, pid)
    svc.stop(settings, (spec,), report=lambda _l: None)


def test_each_service_gets_an_instance_id_stable_per_state_dir(tmp_path: Path) -> None:
    """The orchestrator's transactional.id comes from its instance id: the same on every
    ``up`` (a restart fences its predecessor), different in another checkout."""
    here = _settings(tmp_path / "a")
    there = _settings(tmp_path / "b")
    spec = {s.name: s for s in svc.services(here)}["orchestrator"]
    first = svc.service_env(here, spec, {})["FOLDFLOW_INSTANCE_ID"]
    assert first == svc.service_env(_settings(tmp_path / "a"), spec, {})["FOLDFLOW_INSTANCE_ID"]
    assert first.startswith("orchestrator-")
    assert first != svc.service_env(there, spec, {})["FOLDFLOW_INSTANCE_ID"]
    worker = {s.name: s for s in svc.services(here)}["worker"]
    assert svc.service_env(here, worker, {})["FOLDFLOW_INSTANCE_ID"] != first
    chosen = _settings(tmp_path / "a", instance_id="orchestrator-0")
    chosen_id = svc.service_env(chosen, spec, {})["FOLDFLOW_INSTANCE_ID"]
    assert chosen_id == "orchestrator-0.orchestrator"
