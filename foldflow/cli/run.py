"""``foldflow run <service>``: one service in the foreground, as a container runs it.

Each service's command lives in its own module; add one registration line here per service.
"""

from __future__ import annotations

import typer

from foldflow.cli import gateway, orchestrator, projector, worker

run_app = typer.Typer(help="Run one service in the foreground.", no_args_is_help=True)

run_app.command("worker")(worker.run_worker)
run_app.command("orchestrator")(orchestrator.run_orchestrator)
run_app.command("projector")(projector.run_projector)
run_app.command("gateway")(gateway.run_gateway)
