"""The `.env` format of docker compose, for a project's `.env` and a service's `env_file:` (whose
`format: raw` is docker run --env-file's: parse_raw).

One statement after another, each `[export ]KEY=VALUE` (or `KEY: VALUE`):
- blank lines and lines whose first non-blank character is `#` are skipped;
- spaces around the key and the `=` are ignored; a key holds letters, digits,
  `_`, `.`, `-`, `[` and `]`;
- `KEY` alone takes KEY's value from the environment (left out when unset);
- an unquoted value runs to the end of the line, cut at the first ` #` (an
  inline comment), trailing blanks (a CRLF's CR too) dropped;
- `'...'` is literal (`\\'` is a quote); `"..."` expands `\\a \\b \\f \\n \\r \\t
  \\v \\\\ \\" \\$` and `\\0` with three octal digits; either may span lines and
  be followed by a `# comment`;
- unquoted and double-quoted values are interpolated (interpolate), from the
  environment first, then from the values above them in the file.
The text is UTF-8 (a leading BOM dropped) without NUL, at most located.MAX_BYTES.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Mapping, NoReturn

from ..netstore.located import ComposeError, Document, Path as KeyPath, expect_bool, expect_str, read_text
from .interpolate import Variables, substitute

_ESCAPE = re.compile(r"\\(?:([abfnrtv])|([$\"\\])|0([0-7]{3}))")
_CONTROL = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}
_BLANK = " \t\v\f\r\x85\xa0"  # blanks within a line
_KEY_PUNCT = frozenset("_.-[]")


def _unescape(m: re.Match[str]) -> str:
    control, plain, octal = m.groups()
    if control:
        return _CONTROL[control]
    if plain:
        return "$$" if plain == "$" else plain  # '$$': a literal $ through interpolation
    code = int(octal, 8)
    return chr(code) if code < 256 else m.group()


class _Parser:
    """One env file's text, read statement by statement from `pos`."""

    def __init__(self, text: str, source: str, values: Variables) -> None:
        self.text, self.source, self.pos = text, source, 0
        self.out: dict[str, str] = {}
        self.values = values.over(self.out)  # the environment first, then this file's values so far

    def fail(self, message: str, at: int | None = None) -> NoReturn:
        line = self.text.count("\n", 0, self.pos if at is None else at) + 1
        raise ComposeError(f"{self.source}:{line}: {message}")

    def line_from(self, start: int) -> str:
        """The text from `start` to the end of its line, at most 40 characters."""
        end = self.text.find("\n", start)
        return self.text[start:len(self.text) if end < 0 else end][:40]

    def _statement_start(self) -> bool:
        """Past blank lines and comment lines; False at the end of the text."""
        text = self.text
        while True:
            while self.pos < len(text) and text[self.pos].isspace():
                self.pos += 1
            if self.pos == len(text):
                return False
            if text[self.pos] != "#":
                return True
            end = text.find("\n", self.pos)
            self.pos = len(text) if end < 0 else end

    def _key(self) -> tuple[str, bool]:
        """The key and whether it stands alone (its value from the environment)."""
        text, start = self.text, self.pos
        if text.startswith("export", start) and start + 6 < len(text) and text[start + 6] in " \t":
            start += 6
            while start < len(text) and text[start] in _BLANK:
                start += 1
        i = start
        while i < len(text) and text[i] not in "=:\n":
            c = text[i]
            if not (c.isalnum() or c in _KEY_PUNCT or c in _BLANK):
                self.pos = i
                self.fail(f"unexpected character {c!r} in variable name {self.line_from(start)!r}: a name "
                          "holds letters, digits, '_', '.', '-', '[' and ']'")
            i += 1
        key = text[start:i].rstrip(_BLANK)
        if any(c in _BLANK for c in key):
            self.pos = start
            self.fail(f"variable name {key[:40]!r} holds a space: write KEY=VALUE")
        alone = i == len(text) or text[i] == "\n"
        self.pos = i if alone else i + 1
        while not alone and self.pos < len(text) and text[self.pos] in _BLANK:
            self.pos += 1
        return key, alone

    def _quoted(self) -> tuple[str, bool]:
        """The quoted value at pos (raw, escapes of its own quote removed) and whether it was double-quoted."""
        text, start = self.text, self.pos
        quote = text[start]
        chars: list[str] = []
        i = start + 1
        while i < len(text):
            c = text[i]
            if c == quote:
                self.pos = i + 1
                return "".join(chars), quote == '"'
            if c == "\\" and i + 1 < len(text):
                nxt = text[i + 1]
                chars.append(nxt if nxt == quote else c + nxt)
                i += 2
                continue
            chars.append(c)
            i += 1
        self.fail(f"unterminated quoted value {self.line_from(start)!r}: close the {quote} quote", at=start)

    def _interpolate(self, value: str, at: int) -> str:
        def fail(message: str) -> NoReturn:
            self.fail(message, at)

        return substitute(value, self.values, fail) if "$" in value else value

    def _value(self) -> str:
        """The value at pos: a quoted one, or the rest of the line less an inline comment."""
        text, start = self.text, self.pos
        if start < len(text) and text[start] in "'\"":
            raw, double = self._quoted()
            return self._interpolate(_ESCAPE.sub(_unescape, raw), start) if double else raw
        end = text.find("\n", start)
        end = len(text) if end < 0 else end
        self.pos = end
        value = text[start:end]
        comment = value.find(" #")
        if comment >= 0:
            value = value[:comment]
        return self._interpolate(value.rstrip(), start)

    def parse(self) -> dict[str, str]:
        if "\0" in self.text:
            self.fail("a NUL character: an env file is text", at=self.text.index("\0"))
        while self._statement_start():
            key, alone = self._key()
            if alone:
                value = self.values.get(key)
            else:
                value = self._value()
            if key and value is not None:
                self.out[key] = value
        return self.out


def parse_env(text: str, source: str, values: Variables | None = None) -> dict[str, str]:
    """KEY -> value of an env file's text; a malformed one is a ComposeError naming `source:line`."""
    return _Parser(text.removeprefix("\ufeff"), source, values if values is not None else Variables()).parse()


def parse_raw(text: str, source: str, values: Variables) -> dict[str, str]:
    """`format: raw`, docker run --env-file's lines: KEY=VALUE taken as written (no quotes, escapes,
    comments after a value or variables), `#` lines and blank ones skipped, KEY alone from the environment."""
    out: dict[str, str] = {}
    for number, line in enumerate(text.removeprefix("\ufeff").split("\n"), 1):
        line = line.removesuffix("\r").lstrip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not key or "\0" in line or any(c.isspace() for c in key):
            raise ComposeError(f"{source}:{number}: invalid line {line[:40]!r}: write KEY=VALUE, a name without "
                               "blanks")
        found = value if sep else values.get(key)
        if found is not None:
            out[key] = found
    return out


def read_env_file(path: Path, values: Variables | None = None, raw: bool = False) -> dict[str, str]:
    """An env file's KEY -> value (read bounded, as UTF-8; `raw`: parse_raw's format); a missing file or
    a directory is empty."""
    try:
        text = read_text(path)
    except (FileNotFoundError, IsADirectoryError):
        return {}
    except OSError as e:
        raise ComposeError(f"{path}: cannot read: {e.strerror}") from None
    if raw:
        return parse_raw(text, str(path), values if values is not None else Variables())
    return parse_env(text, str(path), values)


def service_env_files(doc: Document, files: Any, path: KeyPath, values: Variables) -> dict[str, str]:
    """The values of a service's `env_file:` entries, later files over earlier ones."""
    out: dict[str, str] = {}
    for i, entry in enumerate([files] if isinstance(files, (str, dict)) else files or []):
        p = path + (i,)
        fmt = ""
        if isinstance(entry, dict):
            fpath = expect_str(doc, entry.get("path"), p + ("path",), "a file path")
            required = expect_bool(doc, entry["required"], p + ("required",)) if "required" in entry else True
            fmt = expect_str(doc, entry["format"], p + ("format",)) if entry.get("format") is not None else ""
            if fmt not in ("", "raw"):
                doc.fail(p + ("format",), f"unsupported env_file format {fmt!r}: leave it out, or write raw")
        else:
            fpath, required = expect_str(doc, entry, p, "a file path"), True
        if not Path(fpath).is_file():
            if required:
                doc.fail(p, f"env file {fpath} not found: create it or mark it required: false")
            continue
        out.update(read_env_file(Path(fpath), values.over(out), raw=fmt == "raw"))
    return out


def lookup_of(environment: Mapping[str, Any]) -> dict[str, str]:
    """A service's `environment:` values an env file may read (those given a value)."""
    return {str(k): str(v) for k, v in environment.items() if v is not None}
