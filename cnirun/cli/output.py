"""One output convention for every command that prints records, and progress for long operations.

`--format table|json|TEMPLATE`, as docker, podman and nerdctl do:

- `table` (the default): the command's own table for people;
- `json`: the records as one indented JSON document (field names are stable,
  documented in README "Output formats");
- TEMPLATE: docker's Go-template subset, one line per record: `{{.Field}}`,
  `{{.Field.Sub}}`, `{{.}}`, `{{json .}}`, `{{json .Field}}`,
  `{{index .Labels "key"}}`, `{{join .Subnets ","}}`, `{{len .X}}`,
  `{{upper .X}}`, `{{lower .X}}`, `{{range .X}}...{{end}}`,
  `{{if .X}}...{{else}}...{{end}}`; `\\t` and `\\n` are a tab and a newline;
- `table TEMPLATE`: the same fields as aligned columns under a header.

Field names match JSON keys ignoring case and underscores (`{{.RunID}}` is
`run_id`), so docker's CamelCase spellings work; a field that does not exist
is a TemplateError (one line), never a traceback.
"""
from __future__ import annotations

import json
import sys
from typing import Any, Callable, Iterator

from ..core.errors import ArgumentError


class TemplateError(ArgumentError):
    """A --format template that cannot be parsed or names a field the records do not have."""

    def __init__(self, message: str) -> None:
        # The message quotes the user's template: keep it one line whatever it contains.
        super().__init__(message.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t"))


# -- parsing ------------------------------------------------------------------------------
# A template is a list of nodes: str (text), ("expr", Pipeline), ("range", Pipeline, body),
# ("if", Pipeline, then, else). A Pipeline is a function name (or None) and its arguments;
# an argument is ("field", path) where path () is `.`, or ("lit", value).
Arg = tuple[str, Any]
Pipeline = tuple[str | None, list[Arg]]
FUNCTIONS = {"json": 1, "index": -2, "join": 2, "len": 1, "upper": 1, "lower": 1, "println": 1}


def _split_actions(text: str) -> Iterator[tuple[bool, str]]:
    """(is_action, text) pieces of a template."""
    i = 0
    while i < len(text):
        start = text.find("{{", i)
        if start < 0:
            yield False, text[i:]
            return
        if start > i:
            yield False, text[i:start]
        end = text.find("}}", start + 2)
        if end < 0:
            raise TemplateError(f"template: unclosed action at offset {start}: every {{{{ needs a }}}}")
        body = text[start + 2:end]
        # {{- and -}} trim spaces as in Go; the trimming itself is not worth supporting.
        yield True, body.strip().removeprefix("- ").removesuffix(" -").strip()
        i = end + 2


def _tokens(action: str) -> list[str]:
    """Words of an action; "quoted strings" kept whole with their quotes."""
    out: list[str] = []
    i = 0
    while i < len(action):
        c = action[i]
        if c.isspace():
            i += 1
            continue
        if c in "\"`":
            j = action.find(c, i + 1)
            while c == '"' and j > 0 and action[j - 1] == "\\":
                j = action.find(c, j + 1)
            if j < 0:
                raise TemplateError(f"template: unterminated string in {{{{{action}}}}}")
            out.append(action[i:j + 1])
            i = j + 1
            continue
        j = i
        while j < len(action) and not action[j].isspace() and action[j] not in "\"`":
            j += 1
        out.append(action[i:j])
        i = j
    return out


def _arg(tok: str, action: str) -> Arg:
    if tok == ".":
        return ("field", ())
    if tok.startswith("."):
        parts = tuple(tok[1:].split("."))
        if not all(p and (p.replace("_", "a").isalnum()) for p in parts):
            raise TemplateError(f"template: bad field {tok!r} in {{{{{action}}}}}")
        return ("field", parts)
    if tok[0] == '"':
        try:
            return ("lit", json.loads(tok))
        except ValueError:
            raise TemplateError(f"template: bad string {tok} in {{{{{action}}}}}") from None
    if tok[0] == "`":
        return ("lit", tok[1:-1])
    if tok.lstrip("-").isdigit():
        return ("lit", int(tok))
    raise TemplateError(f"template: unknown function {tok!r} in {{{{{action}}}}}: "
                        f"cnirun knows {', '.join(sorted(FUNCTIONS))}")


def _pipeline(action: str) -> Pipeline:
    toks = _tokens(action)
    if not toks:
        raise TemplateError("template: empty action {{}}")
    if "|" in toks:
        raise TemplateError(f"template: pipes are not supported in {{{{{action}}}}}: write {{{{json .X}}}}")
    head = toks[0]
    if head in FUNCTIONS:
        args = [_arg(t, action) for t in toks[1:]]
        want = FUNCTIONS[head]
        if (want >= 0 and len(args) != want) or (want < 0 and len(args) < -want):
            raise TemplateError(f"template: {head} takes {abs(want)}{'+' if want < 0 else ''} "
                                f"argument(s) in {{{{{action}}}}}")
        return head, args
    if len(toks) != 1:
        raise TemplateError(f"template: unknown function {head!r} in {{{{{action}}}}}: "
                            f"cnirun knows {', '.join(sorted(FUNCTIONS))}")
    return None, [_arg(head, action)]


def parse_template(text: str) -> list[Any]:
    """The node tree of a template; TemplateError for anything outside the subset."""
    root: list[Any] = []
    stack: list[tuple[list[Any], list[Any] | None]] = [(root, None)]  # (nodes being filled, the block node)
    for is_action, piece in _split_actions(text):
        nodes = stack[-1][0]
        if not is_action:
            nodes.append(piece)
            continue
        word = piece.split(None, 1)[0] if piece.split() else ""
        rest = piece[len(word):].strip()
        if word in ("range", "if"):
            if not rest:
                raise TemplateError(f"template: {{{{{word}}}}} needs a value, e.g. {{{{{word} .Addresses}}}}")
            node: list[Any] = [word, _pipeline(rest), [], []]
            nodes.append(node)
            stack.append((node[2], node))
        elif word == "else":
            block = stack[-1][1]
            if block is None or rest or nodes is block[3]:
                raise TemplateError("template: {{else}} outside {{if}}/{{range}}")
            stack[-1] = (block[3], block)
        elif word == "end":
            if rest or len(stack) == 1:
                raise TemplateError("template: {{end}} without {{range}} or {{if}}")
            stack.pop()
        else:
            nodes.append(("expr", _pipeline(piece)))
    if len(stack) != 1:
        raise TemplateError(f"template: {{{{{stack[-1][1][0]}}}}} without {{{{end}}}}")  # type: ignore[index]
    return root


# -- evaluation -----------------------------------------------------------------------------
def _key(name: str) -> str:
    return name.replace("_", "").replace("-", "").lower()


def lookup(value: Any, path: tuple[str, ...], aliases: dict[str, str] | None = None) -> Any:
    """value.A.B...: dict keys matched ignoring case and underscores; TemplateError when missing."""
    for n, part in enumerate(path):
        if not isinstance(value, dict):
            where = "." + ".".join(path[:n]) if n else "."
            raise TemplateError(f"template: can't evaluate field {part} in {where}: it is not a record")
        if n == 0 and aliases and part in aliases and aliases[part] in value:
            value = value[aliases[part]]
            continue
        if part in value:
            value = value[part]
            continue
        matches = [k for k in value if isinstance(k, str) and _key(k) == _key(part)]
        if not matches:
            known = ", ".join(sorted(str(k) for k in value)) or "none"
            raise TemplateError(f"template: no field {part!r} in {'.' + '.'.join(path[:n]) if n else 'the record'}"
                                f" (fields: {known})")
        value = value[matches[0]]
    return value


def _text(value: Any) -> str:
    """A value as Go's text/template prints it (close enough): lists as [a b], maps as map[k:v]."""
    if value is None:
        return "<no value>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + " ".join(_text(v) for v in value) + "]"
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{_text(v)}" for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))) + "]"
    return str(value)


def _truthy(value: Any) -> bool:
    return bool(value) and value != "<no value>"


class Template:
    """A parsed --format template; render(record) -> text. `aliases`: docker's field names for ours."""

    def __init__(self, text: str, aliases: dict[str, str] | None = None) -> None:
        self.text = text
        self.aliases = aliases or {}
        self.nodes = parse_template(text)

    def _eval(self, pipe: Pipeline, dot: Any) -> Any:
        fn, args = pipe
        vals = [lookup(dot, a[1], self.aliases) if a[0] == "field" else a[1] for a in args]
        if fn is None:
            return vals[0]
        if fn == "json":
            return json.dumps(vals[0], separators=(",", ":"))
        if fn == "println":
            return _text(vals[0]) + "\n"
        if fn == "len":
            try:
                return len(vals[0])
            except TypeError:
                raise TemplateError(f"template: len of {type(vals[0]).__name__}: not a list, map or string") from None
        if fn in ("upper", "lower"):
            return getattr(_text(vals[0]), fn)()
        if fn == "join":
            if not isinstance(vals[0], list):
                raise TemplateError("template: join needs a list, e.g. {{join .Subnets \",\"}}")
            return str(vals[1]).join(_text(v) for v in vals[0])
        # index: maps by key, lists by number; a missing map key is Go's zero value ("")
        cur = vals[0]
        for k in vals[1:]:
            if isinstance(cur, dict):
                cur = cur.get(k, "")
            elif isinstance(cur, list) and isinstance(k, int) and 0 <= k < len(cur):
                cur = cur[k]
            else:
                raise TemplateError(f"template: index {k!r} out of range or not a key")
        return cur

    def _render(self, nodes: list[Any], dot: Any, out: list[str]) -> None:
        for node in nodes:
            if isinstance(node, str):
                out.append(node)
            elif node[0] == "expr":
                out.append(_text(self._eval(node[1], dot)))
            elif node[0] == "if":
                try:
                    cond = self._eval(node[1], dot)
                except TemplateError:
                    # {{if .Host}} over records that differ (engines): a field one lacks is false there.
                    if node[1][0] is not None:
                        raise
                    cond = None
                self._render(node[2] if _truthy(cond) else node[3], dot, out)
            else:  # range
                seq = self._eval(node[1], dot)
                items = list(seq.values()) if isinstance(seq, dict) else seq
                if not isinstance(items, list):
                    raise TemplateError(f"template: range over {type(seq).__name__}: not a list or map")
                if not items:
                    self._render(node[3], dot, out)
                for item in items:
                    self._render(node[2], item, out)

    def render(self, record: Any) -> str:
        out: list[str] = []
        self._render(self.nodes, record, out)
        return "".join(out)


def _unescape(text: str) -> str:
    # As docker's formatter: the shell hands over a backslash and a t.
    return text.replace("\\t", "\t").replace("\\n", "\n")


def header_of(node: Any) -> str:
    """A column header for a table template's action: the field's name, upper case, words split."""
    if isinstance(node, tuple) and node[0] == "expr":
        fn, args = node[1]
        fields = [a[1] for a in args if a[0] == "field" and a[1]]
        if fields:  # {{.Subnets}} and {{join .Subnets ","}} are both headed SUBNETS
            name = fields[0][-1]
            words = "".join(" " + c if c.isupper() and i and not name[i - 1].isupper() else c
                            for i, c in enumerate(name)).replace("_", " ")
            return words.upper().strip()
        return (fn or "").upper()
    return ""


def align(rows: list[list[str]], pad: int = 3) -> str:
    """Columns padded as docker's tabwriter does (the last column is not padded)."""
    if not rows:
        return ""
    n = max(len(r) for r in rows)
    widths = [max((len(r[i]) for r in rows if i < len(r)), default=0) for i in range(n)]
    return "\n".join("".join(c.ljust(widths[i] + pad) if i < len(r) - 1 else c for i, c in enumerate(r)).rstrip()
                     for r in rows)


def render(
    records: list[dict[str, Any]],
    fmt: str,
    table: Callable[[list[dict[str, Any]]], str],
    *,
    json_value: Any = None,
    aliases: dict[str, str] | None = None,
) -> str:
    """The text for --format fmt: table(records), JSON (json_value, else records) or a template per record."""
    fmt = fmt or "table"
    if fmt == "table":
        return table(records)
    if fmt == "json":
        return json.dumps(records if json_value is None else json_value, indent=2)
    is_table = fmt.startswith("table ")
    text = _unescape(fmt[len("table "):].strip() if is_table else fmt)
    tpl = Template(text, aliases)
    if not is_table:
        return "\n".join(tpl.render(r) for r in records)
    # One template per column, split at the tabs between actions, as docker's tabwriter does.
    cells = [Template(c, aliases) for c in text.split("\t")]
    head = [" ".join(filter(None, (header_of(n) for n in c.nodes))) for c in cells]
    return align([head] + [[c.render(r) for c in cells] for r in records])


def check_format(fmt: str) -> str:
    """Refuse a bad --format before any work is done (a template is parsed once here)."""
    if fmt in ("", "table", "json"):
        return fmt or "table"
    text = fmt[len("table "):] if fmt.startswith("table ") else fmt
    if "{{" not in text:
        raise TemplateError(f"unknown --format {fmt!r}: expected table, json or a template such as '{{{{.Name}}}}'")
    parse_template(_unescape(text))
    return fmt


def emit(text: str) -> None:
    if text:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")


def trunc(text: str, width: int, no_trunc: bool) -> str:
    return text if no_trunc or len(text) <= width else text[:width]


# -- progress ------------------------------------------------------------------------------
class Progress:
    """Progress of a long operation: a rewritten status line on a terminal, plain lines otherwise.

    On a terminal (stderr) each step rewrites one line `what [n/total] item`;
    elsewhere nothing is drawn and each finished item is one line on stdout
    (through `line`, or the caller's own printing after `clear()`), so logs
    and pipes stay line-oriented. Use as a context manager; `step(item)`
    before each item, `line(text)` for results.
    """

    def __init__(self, what: str, total: int, stream: Any = None, out: Any = None) -> None:
        self.what, self.total, self.n = what, total, 0
        self.stream = stream if stream is not None else sys.stderr
        self.out = out if out is not None else sys.stdout
        self.live = bool(getattr(self.stream, "isatty", lambda: False)()) and total > 1
        self._drawn = False

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: object) -> None:
        self.clear()

    def clear(self) -> None:
        if self._drawn:
            self.stream.write("\r\x1b[2K")
            self.stream.flush()
            self._drawn = False

    def step(self, item: str) -> None:
        self.n += 1
        if self.live:
            self.stream.write(f"\r\x1b[2K{self.what} [{self.n}/{self.total}] {item}"[:200])
            self.stream.flush()
            self._drawn = True

    def line(self, text: str) -> None:
        self.clear()
        self.out.write(text + "\n")
        self.out.flush()

