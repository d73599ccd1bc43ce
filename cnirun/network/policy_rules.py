"""A policy's nftables table in the container's network namespace: its text, and nft run in that netns.

One table per attachment, `inet cnirun_<IFNAME>`, holding for each direction
that has a policy one base chain (ingress: hook input; egress: hook output)
and four named sets: <dir>_any4/<dir>_any6 (peers allowed on every port,
type ipv4_addr/ipv6_addr) and <dir>_svc4/<dir>_svc6 (address . protocol .
port, for peers allowed on some ports), all with interval flags so a CIDR or
a port range is one element. A chain's rules, in order:

    iifname != IFNAME accept          another attachment's traffic is its own table's
    ct direction reply accept         replies always pass
    ct state related accept           (ICMP errors of allowed connections)
    icmpv6 type {nd-*} accept         neighbour discovery keeps IPv6 working
    tcp flags rst accept              resets and unreachables open nothing, and are what this
    icmp(v6) type destination-unreachable accept   table's own rejects send (their conntrack is the refused packet's)
    ip saddr @in_any4 accept          (and ip6, and the svc sets: address . l4proto . th dport)
    meta l4proto tcp reject with tcp reset
    reject with icmpx admin-prohibited

So the rule count per container is constant however many addresses its
peers cover; a peer coming or going changes a set (set_script), never a
chain. Packets of a connection's original direction are checked on every
packet, not only the first: a connection a new policy no longer allows is
reset by its next packet, one it still allows goes on. Refused connections
are rejected (a reset, or ICMP administratively prohibited) rather than
dropped, so a client fails at once instead of timing out.

The kernel's interval sets of concatenations refuse overlapping elements:
svc_elements makes them disjoint first.

Start-up cost: see cnirun.core (nft runs through cnirun.cni.invoke.run_program).
"""
from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Iterable

TABLE_PREFIX = "cnirun_"
NFT = "nft"
NSENTER = "nsenter"
_IFNAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")
_CHAIN = {"ingress": ("in", "input", "iifname", "saddr"), "egress": ("out", "output", "oifname", "daddr")}
RULES_PER_CHAIN = 13


class NftError(Exception):
    """nft failed in the netns: its first line of stderr."""


def table_name(ifname: str) -> str:
    """The attachment's table; ValueError for an interface name nft could not quote safely."""
    if not ifname or not set(ifname) <= _IFNAME_CHARS:
        raise ValueError(f"interface name {ifname!r} cannot carry a firewall policy: use letters, digits, _ . -")
    return TABLE_PREFIX + ifname


def set_names(directions: Iterable[str]) -> list[str]:
    return [f"{_CHAIN[d][0]}_{kind}{fam}" for d in directions for kind in ("any", "svc") for fam in ("4", "6")]


# -- elements -------------------------------------------------------------------------
def any_elements(cidrs: Iterable[str]) -> tuple[list[str], list[str]]:
    """(v4, v6) disjoint CIDRs covering `cidrs`."""
    from ..core import cidr

    nets = [cidr.parse(c) for c in cidrs]
    return tuple([n.network_str() for n in cidr.collapse([n for n in nets if n.version == v])]  # type: ignore[return-value]
                 for v in (4, 6))


def svc_elements(entries: Iterable[tuple[str, str, int, int]]) -> tuple[list[str], list[str]]:
    """(v4, v6) nft elements 'CIDR . PROTO . LOW-HIGH' of (cidr, protocol, low, high) entries, disjoint.

    Per protocol, the port axis is cut at every range's ends; each piece gets
    the collapsed CIDRs of the ranges covering it, and neighbouring pieces
    with the same CIDRs are joined again.
    """
    from ..core import cidr

    by_range: dict[tuple[int, str, int, int], list[Any]] = {}
    for text, proto, low, high in entries:
        net = cidr.parse(text)
        by_range.setdefault((net.version, proto, low, high), []).append(net)
    out: dict[int, list[str]] = {4: [], 6: []}
    for version, proto in sorted({(v, p) for v, p, _, _ in by_range}):
        ranges = {(lo, hi): nets for (v, p, lo, hi), nets in by_range.items() if (v, p) == (version, proto)}
        cuts = sorted({lo for lo, _ in ranges} | {hi + 1 for _, hi in ranges})
        pieces: list[tuple[int, int, tuple[Any, ...]]] = []
        for start, end in zip(cuts, cuts[1:]):
            covering = [n for (lo, hi), nets in ranges.items() if lo <= start and end - 1 <= hi for n in nets]
            nets = tuple(n.network_str() for n in cidr.collapse(covering))
            if pieces and pieces[-1][1] == start - 1 and pieces[-1][2] == nets:
                pieces[-1] = (pieces[-1][0], end - 1, nets)
            elif nets:
                pieces.append((start, end - 1, nets))
        for lo, hi, nets in pieces:
            ports = str(lo) if lo == hi else f"{lo}-{hi}"
            out[version] += [f"{n} . {proto} . {ports}" for n in nets]
    return out[4], out[6]


# -- the table's text --------------------------------------------------------------------
def _chain(direction: str, ifname: str) -> str:
    d, hook, itf, addr = _CHAIN[direction]
    return (
        f"  chain {direction} {{\n"
        f"    type filter hook {hook} priority filter; policy accept;\n"
        f"    {itf} != \"{ifname}\" accept\n"
        "    ct direction reply accept\n"
        "    ct state related accept\n"
        "    icmpv6 type { nd-router-solicit, nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert } accept\n"
        "    tcp flags rst accept\n"
        "    icmp type destination-unreachable accept\n"
        "    icmpv6 type destination-unreachable accept\n"
        f"    ip {addr} @{d}_any4 accept\n"
        f"    ip6 {addr} @{d}_any6 accept\n"
        f"    ip {addr} . meta l4proto . th dport @{d}_svc4 accept\n"
        f"    ip6 {addr} . meta l4proto . th dport @{d}_svc6 accept\n"
        "    meta l4proto tcp reject with tcp reset\n"
        "    reject with icmpx admin-prohibited\n"
        "  }\n"
    )


def _set_decl(name: str) -> str:
    fam = "ipv4_addr" if name.endswith("4") else "ipv6_addr"
    kind = fam if "_any" in name else f"{fam} . inet_proto . inet_service"
    return f"  set {name} {{ type {kind}; flags interval; }}\n"


def _elements(table: str, sets: dict[str, list[str]], flush: bool) -> str:
    out = ""
    for name, elems in sets.items():
        if flush:
            out += f"flush set inet {table} {name}\n"
        for i in range(0, len(elems), 1000):  # keeps each line of the script short
            out += f"add element inet {table} {name} {{ {', '.join(elems[i:i + 1000])} }}\n"
    return out


def table_script(ifname: str, sets: dict[str, list[str]]) -> str:
    """The whole table, replacing any earlier one in one transaction; `sets`: set name -> elements
    (set_names of the policy's directions)."""
    table = table_name(ifname)
    directions = [d for d in _CHAIN if f"{_CHAIN[d][0]}_any4" in sets]
    body = "".join(_set_decl(n) for n in sets) + "".join(_chain(d, ifname) for d in directions)
    return f"table inet {table} {{}}\ndelete table inet {table}\ntable inet {table} {{\n{body}}}\n" + \
        _elements(table, sets, flush=False)


def set_script(ifname: str, sets: dict[str, list[str]]) -> str:
    """Replace the sets' elements, one transaction: the chains stay as they are."""
    return _elements(table_name(ifname), sets, flush=True)


# -- nft in the netns --------------------------------------------------------------------
# What `nft --echo` prints once a transaction is committed. A commit that
# removed anything (set elements, a table) is in effect from that line on, but
# nft's exit then waits 10-20 ms for the kernel to free what was removed: a
# transaction is done at that line, and nft is reaped when it exits.
COMMITTED = b"# new generation "


def nft(netns: str, args: list[str], script: str = "", early: bool = False) -> bytes:
    """Run nft in `netns` (a path; "": the calling thread's own); its stdout, or NftError.
    `early` (a transaction, `-f -` from `script`): return once the commit is in effect, not when nft
    has exited. Only for one transaction at a time (apply, delete): nft --echo run by apply_many's
    threads in a hook's worker crashed (SIGSEGV, "Memory allocation failure") at 100 containers."""
    from ..cni.invoke import run_program

    commit = early and args == ["-f", "-"]
    if commit:
        args = ["--echo", *args]
    argv = [NSENTER, f"--net={netns}", NFT, *args] if netns else [NFT, *args]
    code, out, err = run_program(argv, stdin=script.encode(), until=COMMITTED if commit else b"")
    if code != 0:
        text = err.decode("utf-8", "replace").strip().splitlines()
        first = text[0] if text else f"nft exited with {code}"
        if code == 127:  # nsenter or nft could not be started
            first = f"{first} (the policy needs nft, Debian's nftables package, and nsenter, util-linux's)"
        raise NftError(first)
    return out


def apply(netns: str, script: str) -> None:
    nft(netns, ["-f", "-"], script, early=True)


CLONE_NEWNET = 0x40000000
PARALLEL = 32  # nft runs at once in apply_many


def apply_many(jobs: list[tuple[str, str]]) -> list[str]:
    """Run `nft -f -` with each (netns path, script) of `jobs` in that netns, all at once; per job '' or
    the error's first line.

    A commit in a netns waits mostly on the kernel (10-15 ms, not CPU), and
    nsenter adds an exec: so each job is a thread that enters the netns
    itself (setns(2) changes only the calling thread's) and spawns nft there,
    which inherits it. The thread then ends: nothing else ever runs in it.
    """
    import threading

    out = [""] * len(jobs)
    libc = _libc()

    def one(i: int) -> None:
        netns, script = jobs[i]
        try:
            fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as e:
            out[i] = f"{netns}: {e.strerror}"
            return
        try:
            if libc.setns(fd, CLONE_NEWNET) != 0:
                import ctypes

                out[i] = f"setns {netns}: {os.strerror(ctypes.get_errno())}"
                return
        finally:
            os.close(fd)
        try:
            nft("", ["-f", "-"], script)
        except NftError as e:
            out[i] = str(e)

    for start in range(0, len(jobs), PARALLEL):
        threads = [threading.Thread(target=one, args=(i,), daemon=True)
                   for i in range(start, min(start + PARALLEL, len(jobs)))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    return out


def _libc() -> Any:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)  # the process's own libc: dlopen(NULL)
    libc.setns.argtypes = (ctypes.c_int, ctypes.c_int)
    return libc


def delete(netns: str, ifname: str) -> None:
    """Remove the attachment's table; a missing table or netns is no error (DEL is idempotent)."""
    if not netns or not os.path.exists(netns):
        return
    try:
        nft(netns, ["-f", "-"], f"table inet {table_name(ifname)} {{}}\ndelete table inet {table_name(ifname)}\n",
            early=True)
    except NftError:
        if os.path.exists(netns):
            raise


def missing(netns: str, ifname: str, directions: Iterable[str]) -> list[str]:
    """What of the table `directions` need is not in `netns` (chains with all their rules, sets)."""
    from ..core.jsonfast import loads

    try:
        listing = loads(nft(netns, ["-j", "list", "table", "inet", table_name(ifname)]))
    except NftError:
        return [f"table inet {table_name(ifname)}"]
    objects = [o for o in listing.get("nftables", []) if isinstance(o, dict)]
    rules: dict[str, int] = {}
    for o in objects:
        if "rule" in o:
            rules[o["rule"].get("chain")] = rules.get(o["rule"].get("chain"), 0) + 1
    chains = {o["chain"].get("name") for o in objects if "chain" in o}
    sets = {o["set"].get("name") for o in objects if "set" in o}
    out = [f"chain {d}" for d in directions if d not in chains or rules.get(d, 0) != RULES_PER_CHAIN]
    return out + [f"set {n}" for n in set_names(directions) if n not in sets]
