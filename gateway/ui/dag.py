"""A workflow definition's DAG, laid out in layers for an SVG drawing (pure code).

Steps go left to right by depth (a step's layer is one more than its deepest
dependency's); inside a layer, a few barycentre sweeps order steps near their neighbours
so edges cross less. The result is plain geometry the template draws.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Edge", "Layout", "Node", "StepInfo", "layout", "steps_of"]

NODE_W = 168
NODE_H = 58
GAP_X = 56
GAP_Y = 18
MARGIN = 12
_SWEEPS = 4


@dataclass(frozen=True)
class StepInfo:
    """What the drawing needs of one step of a definition."""

    id: str
    after: tuple[str, ...]
    kind: str
    detail: str  # task type, sleep duration, signal name or child definition
    compensation: str | None  # the compensation task, if any


@dataclass(frozen=True)
class Node:
    """One step, placed: top-left corner, size, and what it shows."""

    step: StepInfo
    x: int
    y: int
    layer: int
    status: str
    attempts: int
    compensation_status: str | None
    w: int = NODE_W
    h: int = NODE_H


@dataclass(frozen=True)
class Edge:
    """A dependency, as an SVG path from the end of ``source`` to the start of ``target``."""

    source: str
    target: str
    path: str


@dataclass(frozen=True)
class Layout:
    """Every node and edge, and the drawing's size."""

    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]
    width: int
    height: int


def _detail(step: Mapping[str, Any]) -> tuple[str, str]:
    for field, kind in (("task", "task"), ("sleep", "sleep"), ("signal", "signal"),
                        ("workflow", "child")):  # fmt: skip
        if step.get(field) is not None:
            return str(step.get("kind") or kind), str(step[field])
    return str(step.get("kind") or "task"), ""


def steps_of(definition: Mapping[str, Any] | None) -> list[StepInfo]:
    """The steps of a definition document (as registered), tolerating odd shapes."""
    raw = definition.get("steps") if isinstance(definition, Mapping) else None
    steps: list[StepInfo] = []
    for item in raw if isinstance(raw, list) else []:
        if not isinstance(item, Mapping) or not isinstance(item.get("id"), str):
            continue
        after = item.get("after")
        kind, detail = _detail(item)
        compensate = item.get("compensate")
        steps.append(StepInfo(
            id=item["id"],
            after=tuple(a for a in after if isinstance(a, str)) if isinstance(after, list) else (),
            kind=kind,
            detail=detail,
            compensation=str(compensate.get("task")) if isinstance(compensate, Mapping) else None,
        ))  # fmt: skip
    return steps


def _layers(steps: Sequence[StepInfo]) -> dict[str, int]:
    known = {s.id for s in steps}
    deps = {s.id: [a for a in s.after if a in known and a != s.id] for s in steps}
    layer: dict[str, int] = {}
    visiting: set[str] = set()

    def depth(step_id: str) -> int:
        if step_id in layer:
            return layer[step_id]
        if step_id in visiting:  # a cycle (a valid definition has none): cut it here
            return 0
        visiting.add(step_id)
        value = 1 + max((depth(d) for d in deps[step_id]), default=-1)
        visiting.discard(step_id)
        layer[step_id] = value
        return value

    for s in steps:
        depth(s.id)
    return layer


def _dummy(source: str, target: str, layer: int) -> str:
    """The placeholder a long edge holds in a layer it crosses (NULs: no step id has one)."""
    return f"\0{source}\0{target}\0{layer}"


def _graph(
    steps: Sequence[StepInfo], layer: Mapping[str, int]
) -> tuple[list[list[str]], dict[str, list[str]], dict[str, list[str]]]:
    """Rows of step ids per layer, where an edge that skips layers holds a placeholder in
    each one it crosses (so ordering keeps it clear of the steps there), and the
    neighbours of each id above and below."""
    count = max(layer.values(), default=-1) + 1
    rows: list[list[str]] = [[] for _ in range(count)]
    preds: dict[str, list[str]] = {s.id: [] for s in steps}
    succs: dict[str, list[str]] = {s.id: [] for s in steps}
    for s in steps:  # definition order first: stable and what the author wrote
        rows[layer[s.id]].append(s.id)
    for s in steps:
        for dep in dict.fromkeys(a for a in s.after if a in layer and a != s.id):
            chain = [dep] + [_dummy(dep, s.id, i) for i in range(layer[dep] + 1, layer[s.id])]
            for i, dummy in enumerate(chain[1:], start=layer[dep] + 1):
                rows[i].append(dummy)
                preds[dummy], succs[dummy] = [], []
            chain.append(s.id)
            for upper, lower in itertools.pairwise(chain):
                succs[upper].append(lower)
                preds[lower].append(upper)
    return rows, preds, succs


def _order(
    rows: list[list[str]], preds: Mapping[str, list[str]], succs: Mapping[str, list[str]]
) -> list[list[str]]:
    count = len(rows)

    def sweep(order: range, neighbours: Mapping[str, list[str]]) -> None:
        for i in order:
            position = {sid: p for row in rows for p, sid in enumerate(row)}
            current = {sid: p for p, sid in enumerate(rows[i])}

            def centre(sid: str, current: dict[str, int] = current,
                       position: dict[str, int] = position) -> float:
                near = [position[n] for n in neighbours[sid]]
                return sum(near) / len(near) if near else float(current[sid])

            rows[i].sort(key=lambda sid: (centre(sid), current[sid]))

    for _ in range(_SWEEPS):
        sweep(range(1, count), preds)
        sweep(range(count - 2, -1, -1), succs)
    return rows


def layout(
    steps: Sequence[StepInfo],
    states: Mapping[str, tuple[str, int, str | None]] | None = None,
) -> Layout:
    """Place ``steps``; ``states`` maps a step id to (status, attempts, compensation
    status) — a step without one is ``pending``."""
    states = states or {}
    if not steps:
        return Layout(nodes=(), edges=(), width=0, height=0)
    layer = _layers(steps)
    rows = _order(*_graph(steps, layer))
    tallest = max(len(row) for row in rows)
    slots: dict[str, tuple[int, int]] = {}  # top-left corner of every id, placeholders too
    for i, row in enumerate(rows):
        offset = (tallest - len(row)) * (NODE_H + GAP_Y) // 2
        for j, sid in enumerate(row):
            slots[sid] = (MARGIN + i * (NODE_W + GAP_X), MARGIN + offset + j * (NODE_H + GAP_Y))
    placed: dict[str, Node] = {}
    for s in steps:
        status, attempts, compensation = states.get(s.id, ("pending", 0, None))
        x, y = slots[s.id]
        placed[s.id] = Node(step=s, layer=layer[s.id], status=status, attempts=attempts,
                            compensation_status=compensation, x=x, y=y)  # fmt: skip
    edges = []
    for s in steps:
        for dep in dict.fromkeys(a for a in s.after if a in placed and a != s.id):
            via = [slots[_dummy(dep, s.id, i)] for i in range(layer[dep] + 1, layer[s.id])]
            edges.append(_edge(placed[dep], placed[s.id], via))
    width = 2 * MARGIN + len(rows) * NODE_W + (len(rows) - 1) * GAP_X
    height = 2 * MARGIN + tallest * NODE_H + (tallest - 1) * GAP_Y
    return Layout(nodes=tuple(placed[s.id] for s in steps), edges=tuple(edges),
                  width=width, height=height)  # fmt: skip


def _edge(source: Node, target: Node, via: Sequence[tuple[int, int]]) -> Edge:
    """A curve from the end of ``source`` to the start of ``target``, straight across the
    slots ``via`` it holds in the layers between."""
    x, y = source.x + source.w, source.y + source.h // 2
    path = f"M{x},{y}"
    for slot_x, slot_y in via:
        y2 = slot_y + NODE_H // 2
        bend = max(20, (slot_x - x) // 2)
        path += f" C{x + bend},{y} {slot_x - bend},{y2} {slot_x},{y2} L{slot_x + NODE_W},{y2}"
        x, y = slot_x + NODE_W, y2
    x2, y2 = target.x, target.y + target.h // 2
    bend = max(20, (x2 - x) // 2)
    path += f" C{x + bend},{y} {x2 - bend},{y2} {x2 - 2},{y2}"
    return Edge(source=source.step.id, target=target.step.id, path=path)
