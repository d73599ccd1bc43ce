"""Shared helpers for the OCI hook tests (issue 4).

Every test world is private: NETCONFPATH, CNI_CACHE_DIR, CNI_PATH, host-local
dataDir, hook state dir (netns pins) and hook log all live under a tmp dir.

Address plan (unique to these files):
  tests/test_oci_hook.py     10.141.0.0/24 .. 10.141.9.0/24, bridges cnh4u*
  tests/test_oci_hook_podman.py  10.142.0.0/24 .. 10.142.9.0/24, bridges cnh4p*
  tests/test_oci_hook_docker.py  10.143.0.0/24 .. 10.143.9.0/24, bridges cnh4d*
  bench/bench_hook.py         10.144.0.0/24,                  bridge  cnh4b0
"""
from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from conftest import CNIRUN_BIN
from _wait import wait_for

REPO = Path(__file__).resolve().parent.parent
REAL_PLUGIN_DIR = "/usr/lib/cni"


@dataclass
class HookWorld:
    root: Path
    netconf: Path
    cache: Path
    bin: Path
    ipam: Path
    state: Path
    log: Path

    @classmethod
    def make(cls, root: Path) -> "HookWorld":
        w = cls(
            root=root,
            netconf=root / "net.d",
            cache=root / "cache",
            bin=root / "bin",
            ipam=root / "ipam",
            state=root / "state",
            log=root / "log" / "hooks.log",
        )
        for d in (w.netconf, w.cache, w.bin, w.ipam):
            d.mkdir(parents=True, exist_ok=True)
        return w

    def env(self) -> dict[str, str]:
        """The variables install records and the hook reads."""
        return {
            "NETCONFPATH": str(self.netconf),
            "CNI_CACHE_DIR": str(self.cache),
            "CNI_PATH": f"{self.bin}:{REAL_PLUGIN_DIR}",
            "CNIRUN_STATE_DIR": str(self.state),
            "CNIRUN_HOOK_LOG": str(self.log),
        }

    def full_env(self) -> dict[str, str]:
        return {**os.environ, **self.env()}

    def bridge_net(self, name: str, bridge: str, subnet: str, extra: list[dict] | None = None, full: bool = True) -> str:
        """A bridge + host-local (+ portmap + firewall + tuning) conflist; returns its name."""
        plugins: list[dict] = [
            {
                "type": "bridge",
                "bridge": bridge,
                "isGateway": True,
                "ipMasq": True,
                "hairpinMode": True,
                "capabilities": {"ips": True},
                "ipam": {
                    "type": "host-local",
                    "dataDir": str(self.ipam),
                    "ranges": [[{"subnet": subnet}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                },
            }
        ]
        if full:
            plugins += [
                {"type": "portmap", "capabilities": {"portMappings": True}},
                {"type": "firewall"},
                {"type": "tuning", "capabilities": {"mac": True}},
            ]
        plugins += extra or []
        conf = {"cniVersion": "1.0.0", "name": name, "plugins": plugins}
        (self.netconf / f"{name}.conflist").write_text(json.dumps(conf))
        return name

    def log_records(self) -> list[dict]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.strip()]


def leftovers(world: HookWorld, container_id: str, bridges: list[str]) -> list[str]:
    """Everything of a container that should be gone; [] when clean."""
    found: list[str] = []
    results = world.cache / "results"
    if results.exists():
        found += [f"cache file {p.name}" for p in results.iterdir() if container_id in p.name]
    pins = world.state / "netns"
    if pins.exists():
        found += [f"netns pin {p.name}" for p in pins.iterdir()]
    gates = world.state / "starting"
    if gates.exists():
        found += [f"start gate {p.name}" for p in gates.iterdir()]
    for net_dir in world.ipam.iterdir() if world.ipam.exists() else []:
        for p in net_dir.iterdir():
            if p.name not in ("lock",) and not p.name.startswith("last_reserved_ip"):
                found.append(f"host-local reservation {net_dir.name}/{p.name}")
    rules = subprocess.run(["iptables-save"], capture_output=True, text=True).stdout
    found += [f"iptables rule: {line}" for line in rules.splitlines() if container_id in line]
    for br in bridges:
        out = subprocess.run(["ip", "-o", "link", "show", "master", br], capture_output=True, text=True).stdout
        found += [f"veth on {br}: {line.split(':')[1].strip()}" for line in out.splitlines() if line.strip()]
    return found


def delete_bridges(bridges: list[str]) -> None:
    for br in bridges:
        subprocess.run(["ip", "link", "del", br], capture_output=True)


def bridge_exists(br: str) -> bool:
    return subprocess.run(["ip", "link", "show", br], capture_output=True).returncode == 0


def wait_clean(world: HookWorld, container_id: str, bridges: list[str], timeout: float = 15.0) -> list[str]:
    """poststop DELs in the background: what is left of the container once nothing is, or after `timeout` seconds."""

    def found() -> list[str]:
        locks = world.state / "locks"
        return leftovers(world, container_id, bridges) + (
            [f"lock {p.name}" for p in locks.iterdir() if container_id in p.name] if locks.exists() else [])

    return [] if wait_for(lambda: not found(), timeout) else found()


def wait_records(world: HookWorld, container_id: str, count: int, timeout: float = 15.0) -> list[dict]:
    """The container's log records once there are `count` of them (the poststop child logs last)."""

    def records() -> list[dict]:
        return [r for r in world.log_records() if r.get("container") == container_id]

    wait_for(lambda: len(records()) >= count, timeout)
    return records()
