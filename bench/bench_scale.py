#!/usr/bin/env python3
"""Many containers at once (#13): wall time and containers/s next to the engines' own networking.

K concurrent `--rm busybox true` (default 100, env BENCH_K), each group measured
in the same run, one group after the other:

  docker run --rm busybox true                      Docker's own bridge (the peer)
  cnirun --rm --mode sandbox busybox true           Docker, no daemon configuration
  cnirun --rm --mode hook busybox true              Docker through the cnirun runtime (the bench
                                                    installs it with its own environment and
                                                    restores daemon.json byte for byte)
  podman run --rm busybox true                      Podman's own path (netavark)
  podman --network-backend cni run ... same chain   Podman running the same CNI chain
  cnirun --engine podman --rm busybox true

then the same at 20 (the target: hook mode at most 1.15x of Docker's bridge), next to
`docker run --network none` alone and the chain's plugins executed directly (20
concurrent ADD+DEL cycles, no cnirun): together they are the floor any CNI runtime
pays on top of Docker's own container start, printed as a ratio to Docker's bridge.
After each cnirun group it counts what was left (veths, reservations, cache
files, iptables rules, run state, containers): every figure must be 0.
The chain is bridge + host-local + portmap + firewall + tuning on
10.198.250.0/24 (bridge t198bench); BENCH_SKIP=hook,podman leaves parts out.
Last, BENCH_DETACHED (default 50) `-d busybox sleep` runs on one network, Docker
sandbox mode then Podman (network j28res, 10.248.250.0/24): cnirun's resident
processes, threads and memory for them (watcher, resolvers, Docker's helper
containers), and how long after `rm -f` of all at once nothing of them is left
(BENCH_SKIP=detached leaves it out; `bench_scale.py detached` runs only it).
Timing is for a quiet machine: the lead reruns it; here only a sanity run.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _cpu import ComponentCPU, table
from _common import CNIRUN, DAEMON_JSON, REPO, chain, concurrent, install_runtime, ratio, read_or_none, \
    skipped, uninstall_runtime

sys.path.insert(0, str(REPO))
K = int(os.environ.get("BENCH_K", "100"))
SKIP = skipped()
RUN_TIMEOUT = float(os.environ.get("BENCH_RUN_TIMEOUT", "300"))  # seconds before one run counts as hung
NET, BRIDGE, SUBNET = "t198bench", "t198bench", "10.198.250.0/24"
PODMAN_NET, PODMAN_BRIDGE, PODMAN_SUBNET = "t198benchp", "t198benchp", "10.198.251.0/24"


def cpu_seconds() -> float:
    """CPU time the whole machine has spent busy (all processes, the daemons included), from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    busy = sum(fields[:8]) - fields[3] - fields[4]  # all but idle and iowait
    return busy / os.sysconf("SC_CLK_TCK")


def _netns() -> set[str]:
    return {n for n in os.listdir("/run/netns") if n.startswith("cnirun-")} if os.path.isdir("/run/netns") else set()


NETNS_BEFORE: set[str] = set()  # other people's netns: not ours to count


def leftovers(tmp: Path) -> dict[str, int]:
    veths = subprocess.run(["ip", "-o", "link", "show", "master", BRIDGE], capture_output=True, text=True).stdout
    ipam = tmp / "ipam" / NET
    rules = subprocess.run(["iptables-save"], capture_output=True, text=True).stdout
    runs = tmp / "state" / "containers"
    label = f"label=cnirun.state={runs}"
    containers = 0
    for engine in ("docker", "podman"):
        if shutil.which(engine):
            containers += len(subprocess.run([engine, "ps", "-aq", "--filter", label], capture_output=True,
                                             text=True).stdout.split())
    return {
        "veths": len(veths.splitlines()),
        "reservations": len([p for p in ipam.iterdir() if p.name[0].isdigit()]) if ipam.is_dir() else 0,
        "cache files": len(list((tmp / "cache" / "results").glob("*"))),
        "iptables rules": sum("10.198.250." in ln or f'name: \\"{NET}\\"' in ln for ln in rules.splitlines()),
        "run state": len([p for p in runs.iterdir() if not p.name.startswith(".")]) if runs.is_dir() else 0,
        "containers": containers,
        "netns": len(_netns() - NETNS_BEFORE),
    }


def settle(tmp: Path, wait: float = 30.0) -> dict[str, int]:
    """Leftovers once background teardowns had `wait` seconds to finish."""
    deadline = time.monotonic() + wait
    while True:
        left = leftovers(tmp)
        if not any(left.values()) or time.monotonic() > deadline:
            return left
        time.sleep(0.5)


def plugin_cycles(conf: dict, k: int) -> tuple[float, float]:
    """k concurrent ADD+DEL cycles of `conf`'s plugins, executed directly, each into its own netns:
    (wall s, machine CPU s per cycle). No cnirun at all: what the chain itself costs."""
    from concurrent.futures import ThreadPoolExecutor

    names = [f"t198floor{i}" for i in range(k)]
    for n in names:
        subprocess.run(["ip", "netns", "add", n], check=True)

    def cycle(i: int) -> None:
        env = dict(os.environ, CNI_CONTAINERID=f"t198floor{i}", CNI_NETNS=f"/run/netns/t198floor{i}",
                   CNI_IFNAME="eth0", CNI_PATH="/usr/lib/cni")
        prev = None
        for command, plugins in (("ADD", conf["plugins"]), ("DEL", list(reversed(conf["plugins"])))):
            for p in plugins:
                one = dict(p, cniVersion=conf["cniVersion"], name=conf["name"], **({"prevResult": prev} if prev else {}))
                out = subprocess.run(["/usr/lib/cni/" + p["type"]], input=json.dumps(one).encode(),
                                     env=dict(env, CNI_COMMAND=command), capture_output=True)
                if out.returncode != 0:
                    raise SystemExit(f"bench_scale: {p['type']} {command} failed: {out.stdout[-300:]!r}")
                if command == "ADD":
                    prev = json.loads(out.stdout)

    try:
        cycle(0)  # makes the bridge, as the first container of a group does
        c0, t = cpu_seconds(), time.perf_counter()
        with ThreadPoolExecutor(k) as ex:
            list(ex.map(cycle, range(k)))
        return time.perf_counter() - t, (cpu_seconds() - c0) / k
    finally:
        for n in names:
            subprocess.run(["ip", "netns", "del", n], capture_output=True)


# -- -d containers: what cnirun keeps resident for them, and how fast `rm -f` of all is torn down -------
DETACHED_N = int(os.environ.get("BENCH_DETACHED", "50"))
DET_NET, DET_BRIDGE, DET_SUBNET = "j28res", "j28res", "10.248.250.0/24"


def _descendants(pid: int) -> list[int]:
    """`pid` and every process below it."""
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def _status(pid: int) -> dict[str, str]:
    try:
        with open(f"/proc/{pid}/status") as f:
            return dict(ln.split(":", 1) for ln in f.read().splitlines() if ":" in ln)
    except OSError:
        return {}


def _lock_pid(path: Path) -> int:
    try:
        return int(path.read_text().split()[0])
    except (OSError, IndexError, ValueError):
        return 0


def resident(state: Path, engine: str) -> dict[str, tuple[int, float, int]]:
    """cnirun's resident processes for the -d runs of `state`, by part: (processes, RSS MiB, threads).
    The watcher (supervisor, worker and what it runs: `podman wait`), the resolvers (keeper, dnsmasq), and
    Docker sandbox mode's helper containers (each: its shim and its process)."""
    parts: dict[str, list[int]] = {"watcher": [], "resolvers": [], "helpers": []}
    sup = _lock_pid(state / "containers" / ".watcher.lock")
    parts["watcher"] = _descendants(sup) if sup else []
    keeper = _lock_pid(state / "dns" / ".keeper.lock")
    parts["resolvers"] = _descendants(keeper) if keeper else []
    for d in os.listdir("/proc"):  # the resolvers (dnsmasq) the keeper started: its children or not
        try:
            if d.isdigit() and str(state).encode() in Path(f"/proc/{d}/cmdline").read_bytes():
                parts["resolvers"] += [int(d)] if int(d) not in parts["resolvers"] + parts["watcher"] else []
        except OSError:
            continue
    if engine == "docker":
        ids = subprocess.run(["docker", "ps", "-q", "--filter", f"label=cnirun.state={state / 'containers'}",
                              "--filter", "label=cnirun.role=sandbox"], capture_output=True, text=True).stdout.split()
        pids = subprocess.run(["docker", "inspect", "--format", "{{.State.Pid}}", *ids], capture_output=True,
                              text=True).stdout.split() if ids else []
        for p in map(int, pids):
            shim = int(_status(p).get("PPid", "0"))
            parts["helpers"] += [p, shim] if shim > 1 else [p]
    out = {}
    for part, pids in parts.items():
        st = [_status(p) for p in pids]
        st = [s for s in st if s]
        rss = sum(int(s.get("VmRSS", "0 kB").split()[0]) for s in st) / 1024
        out[part] = (len(st), rss, sum(int(s.get("Threads", "1")) for s in st))
    return out


def detached(engine: str, n: int) -> tuple[dict[str, tuple[int, float, int]], float, float, dict[str, int]]:
    """n `-d busybox sleep` runs (Docker sandbox mode, or Podman) on one network: what is resident, then
    `rm -f` of all at once: (resident, rm's seconds, seconds after it until nothing is left, leftovers)."""
    tmp = Path(tempfile.mkdtemp(prefix="cnirun-bench-detached-"))
    netconf = tmp / "net.d"
    netconf.mkdir()
    (netconf / f"{DET_NET}.conflist").write_text(json.dumps(chain(DET_NET, DET_BRIDGE, DET_SUBNET, str(tmp / "ipam"))))
    env = dict(os.environ, NETCONFPATH=str(netconf), CNI_CACHE_DIR=str(tmp / "cache"), CNIRUN_STATE_DIR=str(tmp / "state"),
               CNIRUN_DEFAULT_NETWORK=DET_NET, CNI_PATH="/usr/lib/cni", CNIRUN_WATCHER_IDLE="3")
    argv = [CNIRUN, "--engine", "podman"] if engine == "podman" else [CNIRUN, "--mode", "sandbox"]
    names = [f"j28res-{i}" for i in range(n)]
    runs = tmp / "state" / "containers"

    def left() -> dict[str, int]:
        ipam = tmp / "ipam" / DET_NET
        return {
            "run state": len([p for p in runs.iterdir() if not p.name.startswith(".")]) if runs.is_dir() else 0,
            "cache files": len(list((tmp / "cache" / "results").glob("*"))),
            "veths": len(subprocess.run(["ip", "-o", "link", "show", "master", DET_BRIDGE], capture_output=True,
                                        text=True).stdout.splitlines()),
            "reservations": len([p for p in ipam.iterdir() if p.name[0].isdigit()]) if ipam.is_dir() else 0,
        }

    try:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(4) as ex:
            list(ex.map(lambda name: subprocess.run([*argv, "-d", "--name", name, "busybox", "sleep", "600"],
                                                    env=env, capture_output=True, timeout=RUN_TIMEOUT), names))
        time.sleep(2)  # the watcher has adopted them all (and its `podman wait`s started)
        res = resident(tmp / "state", engine)
        t0 = time.monotonic()
        subprocess.run([engine, "rm", "-f", *names], capture_output=True, timeout=RUN_TIMEOUT)
        t1 = time.monotonic()
        deadline = t1 + 120
        while any(left().values()) and time.monotonic() < deadline:
            time.sleep(0.05)
        return res, t1 - t0, time.monotonic() - t1, left()
    finally:
        subprocess.run([engine, "rm", "-f", *names], capture_output=True)
        subprocess.run(["ip", "link", "del", DET_BRIDGE], capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)


def report_detached(n: int) -> int:
    """The -d measure for each engine: resident per part and per container, and the teardown of `rm -f`."""
    bad = 0
    for engine in ("docker", "podman"):
        if not shutil.which(engine) or engine in SKIP:
            continue
        res, rm_s, after_s, left = detached(engine, n)
        what = "Docker sandbox" if engine == "docker" else "Podman"
        print(f"\n{n} {what} -d containers on one network: cnirun's resident processes")
        for part, (procs, rss, threads) in res.items():
            print(f"  {part:<10} {procs:5} processes {threads:5} threads {rss:8.1f} MiB RSS"
                  f"   per container: {procs / n:.2f} processes, {rss / n:.2f} MiB")
        print(f"  `{engine} rm -f` of all {n}: {rm_s:.2f} s; nothing left {after_s:.2f} s after it returned: "
              + ", ".join(f"{k} {v}" for k, v in left.items()))
        bad += any(left.values())
    return 1 if bad else 0


def main() -> int:
    if os.geteuid() != 0:
        print("bench_scale: needs root (skipped)")
        return 0
    tmp = Path(tempfile.mkdtemp(prefix="cnirun-bench-scale-"))
    netconf = tmp / "net.d"
    netconf.mkdir()
    (netconf / f"{NET}.conflist").write_text(json.dumps(chain(NET, BRIDGE, SUBNET, str(tmp / "ipam"))))
    podman_cni = tmp / "podman-cni"
    podman_cni.mkdir()
    (podman_cni / f"{PODMAN_NET}.conflist").write_text(
        json.dumps(chain(PODMAN_NET, PODMAN_BRIDGE, PODMAN_SUBNET, str(tmp / "ipam-podman"))))
    env = dict(os.environ, NETCONFPATH=str(netconf), CNI_CACHE_DIR=str(tmp / "cache"),
               CNIRUN_STATE_DIR=str(tmp / "state"), CNIRUN_DEFAULT_NETWORK=NET, CNI_PATH="/usr/lib/cni")
    rows: list[tuple[str, int, float, int, str]] = []  # (what, k, seconds, ok, first failure)
    cpu: dict[tuple[str, int], float] = {}  # machine CPU seconds per container, daemons included
    components: dict[str, dict[str, float]] = {}  # at 20: CPU seconds per component (_cpu.ComponentCPU)
    NETNS_BEFORE.update(_netns())
    leaks: dict[str, dict[str, int]] = {}
    daemon_before = read_or_none(DAEMON_JSON)
    runtime_dir = tmp / "runtime"
    hooked = False
    # SIGTERM (a timeout around the bench) must still run the cleanup below.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    def install() -> bool:
        """The cnirun runtime, registered only while the hook group runs; False: left out."""
        return install_runtime(runtime_dir, env, "bench_scale")

    def uninstall() -> None:
        uninstall_runtime(runtime_dir, env, daemon_before, "bench_scale")

    try:
        groups: list[tuple[str, list[str], dict[str, str] | None]] = [
            ("docker run (Docker's bridge)", ["docker", "run", "--rm", "busybox", "true"], None),
            ("cnirun sandbox", [CNIRUN, "--rm", "--mode", "sandbox", "busybox", "true"], env),
        ]
        if "hook" not in SKIP:
            groups.append(("cnirun hook", [CNIRUN, "--rm", "--mode", "hook", "busybox", "true"], env))
        if shutil.which("podman") and "podman" not in SKIP:
            groups += [
                ("podman run (netavark)", ["podman", "run", "--rm", "busybox", "true"], None),
                ("podman --network-backend cni", ["podman", "--network-backend", "cni", "--cni-config-dir",
                                                  str(podman_cni), "run", "--rm", "--network", PODMAN_NET,
                                                  "busybox", "true"], None),
                ("cnirun --engine podman", [CNIRUN, "--engine", "podman", "--rm", "busybox", "true"], env),
            ]
        floor_groups = [("docker run --network none", ["docker", "run", "--rm", "--network", "none", "busybox", "true"],
                         None)]
        for k in (K, 20) if K != 20 else (20,):
            for name, argv, e in groups + (floor_groups if k == 20 else []):
                if name == "cnirun hook":
                    hooked = install()
                    if not hooked:
                        continue
                c0 = cpu_seconds()
                try:
                    with ComponentCPU() as parts:
                        took, ok, err = concurrent(argv, k, e, RUN_TIMEOUT)
                    cpu[(name, k)] = (cpu_seconds() - c0) / k
                    if k == 20 and parts.available:
                        components[name] = parts.seconds
                finally:
                    if hooked:
                        uninstall()
                        hooked = False
                rows.append((name, k, took, ok, err))
                if name.startswith("cnirun"):
                    leaks[f"{name} x{k}"] = settle(tmp)
        floor_conf = chain("t198floor", "t198floor", "10.198.252.0/24", str(tmp / "ipam-floor"))
        plugins_wall, plugins_cpu = plugin_cycles(floor_conf, 20)
    finally:
        if hooked:
            uninstall()
        for br in (BRIDGE, PODMAN_BRIDGE, "t198floor"):
            subprocess.run(["ip", "link", "del", br], capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"\nbench_scale: concurrent `--rm busybox true` (wall time; one run per group, {os.cpu_count()} CPUs)")
    print(f"{'group':<32} {'k':>4} {'ok':>8} {'wall s':>8} {'cont/s':>7} {'vs docker bridge':>17} {'CPU s/cont':>11}")
    for name, k, took, ok, err in rows:
        base = next(t for n, kk, t, _, _ in rows if kk == k and n.startswith("docker run"))
        print(f"{name:<32} {k:>4} {f'{ok}/{k}':>8} {took:8.2f} {ok / took:7.1f} {took / base:16.2f}x"
              f" {cpu[(name, k)]:11.3f}"
              + (f"   first failure: {err}" if err else ""))
    for name in ("cnirun hook", "cnirun sandbox"):
        mine = [t for n, kk, t, _, _ in rows if n == name and kk == 20]
        base = [t for n, kk, t, _, _ in rows if n.startswith("docker run") and kk == 20]
        if mine and base:
            target = " (target <= 1.15x)" if name == "cnirun hook" else ""
            print(f"20 concurrent, {name} vs docker bridge: {mine[0] / base[0]:.2f}x{target}")
            ratio("scale", f"20 concurrent, {name}", mine[0], base[0], 1.15 if name == "cnirun hook" else None,
                  "docker run bridge")
    none = [(t, cpu[(n, 20)]) for n, kk, t, _, _ in rows if n == "docker run --network none" and kk == 20]
    base = [t for n, kk, t, _, _ in rows if n.startswith("docker run (") and kk == 20]
    if none and base:
        cores = os.cpu_count() or 1
        floor = max(none[0][0], (none[0][1] + plugins_cpu) * 20 / cores)
        print(f"the chain's plugins alone, 20 concurrent ADD+DEL cycles: {plugins_wall:.2f} s wall, "
              f"{plugins_cpu:.3f} CPU s per cycle")
        print(f"floor of any CNI runtime at 20 concurrent here: max(docker none's wall, (docker none's + the "
              f"plugins' CPU s) x 20 / {cores} cores) = {floor:.2f} s = {floor / base[0]:.2f}x of docker bridge")
    print("CPU s/cont: the machine's busy time per container (engines, plugins, cnirun; other load too):")
    print("  with every core busy, wall time follows it, whatever the locking.")
    if components:
        print("\nwhere the CPU goes at 20 concurrent (exited processes from the kernel's taskstats, the daemons from /proc):")
        for line in table(components, 20):
            print("  " + line)
    print("left behind after each cnirun group (all must be 0):")
    for name, left in leaks.items():
        print(f"  {name:<28} " + ", ".join(f"{k} {v}" for k, v in left.items()))
    detached_rc = report_detached(DETACHED_N) if "detached" not in SKIP else 0
    return 0 if all(not any(v.values()) for v in leaks.values()) and not detached_rc else 1


if __name__ == "__main__":
    if sys.argv[1:] == ["detached"]:  # only the -d measure
        sys.exit(report_detached(DETACHED_N) if os.geteuid() == 0 else 0)
    sys.exit(main())
