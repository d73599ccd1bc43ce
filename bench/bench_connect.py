"""Benchmarks of issue 10 (dynamic networks); medians of BENCH_RUNS (default 12) runs, one process.

1. `cnirun network connect NET C` (then disconnect, untimed) of a running
   `docker run --network none busybox` container  vs  `cnirun cni add NET
   NETNS` of the same chain into a plain named netns (then del, untimed).
   Target: <= 1.3x. NET has DNS, as every network has unless it opts out:
   connect also publishes the container's name and, NET being otherwise
   empty, starts the network's resolver (which the disconnect stops again);
   `cni add` does neither. So also:
1b. the same connect while another container (KEEPER) is on NET, so that
   its resolver runs already: the usual case of a network in use;
1c. the same connect to NET-nodns, the same chain with `"cnirun": {"dns":
   false}`: the attachment alone.
2. `cnirun port add C 127.0.0.1:PORT:80` (then port rm, untimed) of one port
   on the connected container  vs  the same full `cnirun cni add`.
   Target: <= 0.5x (only portmap runs again, never bridge/host-local/firewall).
NET: the default chain's shape (bridge + host-local, portmap, firewall),
10.191.200.0/24, bridge cnc10bench; network t10-bench. NET-nodns:
10.191.201.0/24, bridge cnc10benchn. Everything (netconf, cache, state)
lives in a tmp dir and is removed at the end (bench/_common.LiveWorld).
The warm-up connect finds the container through the engine (and records
it: cnirun.state.containers); the timed commands find it from that record.
"""
from __future__ import annotations

import os
import statistics
import sys

from _common import CNIRUN, LiveWorld, dns_chain, ratio, timed

RUNS = int(os.environ.get("BENCH_RUNS", "12"))
NET, BRIDGE, SUBNET = "t10-bench", "cnc10bench", "10.191.200.0/24"
NET2, BRIDGE2, SUBNET2 = "t10-bench-nodns", "cnc10benchn", "10.191.201.0/24"
NETNS, CONTAINER, KEEPER, PORT = "t10-bench", "t10-bench-c", "t10-bench-k", 19198


def main() -> int:
    add, connect, running, nodns, port = [], [], [], [], []
    with LiveWorld("t10-bench-", NETNS, CONTAINER, [BRIDGE, BRIDGE2], others=(KEEPER,)) as w:
        w.conflist(dns_chain(NET, BRIDGE, SUBNET, w.ipam, dns=True))
        w.conflist(dns_chain(NET2, BRIDGE2, SUBNET2, w.ipam, dns=False))
        env = w.env
        # Warm-up: the first connect pins the foreign container's netns and records it for the watcher.
        for net in (NET, NET2):
            timed(env, CNIRUN, "network", "connect", net, CONTAINER)
            timed(env, CNIRUN, "network", "disconnect", net, CONTAINER)
        for _ in range(RUNS):
            add.append(timed(env, CNIRUN, "cni", "add", NET, w.netns_path))
            timed(env, CNIRUN, "cni", "del", NET, w.netns_path)
            connect.append(timed(env, CNIRUN, "network", "connect", NET, CONTAINER))
            port.append(timed(env, CNIRUN, "port", "add", CONTAINER, f"127.0.0.1:{PORT}:80"))
            timed(env, CNIRUN, "port", "rm", CONTAINER, f"127.0.0.1:{PORT}:80")
            timed(env, CNIRUN, "network", "disconnect", NET, CONTAINER)
            nodns.append(timed(env, CNIRUN, "network", "connect", NET2, CONTAINER))
            timed(env, CNIRUN, "network", "disconnect", NET2, CONTAINER)
        timed(env, CNIRUN, "network", "connect", NET, KEEPER)
        for _ in range(RUNS):
            add.append(timed(env, CNIRUN, "cni", "add", NET, w.netns_path))
            timed(env, CNIRUN, "cni", "del", NET, w.netns_path)
            running.append(timed(env, CNIRUN, "network", "connect", NET, CONTAINER))
            timed(env, CNIRUN, "network", "disconnect", NET, CONTAINER)
    a, c, r, n, p = (statistics.median(x) for x in (add, connect, running, nodns, port))
    print(f"cnirun cni add (bridge+portmap+firewall):  {a * 1000:6.1f} ms")
    print(f"cnirun network connect (same chain):       {c * 1000:6.1f} ms  ratio {c / a:.2f}x (target <= 1.3x;"
          " with the network's DNS: name published, resolver started)")
    print(f"cnirun network connect (resolver running):  {r * 1000:5.1f} ms  ratio {r / a:.2f}x")
    print(f"cnirun network connect (same chain, no DNS): {n * 1000:4.1f} ms  ratio {n / a:.2f}x")
    print(f"cnirun port add (one port):                {p * 1000:6.1f} ms  ratio {p / a:.2f}x (target <= 0.5x)")
    ratio("connect", "network connect (same chain, DNS)", c, a, 1.3, "cni add")
    ratio("connect", "network connect (resolver running)", r, a, None, "cni add")
    ratio("connect", "port add (one port)", p, a, 0.5, "cni add")
    return 0 if c / a <= 1.3 and p / a <= 0.5 else 1


if __name__ == "__main__":
    sys.exit(main())
