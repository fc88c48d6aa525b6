"""JSON logs on stdout with the ids that tie a line to a workflow and a trace.

Every line carries ``timestamp``, ``level``, ``service``, ``instance``, ``logger``,
``message``, ``correlation_id``, ``workflow_id``, ``trace_id`` and ``span_id``. The ids
come from :func:`bind` (context variables, so they follow asyncio tasks) and from the
current OpenTelemetry span; ``extra={...}`` adds key fields to one line::

    with bind(workflow_id=env.workflow_id, correlation_id=env.correlation_id):
        log.info("step scheduled", extra={"step_id": step})
"""

from __future__ import annotations

import logging
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from types import MappingProxyType
from typing import IO, Any

from limits import parse
from opentelemetry import trace
from pythonjsonlogger.json import JsonFormatter

from foldflow.observability.identity import instance_name
from foldflow.settings import Settings

__all__ = ["ContextFilter", "RepeatFilter", "bind", "bound_fields", "configure_logging"]

#: Fields every line has, null when unknown.
CONTEXT_FIELDS = ("correlation_id", "workflow_id")
_bound: ContextVar[Mapping[str, Any]] = ContextVar(
    "foldflow_log_fields", default=MappingProxyType({})
)


@contextmanager
def bind(**fields: Any) -> Iterator[None]:
    """Add ``fields`` (e.g. ``workflow_id``, ``correlation_id``) to every log line inside."""
    token = _bound.set(MappingProxyType({**_bound.get(), **fields}))
    try:
        yield
    finally:
        _bound.reset(token)


def bound_fields() -> Mapping[str, Any]:
    """The fields :func:`bind` has set in the current context."""
    return _bound.get()


class ContextFilter(logging.Filter):
    """Fills the bound fields and the current span's trace/span ids into each record.

    A field passed explicitly with ``extra=`` wins over the bound one.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        fields = _bound.get()
        for name in CONTEXT_FIELDS:
            if not hasattr(record, name):
                setattr(record, name, fields.get(name))
        for name, value in fields.items():
            if not hasattr(record, name):
                setattr(record, name, value)
        span_context = trace.get_current_span().get_span_context()
        if span_context.is_valid:
            record.trace_id = format(span_context.trace_id, "032x")
            record.span_id = format(span_context.span_id, "016x")
        else:
            record.trace_id = record.span_id = None
        return True


class RepeatFilter(logging.Filter):
    """At most ``limit`` lines of one message (logger, level and format string) per window.

    A client that cannot reach the broker logs the same line for every attempt (aiokafka:
    about 200 a second while Kafka restarts); past the limit they are dropped, and the
    next line of that message that gets through carries ``suppressed``: how many were.
    ``limit`` is in the ``limits`` library's notation; the windows are counted here, a
    dict lookup per line (``limits``' in-memory storage would start a timer thread every
    10 ms on a busy service).
    """

    def __init__(self, limit: str = "20 per 10 seconds", *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        item = parse(limit)
        self._amount = item.amount
        self._window_s = float(item.get_expiry())
        self._clock = clock
        self._windows: dict[tuple[str, int, str], list[float]] = {}  # key -> [start, count]
        self._dropped: Counter[tuple[str, int, str]] = Counter()

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, record.levelno, str(record.msg))
        now = self._clock()
        window = self._windows.get(key)
        if window is None or now - window[0] >= self._window_s:
            if len(self._windows) >= _MAX_MESSAGES:
                self._windows.clear()
            window = self._windows[key] = [now, 0]
        if window[1] >= self._amount:
            self._dropped[key] += 1
            return False
        window[1] += 1
        dropped = self._dropped.pop(key, 0)
        if dropped:
            record.suppressed = dropped
        return True


#: Distinct messages whose windows are remembered at most (then all start afresh).
_MAX_MESSAGES = 10_000


_HANDLER_NAME = "foldflow-json"


def configure_logging(
    settings: Settings, *, service: str, stream: IO[str] | None = None
) -> logging.Handler:
    """Send every log record of the process as one JSON line to stdout (or ``stream``).

    Idempotent: calling it again replaces the handler it installed before. The level is
    ``settings.log_level``.
    """
    handler = logging.StreamHandler(stream if stream is not None else sys.stdout)
    handler.set_name(_HANDLER_NAME)
    handler.addFilter(RepeatFilter())
    handler.addFilter(ContextFilter())
    handler.setFormatter(
        JsonFormatter(
            "%(levelname)s %(name)s %(message)s",
            rename_fields={"levelname": "level", "name": "logger"},
            static_fields={"service": service, "instance": instance_name(settings)},
            timestamp=True,
        )
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(settings.log_level.upper())
    return handler
