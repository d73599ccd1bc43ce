"""A base for small value classes, instead of @dataclass on the hook path.

`import dataclasses` costs ~6 ms (it pulls in inspect, ast, dis, tokenize),
paid by every OCI hook run, i.e. by every container start. Subclasses write
their __init__ by hand (keeping the dataclass's positional and keyword
signature) and list their fields in `_fields`; this base gives them the
dataclass repr, equality and unhashability from that list.
"""
from __future__ import annotations


class Value:
    """repr/eq over `_fields`, as @dataclass generates them."""

    __slots__ = ()  # subclasses keep a __dict__, like dataclass instances
    _fields: tuple[str, ...] = ()

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={getattr(self, k)!r}" for k in self._fields)
        return f"{type(self).__qualname__}({inner})"

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return tuple(getattr(self, k) for k in self._fields) == tuple(getattr(other, k) for k in self._fields)

    __hash__ = None  # type: ignore[assignment]  # mutable: unhashable, like a dataclass with eq=True


class FrozenValue(Value):
    """A Value whose fields cannot be reassigned, and hashable (@dataclass(frozen=True))."""

    __slots__ = ()

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"cannot delete field {name!r}")

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(tuple(getattr(self, k) for k in self._fields))
