"""`cnirun update CONTAINER [--ingress-rate R|none] [--egress-rate R|none]`: rate limits of a running container.

Parsed by hand, without typer: update is timed against a full ADD
(bench/bench_policy.py). The work is cnirun.live.verbs's (lifecycle.set_bandwidth:
only the bandwidth plugin runs again, with the cached result).
"""
from __future__ import annotations

import sys

from .errors import fail, one_line_errors

USAGE = """\
usage: cnirun update CONTAINER [--ingress-rate RATE[:BURST]|none] [--egress-rate RATE[:BURST]|none]

Change a running container's rate limits without restarting it: only the
bandwidth plugin runs again (with the cached result), so the container keeps
its address, MAC and open connections. `none` removes a limit; a direction
not named stays as it is. RATE: 10mbit, 500kbit, 1gbit, 2mbps (bytes/s);
BURST: 64kb, 1mb (default: 20 ms at the rate, at least 32kb).

Examples:
  cnirun update web --ingress-rate 10mbit
  cnirun update web --egress-rate 1mbit:64kb --ingress-rate none
"""
OPTIONS = ("--ingress-rate", "--egress-rate")


def main(args: list[str]) -> int:
    if not args or args[0] in ("-h", "--help"):
        sys.stdout.write(USAGE)
        return 0 if args else 1
    values: dict[str, str] = {}
    pos: list[str] = []
    i = 0
    while i < len(args):
        a = args[i]
        flag, eq, inline = a.partition("=")
        if flag in OPTIONS:
            if eq:
                values[flag], i = inline, i + 1
            elif i + 1 < len(args):
                values[flag], i = args[i + 1], i + 2
            else:
                fail(f"option {flag} needs a value: a rate such as 10mbit, or none")
        elif a in ("-h", "--help"):
            sys.stdout.write(USAGE)
            return 0
        elif a.startswith("-"):
            # docker update's options (memory, cpus, restart policy, ...) are the engine's to change.
            from ..engines import named_engine

            engine = named_engine()
            fail(f"unknown option {a!r} for update: cnirun update changes rate limits (--ingress-rate, "
                 f"--egress-rate); a container's resources and restart policy: {engine} update {flag} ...")
        else:
            pos.append(a)
            i += 1
    if len(pos) != 1:
        fail("cnirun update takes one container: cnirun update CONTAINER --ingress-rate 10mbit")
    if not values:
        fail("nothing to update: give --ingress-rate and/or --egress-rate (a rate such as 10mbit, or none)")
    from ..live import verbs as live
    from ..network.rates import describe, parse_rate_or_none

    with one_line_errors():
        kw = {k[2:].split("-")[0]: parse_rate_or_none(v, k) for k, v in values.items()}
        network, value = live.update_rates(pos[0], **kw)
    sys.stdout.write(f"{pos[0]}: {network}: {describe(value)}\n")
    return 0


def run(args: list[str]) -> int:
    try:
        return main(args)
    except SystemExit as e:
        return int(e.code or 0) if not isinstance(e.code, str) else 1
