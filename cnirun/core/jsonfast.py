"""JSON for the OCI hook path: the json package's own C codec, without its import cost.

`import json` costs ~6 ms at hook start, almost all of it `re` (and `enum`
under it), which json.decoder and json.encoder use only for their pure-Python
fallbacks and for skipping whitespace. `loads` and `dumps` here drive the same
C scanner and encoder (`_json`) that json.loads/json.dumps use, so results are
identical; anything unusual (a BOM, UTF-16/32 bytes, invalid JSON, an
unserialisable object, a Python without `_json`) is handed to the json package
itself, which then produces the real result or the real exception. Only error
paths pay for importing it.
"""
from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

try:
    from _json import encode_basestring_ascii as _encode_str
    from _json import make_encoder as _make_encoder
    from _json import make_scanner as _make_scanner
except ImportError:  # pragma: no cover - CPython always has it
    _make_scanner = _make_encoder = _encode_str = None

_WS = " \t\n\r"  # JSON's whitespace (json.decoder.WHITESPACE)
_INF = float("inf")


class _DecoderSettings:
    """What the C scanner reads from a json.JSONDecoder built with default arguments."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = {"-Infinity": -_INF, "Infinity": _INF, "NaN": float("nan")}.__getitem__


_scan = _make_scanner(_DecoderSettings()) if _make_scanner is not None else None


def _utf8_only(data: bytes | bytearray) -> bool:
    """Whether json.detect_encoding would pick plain UTF-8 (no BOM, no NUL in the first two bytes)."""
    return not data or (data[0] not in (0x00, 0xEF, 0xFE, 0xFF) and (len(data) < 2 or data[1] != 0))


def loads(data: str | bytes | bytearray) -> Any:
    """json.loads(data) with default arguments."""
    if _scan is not None:
        text: str | None = None
        if isinstance(data, str):
            if not data.startswith("\ufeff"):
                text = data
        elif isinstance(data, (bytes, bytearray)) and _utf8_only(data):
            try:
                text = data.decode("utf-8", "surrogatepass")
            except UnicodeDecodeError:
                text = None
        if text is not None:
            start = len(text) - len(text.lstrip(_WS))
            try:
                obj, end = _scan(text, start)
            except (StopIteration, ValueError, SystemError, RecursionError):
                # Invalid: json.loads below raises the proper JSONDecodeError.
                # (The bare C scanner raises SystemError on input cut short
                # inside a container, because only json.decoder's wrapper turns
                # its internal StopIteration into an error.)
                pass
            else:
                if not text[end:].strip(_WS):
                    return obj
    import json

    try:
        return json.loads(data)
    except RecursionError:
        # Deep nesting ("[[[[..."): an input error like any other, never a crash.
        doc = data if isinstance(data, str) else bytes(data).decode("utf-8", "replace")
        raise json.JSONDecodeError("nested too deeply", doc, 0) from None


def dumps(obj: Any, separators: tuple[str, str] | None = None) -> str:
    """json.dumps(obj) or json.dumps(obj, separators=...), all other arguments at their defaults."""
    item_sep, key_sep = separators if separators is not None else (", ", ": ")
    if _make_encoder is not None:
        if isinstance(obj, str):
            return _encode_str(obj)
        try:
            chunks = _make_encoder({}, _unserializable, _encode_str, None, key_sep, item_sep, False, False, True)(obj, 0)
            return "".join(chunks)
        except (TypeError, ValueError, RecursionError):
            pass  # json.dumps below raises the same error with its own wording
    import json

    return json.dumps(obj, separators=separators)


def dumps_indented(obj: Any, indent: int = 4) -> str:
    """json.dumps(obj, indent=indent, ensure_ascii=False): what `cnirun cni add` prints (via Result.to_json).

    The json package's own indenting encoder is pure Python and its import
    pulls in re: this walks dicts and lists itself and has the C encoder
    write every string. Anything but dict/list/str/int/float/bool/None: the
    json package.
    """
    try:
        from _json import encode_basestring as enc
    except ImportError:  # pragma: no cover - CPython always has it
        enc = None
    out: list[str] = []

    def walk(o: Any, level: int) -> None:
        if isinstance(o, str):
            out.append(enc(o))  # type: ignore[misc]
        elif o is None or o is True or o is False:
            out.append("null" if o is None else "true" if o else "false")
        elif isinstance(o, int):
            out.append(int.__repr__(o))
        elif isinstance(o, float):
            out.append(float.__repr__(o) if o == o and o not in (_INF, -_INF) else
                       "NaN" if o != o else "Infinity" if o > 0 else "-Infinity")
        elif isinstance(o, (dict, list)) and o:
            pad = "\n" + " " * (indent * (level + 1))
            out.append("{" if isinstance(o, dict) else "[")
            for i, item in enumerate(o.items() if isinstance(o, dict) else o):
                out.append(pad if i == 0 else "," + pad)
                if isinstance(o, dict):
                    key = item[0]
                    if not isinstance(key, str):
                        raise TypeError("key")
                    out.append(enc(key) + ": ")  # type: ignore[misc]
                    walk(item[1], level + 1)
                else:
                    walk(item, level + 1)
            out.append("\n" + " " * (indent * level) + ("}" if isinstance(o, dict) else "]"))
        elif isinstance(o, (dict, list)):
            out.append("{}" if isinstance(o, dict) else "[]")
        else:
            raise TypeError("type")

    if enc is not None:
        try:
            walk(obj, 0)
            return "".join(out)
        except (TypeError, RecursionError):
            pass  # the json package below writes it, or raises its own error
    import json

    return json.dumps(obj, indent=indent, ensure_ascii=False)


def go_map_order(obj: Any) -> Any:
    """`obj` with the keys of every dict in it sorted, as Go's json.Marshal writes a map.

    For what libcni writes through Go maps (cached capability args and results,
    1.x results), so that cnirun's JSON is byte-for-byte libcni's.
    """
    if isinstance(obj, dict):
        return {k: go_map_order(obj[k]) for k in sorted(obj)}
    if isinstance(obj, list):
        return [go_map_order(v) for v in obj]
    return obj


def _unserializable(o: Any) -> Any:
    raise TypeError(f"Object of type {o.__class__.__name__} is not JSON serializable")


def __getattr__(name: str) -> Any:
    # `except jsonfast.JSONDecodeError:` is only evaluated when an exception
    # is raised, so the json package is imported then and never on success.
    if name in ("JSONDecodeError", "JSONEncoder", "JSONDecoder"):
        import json

        return getattr(json, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
