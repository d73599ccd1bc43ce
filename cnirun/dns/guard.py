"""Who may ask a network's resolver: the containers on that network, and the host.

A network's resolver (cnirun.dns) listens on the network's gateway, which is
an address of the host. Without a rule, a container on another network
reaches it all the same (the host routes between its own addresses) and
gets the names of a network it does not share. So each resolver address
gets one rule per protocol, first in INPUT, that refuses DNS to it unless
the packet came in on the network's bridge or from the host itself:

    -I INPUT -d GW -p udp --dport 53 ! -i BRIDGE -m addrtype ! --src-type LOCAL
       -m comment --comment "cnirun-dns NETWORK STATE" -j REJECT

REJECT, not DROP: a client that asks the wrong resolver is told at once
instead of waiting out its timeouts. STATE tells apart the rules of two
cnirun state dirs (CNIRUN_STATE_DIR), so gc of one never removes another's.

The resolver's config is the record (cnirun.dns): written before the rules
go in, removed after they are gone; gc removes this state dir's rules whose
network has no record. iptables runs through invoke.run_program (start-up cost: see cnirun.core).
"""
from __future__ import annotations

PORT = "53"
TAG = "cnirun-dns"


def state_tag(dns_root: str) -> str:
    """A short stable name of the state dir, for the rules' comments."""
    import zlib

    return f"{zlib.crc32(dns_root.encode()) & 0xFFFFFFFF:08x}"


def _comment(network: str, state: str) -> str:
    return f"{TAG} {network} {state}"


def _rules(network: str, bridge: str, listen: list[str], state: str) -> list[tuple[str, list[str]]]:
    """(tool, rule without the chain) for each address and protocol."""
    out: list[tuple[str, list[str]]] = []
    for addr in listen:
        v6 = ":" in addr
        tool = "ip6tables" if v6 else "iptables"
        for proto in ("udp", "tcp"):
            reject = ["--reject-with", "tcp-reset"] if proto == "tcp" else []
            out.append((tool, [
                "-d", addr + ("/128" if v6 else "/32"), "!", "-i", bridge, "-p", proto, "-m", proto,
                "--dport", PORT, "-m", "addrtype", "!", "--src-type", "LOCAL",
                "-m", "comment", "--comment", _comment(network, state), "-j", "REJECT", *reject,
            ]))
    return out


def _quote(args: list[str]) -> str:
    return " ".join(f'"{a}"' if " " in a else a for a in args)


def _restore(tool: str, lines: list[str]) -> tuple[int, str]:
    from ..cni.invoke import run_program

    text = "*filter\n" + "".join(line + "\n" for line in lines) + "COMMIT\n"
    code, _, err = run_program([tool + "-restore", "-w", "--noflush"], stdin=text.encode())
    return code, err.decode(errors="replace").strip()


def _by_tool(rules: list[tuple[str, list[str]]]) -> dict[str, list[list[str]]]:
    out: dict[str, list[list[str]]] = {}
    for tool, rule in rules:
        out.setdefault(tool, []).append(rule)
    return out


def install(network: str, bridge: str, listen: list[str], state: str) -> str:
    """Put the network's rules in; '' when done, else what went wrong.

    Unchecked, in one iptables-restore per family (all of a family's rules go
    in together, or none): each exec costs a resolver's start 2-5 ms, and it
    starts with the first container of its network. So the caller takes out
    whatever a record says may be in place first (remove()): no duplicates.
    """
    for tool, rules in _by_tool(_rules(network, bridge, listen, state)).items():
        code, err = _restore(tool, ["-I INPUT 1 " + _quote(r) for r in rules])
        if code != 0:
            return f"{tool}-restore: {err or f'exit {code}'}"
    return ""


def remove(network: str, bridge: str, listen: list[str], state: str) -> None:
    """Take the network's rules out (those present); never fails on one already gone."""
    from ..cni.invoke import run_program

    for tool, rules in _by_tool(_rules(network, bridge, listen, state)).items():
        if _restore(tool, ["-D INPUT " + _quote(r) for r in rules])[0] == 0:
            continue
        for r in rules:  # some were gone already (a flush): the restore refused them all
            while run_program([tool, "-w", "-D", "INPUT", *r])[0] == 0:
                pass


def missing(network: str, bridge: str, listen: list[str], state: str) -> int:
    """How many of the network's rules are not in place (`cnirun network reload`)."""
    from ..cni.invoke import run_program

    return sum(run_program([tool, "-w", "-C", "INPUT", *r])[0] != 0
               for tool, r in _rules(network, bridge, listen, state))


def collect(networks: set[str], state: str) -> list[str]:
    """gc: remove this state dir's rules for networks not in `networks` (no resolver record). What was done."""
    from ..cni.invoke import run_program

    done: list[str] = []
    for tool in ("iptables", "ip6tables"):
        code, out, _ = run_program([tool, "-w", "-S", "INPUT"])
        if code != 0:
            continue
        for line in out.decode(errors="replace").splitlines():
            words = line.split('--comment "', 1)
            if len(words) < 2 or not words[1].startswith(TAG + " "):
                continue
            parts = words[1].split('"', 1)[0].split()
            if len(parts) != 3 or parts[2] != state or parts[1] in networks:
                continue
            import shlex

            rule = shlex.split(line)[2:]  # after "-A INPUT"
            if run_program([tool, "-w", "-D", "INPUT", *rule])[0] == 0:
                done.append(f"removed a DNS guard rule of gone network {parts[1]} ({tool})")
    return done
