"""A definition's ``input_schema``: checked when registered, applied when a workflow starts.

Validation runs on ``jsonschema-rs`` with its linear-time regex engine, so ``pattern`` and
``patternProperties`` can never backtrack (``^(a+)+$`` against ``"aaaa…!"`` costs
microseconds, not seconds doubling with each character). A pattern that engine cannot
compile (backreferences, lookaround) is refused when the definition is registered, with
its path. Remote ``$ref`` are never fetched. Drafts 4, 6, 7, 2019-09 and 2020-12 (the
latest is the default). Used by the gateway, the CLI and the orchestrator alike.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

import jsonschema_rs

from foldflow.problems import Problem, join_path
from foldflow.schemas.messages import dump_json

__all__ = ["input_violation", "schema_problems"]

#: Characters of a violation message kept (messages quote the offending value).
_MESSAGE_CHARS = 500
_DRAFTS = ("draft-04", "draft-06", "draft-07")
#: The meta-schemas known without fetching anything (any other ``$schema`` is refused:
#: an unknown one would be fetched over the network).
KNOWN_META_SCHEMAS = frozenset(
    f"{scheme}://json-schema.org/{name}{tail}"
    for scheme in ("http", "https")
    for name in (
        *(f"{d}/schema" for d in _DRAFTS),
        "draft/2019-09/schema",
        "draft/2020-12/schema",
    )
    for tail in ("", "#")
)


def _path(root: str, parts: Any) -> str:
    path = root
    for part in parts:
        path = join_path(path, part)
    return path


def _excerpt(message: str) -> str:
    first = message.split("\n", 1)[0]
    return first if len(first) <= _MESSAGE_CHARS else first[:_MESSAGE_CHARS] + "…"


def _build(schema: Any) -> jsonschema_rs.Validator:
    return jsonschema_rs.validator_for(
        schema,
        pattern_options=jsonschema_rs.RegexOptions(),
        validate_formats=False,
        offline=True,
    )


def _unknown_meta_schemas(schema: Any, path: str) -> list[Problem]:
    found: list[Problem] = []
    stack: list[tuple[Any, str]] = [(schema, path)]
    while stack:
        node, where = stack.pop()
        if isinstance(node, dict):
            meta = node.get("$schema")
            if meta is not None and (not isinstance(meta, str) or meta not in KNOWN_META_SCHEMAS):
                found.append(
                    Problem(
                        path=join_path(where, "$schema"),
                        message="unknown meta-schema: use JSON Schema draft 4, 6, 7, "
                        "2019-09 or 2020-12 (https://json-schema.org/draft/2020-12/schema)",
                    )
                )
            stack.extend((v, join_path(where, k)) for k, v in node.items())
        elif isinstance(node, list):
            stack.extend((v, join_path(where, i)) for i, v in enumerate(node))
    return found


def schema_problems(schema: Any, *, path: str = "input_schema") -> list[Problem]:
    """Why ``schema`` cannot be used as an input schema (empty list: it can)."""
    unknown = _unknown_meta_schemas(schema, path)
    if unknown:
        return unknown
    try:
        jsonschema_rs.meta.validate(schema)
    except jsonschema_rs.ValidationError as exc:
        where = _path(path, exc.instance_path)
        return [Problem(path=where, message=f"not a valid JSON Schema: {_excerpt(exc.message)}")]
    except (jsonschema_rs.ReferencingError, ValueError) as exc:
        return [Problem(path=path, message=f"not a usable JSON Schema: {_excerpt(str(exc))}")]
    try:
        _build(schema)
    except jsonschema_rs.ValidationError as exc:
        where = _path(path, exc.instance_path)
        message = _excerpt(exc.message)
        if exc.instance_path and exc.instance_path[-1] in ("pattern", "patternProperties"):
            message += " for the linear-time regex engine (no backreferences or lookaround)"
        return [Problem(path=where, message=message)]
    except (jsonschema_rs.ReferencingError, ValueError) as exc:
        return [Problem(path=path, message=f"not a usable JSON Schema: {_excerpt(str(exc))}")]
    return []


@lru_cache(maxsize=256)
def _validator(schema_json: str) -> jsonschema_rs.Validator:
    return _build(json.loads(schema_json))


def input_violation(schema: dict[str, Any], value: Any) -> str | None:
    """The first way ``value`` violates ``schema`` (``at <path>: <reason>``), or None.

    Deterministic: the same schema and value always give the same answer.
    """
    validator = _validator(dump_json(schema))
    for error in validator.iter_errors(value):
        where = "/".join(str(x) for x in error.instance_path) or "<root>"
        return f"at {where}: {_excerpt(error.message)}"
    return None
