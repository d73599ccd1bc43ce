"""Compose's durations ("1m30s", "10s", "500ms") and sizes ("512m", "1g")."""
from __future__ import annotations

import math
import re
from typing import Any

from ..netstore.located import Document, Path as KeyPath

_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
_PART = re.compile(r"(\d+(?:\.\d+)?)(h|ms|m|s|us|µs|ns)")


def duration(doc: Document, value: Any, path: KeyPath) -> float:
    """Seconds; a bare number is seconds, as compose takes it."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value) if abs(value) < 1e12 else math.inf
    else:
        parsed = go_duration(str(value))
        if parsed is None:
            doc.fail(path, f"invalid duration {value!r}: expected e.g. 30s, 1m30s or 500ms")
        seconds = parsed
    if not 0 <= seconds < 1e9:  # also refuses nan and inf
        doc.fail(path, f"invalid duration {value!r}: expected e.g. 30s, 1m30s or 500ms")
    return seconds


def go_duration(text: str) -> float | None:
    """The seconds of a Go duration without a sign (30s, 1m30s, 500ms, 1.5h); None when text is not one."""
    text = text.strip()
    if not text or _PART.sub("", text):
        return None
    return sum(float(n) * _UNITS[u] for n, u in _PART.findall(text))


def size(doc: Document, value: Any, path: KeyPath) -> str:
    """A byte size as docker's CLI takes it (123, 512k, 512m, 1g, 1.5gb)."""
    text = str(value).strip().lower()
    if not re.match(r"^\d+(\.\d+)?\s*([kmgtp]i?b?|b)?$", text):
        doc.fail(path, f"invalid size {value!r}: expected e.g. 512m or 1g")
    return text.replace(" ", "").replace("ib", "").rstrip("b") or "0"


def duration_text(seconds: float) -> str:
    """Seconds as Go's time.Duration prints them ("1m30s", "1.5s", "500ms"): what docker compose's
    config shows, and what `duration` reads back to the same value."""
    ns = round(seconds * 1e9)
    if ns == 0:
        return "0s"
    if ns < 1_000_000_000:
        for unit, scale in (("ms", 1_000_000), ("us", 1_000), ("ns", 1)):
            if ns >= scale or unit == "ns":
                return _decimal(ns, scale) + unit
    hours, rest = divmod(ns, 3_600_000_000_000)
    minutes, rest = divmod(rest, 60_000_000_000)
    text = _decimal(rest, 1_000_000_000) + "s"
    if hours or minutes:
        text = f"{minutes}m{text}"
    return f"{hours}h{text}" if hours else text


def _decimal(value: int, scale: int) -> str:
    whole, frac = divmod(value, scale)
    digits = str(frac).rjust(len(str(scale)) - 1, "0").rstrip("0") if frac else ""
    return f"{whole}.{digits}" if digits else str(whole)
