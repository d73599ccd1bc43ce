"""Issue #15: the multi-host overlay, end to end, with simulated hosts on this machine.

Topology (all made here, all removed at the end):

    root netns:   etcd on 127.0.0.1:P and 10.171.0.1:P (temporary data dir)
                  cno15up<x> 10.171.0.1/24 --+
    t15-sw-<x>:   bridge cno15br ------------+-- one veth per simulated host
    t15-<x>:      a simulated host: pub0 10.171.0.1N/24, its own agent
                  (`ip netns exec`), NETCONFPATH, CNI cache, state dir,
                  subnet.env, host-local dataDir; containers are
                  `cnirun exec` namespaces started inside it, so their
                  bridge, flannel.<VNI> and the routes live in the host ns.

The switch is a namespace of its own, not a bridge in the root netns: with
br_netfilter loaded (Docker loads it), bridged frames in the root netns go
through its FORWARD chain, whose policy Docker sets to DROP.

Overlay: 10.172.0.0/16, /24 per host. Traffic only among these namespaces.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pytest

from conftest import needs_plugins, needs_root

REPO = Path(__file__).resolve().parent.parent
CNIRUN = [sys.executable, "-m", "cnirun.cli.main"]
REAL_PLUGIN_DIR = "/usr/lib/cni"
LAN_GW = "10.171.0.1"
NETWORK = "10.172.0.0/16"
NET_NAME = "t15-ovl"

sys.path.insert(0, str(REPO))
from cnirun.plugins import own_plugin_dir  # noqa: E402

pytestmark = [
    needs_root,
    needs_plugins,
    pytest.mark.skipif(shutil.which("etcd") is None, reason="etcd not installed (apt-get install etcd-server)"),
]


def run(*argv: str, check: bool = True, timeout: float = 60, **kw: Any) -> subprocess.CompletedProcess[str]:
    p = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, **kw)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(argv)}: exit {p.returncode}: {p.stderr.strip()}")
    return p


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(cond: Any, timeout: float, what: str, step: float = 0.02) -> float:
    """Poll cond() until true; return the seconds it took; fail naming `what`."""
    t0 = time.monotonic()
    while True:
        if cond():
            return time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(step)


# -- etcd ---------------------------------------------------------------------------------
class Etcd:
    """A private etcd: temporary data dir, free ports, stopped (and its dir removed) at the end."""

    def __init__(self, hosts: tuple[str, ...] = ("127.0.0.1",)) -> None:
        self.dir = tempfile.mkdtemp(prefix="t15-etcd-")
        self.port = free_port()
        self.peer_port = free_port()
        self.hosts = hosts
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = open(os.path.join(self.dir, "etcd.log"), "ab")

    def url(self, host: str | None = None) -> str:
        return f"http://{host or self.hosts[-1]}:{self.port}"

    def start(self) -> None:
        clients = ",".join(f"http://{h}:{self.port}" for h in self.hosts)
        peer = f"http://127.0.0.1:{self.peer_port}"
        self.proc = subprocess.Popen(
            ["etcd", "--name", "t15", "--data-dir", os.path.join(self.dir, "data"),
             "--listen-client-urls", clients, "--advertise-client-urls", clients,
             "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
             "--initial-cluster", f"t15={peer}", "--initial-cluster-state", "new"],
            stdout=self.log, stderr=self.log, start_new_session=True,
        )
        wait_for(self.healthy, 20, "etcd to answer", step=0.1)

    def healthy(self) -> bool:
        import urllib.request

        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=1) as r:
                return b"true" in r.read()
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def close(self) -> None:
        self.stop()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def store(self) -> Any:
        from cnirun.overlay.etcd import Store

        return Store(self.url("127.0.0.1"))

    def wipe(self) -> None:
        from cnirun.overlay.etcd import prefix_end

        s = self.store()
        s._post("/kv/deleterange", {"key": _b64("/coreos.com/"), "range_end": _b64(prefix_end("/coreos.com/"))})


def _b64(text: str) -> str:
    import base64

    return base64.b64encode(text.encode()).decode()


# -- the simulated LAN and hosts ---------------------------------------------------------------
@dataclass
class Lan:
    sw: str  # the switch netns
    up: str  # the root netns' veth into the switch
    used: set[int] = field(default_factory=set)


@dataclass
class Container:
    host: "Host"
    proc: subprocess.Popen[bytes]
    pid: int
    ip: str

    def ping(self, ip: str, count: int = 2) -> subprocess.CompletedProcess[str]:
        return run("nsenter", "-t", str(self.pid), "-n", "busybox", "ping", "-c", str(count), "-i", "0.2", "-W", "2", ip,
                   check=False, timeout=20)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@dataclass
class Host:
    name: str  # A, B, C...
    ns: str
    ip: str
    dir: Path
    etcd_url: str
    vni: int = 1
    agent: subprocess.Popen[bytes] | None = None
    containers: list[Container] = field(default_factory=list)

    @property
    def subnet_file(self) -> Path:
        return self.dir / "subnet.env"

    @property
    def state_file(self) -> Path:
        return self.dir / "subnet.cnirun.json"

    @property
    def agent_log(self) -> Path:
        return self.dir / "agent.log"

    @property
    def device(self) -> str:
        return f"flannel.{self.vni}"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CNI", "NETCONFPATH"))}
        env.update(
            NETCONFPATH=str(self.dir / "net.d"), CNI_CACHE_DIR=str(self.dir / "cache"),
            CNIRUN_STATE_DIR=str(self.dir / "state"), CNI_PATH=f"{own_plugin_dir()}:{REAL_PLUGIN_DIR}",
            CNIRUN_LOCK_FILE=str(self.dir / "cni.lock"), PYTHONPATH=str(REPO),
        )
        return env

    def ns_run(self, *argv: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return run("ip", "netns", "exec", self.ns, *argv, check=check, timeout=timeout, env=self.env(), cwd=REPO)

    def cnirun(self, *argv: str, check: bool = False, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return self.ns_run(*CNIRUN, *argv, check=check, timeout=timeout)

    def start_agent(self, *extra: str, wait: bool = True) -> subprocess.Popen[bytes]:
        assert self.agent is None or self.agent.poll() is not None
        try:
            self.state_file.unlink()
        except FileNotFoundError:
            pass
        log = open(self.agent_log, "ab")
        self.agent = subprocess.Popen(
            ["ip", "netns", "exec", self.ns, *CNIRUN, "overlay", "agent", "--etcd", self.etcd_url, "--iface", "pub0",
             "--subnet-file", str(self.subnet_file), *extra],
            stdout=log, stderr=log, env=self.env(), cwd=REPO,
        )
        log.close()
        if wait:
            self.wait_ready()
        return self.agent

    def wait_ready(self, timeout: float = 20) -> None:
        def ready() -> bool:
            assert self.agent is not None
            if self.agent.poll() is not None:
                raise AssertionError(f"agent on {self.name} exited {self.agent.returncode}: {self.agent_log.read_text()}")
            return self.state_file.exists()

        wait_for(ready, timeout, f"the agent on host {self.name}")

    def stop_agent(self, sig: int = signal.SIGTERM) -> int:
        assert self.agent is not None
        self.agent.send_signal(sig)
        try:
            rc = self.agent.wait(20)
        except subprocess.TimeoutExpired:
            self.agent.kill()
            rc = self.agent.wait()
        return rc

    def subnet(self) -> str:
        for line in self.subnet_file.read_text().splitlines():
            if line.startswith("FLANNEL_SUBNET="):
                import ipaddress

                return str(ipaddress.IPv4Interface(line.split("=", 1)[1]).network)
        raise AssertionError("no FLANNEL_SUBNET")

    def routes(self) -> dict[str, str]:
        """Overlay routes on the VXLAN device: subnet -> gateway."""
        out = self.ns_run("ip", "-j", "route", "show", "dev", self.device, check=False).stdout
        return {r["dst"]: r.get("gateway", "") for r in json.loads(out or "[]") if "gateway" in r}

    def fdb(self) -> list[str]:
        out = self.ns_run("bridge", "-j", "fdb", "show", "dev", self.device, check=False).stdout
        return sorted(f"{e['mac']}>{e['dst']}" for e in json.loads(out or "[]") if e.get("dst"))

    def neigh(self) -> list[str]:
        out = self.ns_run("ip", "-j", "neigh", "show", "dev", self.device, check=False).stdout
        return sorted(f"{e['dst']}>{e.get('lladdr')}" for e in json.loads(out or "[]"))

    def has_device(self) -> bool:
        return self.ns_run("ip", "link", "show", self.device, check=False).returncode == 0

    def vxlan_packets(self) -> tuple[int, int]:
        link = json.loads(self.ns_run("ip", "-j", "-s", "link", "show", self.device).stdout)[0]
        return link["stats64"]["tx"]["packets"], link["stats64"]["rx"]["packets"]

    def container(self) -> Container:
        """A `cnirun exec` namespace on this host, attached to the overlay, living until stop()."""
        info = self.dir / f"ctr-{secrets.token_hex(3)}"
        script = f"echo $$ $(ip -4 -o addr show eth0 | awk '{{print $4}}') > {info}.tmp && mv {info}.tmp {info}; exec sleep 600"
        proc = subprocess.Popen(
            ["ip", "netns", "exec", self.ns, *CNIRUN, "exec", "--net", NET_NAME, "--", "sh", "-c", script],
            stdout=subprocess.DEVNULL, stderr=open(self.dir / "exec.log", "ab"), env=self.env(), cwd=REPO,
        )

        def up() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"cnirun exec on {self.name} exited {proc.returncode}: {(self.dir / 'exec.log').read_text()}")
            return info.exists()

        wait_for(up, 30, f"a container on host {self.name}")
        pid, cidr = info.read_text().split()
        c = Container(self, proc, int(pid), cidr.split("/")[0])
        self.containers.append(c)
        return c

    def write_network(self, **flannel: Any) -> None:
        conf = {"cniVersion": "1.0.0", "name": NET_NAME, "plugins": [{
            "type": "flannel", "subnetFile": str(self.subnet_file), "dataDir": str(self.dir / "flannel"),
            "ipam": {"dataDir": str(self.dir / "ipam")}, **flannel}]}
        (self.dir / "net.d" / f"{NET_NAME}.conflist").write_text(json.dumps(conf))


class Sim:
    """The hosts of one test."""

    def __init__(self, lan: Lan, etcd: Etcd, tmp: Path) -> None:
        self.lan = lan
        self.etcd = etcd
        self.tmp = tmp
        self.hosts: list[Host] = []

    def host(self, name: str, vni: int = 1) -> Host:
        n = next(i for i in range(11, 250) if i not in self.lan.used)
        self.lan.used.add(n)
        tag = secrets.token_hex(3)
        ns = f"t15-{name.lower()}{tag}"
        run("ip", "netns", "add", ns)
        outer, inner = f"cno15{tag}{name.lower()}o", f"cno15{tag}{name.lower()}i"
        run("ip", "link", "add", outer, "type", "veth", "peer", "name", inner)
        run("ip", "link", "set", outer, "netns", self.lan.sw)
        run("ip", "-n", self.lan.sw, "link", "set", outer, "master", "cno15br", "up")
        run("ip", "link", "set", inner, "netns", ns)
        run("ip", "-n", ns, "link", "set", inner, "name", "pub0")
        run("ip", "-n", ns, "addr", "add", f"10.171.0.{n}/24", "dev", "pub0")
        run("ip", "-n", ns, "link", "set", "pub0", "up")
        run("ip", "-n", ns, "link", "set", "lo", "up")
        d = self.tmp / f"host{name}"
        for sub in ("net.d", "cache", "state"):
            (d / sub).mkdir(parents=True)
        h = Host(name, ns, f"10.171.0.{n}", d, self.etcd.url(LAN_GW), vni)
        h.write_network()
        self.hosts.append(h)
        return h

    def init(self, *extra: str, network: str = NETWORK) -> subprocess.CompletedProcess[str]:
        return run(*CNIRUN, "overlay", "init", "--etcd", self.etcd.url("127.0.0.1"), "--network", network, *extra,
                   check=False, cwd=REPO)

    def cleanup(self) -> None:
        for h in self.hosts:
            for c in h.containers:
                c.stop()
            if h.agent is not None and h.agent.poll() is None:
                h.stop_agent()
            run("ip", "netns", "delete", h.ns, check=False)
            self.lan.used.discard(int(h.ip.rsplit(".", 1)[1]))


@contextmanager
def make_lan() -> Iterator[Lan]:
    """The switch netns with its bridge, and the root netns' leg into it (10.171.0.1)."""
    tag = secrets.token_hex(3)
    sw = f"t15-sw{tag}"
    up = f"cno15up{tag}"
    run("ip", "netns", "add", sw)
    try:
        run("ip", "-n", sw, "link", "add", "cno15br", "type", "bridge")
        run("ip", "-n", sw, "link", "set", "cno15br", "up")
        run("ip", "link", "add", up, "type", "veth", "peer", "name", "cno15peer")
        run("ip", "link", "set", "cno15peer", "netns", sw)
        run("ip", "-n", sw, "link", "set", "cno15peer", "master", "cno15br", "up")
        run("ip", "addr", "add", f"{LAN_GW}/24", "dev", up)
        run("ip", "link", "set", up, "up")
        yield Lan(sw, up)
    finally:
        run("ip", "netns", "delete", sw, check=False)  # takes the root end of the veth with it
        run("ip", "link", "delete", up, check=False)


@pytest.fixture(scope="module")
def lan() -> Iterator[Lan]:
    with make_lan() as made:
        yield made


@pytest.fixture(scope="module")
def etcd(lan: Lan) -> Iterator[Etcd]:
    e = Etcd(hosts=("127.0.0.1", LAN_GW))
    e.start()
    yield e
    e.close()


@pytest.fixture
def sim(lan: Lan, etcd: Etcd, tmp_path: Path) -> Iterator[Sim]:
    if not etcd.healthy():  # a test that stopped it and failed
        etcd.start()
    etcd.wipe()
    s = Sim(lan, etcd, tmp_path)
    yield s
    s.cleanup()
    etcd.wipe()


def leases(etcd: Etcd) -> dict[str, dict[str, Any]]:
    from cnirun.overlay.registry import SUBNETS_PREFIX

    kvs, _ = etcd.store().get_prefix(SUBNETS_PREFIX)
    return {kv.key.rsplit("/", 1)[1]: json.loads(kv.value) for kv in kvs}


def key_of(subnet: str) -> str:
    return subnet.replace("/", "-")


# -- the tests ----------------------------------------------------------------------------------
@pytest.mark.slow
def test_three_hosts_join_ping_leave_restart(sim: Sim) -> None:
    assert sim.init().returncode == 0
    a, b = sim.host("A"), sim.host("B")
    a.start_agent()
    b.start_agent()
    sa, sb = a.subnet(), b.subnet()
    assert sa != sb
    # flannel's lease format in etcd
    got = leases(sim.etcd)
    assert got[key_of(sa)]["PublicIP"] == a.ip and got[key_of(sa)]["BackendType"] == "vxlan"
    assert set(got[key_of(sa)]["BackendData"]) == {"VNI", "VtepMAC"}
    wait_for(lambda: sb in a.routes() and sa in b.routes(), 2, "A and B to route to each other")
    env = a.subnet_file.read_text()
    assert f"FLANNEL_NETWORK={NETWORK}\n" in env and "FLANNEL_MTU=1450\n" in env and "FLANNEL_IPMASQ=false\n" in env

    ca, cb = a.container(), b.container()
    # C joins later: reachable from the others within 2 s of its agent being up
    c = sim.host("C")
    c.start_agent(wait=False)
    t0 = time.monotonic()
    wait_for(lambda: c.subnet_file.exists(), 20, "C's subnet.env")
    sc = c.subnet()
    wait_for(lambda: sc in a.routes() and sc in b.routes(), 2, "A and B to program C")
    joined = time.monotonic() - t0
    assert joined < 2.5, joined
    cc = c.container()
    # one route, one neighbour, one FDB entry per other host
    assert sorted(a.routes()) == sorted([sb, sc]) and len(a.fdb()) == 2 and len(a.neigh()) == 2
    tx0, rx0 = a.vxlan_packets()
    for target in (cb, cc):
        p = ca.ping(target.ip)
        assert p.returncode == 0, p.stdout + p.stderr
    tx1, rx1 = a.vxlan_packets()
    assert tx1 - tx0 >= 4 and rx1 - rx0 >= 4, "the pings did not cross flannel.1"
    assert cb.ping(cc.ip).returncode == 0

    st = a.cnirun("overlay", "status", "--subnet-file", str(a.subnet_file))
    assert st.returncode == 0, st.stderr
    assert sa in st.stdout and sb in st.stdout and sc in st.stdout and "missing" not in st.stdout
    js = json.loads(a.cnirun("overlay", "status", "--subnet-file", str(a.subnet_file), "--format", "json").stdout)
    assert js["subnet"] == sa and {p["subnet"] for p in js["peers"]} == {sb, sc} and js["agentRunning"]

    # C's agent stops: its lease goes, A and B drop it at once, C's device goes
    cc.stop()
    assert c.stop_agent() == 0
    wait_for(lambda: sc not in a.routes() and sc not in b.routes(), 2, "A and B to drop C")
    assert key_of(sc) not in leases(sim.etcd) and not c.has_device()
    assert len(a.fdb()) == 1 and len(a.neigh()) == 1

    # B's agent restarts (SIGTERM, then SIGKILL): same subnet, B's container still reachable
    for sig in (signal.SIGTERM, signal.SIGKILL):
        b.stop_agent(sig)
        b.start_agent()
        assert b.subnet() == sb
        wait_for(lambda: sb in a.routes(), 2, "A to program B again")
        p = ca.ping(cb.ip)
        assert p.returncode == 0, f"after {sig!r}: {p.stdout}{p.stderr}"
    assert sorted(leases(sim.etcd)) == sorted([key_of(sa), key_of(sb)])


@pytest.mark.slow
def test_lease_expiry_and_renewal(sim: Sim) -> None:
    assert sim.init().returncode == 0
    a, b = sim.host("A"), sim.host("B")
    a.start_agent("--lease-ttl", "5", "--renew-margin", "3")
    b.start_agent("--lease-ttl", "5", "--renew-margin", "3")
    sa, sb = a.subnet(), b.subnet()
    wait_for(lambda: sb in a.routes(), 2, "A to program B")
    # renewal: both leases outlive several TTLs
    time.sleep(7)
    assert sorted(leases(sim.etcd)) == sorted([key_of(sa), key_of(sb)])
    assert sb in a.routes() and sa in b.routes()
    # B dies without cleaning up: its lease expires, A drops it within the TTL (+ etcd's expiry check)
    b.stop_agent(signal.SIGKILL)
    t = wait_for(lambda: sb not in a.routes(), 9, "A to drop B after its lease expired")
    assert t > 1.0  # by expiry, not by B's goodbye
    assert key_of(sb) not in leases(sim.etcd)


@pytest.mark.slow
def test_agents_started_together_get_distinct_subnets(sim: Sim) -> None:
    # a /22 in /24s holds three host subnets (flannel skips the first): exactly enough
    assert sim.init(network="10.172.0.0/22").returncode == 0
    hosts = [sim.host(n) for n in "ABC"]
    for h in hosts:
        h.start_agent(wait=False)
    for h in hosts:
        h.wait_ready()
    subnets = sorted(h.subnet() for h in hosts)
    assert subnets == ["10.172.1.0/24", "10.172.2.0/24", "10.172.3.0/24"]
    # a fourth host: the network is full: one line, nothing created
    d = sim.host("D")
    d.start_agent(wait=False)
    assert d.agent is not None and d.agent.wait(20) != 0
    err = d.agent_log.read_text().strip()
    assert err.count("\n") == 0 and "no free /24 subnet" in err and "Traceback" not in err, err
    assert not d.has_device() and not d.subnet_file.exists()


def test_registry_transactions_never_hand_out_a_subnet_twice(etcd: Etcd) -> None:
    """20 acquisitions at the same moment against a network of 16 subnets: 16 distinct, 4 refused."""
    import ipaddress

    from cnirun.overlay import config, registry
    from cnirun.overlay.errors import OverlayError
    from cnirun.overlay.lease import LeaseAttrs

    etcd.wipe()
    cfg = config.build("10.172.0.0/20", 24)
    cfg = config.from_dict({**cfg.to_dict(), "SubnetMin": "10.172.0.0"})
    assert cfg.capacity() == 16
    barrier = threading.Barrier(20)
    results: list[Any] = []

    def one(i: int) -> None:
        attrs = LeaseAttrs(ipaddress.IPv4Address(f"192.0.2.{i + 1}"), f"02:00:00:00:00:{i:02x}", 1)
        store = etcd.store()
        barrier.wait()
        try:
            results.append(registry.acquire(store, cfg, attrs, ttl=30).subnet)
        except OverlayError as e:
            results.append(e)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    got = [r for r in results if not isinstance(r, Exception)]
    errors = [r for r in results if isinstance(r, Exception)]
    try:
        assert len(got) == 16 and len(set(got)) == 16, got
        assert len(errors) == 4 and all("no free /24 subnet" in str(e) for e in errors)
    finally:
        etcd.wipe()


@pytest.mark.slow
def test_etcd_outage_keeps_the_data_plane_and_agents_catch_up(sim: Sim) -> None:
    assert sim.init().returncode == 0
    a, b = sim.host("A"), sim.host("B")
    a.start_agent()
    b.start_agent()
    sb = b.subnet()
    wait_for(lambda: sb in a.routes(), 2, "A to program B")
    ca, cb = a.container(), b.container()
    sim.etcd.stop()
    wait_for(lambda: "UNREACHABLE" in a.cnirun("overlay", "status", "--subnet-file", str(a.subnet_file)).stdout,
             15, "A to notice etcd is gone", step=0.5)
    time.sleep(2)
    assert sb in a.routes()
    p = ca.ping(cb.ip)
    assert p.returncode == 0, p.stdout + p.stderr
    assert a.agent is not None and a.agent.poll() is None
    sim.etcd.start()
    # caught up: a host joining after the outage is programmed on A and B
    c = sim.host("C")
    c.start_agent()
    sc = c.subnet()
    wait_for(lambda: sc in a.routes() and sc in b.routes(), 10, "A and B to program C after the outage")
    assert "reachable" in a.cnirun("overlay", "status", "--subnet-file", str(a.subnet_file)).stdout
    assert ca.ping(c.container().ip).returncode == 0


def test_bad_input_one_line_nothing_created(sim: Sim) -> None:
    a = sim.host("A")

    def one_line(p: subprocess.CompletedProcess[str], *words: str) -> None:
        assert p.returncode != 0, p.stdout
        err = p.stderr.strip()
        assert err.count("\n") == 0 and err.startswith("cnirun: ") and "Traceback" not in err, err
        for w in words:
            assert w in err, err

    def untouched() -> None:
        assert not a.has_device() and not a.subnet_file.exists() and not a.state_file.exists()

    # unreachable etcd
    dead = f"http://127.0.0.1:{free_port()}"
    one_line(run(*CNIRUN, "overlay", "init", "--etcd", dead, "--network", NETWORK, check=False, cwd=REPO), "unreachable")
    one_line(a.cnirun("overlay", "agent", "--etcd", f"http://{LAN_GW}:{free_port()}", "--iface", "pub0",
                      "--subnet-file", str(a.subnet_file)), "unreachable")
    untouched()
    # no config yet
    one_line(a.cnirun("overlay", "agent", "--etcd", a.etcd_url, "--iface", "pub0", "--subnet-file", str(a.subnet_file)),
             "overlay init")
    untouched()
    # configs that cannot work
    one_line(sim.init("--subnet-len", "24", network="10.172.0.0/24"), "cannot hold")
    one_line(sim.init(network="10.172.0.0/33"), "not an IPv4 CIDR")
    one_line(sim.init("--vni", "16777216"), "VNI")
    # a different config needs --force; the same one is fine
    assert sim.init().returncode == 0
    assert "unchanged" in sim.init().stdout
    one_line(sim.init("--vni", "2"), "--force")
    assert sim.init("--vni", "2", "--force").returncode == 0
    assert sim.init("--force").returncode == 0
    # the VNI is in use by another device on the host
    a.ns_run("ip", "link", "add", "cno15vx", "type", "vxlan", "id", "1", "dstport", "4789", "dev", "pub0")
    one_line(a.cnirun("overlay", "agent", "--etcd", a.etcd_url, "--iface", "pub0", "--subnet-file", str(a.subnet_file)),
             "cno15vx", "VNI")
    untouched()
    assert leases(sim.etcd) == {}
    a.ns_run("ip", "link", "del", "cno15vx")
    # a missing interface, neither --iface nor --public-ip
    one_line(a.cnirun("overlay", "agent", "--etcd", a.etcd_url, "--iface", "nope0", "--subnet-file", str(a.subnet_file)),
             "nope0")
    one_line(a.cnirun("overlay", "agent", "--etcd", a.etcd_url, "--subnet-file", str(a.subnet_file)), "--iface")
    untouched()
    assert leases(sim.etcd) == {}
    # status without an agent
    one_line(a.cnirun("overlay", "status", "--subnet-file", str(a.subnet_file)), "agent")


def test_install_and_uninstall_plugins(tmp_path: Path) -> None:
    target = tmp_path / "bin"
    p = run(*CNIRUN, "install", "plugins", "--dir", str(target), cwd=REPO)
    assert sorted(os.listdir(target)) == ["flannel", "isolation", "sysctl"], p.stdout
    v = run(str(target / "flannel"), env={"CNI_COMMAND": "VERSION", "PATH": os.environ["PATH"]})
    assert "supportedVersions" in v.stdout
    foreign = tmp_path / "bin2"
    foreign.mkdir()
    (foreign / "flannel").write_text("#!/bin/sh\n")  # flannel-io's binary, say
    p = run(*CNIRUN, "install", "plugins", "--dir", str(foreign), check=False, cwd=REPO)
    assert p.returncode != 0 and "not written by cnirun" in p.stderr
    assert (foreign / "flannel").read_text() == "#!/bin/sh\n"
    p = run(*CNIRUN, "uninstall", "plugins", "--dir", str(foreign), cwd=REPO)
    assert (foreign / "flannel").exists()
    open_dir = tmp_path / "open"
    open_dir.mkdir(mode=0o777)
    open_dir.chmod(0o777)
    p = run(*CNIRUN, "install", "plugins", "--dir", str(open_dir), check=False, cwd=REPO)
    assert p.returncode != 0 and "writable by users other than root" in p.stderr and not os.listdir(open_dir)
    p = run(*CNIRUN, "install", "plugins", "--dir", "rel/bin", check=False, cwd=REPO)
    assert p.returncode != 0 and "relative" in p.stderr
    p = run(*CNIRUN, "uninstall", "plugins", "--dir", str(target), cwd=REPO)
    assert os.listdir(target) == [] and "removed" in p.stdout
