"""Compose's variable interpolation: $VAR, ${VAR}, ${VAR:-default}, ${VAR-default},
${VAR:?message}, ${VAR?message}, ${VAR:+alt}, ${VAR+alt} and $$ for a literal $.

Values come from the environment, then from the project's `.env` file.
Applied to every string of the file before any key is checked, as compose does.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Mapping

from ..netstore.located import Document, Path as KeyPath, read_text

_RE = re.compile(r"\$(?:(?P<esc>\$)|(?P<plain>[A-Za-z_][A-Za-z0-9_]*)|\{(?P<braced>[^}]*)\}|(?P<bad>))")
_BRACED = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>.*))?$", re.S)


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines; '#' comments; optional quotes around the value (at most 1 MiB of UTF-8)."""
    out: dict[str, str] = {}
    try:
        text = read_text(path)
    except OSError:
        return out
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        k, _, v = line.partition("=")
        k = k.strip().removeprefix("export ").strip()
        v = v.strip()
        if len(v) >= 2 and v[0] == v[-1] and v[0] in "'\"":
            v = v[1:-1]
        out[k] = v
    return out


def _substitute(doc: Document, text: str, path: KeyPath, env: Mapping[str, str]) -> str:
    def repl(m: re.Match[str]) -> str:
        if m.group("esc"):
            return "$"
        if m.group("plain"):
            return env.get(m.group("plain"), "")
        braced = m.group("braced")
        if braced is None:
            doc.fail(path, f"invalid interpolation in {text!r}: use $$ for a literal $, or ${{NAME}}")
        bm = _BRACED.match(braced)
        if not bm:
            doc.fail(path, f"invalid interpolation ${{{braced}}}: expected ${{NAME}}, ${{NAME:-default}} or similar")
        name, op, arg = bm.group("name"), bm.group("op"), bm.group("arg") or ""
        value = env.get(name)
        unset_or_empty = not value
        if op is None:
            return value or ""
        missing = unset_or_empty if op.startswith(":") else value is None
        kind = op[-1]
        if kind == "-":
            return _substitute(doc, arg, path, env) if missing else (value or "")
        if kind == "+":
            return "" if missing else _substitute(doc, arg, path, env)
        if missing:  # "?"
            doc.fail(path, f"required variable {name} is missing: {arg or 'set it in the environment or .env'}")
        return value or ""

    return _RE.sub(repl, text)


def interpolate(doc: Document, env: Mapping[str, str] | None = None) -> None:
    """Substitute variables in every string value of `doc.data`, in place."""
    values = dict(env if env is not None else os.environ)

    def walk(node: Any, path: KeyPath) -> Any:
        if isinstance(node, str):
            return _substitute(doc, node, path, values) if "$" in node else node
        if isinstance(node, list):
            return [walk(v, path + (i,)) for i, v in enumerate(node)]
        if isinstance(node, dict):
            return {k: walk(v, path + (str(k),)) for k, v in node.items()}
        return node

    doc.data = walk(doc.data, ())
