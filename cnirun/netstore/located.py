"""YAML documents that remember where each value came from.

Compose errors must say `file:line: key.path: what is wrong: what is
expected`. PyYAML's composed node tree keeps a start mark on every node; we
record the line of every key path while building plain Python values, so the
rest of the code works with dicts and lists and asks the document for a line
only when it reports an error.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, NoReturn

from ..core.errors import ConfigError

Path = tuple[str | int, ...]


def path_text(path: Path) -> str:
    """('services', 'web', 'ports', 0) -> 'services.web.ports[0]'."""
    out = ""
    for p in path:
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            out += ("." if out else "") + str(p)
    return out


class ComposeError(ConfigError):
    """A located error in a compose-style file (CNI code 7, invalid config)."""


@dataclass
class Document:
    """A parsed YAML file: its data and the 1-based line of each key path."""

    source: str
    data: Any
    lines: dict[Path, int] = field(default_factory=dict)

    def line(self, path: Path) -> int | None:
        # A value with no recorded line (e.g. from a merge key) reports its parent's.
        p = tuple(path)
        while p:
            if p in self.lines:
                return self.lines[p]
            p = p[:-1]
        return self.lines.get((), None)

    def where(self, path: Path) -> str:
        line = self.line(path)
        loc = f"{self.source}:{line}" if line else self.source
        return f"{loc}: {path_text(path)}" if path else loc

    def error(self, path: Path, message: str) -> ComposeError:
        return ComposeError(f"{self.where(path)}: {message}")

    def fail(self, path: Path, message: str) -> NoReturn:
        raise self.error(path, message)


# Bounds on what one file may make us build, so a hostile file costs little time and memory:
# its size, its nesting, and the values it expands to (an alias or a merge key counts its whole
# anchor again: "billion laughs" files are refused before anything is built).
MAX_BYTES = 1 << 20
MAX_DEPTH = 64
MAX_VALUES = 200_000
# The tags a compose or network file may hold: YAML's core types (no !!binary, !!set, ...).
_TAGS = frozenset(f"tag:yaml.org,2002:{t}" for t in
                  ("str", "int", "float", "bool", "null", "timestamp", "merge", "map", "seq"))


def _yaml_loader() -> Any:
    """libyaml's safe loader when PyYAML has it (10x faster than the pure-Python one), else that."""
    import yaml

    return getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _bounded(text: str, source: str) -> None:
    """Refuse a document nested deeper than MAX_DEPTH or expanding to more than MAX_VALUES values.

    Runs over the parser's events (no tree is built, nothing recurses): each
    node counts 1 plus its children, an alias counts its anchor's whole size.
    An alias inside its own anchor (a recursive structure) is refused too.
    """
    import yaml

    def fail(event: Any, message: str) -> NoReturn:
        raise ComposeError(f"{source}:{event.start_mark.line + 1}: {message}")

    sizes: dict[str, int] = {}
    stack: list[list[Any]] = []  # [anchor, size] of each open collection
    total = 0
    for event in yaml.parse(text, Loader=_yaml_loader()):
        if isinstance(event, yaml.CollectionStartEvent):
            if len(stack) >= MAX_DEPTH:
                fail(event, f"nested more than {MAX_DEPTH} levels deep: flatten the file")
            stack.append([event.anchor, 1])
            continue
        if isinstance(event, yaml.CollectionEndEvent):
            anchor, size = stack.pop()
        elif isinstance(event, yaml.ScalarEvent):
            anchor, size = event.anchor, 1
        elif isinstance(event, yaml.AliasEvent):
            if any(a == event.anchor for a, _ in stack):
                fail(event, f"alias *{event.anchor} inside its own anchor: a recursive structure is not allowed")
            anchor, size = None, sizes.get(event.anchor, 1)
        else:
            continue
        if anchor is not None:
            sizes[anchor] = size
        if stack:
            stack[-1][1] += size
        else:
            total += size
        if total + sum(s for _, s in stack) > MAX_VALUES:
            fail(event, f"more than {MAX_VALUES} values (each alias counted as what it repeats): "
                        "refusing the file (an alias bomb?)")


def _walk(node: Any, path: Path, lines: dict[Path, int], doc_source: str) -> None:
    import yaml

    lines.setdefault(path, node.start_mark.line + 1)
    if node.tag not in _TAGS:
        raise ComposeError(f"{doc_source}:{node.start_mark.line + 1}: {path_text(path) or 'top level'}: "
                           f"YAML tag {node.tag.replace('tag:yaml.org,2002:', '!!')} is not allowed: "
                           "write a plain string, number, boolean, list or mapping")
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:null":
                raise ComposeError(
                    f"{doc_source}:{key_node.start_mark.line + 1}: {path_text(path) or 'top level'}: "
                    "a key must be a plain string, not a list, mapping or null"
                )
            key = key_node.value
            if key == "<<":  # merge key: its values are looked up through the parent
                continue
            line = key_node.start_mark.line + 1
            if key in seen:
                raise ComposeError(
                    f"{doc_source}:{line}: {path_text(path + (key,))}: duplicate key "
                    f"(first at line {seen[key]}): each key may appear once"
                )
            seen[key] = line
            lines[path + (key,)] = line
            _walk(value_node, path + (key,), lines, doc_source)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _walk(item, path + (i,), lines, doc_source)


def _syntax_error(e: Any, text: str, source: str) -> ComposeError:
    """A PyYAML error as one located line."""
    import yaml

    if isinstance(e, yaml.MarkedYAMLError):
        mark = e.problem_mark or e.context_mark
        line = f":{mark.line + 1}" if mark else ""
        what = e.problem or "syntax error"
        if mark is not None and "cannot start any token" in what and text[mark.index:mark.index + 1] == "\t":
            what = "a tab: YAML indents with spaces"
        ctx = f" ({e.context})" if e.context else ""
        return ComposeError(f"{source}{line}: invalid YAML: {what}{ctx}: fix the syntax at that line")
    if isinstance(e, yaml.reader.ReaderError):
        line = text.count("\n", 0, e.position) + 1
        char = e.character if isinstance(e.character, int) else ord(e.character)
        return ComposeError(f"{source}:{line}: invalid YAML: control character {char:#04x} is not allowed in "
                            "YAML text: remove it")
    return ComposeError(f"{source}: invalid YAML: {' '.join(str(e).split())}")


def parse(text: str, source: str) -> Document:
    """Parse YAML text; syntax errors become located ComposeErrors.

    Bounded (MAX_BYTES, MAX_DEPTH, MAX_VALUES) before any tree is built.
    """
    import yaml

    if len(text) > MAX_BYTES:
        raise ComposeError(f"{source}: larger than {MAX_BYTES >> 20} MiB: refusing to parse it")
    try:
        _bounded(text, source)
        loader = _yaml_loader()(text)
        try:
            node = loader.get_single_node()
            lines: dict[Path, int] = {}
            if node is not None:
                _walk(node, (), lines, source)
                data = loader.construct_document(node)
            else:
                data = None
        finally:
            loader.dispose()
    except yaml.YAMLError as e:
        raise _syntax_error(e, text, source) from None
    except (ValueError, OverflowError) as e:  # a value YAML's constructors refuse: a date, a huge number
        raise ComposeError(f"{source}: invalid value ({str(e).split(':')[0]}): fix or quote it") from None
    return Document(source=source, data=data, lines=lines)


def read_text(path: str | os.PathLike[str] | int, source: str = "") -> str:
    """A file's text: at most MAX_BYTES (a larger one, or /dev/zero, is refused unread) of UTF-8.
    A descriptor (0: standard input) is read and left open; errors name `source` or the path.
    OSError is the caller's to word."""
    with open(path, "rb", closefd=not isinstance(path, int)) as f:
        raw = f.read(MAX_BYTES + 1)
    name = source or path
    if len(raw) > MAX_BYTES:
        raise ComposeError(f"{name}: larger than {MAX_BYTES >> 20} MiB: refusing to read it")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise ComposeError(f"{name}:{line}: not UTF-8 text ({e.reason}): save the file as UTF-8") from None


def load(path: str | os.PathLike[str]) -> Document:
    try:
        text = read_text(path)
    except FileNotFoundError:
        raise ComposeError(f"{path}: no such file: pass an existing compose file with -f") from None
    except PermissionError:
        raise ComposeError(f"{path}: permission denied: make the file readable") from None
    except OSError as e:
        raise ComposeError(f"{path}: cannot read: {e.strerror}") from None
    return parse(text, str(path))


# -- typed accessors: every one names the path and what was expected ----------

def type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "a number"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def expect_mapping(doc: Document, value: Any, path: Path, what: str = "a mapping") -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        doc.fail(path, f"expected {what}, got {type_name(value)}")
    return value


def expect_str(doc: Document, value: Any, path: Path, what: str = "a string") -> str:
    # Compose accepts numbers where strings are expected (e.g. a port); so do we.
    if isinstance(value, bool) or value is None or isinstance(value, (list, dict)):
        doc.fail(path, f"expected {what}, got {type_name(value)}")
    return str(value)


def expect_bool(doc: Document, value: Any, path: Path) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    doc.fail(path, f"expected true or false, got {type_name(value)} {value!r}")


def expect_int(doc: Document, value: Any, path: Path, what: str = "a whole number") -> int:
    if isinstance(value, bool):
        doc.fail(path, f"expected {what}, got a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    doc.fail(path, f"expected {what}, got {type_name(value)} {value!r}")


def string_map(doc: Document, value: Any, path: Path, what: str) -> dict[str, str]:
    """A compose 'list or dict' of KEY=VALUE (labels, environment, driver_opts)."""
    if value is None:
        return {}
    out: dict[str, str] = {}
    if isinstance(value, list):
        for i, item in enumerate(value):
            text = expect_str(doc, item, path + (i,), "KEY=VALUE")
            k, sep, v = text.partition("=")
            if not k:
                doc.fail(path + (i,), f"expected KEY=VALUE, got {text!r}")
            out[k] = v if sep else ""
        return out
    if isinstance(value, dict):
        for k, v in value.items():
            if isinstance(v, (list, dict)):
                doc.fail(path + (str(k),), f"expected a string value for {what}, got {type_name(v)}")
            out[str(k)] = "" if v is None else (str(v).lower() if isinstance(v, bool) else str(v))
        return out
    doc.fail(path, f"expected {what} as a mapping or a list of KEY=VALUE, got {type_name(value)}")


def check_keys(doc: Document, mapping: dict[str, Any], path: Path, known: set[str] | frozenset[str],
               unsupported: dict[str, str] | None = None) -> None:
    """Refuse keys we do not know or do not support, naming each one.

    `x-` keys are compose's extension fields: the spec says tools ignore them.
    """
    for key in mapping:
        if isinstance(key, str) and key.startswith("x-"):
            continue
        if unsupported and key in unsupported:
            doc.fail(path + (key,), f"not supported by cnirun: {unsupported[key]}")
        if key not in known:
            doc.fail(path + (key,), f"unknown key: expected one of {', '.join(sorted(known))}")
