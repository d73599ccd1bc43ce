"""Overlay speed (#15): ping RTT across simulated hosts vs on one host's bridge; agent start to first cross-host ping.

Same simulated hosts as tests/test_overlay.py (netns on a switch netns, a
private etcd). Measured in one run, so the ratio compares like with like:

1. RTT between containers on hosts A and B (VXLAN over veth + bridge)
   vs between two containers on host A's bridge: median of the per-round
   averages of `ping -c 50 -i 0.02`, ROUNDS rounds.
2. Time from starting `cnirun overlay agent` on host B (A already running,
   a container waiting on A) until that container's ping to B's overlay
   address first succeeds: agent start-up (python, etcd, lease, device),
   A's watch seeing B, and the first packet over VXLAN.

Run as root: ./.venv/bin/python bench/bench_overlay.py
"""
from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))
from _common import ratio  # noqa: E402

ROUNDS = int(os.environ.get("BENCH_OVERLAY_ROUNDS", "5"))
STARTS = int(os.environ.get("BENCH_OVERLAY_STARTS", "5"))


def rtt(container: object, ip: str) -> float:
    """Average RTT (ms) of 50 pings."""
    out = subprocess.run(["nsenter", "-t", str(container.pid), "-n", "busybox", "ping", "-q", "-c", "50", "-i", "0.02",
                          ip], capture_output=True, text=True, timeout=60)
    m = re.search(r"= [\d.]+/([\d.]+)/", out.stdout)
    if out.returncode != 0 or not m:
        raise SystemExit(f"ping {ip} failed: {out.stdout}{out.stderr}")
    return float(m.group(1))


def main() -> int:
    if os.geteuid() != 0:
        print("bench_overlay: needs root (netns, VXLAN); skipped")
        return 0
    import test_overlay as t  # the simulated hosts of the tests

    with t.make_lan() as lan:
        return run(t, lan)


def run(t: object, lan: object) -> int:
    etcd = t.Etcd(hosts=("127.0.0.1", t.LAN_GW))
    tmp = Path(tempfile.mkdtemp(prefix="t15-bench-"))
    sim = t.Sim(lan, etcd, tmp)
    try:
        etcd.start()
        assert sim.init().returncode == 0
        a, b = sim.host("A"), sim.host("B")
        a.start_agent()
        b.start_agent()
        a1, a2, b1 = a.container(), a.container(), b.container()
        rtt(a1, b1.ip), rtt(a1, a2.ip)  # warm up (ARP, conntrack)
        overlay, local = [], []
        for _ in range(ROUNDS):
            overlay.append(rtt(a1, b1.ip))
            local.append(rtt(a1, a2.ip))
        o, l = statistics.median(overlay), statistics.median(local)
        print(f"ping RTT, containers on two simulated hosts (VXLAN): {o:.3f} ms (median of {ROUNDS} x 50)")
        print(f"ping RTT, two containers on one host's bridge:       {l:.3f} ms")
        print(f"overlay / same-host RTT: {o / l:.2f}x")
        ratio("overlay", "ping RTT across simulated hosts", o, l, None, "same-host bridge")

        starts, setup = [], []
        for _ in range(STARTS):
            b.stop_agent()
            b.agent = None
            t0 = time.monotonic()
            b.start_agent(wait=False)
            ready = None
            while True:
                # Ping once A has the route: a ping sent earlier waits out busybox's 1 s -W.
                if b.subnet_file.exists() and b.state_file.exists():
                    ready = ready or time.monotonic() - t0
                    sb = b.subnet()
                    if sb in a.routes():
                        p = subprocess.run(["nsenter", "-t", str(a1.pid), "-n", "busybox", "ping", "-c", "1", "-W", "1",
                                            sb.split("/")[0]], capture_output=True)  # B's VXLAN device address
                        if p.returncode == 0:
                            break
                if time.monotonic() - t0 > 30:
                    raise SystemExit("no cross-host ping within 30 s of the agent start")
                time.sleep(0.005)
            setup.append(ready or 0.0)
            starts.append(time.monotonic() - t0)
            b.wait_ready()
        print(f"overlay agent start -> first cross-host ping: median {statistics.median(starts):.2f} s"
              f" (min {min(starts):.2f}, max {max(starts):.2f}, {STARTS} starts; python start-up, etcd lease,"
              " VXLAN device, the peer's watch, first packet)")
        print(f"  of which agent start -> set up (lease, device, subnet.env): median {statistics.median(setup):.2f} s")
    finally:
        sim.cleanup()
        etcd.close()
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
