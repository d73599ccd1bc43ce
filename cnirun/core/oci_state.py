"""What the OCI hook reads about a container: the runtime state and the bundle's config.

The state (the hook's stdin) and <bundle>/config.json are written by the OCI
runtime and the engine, not by the container; the annotations inside them are
the container's own choice (labels, --annotation) and are parsed elsewhere,
strictly (cnirun.network.options). From config.json the hook takes only what it must
check before it acts as root: the network namespace entry (is the namespace
the container's own new one?), the hostname and the /etc/hosts mount.
"""
from __future__ import annotations

import os

from . import jsonfast as json

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

MAX_CONFIG_BYTES = 16 << 20  # a config.json is a few KiB; refuse to read a runaway one


class HookError(Exception):
    """Bad hook input (stage, state JSON, a container cnirun must not attach); shown as one line."""


class OCIState:
    """The parts of the OCI runtime state the hook uses."""

    def __init__(
        self, id: str, pid: int = 0, bundle: str = "", status: str = "", annotations: dict[str, str] | None = None
    ) -> None:
        self.id = id
        self.pid = pid
        self.bundle = bundle
        self.status = status
        self.annotations = annotations or {}


def parse_state(data: bytes) -> OCIState:
    """Parse the state JSON a runtime writes to a hook's stdin."""
    try:
        obj = json.loads(data or b"")
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise HookError("the OCI state on stdin is not JSON: run cnirun hook from an OCI runtime") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("id"), str) or not obj["id"]:
        raise HookError("the OCI state on stdin has no container id: run cnirun hook from an OCI runtime")
    pid = obj.get("pid") or 0
    if not isinstance(pid, int) or pid < 0:
        raise HookError(f"the OCI state on stdin has an invalid pid {pid!r}")
    ann = obj.get("annotations")
    ann = {} if ann is None else ann
    if not isinstance(ann, dict):
        raise HookError("the OCI state on stdin has invalid annotations: expected an object")
    return OCIState(
        id=obj["id"],
        pid=pid,
        bundle=str(obj.get("bundle") or ""),
        status=str(obj.get("status") or ""),
        annotations={str(k): str(v) for k, v in ann.items()},
    )


class OCIConfig:
    """The parts of <bundle>/config.json the hook checks.

    netns: None when linux.namespaces has no `network` entry (the container
    shares the runtime's, i.e. the host's, namespace: --network host); '' for
    a new namespace made for this container; else the path of an existing
    namespace it joins (--network container:X, ns:PATH, Docker's host mode).
    """

    def __init__(
        self, netns: str | None, hostname: str = "", hosts_source: str = "", hosts_options: list[str] | None = None,
        resolv_source: str = "", resolv_options: list[str] | None = None,
    ) -> None:
        self.netns = netns
        self.hostname = hostname
        self.hosts_source = hosts_source
        self.hosts_options = hosts_options or []
        self.resolv_source = resolv_source
        self.resolv_options = resolv_options or []


def config_from_dict(spec: dict[str, Any]) -> OCIConfig:
    linux = spec.get("linux")
    namespaces = linux.get("namespaces") if isinstance(linux, dict) else None
    netns: str | None = None
    for ns in namespaces if isinstance(namespaces, list) else []:
        if isinstance(ns, dict) and ns.get("type") == "network":
            path = ns.get("path")
            netns = path if isinstance(path, str) else ("" if path is None else str(path))
    mounts: dict[str, tuple[str, list[str]]] = {}
    for m in spec.get("mounts") or []:
        if isinstance(m, dict) and m.get("destination") in ("/etc/hosts", "/etc/resolv.conf"):
            # the last mount of a destination is the one the container sees
            opts = m.get("options")
            mounts[str(m["destination"])] = (m.get("source") if isinstance(m.get("source"), str) else "",
                                             [str(o) for o in opts] if isinstance(opts, list) else [])
    hostname = spec.get("hostname")
    hosts, resolv = mounts.get("/etc/hosts", ("", [])), mounts.get("/etc/resolv.conf", ("", []))
    return OCIConfig(netns, hostname if isinstance(hostname, str) else "", hosts[0], hosts[1], resolv[0], resolv[1])


def read_config(bundle: str) -> OCIConfig:
    """Read <bundle>/config.json; HookError when it cannot be read (the hook then refuses)."""
    if not bundle or not os.path.isabs(bundle):
        raise HookError("the OCI state names no bundle: cnirun cannot check the container's network namespace")
    path = os.path.join(bundle, "config.json")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        chunks: list[bytes] = []
        total = 0
        try:
            while total <= MAX_CONFIG_BYTES:
                data = os.read(fd, 1 << 20)
                if not data:
                    break
                chunks.append(data)
                total += len(data)
        finally:
            os.close(fd)
        if total > MAX_CONFIG_BYTES:
            raise HookError(f"the OCI config {path} is larger than {MAX_CONFIG_BYTES >> 20} MiB")
        raw = b"".join(chunks)
        spec = json.loads(raw)
    except OSError as e:
        raise HookError(f"cannot read the OCI config {path}: {e.strerror}") from None
    except (ValueError, UnicodeDecodeError):
        raise HookError(f"the OCI config {path} is not JSON") from None
    if not isinstance(spec, dict):
        raise HookError(f"the OCI config {path} is not a JSON object")
    return config_from_dict(spec)
