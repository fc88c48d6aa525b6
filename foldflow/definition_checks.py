"""Whole-definition checks that pydantic cannot make (DAG, references, expressions).

They run on the raw parsed data, so they report their problems even when the schema
check failed too: one :class:`foldflow.definitions.DefinitionError` lists everything.

Every check is linear in the definition's size (no recursion on user data): cycles are
found by an iterative depth-first search, and ancestry ("may step B reference step A?")
is a bitset per step, built once in topological order, so each reference costs one bit
test. ``Definition.from_data`` does not call these checks for a definition past
``MAX_STEPS`` steps (the model check refuses it); past ``MAX_AFTER_EDGES`` edges they
report only that.
"""

from __future__ import annotations

from typing import Any

from foldflow.expressions import (
    ExpressionError,
    Reference,
    condition_references,
    mapping_references,
    parse_condition,
)
from foldflow.input_schema import schema_problems
from foldflow.limits import MAX_AFTER_EDGES
from foldflow.problems import Problem

__all__ = ["Problem", "graph_problems"]

#: Step ids a cycle message names at most.
_CYCLE_SHOWN = 20


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


def _deps(step: dict[str, Any]) -> list[Any]:
    deps = step.get("after", [])
    if isinstance(deps, str):
        return [deps]
    return deps if isinstance(deps, list) else []


def graph_problems(data: dict[str, Any]) -> list[Problem]:
    """Schema, id, dependency, cycle and reference problems of raw definition data."""
    problems: list[Problem] = []
    schema = data.get("input_schema")
    if isinstance(schema, dict):
        problems.extend(schema_problems(schema))
    steps = _raw_steps(data)
    edges = sum(len(_deps(step)) for _, step, _ in steps)
    if edges > MAX_AFTER_EDGES:
        message = f"the steps have {edges} 'after' entries in all, over the limit of "
        return [*problems, Problem(path="steps", message=message + f"{MAX_AFTER_EDGES}")]
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
        deps = _deps(step)
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
    bit = {sid: 1 << position for position, sid in enumerate(after)}
    ancestors = _ancestor_masks(after, bit)
    waiting_for: dict[str, int] = {}  # signal name -> mask of the steps waiting for it
    for _, step, sid in steps:
        name = step.get("signal")
        if sid in bit and isinstance(name, str):
            waiting_for[name] = waiting_for.get(name, 0) | bit[sid]
    scope = _Scope(ids=ids, bit=bit, waiting_for=waiting_for)
    for index, step, sid in steps:
        own = ancestors.get(sid, 0) if sid else 0
        visible = own | bit.get(sid or "", 0)
        where = f"steps[{index}]"
        problems.extend(scope.mapping(f"{where}.input", step.get("input"), own))
        comp = step.get("compensate")
        if isinstance(comp, dict):
            problems.extend(scope.mapping(f"{where}.compensate.input", comp.get("input"), visible))
        when = step.get("when")
        if isinstance(when, str):
            try:
                refs = condition_references(parse_condition(when))
            except ExpressionError as exc:
                problems.append(Problem(path=f"{where}.when", message=str(exc)))
            else:
                problems.extend(scope.refs(f"{where}.when", refs, own))
    everything = (1 << len(bit)) - 1
    problems.extend(scope.mapping("output", data.get("output"), everything))
    return problems


class _Scope:
    """Which references a step may make, given the ancestor mask of what it can see."""

    def __init__(self, *, ids: dict[str, int], bit: dict[str, int], waiting_for: dict[str, int]):
        self.ids = ids
        self.bit = bit
        self.waiting_for = waiting_for

    def mapping(self, path: str, value: Any, visible: int) -> list[Problem]:
        try:
            refs = mapping_references(value)
        except ExpressionError as exc:
            return [Problem(path=path, message=str(exc))]
        return self.refs(path, refs, visible)

    def refs(self, path: str, refs: list[Reference], visible: int) -> list[Problem]:
        problems = []
        for ref in refs:
            step_id = ref.step_id
            if step_id is not None:
                if step_id not in self.ids:
                    problems.append(Problem(path=path, message=f"{ref}: unknown step {step_id!r}"))
                elif not visible & self.bit.get(step_id, 0):
                    problems.append(
                        Problem(
                            path=path,
                            message=f"{ref}: step {step_id!r} is not an ancestor "
                            "(add it to 'after')",
                        )
                    )
            name = ref.signal_name
            if name is not None:
                waiting = self.waiting_for.get(name, 0)
                if not waiting:
                    problems.append(
                        Problem(path=path, message=f"{ref}: no signal step waits for {name!r}")
                    )
                elif not visible & waiting:
                    problems.append(
                        Problem(
                            path=path,
                            message=f"{ref}: the step waiting for {name!r} is not an ancestor",
                        )
                    )
        return problems


def _ancestor_masks(after: dict[str, list[str]], bit: dict[str, int]) -> dict[str, int]:
    """Each step's ancestors as a bitset, built in topological order (Kahn).

    Steps on a cycle (already reported) get the ancestors known when they are reached.
    """
    children: dict[str, list[str]] = {sid: [] for sid in after}
    missing = {sid: len(deps) for sid, deps in after.items()}
    for sid, deps in after.items():
        for dep in deps:
            children[dep].append(sid)
    order = [sid for sid, count in missing.items() if count == 0]
    for sid in order:  # grows while iterating: a breadth-first topological order
        for child in children[sid]:
            missing[child] -= 1
            if missing[child] == 0:
                order.append(child)
    placed = set(order)
    order.extend(sid for sid in after if sid not in placed)
    masks: dict[str, int] = {}
    for sid in order:
        mask = 0
        for dep in after[sid]:
            mask |= masks.get(dep, 0) | bit[dep]
        masks[sid] = mask
    return masks


def _cycle_problems(after: dict[str, list[str]], ids: dict[str, int]) -> list[Problem]:
    """One problem per cycle found by an iterative depth-first search in definition order."""
    problems: list[Problem] = []
    color: dict[str, int] = {}  # 1: on the current path, 2: done
    for root in sorted(after, key=lambda s: ids[s]):
        if len(problems) >= _CYCLE_SHOWN:
            break  # enough to go on; listing every cycle of a dense graph costs too much
        if root in color:
            continue
        path: list[str] = [root]
        position = {root: 0}
        pending = [iter(after.get(root, []))]
        color[root] = 1
        while pending:
            node = path[-1]
            dep = next(pending[-1], None)
            if dep is None:
                color[node] = 2
                del position[node]
                path.pop()
                pending.pop()
            elif color.get(dep) == 1 and len(problems) < _CYCLE_SHOWN:
                cycle = [*path[position[dep] :], dep]
                problems.append(
                    Problem(path=f"steps[{ids[node]}].after", message=_cycle_message(cycle))
                )
            elif dep not in color:
                color[dep] = 1
                position[dep] = len(path)
                path.append(dep)
                pending.append(iter(after.get(dep, [])))
    return problems


def _cycle_message(cycle: list[str]) -> str:
    names = list(reversed(cycle))
    if len(names) > _CYCLE_SHOWN:
        names = [*names[: _CYCLE_SHOWN // 2], "…", *names[-_CYCLE_SHOWN // 2 :]]
    return "cycle: " + " -> ".join(names)
