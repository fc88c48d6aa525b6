"""The console's definition pages: the list, each version's DAG and source, and the diff
between two versions (difflib, on the YAML form)."""

from __future__ import annotations

import difflib
from typing import Annotated, Any

import yaml
from fastapi import APIRouter, Query
from starlette.responses import Response

from foldflow.gateway.errors import ProblemError
from foldflow.gateway.schemas import DefinitionPublic
from foldflow.gateway.ui import dag
from foldflow.gateway.ui.access import UiRoute, Viewer, ViewerDep
from foldflow.gateway.ui.render import html

__all__ = ["diff_lines", "router", "source_of"]

router = APIRouter(prefix="/ui", route_class=UiRoute, include_in_schema=False)
Version = Annotated[int | None, Query(ge=1, le=2**31 - 1)]


def source_of(definition: dict[str, Any]) -> str:
    """A definition as YAML, keys in the order the document has them."""
    return yaml.safe_dump(definition, sort_keys=False, allow_unicode=True, width=100)


def diff_lines(old: str, new: str, *, old_name: str, new_name: str) -> list[tuple[str, str]]:
    """A unified diff as ``(kind, line)``: kind is ``add``, ``del``, ``hunk`` or ``same``."""
    lines = []
    for line in difflib.unified_diff(old.splitlines(), new.splitlines(), old_name, new_name,
                                     lineterm="", n=3):  # fmt: skip
        if line.startswith(("+++", "---")):
            kind = "file"
        elif line.startswith("@@"):
            kind = "hunk"
        elif line.startswith("+"):
            kind = "add"
        elif line.startswith("-"):
            kind = "del"
        else:
            kind = "same"
        lines.append((kind, line))
    return lines


async def _versions(viewer: Viewer, name: str) -> list[DefinitionPublic]:
    versions = await viewer.ctx.reads.list_definitions(viewer.tenant, name=name)
    if not versions:
        raise ProblemError(404, f"no definition {name}", kind="not-found")
    return versions


def _pick(versions: list[DefinitionPublic], version: int | None) -> DefinitionPublic:
    if version is None:
        return versions[-1]
    for found in versions:
        if found.version == version:
            return found
    raise ProblemError(404, f"no definition {versions[0].name} version {version}",
                       kind="not-found")  # fmt: skip


@router.get("/definitions", response_class=Response)
async def definitions_page(viewer: ViewerDep) -> Response:
    """Every definition of the tenant, with its versions."""
    by_name: dict[str, list[DefinitionPublic]] = {}
    for item in await viewer.ctx.reads.list_definitions(viewer.tenant):
        by_name.setdefault(item.name, []).append(item)
    return html("definitions.html", {"viewer": viewer, "by_name": by_name, "nav": "definitions"})


@router.get("/definitions/{name}", response_class=Response)
async def definition_page(viewer: ViewerDep, name: str, version: Version = None) -> Response:
    """One version (default: the latest): its DAG, its source, links to the others."""
    versions = await _versions(viewer, name)
    shown = _pick(versions, version)
    others = [v.version for v in versions if v.version != shown.version]
    return html("definition.html", {
        "viewer": viewer, "nav": "definitions", "definition": shown,
        "versions": [v.version for v in versions], "others": others,
        "layout": dag.layout(dag.steps_of(shown.definition)),
        "source": source_of(shown.definition),
    })  # fmt: skip


@router.get("/definitions/{name}/diff", response_class=Response)
async def definition_diff(
    viewer: ViewerDep, name: str, a: Annotated[int, Query(ge=1, le=2**31 - 1)],
    b: Annotated[int, Query(ge=1, le=2**31 - 1)],
) -> Response:  # fmt: skip
    """What changed from version ``a`` to version ``b``."""
    versions = await _versions(viewer, name)
    old, new = _pick(versions, a), _pick(versions, b)
    lines = diff_lines(source_of(old.definition), source_of(new.definition),
                       old_name=f"{name} v{a}", new_name=f"{name} v{b}")  # fmt: skip
    return html("definition_diff.html", {
        "viewer": viewer, "nav": "definitions", "name": name, "a": a, "b": b, "lines": lines,
        "versions": [v.version for v in versions],
    })  # fmt: skip
