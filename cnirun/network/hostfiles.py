"""/etc/hosts and /etc/resolv.conf for containers on CNI networks.

CNI gives a container an address and maybe DNS settings, but no files: the
engine's own are generated for its own networks. cnirun writes both files in
the container's state dir and bind-mounts them. A bind-mounted file must be
rewritten in place (same inode), never replaced by rename, or the container
keeps seeing the old one: `write_hosts` does that, so compose can add and
remove peer entries while containers run.
"""
from __future__ import annotations

import ipaddress
import os
from pathlib import Path
TYPE_CHECKING = False  # typing costs ~7 ms of start-up on `cnirun run`: annotations only
if TYPE_CHECKING:
    from typing import Any, Iterable
from ..core.value import Record

HOST_RESOLV_CONF = "/etc/resolv.conf"
# systemd-resolved's stub listens on 127.0.0.53; its upstream servers are here.
RESOLVED_UPSTREAM = "/run/systemd/resolve/resolv.conf"

_HOSTS_HEADER = [
    ("127.0.0.1", ["localhost"]),
    ("::1", ["localhost", "ip6-localhost", "ip6-loopback"]),
    ("fe00::0", ["ip6-localnet"]),
    ("ff00::0", ["ip6-mcastprefix"]),
    ("ff02::1", ["ip6-allnodes"]),
    ("ff02::2", ["ip6-allrouters"]),
]


class DNSConfig(Record):
    nameservers: list[str]
    search: list[str]
    options: list[str]

    _fields = ('nameservers', 'search', 'options')
    _defaults = {'nameservers': list, 'search': list, 'options': list}


def _rewrite_in_place(path: str | os.PathLike[str], text: str) -> None:
    # O_TRUNC on the existing file keeps its inode: bind mounts see the change.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def render_hosts(entries: Iterable[tuple[str, list[str]]]) -> str:
    lines = [f"{ip}\t{' '.join(names)}" for ip, names in _HOSTS_HEADER]
    lines += [f"{ip}\t{' '.join(names)}" for ip, names in entries if ip and names]
    return "\n".join(lines) + "\n"


def forget_addresses(paths: Iterable[str | os.PathLike[str]], addresses: set[str]) -> None:
    """Drop the lines naming any of `addresses` from these hosts files (in place; missing files are fine)."""
    for path in paths:
        try:
            with open(path, encoding="utf-8") as f:
                lines = f.read().splitlines()
        except OSError:
            continue
        kept = [ln for ln in lines if not (ln.split() and ln.split()[0] in addresses)]
        if len(kept) != len(lines):
            _rewrite_in_place(path, "\n".join(kept) + "\n")


def write_hosts(path: str | os.PathLike[str], entries: Iterable[tuple[str, list[str]]]) -> None:
    """Rewrite an /etc/hosts file in place: the standard localhost lines, then `entries` (ip, names)."""
    _rewrite_in_place(path, render_hosts(entries))


def parse_resolv_conf(text: str) -> DNSConfig:
    dns = DNSConfig()
    for line in text.splitlines():
        parts = line.split("#", 1)[0].split(";", 1)[0].split()
        if not parts:
            continue
        if parts[0] == "nameserver" and len(parts) > 1:
            dns.nameservers.append(parts[1])
        elif parts[0] in ("search", "domain"):
            dns.search = parts[1:]
        elif parts[0] == "options":
            dns.options.extend(parts[1:])
    return dns


def _is_loopback(ns: str) -> bool:
    try:
        return ipaddress.ip_address(ns.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def host_dns() -> DNSConfig:
    """The host's resolver settings minus loopback nameservers (unreachable from a container)."""
    text = ""
    try:
        text = Path(HOST_RESOLV_CONF).read_text()
    except OSError:
        pass
    dns = parse_resolv_conf(text)
    if any(_is_loopback(n) for n in dns.nameservers) and os.path.exists(RESOLVED_UPSTREAM):
        try:
            dns = parse_resolv_conf(Path(RESOLVED_UPSTREAM).read_text())
        except OSError:
            pass
    dns.nameservers = [n for n in dns.nameservers if not _is_loopback(n)]
    return dns


def dns_from_results(results: Iterable[dict[str, Any]]) -> DNSConfig:
    """Merge the `dns` sections of CNI results (first network first)."""
    dns = DNSConfig()
    for r in results:
        d = r.get("dns") if isinstance(r, dict) else None
        if not isinstance(d, dict):
            continue
        for key, target in (("nameservers", dns.nameservers), ("search", dns.search), ("options", dns.options)):
            for v in d.get(key) or []:
                if isinstance(v, str) and v not in target:
                    target.append(v)
    return dns


def container_dns(
    results: Iterable[dict[str, Any]], servers: list[str], search: list[str], resolvers: list[str] | None = None
) -> DNSConfig:
    """--dns/--dns-search win; then the container's networks' resolvers (cnirun.dns); then the CNI
    results' DNS; then the host's. Search domains and options: the results', else the host's."""
    dns = dns_from_results(results)
    if resolvers:
        dns.nameservers = list(dict.fromkeys(resolvers))[:3]  # resolv.conf reads at most three
        if not dns.search and not dns.options:
            host = host_dns()
            dns.search, dns.options = host.search, host.options
    if not dns.nameservers:
        host = host_dns()
        dns.nameservers = host.nameservers
        dns.search = dns.search or host.search
        dns.options = dns.options or host.options
    if servers:
        dns.nameservers = list(servers)
    if search:
        dns.search = [] if search == ["."] else list(search)
    return dns


def render_resolv_conf(dns: DNSConfig) -> str:
    lines = [f"nameserver {n}" for n in dns.nameservers]
    if dns.search:
        lines.append("search " + " ".join(dns.search))
    if dns.options:
        lines.append("options " + " ".join(dns.options))
    return "\n".join(lines) + "\n"


def write_resolv_conf(path: str | os.PathLike[str], dns: DNSConfig) -> None:
    _rewrite_in_place(path, render_resolv_conf(dns))


def touch(path: str | os.PathLike[str]) -> None:
    """Create an empty file to bind-mount now and fill before the container starts."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    os.close(fd)
