"""Workflow definitions: the validated model, loaded from YAML or JSON.

Shared by the CLI, the gateway, the orchestrator and the projector, so it lives in the
kernel. ``Definition.load`` refuses a bad definition with one :class:`DefinitionError`
listing every problem with its path (schema problems from pydantic plus graph checks:
duplicate ids, unknown step references, references to steps that are not ancestors,
cycles, bad expressions) and every bound of :mod:`foldflow.limits` (steps, sizes,
durations, versions; values no downstream can store). Validation is linear in the
definition's size. ``canonical_json`` is the stable form that travels in
``DefinitionRegistered`` and ``WorkflowStarted``; ``from_json`` reads it back.
The language is documented in docs/definitions.md, the bounds in docs/limits.md.
"""

from __future__ import annotations

import json
import math
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    model_validator,
)

from foldflow import jsonsafe
from foldflow.definition_checks import Problem, graph_problems
from foldflow.durations import parse_duration_ms
from foldflow.limits import (
    MAX_ATTEMPTS,
    MAX_DEFINITION_BYTES,
    MAX_DEFINITION_STRING,
    MAX_DEFINITION_VALUES,
    MAX_DESCRIPTION_LENGTH,
    MAX_DURATION_MS,
    MAX_EXPRESSION_LENGTH,
    MAX_MULTIPLIER,
    MAX_NAME_LENGTH,
    MAX_PROBLEMS,
    MAX_STEP_ID_LENGTH,
    MAX_STEPS,
    MAX_VERSION,
    human_bytes,
)
from foldflow.schemas.messages import dump_json

__all__ = [
    "DEFAULT_ATTEMPT_TIMEOUT_MS",
    "Compensation",
    "Definition",
    "DefinitionError",
    "Problem",
    "RetryPolicy",
    "Step",
    "StepKind",
    "parse_duration",
]

DEFAULT_ATTEMPT_TIMEOUT_MS = 30_000
_ID_RE = r"^[A-Za-z_][A-Za-z0-9_-]*$"
_NAME_RE = r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$"
#: A task type names a Kafka topic (``wf.tasks.<type>``): only the characters Kafka allows.
_TASK_RE = r"^[A-Za-z0-9._-]+$"


def parse_duration(value: Any) -> int:
    """A duration in ms: ``"500ms"``, ``"5s"``, ``"2m"``, ``"1h"``, ``"1d"``, ``"1h30m"`` or
    a number of seconds (the one syntax of :mod:`foldflow.durations`).

    At most ``MAX_DURATION_MS`` (365 days): a timer's due time, now + duration, must fit
    an Avro long.
    """
    return parse_duration_ms(value, maximum_ms=MAX_DURATION_MS)


#: A duration, held in ms, written back as ``"<n>ms"`` so the canonical form round-trips.
Duration = Annotated[
    int, BeforeValidator(parse_duration), PlainSerializer(lambda ms: f"{ms}ms", return_type=str)
]

StepKind = Literal["task", "sleep", "signal", "child"]


def _check_when(value: Any) -> Any:
    if value is not None and not isinstance(value, str | bool):
        raise ValueError('a condition is a string (e.g. "input.x > 1") or a boolean')
    if isinstance(value, str) and len(value) > MAX_EXPRESSION_LENGTH:
        raise ValueError(f"a condition is at most {MAX_EXPRESSION_LENGTH} characters")
    return value


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RetryPolicy(_Model):
    """How often and how fast a failed attempt is retried (backoff = initial·multiplier^n)."""

    max_attempts: int = Field(default=3, ge=1, le=MAX_ATTEMPTS)
    initial_backoff: Duration = 1000
    max_backoff: Duration = 60_000
    multiplier: float = Field(default=2.0, ge=1.0, le=MAX_MULTIPLIER)
    jitter: float = Field(default=0.2, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _check_bounds(self) -> RetryPolicy:
        if self.max_backoff < self.initial_backoff:
            raise ValueError("max_backoff is shorter than initial_backoff")
        return self

    def backoff_ms(self, failed_attempt: int, fraction: float) -> int:
        """The delay before the attempt after ``failed_attempt`` (1-based); fraction ∈ [0,1)."""
        try:
            growth = self.multiplier ** (failed_attempt - 1)
        except OverflowError:  # 100.0 ** 999: far past any max_backoff
            growth = math.inf
        base = min(self.max_backoff, self.initial_backoff * growth)
        spread = 1.0 - self.jitter + 2.0 * self.jitter * fraction
        return max(0, min(self.max_backoff, round(base * spread)))


class Compensation(_Model):
    """The task that undoes a completed step (saga)."""

    task: str = Field(min_length=1, max_length=MAX_NAME_LENGTH, pattern=_TASK_RE)
    input: dict[str, Any] = Field(default_factory=dict)
    timeout: Duration | None = None


class Step(_Model):
    """One node of the workflow DAG; ``kind`` is inferred from task/sleep/signal/workflow."""

    id: str = Field(pattern=_ID_RE, max_length=MAX_STEP_ID_LENGTH)
    kind: StepKind = "task"
    task: str | None = Field(
        default=None, min_length=1, max_length=MAX_NAME_LENGTH, pattern=_TASK_RE
    )
    sleep: Duration | None = None
    signal: str | None = Field(default=None, max_length=MAX_NAME_LENGTH, pattern=_ID_RE)
    workflow: str | None = Field(
        default=None, min_length=1, max_length=MAX_NAME_LENGTH, pattern=_NAME_RE
    )
    version: int | None = Field(default=None, ge=1, le=MAX_VERSION)
    input: dict[str, Any] = Field(default_factory=dict)
    after: list[str] = Field(default_factory=list)
    when: Annotated[str | bool | None, BeforeValidator(_check_when)] = None
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    timeout: Duration | None = None
    compensate: Compensation | None = None

    @model_validator(mode="before")
    @classmethod
    def _infer_kind(cls, data: Any) -> Any:
        if isinstance(data, dict) and "kind" not in data:
            for field, kind in (("sleep", "sleep"), ("signal", "signal"), ("workflow", "child")):
                if field in data:
                    return {**data, "kind": kind}
        return data

    @model_validator(mode="after")
    def _check_kind(self) -> Step:
        required = {"task": "task", "sleep": "sleep", "signal": "signal", "child": "workflow"}
        needed = required[self.kind]
        if getattr(self, needed) is None:
            raise ValueError(f"a {self.kind} step needs '{needed}'")
        for field in required.values():
            if field != needed and getattr(self, field) is not None:
                raise ValueError(f"a {self.kind} step cannot have '{field}'")
        if self.version is not None and self.kind != "child":
            raise ValueError("'version' belongs to child steps")
        if self.kind == "sleep" and self.timeout is not None:
            raise ValueError("a sleep step has no 'timeout'")
        return self

    @property
    def attempt_timeout_ms(self) -> int:
        """The per-attempt timeout of a task step (default 30 s)."""
        return self.timeout if self.timeout is not None else DEFAULT_ATTEMPT_TIMEOUT_MS


class DefinitionError(ValueError):
    """A definition was refused; ``problems`` lists every problem found."""

    def __init__(self, problems: list[Problem]) -> None:
        if len(problems) > MAX_PROBLEMS:
            more = Problem(path="", message=f"... and {len(problems) - MAX_PROBLEMS} more")
            problems = [*problems[:MAX_PROBLEMS], more]
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"invalid workflow definition ({len(problems)} problem(s)):\n{lines}")


class Definition(_Model):
    """A workflow definition: a DAG of steps plus input schema, timeout and output."""

    name: str = Field(pattern=_NAME_RE, max_length=MAX_NAME_LENGTH)
    version: int = Field(default=1, ge=1, le=MAX_VERSION)
    description: str | None = Field(default=None, max_length=MAX_DESCRIPTION_LENGTH)
    input_schema: dict[str, Any] | None = None
    timeout: Duration | None = None
    steps: list[Step] = Field(min_length=1, max_length=MAX_STEPS)
    output: Any = None

    # --- loading ------------------------------------------------------------------------

    @classmethod
    def load(cls, source: str | Path) -> Definition:
        """Load from a YAML/JSON file path or text; raises :class:`DefinitionError`."""
        text = source
        if isinstance(source, Path) or _looks_like_path(source):
            try:
                text = Path(source).read_text(encoding="utf-8")
            except OSError as exc:
                raise DefinitionError([Problem(path="", message=str(exc))]) from exc
        try:
            data = yaml.safe_load(str(text))
        except yaml.YAMLError as exc:
            raise DefinitionError([Problem(path="", message=f"not YAML/JSON: {exc}")]) from exc
        except (ValueError, RecursionError) as exc:  # e.g. an integer of 5,000 digits
            message = f"not loadable: {str(exc) or type(exc).__name__}"
            raise DefinitionError([Problem(path="", message=message)]) from exc
        return cls.from_data(data)

    @classmethod
    def from_json(cls, text: str) -> Definition:
        """Read a definition back from its JSON (e.g. :meth:`canonical_json`)."""
        return _from_json_cached(text)

    @classmethod
    def from_data(cls, data: Any) -> Definition:
        """Validate parsed data; raises :class:`DefinitionError` with every problem."""
        if not isinstance(data, dict):
            raise DefinitionError([Problem(path="", message="a definition is a mapping")])
        # Values no downstream can store, and sizes past the bounds, first: the checks
        # below assume a document of bounded size and depth.
        unsafe = jsonsafe.problems(
            data, max_string=MAX_DEFINITION_STRING, max_values=MAX_DEFINITION_VALUES
        )
        if unsafe:
            raise DefinitionError(unsafe)
        problems: list[Problem] = []
        model: Definition | None = None
        try:
            model = cls.model_validate(data)
        except ValidationError as exc:
            problems.extend(_pydantic_problems(exc))
        steps = data.get("steps")
        if not isinstance(steps, list) or len(steps) <= MAX_STEPS:  # else: reported above
            known = set(problems)
            problems.extend(p for p in graph_problems(data) if p not in known)
        if problems or model is None:
            raise DefinitionError(problems)
        size = jsonsafe.utf8_size(model.canonical_json())
        if size > MAX_DEFINITION_BYTES:
            message = (
                f"the definition is {size} bytes as canonical JSON (defaults spelled out), "
                f"over the {human_bytes(MAX_DEFINITION_BYTES)} limit"
            )
            raise DefinitionError([Problem(path="", message=message)])
        return model

    def canonical_json(self) -> str:
        """The stable JSON form (sorted keys, defaults explicit, durations as ``"<n>ms"``).

        Computed once per definition object (it is immutable): the orchestrator pins it
        on every start.
        """
        found = _CANONICAL.get(id(self))
        if found is not None and found[0] is self:
            return found[1]
        text = dump_json(self.model_dump(mode="json"))
        if len(_CANONICAL) >= _CANONICAL_KEPT:
            del _CANONICAL[next(iter(_CANONICAL))]
        _CANONICAL[id(self)] = (self, text)  # holding the object keeps its id its own
        return text

    # --- queries ------------------------------------------------------------------------

    def step(self, step_id: str) -> Step:
        """The step with id ``step_id`` (KeyError if none)."""
        for step in self.steps:
            if step.id == step_id:
                return step
        raise KeyError(step_id)

    @property
    def key(self) -> str:
        """``name:version``, the key on ``wf.definitions``."""
        return f"{self.name}:{self.version}"


def _looks_like_path(text: str) -> bool:
    """A one-line string naming an existing file or ending in .yaml/.yml/.json."""
    if "\n" in text or len(text) > 4096:
        return False
    if text.endswith((".yaml", ".yml", ".json")):
        return True
    try:
        return Path(text).is_file()
    except OSError:
        return False


#: id(definition) -> (definition, canonical JSON), the oldest dropped first
_CANONICAL: dict[int, tuple[Definition, str]] = {}
_CANONICAL_KEPT = 1024


@lru_cache(maxsize=512)
def _from_json_cached(text: str) -> Definition:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DefinitionError([Problem(path="", message=f"not JSON: {exc}")]) from exc
    return Definition.from_data(data)


def _path(loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif item in (
            "function-after[_check_kind(), Step]",
            "function-before[_infer_kind(), Step]",
        ):
            continue
        else:
            parts.append(("." if parts else "") + item)
    return "".join(parts)


def _pydantic_problems(exc: ValidationError) -> list[Problem]:
    problems: list[Problem] = []
    known: set[Problem] = set()
    for error in exc.errors(include_input=False, include_url=False):
        loc = tuple(x for x in error["loc"] if not (isinstance(x, str) and "[" in x))
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown field"
        problem = Problem(path=_path(loc), message=message)
        if problem not in known:
            known.add(problem)
            problems.append(problem)
    return problems
