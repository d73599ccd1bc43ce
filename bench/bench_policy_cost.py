"""Benchmark: what the cnirun-policy plugin in every chain costs a container without a policy (issue 25).

`cnirun cni add NET NETNS` then `cnirun cni del NET NETNS` (timed together), medians of BENCH_RUNS
(default 15) rounds, the three chains taking turns within a round (each first in turn):

* plain:  the default network's chain without the cnirun-policy entry (bridge + host-local, portmap,
          firewall, tuning, bandwidth), the floor;
* policy: the default chain as shipped (with cnirun-policy): cnirun's runtime answers the plugin's calls
          without a policy itself (cnirun/cni/policy_record.py). Target: <= 1.05x of plain (noise);
* exec:   the same with the plugin reached through a wrapper the runtime does not know as cnirun's, so it
          runs the plugin (what every call would cost without that), for comparison.

Networks t33-bench-{plain,policy,exec}, bridges c33bench{0,1,2}, 10.233.25{0,1,2}.0/24, netns t33-bench;
everything (netconf, cache, state, IPAM) in a tmp dir, removed at the end with the bridges and the netns.
"""
from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import tempfile
from pathlib import Path

from _common import CNIRUN, PLUGINS, REPO, ratio, timed

RUNS = int(os.environ.get("BENCH_RUNS", "15"))
NETNS = "t33-bench"
KINDS = ("plain", "policy", "exec")


def conflist(kind: str, i: int, ipam: str) -> dict:
    conf = json.loads((REPO / "netconf" / "cnirun.conflist").read_text())
    conf["name"] = f"t33-bench-{kind}"
    conf["plugins"][0].update(bridge=f"c33bench{i}")
    conf["plugins"][0]["ipam"].update(dataDir=ipam, ranges=[[{"subnet": f"10.233.25{i}.0/24"}]])
    assert conf["plugins"][-1]["type"] == "cnirun-policy"
    if kind == "plain":
        conf["plugins"].pop()
    elif kind == "exec":
        conf["plugins"][-1]["type"] = "t33-policy-exec"
    return conf


def main() -> int:
    tmp = Path(tempfile.mkdtemp(prefix="t33-bench-"))
    netconf, bin_dir = tmp / "net.d", tmp / "bin"
    netconf.mkdir()
    bin_dir.mkdir()
    wrapper = bin_dir / "t33-policy-exec"
    wrapper.write_text(f"#!/bin/sh\nexec {REPO / 'cnirun' / 'plugins' / 'bin' / 'cnirun-policy'}\n")
    wrapper.chmod(0o755)
    env = {**os.environ, "NETCONFPATH": str(netconf), "CNI_CACHE_DIR": str(tmp / "cache"),
           "CNIRUN_STATE_DIR": str(tmp / "state"), "CNI_PATH": f"{PLUGINS}:{bin_dir}", "CNI_CONTAINERID": NETNS}
    env.pop("CNIRUN_TRACE", None)
    for i, kind in enumerate(KINDS):
        (netconf / f"t33-bench-{kind}.conflist").write_text(json.dumps(conflist(kind, i, str(tmp / "ipam"))))
    took: dict[str, list[float]] = {k: [] for k in KINDS}
    subprocess.run(["ip", "netns", "add", NETNS], check=True)
    try:
        for kind in KINDS:  # a first round, untimed: the bridges are made
            timed(env, CNIRUN, "cni", "add", f"t33-bench-{kind}", f"/run/netns/{NETNS}")
            timed(env, CNIRUN, "cni", "del", f"t33-bench-{kind}", f"/run/netns/{NETNS}")
        for n in range(RUNS):
            for kind in KINDS[n % 3:] + KINDS[:n % 3]:  # each first in turn: no order effect
                net = f"t33-bench-{kind}"
                took[kind].append(timed(env, CNIRUN, "cni", "add", net, f"/run/netns/{NETNS}")
                                  + timed(env, CNIRUN, "cni", "del", net, f"/run/netns/{NETNS}"))
    finally:
        for kind in KINDS:
            subprocess.run([CNIRUN, "cni", "del", f"t33-bench-{kind}", f"/run/netns/{NETNS}"], env=env,
                           capture_output=True)
        subprocess.run(["ip", "netns", "del", NETNS], capture_output=True)
        for i in range(len(KINDS)):
            subprocess.run(["ip", "link", "del", f"c33bench{i}"], capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)
    med = {k: statistics.median(v) for k, v in took.items()}
    r = ratio("policy_cost", "cni add+del, default chain with cnirun-policy (no policy)", med["policy"],
              med["plain"], 1.05, "the chain without it")
    r_exec = ratio("policy_cost", "the same, the plugin run (no runtime shortcut)", med["exec"], med["plain"], None,
                   "the chain without it")
    print(f"cnirun cni add+del, median of {RUNS}: without cnirun-policy {med['plain'] * 1000:.1f} ms, "
          f"with it (no policy) {med['policy'] * 1000:.1f} ms ({r:.2f}x), "
          f"with it run as a program {med['exec'] * 1000:.1f} ms ({r_exec:.2f}x)")
    return 0 if r <= 1.05 else 1


if __name__ == "__main__":
    raise SystemExit(main())
