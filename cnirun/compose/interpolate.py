"""Compose's variable interpolation: $VAR, ${VAR}, ${VAR:-default}, ${VAR-default},
${VAR:?message}, ${VAR?message}, ${VAR:+alt}, ${VAR+alt} and $$ for a literal $.

Values come from the environment, then from the project's `.env` file
(`Variables` holds them in that order). Applied to every string of a compose
file before any key is checked, and to the values of env files (envfile), as
compose does. A default may itself hold variables (`${A:-${B}}`). A `$` that
starts no variable (`$1`, `$ `) stays as written, as in compose; `${` without a
valid `NAME}` is an error. A variable used without a default and not set is
noted once in `Variables.unset` for the warning compose prints.
"""
from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any, Callable, Iterator, NoReturn

from ..netstore.located import Document, Path as KeyPath

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_BRACES = re.compile(r"[{}]")
# The modifiers after ${NAME, longest first so ':-' is not read as '-'.
_OPS = (":-", ":?", ":+", "-", "?", "+")
# How deep defaults may nest (${A:-${B:-${C}}} is 3): bounds the work a hostile value makes.
MAX_NESTING = 32

Fail = Callable[[str], NoReturn]


class Variables(Mapping[str, str]):
    """The values interpolation reads: the first of `layers` that holds a name gives its value.

    Layers stacked later (`over`) share one `unset` list: the names used without a default
    that no layer held, in the order first met.
    """

    def __init__(self, *layers: Mapping[str, str], unset: list[str] | None = None) -> None:
        self.layers = layers
        self.unset: list[str] = [] if unset is None else unset

    def over(self, *more: Mapping[str, str]) -> Variables:
        """These values with `more` read after them (the same unset list)."""
        return Variables(*self.layers, *more, unset=self.unset)

    def __getitem__(self, name: str) -> str:
        for layer in self.layers:
            value = layer.get(name)
            if value is not None:
                return value
        raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        return iter({k: None for layer in self.layers for k in layer})

    def __len__(self) -> int:
        return len({k for layer in self.layers for k in layer})

    def lookup(self, name: str) -> str:
        """The value of `name`, used without a default: '' when unset, the name noted in `unset`."""
        value = self.get(name)
        if value is None:
            if name not in self.unset:
                self.unset.append(name)
            return ""
        return value


def _snippet(text: str) -> str:
    return repr(text if len(text) <= 60 else text[:57] + "...")


class _Template:
    """One string being substituted; defaults are ranges of it, substituted in place."""

    def __init__(self, text: str, values: Variables, fail: Fail) -> None:
        self.text, self.values, self.fail = text, values, fail
        self._pairs: dict[int, int] | None = None

    def closing(self, start: int) -> int:
        """The index of the '}' closing the '{' at `start` (nested braces counted), -1 if none.
        All pairs are matched in one pass, the first time one is asked for."""
        if self._pairs is None:
            pairs: dict[int, int] = {}
            opened: list[int] = []
            for m in _BRACES.finditer(self.text):
                if m.group() == "{":
                    opened.append(m.start())
                elif opened:
                    pairs[opened.pop()] = m.start()
            self._pairs = pairs
        return self._pairs.get(start, -1)

    def substitute(self, lo: int, hi: int, depth: int) -> str:
        """text[lo:hi] with its variables replaced."""
        text, out, i = self.text, [], lo
        while True:
            j = text.find("$", i, hi)
            if j < 0 or j + 1 == hi:
                out.append(text[i:hi])
                return "".join(out)
            out.append(text[i:j])
            c = text[j + 1]
            if c == "$":
                out.append("$")
                i = j + 2
            elif c == "{":
                end = self.closing(j + 1)
                if end < 0 or end >= hi:
                    self.fail(f"invalid interpolation in {_snippet(text[j:hi])}: '${{' is not closed by '}}' "
                              "(write $$ for a literal $)")
                out.append(self.braced(j + 2, end, depth))
                i = end + 1
            else:
                m = _NAME.match(text, j + 1, hi)
                if m:
                    out.append(self.values.lookup(m.group()))
                    i = m.end()
                else:
                    out.append("$")
                    i = j + 1

    def braced(self, lo: int, hi: int, depth: int) -> str:
        """What ${text[lo:hi]} stands for."""
        text, values = self.text, self.values
        m = _NAME.match(text, lo, hi)
        if not m:
            self.fail(f"invalid interpolation ${{{_snippet(text[lo:hi])[1:-1]}}}: expected ${{NAME}}, "
                      "${NAME:-default}, ${NAME:?message} or ${NAME:+alternative}, or $$ for a literal $")
        name = m.group()
        if m.end() == hi:
            return values.lookup(name)
        op = next((o for o in _OPS if text.startswith(o, m.end(), hi)), None)
        if op is None:
            self.fail(f"invalid interpolation ${{{_snippet(text[lo:hi])[1:-1]}}}: after the name comes '}}', "
                      "':-', '-', ':?', '?', ':+' or '+'")
        if depth >= MAX_NESTING:
            self.fail(f"interpolation nested more than {MAX_NESTING} deep in ${{{_snippet(text[lo:hi])[1:-1]}}}")
        arg = m.end() + len(op)
        value = values.get(name)
        missing = value is None or (op[0] == ":" and value == "")
        kind = op[-1]
        if kind == "-":
            return self.substitute(arg, hi, depth + 1) if missing else str(value)
        if kind == "+":
            return "" if missing else self.substitute(arg, hi, depth + 1)
        if missing:
            reason = " ".join(self.substitute(arg, hi, depth + 1).split())
            self.fail(f"required variable {name} is missing a value: "
                      f"{reason or 'set it in the environment or .env'}")
        return str(value)


def substitute(text: str, values: Variables, fail: Fail) -> str:
    """`text` with its variables replaced; `fail(message)` raises on an invalid or a required one."""
    return _Template(text, values, fail).substitute(0, len(text), 0)


def interpolate(doc: Document, env: Mapping[str, str] | None = None) -> None:
    """Substitute variables in every string value of `doc.data`, in place (a Variables `env` collects
    the unset names)."""
    values = env if isinstance(env, Variables) else Variables(env if env is not None else os.environ)

    def walk(node: Any, path: KeyPath) -> Any:
        if isinstance(node, str):
            if "$" not in node:
                return node

            def fail(message: str) -> NoReturn:
                doc.fail(path, message)

            return substitute(node, values, fail)
        if isinstance(node, list):
            return [walk(v, path + (i,)) for i, v in enumerate(node)]
        if isinstance(node, dict):
            return {k: walk(v, path + (str(k),)) for k, v in node.items()}
        return node

    doc.data = walk(doc.data, ())
