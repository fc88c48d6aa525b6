"""Whole-definition checks that pydantic cannot make (DAG, references, expressions).

They run on the raw parsed data, so they report their problems even when the schema
check failed too: one :class:`foldflow.definitions.DefinitionError` lists everything.
"""

from __future__ import annotations

from typing import Any

import jsonschema
from pydantic import BaseModel, ConfigDict

from foldflow.expressions import (
    ExpressionError,
    Reference,
    condition_references,
    mapping_references,
    parse_condition,
)

__all__ = ["Problem", "graph_problems"]


class Problem(BaseModel):
    """One thing wrong with a definition: where (dotted path) and what."""

    model_config = ConfigDict(frozen=True)

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path or '<definition>'}: {self.message}"


def _raw_steps(data: dict[str, Any]) -> list[tuple[int, dict[str, Any], str | None]]:
    steps = data.get("steps")
    if not isinstance(steps, list):
        return []
    out = []
    for index, step in enumerate(steps):
        if isinstance(step, dict):
            sid = step.get("id")
            out.append((index, step, sid if isinstance(sid, str) else None))
    return out


def _schema_problems(data: dict[str, Any]) -> list[Problem]:
    schema = data.get("input_schema")
    if not isinstance(schema, dict):
        return []
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        return [Problem(path="input_schema", message=f"not a valid JSON Schema: {exc.message}")]
    return []


def graph_problems(data: dict[str, Any]) -> list[Problem]:
    """Schema, id, dependency, cycle and reference problems of raw definition data."""
    problems: list[Problem] = _schema_problems(data)
    steps = _raw_steps(data)
    ids: dict[str, int] = {}
    for index, _, sid in steps:
        if sid is None:
            continue
        if sid in ids:
            problems.append(
                Problem(path=f"steps[{index}].id", message=f"duplicate step id {sid!r}")
            )
        else:
            ids[sid] = index
    after: dict[str, list[str]] = {}
    for index, step, sid in steps:
        deps = step.get("after", [])
        if isinstance(deps, str):
            deps = [deps]
        if not isinstance(deps, list):
            continue
        for j, dep in enumerate(deps):
            if isinstance(dep, str) and dep not in ids:
                problems.append(
                    Problem(path=f"steps[{index}].after[{j}]", message=f"unknown step {dep!r}")
                )
            elif dep == sid:
                problems.append(
                    Problem(
                        path=f"steps[{index}].after[{j}]", message="a step cannot follow itself"
                    )
                )
        if sid is not None and ids.get(sid) == index:
            after[sid] = [d for d in deps if isinstance(d, str) and d in ids and d != sid]
    problems.extend(_cycle_problems(after, ids))
    ancestors = {sid: _ancestors(sid, after) for sid in after}
    signal_steps = {
        sid: step.get("signal")
        for _, step, sid in steps
        if sid and isinstance(step.get("signal"), str)
    }
    for index, step, sid in steps:
        own = ancestors.get(sid, set()) if sid else set()
        visible = own | ({sid} if sid else set())
        where = f"steps[{index}]"
        problems.extend(_refs_problems(f"{where}.input", step.get("input"), own, ids, signal_steps))
        comp = step.get("compensate")
        if isinstance(comp, dict):
            problems.extend(
                _refs_problems(
                    f"{where}.compensate.input", comp.get("input"), visible, ids, signal_steps
                )
            )
        when = step.get("when")
        if isinstance(when, str):
            try:
                refs = condition_references(parse_condition(when))
            except ExpressionError as exc:
                problems.append(Problem(path=f"{where}.when", message=str(exc)))
            else:
                problems.extend(_check_refs(f"{where}.when", refs, own, ids, signal_steps))
    problems.extend(_refs_problems("output", data.get("output"), set(ids), ids, signal_steps))
    return problems


def _refs_problems(
    path: str, value: Any, visible: set[str], ids: dict[str, int], signals: dict[str, Any]
) -> list[Problem]:
    try:
        refs = mapping_references(value)
    except ExpressionError as exc:
        return [Problem(path=path, message=str(exc))]
    return _check_refs(path, refs, visible, ids, signals)


def _check_refs(
    path: str,
    refs: list[Reference],
    visible: set[str],
    ids: dict[str, int],
    signals: dict[str, Any],
) -> list[Problem]:
    problems = []
    for ref in refs:
        step_id = ref.step_id
        if step_id is not None:
            if step_id not in ids:
                problems.append(Problem(path=path, message=f"{ref}: unknown step {step_id!r}"))
            elif step_id not in visible:
                problems.append(
                    Problem(
                        path=path,
                        message=f"{ref}: step {step_id!r} is not an ancestor (add it to 'after')",
                    )
                )
        name = ref.signal_name
        if name is not None:
            waiting = [s for s, n in signals.items() if n == name]
            if not waiting:
                problems.append(
                    Problem(path=path, message=f"{ref}: no signal step waits for {name!r}")
                )
            elif not any(s in visible for s in waiting):
                problems.append(
                    Problem(
                        path=path,
                        message=f"{ref}: the step waiting for {name!r} is not an ancestor",
                    )
                )
    return problems


def _ancestors(sid: str, after: dict[str, list[str]]) -> set[str]:
    seen: set[str] = set()
    stack = list(after.get(sid, []))
    while stack:
        node = stack.pop()
        if node not in seen:
            seen.add(node)
            stack.extend(after.get(node, []))
    return seen


def _cycle_problems(after: dict[str, list[str]], ids: dict[str, int]) -> list[Problem]:
    """One problem per cycle found by a depth-first search in definition order."""
    problems = []
    color: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        color[node] = 1
        for dep in after.get(node, []):
            if color.get(dep) == 1:
                cycle = [*trail[trail.index(dep) :], dep] if dep in trail else [node, dep]
                problems.append(
                    Problem(
                        path=f"steps[{ids[node]}].after",
                        message="cycle: " + " -> ".join(reversed(cycle)),
                    )
                )
            elif dep not in color:
                visit(dep, [*trail, dep])
        color[node] = 2

    for sid in sorted(after, key=lambda s: ids[s]):
        if sid not in color:
            visit(sid, [sid])
    return problems
