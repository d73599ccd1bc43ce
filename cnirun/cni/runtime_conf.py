"""One attachment's arguments (libcni's RuntimeConf) and their checks: container ID, ifname, CNI_ARGS, CAP_ARGS.
"""
from __future__ import annotations

from . import config as netconf
from ..core import jsonfast as json
from ..core.errors import ArgumentError, CNIError
from ..core.value import Value

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class RuntimeConf(Value):
    """Per-attachment arguments: which container, namespace and interface."""

    _fields = ("container_id", "netns", "ifname", "args", "capability_args")
    __match_args__ = _fields

    def __init__(
        self,
        container_id: str,
        netns: str = "",
        ifname: str = "eth0",
        args: list[tuple[str, str]] | None = None,  # CNI_ARGS
        capability_args: dict[str, Any] | None = None,  # runtimeConfig source
    ) -> None:
        self.container_id = container_id
        self.netns = netns
        self.ifname = ifname
        self.args = [] if args is None else args
        self.capability_args = {} if capability_args is None else capability_args

    def cni_args(self) -> str:
        return ";".join(f"{k}={v}" for k, v in self.args)


def validate_container_id(cid: str) -> None:
    if not cid:
        raise CNIError("missing container ID: every attachment needs one", code=3)
    if not netconf.is_safe_name(cid):
        raise ArgumentError(
            f"invalid container ID {cid!r}: use letters, digits, '_', '.', '-' and start with a letter or digit"
        )


def validate_ifname(ifname: str) -> None:
    # The kernel's own limits (IFNAMSIZ, no '/', ':' or whitespace), as libcni checks.
    if not ifname:
        raise ArgumentError("missing interface name: use e.g. eth0")
    if len(ifname) > 15:
        raise ArgumentError(f"invalid interface name {ifname!r}: longer than 15 characters")
    if ifname in (".", "..") or any(c in ifname for c in "/:") or any(c.isspace() for c in ifname):
        raise ArgumentError(f"invalid interface name {ifname!r}: no '/', ':', spaces, '.' or '..'")


def parse_cni_args(text: str) -> list[tuple[str, str]]:
    """'K=V;K2=V2' -> [(K, V), (K2, V2)]; a pair without '=' is an error (code 4)."""
    out: list[tuple[str, str]] = []
    if not text:
        return out
    for pair in text.split(";"):
        if not pair:
            continue
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ArgumentError(f"invalid CNI_ARGS pair {pair!r}: expected KEY=VALUE separated by ';'")
        out.append((key, value))
    return out


def parse_cap_args(text: str) -> dict[str, Any]:
    """CAP_ARGS: a JSON object of capability name -> value."""
    if not text:
        return {}
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise ArgumentError(f"invalid CAP_ARGS: not JSON ({e.msg} at column {e.colno}): expected a JSON object") from None
    if not isinstance(obj, dict):
        raise ArgumentError("invalid CAP_ARGS: expected a JSON object such as {\"portMappings\": [...]}")
    return obj
