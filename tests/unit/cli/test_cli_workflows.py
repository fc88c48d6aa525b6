"""The Kafka CLI commands' checks that happen before anything is published."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from foldflow.cli.main import app

runner = CliRunner()


def test_every_problem_of_every_bad_file_is_printed_and_nothing_is_published(
    tmp_path: Path,
) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("name: fine\nsteps:\n  - {id: a, task: builtin.echo}\n")
    cycle = tmp_path / "cycle.yaml"
    cycle.write_text(
        "name: loop\nsteps:\n"
        "  - {id: a, task: builtin.echo, after: [b]}\n"
        "  - {id: b, task: builtin.echo, after: [a]}\n"
    )
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("name: 'bad name'\nsteps:\n  - {id: a, task: builtin.echo, retries: 3}\n")
    # Kafka is never contacted: a bootstrap that cannot answer proves it.
    result = runner.invoke(app, ["definitions", "register", str(good), str(cycle), str(unknown)],
                           env={"FOLDFLOW_KAFKA_BOOTSTRAP": "127.0.0.1:1", "COLUMNS": "300"})
    assert result.exit_code == 1
    out = result.output
    assert f"{cycle}:" in out and "cycle" in out
    assert f"{unknown}: 2 problem(s)" in out
    assert "steps[0].retries" in out and "name:" in out
    assert "registered" not in out
    assert str(good) not in out


def test_bad_json_is_refused_before_publishing(tmp_path: Path) -> None:
    env = {"FOLDFLOW_KAFKA_BOOTSTRAP": "127.0.0.1:1", "COLUMNS": "300"}
    start = runner.invoke(app, ["start", "flaky-retry", "--input", "{not json"], env=env)
    assert start.exit_code == 2 and "--input is not valid JSON" in start.output
    signal = runner.invoke(app, ["signal", "wf-1", "approve", "--data", "@" + str(tmp_path / "x")],
                           env=env)
    assert signal.exit_code == 2 and "--data is not valid JSON" in signal.output
