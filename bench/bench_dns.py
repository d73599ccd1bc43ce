"""Benchmarks of issue 12 (names by DNS), one process, real dockerd and plugins.

1. Propagation: from `cnirun -d --name X busybox sleep` returning to X
   resolving from a container on the same network (a poller in that
   container's netns asks the network's resolver every 2 ms); median and
   maximum over BENCH_RUNS (default 20). Target: max <= 200 ms.
2. Scale: BENCH_SCALE (default 100) containers started one after another,
   then all resolved from one container; then every name is asked again and
   again while 20 more start and 20 of the first stop: names of containers
   that stay must never fail. Target: 100/100, 0 failures.
3. Cost: `cnirun --rm busybox true` on the network with DNS vs the same
   network with `"cnirun": {"dns": false}` (the peer), interleaved, medians
   of BENCH_COST (default 12): once with the network otherwise empty (each
   run starts and stops the resolver) and once with a container on it (the
   resolver runs already). Target: <= 1.15x.
4. Removal: from `docker rm -f X` / `podman rm -f X` returning until X no
   longer resolves from a container on the network (the poller asks every
   2 ms from when rm starts), BENCH_REMOVALS (default 10) times per mode:
   hook (BENCH_SKIP=hook leaves it out), `-d` (helper sandbox), the
   one-container sandbox of a foreground run, Podman `-d`
   (BENCH_SKIP=podman); beside Docker's own DNS on its own network
   (n28f-bench-docker, 10.245.240.0/24), same image, same commands, whose
   upstream is the poller (no query leaves the host). Podman's own
   (aardvark-dns) is not measured: it asks the host's resolvers for a name
   it no longer knows. Target: max <= 100 ms; the ratio recorded is rm's
   start -> name gone, cnirun's median over Docker's own.

Networks t195-bench (10.195.240.0/22, bridge t195bench) and t195-bnd (the
same chain without DNS, 10.195.236.0/24, bridge t195bnd); netconf, cache and
state in a tmp dir, removed at the end with the containers and bridges.
The poller only ever asks the bench's own resolver for the bench's names.
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
from typing import Callable

from _common import CNIRUN, DAEMON_JSON, dns_chain, install_runtime, ratio, read_or_none, skipped, uninstall_runtime

RUNS = int(os.environ.get("BENCH_RUNS", "20"))
SCALE = int(os.environ.get("BENCH_SCALE", "100"))
COST = int(os.environ.get("BENCH_COST", "12"))
REMOVALS = int(os.environ.get("BENCH_REMOVALS", "10"))
OWN_NET, OWN_SUBNET = "n28f-bench-docker", "10.245.240.0/24"  # Docker's own DNS (127.0.0.11 in its containers)
NET, BRIDGE, SUBNET, GW = "t195-bench", "t195bench", "10.195.240.0/22", "10.195.240.1"
NODNS, NODNS_BRIDGE, NODNS_SUBNET = "t195-bnd", "t195bnd", "10.195.236.0/24"
PREFIX = "t195bench-"
GONE_PREFIX = "n28f-bench-"  # 4.'s containers and networks
OWN_DNS = "Docker's own DNS"

# Runs in the client container's netns (python from the host): asks the resolver for names read from stdin.
# With a second argument it also answers "no such name" on 127.0.0.1:53 there: the upstream the engines' own
# DNS forward a name they do not know to (the client runs with --dns 127.0.0.1), so no query leaves the host.
POLLER = r'''
import random, socket, struct, sys, threading, time
server = sys.argv[1]
def upstream():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 53))
    while True:
        q, peer = s.recvfrom(4096)
        s.sendto(q[:2] + bytes([0x81, 0x83]) + q[4:6] + b"\0\0\0\0\0\0" + q[12:], peer)
if len(sys.argv) > 2:
    threading.Thread(target=upstream, daemon=True).start()
def reply(name, timeout=1.0):  # True: answered, False: no such name, None: no reply
    q = struct.pack(">HHHHHH", random.randrange(65536), 0x0100, 1, 0, 0, 0)
    q += b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0" + struct.pack(">HH", 1, 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(timeout)
    try:
        s.sendto(q, (server, 53)); data = s.recv(4096)
        return (data[3] & 15) == 0 and struct.unpack(">H", data[6:8])[0] > 0
    except OSError:
        return None
    finally:
        s.close()
def ask(name):
    return bool(reply(name))
for line in sys.stdin:
    cmd, *names = line.split()
    if cmd == "wait":  # until the name resolves: print the CLOCK_MONOTONIC time it did
        deadline = time.monotonic() + 10
        while not ask(names[0]) and time.monotonic() < deadline:
            time.sleep(0.002)
        print(time.monotonic() if ask(names[0]) else -1, flush=True)
    elif cmd == "count":  # how many of the names resolve now
        print(sum(ask(n) for n in names), flush=True)
    elif cmd == "gone":  # until the name is answered as no such name: print the CLOCK_MONOTONIC time it was
        deadline = time.monotonic() + 30
        while reply(names[0], 0.05) is not False and time.monotonic() < deadline:  # a query lost: ask again
            time.sleep(0.002)
        print(time.monotonic() if time.monotonic() < deadline else -1, flush=True)
'''


def cnirun(env: dict[str, str], *args: str) -> float:
    t = time.monotonic()
    p = subprocess.run([CNIRUN, *args], env=env, capture_output=True, text=True)
    took = time.monotonic() - t
    if p.returncode != 0:
        raise SystemExit(f"cnirun {' '.join(args)}: exit {p.returncode}: {p.stderr.strip()}")
    return took


class Poller:
    """The POLLER in `container`'s netns, asking `server`."""

    def __init__(self, container: str, server: str = GW, engine: str = "docker") -> None:
        pid = subprocess.run([engine, "inspect", "-f", "{{.State.Pid}}", container], capture_output=True,
                             text=True, check=True).stdout.strip()
        upstream = ["upstream"] if server != GW else []  # an engine's own DNS: its upstream is the poller
        self.p = subprocess.Popen(["nsenter", "-t", pid, "-n", sys.executable, "-c", POLLER, server, *upstream],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def send(self, line: str) -> None:
        assert self.p.stdin
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()

    def answer(self) -> str:
        assert self.p.stdout
        return self.p.stdout.readline().strip()

    def ask(self, line: str) -> str:
        self.send(line)
        return self.answer()

    def close(self) -> None:
        if self.p.stdin:
            self.p.stdin.close()
        self.p.wait()


def remove_once(poller: Poller, name: str, start: Callable[[], object], rm: list[str]) -> tuple[float, float]:
    """start() the container `name`, wait until it resolves, remove it with `rm`: (ms from rm's return until
    the name was gone, 0 when before; ms from rm's start); -1s when it never resolved or never went."""
    start()
    if float(poller.ask(f"wait {name}")) < 0:
        return -1.0, -1.0
    poller.send(f"gone {name}")
    began = time.monotonic()
    subprocess.run([*rm, name], capture_output=True)
    returned = time.monotonic()
    gone = float(poller.answer())
    return (-1.0, -1.0) if gone < 0 else (max(0.0, gone - returned) * 1000, (gone - began) * 1000)


def removals(env: dict[str, str], tmp: Path, poller: Poller) -> dict[str, list[tuple[float, float]]]:
    """4. removal: each mode's remove_once() figures, BENCH_REMOVALS times, and the engines' own DNS's."""
    skip = skipped()
    out: dict[str, list[tuple[float, float]]] = {}
    docker_rm, podman_rm = ["docker", "rm", "-f"], ["podman", "rm", "-f", "-t", "0"]

    def series(mode: str, poll: Poller, rm: list[str], start: Callable[[str], object]) -> None:
        short = "".join(c for c in mode if c.isalnum())[:10]
        names = [f"{GONE_PREFIX}{short}{i}" for i in range(REMOVALS)]
        out[mode] = [remove_once(poll, n, lambda n=n: start(n), rm) for n in names]

    def sleeper(n: str, *args: str) -> list[str]:
        return [*args, "--name", n, "--net", NET, "busybox", "sleep", "300"]

    series("sandbox -d", poller, docker_rm, lambda n: cnirun(env, *sleeper(n, "-d")))
    single, foreground = {**env, "CNIRUN_SANDBOX": "single"}, []
    series("one-container sandbox", poller, docker_rm, lambda n: foreground.append(subprocess.Popen(
        [CNIRUN, *sleeper(n, "--rm")], env=single, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)))
    for p in foreground:
        p.wait(60)
    if "hook" not in skip:
        before = read_or_none(DAEMON_JSON)
        if install_runtime(tmp / "runtime", env, "bench_dns"):
            try:
                series("hook", poller, docker_rm, lambda n: cnirun(env, *sleeper(n, "-d", "--mode", "hook")))
            finally:
                uninstall_runtime(tmp / "runtime", env, before, "bench_dns")
    if "podman" not in skip and shutil.which("podman"):
        series("podman -d", poller, podman_rm, lambda n: cnirun({**env, "CNIRUN_ENGINE": "podman"}, *sleeper(n, "-d")))
    client = f"{GONE_PREFIX}client"
    try:
        subprocess.run(["docker", "network", "create", "--subnet", OWN_SUBNET, OWN_NET], capture_output=True,
                       check=True)
        subprocess.run(["docker", "run", "-d", "--name", client, "--network", OWN_NET, "--dns", "127.0.0.1",
                        "busybox", "sleep", "3600"], capture_output=True, check=True)
        own = Poller(client, "127.0.0.11")
        try:
            series(OWN_DNS, own, docker_rm, lambda n: subprocess.run(
                ["docker", "run", "-d", "--name", n, "--network", OWN_NET, "busybox", "sleep", "300"],
                capture_output=True, check=True))
        finally:
            own.close()
    finally:
        subprocess.run(["docker", "rm", "-f", client], capture_output=True)
        subprocess.run(["docker", "network", "rm", OWN_NET], capture_output=True)
    return out


def report_removals(out: dict[str, list[tuple[float, float]]]) -> None:
    own = [x[1] for x in out.get(OWN_DNS, []) if x[1] >= 0]
    for mode, figures in out.items():
        ok = [x for x in figures if x[0] >= 0]
        if not ok:
            print(f"4. removal, {mode}: the name never resolved or never went ({len(figures)} runs)")
            continue
        after = [x[0] for x in ok]
        print(f"4. removal, {mode}: `rm -f X` returned -> X gone: median {statistics.median(after):.1f} ms, "
              f"max {max(after):.1f} ms; from rm's start median {statistics.median(x[1] for x in ok):.0f} ms "
              f"({len(figures) - len(ok)} never went; target: max <= 100 ms)")
        if mode != OWN_DNS and own:
            ratio("dns", f"name gone, rm start -> gone, {mode}", statistics.median(x[1] for x in ok),
                  statistics.median(own), None, OWN_DNS)


def remove(names: list[str]) -> None:
    for i in range(0, len(names), 20):
        subprocess.run(["docker", "rm", "-f", *names[i:i + 20]], capture_output=True)


def main() -> int:
    tmp = Path(tempfile.mkdtemp(prefix="t195-bench-"))
    netconf = tmp / "net.d"
    netconf.mkdir()
    (netconf / f"{NET}.conflist").write_text(json.dumps(dns_chain(NET, BRIDGE, SUBNET, str(tmp / "ipam"), True)))
    (netconf / f"{NODNS}.conflist").write_text(json.dumps(dns_chain(NODNS, NODNS_BRIDGE, NODNS_SUBNET,
                                                                     str(tmp / "ipam"), False)))
    env = {**os.environ, "NETCONFPATH": str(netconf), "CNI_CACHE_DIR": str(tmp / "cache"),
           "CNIRUN_STATE_DIR": str(tmp / "state"), "CNI_PATH": "/usr/lib/cni", "CNIRUN_WATCHER_IDLE": "5",
           "CNIRUN_ENGINE": "docker", "CNIRUN_DEFAULT_NETWORK": NET}
    made: list[str] = []
    poller: Poller | None = None
    try:
        # 3 first: the network must be empty for the "resolver started per run" case.
        cost: dict[str, list[float]] = {"dns": [], "nodns": []}
        for _ in range(COST):
            cost["dns"].append(cnirun(env, "--rm", "--net", NET, "busybox", "true"))
            cost["nodns"].append(cnirun(env, "--rm", "--net", NODNS, "busybox", "true"))
        client = PREFIX + "client"
        cnirun(env, "-d", "--name", client, "--net", NET, "busybox", "sleep", "3600")
        made.append(client)
        warm: dict[str, list[float]] = {"dns": [], "nodns": []}
        for _ in range(COST):
            warm["dns"].append(cnirun(env, "--rm", "--net", NET, "busybox", "true"))
            warm["nodns"].append(cnirun(env, "--rm", "--net", NODNS, "busybox", "true"))

        # 1. propagation
        poller = Poller(client)
        lat: list[float] = []
        for i in range(RUNS):
            name = f"{PREFIX}p{i}"
            cnirun(env, "-d", "--name", name, "--net", NET, "busybox", "sleep", "3600")
            returned = time.monotonic()
            made.append(name)
            got = float(poller.ask(f"wait {name}"))
            lat.append(-1.0 if got < 0 else (got - returned) * 1000)
        remove(made[1:])
        del made[1:]

        # 4. removal (its containers are removed by it; a failed one's are found by PREFIX at the end)
        gone = removals(env, tmp, poller)

        # 2. scale
        names = [f"{PREFIX}s{i}" for i in range(SCALE)]
        t = time.monotonic()
        for n in names:
            cnirun(env, "-d", "--name", n, "--net", NET, "busybox", "sleep", "3600")
            made.append(n)
        start_all = time.monotonic() - t
        resolved = int(poller.ask("count " + " ".join(names)))
        stay, leave = names[20:], names[:20]
        more = [f"{PREFIX}n{i}" for i in range(20)]
        asked = failed = 0
        churn = subprocess.Popen([sys.executable, "-c", (
            "import subprocess, sys\n"
            "for new, old in zip(sys.argv[1:21], sys.argv[21:41]):\n"
            f"    subprocess.run([{CNIRUN!r}, '-d', '--name', new, '--net', {NET!r}, 'busybox', 'sleep', '3600'],"
            " capture_output=True, check=True)\n"
            "    subprocess.run(['docker', 'rm', '-f', old], capture_output=True, check=True)\n"
        ), *more, *leave], env=env)
        made += more
        while churn.poll() is None:
            ok = int(poller.ask("count " + " ".join(stay)))
            asked += len(stay)
            failed += len(stay) - ok
        if churn.returncode != 0:
            raise SystemExit("starting/stopping containers during the scale test failed")
        new_ok = int(poller.ask("count " + " ".join(more)))
        # A removed container's name goes when the watcher has torn it down (Docker's event, then DEL).
        t = time.monotonic()
        while int(poller.ask("count " + " ".join(leave))) and time.monotonic() - t < 30:
            time.sleep(0.05)
        gone_ok, gone_after = int(poller.ask("count " + " ".join(leave))), time.monotonic() - t
    finally:
        if poller is not None:
            poller.close()
        remove(made)
        # Containers a failed run created but did not record in `made` (a start that timed out).
        left = subprocess.run(["docker", "ps", "-aq", "--filter", f"label=cnirun.state={tmp / 'state' / 'containers'}"],
                              capture_output=True, text=True).stdout.split()
        remove([c for c in left])
        left = subprocess.run(["podman", "ps", "-aq", "--filter", f"name={GONE_PREFIX}"], capture_output=True,
                              text=True).stdout.split() if shutil.which("podman") else []
        for c in left:
            subprocess.run(["podman", "rm", "-f", "-t", "0", c], capture_output=True)
        remove(subprocess.run(["docker", "ps", "-aq", "--filter", f"name={GONE_PREFIX}"], capture_output=True,
                              text=True).stdout.split())
        # The watcher tears the runs down (helpers, DEL, names, resolver); gc does what is left.
        # The tmp dir goes only once nothing refers to it any more.
        runs = tmp / "state" / "containers"
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and runs.is_dir() and [p for p in runs.iterdir()
                                                                 if not p.name.startswith(".")]:
            time.sleep(0.5)
        subprocess.run([CNIRUN, "gc"], env=env, capture_output=True)
        leftover = [p.name for p in runs.iterdir() if not p.name.startswith(".")] if runs.is_dir() else []
        if leftover or list((tmp / "cache" / "results").glob("*")):
            print(f"bench: runs not torn down yet, keeping {tmp}: run `cnirun gc` with its state dir",
                  file=sys.stderr)
        else:
            for br in (BRIDGE, NODNS_BRIDGE):
                subprocess.run(["ip", "link", "del", br], capture_output=True)
            shutil.rmtree(tmp, ignore_errors=True)

    def med(xs: list[float]) -> float:
        return statistics.median(xs) * 1000

    ok_lat = [x for x in lat if x >= 0]
    print(f"1. propagation, `cnirun -d --name X` returned -> X resolves from a container on the network "
          f"({RUNS} runs): median {statistics.median(ok_lat):.1f} ms, max {max(ok_lat):.1f} ms, "
          f"not resolved within 10 s: {len(lat) - len(ok_lat)} (target: max <= 200 ms)")
    print(f"2. scale: {resolved}/{SCALE} resolved after starting them one after another ({start_all:.0f} s); "
          f"while 20 started and 20 stopped: {asked - failed}/{asked} answers for the {len(stay)} that stayed "
          f"({failed} failed), new ones resolving {new_ok}/20, removed ones still resolving {gone_ok}/20 "
          f"{gone_after:.1f} s after the last removal")
    for label, d in (("network otherwise empty (resolver started and stopped by each run)", cost),
                     ("a container on the network (resolver running)", warm)):
        print(f"3. cost of `cnirun --rm busybox true`, {label}: with DNS {med(d['dns']):.0f} ms, without "
              f"{med(d['nodns']):.0f} ms: {med(d['dns']) / med(d['nodns']):.2f}x (target <= 1.15x; medians of {COST})")
        ratio("dns", "run --rm with DNS, " + ("empty network" if d is cost else "resolver running"),
              med(d["dns"]), med(d["nodns"]), 1.15, "without DNS")
    report_removals(gone)
    return 0


if __name__ == "__main__":
    sys.exit(main())
