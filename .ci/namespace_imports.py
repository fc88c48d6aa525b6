"""Move imports and module names of the top-level packages under the ``foldflow`` namespace.

    .venv/bin/python .ci/namespace_imports.py           # rewrite the checkout in place
    .venv/bin/python .ci/namespace_imports.py --check   # only list what it would change; 1 if any

The repository keeps ``schemas/``, ``producers/``, ``processors/``, ``workers/``,
``projections/``, ``gateway/`` and ``bench/`` at its top, but they are imported (and
installed) as ``foldflow.schemas``, ``foldflow.producers``, …: ``foldflow/<name>`` is a
symlink to ``../<name>`` and setup.py maps them into the wheel. This script rewrites what
names them the old way, so a branch written before the move can be merged and then fixed
by running it again (it is idempotent: a second run changes nothing).

What it rewrites, in every tracked file (symlinks, recorded runs and CHANGELOG.md aside):

- in ``.py`` files, import statements: ``from schemas.codec import x`` →
  ``from foldflow.schemas.codec import x``, ``import processors.runtime.bootstrap as b`` →
  ``import foldflow.processors.runtime.bootstrap as b`` (also inside string literals that
  hold code, e.g. a ``python -c`` program);
- the same import statements in Markdown (the code examples of README.md and docs/);
- dotted module names in string literals, comments and docstrings of ``.py`` files and in
  every other text file (docs, Makefile, pyproject.toml, YAML, templates):
  ``"workers.runtime.Worker"`` (a monkeypatch target), ``python -m bench.soak``,
  ``:mod:`gateway.keys```, ``"gateway.app:create_app"``. A dotted name is rewritten only when
  its second part is a real module or subpackage of the package in this checkout, so
  ``bench.sink`` (a task type), ``gateway.yaml`` (a file) or ``gateway.app`` as code (an
  attribute) are left alone; names in Python code itself are never touched.

Then ``ruff check --select I --fix`` sorts the imports of the rewritten files again (the
names moved into the ``foldflow`` block), and ``ruff check --select E501`` lists the lines
the longer names pushed past the line length: wrap those by hand.

What it cannot rewrite (it prints them as warnings): a bare ``import schemas`` or
``import schemas.codec`` without ``as`` is rewritten, but it then binds ``foldflow`` instead
of ``schemas``, so code using ``schemas.codec.x`` must be changed by hand; bare package
names as data (``("schemas", "producers")`` lists of names) are not recognised.
"""

from __future__ import annotations

import argparse
import io
import re
import subprocess
import sys
import tokenize
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NAMESPACE = "foldflow"
PACKAGES = ("schemas", "producers", "processors", "workers", "projections", "gateway", "bench")
#: Text files worth reading (by suffix or name); others (wire fixtures, images) are data.
TEXT_SUFFIXES = {".py", ".md", ".toml", ".cfg", ".ini", ".yaml", ".yml", ".sh", ".txt",
                 ".mako", ".html", ".properties", ".template"}
TEXT_NAMES = {"Makefile", "Dockerfile", "run"}
#: Paths never rewritten: history, recorded results, this script.
SKIP = ("CHANGELOG.md", "bench/runs/", ".ci/namespace_imports.py")

_P = "|".join(PACKAGES)
_FROM = re.compile(rf"^(?P<lead>[ \t]*['\"]*[ \t]*)from[ \t]+(?P<pkg>{_P})(?P<rest>(?:\.\w+)*)"
                   rf"(?=[ \t]+import\b)", re.MULTILINE)
_IMPORT = re.compile(r"^(?P<lead>[ \t]*['\"]*[ \t]*)import[ \t]+(?P<names>[\w. \t,]+?)"
                     r"(?P<end>[ \t]*(?:#.*|\\n.*|['\"].*)?)$", re.MULTILINE)
_DOTTED = re.compile(rf"(?<![\w./\\-])(?P<pkg>{_P})\.(?P<sub>\w+)")


def _is_module(pkg: str, sub: str) -> bool:
    base = REPO / pkg
    return (base / f"{sub}.py").is_file() or (base / sub / "__init__.py").is_file() or (
        (base / sub).is_dir() and any((base / sub).glob("*.py")))


def rewrite_dotted(text: str) -> str:
    """``pkg.module...`` → ``foldflow.pkg.module...`` wherever ``module`` is real."""
    return _DOTTED.sub(
        lambda m: f"{NAMESPACE}.{m[0]}" if _is_module(m["pkg"], m["sub"]) else m[0], text)


def rewrite_imports(text: str, warn: list[str]) -> str:
    """Import statements of the seven packages (also in code held by string literals)."""
    text = _FROM.sub(lambda m: f"{m['lead']}from {NAMESPACE}.{m['pkg']}{m['rest']}", text)

    def one(m: re.Match[str]) -> str:
        items = []
        for item in m["names"].split(","):
            name = item.strip()
            first = name.split(".")[0].split()[0] if name else ""
            if first in PACKAGES:
                if " as " not in name:
                    warn.append(f"`import {name}` now binds {NAMESPACE!r}, not {first!r}")
                item = item.replace(name, f"{NAMESPACE}.{name}", 1)
            items.append(item)
        return f"{m['lead']}import {','.join(items)}{m['end']}"

    return _IMPORT.sub(one, text)


def rewrite_python(source: str, warn: list[str]) -> str:
    """Imports, then dotted names in string and comment tokens only."""
    source = rewrite_imports(source, warn)
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except (tokenize.TokenError, SyntaxError) as exc:
        warn.append(f"not tokenizable ({exc}): only imports rewritten")
        return source
    lines = source.splitlines(keepends=True)
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line))
    out, last = [], 0
    for tok in tokens:
        if tok.type not in (tokenize.STRING, tokenize.COMMENT):
            continue
        start = offsets[tok.start[0] - 1] + tok.start[1]
        end = offsets[tok.end[0] - 1] + tok.end[1]
        out.append(source[last:start])
        out.append(rewrite_dotted(source[start:end]))
        last = end
    out.append(source[last:])
    return "".join(out)


def tracked_files() -> list[Path]:
    """Tracked text files that are not symlinks."""
    names = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True,
                           check=True).stdout.decode().split("\0")
    files = []
    for name in filter(None, names):
        path = REPO / name
        if name.startswith(SKIP) or path.is_symlink() or not path.is_file():
            continue
        if path.suffix in TEXT_SUFFIXES or path.name in TEXT_NAMES:
            files.append(path)
    return files


def main(argv: list[str] | None = None) -> int:
    """Rewrite (or with ``--check`` list) the files; 1 when ``--check`` found any."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if needed")
    args = parser.parse_args(argv)
    changed = 0
    rewritten: list[str] = []
    for path in tracked_files():
        old = path.read_text(encoding="utf-8")
        warn: list[str] = []
        if path.suffix == ".py":
            new = rewrite_python(old, warn)
        elif path.suffix == ".md":  # code examples: imports too
            new = rewrite_dotted(rewrite_imports(old, warn))
        else:
            new = rewrite_dotted(old)
        rel = path.relative_to(REPO)
        for w in warn:
            print(f"warning: {rel}: {w}", file=sys.stderr)
        if new != old:
            changed += 1
            print(f"{'would rewrite' if args.check else 'rewrote'} {rel}")
            if not args.check:
                path.write_text(new, encoding="utf-8")
                if path.suffix == ".py":
                    rewritten.append(str(rel))
    print(f"{changed} file(s) {'to rewrite' if args.check else 'rewritten'}")
    if rewritten:
        _ruff("--select", "I", "--fix", *rewritten)
        if _ruff("--select", "E501", *rewritten):
            print("wrap the lines above by hand (the longer names made them too long)")
    return 1 if args.check and changed else 0


def _ruff(*args: str) -> int:
    """``ruff check`` from this Python's environment (the project's .venv) on ``args``."""
    ruff = Path(sys.executable).with_name("ruff")
    command = [str(ruff)] if ruff.exists() else [sys.executable, "-m", "ruff"]
    return subprocess.run([*command, "check", "--quiet", "--output-format", "concise", *args],
                          cwd=REPO, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
