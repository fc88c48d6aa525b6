"""Which workflow a CLI argument names: a tenant's own id, or a workflow key.

Each tenant has its own workflow ids (the default tenant's id is its key; another
tenant's key is ``@<tenant>/<id>``, as logs and ``wf.*`` records show it). ``--tenant``
says whose id an argument is; an argument that is a key names its tenant itself.
"""

from __future__ import annotations

import typer
from rich.console import Console

from foldflow.schemas.messages import DEFAULT_TENANT, TENANT_MARK, split_workflow_key, workflow_key

__all__ = ["WorkflowTarget", "workflow_target"]

_err = Console(stderr=True)

WorkflowTarget = tuple[str, str, str]  # (tenant, the tenant's own id, key)


def workflow_target(workflow_id: str, tenant: str | None) -> WorkflowTarget:
    """``(tenant, id, key)`` of the workflow an argument names; exits 2 if none can."""
    try:
        if workflow_id.startswith(TENANT_MARK):
            owner, own = split_workflow_key(workflow_id)
            if tenant is not None and tenant != owner:
                raise ValueError(f"{workflow_id} is a workflow of tenant {owner!r}, not {tenant!r}")
            return owner, own, workflow_id
        tenant = tenant or DEFAULT_TENANT
        return tenant, workflow_id, workflow_key(tenant, workflow_id)
    except ValueError as exc:
        _err.print(f"[red]not a workflow:[/red] {exc}", highlight=False)
        raise typer.Exit(2) from exc
