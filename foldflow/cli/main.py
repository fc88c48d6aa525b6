"""The ``foldflow`` command: a thin list of sub-command registrations.

Each sub-command lives in its own module of this package; add one line here per module.
Modules import what only the server needs (FastAPI, SQLAlchemy, …) inside their commands,
so ``foldflow --help`` and ``foldflow run worker`` work on a worker-only install.
"""

from __future__ import annotations

import sys

import typer
from rich.markup import escape

from foldflow.cli import (
    bench,
    db,
    definitions,
    demo,
    dlq,
    gateway,
    keys,
    output,
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
    epilog=output.EXIT_CODES,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _version(show: bool) -> None:
    if show:
        from foldflow import __version__

        typer.echo(f"foldflow {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """Foldflow: workflows as Avro events on Apache Kafka."""


app.add_typer(stack.app, name="stack")
app.add_typer(topics.app, name="topics")
app.add_typer(run.run_app, name="run")
services.register(app)
app.add_typer(definitions.app, name="definitions")
workflows.register(app)
app.add_typer(dlq.app, name="dlq")
app.command("demo", epilog="Exit codes: 0 every workflow ended as expected and the gateway "
                           "agrees; 1 otherwise.")(demo.demo)
app.add_typer(db.app, name="db")
app.add_typer(keys.app, name="keys")
app.add_typer(gateway.app, name="gateway")
projections.register(app)
app.command("bench", epilog="Exit codes: 0 the run finished (targets met or not: see the "
                            "verdicts); 1 it failed; 2 bad options; 130 interrupted.")(bench.bench)

#: Modules only ``pip install 'foldflow[server]'`` brings; a command that needs one says so.
SERVER_MODULES = frozenset({
    "fastapi", "starlette", "uvicorn", "sqlalchemy", "alembic", "psycopg", "limits", "jwt",
})


def main() -> None:
    """The ``foldflow`` console script: the app, and a clear word when an extra is missing."""
    try:
        app()
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in SERVER_MODULES:
            raise
        output.err.print(
            f"[red]this command needs the server extras[/red] (no module {exc.name!r}): "
            + escape("pip install 'foldflow[server]'"), highlight=False,
        )
        sys.exit(output.USAGE)


if __name__ == "__main__":
    main()
