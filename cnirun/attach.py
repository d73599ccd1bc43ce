"""Attaching one container to several networks, and detaching it again.

Shared by every entry point (`cnirun exec`, `cnirun run`, the OCI hook), so
that there is one code path for "eth0, eth1, ... in order; undo all on
failure" and "DEL everything cached for this container".
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import cache as cnicache
from .config import NetworkConfigList
from .errors import CNIError
from .runtime import CNI, RuntimeConf


@dataclass
class Attachment:
    """One network attached to a container: which interface and what it got."""

    network: str
    ifname: str
    result: dict[str, Any]

    def addresses(self) -> list[str]:
        ips = self.result.get("ips") or []
        out = [str(ip.get("address", "")) for ip in ips if isinstance(ip, dict)]
        for key in ("ip4", "ip6"):  # 0.1/0.2 results
            if isinstance(self.result.get(key), dict) and self.result[key].get("ip"):
                out.append(str(self.result[key]["ip"]))
        return [a for a in out if a]


@dataclass
class NetworkOptions:
    """Per-network runtime arguments (capability args and CNI_ARGS)."""

    capability_args: dict[str, Any] = field(default_factory=dict)
    args: list[tuple[str, str]] = field(default_factory=list)


def ifname_for(index: int) -> str:
    return f"eth{index}"


def attach(
    cni: CNI,
    networks: list[NetworkConfigList],
    container_id: str,
    netns: str,
    options: list[NetworkOptions] | None = None,
) -> list[Attachment]:
    """ADD each network as eth0, eth1, ...; on any failure DEL those done, then raise."""
    done: list[Attachment] = []
    try:
        for i, net in enumerate(networks):
            opts = options[i] if options and i < len(options) else NetworkOptions()
            rt = RuntimeConf(
                container_id=container_id,
                netns=netns,
                ifname=ifname_for(i),
                args=list(opts.args),
                capability_args=dict(opts.capability_args),
            )
            result = cni.add(net, rt)
            done.append(Attachment(net.name, rt.ifname, result))
    except BaseException:
        for att in reversed(done):
            try:
                cni.delete(att.network, RuntimeConf(container_id=container_id, netns=netns, ifname=att.ifname))
            except CNIError:
                pass  # the original error matters more; gc retries from the cache
        raise
    return done


def cached_attachments(cni: CNI, container_id: str) -> list[cnicache.CachedAttachment]:
    """Every cached attachment of a container, in interface order."""
    atts = [a for a in cnicache.list_attachments(cni.cache_dir) if a.container_id == container_id]
    return sorted(atts, key=lambda a: (len(a.ifname), a.ifname))


def detach(cni: CNI, container_id: str, netns: str = "") -> list[CNIError]:
    """DEL every cached attachment of the container, last interface first.

    Goes on past errors (each failed one keeps its cache file for `cnirun gc`)
    and returns them.
    """
    errors: list[CNIError] = []
    for att in reversed(cached_attachments(cni, container_id)):
        try:
            cni.delete(att.network_name, RuntimeConf(container_id=container_id, netns=netns, ifname=att.ifname))
        except CNIError as e:
            errors.append(e)
    return errors
