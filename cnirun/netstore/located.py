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

from ..errors import ConfigError

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


def _walk(node: Any, path: Path, lines: dict[Path, int], doc_source: str) -> None:
    import yaml

    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise ComposeError(
                    f"{doc_source}:{key_node.start_mark.line + 1}: {path_text(path) or 'top level'}: "
                    "a key must be a plain string, not a list or mapping"
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


def parse(text: str, source: str) -> Document:
    """Parse YAML text; syntax errors become located ComposeErrors."""
    import yaml

    try:
        loader = yaml.SafeLoader(text)
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
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = f":{mark.line + 1}" if mark else ""
        what = e.problem or "syntax error"
        ctx = f" ({e.context})" if e.context else ""
        raise ComposeError(f"{source}{line}: invalid YAML: {what}{ctx}: fix the syntax at that line") from None
    except yaml.YAMLError as e:
        raise ComposeError(f"{source}: invalid YAML: {e}") from None
    return Document(source=source, data=data, lines=lines)


def load(path: str | os.PathLike[str]) -> Document:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        raise ComposeError(f"{path}: no such file: pass an existing compose file with -f") from None
    except PermissionError:
        raise ComposeError(f"{path}: permission denied: make the file readable") from None
    except UnicodeDecodeError as e:
        raise ComposeError(f"{path}: not UTF-8 text ({e.reason})") from None
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
