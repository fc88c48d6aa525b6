"""A bench run projects into a database of its own, created and dropped with the run."""

from __future__ import annotations

from pathlib import Path

from projection_support import database_names
from sqlalchemy import make_url

from foldflow.bench.config import BenchConfig
from foldflow.bench.session import Session
from foldflow.projections.db import upgrade
from foldflow.settings import Settings


def test_a_run_gets_a_database_of_its_own_analyzed_and_dropped(stack: Settings,
                                                               tmp_path: Path) -> None:
    run = Session(stack.model_copy(update={"state_dir": tmp_path}), BenchConfig(),
                  progress=lambda _line: None)  # fmt: skip
    try:
        run._own_database()
        assert run.database.startswith("foldflow_" + run.run_id.replace("-", "_"))
        assert run.database in database_names(stack.database_url)
        assert run.settings.database_url != stack.database_url and not run.notes
        upgrade(run.settings)
        run.analyze()
    finally:
        run.close()
    assert run.database not in database_names(stack.database_url)


def test_without_a_database_of_its_own_the_run_says_why_and_uses_the_configured_one(
    stack: Settings, tmp_path: Path
) -> None:
    refused = make_url(stack.database_url).set(username="foldflow_no_such_role")
    settings = stack.model_copy(update={
        "state_dir": tmp_path, "database_url": refused.render_as_string(hide_password=False)})
    run = Session(settings, BenchConfig(), progress=lambda _line: None)
    try:
        run._own_database()
    finally:
        run.close()
    assert run.settings.database_url == settings.database_url
    [note] = run.notes
    assert note.startswith(f"ran in database {make_url(stack.database_url).database}, "
                           "not in one of its own (")
    assert "foldflow_no_such_role" in note and "grant the role CREATEDB" in note
