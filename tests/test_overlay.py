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

from _wait import wait_for
from conftest import CNIRUN, needs_plugins, needs_root

REPO = Path(__file__).resolve().parent.parent
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


# -- etcd ---------------------------------------------------------------------------------
class Etcd:
    """A private etcd: temporary data dir, free ports, stopped (and its dir removed) at the end.

    With `tls` (a directory made by make_certs) it serves https only and wants a client certificate
    signed by that CA; `creds` are what store() and wipe() use; `extra` goes on etcd's command line.
    """

    def __init__(self, hosts: tuple[str, ...] = ("127.0.0.1",), tls: Path | None = None,
                 extra: tuple[str, ...] = ()) -> None:
        from cnirun.overlay.etcd import Credentials

        self.dir = tempfile.mkdtemp(prefix="t15-etcd-")
        self.port = free_port()
        self.peer_port = free_port()
        self.hosts = hosts
        self.tls = tls
        self.extra = extra
        self.scheme = "https" if tls else "http"
        self.creds = Credentials(cafile=str(tls / "ca.crt"), certfile=str(tls / "client.crt"),
                                 keyfile=str(tls / "client.key")) if tls else Credentials()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = open(os.path.join(self.dir, "etcd.log"), "ab")

    def url(self, host: str | None = None) -> str:
        return f"{self.scheme}://{host or self.hosts[-1]}:{self.port}"

    def start(self) -> None:
        clients = ",".join(f"{self.scheme}://{h}:{self.port}" for h in self.hosts)
        peer = f"http://127.0.0.1:{self.peer_port}"
        tls = [] if self.tls is None else [
            "--cert-file", str(self.tls / "server.crt"), "--key-file", str(self.tls / "server.key"),
            "--trusted-ca-file", str(self.tls / "ca.crt"), "--client-cert-auth"]
        self.proc = subprocess.Popen(
            ["etcd", "--name", "t15", "--data-dir", os.path.join(self.dir, "data"),
             "--listen-client-urls", clients, "--advertise-client-urls", clients,
             "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
             "--initial-cluster", f"t15={peer}", "--initial-cluster-state", "new", *tls, *self.extra],
            stdout=self.log, stderr=self.log, start_new_session=True,
        )
        wait_for(self.healthy, 20, "etcd to answer", step=0.1)

    def healthy(self) -> bool:
        import ssl
        import urllib.request

        ctx = None
        if self.tls is not None:
            ctx = ssl.create_default_context(cafile=str(self.tls / "ca.crt"))
            ctx.load_cert_chain(str(self.tls / "client.crt"), str(self.tls / "client.key"))
        try:
            with urllib.request.urlopen(f"{self.url('127.0.0.1')}/health", timeout=1, context=ctx) as r:
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

        return Store(self.url("127.0.0.1"), creds=self.creds)

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

    def start_agent(self, *extra: str, wait: bool = True, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        assert self.agent is None or self.agent.poll() is not None
        try:
            self.state_file.unlink()
        except FileNotFoundError:
            pass
        log = open(self.agent_log, "ab")
        self.agent = subprocess.Popen(
            ["ip", "netns", "exec", self.ns, *CNIRUN, "overlay", "agent", "--etcd", self.etcd_url, "--iface", "pub0",
             "--subnet-file", str(self.subnet_file), *extra],
            stdout=log, stderr=log, env={**self.env(), **(env or {})}, cwd=REPO,
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

    def init(self, *extra: str, network: str = NETWORK, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return run(*CNIRUN, "overlay", "init", "--etcd", self.etcd.url("127.0.0.1"), "--network", network, *extra,
                   check=False, cwd=REPO, env={**os.environ, **(env or {})})

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
    killed = time.monotonic()
    wait_for(lambda: sb not in a.routes(), 9, "A to drop B after its lease expired", step=0.02)
    assert time.monotonic() - killed > 1.0  # by expiry, not by B's goodbye
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
    time.sleep(2)  # the test: etcd stays down a while, and A keeps routing to B meanwhile
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


def one_line(p: subprocess.CompletedProcess[str], *words: str) -> None:
    """A failed command that said what was wrong on one line of stderr, with each of `words`."""
    assert p.returncode != 0, p.stdout
    err = p.stderr.strip()
    assert err.count("\n") == 0 and err.startswith("cnirun: ") and "Traceback" not in err, err
    for w in words:
        assert w in err, err


def test_bad_input_one_line_nothing_created(sim: Sim) -> None:
    a = sim.host("A")

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
    assert sorted(os.listdir(target)) == ["cnirun-policy", "flannel", "isolation", "sysctl"], p.stdout
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


def _lease_value(public_ip: str, mac: str, vni: Any = 1) -> bytes:
    return json.dumps({"PublicIP": public_ip, "BackendType": "vxlan",
                       "BackendData": {"VNI": vni, "VtepMAC": mac}}).encode()


def _main_routes(h: Host) -> set[str]:
    out = h.ns_run("ip", "-j", "route", "show", "table", "all").stdout
    return {f"{r['dst']}" for r in json.loads(out or "[]")}


@pytest.mark.slow
def test_attacker_leases_program_nothing_and_honest_hosts_keep_working(sim: Sim) -> None:
    """Leases an etcd writer plants (a /32 inside B's /24, the whole /16, half of A's own subnet, a subnet
    outside the network, A's own PublicIP or VtepMAC, B's VtepMAC at another address, loopback/multicast
    addresses, malformed, mistyped, deeply nested and oversized values) give no route, no neighbour and no
    FDB entry on the running agents, nor on an agent that starts after them; each is logged once with its
    reason across several resyncs; no agent dies; A, B and a later C still reach each other."""
    from cnirun.overlay.registry import SUBNETS_PREFIX

    assert sim.init().returncode == 0
    a, b = sim.host("A"), sim.host("B")
    a.start_agent("--resync", "1")
    b.start_agent("--resync", "1", "--lease-ttl", "5", "--renew-margin", "3")  # B renews every 2 s
    sa, sb = a.subnet(), b.subnet()
    wait_for(lambda: sb in a.routes() and sa in b.routes(), 2, "A and B to route to each other")
    ca, cb = a.container(), b.container()
    got = leases(sim.etcd)
    mac_a, mac_b = got[key_of(sa)]["BackendData"]["VtepMAC"], got[key_of(sb)]["BackendData"]["VtepMAC"]
    honest_a = (a.fdb(), a.neigh())
    assert honest_a == ([f"{mac_b}>{b.ip}"], [f"{sb.split('/')[0]}>{mac_b}"])

    evil_ip, evil_mac = "10.171.0.250", "0e:66:66:66:66:66"
    free = [f"10.172.{n}.0/24" for n in range(200, 256) if f"10.172.{n}.0/24" not in (sa, sb)]
    b_net, a_net = sb.split("/")[0], sa.split("/")[0]
    attacks: dict[str, bytes] = {
        f"{b_net[:-1]}5-32": _lease_value(evil_ip, evil_mac),               # a /32 inside B's /24
        "10.172.0.0-16": _lease_value(evil_ip, evil_mac),                    # the whole network
        f"{a_net}-25": _lease_value(evil_ip, evil_mac),                      # half of A's own subnet
        f"{a_net[:-1]}128-25": _lease_value(evil_ip, evil_mac),              # the other half
        "10.99.0.0-24": _lease_value(evil_ip, evil_mac),                     # outside the network
        key_of(free[0]): _lease_value(a.ip, evil_mac),                       # A's own PublicIP
        key_of(free[1]): _lease_value(evil_ip, mac_a),                       # A's own VtepMAC
        key_of(free[2]): _lease_value(evil_ip, mac_b),                       # B's VtepMAC elsewhere: B's traffic
        key_of(free[3]): _lease_value("127.0.0.1", evil_mac),
        key_of(free[4]): _lease_value("224.0.0.5", evil_mac),
        key_of(free[5]): _lease_value(evil_ip, "01:00:5e:00:00:05"),
        key_of(free[6]): _lease_value("10.172.9.9", evil_mac),               # PublicIP inside the overlay
        key_of(free[7]): b"[" * 3000,
        key_of(free[8]): _lease_value(evil_ip, evil_mac)[:-1] + b', "Pad": "' + b"x" * 100_000 + b'"}',
        key_of(free[9]): json.dumps({"PublicIP": 184221946, "BackendType": "vxlan",
                                     "BackendData": {"VNI": 1, "VtepMAC": evil_mac}}).encode(),
        key_of(free[10]): _lease_value(evil_ip, evil_mac, vni="1"),
        key_of(free[11]): json.dumps({"PublicIP": evil_ip, "BackendType": "vxlan", "BackendData": [1]}).encode(),
        f"{key_of(free[12])}/x": _lease_value(evil_ip, evil_mac),            # not flannel's key form
        key_of(free[13]): b"\xff\xfe not json",
    }
    store = sim.etcd.store()
    for key, value in attacks.items():
        store.put(SUBNETS_PREFIX + key, value)
    bad_subnets = {"10.172.0.0/16", f"{b_net[:-1]}5/32", f"{a_net}/25", f"{a_net[:-1]}128/25", "10.99.0.0/24",
                   *free[:12], free[13]}  # free[12] is still free: its planted key is not a lease key

    # a well-formed lease written after them: once it is programmed, every planted lease was handled
    sentinel = free[14]
    store.put(SUBNETS_PREFIX + key_of(sentinel), _lease_value("10.171.0.251", "0e:77:77:77:77:77"))
    for h in (a, b):
        wait_for(lambda: sentinel in h.routes(), 5, f"{h.name} to program the lease written last")
    store._post("/kv/deleterange", {"key": _b64(SUBNETS_PREFIX + key_of(sentinel))})
    for h in (a, b):
        wait_for(lambda: sentinel not in h.routes(), 5, f"{h.name} to drop the lease written last")

    def refused(h: Host, key: str) -> int:
        return h.agent_log.read_text().count(f"refused lease {key[:60]!r}")

    def only_the_honest_peer(h: Host, peer: Host, peer_net: str, peer_mac: str) -> None:
        assert h.agent is not None and h.agent.poll() is None, h.agent_log.read_text()
        assert h.routes() == {peer_net: peer_net.split("/")[0]}
        assert h.fdb() == [f"{peer_mac}>{peer.ip}"] and h.neigh() == [f"{peer_net.split('/')[0]}>{peer_mac}"]
        assert not (_main_routes(h) & bad_subnets), _main_routes(h)

    only_the_honest_peer(a, b, sb, mac_b)
    only_the_honest_peer(b, a, sa, mac_a)
    time.sleep(3.5)  # three resyncs and at least one renewal of B's lease
    for h, peer, peer_net, peer_mac in ((a, b, sb, mac_b), (b, a, sa, mac_a)):
        only_the_honest_peer(h, peer, peer_net, peer_mac)
        log = h.agent_log.read_text()
        assert "Traceback" not in log, log
        assert {k: refused(h, k) for k in attacks} == {k: 1 for k in attacks}, log  # once each, no hot loop
    p = ca.ping(cb.ip)
    assert p.returncode == 0, p.stdout + p.stderr
    js = json.loads(a.cnirun("overlay", "status", "--subnet-file", str(a.subnet_file), "--format", "json").stdout)
    assert {r["key"].removeprefix(SUBNETS_PREFIX) for r in js["refused"]} == set(attacks)
    assert f"refused:  {len(attacks)} lease(s)" in a.cnirun("overlay", "status", "--subnet-file", str(a.subnet_file)).stdout

    # C starts with the planted leases already there (the list path): programs A and B only; A and B program C
    c = sim.host("C")
    c.start_agent("--resync", "1")
    sc = c.subnet()
    assert sc not in bad_subnets
    wait_for(lambda: sc in a.routes() and sc in b.routes() and c.routes().keys() == {sa, sb}, 3, "A, B and C to mesh")
    assert sorted(c.fdb()) == sorted([f"{mac_a}>{a.ip}", f"{mac_b}>{b.ip}"]) and len(c.neigh()) == 2
    wait_for(lambda: all(refused(c, k) for k in attacks), 5, "C to refuse every planted lease")
    cc = c.container()
    assert ca.ping(cc.ip).returncode == 0 and cb.ping(cc.ip).returncode == 0
    assert sorted(a.routes()) == sorted([sb, sc]) and len(a.fdb()) == 2 and len(a.neigh()) == 2


# -- etcd TLS and auth ----------------------------------------------------------------------------
def make_certs(d: Path) -> Path:
    """A throwaway CA with a server certificate for 127.0.0.1 and LAN_GW and a client certificate, and a
    second CA with a client certificate etcd must not accept (rogue.crt/rogue.key)."""
    d.mkdir(parents=True, exist_ok=True)

    def openssl(*argv: str) -> None:
        run("openssl", *argv, cwd=d)

    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    for ca in ("ca", "rogue-ca"):
        openssl("req", "-x509", *ec, "-keyout", f"{ca}.key", "-out", f"{ca}.crt", "-days", "1", "-subj", f"/CN=t15-{ca}")
    # etcd's gateway dials etcd itself with the server certificate: it must be a client certificate too
    (d / "server.ext").write_text(f"subjectAltName=IP:127.0.0.1,IP:{LAN_GW}\nextendedKeyUsage=serverAuth,clientAuth\n")
    (d / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    for name, ca, ext in (("server", "ca", "server.ext"), ("client", "ca", "client.ext"), ("rogue", "rogue-ca", "client.ext")):
        openssl("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN=t15-{name}")
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key", "-CAcreateserial",
                "-out", f"{name}.crt", "-days", "1", "-extfile", ext)
    for key in d.glob("*.key"):
        key.chmod(0o600)
    return d


@contextmanager
def private_sim(lan: Lan, tmp: Path, etcd: Etcd) -> Iterator[Sim]:
    """A Sim on its own etcd (started here, stopped and removed at the end with the hosts)."""
    etcd.start()
    s = Sim(lan, etcd, tmp)
    try:
        yield s
    finally:
        s.cleanup()
        etcd.close()


def _agent_fails(h: Host, *args: str, env: dict[str, str] | None = None) -> str:
    """Start h's agent expecting it to fail: its one-line message; nothing made on the host."""
    h.start_agent(*args, wait=False, env=env)
    assert h.agent is not None and h.agent.wait(30) != 0
    err = h.agent_log.read_text().strip()
    h.agent_log.unlink()
    assert err.count("\n") == 0 and err.startswith("cnirun: ") and "Traceback" not in err, err
    assert not h.has_device() and not h.subnet_file.exists() and not h.state_file.exists()
    return err


@pytest.mark.slow
def test_etcd_tls_client_certificates(lan: Lan, tmp_path: Path) -> None:
    """etcd with TLS and --client-cert-auth: init and agents work with the CA and a client certificate given
    as options or as FLANNELD_ETCD_* variables (B's lease reaches A through the TLS watch); without a client
    certificate, with one from another CA, without the CA, with a certificate and no key, or over http://,
    init and the agent fail with one line and leave nothing."""
    certs = make_certs(tmp_path / "pki")
    tls = ("--etcd-cafile", str(certs / "ca.crt"), "--etcd-certfile", str(certs / "client.crt"),
           "--etcd-keyfile", str(certs / "client.key"))
    with private_sim(lan, tmp_path, Etcd(hosts=("127.0.0.1", LAN_GW), tls=certs)) as sim:
        one_line(sim.init(), "TLS", "certificate")
        one_line(sim.init("--etcd-cafile", str(certs / "ca.crt")), "client certificate")
        assert sim.init(*tls).returncode == 0
        a, b, c = sim.host("A"), sim.host("B"), sim.host("C")
        a.start_agent(*tls)
        b.start_agent(env={"FLANNELD_ETCD_CAFILE": str(certs / "ca.crt"), "FLANNELD_ETCD_CERTFILE": str(certs / "client.crt"),
                           "FLANNELD_ETCD_KEYFILE": str(certs / "client.key")})
        sa, sb = a.subnet(), b.subnet()
        wait_for(lambda: sb in a.routes() and sa in b.routes(), 3, "A and B to program each other over TLS")
        assert "client certificate" in _agent_fails(c, "--etcd-cafile", str(certs / "ca.crt"))
        assert "certificate verify failed" in _agent_fails(c, "--etcd-certfile", str(certs / "client.crt"),
                                                           "--etcd-keyfile", str(certs / "client.key"))
        rogue = _agent_fails(c, "--etcd-cafile", str(certs / "ca.crt"), "--etcd-certfile", str(certs / "rogue.crt"),
                             "--etcd-keyfile", str(certs / "rogue.key"))
        assert "TLS with etcd" in rogue, rogue
        assert "go together" in _agent_fails(c, "--etcd-cafile", str(certs / "ca.crt"), "--etcd-certfile",
                                             str(certs / "client.crt"))
        http = c.cnirun("overlay", "agent", "--etcd", sim.etcd.url(LAN_GW).replace("https", "http"), "--iface", "pub0",
                        "--subnet-file", str(c.subnet_file))
        one_line(http, "https://")
        assert not c.has_device() and not c.subnet_file.exists()
        assert sorted(leases(sim.etcd)) == sorted([key_of(sa), key_of(sb)])
        assert a.stop_agent() == 0 and b.stop_agent() == 0
        assert leases(sim.etcd) == {}


def _enable_auth(etcd: Etcd, root_password: str, users: dict[str, str]) -> None:
    """etcdctl's `role add`, `user add`, `role grant-permission --prefix` and `auth enable`, through the
    gateway: root, and each of `users` with readwrite on /coreos.com/network/ (a user named "outsider" gets
    no role)."""
    import base64

    from cnirun.overlay.etcd import prefix_end

    s = etcd.store()
    prefix = "/coreos.com/network/"
    s._post("/auth/role/add", {"name": "root"})
    s._post("/auth/user/add", {"name": "root", "password": root_password})
    s._post("/auth/user/grant", {"user": "root", "role": "root"})
    s._post("/auth/role/add", {"name": "t15-flannel"})
    s._post("/auth/role/grant", {"name": "t15-flannel", "perm": {
        "permType": "READWRITE", "key": base64.b64encode(prefix.encode()).decode(),
        "range_end": base64.b64encode(prefix_end(prefix).encode()).decode()}})
    for user, password in users.items():
        s._post("/auth/user/add", {"name": user, "password": password})
        if user != "outsider":
            s._post("/auth/user/grant", {"user": user, "role": "t15-flannel"})
    s._post("/auth/enable", {})


@pytest.mark.slow
def test_etcd_auth_user_and_password(lan: Lan, tmp_path: Path) -> None:
    """etcd with auth enabled (tokens live 2 s): init and agents work as a user with readwrite on
    /coreos.com/network/, the password from a mode-600 file or FLANNELD_ETCD_PASSWORD, never on a command
    line (/proc/PID/cmdline); agents keep working across token expiry (a later host is programmed);
    no user, a wrong password, a user without the permission, --etcd-password on the command line or a
    password file others can read: one line, nothing left."""
    from cnirun.overlay.etcd import Credentials

    password = f"pw-{secrets.token_hex(8)}"
    pwfile = tmp_path / "etcd-password"
    pwfile.write_text(password + "\n")
    pwfile.chmod(0o600)
    with private_sim(lan, tmp_path, Etcd(hosts=("127.0.0.1", LAN_GW), extra=("--auth-token-ttl", "2"))) as sim:
        root_password = secrets.token_hex(8)
        _enable_auth(sim.etcd, root_password, {"t15user": password, "outsider": password})
        sim.etcd.creds = Credentials(username="root", password=root_password)
        one_line(sim.init(), "requires authentication", "--etcd-username")
        one_line(sim.init("--etcd-username", "t15user", env={"FLANNELD_ETCD_PASSWORD": "wrong"}), "wrong user name or password")
        one_line(sim.init("--etcd-username", "outsider", "--etcd-password-file", str(pwfile)), "denied user 'outsider'",
                 "/coreos.com/network/")
        p = sim.init("--etcd-username", "t15user", "--etcd-password", password)
        one_line(p, "--etcd-password-file", "FLANNELD_ETCD_PASSWORD")
        assert password not in p.stderr
        loose = tmp_path / "loose-password"
        loose.write_text(password)
        loose.chmod(0o644)
        one_line(sim.init("--etcd-username", "t15user", "--etcd-password-file", str(loose)), "chmod 600")
        one_line(sim.init("--etcd-username", "t15user"), "needs a password")
        assert sim.init("--etcd-username", "t15user", env={"FLANNELD_ETCD_PASSWORD": password}).returncode == 0

        a, b, c = sim.host("A"), sim.host("B"), sim.host("C")
        a.start_agent("--etcd-username", "t15user", "--etcd-password-file", str(pwfile), "--resync", "3")
        b.start_agent("--resync", "3", env={"FLANNELD_ETCD_USERNAME": "t15user", "FLANNELD_ETCD_PASSWORD": password})
        sa, sb = a.subnet(), b.subnet()
        wait_for(lambda: sb in a.routes() and sa in b.routes(), 3, "A and B to program each other")
        for h in (a, b):
            assert h.agent is not None
            assert password.encode() not in Path(f"/proc/{h.agent.pid}/cmdline").read_bytes()
        assert "refused user" in _agent_fails(c, "--etcd-username", "t15user", env={"FLANNELD_ETCD_PASSWORD": "nope"})
        assert "requires authentication" in _agent_fails(c)
        time.sleep(4)  # the agents' tokens expire; each resync authenticates again
        c.start_agent("--etcd-username", "t15user", env={"FLANNELD_ETCD_PASSWORD": password})
        sc = c.subnet()
        wait_for(lambda: sc in a.routes() and sc in b.routes(), 3, "A and B to program C after their tokens expired")
        for h in (a, b):
            assert h.agent is not None and h.agent.poll() is None
            log = h.agent_log.read_text()
            assert "Traceback" not in log and "unreachable" not in log and "refused" not in log, log
        for h in (a, b, c):
            assert h.stop_agent() == 0
        assert leases(sim.etcd) == {}
