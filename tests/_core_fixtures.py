"""Fixtures and helpers for the CNI runtime core tests (issue 2).

Every test gets its own NETCONFPATH, CNI_CACHE_DIR, CNI_PATH, lock file, state dir and
(for real plugins) host-local data dir, all under pytest's tmp_path, so tests
never touch /etc/cni/net.d or /var/lib/cni.

Address plan of the core tests (unique to these files): 10.121.0.0/16.
  test_cni_runtime.py  10.121.1.0/24 .. 10.121.9.0/24, 10.121.40.0/24 .. 10.121.42.0/24
  test_cli_cni.py       10.121.10.0/24 .. 10.121.19.0/24
  test_interop_libcni   10.121.20.0/24 .. 10.121.29.0/24
  bench/bench_core.py   10.121.30.0/24
Bridges are named "cnt2<x>" and removed at the end of each test.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest

from cnirun.plugins import install_plugin_script
from cnirun.plugins import noop
from cnirun.cni.runtime import CNI
from cnirun.cni.runtime_conf import RuntimeConf

REPO = Path(__file__).resolve().parent.parent
REAL_PLUGIN_DIR = "/usr/lib/cni"


from conftest import CNIRUN_BIN  # noqa: E402
from conftest import needs_plugins as needs_real_plugins  # noqa: E402,F401  (the one marker set)
from conftest import needs_root  # noqa: E402,F401


@dataclass
class CoreEnv:
    """One test's private CNI world: netconf dir, cache dir, plugin dir, lock, state dir (env())."""

    root: Path
    netconf: Path
    cache: Path
    bin: Path
    lock: Path
    ipam: Path  # host-local dataDir for real chains
    netns_file: Path  # an existing path: noop does not enter the netns

    def plugin_dirs(self, real: bool = False) -> list[str]:
        return [str(self.bin)] + ([REAL_PLUGIN_DIR] if real else [])

    def cni(self, real: bool = False, **kw: Any) -> CNI:
        kw.setdefault("plugin_path", self.plugin_dirs(real))
        kw.setdefault("netconf_path", str(self.netconf))
        kw.setdefault("cache_dir", str(self.cache))
        kw.setdefault("lock_file", str(self.lock))
        return CNI(**kw)

    def env(self, real: bool = False, **extra: str) -> dict[str, str]:
        """Environment for a `cnirun` subprocess bound to this world."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("CNI") and k not in ("NETCONFPATH", "CAP_ARGS")}
        env.update(
            NETCONFPATH=str(self.netconf),
            CNI_PATH=":".join(self.plugin_dirs(real)),
            CNI_CACHE_DIR=str(self.cache),
            CNIRUN_LOCK_FILE=str(self.lock),
            CNIRUN_STATE_DIR=str(self.root / "state"),
        )
        env.update(extra)
        return env

    def write(self, filename: str, obj: Any) -> Path:
        p = self.netconf / filename
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(obj if isinstance(obj, str) else json.dumps(obj, indent=2))
        return p

    def conflist(self, name: str, plugins: list[dict[str, Any]], filename: str | None = None, **top: Any) -> Path:
        obj = {"cniVersion": top.pop("cniVersion", "1.0.0"), "name": name, **top, "plugins": plugins}
        return self.write(filename or f"{name}.conflist", obj)

    def debug(self, label: str, **behaviour: Any) -> str:
        """A noop debug file; `behaviour` as in cnirun.plugins.noop's docstring."""
        p = self.root / f"debug-{label}"
        noop.write_debug(p, **behaviour)
        return str(p)

    def noop_plugin(self, label: str, **extra: Any) -> dict[str, Any]:
        """A noop plugin object recording into its own debug file."""
        path = self.root / f"debug-{label}"
        if not path.exists():
            noop.write_debug(path)
        return {"type": "noop", "debugFile": str(path), **extra}

    def calls(self, label: str) -> list[dict[str, Any]]:
        return noop.read_log(self.root / f"debug-{label}")

    def stdins(self, label: str, command: str | None = None) -> list[dict[str, Any]]:
        return [json.loads(c["stdin"]) for c in self.calls(label) if command is None or c["command"] == command]

    def cache_files(self) -> list[str]:
        d = self.cache / "results"
        return sorted(os.listdir(d)) if d.is_dir() else []

    def rt(self, cid: str = "ctr1", ifname: str = "eth0", **kw: Any) -> RuntimeConf:
        kw.setdefault("netns", str(self.netns_file))
        return RuntimeConf(container_id=cid, ifname=ifname, **kw)


@pytest.fixture
def core(tmp_path: Path) -> CoreEnv:
    env = CoreEnv(
        root=tmp_path,
        netconf=tmp_path / "net.d",
        cache=tmp_path / "cache",
        bin=tmp_path / "bin",
        lock=tmp_path / "cni.lock",
        ipam=tmp_path / "ipam",
        netns_file=tmp_path / "fake-netns",
    )
    env.netconf.mkdir()
    env.netns_file.write_text("")
    install_plugin_script(env.bin, "noop", "cnirun.plugins.noop")
    return env


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


def ip_json(*args: str) -> list[dict[str, Any]]:
    out = ip("-j", *args, check=False)
    if out.returncode != 0 or not out.stdout.strip():
        return []
    return json.loads(out.stdout)


class Netns:
    """Named network namespaces made by a test, removed at the end."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def new(self, prefix: str = "t2") -> str:
        name = f"{prefix}-{secrets.token_hex(4)}"
        ip("netns", "add", name)
        ip("-n", name, "link", "set", "lo", "up")
        self.names.append(name)
        return name

    @staticmethod
    def path(name: str) -> str:
        return f"/run/netns/{name}"

    def cleanup(self) -> None:
        for n in self.names:
            if os.path.exists(self.path(n)):
                ip("netns", "delete", n, check=False)


@pytest.fixture
def netns() -> Iterator[Netns]:
    ns = Netns()
    yield ns
    ns.cleanup()
    leftovers = [n for n in ns.names if os.path.exists(ns.path(n))]
    assert not leftovers, f"netns left behind: {leftovers}"


def bridge_members(bridge: str) -> list[str]:
    return [link["ifname"] for link in ip_json("link", "show", "master", bridge)]


def delete_bridge(bridge: str) -> None:
    if ip_json("link", "show", "dev", bridge):
        ip("link", "delete", bridge, check=False)


def iptables_rules_naming(text: str) -> list[str]:
    """Every iptables/ip6tables rule (all tables) whose text contains `text`."""
    hits: list[str] = []
    for tool in ("iptables-save", "ip6tables-save"):
        exe = shutil.which(tool) or f"/usr/sbin/{tool}"
        if not os.path.exists(exe):
            continue
        out = subprocess.run([exe], capture_output=True, text=True).stdout
        hits += [line for line in out.splitlines() if text in line]
    return hits


def bridge_chain(bridge: str, subnet: str, gateway: str, data_dir: Path, *, full: bool = True,
                 extra_bridge: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """bridge + host-local (+ portmap + firewall + tuning) with a private IPAM dir."""
    plugins: list[dict[str, Any]] = [
        {
            "type": "bridge",
            "bridge": bridge,
            "isGateway": True,
            "ipMasq": True,
            "hairpinMode": True,
            **(extra_bridge or {}),
            "ipam": {
                "type": "host-local",
                "dataDir": str(data_dir),
                "ranges": [[{"subnet": subnet, "gateway": gateway}]],
                "routes": [{"dst": "0.0.0.0/0"}],
            },
        }
    ]
    if full:
        plugins += [
            {"type": "portmap", "capabilities": {"portMappings": True}},
            {"type": "firewall"},
            {"type": "tuning"},
        ]
    return plugins


def host_local_reservations(data_dir: Path, network: str) -> list[str]:
    """IP files host-local keeps for `network` (lock and last_reserved_ip excluded)."""
    d = data_dir / network
    if not d.is_dir():
        return []
    return sorted(f for f in os.listdir(d) if f[0].isdigit() or ":" in f)


def run_cnirun(args: list[str], env: dict[str, str], timeout: float = 60, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CNIRUN_BIN, *args], env=env, capture_output=True, text=True, timeout=timeout, **kw)


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    """Non-zero exit, exactly one `cnirun: ...` line on stderr, no traceback."""
    assert proc.returncode != 0, (proc.stdout, proc.stderr)
    err = proc.stderr.strip()
    assert "Traceback" not in err, err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("cnirun: "), err
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]
