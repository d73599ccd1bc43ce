"""CPU time per component of whatever runs meanwhile (bench_scale's per-component table).

Processes that exit are counted from the kernel's taskstats exit records
(pyroute2's TaskStats: each task's exact run time, cpu_run_virtual_total, and its
name at exit); the daemons that stay (dockerd, containerd) from /proc/PID/stat
before and after (clock ticks). cnirun's runtime processes all run `python -c`;
they name themselves (core.process.set_name): cnirun-attach (the shim's worker,
the ADDs), cnirun-del (the DEL at delete). The shim itself execs runc, so its
time is counted with runc's, as is the sh launcher's on every runc call. Each
thread is counted by its own name. The bench's own process is left out.
BENCH_CPU_DEBUG=1 prints every record (name, pid, parent, CPU) on stderr.

    with ComponentCPU() as cpu:
        ...
    cpu.seconds  # {component: CPU seconds}
"""
from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time

DAEMONS = ("dockerd", "containerd")
PLUGINS = frozenset({"bridge", "host-local", "portmap", "firewall", "tuning", "bandwidth", "loopback", "macvlan",
                     "ipvlan", "dhcp", "static", "sbr", "vrf", "host-device", "ptp", "vlan", "cnirun-policy",
                     "cnirun-dns"})
COMPONENTS = {
    "cnirun": "cnirun front end",
    "cnirun-attach": "cnirun attach worker (ADD)",
    "cnirun-del": "cnirun DEL (runc delete)",
    "cnirun-hook": "cnirun OCI hook (Podman)",
    "cnirun-watch": "cnirun watcher",
    "sh": "sh (the runtime's launcher)",
    "flock": "flock (the start gate)",
    "docker": "docker CLI",
    "podman": "podman",
    "conmon": "conmon",
    "containerd-shim": "containerd-shim",
    "docker-init": "the container (docker-init)",
    "true": "the container (true)",
    "dnsmasq": "dnsmasq",
}


def component(comm: str) -> str:
    if comm in COMPONENTS:
        return COMPONENTS[comm]
    if comm in PLUGINS:
        return "CNI plugins"
    if comm.startswith(("iptables", "ip6tables", "xtables")):
        return "iptables (the plugins' calls)"
    if comm.startswith("runc"):
        # The runtime's launcher (sh) and, on create, the cnirun shim exec runc: their time is runc's here.
        return "runc (hook: + launcher, shim)"
    if comm == "exe":  # runc init, run as /proc/self/exe
        return "runc init"
    if comm.startswith("python"):
        return "python (other)"
    return "other: " + comm


def _daemon_ticks() -> dict[str, int]:
    out: dict[str, int] = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        if comm in DAEMONS:
            fields = stat[stat.rindex(")") + 2:].split()
            out[comm] = out.get(comm, 0) + int(fields[11]) + int(fields[12])  # utime, stime
    return out


class ComponentCPU:
    """Collects while in its with-block; `seconds` afterwards. The taskstats records are read by a
    child process (`python _cpu.py`) in its main thread: pyroute2's socket got no records when a
    thread other than the main one read it."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.available = False
        self._child: subprocess.Popen[str] | None = None

    def __enter__(self) -> "ComponentCPU":
        self._child = subprocess.Popen([sys.executable, os.path.abspath(__file__)], stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE, text=True)
        assert self._child.stdout is not None
        self.available = self._child.stdout.readline().strip() == "ready"
        return self

    def __exit__(self, *exc: object) -> None:
        child = self._child
        if child is None:
            return
        time.sleep(0.5)  # the last exits' records
        out, _ = child.communicate("", timeout=30)
        if self.available and out.strip():
            self.seconds = json.loads(out)


def collect() -> int:
    """The child: taskstats exit records until stdin closes; prints {component: CPU seconds} as JSON."""
    try:
        from pyroute2 import TaskStats

        ts = TaskStats()
        ts.bind()
        mask = f"0-{(os.cpu_count() or 1) - 1}"
        ts.register_mask(mask)
    except Exception as e:  # noqa: BLE001 - no taskstats here: the bench goes on without the table
        print(f"no taskstats: {e}", flush=True)
        return 0
    before = _daemon_ticks()
    print("ready", flush=True)
    me, parent = os.getpid(), os.getppid()
    seconds: dict[str, float] = {}
    fd, stdin = ts.fileno(), sys.stdin.fileno()
    done = False
    while not done:
        r, _, _ = select.select([fd, stdin], [], [], 1.0)
        if stdin in r:
            done = not os.read(stdin, 4096)
        if fd not in r:
            continue
        try:
            msgs = list(ts.marshal.parse(os.read(fd, 1 << 20)))
        except Exception:  # noqa: BLE001 - a record lost (ENOBUFS): the figures are a lower bound
            continue
        for msg in msgs:
            agg = msg.get_attr("TASKSTATS_TYPE_AGGR_PID")
            stats = agg.get_attr("TASKSTATS_TYPE_STATS") if agg is not None else None
            if stats is None or stats["ac_pid"] in (me, parent):
                continue
            comm = stats["ac_comm"].rstrip(b"\0").decode(errors="replace")
            name = component(comm)
            if os.environ.get("BENCH_CPU_DEBUG"):
                sys.stderr.write(f"{comm} pid {stats['ac_pid']} ppid {stats['ac_ppid']} "
                                 f"{stats['cpu_run_virtual_total'] / 1e6:.1f} ms\n")
            seconds[name] = seconds.get(name, 0.0) + stats["cpu_run_virtual_total"] / 1e9
    after = _daemon_ticks()
    hz = os.sysconf("SC_CLK_TCK")
    for comm, ticks in after.items():
        seconds[comm] = seconds.get(comm, 0.0) + (ticks - before.get(comm, 0)) / hz
    print(json.dumps(seconds), flush=True)
    return 0


def table(groups: dict[str, dict[str, float]], per: int) -> list[str]:
    """Lines: one row per component, one column per group, CPU milliseconds per container (per = containers)."""
    names = sorted({c for g in groups.values() for c in g}, key=lambda c: -max(g.get(c, 0.0) for g in groups.values()))
    heads = list(groups)
    lines = [f"{'component (CPU ms per container)':<36}" + "".join(f"{h[:22]:>24}" for h in heads)]
    for c in names:
        lines.append(f"{c[:36]:<36}" + "".join(f"{groups[h].get(c, 0.0) * 1000 / per:24.1f}" for h in heads))
    lines.append(f"{'total':<36}" + "".join(f"{sum(groups[h].values()) * 1000 / per:24.1f}" for h in heads))
    return lines


if __name__ == "__main__":
    sys.exit(collect())
