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


def test_values_no_downstream_can_store_are_refused_with_their_paths(tmp_path: Path) -> None:
    env = {"FOLDFLOW_KAFKA_BOOTSTRAP": "127.0.0.1:1", "COLUMNS": "300"}
    start = runner.invoke(
        app, ["start", "x", "--input", '{"a": NaN, "b": ["\\u0000"], "c": -Infinity}'], env=env
    )
    assert start.exit_code == 2, start.output
    assert "--input.a: NaN" in start.output and "--input.b[0]: contains the NUL" in start.output
    assert "--input.c: -Infinity" in start.output
    big = tmp_path / "big.json"
    big.write_text('{"blob": "' + "x" * 300_000 + '"}')
    signal = runner.invoke(app, ["signal", "wf-1", "go", "--data", "@" + str(big)], env=env)
    assert signal.exit_code == 2 and "over the 256 KiB limit" in signal.output
    deep = runner.invoke(app, ["signal", "wf-1", "go", "--data", "[" * 300 + "]" * 300], env=env)
    assert deep.exit_code == 2 and "deeper than 64 levels" in deep.output


def test_a_definition_past_its_bounds_is_refused_before_publishing(tmp_path: Path) -> None:
    sleepy = tmp_path / "sleepy.yaml"
    sleepy.write_text("name: s\nsteps:\n  - {id: nap, sleep: 99999999999999d}\n")
    child = tmp_path / "child.yaml"
    child.write_text(f"name: c\nsteps:\n  - {{id: k, workflow: other, version: {2**40}}}\n")
    result = runner.invoke(app, ["definitions", "register", str(sleepy), str(child)],
                           env={"FOLDFLOW_KAFKA_BOOTSTRAP": "127.0.0.1:1", "COLUMNS": "300"})
    assert result.exit_code == 1
    assert "steps[0].sleep: a duration is at most 365d" in result.output
    assert "steps[0].version: Input should be less than or equal to 2147483647" in result.output
