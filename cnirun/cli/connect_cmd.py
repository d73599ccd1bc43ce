"""`cnirun network connect|disconnect`: one more network for a running container, or one less.

Parsed by hand, without typer: connect is timed against `cnirun cni add` of
the same chain (bench/bench_connect.py). The work is cnirun.live.verbs's
(lifecycle.connect / lifecycle.disconnect under the container's lock).
"""
from __future__ import annotations

import sys

from .errors import fail, one_line_errors

CONNECT_USAGE = """\
usage: cnirun network connect [--ip IP] [--ip6 IP6] [--mac MAC] [--alias NAME]...
                              [--ingress-rate RATE[:BURST]] [--egress-rate RATE[:BURST]] NETWORK CONTAINER

Attach NETWORK to a running container as its next free interface (eth1, ...).
CONTAINER: a name or ID (full or unique prefix), any Docker or Podman
container with its own network namespace.

Examples:
  cnirun network connect backend web
  cnirun network connect --ip 10.89.5.20 backend web
  cnirun network connect --ip6 fd00:89:5::20 dualnet web
  cnirun network connect --egress-rate 10mbit backend web
"""
DISCONNECT_USAGE = """\
usage: cnirun network disconnect [-f|--force] NETWORK CONTAINER

DEL exactly that attachment, from its cache entry; the others stay.
-f: also when the container is no longer running.

Examples:
  cnirun network disconnect backend web
"""


def _value(args: list[str], i: int, opt: str) -> tuple[str, int]:
    a = args[i]
    if "=" in a and a.startswith("--"):
        return a.split("=", 1)[1], i + 1
    if i + 1 >= len(args):
        fail(f"option {opt} needs a value: see cnirun network {args[0] if args else ''} --help")
    return args[i + 1], i + 2


def connect_main(args: list[str]) -> int:
    ip = mac = ip6 = ingress = egress = ""
    aliases: list[str] = []
    pos: list[str] = []
    i = 0
    while i < len(args):
        a = args[i]
        if a in ("-h", "--help"):
            sys.stdout.write(CONNECT_USAGE)
            return 0
        if a == "--ip" or a.startswith("--ip="):
            ip, i = _value(args, i, "--ip")
        elif a == "--ip6" or a.startswith("--ip6="):
            ip6, i = _value(args, i, "--ip6")
        elif a == "--mac" or a.startswith("--mac="):
            mac, i = _value(args, i, "--mac")
        elif a == "--ingress-rate" or a.startswith("--ingress-rate="):
            ingress, i = _value(args, i, "--ingress-rate")
        elif a == "--egress-rate" or a.startswith("--egress-rate="):
            egress, i = _value(args, i, "--egress-rate")
        elif a == "--alias" or a.startswith("--alias="):
            v, i = _value(args, i, "--alias")
            aliases.append(v)
        elif a.startswith("-") and a != "-":
            fail(f"unknown option {a!r} for network connect: see cnirun network connect --help")
        else:
            pos.append(a)
            i += 1
    if len(pos) != 2:
        fail("network connect takes a network and a container: cnirun network connect NETWORK CONTAINER")
    from ..live import verbs as live

    with one_line_errors():
        rates = {}
        if ingress or egress:
            from ..network.rates import parse_rate

            rates = {"ingress_rate": parse_rate(ingress, "--ingress-rate") if ingress else None,
                     "egress_rate": parse_rate(egress, "--egress-rate") if egress else None}
        live.connect(pos[1], pos[0], ip=ip, mac=mac, aliases=aliases, ip6=ip6, **rates)
    return 0


def disconnect_main(args: list[str]) -> int:
    force = False
    pos: list[str] = []
    for a in args:
        if a in ("-h", "--help"):
            sys.stdout.write(DISCONNECT_USAGE)
            return 0
        if a in ("-f", "--force"):
            force = True
        elif a.startswith("-"):
            fail(f"unknown option {a!r} for network disconnect: see cnirun network disconnect --help")
        else:
            pos.append(a)
    if len(pos) != 2:
        fail("network disconnect takes a network and a container: cnirun network disconnect NETWORK CONTAINER")
    from ..live import verbs as live

    with one_line_errors():
        problems = live.disconnect(pos[1], pos[0], force=force)
    if problems:
        fail("disconnect incomplete (cnirun gc retries): " + "; ".join(problems))
    return 0


def run(args: list[str]) -> int:
    """args: ['connect'|'disconnect', ...]."""
    try:
        return connect_main(args[1:]) if args[0] == "connect" else disconnect_main(args[1:])
    except SystemExit as e:
        return int(e.code or 0) if not isinstance(e.code, str) else 1
