"""Every bound on what Foldflow accepts, in one place (documented in docs/limits.md).

The gateway, the CLI and ``Definition`` validation refuse anything past these bounds up
front (a 422 naming the path at the gateway), and the decider fails a workflow whose
rendered values would pass them, so every value that gets in can be encoded by Avro,
produced to Kafka (1,000,000-byte messages) and stored by PostgreSQL.
"""

from __future__ import annotations

__all__ = [
    "MAX_AFTER_EDGES",
    "MAX_ATTEMPTS",
    "MAX_DEFINITION_BYTES",
    "MAX_DEFINITION_STRING",
    "MAX_DEFINITION_VALUES",
    "MAX_DESCRIPTION_LENGTH",
    "MAX_DURATION_MS",
    "MAX_EXPRESSION_DEPTH",
    "MAX_EXPRESSION_LENGTH",
    "MAX_IDEMPOTENCY_KEY_LENGTH",
    "MAX_JSON_DEPTH",
    "MAX_KEY_LENGTH",
    "MAX_MULTIPLIER",
    "MAX_NAME_LENGTH",
    "MAX_NUMBER_LENGTH",
    "MAX_PAYLOAD_BYTES",
    "MAX_PROBLEMS",
    "MAX_REASON_LENGTH",
    "MAX_STEPS",
    "MAX_STEP_ID_LENGTH",
    "MAX_VERSION",
    "human_bytes",
]

KIB = 1024

# --- any JSON value the gateway or the CLI accepts ------------------------------------------

#: Nesting levels of objects and arrays in one document (a request body, a definition).
#: The read API serialises values up to ~250 levels; rendered templates can nest a value
#: inside a mapping, so twice this still fits.
MAX_JSON_DEPTH = 64
#: Characters of an object key.
MAX_KEY_LENGTH = 1024
#: Characters of a number literal (digits, sign, exponent): Python refuses to parse
#: integers past 4,300 digits and PostgreSQL's numeric has bounds too.
MAX_NUMBER_LENGTH = 100
#: Canonical JSON (UTF-8) bytes of one value carried in a message: a workflow input,
#: signal data, a rendered step or child input, a workflow output. ``workflow.started.v1``
#: carries a definition and an input, so both bounds together stay well below Kafka's
#: default 1,000,000-byte message limit.
MAX_PAYLOAD_BYTES = 256 * KIB
#: Characters of the ``reason`` of cancel, pause, resume and terminate.
MAX_REASON_LENGTH = 1000
#: Characters of an ``Idempotency-Key`` (visible ASCII).
MAX_IDEMPOTENCY_KEY_LENGTH = 200

# --- workflow definitions -------------------------------------------------------------------

#: Steps per definition.
MAX_STEPS = 500
#: ``after`` entries over all steps of a definition.
MAX_AFTER_EDGES = 5_000
#: Canonical JSON bytes of a definition (defaults spelled out, as it travels on Kafka).
MAX_DEFINITION_BYTES = 256 * KIB
#: JSON values (objects, arrays, strings, numbers...) in one definition document.
MAX_DEFINITION_VALUES = 100_000
#: Characters of any string in a definition (templates, constants).
MAX_DEFINITION_STRING = 16 * KIB
#: Characters of a definition's ``description``.
MAX_DESCRIPTION_LENGTH = 4 * KIB
#: Characters of a ``when`` condition.
MAX_EXPRESSION_LENGTH = 2 * KIB
#: Parentheses and ``not`` nested in one condition.
MAX_EXPRESSION_DEPTH = 32
#: Characters of a definition name, task type or signal name.
MAX_NAME_LENGTH = 200
#: Characters of a step id.
MAX_STEP_ID_LENGTH = 100
#: A retry policy's ``max_attempts`` and ``multiplier``.
MAX_ATTEMPTS = 1000
MAX_MULTIPLIER = 100.0
#: Definition versions (and a child step's ``version``): 1 .. 2^31-1, an Avro int.
MAX_VERSION = 2**31 - 1
#: Any duration (sleep, timeouts, backoffs): at most 365 days, so a timer's due time
#: (now + duration, in ms) always fits an Avro long with room to spare.
MAX_DURATION_MS = 365 * 86_400_000

# --- reporting ------------------------------------------------------------------------------

#: Problems reported for one refused document (the rest are counted, not listed).
MAX_PROBLEMS = 100


def human_bytes(size: int) -> str:
    """``262144`` → ``"256 KiB"`` (exact multiples of KiB), else ``"<n> bytes"``."""
    return f"{size // KIB} KiB" if size % KIB == 0 else f"{size} bytes"
