"""``Problem``: one thing wrong with a document, where (a dotted path) and what."""

from __future__ import annotations

import json
import re

from pydantic import BaseModel, ConfigDict

__all__ = ["Problem", "join_path"]

_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_KEY_EXCERPT = 40


class Problem(BaseModel):
    """One thing wrong with a document: where (dotted path) and what."""

    model_config = ConfigDict(frozen=True)

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path or '<definition>'}: {self.message}"


def join_path(path: str, key: str | int) -> str:
    """``path`` extended by an index (``a[3]``) or a key (``a.b``, or ``a["odd key"]``).

    An odd key is shown JSON-quoted with non-ASCII escaped and cut to a short excerpt, so
    a path is always printable and short whatever the key holds.
    """
    if isinstance(key, int):
        return f"{path}[{key}]"
    if _PLAIN_KEY.match(key):
        return f"{path}.{key}" if path else key
    excerpt = key if len(key) <= _KEY_EXCERPT else key[:_KEY_EXCERPT] + "…"
    return f"{path}[{json.dumps(excerpt, ensure_ascii=True)}]"
