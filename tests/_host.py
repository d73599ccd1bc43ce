"""What a leak of the test suite would show on the host, and the check that a run left none.

One snapshot of the host-wide places cnirun and its plugins write to
(reservations, cache files, netns, veths, rules, containers, installs,
bridges, resolvers). A plain pytest session takes it in conftest's
session fixture; tests/run_parallel.py takes it once before its workers
start and compares after they all ended (the workers skip theirs).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from _wait import wait_for

# Hook poststops and watchers finish in the background: a run's end gives them this long.
SETTLE_SECONDS = 20.0


def _listdir(path: str) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except OSError:
        return []


def _ids(cmd: list[str]) -> list[str]:
    if shutil.which(cmd[0]) is None:
        return []
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    return sorted(out.split())


def host_state() -> dict[str, list[str]]:
    """What a leak would show: reservations, cache files, netns, veths, rules, containers, installs."""
    reservations = [
        f"{net}/{f}"
        for net in _listdir("/var/lib/cni/networks")
        for f in _listdir(f"/var/lib/cni/networks/{net}")
        if f != "lock" and not f.startswith("last_reserved_ip")
    ]
    veths = subprocess.run(["ip", "-o", "link", "show", "type", "veth"], capture_output=True, text=True).stdout
    rules = subprocess.run(["iptables-save"], capture_output=True, text=True).stdout.splitlines()
    # Rules for one container name its address or its ID; chain scaffolding that
    # plugins create once per host (and Docker's own rules) is not a leak.
    per_container = [r for r in rules if r.startswith("-A") and (' id: \\"' in r or "-d 10." in r or "-s 10." in r)]
    return {
        "host-local reservations": reservations,
        "cache files": _listdir("/var/lib/cni/results"),
        "netns": _listdir("/run/netns"),
        "veths": sorted(line.split(":")[1].strip().split("@")[0] for line in veths.splitlines() if ":" in line),
        "iptables rules": sorted(per_container),
        "pinned netns": _listdir("/run/cnirun/netns"),
        "start gates": _listdir("/run/cnirun/starting"),
        # The watcher's lock, pid and log files are the project's own persistent
        # bookkeeping (a fresh machine has none until the first -d run or gc):
        # not a leak. Everything else there, half-made .tmp- dirs included, is.
        "run state": [n for n in _listdir("/run/cnirun/containers") if not n.startswith(".watcher.")],
        "docker containers": _ids(["docker", "ps", "-aq", "--no-trunc"]),
        "podman containers": _ids(["podman", "ps", "-aq", "--no-trunc"]),
        "daemon.json": _listdir("/etc/docker") if os.path.exists("/etc/docker/daemon.json") else [],
        "hooks.d": _listdir("/etc/containers/oci/hooks.d"),
        # Bridges the tests' networks made (World, netstore, compose) and cnirun's own
        # isolation rules between them (mangle table, both families).
        "bridges": sorted(ln.split(":")[1].strip() for ln in subprocess.run(
            ["ip", "-o", "link", "show", "type", "bridge"], capture_output=True, text=True).stdout.splitlines()
            if ":" in ln),
        "isolation rules": sorted(
            f"{tool}: {r}" for tool in ("iptables-save", "ip6tables-save")
            for r in subprocess.run([tool, "-t", "mangle"], capture_output=True, text=True).stdout.splitlines()
            if r.startswith("-A CNIRUN-ISOLATION")),
        # cnirun's per-network resolvers (cnirun.dns), whatever their state dir, and the
        # default state dir's names store (a network's lock file and the resolvers' keeper's lock and log are
        # bookkeeping, not a leak).
        "dnsmasq started by cnirun": _cnirun_resolvers(),
        "dns state": [n for n in _listdir("/run/cnirun/dns") if not n.endswith(".lock") and n != ".keeper.log"],
    }


def conf_file_args() -> list[tuple[int, str]]:
    """(pid, its first --conf-file=... argument) of every running process that has one (dnsmasq's)."""
    out = []
    for pid in _listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        conf = [a.decode(errors="replace") for a in args if a.startswith(b"--conf-file=")]
        if conf:
            out.append((int(pid), conf[0]))
    return out


def _cnirun_resolvers() -> list[str]:
    """Command lines of running dnsmasq processes cnirun started (their config file is cnirun-dnsmasq.conf)."""
    return sorted(conf for pid, conf in conf_file_args()
                  if conf.endswith("/cnirun-dnsmasq.conf") and Path(f"/proc/{pid}/stat").exists())


def changes_since(before: dict[str, list[str]], settle: float = SETTLE_SECONDS) -> str:
    """'' once the host is as `before` showed it (polled for up to `settle` seconds), else what changed, as JSON."""
    if wait_for(lambda: host_state() == before, settle, step=0.5):
        return ""
    after = host_state()
    changed = {
        k: {"left": sorted(set(after[k]) - set(before[k])), "gone": sorted(set(before[k]) - set(after[k]))}
        for k in before
        if after[k] != before[k]
    }
    return json.dumps(changed, indent=1) if changed else ""
