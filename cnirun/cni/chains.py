"""The iptables chains the reference plugins share, created once, up front, under the host lock.

portmap (CNI-HOSTPORT-DNAT with its PREROUTING/OUTPUT jumps,
CNI-HOSTPORT-SETMARK, CNI-HOSTPORT-MASQ with its POSTROUTING jump) and
firewall (CNI-FORWARD with its FORWARD jump, CNI-ADMIN) create these the
first time they run, by check-then-create: two plugins running at once both
find a chain missing and the second `iptables -N` fails ("Chain already
exists"), or both insert a jump. Once they exist, the plugins only check
them, and chains can run in parallel (lock.py).

So before a chain runs, `ensure` creates what its plugins will look for,
exactly as they would (same rules, same positions, so their own -C checks
find them), holding the host lock exclusively (no chain runs meanwhile),
and leaves a marker beside the lock file; later runs only stat the marker
(/run is a tmpfs: a reboot, which empties iptables, empties it too). If
someone flushes iptables behind our back, the plugins recreate the chains
themselves and may race once: runtime.CNI.add then drops the markers,
creates the chains again and retries (`forget`).

Programs run through invoke.run_program, not subprocess (start-up cost: see cnirun.core).
"""
from __future__ import annotations

import os

from ..core.lock import host_lock, lock_dir

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .config import NetworkConfigList

DNAT, SETMARK, MASQ = "CNI-HOSTPORT-DNAT", "CNI-HOSTPORT-SETMARK", "CNI-HOSTPORT-MASQ"
FORWARD_CHAIN, ADMIN_CHAIN = "CNI-FORWARD", "CNI-ADMIN"
_SBIN = ("/usr/sbin", "/sbin", "/usr/local/sbin", "/usr/bin", "/bin")

# (table, chain, rules of the chain, (entry chain, entry rule, insert first?)...)
Step = tuple[str, str, list[list[str]], list[tuple[str, list[str], bool]]]


def _portmap_steps(bit: int | None) -> list[Step]:
    # portmap 1.1.1's genToplevelDnatChain, genSetMarkChain, genMarkMasqChain
    steps: list[Step] = [
        ("nat", DNAT, [], [(c, ["-m", "addrtype", "--dst-type", "LOCAL", "-j", DNAT], False)
                           for c in ("PREROUTING", "OUTPUT")]),
    ]
    if bit is not None:
        mark = f"{1 << bit:#x}/{1 << bit:#x}"
        steps.append(("nat", SETMARK, [["-m", "comment", "--comment", "CNI portfwd masquerade mark",
                                        "-j", "MARK", "--set-xmark", mark]], []))
        steps.append(("nat", MASQ, [["-m", "mark", "--mark", mark, "-j", "MASQUERADE"]],
                      [("POSTROUTING", ["-m", "comment", "--comment", "CNI portfwd requiring masquerade",
                                        "-j", MASQ], True)]))
    return steps


def _firewall_steps(admin: str) -> list[Step]:
    # firewall 1.1.1's iptables backend: setupChains (both rules go first in their chain)
    return [
        ("filter", admin, [], []),
        ("filter", FORWARD_CHAIN, [], [("FORWARD", ["-m", "comment", "--comment", "CNI firewall plugin rules",
                                                    "-j", FORWARD_CHAIN], True)]),
        ("filter", FORWARD_CHAIN, [], [(FORWARD_CHAIN, ["-m", "comment", "--comment", "CNI firewall plugin admin overrides",
                                             "-j", admin], True)]),
    ]


def needs(net: NetworkConfigList) -> list[str]:
    """The shared-chain sets `net`'s plugins use, as marker names: "<tool>.<plugin>.<parameter>"."""
    out: list[str] = []
    from .config import has_ipv6

    v6 = has_ipv6(net)
    for p in net.plugins:
        if p.type == "portmap":
            snat = p.raw.get("snat", True) is not False and not p.raw.get("externalSetMarkChain")
            bit = p.raw.get("markMasqBit", 13)
            param = str(bit) if snat and isinstance(bit, int) and 0 <= bit <= 31 else "nosnat"
            out += [f"{tool}.portmap.{param}" for tool in ("iptables", "ip6tables")[: 2 if v6 else 1]]
        elif p.type == "firewall" and p.raw.get("backend", "iptables") in ("iptables", ""):
            admin = str(p.raw.get("iptablesAdminChainName") or ADMIN_CHAIN)
            if admin.replace("-", "").replace("_", "").isalnum():
                # firewall sets up both families whatever the addresses
                out += [f"{tool}.firewall.{admin}" for tool in ("iptables", "ip6tables")]
    return out


def _marker(name: str, host: str | None) -> str:
    return os.path.join(lock_dir(host), "chains." + name)


def ensure(net: NetworkConfigList, host: str | None = None) -> None:
    """Create the shared chains `net`'s plugins use, unless done already (one stat per set when done)."""
    todo = [n for n in needs(net) if not os.path.exists(_marker(n, host))]
    if not todo:
        return
    from ..core import trace

    with trace.span("chains setup", ", ".join(todo)), host_lock(host):
        for name in todo:
            if not os.path.exists(_marker(name, host)) and _create(name):
                os.makedirs(lock_dir(host), mode=0o755, exist_ok=True)
                with open(_marker(name, host), "w"):
                    pass


def forget(net: NetworkConfigList, host: str | None = None) -> bool:
    """Drop `net`'s markers (the chains were removed behind our back); whether there were any."""
    dropped = False
    for name in needs(net):
        try:
            os.unlink(_marker(name, host))
            dropped = True
        except FileNotFoundError:
            pass
    return dropped


def _tool(name: str) -> str:
    from ..core.fsutil import which

    return which(name, _SBIN)


def _create(name: str) -> bool:
    """Create one set; False when the tool is missing or fails (then the plugins create it themselves)."""
    from .invoke import run_program

    tool_name, plugin, param = name.split(".", 2)
    tool = _tool(tool_name)
    if not tool:
        return False
    steps = _portmap_steps(None if param == "nosnat" else int(param)) if plugin == "portmap" else _firewall_steps(param)

    def ipt(table: str, *args: str) -> bool:
        return run_program([tool, "-w", "-t", table, *args])[0] == 0

    for table, chain, rules, entries in steps:
        if not ipt(table, "-S", chain) and not ipt(table, "-N", chain) and not ipt(table, "-S", chain):
            return False
        for rule in rules:
            if not ipt(table, "-C", chain, *rule) and not ipt(table, "-A", chain, *rule):
                return False
        for entry, rule, first in entries:
            if not ipt(table, "-C", entry, *rule) and not ipt(table, *(("-I", entry, "1") if first else ("-A", entry)), *rule):
                return False
    return True
