"""What the benches share: paths, the chains they run, timing one command, a private CNI world for the
live-change benches, and installing the cnirun Docker runtime for a hook-mode group (daemon.json restored).

Not a bench (`make bench` runs it too, and it does nothing); each bench imports it as `_common` (its own
directory is first on sys.path when it runs as `python bench/NAME.py`).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
CNIRUN = str(REPO / ".venv" / "bin" / "cnirun")
PLUGINS = "/usr/lib/cni"
DAEMON_JSON = "/etc/docker/daemon.json"


RESULTS = Path(os.environ.get("BENCH_RESULTS") or REPO / "bench" / "results" / "latest.jsonl")


def ratio(bench: str, what: str, value: float, peer: float, target: float | None = None, peer_name: str = "") -> float:
    """Record one ratio (value / peer, both measured in this run) for `make bench`'s plot; returns it."""
    r = value / peer if peer else float("inf")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a") as f:
        f.write(json.dumps({"bench": bench, "what": what, "value": value, "peer": peer, "peer_name": peer_name,
                            "ratio": r, "target": target, "at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())})
                + "\n")
    return r


def skipped() -> set[str]:
    """BENCH_SKIP=hook,podman,...: the parts of a bench to leave out."""
    return set(filter(None, os.environ.get("BENCH_SKIP", "").split(",")))


def chain(name: str, bridge: str, subnet: str, data_dir: str) -> dict[str, Any]:
    """bench_run's and bench_scale's network: bridge (hairpin) + host-local, portmap, firewall, tuning."""
    return {
        "cniVersion": "1.0.0", "name": name,
        "plugins": [
            {"type": "bridge", "bridge": bridge, "isGateway": True, "ipMasq": True, "hairpinMode": True,
             "ipam": {"type": "host-local", "dataDir": data_dir, "ranges": [[{"subnet": subnet}]],
                      "routes": [{"dst": "0.0.0.0/0"}]}},
            {"type": "portmap", "capabilities": {"portMappings": True}},
            {"type": "firewall"},
            {"type": "tuning"},
        ],
    }


def dns_chain(name: str, bridge: str, subnet: str, data_dir: str, dns: bool) -> dict[str, Any]:
    """bench_connect's and bench_dns's network: bridge (ips) + host-local, portmap, firewall; dns=False
    opts out of the network's resolver (`"cnirun": {"dns": false}`), the peer of a DNS cost."""
    conf: dict[str, Any] = {
        "cniVersion": "1.0.0", "name": name,
        "plugins": [
            {"type": "bridge", "bridge": bridge, "isGateway": True, "ipMasq": True, "capabilities": {"ips": True},
             "ipam": {"type": "host-local", "dataDir": data_dir, "ranges": [[{"subnet": subnet}]],
                      "routes": [{"dst": "0.0.0.0/0"}]}},
            {"type": "portmap", "capabilities": {"portMappings": True}},
            {"type": "firewall"},
        ],
    }
    if not dns:
        conf["cnirun"] = {"dns": False}
    return conf


def timed(env: dict[str, str], *args: str) -> float:
    """Seconds one command took; a failure ends the bench with its message (a broken run measures nothing)."""
    t = time.perf_counter()
    p = subprocess.run(args, env=env, capture_output=True, text=True)
    took = time.perf_counter() - t
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(args)}: exit {p.returncode}: {p.stderr.strip()}")
    return took


def concurrent(argv: list[str], k: int, env: dict[str, str] | None = None,
               timeout: float = 300.0) -> tuple[float, int, str]:
    """Wall time of k concurrent runs, how many succeeded, the first failure's message."""
    def one(_: int) -> tuple[int, str]:
        try:
            p = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               timeout=timeout)
        except subprocess.TimeoutExpired:  # a hung run must not hang the bench (and keep daemon.json changed)
            return -1, f"no exit within {timeout} s: killed"
        return p.returncode, p.stderr.strip()[-200:]

    t = time.perf_counter()
    with ThreadPoolExecutor(k) as ex:
        out = list(ex.map(one, range(k)))
    took = time.perf_counter() - t
    failures = [err for rc, err in out if rc != 0]
    return took, k - len(failures), failures[0] if failures else ""


class LiveWorld:
    """The live-change benches' world (bench_connect, bench_policy): a tmp dir with its own netconf, cache,
    state and IPAM dirs, a plain named netns (for `cnirun cni add`), and a running `docker run --network none
    busybox` container (for connect, port, update; `others`: more of them). Use as a context manager: on
    exit the containers are removed, the watcher's teardown awaited, `cnirun gc` run, the watcher killed, the bridges and the tmp
    dir removed."""

    def __init__(self, prefix: str, netns: str, container: str, bridges: list[str], lifetime: int = 600,
                 others: tuple[str, ...] = ()) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix=prefix))
        self.netconf = self.tmp / "net.d"
        self.netconf.mkdir()
        self.netns, self.container, self.bridges, self.lifetime = netns, container, bridges, lifetime
        self.containers = [container, *others]
        self.env = {**os.environ, "NETCONFPATH": str(self.netconf), "CNI_CACHE_DIR": str(self.tmp / "cache"),
                    "CNIRUN_STATE_DIR": str(self.tmp / "state"), "CNI_PATH": PLUGINS, "CNIRUN_WATCHER_IDLE": "5",
                    "CNIRUN_ENGINE": "docker"}

    @property
    def ipam(self) -> str:
        return str(self.tmp / "ipam")

    @property
    def netns_path(self) -> str:
        return f"/run/netns/{self.netns}"

    def conflist(self, conf: dict[str, Any]) -> None:
        (self.netconf / f"{conf['name']}.conflist").write_text(json.dumps(conf))

    def del_spaces(self, net: str, spaces: list[str]) -> None:
        """`cnirun cni del` NET of each netns in `spaces` and of the world's own, then the `spaces` netns go."""
        for ns in spaces:
            subprocess.run([CNIRUN, "cni", "del", net, f"/run/netns/{ns}"], env=self.env, capture_output=True)
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        subprocess.run([CNIRUN, "cni", "del", net, self.netns_path], env=self.env, capture_output=True)

    def default_chain(self, name: str, bridge: str, subnet: str) -> None:
        """Network `name`: the default network's chain as shipped (netconf/cnirun.conflist) on `bridge`, `subnet`."""
        conf = json.loads((REPO / "netconf" / "cnirun.conflist").read_text())
        conf["name"] = name
        conf["plugins"][0].update(bridge=bridge)
        conf["plugins"][0]["ipam"].update(dataDir=self.ipam, ranges=[[{"subnet": subnet}]])
        self.conflist(conf)

    def __enter__(self) -> "LiveWorld":
        subprocess.run(["ip", "netns", "add", self.netns], check=True)
        for name in self.containers:
            subprocess.run(["docker", "run", "-d", "--name", name, "--network", "none", "busybox", "sleep",
                            str(self.lifetime)], check=True, capture_output=True)
        return self

    def __exit__(self, *exc: object) -> None:
        subprocess.run(["docker", "rm", "-f", *self.containers], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.netns], capture_output=True)
        # The watcher DELs the removed container's attachments and its pin; gc makes sure.
        runs = self.tmp / "state" / "containers"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and list(runs.glob("[0-9a-f]*")):
            time.sleep(0.5)
        subprocess.run([CNIRUN, "gc"], env=self.env, capture_output=True)
        pid = runs / ".watcher.pid"
        if pid.exists():
            try:
                os.killpg(int(pid.read_text()), 9)
            except (OSError, ValueError):
                pass
        for bridge in self.bridges:
            subprocess.run(["ip", "link", "del", bridge], capture_output=True)
        shutil.rmtree(self.tmp, ignore_errors=True)


# -- the cnirun Docker runtime for a hook-mode group ---------------------------------------
def read_or_none(path: str) -> bytes | None:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        return None


def install_runtime(directory: Path, env: dict[str, str] | None, who: str) -> bool:
    """Install the cnirun runtime with `env`; False (said why) when one is registered already (not ours) or it fails."""
    from cnirun.oci.install import docker_runtime

    if docker_runtime.registered_path(DAEMON_JSON):
        print(f"{who}: a cnirun runtime is already registered: hook mode left out")
        return False
    p = subprocess.run([CNIRUN, "install", "docker-runtime", "--dir", str(directory)], env=env, capture_output=True,
                       text=True)
    if p.returncode != 0:
        print(f"{who}: cannot install the docker runtime: {p.stderr.strip()}")
    return p.returncode == 0


def uninstall_runtime(directory: Path, env: dict[str, str] | None, before: bytes | None, who: str) -> None:
    """Uninstall it, and never leave the host's daemon.json changed (`before`: its bytes, None: no file)."""
    for _ in range(20):  # refused while a --rm container of the last round is still being removed
        if subprocess.run([CNIRUN, "uninstall", "docker-runtime", "--dir", str(directory)], env=env,
                          capture_output=True).returncode == 0:
            break
        time.sleep(0.5)
    if read_or_none(DAEMON_JSON) != before:
        if before is None:
            Path(DAEMON_JSON).unlink(missing_ok=True)
        else:
            Path(DAEMON_JSON).write_bytes(before)
        print(f"{who}: daemon.json restored by hand after uninstall")
