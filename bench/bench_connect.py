"""Benchmarks of issue 10 (dynamic networks); medians of BENCH_RUNS (default 12) runs, one process.

1. `cnirun network connect NET C` (then disconnect, untimed) of a running
   `docker run --network none busybox` container  vs  `cnirun cni add NET
   NETNS` of the same chain into a plain named netns (then del, untimed).
   Target: <= 1.3x.
2. `cnirun port add C 127.0.0.1:PORT:80` (then port rm, untimed) of one port
   on the connected container  vs  the same full `cnirun cni add`.
   Target: <= 0.5x (only portmap runs again, never bridge/host-local/firewall).
NET: the default chain's shape (bridge + host-local, portmap, firewall),
10.191.200.0/24, bridge cnc10bench; network t10-bench. Everything (netconf,
cache, state) lives in a tmp dir and is removed at the end.
"""
from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CNIRUN = str(REPO / ".venv" / "bin" / "cnirun")
RUNS = int(os.environ.get("BENCH_RUNS", "12"))
NET, BRIDGE, SUBNET = "t10-bench", "cnc10bench", "10.191.200.0/24"
NETNS, CONTAINER, PORT = "t10-bench", "t10-bench-c", 19198


def run(env: dict[str, str], *args: str) -> float:
    t = time.perf_counter()
    p = subprocess.run(args, env=env, capture_output=True, text=True)
    took = time.perf_counter() - t
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(args)}: exit {p.returncode}: {p.stderr.strip()}")
    return took


def main() -> int:
    tmp = Path(tempfile.mkdtemp(prefix="t10-bench-"))
    netconf = tmp / "net.d"
    netconf.mkdir()
    (netconf / f"{NET}.conflist").write_text(json.dumps({
        "cniVersion": "1.0.0", "name": NET,
        "plugins": [
            {"type": "bridge", "bridge": BRIDGE, "isGateway": True, "ipMasq": True, "capabilities": {"ips": True},
             "ipam": {"type": "host-local", "dataDir": str(tmp / "ipam"), "ranges": [[{"subnet": SUBNET}]],
                      "routes": [{"dst": "0.0.0.0/0"}]}},
            {"type": "portmap", "capabilities": {"portMappings": True}},
            {"type": "firewall"},
        ],
    }))
    env = {**os.environ, "NETCONFPATH": str(netconf), "CNI_CACHE_DIR": str(tmp / "cache"),
           "CNIRUN_STATE_DIR": str(tmp / "state"), "CNI_PATH": "/usr/lib/cni", "CNIRUN_WATCHER_IDLE": "5",
           "CNIRUN_ENGINE": "docker"}
    subprocess.run(["ip", "netns", "add", NETNS], check=True)
    subprocess.run(["docker", "run", "-d", "--name", CONTAINER, "--network", "none", "busybox", "sleep", "600"],
                   check=True, capture_output=True)
    add, connect, port = [], [], []
    try:
        # Warm-up: the first connect pins the foreign container's netns and records it for the watcher.
        run(env, CNIRUN, "network", "connect", NET, CONTAINER)
        run(env, CNIRUN, "network", "disconnect", NET, CONTAINER)
        for _ in range(RUNS):
            add.append(run(env, CNIRUN, "cni", "add", NET, f"/run/netns/{NETNS}"))
            run(env, CNIRUN, "cni", "del", NET, f"/run/netns/{NETNS}")
            connect.append(run(env, CNIRUN, "network", "connect", NET, CONTAINER))
            port.append(run(env, CNIRUN, "port", "add", CONTAINER, f"127.0.0.1:{PORT}:80"))
            run(env, CNIRUN, "port", "rm", CONTAINER, f"127.0.0.1:{PORT}:80")
            run(env, CNIRUN, "network", "disconnect", NET, CONTAINER)
    finally:
        subprocess.run(["docker", "rm", "-f", CONTAINER], capture_output=True)
        subprocess.run(["ip", "netns", "del", NETNS], capture_output=True)
        # The watcher DELs the removed container's attachments (none left here) and its pin; gc makes sure.
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and list((tmp / "state" / "containers").glob("[0-9a-f]*")):
            time.sleep(0.5)
        subprocess.run([CNIRUN, "gc"], env=env, capture_output=True)
        pid = tmp / "state" / "containers" / ".watcher.pid"
        if pid.exists():
            try:
                os.killpg(int(pid.read_text()), 9)
            except (OSError, ValueError):
                pass
        subprocess.run(["ip", "link", "del", BRIDGE], capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)
    a, c, p = (statistics.median(x) for x in (add, connect, port))
    print(f"cnirun cni add (bridge+portmap+firewall):  {a * 1000:6.1f} ms")
    print(f"cnirun network connect (same chain):       {c * 1000:6.1f} ms  ratio {c / a:.2f}x (target <= 1.3x)")
    print(f"cnirun port add (one port):                {p * 1000:6.1f} ms  ratio {p / a:.2f}x (target <= 0.5x)")
    return 0 if c / a <= 1.3 and p / a <= 0.5 else 1


if __name__ == "__main__":
    sys.exit(main())
