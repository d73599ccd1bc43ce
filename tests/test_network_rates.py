"""Issue #11: rate limits per container (--ingress-rate/--egress-rate, labels, compose x-cni, connect)
and `cnirun update` changing them live.

Real dockerd, podman, plugins and iperf3 (run inside the containers' netns
with nsenter: traffic only between the test's two containers). Address
plan: 10.194.N.0/24 (the World's) and 10.194.(100+N).0/24, networks t194-*,
bridges c194*, host ports 19400-19499. Each test ends with the World's leak
check plus the bandwidth plugin's ifb devices.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import (
    World,
    _make_world,
    docker_runtime_installed,
    needs_docker,
    needs_plugins,
    needs_podman,
    needs_root,
    world_fixture,
)

pytestmark = [needs_root, needs_plugins]
needs_iperf = pytest.mark.skipif(shutil.which("iperf3") is None, reason="iperf3 not installed")
BANDWIDTH = {"type": "bandwidth", "capabilities": {"bandwidth": True}}


def policy_world(tmp_path: Path, engine: str = "") -> World:
    """Network t194-N (bridge c194xN, 10.194.N.0/24, with bandwidth) and t194-N-b (c194yN, 10.194.100+N.0/24)."""
    w = _make_world(tmp_path, 194, net="t194-{n}", bridge="c194x{n}", engine=engine, extra=[BANDWIDTH],
                    name_prefix="t194-{n}-")
    w.add_network(f"t194-{w.n}-b", f"c194y{w.n}", f"10.194.{100 + w.n}.0/24")
    return w


def remember_ifb(w: World, network: str, cid: str) -> str:
    """The bandwidth plugin's ifb for this attachment: it must be gone at the World's end."""
    from cnirun.cni.bandwidth import ifb_name

    name = ifb_name(network, cid)
    w.gone.append(Path(f"/sys/class/net/{name}"))
    return name


dworld = world_fixture(policy_world)
pworld = world_fixture(policy_world, "podman")


# -- helpers shared with test_live_reload.py ----------------------------------------------------
def run_detached(w: World, name: str, *opts: str, engine: str = "docker") -> str:
    mode = ["--mode", "sandbox"] if engine == "docker" and "--mode" not in opts else []
    p = w.cnirun("run", "-d", *mode, "--name", name, *opts, "busybox", "sleep", "600", timeout=120)
    assert p.returncode == 0, p.stderr
    return p.stdout.strip().splitlines()[-1]


def pid_of(name: str, engine: str = "docker") -> int:
    out = subprocess.run([engine, "inspect", "-f", "{{.State.Pid}}", name], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return int(out.stdout.strip())


def in_netns(pid: int, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["nsenter", "-t", str(pid), "-n", *argv], capture_output=True, text=True, timeout=timeout)


def eth0(pid: int, ifname: str = "eth0") -> tuple[str, str]:
    """(IPv4 address, MAC) of eth0 in the netns of `pid` (netlink: nsenter -n keeps the host's /sys)."""
    addr = in_netns(pid, "ip", "-4", "-o", "addr", "show", ifname).stdout.split()
    link = in_netns(pid, "ip", "-o", "link", "show", ifname).stdout.split()
    return addr[addr.index("inet") + 1].split("/")[0], link[link.index("link/ether") + 1]


def host_veth(pid: int, ifname: str = "eth0") -> str:
    """The host end of the container interface's veth (by its peer ifindex: `eth0@if123`)."""
    link = in_netns(pid, "ip", "-o", "link", "show", ifname).stdout.split()
    peer = int(link[1].rstrip(":").partition("@if")[2])
    for dev in Path("/sys/class/net").iterdir():
        try:
            if int((dev / "ifindex").read_text()) == peer:
                return dev.name
        except OSError:
            continue
    raise AssertionError("no host veth for eth0")


def qdiscs(dev: str) -> str:
    return subprocess.run(["tc", "qdisc", "show", "dev", dev], capture_output=True, text=True).stdout


def cached(w: World, cid_prefix: str = "") -> list[dict[str, Any]]:
    out = []
    for f in sorted((w.cache_dir / "results").glob("*")):
        d = json.loads(f.read_text())
        if d.get("containerId", "").startswith(cid_prefix):
            out.append(d)
    return out


class Iperf:
    """iperf3 between two containers: the server in `server_pid`'s netns, the client in `client_pid`'s."""

    def __init__(self, server_pid: int, client_pid: int, server_ip: str, port: int) -> None:
        self.server_pid, self.client_pid, self.ip, self.port = server_pid, client_pid, server_ip, port

    def start_server(self) -> subprocess.Popen[str]:
        srv = subprocess.Popen(["nsenter", "-t", str(self.server_pid), "-n", "iperf3", "-s", "-1", "-p",
                                str(self.port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            ss = in_netns(self.server_pid, "ss", "-Hltn", f"sport = :{self.port}").stdout
            if ss.strip():
                break
            time.sleep(0.05)
        return srv

    def client(self, seconds: int, reverse: bool = False, interval: float = 0) -> subprocess.Popen[str]:
        argv = ["nsenter", "-t", str(self.client_pid), "-n", "iperf3", "-c", self.ip, "-p", str(self.port),
                "-t", str(seconds), "-J"]
        if reverse:
            argv.append("-R")
        if interval:
            argv += ["-i", str(interval)]
        return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def measure(self, seconds: int = 4, reverse: bool = False) -> float:
        """Mbit/s received: into the server (reverse=False) or into the client (reverse=True)."""
        srv = self.start_server()
        try:
            cl = self.client(seconds, reverse)
            out, err = cl.communicate(timeout=seconds + 30)
            assert cl.returncode == 0, err or out
            return json.loads(out)["end"]["sum_received"]["bits_per_second"] / 1e6
        finally:
            srv.wait(timeout=30)


# -- parsing --------------------------------------------------------------------------------
def test_parse_rate_accepts_tc_units() -> None:
    from cnirun.network.rates import Rate, parse_rate

    assert parse_rate("10mbit") == Rate(10_000_000, 8 * 32 * 1024)
    assert parse_rate("10mbit:64kb") == Rate(10_000_000, 8 * 64 * 1024)
    assert parse_rate("500kbit").rate == 500_000
    assert parse_rate("1gbit").rate == 10**9
    assert parse_rate("2mbps").rate == 16_000_000  # bytes per second
    assert parse_rate("1.5mbit:512kbit") == Rate(1_500_000, 512 * 1024)
    assert parse_rate(" 10MBit ").rate == 10_000_000
    assert str(parse_rate("10mbit:64kb")) == "10mbit:64kb"
    assert parse_rate(str(parse_rate("1gbit"))) == parse_rate("1gbit")  # the label form round-trips


@pytest.mark.parametrize("bad", ["10", "mbit", "10xbit", "-5mbit", "10mbit:", "10mbit:1b", "1bit", "2tbit",
                                 "10mbit:64kb:3", "1e3mbit", "10 mbit", "", "10mbit:9gb", "١٠mbit"])
def test_parse_rate_refuses(bad: str) -> None:
    from cnirun.core.errors import ArgumentError
    from cnirun.network.rates import parse_rate

    with pytest.raises(ArgumentError) as ei:
        parse_rate(bad, "--ingress-rate")
    assert "\n" not in str(ei.value) and "--ingress-rate" in str(ei.value)


def test_labels_round_trip_and_strict() -> None:
    from cnirun.core.errors import ArgumentError
    from cnirun.network.options import ContainerNetworkSpec
    from cnirun.network.rates import parse_rate

    spec = ContainerNetworkSpec(["a"], [], ingress_rate=parse_rate("10mbit"), egress_rate=parse_rate("1mbit:64kb"))
    labels = spec.to_labels()
    assert labels["cnirun.ingress-rate"] == "10mbit:32kb" and labels["cnirun.egress-rate"] == "1mbit:64kb"
    assert ContainerNetworkSpec.from_labels(labels) == spec
    with pytest.raises(ArgumentError, match="cnirun.egress-rate"):
        ContainerNetworkSpec.from_labels({"cnirun.networks": "a", "cnirun.egress-rate": "fast"})


def test_options_for_puts_rates_on_the_bandwidth_network(tmp_path: Path) -> None:
    from cnirun.cni.config import conflist_from_bytes
    from cnirun.core.errors import ArgumentError
    from cnirun.network.network_options import options_for
    from cnirun.network.options import ContainerNetworkSpec
    from cnirun.network.rates import parse_rate

    def net(name: str, extra: list[dict[str, Any]]) -> Any:
        conf = {"cniVersion": "1.0.0", "name": name, "plugins": [{"type": "ptp"}, *extra]}
        return conflist_from_bytes(json.dumps(conf).encode(), name)

    plain, shaped = net("plain", []), net("shaped", [BANDWIDTH])
    spec = ContainerNetworkSpec(["plain", "shaped"], [], ingress_rate=parse_rate("10mbit"))
    opts = options_for(spec, [plain, shaped])
    assert opts[0].capability_args == {}
    assert opts[1].capability_args == {"bandwidth": {"ingressRate": 10_000_000, "ingressBurst": 262144}}
    with pytest.raises(ArgumentError, match="bandwidth plugin"):
        options_for(ContainerNetworkSpec(["plain"], [], egress_rate=parse_rate("1mbit")), [plain])


# -- bad input on the command line ------------------------------------------------------------
@needs_docker
def test_run_refuses_bad_rates_with_nothing_done(dworld: World) -> None:
    w = dworld
    for opts, expect in ((["--ingress-rate", "10xbit"], "invalid --ingress-rate"),
                         (["--egress-rate", "10mbit:1b"], "burst"),
                         (["--network", w.second, "--ingress-rate", "10mbit"], "bandwidth plugin")):
        p = w.cnirun("run", "--rm", "--mode", "sandbox", "--name", f"t194-{w.n}-bad", *opts, "busybox", "true")
        assert p.returncode == 125, p.stderr
        assert p.stderr.count("\n") == 1 and expect in p.stderr and "Traceback" not in p.stderr, p.stderr
    assert not (w.cache_dir / "results").exists() or not list((w.cache_dir / "results").iterdir())
    w.assert_clean()


# -- the default chain: bandwidth with no limit passes through ---------------------------------
@needs_docker
def test_bandwidth_without_limit_adds_nothing(tmp_path: Path) -> None:
    """The shipped default network carries bandwidth: without a rate its ADD passes prevResult through,
    with no qdisc on the host veth and no ifb."""
    from cnirun.cni.defaults import builtin_networks

    w = _make_world(tmp_path, 194, net="t194-{n}", bridge="c194x{n}", name_prefix="t194-{n}-")
    default = json.loads(Path(builtin_networks()[0].source).read_text())
    assert [p["type"] for p in default["plugins"]][-2:] == ["bandwidth", "cnirun-policy"]
    default["name"] = w.net
    default["plugins"][0].update(bridge=w.bridge)
    default["plugins"][0]["ipam"].update(dataDir=str(w.data_dir), ranges=[[{"subnet": w.subnet}]])
    (Path(w.env["NETCONFPATH"]) / f"{w.net}.conflist").write_text(json.dumps(default))
    try:
        run_detached(w, f"t194-{w.n}-a")
        pid = pid_of(f"t194-{w.n}-a")
        veth = host_veth(pid)
        assert "tbf" not in qdiscs(veth) and "ingress" not in qdiscs(veth)
        (entry,) = cached(w)
        assert "bandwidth" not in entry.get("capabilityArgs", {})
        assert not Path(f"/sys/class/net/{remember_ifb(w, w.net, entry['containerId'])}").exists()
        assert [i.get("name") for i in entry["result"]["interfaces"]][-1] == "eth0"  # passed through as is
    finally:
        w.finish()


# -- enforced, and changed live ----------------------------------------------------------------
@needs_docker
@needs_iperf
def test_ingress_rate_enforced_and_removed_live(dworld: World) -> None:
    w = dworld
    a, b = f"t194-{w.n}-a", f"t194-{w.n}-b"
    run_detached(w, a, "--ingress-rate", "10mbit", "--egress-rate", "20mbit")
    run_detached(w, b)
    pa, pb = pid_of(a), pid_of(b)
    ip_a, mac_a = eth0(pa)
    (entry,) = [e for e in cached(w) if e["result"]["ips"][0]["address"].startswith(ip_a + "/")]
    ifb = remember_ifb(w, w.net, entry["containerId"])
    from cnirun.network.rates import parse_rate

    burst20 = parse_rate("20mbit").burst  # the default: 20 ms at the rate, in whole KiB
    assert burst20 == 49 * 8192
    assert entry["capabilityArgs"]["bandwidth"] == {"ingressRate": 10**7, "ingressBurst": 262144,
                                                    "egressRate": 2 * 10**7, "egressBurst": burst20}
    assert Path(f"/sys/class/net/{ifb}").exists()
    perf = Iperf(pa, pb, ip_a, 19401)
    into_a = perf.measure(4)
    assert 8.0 <= into_a <= 12.0, into_a
    out_of_a = perf.measure(3, reverse=True)
    assert 16.0 <= out_of_a <= 24.0, out_of_a

    p = w.cnirun("update", a, "--ingress-rate", "none")
    assert p.returncode == 0, p.stderr
    assert "ingress unlimited, egress 20mbit" in p.stdout
    assert "tbf" not in qdiscs(host_veth(pa))
    unlimited = perf.measure(3)
    assert unlimited > 50.0, unlimited  # a veth pair carries gigabits: far from 10mbit
    assert eth0(pa) == (ip_a, mac_a)
    (after,) = [e for e in cached(w) if e["containerId"] == entry["containerId"]]
    assert after["capabilityArgs"]["bandwidth"] == {"egressRate": 2 * 10**7, "egressBurst": burst20}
    assert after["result"] == entry["result"]  # interface plugins never ran

    p = w.cnirun("update", a, "--egress-rate", "none")
    assert p.returncode == 0, p.stderr
    assert not Path(f"/sys/class/net/{ifb}").exists()
    assert "bandwidth" not in [e for e in cached(w) if e["containerId"] == entry["containerId"]][0].get(
        "capabilityArgs", {})
    subprocess.run(["docker", "rm", "-f", a, b], capture_output=True)
    w.assert_clean(within=15)


@needs_docker
@needs_iperf
def test_tcp_connection_survives_update(dworld: World) -> None:
    """One iperf3 TCP stream runs across `update` (10mbit -> none -> 10mbit): it never breaks and keeps
    moving data; the container's address and MAC stay; the cache holds the last limit, so the
    container's removal DELs its ifb."""
    w = dworld
    a, b = f"t194-{w.n}-a", f"t194-{w.n}-b"
    run_detached(w, a, "--egress-rate", "10mbit")
    run_detached(w, b)
    pa, pb = pid_of(a), pid_of(b)
    ip_a, mac_a = eth0(pa)
    perf = Iperf(pa, pb, ip_a, 19402)
    srv = perf.start_server()
    # reverse: the server (in a) sends, through a's egress limit, for 9 s in 1 s intervals
    cl = perf.client(9, reverse=True, interval=1)
    time.sleep(3.2)  # the test: ~3 intervals limited, ~3 unlimited, the rest limited again
    assert w.cnirun("update", a, "--egress-rate", "none").returncode == 0
    time.sleep(3)
    p = w.cnirun("update", a, "--egress-rate", "10mbit")
    assert p.returncode == 0, p.stderr
    out, err = cl.communicate(timeout=60)
    srv.wait(timeout=30)
    assert cl.returncode == 0, err or out
    rates = [i["sum"]["bits_per_second"] / 1e6 for i in json.loads(out)["intervals"]]
    assert len(rates) >= 8, rates
    assert all(r > 1.0 for r in rates), rates  # data moved in every second
    assert max(rates[:3]) < 13.0 and max(rates[3:6]) > 30.0, rates  # limited, then not
    assert rates[-1] < 13.0, rates  # limited again
    assert eth0(pa) == (ip_a, mac_a)
    (entry,) = [e for e in cached(w) if e["result"]["ips"][0]["address"].startswith(ip_a + "/")]
    assert entry["capabilityArgs"]["bandwidth"]["egressRate"] == 10**7
    ifb = remember_ifb(w, w.net, entry["containerId"])
    assert Path(f"/sys/class/net/{ifb}").exists()
    subprocess.run(["docker", "rm", "-f", a, b], capture_output=True)
    w.assert_clean(within=15)  # the ifb too (leftovers)


@needs_docker
def test_update_bad_input_changes_nothing(dworld: World) -> None:
    w = dworld
    a = f"t194-{w.n}-a"
    run_detached(w, a, "--ingress-rate", "10mbit")
    before = cached(w)
    for args, expect in ((["--ingress-rate", "fast"], "invalid --ingress-rate"),
                         ([], "nothing to update"),
                         (["--bogus", "1"], "unknown option"),
                         (["--ingress-rate"], "needs a value")):
        p = w.cnirun("update", a, *args)
        assert p.returncode != 0 and p.stderr.count("\n") == 1 and expect in p.stderr, p.stderr
        assert "Traceback" not in p.stderr
    p = w.cnirun("update", f"t194-{w.n}-nosuch", "--ingress-rate", "1mbit")
    assert p.returncode != 0 and "no such container" in p.stderr, p.stderr
    # a container without a bandwidth network
    c = f"t194-{w.n}-c"
    run_detached(w, c, "--network", w.second)
    p = w.cnirun("update", c, "--ingress-rate", "1mbit")
    assert p.returncode != 0 and "bandwidth plugin" in p.stderr and p.stderr.count("\n") == 1, p.stderr
    assert [e for e in cached(w) if e in before] == before
    veth = host_veth(pid_of(a))
    assert "rate 10Mbit" in qdiscs(veth)
    subprocess.run(["docker", "rm", "-f", a, c], capture_output=True)
    w.assert_clean(within=15)


# -- every entry point ---------------------------------------------------------------------
@needs_docker
def test_docker_hook_mode_labels_and_update(dworld: World) -> None:
    w = dworld
    name = f"t194-{w.n}-hook"
    with docker_runtime_installed(w, f"t194-{w.n}-"):
        p = w.cnirun("run", "-d", "--mode", "hook", "--name", name, "--ingress-rate", "5mbit:64kb", "busybox",
                     "sleep", "600", timeout=120)
        assert p.returncode == 0, p.stderr
        veth = host_veth(pid_of(name))
        assert "rate 5Mbit burst 64Kb" in qdiscs(veth)
        p = w.cnirun("update", name, "--ingress-rate", "2mbit")
        assert p.returncode == 0, p.stderr
        assert "rate 2Mbit" in qdiscs(veth)
        # a restart attaches from the labels (5mbit), then applies what update recorded (live.json)
        r = subprocess.run(["docker", "restart", "-t", "1", name], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        assert "rate 2Mbit" in qdiscs(host_veth(pid_of(name)))
        # a plain `docker run` with the labels, as other tools hand them over
        other = f"t194-{w.n}-label"
        p = subprocess.run(["docker", "run", "-d", "--runtime", "cnirun", "--network", "none", "--name", other,
                            "--label", f"cnirun.networks={w.net}", "--label", "cnirun.egress-rate=3mbit",
                            "busybox", "sleep", "600"], capture_output=True, text=True, env=w.env)
        assert p.returncode == 0, p.stderr
        cid = p.stdout.strip()
        ifb = remember_ifb(w, w.net, cid)
        assert "rate 3Mbit" in qdiscs(ifb)
        bad = subprocess.run(["docker", "run", "--rm", "--runtime", "cnirun", "--network", "none",
                              "--label", f"cnirun.networks={w.net}", "--label", "cnirun.egress-rate=3 mbit",
                              "busybox", "true"], capture_output=True, text=True, env=w.env)
        assert bad.returncode != 0 and "cnirun.egress-rate" in bad.stderr, bad.stderr
        subprocess.run(["docker", "rm", "-f", name, other], capture_output=True)
        w.assert_clean(within=15)


@needs_podman
def test_podman_rates_and_update(pworld: World) -> None:
    w = pworld
    name = f"t194-{w.n}-pod"
    run_detached(w, name, "--egress-rate", "4mbit", engine="podman")
    pid = pid_of(name, "podman")
    (entry,) = cached(w)
    ifb = remember_ifb(w, w.net, entry["containerId"])
    assert "rate 4Mbit" in qdiscs(ifb)
    addr = eth0(pid)
    p = w.cnirun("update", name, "--egress-rate", "none", "--ingress-rate", "6mbit")
    assert p.returncode == 0, p.stderr
    assert not Path(f"/sys/class/net/{ifb}").exists()
    assert "rate 6Mbit" in qdiscs(host_veth(pid))
    assert eth0(pid) == addr
    subprocess.run(["podman", "rm", "-f", "-t", "0", name], capture_output=True)
    w.assert_clean(within=15)


@needs_docker
def test_connect_with_rate(dworld: World) -> None:
    """`network connect --ingress-rate` on the second interface; a rate on a network without bandwidth is refused."""
    w = dworld
    a = f"t194-{w.n}-a"
    run_detached(w, a, "--network", w.second)
    third = f"t194-{w.n}-c"
    w.add_network(third, f"c194z{w.n}", f"10.194.{150 + w.n}.0/24", [BANDWIDTH])
    try:
        p = w.cnirun("network", "connect", "--ingress-rate", "bad", third, a)
        assert p.returncode != 0 and "invalid --ingress-rate" in p.stderr and p.stderr.count("\n") == 1
        p = w.cnirun("network", "connect", "--ingress-rate", "1mbit", w.net, a)
        assert p.returncode == 0, p.stderr
        p = w.cnirun("network", "disconnect", w.net, a)
        assert p.returncode == 0, p.stderr
        p = w.cnirun("network", "connect", "--ingress-rate", "7mbit", third, a)
        assert p.returncode == 0, p.stderr
        veth = host_veth(pid_of(a), "eth1")
        assert "rate 7Mbit" in qdiscs(veth)
        p = w.cnirun("update", a, "--ingress-rate", "3mbit")
        assert p.returncode == 0 and third in p.stdout, p.stderr
        assert "rate 3Mbit" in qdiscs(veth)
        subprocess.run(["docker", "rm", "-f", a], capture_output=True)
        w.assert_clean(within=15)
        veths = subprocess.run(["ip", "-br", "link", "show", "master", f"c194z{w.n}"], capture_output=True, text=True)
        assert not veths.stdout.strip()
    finally:
        subprocess.run(["ip", "link", "del", f"c194z{w.n}"], capture_output=True)


@needs_docker
def test_compose_x_cni_rates(dworld: World) -> None:
    """compose services' x-cni: {ingress_rate, egress_rate} on a generated network (which carries bandwidth);
    a malformed rate is refused with the file's line before anything is created."""
    w = dworld
    project = f"t194-{w.n}-p"
    env = dict(w.env, CNIRUN_SUBNET_POOL=f"10.194.{200 + w.n}.0/24", CNIRUN_IPAM_DATA_DIR=str(w.data_dir))
    compose = w.tmp / "compose.yaml"

    def up_down(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*CNIRUN_CMD, "compose", "-f", str(compose), "-p", project, *args], env=env,
                              capture_output=True, text=True, timeout=180, cwd=w.tmp)

    compose.write_text("services:\n  web:\n    image: busybox\n    command: [sleep, '600']\n"
                       "    x-cni:\n      ingress_rate: 9mbit:64kb\n      egress_rate: fast\n")
    p = up_down("up", "-d")
    assert p.returncode != 0 and "compose.yaml:7: services.web.x-cni.egress_rate: invalid rate 'fast'" in p.stderr
    assert p.stderr.count("\n") == 1, p.stderr
    assert not list(Path(w.env["NETCONFPATH"]).glob(f"{project}*"))
    compose.write_text("services:\n  web:\n    image: busybox\n    command: [sleep, '600']\n"
                       "    x-cni:\n      ingress_rate: 9mbit:64kb\n      egress_rate: 2mbit\n")
    try:
        p = up_down("up", "-d")
        assert p.returncode == 0, p.stderr
        name = f"{project}-web-1"
        pid = pid_of(name)
        assert "rate 9Mbit burst 64Kb" in qdiscs(host_veth(pid))
        (entry,) = [e for e in cached(w) if e["networkName"].startswith(project)]
        assert "rate 2Mbit" in qdiscs(remember_ifb(w, entry["networkName"], entry["containerId"]))
    finally:
        p = up_down("down")
        assert p.returncode == 0, p.stderr
    w.assert_clean(within=15)


CNIRUN_CMD = [__import__("sys").executable, "-m", "cnirun.cli.main"]
