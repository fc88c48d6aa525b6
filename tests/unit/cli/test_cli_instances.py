"""Several instances of a service: names, ports, instance ids, `ps`/`down` coverage and
`scale` (fake processes whose command lines read like `foldflow run <svc>`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from foldflow import services as svc
from foldflow.cli.services import parse_counts
from foldflow.settings import Settings


def _settings(tmp_path: Path, **kwargs: object) -> Settings:
    return Settings(state_dir=tmp_path, **kwargs)  # type: ignore[arg-type]


def test_each_instance_has_its_own_name_port_and_log(tmp_path: Path) -> None:
    settings = _settings(tmp_path, orchestrators=3, workers=2, projectors=2, gateways=2,
                         orchestrator_metrics_port=9101, worker_metrics_port=9102,
                         projector_metrics_port=9103, gateway_port=8080)
    specs = {s.name: s for s in svc.services(settings)}
    assert list(specs) == [
        "orchestrator", "orchestrator-2", "orchestrator-3", "worker", "worker-2",
        "projector", "projector-2", "gateway", "gateway-2",
    ]
    ports = [s.port for s in specs.values()]
    assert ports == [9101, 9111, 9121, 9102, 9112, 9103, 9113, 8080, 8081]
    assert len(set(ports)) == len(ports)
    assert len({svc.log_path(settings, n) for n in specs}) == len(specs)
    assert len({svc.pid_path(settings, n) for n in specs}) == len(specs)
    assert specs["gateway-2"].ready_url == "http://127.0.0.1:8081/readyz"
    assert specs["worker-2"].argv == specs["worker"].argv


def test_each_instance_gets_a_stable_distinct_instance_id(tmp_path: Path) -> None:
    settings = _settings(tmp_path, orchestrators=3, gateways=2, gateway_port=18080)
    envs = {s.name: svc.service_env(settings, s, {}) for s in svc.services(settings)}
    ids = [e["FOLDFLOW_INSTANCE_ID"] for e in envs.values()]
    assert len(set(ids)) == len(ids)
    assert envs["orchestrator-2"]["FOLDFLOW_INSTANCE_ID"].startswith("orchestrator-2-")
    assert envs["orchestrator-2"]["FOLDFLOW_SERVICE_NAME"] == "orchestrator"
    assert envs["orchestrator-3"]["FOLDFLOW_METRICS_PORT"] == str(settings.orchestrator_metrics_port
                                                                  + 20)
    assert envs["gateway-2"]["FOLDFLOW_GATEWAY_PORT"] == "18081"
    assert envs["gateway-2"]["FOLDFLOW_METRICS_PORT"] == "0"
    # the same slot gets the same id on every start
    again = svc.service_env(settings, svc.instance(settings, "orchestrator", 2), {})
    assert again["FOLDFLOW_INSTANCE_ID"] == envs["orchestrator-2"]["FOLDFLOW_INSTANCE_ID"]
    # a configured instance id (one per machine) prefixes them, so machines never collide
    host = _settings(tmp_path, instance_id="host-a", orchestrators=2)
    spec = svc.instance(host, "orchestrator", 2)
    assert svc.service_env(host, spec, {})["FOLDFLOW_INSTANCE_ID"] == "host-a.orchestrator-2"


def test_instance_counts_are_bounded(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="workers"):
        _settings(tmp_path, workers=0)
    with pytest.raises(ValueError, match="gateways"):
        _settings(tmp_path, gateways=10)
    with pytest.raises(ValueError, match="no service"):
        svc.instance(_settings(tmp_path), "scheduler", 1)


@pytest.mark.parametrize(
    ("pairs", "expected"),
    [
        (["worker=3"], {"worker": 3}),
        (["workers=0", "Gateway=2"], {"worker": 0, "gateway": 2}),
        (["orchestrator=1", "projector=9"], {"orchestrator": 1, "projector": 9}),
    ],
)
def test_scale_arguments(pairs: list[str], expected: dict[str, int]) -> None:
    assert parse_counts(pairs) == expected


@pytest.mark.parametrize("pair", ["worker", "worker=", "worker=-1", "worker=10", "db=2",
                                  "worker=two"])
def test_bad_scale_arguments_are_refused_by_name(pair: str) -> None:
    with pytest.raises(ValueError, match=repr(pair).replace("[", r"\[")):
        parse_counts([pair])


def _fake(settings: Settings, spec: svc.ServiceSpec) -> subprocess.Popen[bytes]:
    """A process whose command line reads like `foldflow run <spec>` (no real service)."""
    code = "import sys, time\nprint('up', flush=True)\ntime.sleep(120)\n"
    proc = subprocess.Popen([sys.executable, "-c", code, "-m", svc.CLI_MODULE, *spec.argv],
                            stdout=subprocess.PIPE, start_new_session=True)
    assert proc.stdout is not None and proc.stdout.readline() == b"up\n"
    svc.pid_path(settings, spec.name).parent.mkdir(parents=True, exist_ok=True)
    svc.pid_path(settings, spec.name).write_text(f"{proc.pid}\n")
    return proc


def test_ps_and_down_see_instances_beyond_the_settings_and_scale_stops_them(
    tmp_path: Path,
) -> None:
    settings = _settings(tmp_path, service_stop_grace=5.0, worker_metrics_port=1)
    workers = [svc.instance(settings, "worker", k) for k in (1, 2, 3)]
    procs = [_fake(settings, spec) for spec in workers]
    try:
        # settings ask for one worker; the two `scale` started are still listed
        known = [s.name for s in svc.known(settings, ("worker",))]
        assert known == ["worker", "worker-2", "worker-3"]
        assert [r.state for r in svc.status(settings, svc.known(settings, ("worker",)))] == [
            "starting"] * 3

        lines: list[str] = []
        svc.scale(settings, "worker", 1, report=lines.append)
        assert f"worker: already running (pid {procs[0].pid})" in lines
        assert f"worker-2: stopped (pid {procs[1].pid})" in lines
        assert f"worker-3: stopped (pid {procs[2].pid})" in lines
        assert procs[1].wait(timeout=10) is not None and procs[2].wait(timeout=10) is not None
        assert procs[0].poll() is None
        assert [s.name for s in svc.known(settings, ("worker",))] == ["worker"]

        svc.scale(settings, "worker", 0, report=lines.append)
        assert procs[0].wait(timeout=10) is not None
        assert svc.known(settings, ("worker",))[0].name == "worker"  # settings still ask for one
        assert svc.status(settings, svc.known(settings, ("worker",)))[0].state == "stopped"
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_a_killed_instance_shows_as_exited_until_restarted(tmp_path: Path) -> None:
    settings = _settings(tmp_path, orchestrators=2, orchestrator_metrics_port=1)
    spec = svc.instance(settings, "orchestrator", 2)
    proc = _fake(settings, spec)
    proc.kill()
    proc.wait()
    [row] = svc.status(settings, (spec,))
    assert (row.name, row.state, row.pid) == ("orchestrator-2", "exited", None)
