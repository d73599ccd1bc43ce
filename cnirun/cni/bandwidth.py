"""The host side of the reference bandwidth plugin: its qdiscs and ifb devices, and what its DEL leaves.

The plugin (1.1.x) shapes ingress with a TBF qdisc on the host end of the
veth and egress with an ifb device it names bwp<hash>; its DEL removes only
the ifb, so the qdiscs it left on the host veth must go before it is ADDed
again (clear_host_shaping), or its ADD fails with "create qdisc: file
exists". Rates as people write them: network/rates.py.
"""
from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def host_veth(result: dict[str, Any] | None) -> str:
    """The host end of the container's veth in a cached result ('' when there is none).

    The result lists the bridge, the host veth and the container interface;
    the host-side ones have no sandbox, and the bridge has a bridge/ dir in
    sysfs.
    """
    for itf in (result or {}).get("interfaces") or []:
        name = itf.get("name") if isinstance(itf, dict) else None
        if not name or itf.get("sandbox") or "/" in name:
            continue
        if os.path.isdir(f"/sys/class/net/{name}/bridge"):
            continue
        if os.path.exists(f"/sys/class/net/{name}"):
            return str(name)
    return ""


def ifb_name(network: str, container_id: str) -> str:
    """The bandwidth plugin's ifb device for an attachment (utils.MustFormatHashWithPrefix(15, "bwp", ...))."""
    import hashlib

    return ("bwp" + hashlib.sha512((network + container_id).encode()).hexdigest())[:15]


def _tc(*args: str) -> tuple[int, str]:
    import subprocess

    try:
        p = subprocess.run(["tc", *args], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return 1, str(e)
    return p.returncode, p.stdout + p.stderr


def qdiscs(dev: str) -> list[str]:
    """`tc qdisc show dev DEV` lines."""
    rc, out = _tc("qdisc", "show", "dev", dev)
    return out.splitlines() if rc == 0 else []


def all_qdiscs() -> dict[str, list[str]]:
    """Every device's `tc qdisc show` lines (without 'dev NAME'), from one exec."""
    rc, out = _tc("qdisc", "show")
    found: dict[str, list[str]] = {}
    if rc != 0:
        return found
    for ln in out.splitlines():
        words = ln.split()
        if "dev" in words and words.index("dev") + 1 < len(words):
            i = words.index("dev")
            found.setdefault(words[i + 1], []).append(" ".join(words[:i] + words[i + 2:]))
    return found


def shaping(dev: str, lines: list[str] | None = None) -> tuple[bool, bool]:
    """(root TBF present, ingress qdisc present) on `dev`: what the plugin's ADD made there.

    `lines`: the device's qdiscs when already read (all_qdiscs()).
    """
    if lines is None:
        lines = qdiscs(dev)
    return (any(ln.startswith("qdisc tbf ") and " root " in ln for ln in lines),
            any(ln.startswith("qdisc ingress ffff:") for ln in lines))


def clear_host_shaping(result: dict[str, Any] | None, value: Any) -> None:
    """Remove the qdiscs the bandwidth plugin put on the host veth for `value` (its DEL leaves them).

    Called after the plugin's DEL with `value` (the capability it was ADDed
    with) and before its ADD, so that the ADD can make them again with the new
    rates: the TBF root for an ingress limit, the ingress qdisc (and its
    mirred filter) for an egress limit. One `tc -batch` exec; -force goes on
    past a qdisc that is gone already.
    """
    dev = host_veth(result)
    if not dev or not isinstance(value, dict):
        return
    lines = []
    if value.get("ingressRate"):
        lines.append(f"qdisc del dev {dev} root\n")
    if value.get("egressRate"):
        lines.append(f"qdisc del dev {dev} ingress\n")
    if lines:
        # invoke's exec, not subprocess (~7 ms of import on `cnirun update`, with locale and re); a
        # failure is ignored: the plugin's ADD then reports what is in its way.
        from .invoke import run_program

        run_program(["tc", "-force", "-batch", "-"], timeout=30, stdin="".join(lines).encode())
