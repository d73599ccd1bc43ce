"""Benchmark of issue 25 (firewall policies): a live policy change against a full ADD, and a crowd of policies.

Medians of BENCH_RUNS (default 12) runs, one process, the peer measured in the same run:

1. `cnirun update C --ingress-allow host:80` (alternating with host:81, so that every run changes the
   policy) on a running `docker run --network none busybox` container connected to NET  vs
   `cnirun cni add NET NETNS` of the whole default chain (the one cnirun ships, cnirun-policy included)
   into a plain named netns (then del, untimed). Target: <= 0.5x.
2. An ADD (`cnirun cni add` with a policy naming a peer, then del) on NET while BENCH_CROWD (default 200)
   other attachments all have policies naming peers (by name and CIDR)  vs  the same ADD beside the same
   crowd without policies (the floor: the chain's other plugins' iptables rules grow with the crowd and
   slow every ADD, policy or not; the ADD on the empty network is printed too). Target: within noise
   (<= 1.15x). The host's iptables and nft rule counts are printed before and after the crowd: per
   attachment they grow by a constant, the same with and without policies (a policy's 13 rules per
   direction live in the attachment's netns).
NET: netconf/cnirun.conflist's chain, 10.237.248.0/22, bridge c237bench; network t237-bench; netns
t237-bench and t237-bench-N. Everything lives in a tmp dir, removed at the end (bench/_common.LiveWorld).
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys

from _common import CNIRUN, LiveWorld, ratio, timed

RUNS = int(os.environ.get("BENCH_RUNS", "12"))
CROWD = int(os.environ.get("BENCH_CROWD", "200"))
NET, BRIDGE, SUBNET = "t237-bench", "c237bench", "10.237.248.0/22"
NETNS, CONTAINER = "t237-bench", "t237-bench-c"


def caps(ingress: list[dict[str, object]]) -> dict[str, str]:
    return {"CAP_ARGS": json.dumps({"firewallPolicy": {"ingress": ingress}})}


def rule_counts() -> tuple[int, int]:
    """(iptables + ip6tables rules, nft rules) on the host."""
    ipt = sum(sum(1 for ln in subprocess.run([c], capture_output=True, text=True).stdout.splitlines()
                  if ln.startswith("-A ")) for c in ("iptables-save", "ip6tables-save"))
    nft = subprocess.run(["nft", "list", "ruleset"], capture_output=True, text=True).stdout
    return ipt, sum(1 for ln in nft.splitlines() if ln.startswith("\t\t") and "{" not in ln and "}" not in ln)


def add_del(env: dict[str, str], netns: str, extra: dict[str, str]) -> float:
    t = timed({**env, **extra}, CNIRUN, "cni", "add", NET, netns)
    timed({**env, **extra}, CNIRUN, "cni", "del", NET, netns)
    return t


def main() -> int:
    crowd = [f"{NETNS}-{i}" for i in range(CROWD)]
    add, update, empty, plain, crowded = [], [], [], [], []
    probe = caps([{"peer": {"name": "t237-peer-0"}, "ports": [{"protocol": "tcp", "port": 80}]}])
    with LiveWorld("t237-bench-", NETNS, CONTAINER, [BRIDGE], lifetime=1800) as w:
        w.default_chain(NET, BRIDGE, SUBNET)
        env = w.env
        try:
            timed(env, CNIRUN, "network", "connect", NET, CONTAINER)
            timed(env, CNIRUN, "update", CONTAINER, "--ingress-allow", "host:81")
            for i in range(RUNS):
                add.append(timed(env, CNIRUN, "cni", "add", NET, w.netns_path))
                timed(env, CNIRUN, "cni", "del", NET, w.netns_path)
                update.append(timed(env, CNIRUN, "update", CONTAINER, "--ingress-allow", f"host:{80 + i % 2}"))
            for _ in range(RUNS):
                empty.append(add_del(env, w.netns_path, probe))
            before = rule_counts()
            for ns in crowd:
                subprocess.run(["ip", "netns", "add", ns], check=True)
                timed(env, CNIRUN, "cni", "add", NET, f"/run/netns/{ns}")
            without = rule_counts()
            for _ in range(RUNS):
                plain.append(add_del(env, w.netns_path, probe))
            for i, ns in enumerate(crowd):  # the same crowd, now every one with a policy
                timed(env, CNIRUN, "cni", "del", NET, f"/run/netns/{ns}")
                timed({**env, **caps([{"peer": {"name": f"t237-peer-{i % 20}"}},
                                      {"peer": {"cidr": "10.237.0.0/16"}, "ports": [{"protocol": "udp", "port": 53}]}])},
                      CNIRUN, "cni", "add", NET, f"/run/netns/{ns}")
            after = rule_counts()
            for _ in range(RUNS):
                crowded.append(add_del(env, w.netns_path, probe))
        finally:
            w.del_spaces(NET, crowd)
    a, u = statistics.median(add), statistics.median(update)
    e, f, c = statistics.median(empty), statistics.median(plain), statistics.median(crowded)
    print(f"cnirun cni add (default chain, 6 plugins):   {a * 1000:7.1f} ms")
    print(f"cnirun update --ingress-allow:               {u * 1000:7.1f} ms  ratio {u / a:.2f}x (target <= 0.5x)")
    print(f"cni add+del with a policy, empty network:    {e * 1000:7.1f} ms")
    print(f"the same beside {CROWD} attachments without policies: {f * 1000:7.1f} ms (the floor)")
    print(f"the same beside {CROWD} attachments with policies:    {c * 1000:7.1f} ms  ratio {c / f:.2f}x "
          "(target <= 1.15x: noise)")
    print(f"host rules (iptables+ip6tables, nft): {before} empty, {without} with the crowd, {after} with its "
          f"policies: {(without[0] - before[0]) / CROWD:.1f} and {(without[1] - before[1]) / CROWD:.1f} per "
          f"attachment, {(after[0] - without[0]) / CROWD:.1f} and {(after[1] - without[1]) / CROWD:.1f} more "
          "per policy")
    ratio("policy", "update --ingress-allow", u, a, 0.5, "cni add")
    ratio("policy", f"add beside {CROWD} policies", c, f, 1.15, f"add beside {CROWD} without")
    return 0 if u / a <= 0.5 and c / f <= 1.15 else 1


if __name__ == "__main__":
    sys.exit(main())
