"""Records: small classes with named fields and defaults, without importing dataclasses.

`import dataclasses` costs ~5 ms (inspect, ast, dis, tokenize) on every
`cnirun run`. A Record lists its fields in `_fields` (constructor order) and
their defaults in `_defaults` (a callable such as `list` is a factory);
repr and equality come from cnirun.value.Value.
"""
from __future__ import annotations

from typing import Any

from .value import Value


class Record(Value):
    _defaults: dict[str, Any] = {}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
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

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self._fields}
