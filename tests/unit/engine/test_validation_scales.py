"""Validation work grows linearly with the input (it was quadratic: 16 KB of ``${`` took
0.5 s, a 6,000-step definition 5 s and 1 GB).

No absolute time bound (a shared, noisy machine): each check measures the CPU time of the
same work at size n and 8n in the same run (best of a few tries; CPU time, not wall time,
so being preempted on a loaded machine does not count) and asserts the ratio stays far
from the 64 a quadratic algorithm gives. The graph checks are called directly, past MAX_STEPS,
to show the algorithm, not the bound, is what keeps them cheap.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

import pytest

from foldflow import jsonsafe
from foldflow.definition_checks import graph_problems
from foldflow.definitions import Definition, DefinitionError
from foldflow.expressions import ExpressionError, parse_condition, parse_template
from foldflow.limits import MAX_STEPS

pytestmark = pytest.mark.unit

SCALE = 8
#: Linear work scales by ~8 (plus fixed costs, which only lower it); quadratic by 64.
LINEAR_AT_MOST = 24


def _best_time(work: Callable[[], object], *, tries: int = 3) -> float:
    best = float("inf")
    for _ in range(tries):
        started = time.thread_time()
        work()
        best = min(best, time.thread_time() - started)
    return best


def _ratio(make: Callable[[int], Callable[[], object]], small: int) -> float:
    small_work, large_work = make(small), make(small * SCALE)
    small_work()  # warm caches (regexes, pydantic)
    return _best_time(large_work) / _best_time(small_work)


def _raises(error: type[Exception], call: Callable[[], object]) -> Callable[[], object]:
    def run() -> None:
        with contextlib.suppress(error):
            call()

    return run


def _chain(count: int, *, reverse: bool) -> dict[str, Any]:
    """Each step waits for its neighbour and reads the farthest ancestor's output."""
    steps: list[dict[str, Any]] = [{"id": f"s{i}", "task": "t"} for i in range(count)]
    for i, step in enumerate(steps):
        dep = i + 1 if reverse else i - 1
        if 0 <= dep < count:
            step["after"] = [f"s{dep}"]
            root = count - 1 if reverse else 0
            step["input"] = {"v": f"${{steps.s{root}.output.v}}", "w": "${input.w}"}
    return {"name": "d", "steps": steps}


@pytest.mark.parametrize("reverse", [False, True], ids=["chain", "reverse-chain"])
def test_graph_checks_scale_linearly_in_steps(reverse: bool) -> None:
    def make(n: int) -> Callable[[], object]:
        data = _chain(n, reverse=reverse)
        return lambda: graph_problems(data)

    assert _chain(50, reverse=reverse) and graph_problems(_chain(50, reverse=reverse)) == []
    assert _ratio(make, 1000) < LINEAR_AT_MOST


def test_signal_references_scale_linearly() -> None:
    def make(n: int) -> Callable[[], object]:
        steps: list[dict[str, Any]] = [{"id": f"w{i}", "signal": "go"} for i in range(n)]
        steps += [{"id": f"r{i}", "task": "t", "after": [f"w{i}"],
                   "input": {"v": "${signals.go.v}"}} for i in range(n)]  # fmt: skip
        data = {"name": "d", "steps": steps}
        return lambda: graph_problems(data)

    assert _ratio(make, 500) < LINEAR_AT_MOST


def test_a_definition_scales_linearly_up_to_the_step_bound() -> None:
    def make(n: int) -> Callable[[], object]:
        data = _chain(n, reverse=True)
        return lambda: Definition.from_data(data)

    assert _ratio(make, MAX_STEPS // SCALE) < LINEAR_AT_MOST


@pytest.mark.parametrize(
    "piece", ["${", "${input.a}", "x${input.a}y"], ids=["unclosed", "holes", "text"]
)
def test_templates_scale_linearly(piece: str) -> None:
    def make(n: int) -> Callable[[], object]:
        text = piece * (n // len(piece))
        return _raises(ExpressionError, lambda: parse_template(text))

    assert _ratio(make, 2048) < LINEAR_AT_MOST


@pytest.mark.parametrize(
    "piece", ["input.a and ", "  ", "input.a == 'x' or "], ids=["and", "spaces", "or"]
)
def test_conditions_scale_linearly(piece: str) -> None:
    def make(n: int) -> Callable[[], object]:
        text = piece * (n // len(piece)) + "true"
        return _raises(ExpressionError, lambda: parse_condition(text))

    assert _ratio(make, 2048) < LINEAR_AT_MOST


def test_the_json_safety_walk_scales_linearly() -> None:
    def make(n: int) -> Callable[[], object]:
        value = [{"k": "v", "n": [1, 2.5, None], "s": "é" * 10} for _ in range(n)]
        return lambda: jsonsafe.problems(value)

    assert _ratio(make, 2000) < LINEAR_AT_MOST


def test_refusing_a_definition_with_many_problems_scales_linearly() -> None:
    def make(n: int) -> Callable[[], object]:
        steps = [{"id": "dup", "task": "t", "after": ["nope"], "bad": 1} for _ in range(n)]
        data = {"name": "d", "steps": steps}
        return _raises(DefinitionError, lambda: Definition.from_data(data))

    assert _ratio(make, MAX_STEPS // SCALE) < LINEAR_AT_MOST
