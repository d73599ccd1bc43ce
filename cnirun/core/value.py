"""Small value classes without @dataclass: Value (and FrozenValue) and Record.

`import dataclasses` costs ~6 ms (it pulls in inspect, ast, dis, tokenize),
paid by every OCI hook run, i.e. by every container start; this module
imports nothing. Both kinds list their fields in `_fields` and get the
dataclass repr, equality and unhashability from that list. They differ in
who writes __init__:

* Value: the subclass writes __init__ by hand, keeping the dataclass's
  positional and keyword signature. Use it for everything on the hook path
  (config, invoke, cache, result, runtime, attach, options) and wherever the
  constructor's signature should be checked: a hand-written __init__ costs
  ~0.24 us per instance, a generic one ~1.8 us (7x; measured for a 7-field
  class, Python 3.11).
* Record: a Value with a generic __init__ driven by `_defaults` (a callable
  such as `list` is a factory). Use it for records with many fields built a
  few times per run (RunSpec with 31 fields, RunRequest, RunMeta, Plan),
  where writing the constructor out would only repeat the field list.
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


class Record(Value):
    """A Value whose __init__ takes the `_fields` (positionally or by name), defaults from `_defaults`."""

    _defaults: dict[str, object] = {}

    def __init__(self, *args: object, **kwargs: object) -> None:
        names = self._fields
        if len(args) > len(names):
            raise TypeError(f"{type(self).__name__}() takes {len(names)} positional arguments")
        for name, value in zip(names, args):
            if name in kwargs:
                raise TypeError(f"{type(self).__name__}() got multiple values for {name!r}")
            kwargs[name] = value
        for name in names:
            if name in kwargs:
                value = kwargs.pop(name)
            elif name in self._defaults:
                d = self._defaults[name]
                value = d() if callable(d) else d
            else:
                raise TypeError(f"{type(self).__name__}() missing argument {name!r}")
            object.__setattr__(self, name, value)
        if kwargs:
            raise TypeError(f"{type(self).__name__}() got unexpected arguments {', '.join(kwargs)}")

    def to_dict(self) -> dict[str, object]:
        return {k: getattr(self, k) for k in self._fields}
