"""The projector's bulk statements against real PostgreSQL: a batch's COPY and staged
upserts store what one-row statements store (JSON ``null`` and SQL NULL as SQLAlchemy
binds them), in a rebuild's schema too, and a value PostgreSQL refuses in them is a
refusal, as from any statement."""

from __future__ import annotations

import json
from collections.abc import Sequence

import pytest
from projection_support import SCENARIOS, Script, interleave, records, reset_tables
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

from foldflow.projections import rebuild
from foldflow.projections import store as store_module
from foldflow.projections.dberrors import is_refusal
from foldflow.projections.store import Record, write_batch
from foldflow.schemas import messages as m

TP = ("wf.events", 0)
#: Per table, its rows as text, with each JSON column's kind (SQL NULL is None, JSON null
#: is 'null'): a decoded JSON null and a SQL NULL are both None in Python.
DUMPS = {
    "workflow_instances": "SELECT t::text, jsonb_typeof(input), jsonb_typeof(output) "
                          "FROM {schema}workflow_instances t ORDER BY id",
    "step_executions": "SELECT t::text, jsonb_typeof(input), jsonb_typeof(output) "
                       "FROM {schema}step_executions t ORDER BY workflow_id, step_id",
    "workflow_events": "SELECT t::text, jsonb_typeof(payload), jsonb_typeof(altered) "
                       "FROM {schema}workflow_events t ORDER BY workflow_id, sequence",
}


#: Values both JSON writers must store alike: integers past 64 bits (up to the digits the
#: projector parses), floats at their edges, text beyond ASCII.
TEXT = "\u00fc \u2028 \U0001f600 \"q\" \\"
NUMBERS = json.dumps({"big": 2**64, "huge": 10**4000, "negative": -(2**63) - 1,
                      "floats": [0.1, 1e300, -0.0, 5e-324], "text": TEXT})


def workflows() -> list[Script]:
    """More workflows than a staged upsert needs, with JSON nulls among their values."""
    scripts = [make(f"wf-{name}-{n}") for n in range(5) for name, make in SCENARIOS.items()]
    nulls = Script("wf-nulls")  # its input and output are JSON null
    nulls.add(m.WorkflowStarted("order", 1, m.dump_json({"name": "order"}), "null", "default"))
    nulls.add(m.WorkflowCompleted("null"))
    numbers = Script("wf-numbers")
    numbers.add(m.WorkflowStarted("order", 1, m.dump_json({"name": "order"}), NUMBERS,
                                  "default"))  # fmt: skip
    numbers.add(m.WorkflowCompleted(NUMBERS))
    return [*scripts, nulls, numbers]


def interleaved(scripts: Sequence[Script]) -> list[Record]:
    return records(interleave(scripts), TP)


def dump(conn: Connection, schema: str = "") -> dict[str, list[tuple[object, ...]]]:
    return {table: [tuple(r) for r in conn.execute(text(query.format(schema=schema)))]
            for table, query in DUMPS.items()}


def written(engine: Engine, batch: list[Record], *, careful: bool) -> dict[str, list[tuple]]:
    reset_tables(engine)
    with engine.begin() as conn:
        write_batch(conn, projection="statements", records=batch, expected={TP: None},
                    careful=careful)
    with engine.connect() as conn:
        return dump(conn)


def test_a_batch_stores_the_rows_that_one_row_statements_store(engine: Engine) -> None:
    scripts = workflows()
    assert len(scripts) >= store_module._STAGE_FROM_ROWS  # the upserts go through staging
    batch = interleaved(scripts)

    bulk = written(engine, batch, careful=False)
    one_by_one = written(engine, batch, careful=True)  # an upsert of one row per event

    assert bulk == one_by_one
    instances = {row[0].split(",")[0].strip("("): row[1:] for row in bulk["workflow_instances"]}
    assert instances["wf-nulls"] == ("null", "null")  # JSON null, not SQL NULL
    numbers = next(row[0] for row in bulk["workflow_instances"] if "wf-numbers" in row[0])
    assert str(10**4000) in numbers and str(2**64) in numbers  # exact: not floats
    assert {kind for _, _, kind in bulk["workflow_events"]} == {None}  # altered: SQL NULL
    assert len(bulk["workflow_events"]) == len(batch)


def test_a_second_batch_of_one_transaction_upserts_only_its_own_rows(engine: Engine) -> None:
    scripts = workflows()
    batch = interleaved(scripts)
    half = len(batch) // 2
    reset_tables(engine)
    with engine.begin() as conn:  # the staging table is emptied after each upsert
        write_batch(conn, projection="statements", records=batch[:half], expected={TP: None})
        write_batch(conn, projection="statements", records=batch[half:],
                    expected={TP: half})
    with engine.connect() as conn:
        in_two = dump(conn)

    assert in_two == written(engine, batch, careful=False)


def test_a_rebuild_schema_gets_the_rows_and_the_live_tables_none(engine: Engine) -> None:
    batch = interleaved(workflows())
    live = written(engine, batch, careful=False)
    reset_tables(engine)
    rebuild.prepare(engine)
    try:
        with engine.begin() as conn:
            write_batch(rebuild._in_rebuild(conn), projection="statements", records=batch,
                        expected={TP: None})
        with engine.connect() as conn:
            assert dump(conn, f"{rebuild.REBUILD_SCHEMA}.") == live
            assert dump(conn) == {table: [] for table in DUMPS}
    finally:
        with engine.begin() as conn:
            conn.execute(text(f"DROP SCHEMA IF EXISTS {rebuild.REBUILD_SCHEMA} CASCADE"))


def test_a_value_postgresql_refuses_in_a_staged_upsert_is_a_refusal(engine: Engine) -> None:
    bad = Script("wf-nul").start()
    tid = m.task_id(bad.key, "call", 1)
    bad.add(m.StepScheduled("call", 1, tid, "builtin.echo", "{}", 5000))
    bad.add(m.StepAttemptFailed("call", 1, tid, "boom \x00", False))  # NUL: no text takes it
    batch = interleaved([*workflows(), bad])
    reset_tables(engine)

    with pytest.raises(DBAPIError) as caught, engine.begin() as conn:
        write_batch(conn, projection="statements", records=batch, expected={TP: None})

    assert is_refusal(caught.value)
    with engine.connect() as conn:
        assert dump(conn) == {table: [] for table in DUMPS}
