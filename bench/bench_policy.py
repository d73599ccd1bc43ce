"""Benchmarks of issue 11 (live policies); medians of BENCH_RUNS (default 12) runs, one process.

1. `cnirun update C --ingress-rate R` (alternating 10mbit / 20mbit, so that
   every run changes the limit) on a running `docker run --network none
   busybox` container connected to NET  vs  `cnirun cni add NET NETNS` of the
   whole default chain into a plain named netns (then del, untimed).
   Target: <= 0.5x. The plugin executions alone (CNIRUN_TRACE's "plugin"
   phases, from traced runs of both commands in the same process) are
   printed beside them: update runs bandwidth's DEL and ADD, add runs five
   plugins.
2. `cnirun network reload NET` with BENCH_ATTACHMENTS (default 50) live
   attachments made with `cnirun cni add` into netns from `ip netns add`
   (every fifth with a published port, all with a rate limit), nothing
   broken. Target: < 2 s. Then once more with one DNAT jump deleted (the
   repair of one attachment).
NET: the default network's chain (bridge + host-local, portmap, firewall,
tuning, bandwidth), 10.194.252.0/24, bridge c194bench; network t194-bench.
Host ports 19450-19499 on 127.0.0.1. Everything (netconf, cache, state)
lives in a tmp dir and is removed at the end (bench/_common.LiveWorld).
"""
from __future__ import annotations

import json
import os
import re
import shlex
import statistics
import subprocess
import sys

from _common import CNIRUN, LiveWorld, ratio, timed

RUNS = int(os.environ.get("BENCH_RUNS", "12"))
ATTACHMENTS = int(os.environ.get("BENCH_ATTACHMENTS", "50"))
NET, BRIDGE, SUBNET = "t194-bench", "c194bench", "10.194.252.0/24"
NETNS, CONTAINER, PORT0 = "t194-bench", "t194-bench-c", 19450
PLUGIN_LINE = re.compile(r"plugin (?:ADD|DEL|CHECK)\s+([0-9.]+) ms")


def plugin_ms(env: dict[str, str], *args: str) -> float:
    """The summed plugin executions of one traced run (CNIRUN_TRACE=1), in seconds."""
    p = subprocess.run(args, env={**env, "CNIRUN_TRACE": "1"}, capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(args)}: exit {p.returncode}: {p.stderr.strip()}")
    return sum(float(m) for m in PLUGIN_LINE.findall(p.stderr)) / 1000


def main() -> int:
    spaces = [f"{NETNS}-{i}" for i in range(ATTACHMENTS)]
    add, update, add_plugins, update_plugins, reload_ok = [], [], [], [], []
    reload_one = 0.0
    with LiveWorld("t194-bench-", NETNS, CONTAINER, [BRIDGE], lifetime=900) as w:
        w.default_chain(NET, BRIDGE, SUBNET)
        env = w.env
        env.pop("CNIRUN_TRACE", None)
        try:
            timed(env, CNIRUN, "network", "connect", "--ingress-rate", "20mbit", NET, CONTAINER)
            rates = ["10mbit", "20mbit"]
            for i in range(RUNS):
                add.append(timed(env, CNIRUN, "cni", "add", NET, w.netns_path))
                timed(env, CNIRUN, "cni", "del", NET, w.netns_path)
                update.append(timed(env, CNIRUN, "update", CONTAINER, "--ingress-rate", rates[i % 2]))
            for i in range(max(3, RUNS // 3)):
                add_plugins.append(plugin_ms(env, CNIRUN, "cni", "add", NET, w.netns_path))
                timed(env, CNIRUN, "cni", "del", NET, w.netns_path)
                update_plugins.append(plugin_ms(env, CNIRUN, "update", CONTAINER, "--ingress-rate", rates[i % 2]))

            for i, ns in enumerate(spaces):
                subprocess.run(["ip", "netns", "add", ns], check=True)
                caps: dict[str, object] = {"bandwidth": {"ingressRate": 10**8, "ingressBurst": 8 * 2**20}}
                if i % 5 == 0:
                    caps["portMappings"] = [{"hostPort": PORT0 + i // 5, "containerPort": 80, "protocol": "tcp",
                                             "hostIP": "127.0.0.1"}]
                timed({**env, "CAP_ARGS": json.dumps(caps)}, CNIRUN, "cni", "add", NET, f"/run/netns/{ns}")
            for _ in range(max(3, RUNS // 2)):
                reload_ok.append(timed(env, CNIRUN, "network", "reload", NET))
            nat = subprocess.run(["iptables-save", "-t", "nat"], capture_output=True, text=True).stdout
            jump = next(ln for ln in nat.splitlines()
                        if ln.startswith("-A CNI-HOSTPORT-DNAT ") and f'\\"{NET}\\"' in ln)
            subprocess.run(["iptables", "-w", "-t", "nat", "-D", *shlex.split(jump)[1:]], check=True)
            reload_one = timed(env, CNIRUN, "network", "reload", NET)
        finally:
            w.del_spaces(NET, spaces)
    a, u = statistics.median(add), statistics.median(update)
    ap, up = statistics.median(add_plugins), statistics.median(update_plugins)
    r = statistics.median(reload_ok)
    print(f"cnirun cni add (default chain, 5 plugins): {a * 1000:7.1f} ms  (plugin execs alone {ap * 1000:6.1f} ms)")
    print(f"cnirun update --ingress-rate:              {u * 1000:7.1f} ms  (plugin execs alone {up * 1000:6.1f} ms)"
          f"  ratio {u / a:.2f}x (target <= 0.5x); plugin execs {up / ap:.2f}x")
    print(f"cnirun network reload, {ATTACHMENTS} live attachments, nothing broken: {r * 1000:7.1f} ms "
          f"(target < 2000 ms; {r / a:.1f}x one cni add)")
    print(f"cnirun network reload, one DNAT jump missing:          {reload_one * 1000:7.1f} ms")
    ratio("policy", "update --ingress-rate", u, a, 0.5, "cni add")
    return 0 if u / a <= 0.5 and r < 2.0 else 1


if __name__ == "__main__":
    sys.exit(main())
