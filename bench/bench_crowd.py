#!/usr/bin/env python3
"""A crowd on one network (#28 item 5): `--rm busybox true` next to 0, 300 and 1000 running containers.

For each crowd size in BENCH_CROWD (default 0,300,1000) the network t250crowd
(10.250.0.0/21, bridge t250crowd, with its DNS resolver) is filled with `cnirun
-d --mode hook --name crowdN busybox sleep` containers (BENCH_CROWD_PAR at once,
default 4), then BENCH_N rounds (default 8) of, interleaved:

  docker run --rm --network none busybox true     the peer
  cnirun --rm --mode hook busybox true            on the crowd's network (target at 1000: <= 1.3x)
  cnirun --rm --mode sandbox busybox true         the same, Docker sandbox mode

and every crowd member's name is asked of the network's resolver (all must
resolve); cnirun's resident processes (names cnirun*, the resolver's dnsmasq)
and their memory are reported per running container. Last, the whole crowd
is removed (`docker rm -f`, 100 at a time) and the bench waits until nothing
of it is left (veths, IPAM reservations, cache files, run state, netns pins,
iptables rules naming its containers): target within 60 s of the last
removal. The cnirun runtime is installed with the bench's own environment and
daemon.json restored byte for byte, as bench_run does. Needs a quiet machine
and ~8 GiB of memory for 1000 containers.
"""
from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from _common import CNIRUN, DAEMON_JSON, REPO, install_runtime, ratio, read_or_none, uninstall_runtime

sys.path.insert(0, str(REPO))
SIZES = [int(x) for x in os.environ.get("BENCH_CROWD", "0,300,1000").split(",") if x.strip()]
N = int(os.environ.get("BENCH_N", "8"))
PAR = int(os.environ.get("BENCH_CROWD_PAR", "4"))
NET = BRIDGE = "t250crowd"
SUBNET, RESOLVER = "10.250.0.0/21", "10.250.0.1"
TARGET_1000 = 1.3
SETTLE_LIMIT = 60.0


def dns_query(name: str, server: str, timeout: float = 1.0) -> bool:
    """Whether `server` answers an A query for `name` with at least one address."""
    qid = random.randrange(1 << 16)
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    packet = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + labels + struct.pack("!HH", 1, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        try:
            s.sendto(packet, (server, 53))
            data = s.recv(4096)
        except OSError:
            return False
    if len(data) < 12:
        return False
    rid, flags, _, answers = struct.unpack("!HHHH", data[:8])
    return rid == qid and flags & 0xF == 0 and answers > 0


def resident() -> tuple[int, float]:
    """cnirun's resident processes (cnirun*, dnsmasq) and their memory (RSS, MiB)."""
    count, rss = 0, 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
            if not (comm.startswith("cnirun") or comm == "dnsmasq"):
                continue
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        count += 1
        rss += next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0)
    return count, rss / 1024


def subnet_rules(rules: str | None = None) -> int:
    """iptables rules (`rules`: iptables-save's text, read when None) that name an address of the crowd's
    subnet (the firewall plugin's name containers by address)."""
    if rules is None:
        rules = subprocess.run(["iptables-save"], capture_output=True, text=True).stdout
    return sum(1 for line in rules.splitlines() if "10.250." in line)


def leftovers(tmp: Path, ids: set[str], rules_before: int) -> dict[str, int]:
    prefixes = {i[:12] for i in ids}  # the plugins' rules name the container by its ID
    veths = subprocess.run(["ip", "-o", "link", "show", "master", BRIDGE], capture_output=True, text=True).stdout
    ipam = tmp / "ipam" / NET
    rules = subprocess.run(["iptables-save"], capture_output=True, text=True).stdout
    results = tmp / "cache" / "results"
    runs = tmp / "state" / "containers"
    pins = tmp / "state" / "netns"
    return {
        "veths": len(veths.splitlines()),
        "reservations": sum(1 for p in ipam.iterdir() if p.name[0].isdigit()) if ipam.is_dir() else 0,
        "cache files": len(list(results.iterdir())) if results.is_dir() else 0,
        "run state": sum(1 for p in runs.iterdir() if not p.name.startswith(".")) if runs.is_dir() else 0,
        "netns pins": len(list(pins.iterdir())) if pins.is_dir() else 0,
        "iptables rules": sum(1 for line in rules.splitlines()
                              if any(t.strip('"')[:12] in prefixes for t in line.split() if len(t) >= 12))
        + max(0, subnet_rules(rules) - rules_before),
    }


def timed(argv: list[str], env: dict[str, str] | None) -> float:
    t = time.perf_counter()
    p = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=300)
    if p.returncode != 0:
        raise SystemExit(f"bench_crowd: {' '.join(argv[:4])} failed: {p.stderr.strip()[-300:]}")
    return time.perf_counter() - t


def main() -> int:
    if os.geteuid() != 0:
        print("bench_crowd: needs root (skipped)")
        return 0
    tmp = Path(tempfile.mkdtemp(prefix="cnirun-bench-crowd-"))
    env = dict(os.environ, NETCONFPATH=str(tmp / "net.d"), CNI_CACHE_DIR=str(tmp / "cache"),
               CNIRUN_STATE_DIR=str(tmp / "state"), CNIRUN_IPAM_DATA_DIR=str(tmp / "ipam"),
               CNIRUN_DEFAULT_NETWORK=NET, CNI_PATH="/usr/lib/cni")
    daemon_before = read_or_none(DAEMON_JSON)
    runtime_dir = tmp / "runtime"
    hooked = False
    crowd: dict[str, str] = {}  # name -> container ID
    rows: list[dict[str, object]] = []
    removal: dict[str, object] = {}
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        subprocess.run([CNIRUN, "network", "create", NET, "--subnet", SUBNET, "-o",
                        f"com.docker.network.bridge.name={BRIDGE}"], env=env, check=True, capture_output=True)
        hooked = install_runtime(runtime_dir, env, "bench_crowd")
        if not hooked:
            return 1
        subprocess.run([CNIRUN, "--rm", "--mode", "hook", "busybox", "true"], env=env, capture_output=True)
        time.sleep(2)  # its DEL: the resolver and its guard rules as they stay with no container
        rules_before = subnet_rules()
        for size in SIZES:
            t0 = time.perf_counter()

            def start(i: int) -> tuple[str, str, str]:
                name = f"crowd{i}"
                p = subprocess.run([CNIRUN, "-d", "--mode", "hook", "--name", name, "busybox", "sleep", "86400"],
                                   env=env, capture_output=True, text=True, timeout=300)
                return name, p.stdout.strip() if p.returncode == 0 else "", p.stderr.strip()[-200:]

            with ThreadPoolExecutor(PAR) as ex:
                for name, cid, err in ex.map(start, range(len(crowd), size)):
                    if not cid:
                        raise SystemExit(f"bench_crowd: starting {name} failed: {err}")
                    crowd[name] = cid
            grow = time.perf_counter() - t0
            subprocess.run([CNIRUN, "--rm", "--mode", "hook", "busybox", "true"], env=env, capture_output=True)
            times: dict[str, list[float]] = {"none": [], "hook": [], "sandbox": []}
            for _ in range(N):
                times["none"].append(timed(["docker", "run", "--rm", "--network", "none", "busybox", "true"], None))
                times["hook"].append(timed([CNIRUN, "--rm", "--mode", "hook", "busybox", "true"], env))
                times["sandbox"].append(timed([CNIRUN, "--rm", "--mode", "sandbox", "busybox", "true"], env))
            med = {k: statistics.median(v) for k, v in times.items()}
            resolved = sum(dns_query(name, RESOLVER) for name in crowd)
            time.sleep(3)  # the last rounds' background DELs end: what stays is what the crowd costs
            procs, rss = resident()
            rows.append({"size": size, "grow": grow, **med, "resolved": resolved, "procs": procs, "rss": rss})
            print(f"crowd {size}: started in {grow:.1f} s; none {med['none']:.3f} s, hook {med['hook']:.3f} s "
                  f"({med['hook'] / med['none']:.2f}x), sandbox {med['sandbox']:.3f} s "
                  f"({med['sandbox'] / med['none']:.2f}x); names resolved {resolved}/{size}; "
                  f"cnirun resident: {procs} processes, {rss:.0f} MiB", flush=True)
        if crowd:
            ids = set(crowd.values())
            t0 = time.perf_counter()
            batch = list(ids)
            for i in range(0, len(batch), 100):
                subprocess.run(["docker", "rm", "-f", *batch[i:i + 100]], capture_output=True, timeout=600)
            last = time.perf_counter()
            while True:
                left = leftovers(tmp, ids, rules_before)
                if not any(left.values()) or time.perf_counter() - last > SETTLE_LIMIT + 60:
                    break
                time.sleep(0.5)
            settled = time.perf_counter() - last
            removal = {"n": len(ids), "rm": last - t0, "settled": settled, "left": left}
            crowd.clear()
    finally:
        if crowd:
            ids = list(crowd.values())
            for i in range(0, len(ids), 100):
                subprocess.run(["docker", "rm", "-f", *ids[i:i + 100]], capture_output=True)
        if hooked:
            uninstall_runtime(runtime_dir, env, daemon_before, "bench_crowd")
        subprocess.run([CNIRUN, "gc"], env=env, capture_output=True)
        subprocess.run([CNIRUN, "network", "rm", NET], env=env, capture_output=True)
        subprocess.run(["ip", "link", "del", BRIDGE], capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"\nbench_crowd: `--rm busybox true` beside a crowd on its network (medians of {N}, "
          f"{os.cpu_count()} CPUs)")
    print(f"{'crowd':>6} {'start s':>8} {'none s':>7} {'hook s':>7} {'ratio':>6} {'sandbox s':>9} {'ratio':>6} "
          f"{'names':>10} {'resident':>9} {'MiB':>6} {'KiB/cont':>9}")
    for r in rows:
        per = f"{r['rss'] * 1024 / r['size']:.0f}" if r["size"] else "-"
        print(f"{r['size']:>6} {r['grow']:8.1f} {r['none']:7.3f} {r['hook']:7.3f} {r['hook'] / r['none']:5.2f}x "
              f"{r['sandbox']:9.3f} {r['sandbox'] / r['none']:5.2f}x {str(r['resolved']) + '/' + str(r['size']):>10} "
              f"{r['procs']:>9} {r['rss']:6.0f} {per:>9}")
        target = TARGET_1000 if r["size"] >= 1000 else None
        ratio("crowd", f"hook beside {r['size']} running", r["hook"], r["none"], target, "docker run --network none")
        ratio("crowd", f"sandbox beside {r['size']} running", r["sandbox"], r["none"], target,
              "docker run --network none")
    ok = all(r["resolved"] == r["size"] for r in rows)
    if removal:
        left = removal["left"]
        print(f"rm -f of all {removal['n']}: {removal['rm']:.1f} s; nothing left {removal['settled']:.1f} s after the "
              f"last removal (target <= {SETTLE_LIMIT:.0f} s); left: " + ", ".join(f"{k} {v}" for k, v in left.items()))
        ok = ok and not any(left.values()) and removal["settled"] <= SETTLE_LIMIT
    big = [r for r in rows if r["size"] >= 1000]
    ok = ok and all(r["hook"] / r["none"] <= TARGET_1000 and r["sandbox"] / r["none"] <= TARGET_1000 for r in big)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
