"""`cnirun update CONTAINER [--ingress-rate R|none] [--egress-rate R|none] [--ingress-allow P ...] [--egress-allow P ...]`.

Rate limits and the firewall policy of a running container, live. Parsed by
hand, without typer: update is timed against a full ADD (bench/). The work is
cnirun.live.verbs's (lifecycle.set_bandwidth / set_policy: only the bandwidth
or cnirun-policy plugin runs again, with the cached result).
"""
from __future__ import annotations

import sys

from .errors import fail, one_line_errors

USAGE = """\
usage: cnirun update CONTAINER [--ingress-rate RATE[:BURST]|none] [--egress-rate RATE[:BURST]|none]
                               [--ingress-allow PEER[:PORTS]|nobody|none]... [--egress-allow ...]...

Change a running container's rate limits or firewall policy without
restarting it: only the bandwidth or cnirun-policy plugin runs again (with the
cached result), so the container keeps its address, MAC and the open
connections still allowed. A direction not named stays as it is.

Rates: `none` removes a limit. RATE: 10mbit, 500kbit, 1gbit, 2mbps (bytes/s);
BURST: 64kb, 1mb (default: 20 ms at the rate, at least 32kb).

Policy: the --ingress-allow values (repeatable) replace the list of peers that
may open connections to the container, --egress-allow those it may open
connections to. PEER: a container or alias name, net:NETWORK, a CIDR or host;
PORTS: 80, 80/tcp, 8000-8100/udp, several with commas. `nobody` allows no
peer; `none` removes the direction's policy (everything allowed again). Under
an egress policy the network's DNS resolver stays reachable.

Examples:
  cnirun update web --ingress-rate 10mbit
  cnirun update web --egress-rate 1mbit:64kb --ingress-rate none
  cnirun update db --ingress-allow web:5432 --ingress-allow host
  cnirun update worker --egress-allow queue:5672 --ingress-allow nobody
  cnirun update db --ingress-allow none
"""
RATES = ("--ingress-rate", "--egress-rate")
ALLOWS = ("--ingress-allow", "--egress-allow")
BAD_VALUE = 125  # a value that does not parse: as `cnirun run`, nothing was changed


def main(args: list[str]) -> int:
    if not args or args[0] in ("-h", "--help"):
        sys.stdout.write(USAGE)
        return 0 if args else 1
    rates: dict[str, str] = {}
    allows: dict[str, list[str]] = {}
    pos: list[str] = []
    i = 0
    while i < len(args):
        a = args[i]
        flag, eq, inline = a.partition("=")
        if flag in RATES or flag in ALLOWS:
            if eq:
                value, i = inline, i + 1
            elif i + 1 < len(args):
                value, i = args[i + 1], i + 2
            else:
                fail(f"option {flag} needs a value: " + ("a rate such as 10mbit, or none" if flag in RATES
                                                          else "PEER[:PORTS], nobody or none"))
            if flag in RATES:
                rates[flag] = value
            else:
                allows.setdefault(flag, []).append(value)
        elif a in ("-h", "--help"):
            sys.stdout.write(USAGE)
            return 0
        elif a.startswith("-"):
            # docker update's options (memory, cpus, restart policy, ...) are the engine's to change.
            from ..engines import named_engine

            engine = named_engine()
            fail(f"unknown option {a!r} for update: cnirun update changes rate limits (--ingress-rate, "
                 f"--egress-rate) and firewall policies (--ingress-allow, --egress-allow); a container's "
                 f"resources and restart policy: {engine} update {flag} ...")
        else:
            pos.append(a)
            i += 1
    if len(pos) != 1:
        fail("cnirun update takes one container: cnirun update CONTAINER --ingress-rate 10mbit")
    if not rates and not allows:
        fail("nothing to update: give --ingress-rate/--egress-rate (a rate such as 10mbit, or none) or "
             "--ingress-allow/--egress-allow (PEER[:PORTS], nobody or none)")
    from ..live import verbs as live

    with one_line_errors(BAD_VALUE):
        rate_kw, allow_kw = _parsed(rates, allows)
    with one_line_errors():
        if rates:
            from ..network.rates import describe

            network, value = live.update_rates(pos[0], **rate_kw)
            sys.stdout.write(f"{pos[0]}: {network}: {describe(value)}\n")
        if allows:
            from ..network.policies import describe as describe_policy

            _, policy = live.update_policy(pos[0], **allow_kw)
            sys.stdout.write(f"{pos[0]}: {describe_policy(policy) if policy else 'no firewall policy'}\n")
    return 0


def _parsed(rates: dict[str, str], allows: dict[str, list[str]]) -> tuple[dict[str, object], dict[str, object]]:
    """The flags' values parsed ({"ingress": ...}): ArgumentError for the first bad one, before anything runs."""
    rate_kw: dict[str, object] = {}
    if rates:
        from ..network.rates import parse_rate_or_none

        rate_kw = {k[2:].split("-")[0]: parse_rate_or_none(v, k) for k, v in rates.items()}
    allow_kw: dict[str, object] = {}
    if allows:
        from ..network.policies import parse_allow

        allow_kw = {k[2:].split("-")[0]: parse_allow(v, k) for k, v in allows.items()}
    return rate_kw, allow_kw


def run(args: list[str]) -> int:
    try:
        return main(args)
    except SystemExit as e:
        return int(e.code or 0) if not isinstance(e.code, str) else 1
