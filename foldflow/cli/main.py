"""The ``foldflow`` command: a thin list of sub-command registrations (DESIGN §12).

Each sub-command lives in its own module of this package; add one line here per module.
"""

from __future__ import annotations

import typer

from foldflow.cli import (
    bench,
    db,
    demo,
    dlq,
    gateway,
    keys,
    projections,
    run,
    services,
    stack,
    topics,
    workflows,
)

app = typer.Typer(
    name="foldflow",
    help="Foldflow: workflows as Avro events on Apache Kafka.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

app.add_typer(stack.app, name="stack")
app.add_typer(topics.app, name="topics")
app.add_typer(run.run_app, name="run")
services.register(app)
workflows.register(app)
app.add_typer(dlq.app, name="dlq")
app.command("demo")(demo.demo)
app.add_typer(db.app, name="db")
app.add_typer(keys.app, name="keys")
app.add_typer(gateway.app, name="gateway")
projections.register(app)
app.command("bench")(bench.bench)


if __name__ == "__main__":
    app()
