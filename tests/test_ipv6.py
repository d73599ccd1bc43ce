"""IPv6 dual stack (issue 12): automatic ULA /64s, --ipv6/enable_ipv6, --ip6, both families in containers.

Unit tests for the pool and the options first (nothing on the host), then
end to end on the real engines and plugins: Docker sandbox mode, Docker hook
mode (the cnirun runtime, installed for the test), Podman.
Address plan unique to this file: 10.196.0.0/16 and fd96::/16; names and
bridges start with t196; host ports 19600-19699.
"""
from __future__ import annotations

import ipaddress
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from cnirun.core.errors import ArgumentError, ConfigError
from cnirun.netstore.hostnet import HostRoute
from cnirun.netstore.located import Document, parse
from cnirun.netstore.network_spec import parse_network, parse_networks_section
from cnirun.netstore.networks import Planner
from cnirun.netstore.subnets_v6 import POOL_ENV_V6, default_pool, first_free, pool_v6

from conftest import (
    Net,
    _make_world,
    docker_runtime_installed,
    needs_docker,
    needs_plugins,
    needs_podman,
    needs_root,
    World,
    world_fixture,
)

V6 = ipaddress.IPv6Network
POOL_V6 = "fd96:100::/40"  # the test pool; the end-to-end tests take fd96:N::/64 from it
HOST_V6_ROUTE = HostRoute(V6("fd00::/64"), "eth0")  # what this host has on eth0


@pytest.fixture(autouse=True)
def private_pools(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(POOL_ENV_V6, POOL_V6)
    monkeypatch.setenv("CNIRUN_SUBNET_POOL", "10.196.128.0/17")
    monkeypatch.delenv("CNIRUN_IPAM_DATA_DIR", raising=False)


# -- the pool -------------------------------------------------------------------------
def test_first_free_skips_taken_and_routes_in_one_step() -> None:
    pool = V6("fd00::/8")
    assert first_free(pool, []) == V6("fd00::/64")
    assert first_free(pool, [V6("fd00::/64")]) == V6("fd00:0:0:1::/64")
    # A taken /16 at the start of the pool is jumped over, not walked (2**48 /64s).
    t0 = time.monotonic()
    taken = [V6("fd01:0:0:2::/63"), V6("fd00::/16"), V6("fd01::/64"), V6("fd01:0:0:1::/64")]
    assert first_free(pool, taken) == V6("fd01:0:0:4::/64")
    assert time.monotonic() - t0 < 0.1
    # Unsorted input, overlapping spans, a span larger than the pool around it.
    assert first_free(V6("fd96:1::/62"), [V6("fd96:1:0:1::/64"), V6("fd96:1::/64")]) == V6("fd96:1:0:2::/64")
    assert first_free(V6("fd96:1::/63"), [V6("fd96::/16")]) is None
    assert first_free(V6("fd96:1::/63"), [V6("fd96:1::/64"), V6("fd96:1:0:1::/64")]) is None
    assert first_free(V6("fd96:1::/64"), [V6("2001:db8::/32")]) == V6("fd96:1::/64")


def test_pool_env_and_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(POOL_ENV_V6, "fd96:1::/48, fd96:2::/48")
    assert pool_v6() == [V6("fd96:1::/48"), V6("fd96:2::/48")]
    for bad in ("10.0.0.0/8", "banana", "fd96::/80"):
        monkeypatch.setenv(POOL_ENV_V6, bad)
        with pytest.raises(ConfigError, match=POOL_ENV_V6):
            pool_v6()
    monkeypatch.delenv(POOL_ENV_V6)
    default = default_pool()
    assert pool_v6() == [default]
    assert default.prefixlen == 48 and default.subnet_of(V6("fd00::/8"))
    assert default == default_pool()  # stable on one host (RFC 4193 global ID from the machine ID)


def _convert(text: str, existing: list[Any] | None = None, routes: list[Any] | None = None) -> dict[str, dict]:
    doc = parse(text, "net.yaml")
    specs = parse_networks_section(doc, doc.data["networks"])
    planner = Planner(existing or [], routes=[HOST_V6_ROUTE] if routes is None else routes)
    return {s.name: planner.conflist(s) for s in specs}


def _ranges(conf: dict) -> list[list[dict]]:
    return next(p for p in conf["plugins"] if p["type"] == "bridge")["ipam"]["ranges"]


def test_enable_ipv6_gets_free_64s_that_skip_host_routes_and_each_other(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(POOL_ENV_V6, "fd00::/8")  # the host's fd00::/64 is in it
    confs = _convert("networks:\n  a: {enable_ipv6: true}\n  b: {enable_ipv6: true}\n  c: {}\n")
    a, b = _ranges(confs["a"]), _ranges(confs["b"])
    assert a == [[{"subnet": "10.196.128.0/24"}], [{"subnet": "fd00:0:0:1::/64"}]]
    assert b == [[{"subnet": "10.196.129.0/24"}], [{"subnet": "fd00:0:0:2::/64"}]]
    assert _ranges(confs["c"]) == [[{"subnet": "10.196.130.0/24"}]]  # IPv4 only unless asked
    ipam = next(p for p in confs["a"]["plugins"] if p["type"] == "bridge")["ipam"]
    assert ipam["routes"] == [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]


def test_existing_networks_v6_subnets_are_skipped(tmp_path: Path) -> None:
    from cnirun.cni.config import conflist_from_bytes

    other = conflist_from_bytes(json.dumps({
        "cniVersion": "1.0.0", "name": "t196-other", "plugins": [{"type": "bridge", "ipam": {
            "type": "host-local", "ranges": [[{"subnet": "fd96:100::/64"}], [{"subnet": "fd96:100:0:2::/63"}]]}}],
    }).encode(), "other")
    conf = _convert("networks:\n  a: {enable_ipv6: true}\n  b: {enable_ipv6: true}\n", existing=[other])
    assert _ranges(conf["a"])[1] == [{"subnet": "fd96:100:0:1::/64"}]
    assert _ranges(conf["b"])[1] == [{"subnet": "fd96:100:0:4::/64"}]


def test_explicit_v6_subnet_dual_stack_and_conflicts() -> None:
    conf = _convert("networks:\n  a:\n    enable_ipv6: true\n    ipam:\n      config:\n"
                    "        - {subnet: 'fd96:7::/64', gateway: 'fd96:7::fe'}\n")["a"]
    # Only an IPv6 subnet given: an IPv4 one is added, as Docker does.
    assert _ranges(conf) == [[{"subnet": "10.196.128.0/24"}], [{"subnet": "fd96:7::/64", "gateway": "fd96:7::fe"}]]
    with pytest.raises(ConfigError, match=r"subnet fd00::/64 overlaps: the host routes fd00::/64 via eth0"):
        _convert("networks:\n  a:\n    enable_ipv6: true\n    ipam: {config: [{subnet: 'fd00::/64'}]}\n")
    with pytest.raises(ConfigError, match=r"enable_ipv6: true"):
        _convert("networks:\n  a:\n    ipam: {config: [{subnet: 'fd96:7::/64'}]}\n")


def test_pool_exhausted_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(POOL_ENV_V6, "fd00::/64")
    with pytest.raises(ConfigError, match=r"no free IPv6 /64 left in fd00::/64: .*CNIRUN_SUBNET_POOL_V6"):
        _convert("networks:\n  a: {enable_ipv6: true}\n")


def test_network_create_flags_pair_gateways_and_ranges_with_their_subnets() -> None:
    from cnirun.cli.network_cmd import _pools

    pools = _pools(["10.196.1.0/24", "fd96:1::/64"], ["fd96:1::fe", "10.196.1.254"], ["fd96:1::/80"])
    assert pools == [{"subnet": "10.196.1.0/24", "gateway": "10.196.1.254"},
                     {"subnet": "fd96:1::/64", "gateway": "fd96:1::fe", "ip_range": "fd96:1::/80"}]
    assert _pools(["fd96:1::/64"], ["fd96:2::1"], []) == [{"subnet": "fd96:1::/64", "gateway": "fd96:2::1"}]
    for args in ((["10.196.1.0/24", "fd96:1::/64"], ["fd96:2::1"], []),
                 (["10.196.1.0/24", "fd96:1::/64"], ["fd96:1::1", "fd96:1::2"], [])):
        with pytest.raises(SystemExit):
            _pools(*args)


def test_v6bridge_only_for_dual_stack_gateways() -> None:
    from cnirun.netstore.v6bridge import wants_bridge

    confs = _convert("networks:\n  a: {enable_ipv6: true, driver_opts: {com.docker.network.driver.mtu: 1400}}\n"
                     "  b: {}\n  c: {enable_ipv6: true, internal: true}\n")
    bridge_a = next(p for p in confs["a"]["plugins"] if p["type"] == "bridge")["bridge"]
    assert wants_bridge(confs["a"]) == (bridge_a, 1400)
    assert wants_bridge(confs["b"]) == ("", 0)  # IPv4 only: nothing to do
    assert wants_bridge(confs["c"]) == ("", 0)  # internal: no gateway address on the bridge


# -- options: --ip6 and its label ------------------------------------------------------------
def _net(name: str, subnets: list[str], caps: bool = True) -> Any:
    from cnirun.cni.config import conflist_from_bytes

    main: dict[str, Any] = {"type": "bridge", "ipam": {"type": "host-local", "ranges": [[{"subnet": s}] for s in subnets]}}
    if caps:
        main["capabilities"] = {"ips": True}
    return conflist_from_bytes(json.dumps({"cniVersion": "1.0.0", "name": name, "plugins": [main]}).encode(), name)


def test_ip6_label_round_trip_and_validation() -> None:
    from cnirun.network.options import LABEL_IP6, ContainerNetworkSpec

    spec = ContainerNetworkSpec(["a", "b"], [], ips={"a": "10.196.1.5"}, ips6={"a": "fd96:1::5", "b": "fd96:2::5"})
    labels = spec.to_labels()
    assert labels[LABEL_IP6] == "a=fd96:1::5,b=fd96:2::5"
    back = ContainerNetworkSpec.from_labels(labels)
    assert back is not None and back.ips6 == spec.ips6 and back.ips == spec.ips
    assert ContainerNetworkSpec(["a"], [], ips6={"a": "fd96:1::5"}).to_labels()[LABEL_IP6] == "fd96:1::5"
    for bad in ("10.196.1.5", "fd96::1%eth0", "fd96::1;IP=1", "::1", "ff02::1"):
        with pytest.raises(ArgumentError):
            ContainerNetworkSpec.from_labels({"cnirun.networks": "a", LABEL_IP6: bad})


def test_options_for_puts_both_families_in_ips() -> None:
    from cnirun.network.network_options import options_for
    from cnirun.network.options import ContainerNetworkSpec

    dual = _net("t196-d", ["10.196.1.0/24", "fd96:1::/64"])
    v4 = _net("t196-4", ["10.196.2.0/24"])
    opts = options_for(ContainerNetworkSpec(["t196-d"], [], ips={"t196-d": "10.196.1.5"},
                                            ips6={"t196-d": "fd96:1::5"}), [dual])
    assert opts[0].capability_args["ips"] == ["10.196.1.5", "fd96:1::5"]
    opts = options_for(ContainerNetworkSpec(["t196-d"], [], ips6={"t196-d": "fd96:1::5"}), [dual])
    assert opts[0].capability_args["ips"] == ["fd96:1::5"]
    # Without the ips capability, CNI_ARGS carries one address (host-local reads a single IP=).
    plain = _net("t196-p", ["10.196.3.0/24", "fd96:3::/64"], caps=False)
    opts = options_for(ContainerNetworkSpec(["t196-p"], [], ips6={"t196-p": "fd96:3::5"}), [plain])
    assert ("IP", "fd96:3::5") in opts[0].args
    cases = [
        (ContainerNetworkSpec(["t196-4"], [], ips6={"t196-4": "fd96:1::5"}), [v4], "has no IPv6 subnet"),
        (ContainerNetworkSpec(["t196-d"], [], ips6={"t196-d": "fd96:9::5"}), [dual], "outside network t196-d"),
        (ContainerNetworkSpec(["t196-d"], [], ips6={"t196-x": "fd96:1::5"}), [dual], "does not join"),
        (ContainerNetworkSpec(["t196-d"], [], ips={"t196-d": "fd96:1::6"}, ips6={"t196-d": "fd96:1::5"}), [dual],
         "two IPv6 addresses"),
        (ContainerNetworkSpec(["t196-p"], [], ips={"t196-p": "10.196.3.5"}, ips6={"t196-p": "fd96:3::5"}), [plain],
         "not both"),
    ]
    for spec, nets, message in cases:
        with pytest.raises(ArgumentError, match=message):
            options_for(spec, nets)


# -- end to end: real engines and plugins -----------------------------------------------------
class DualWorld(World):
    """A World (10.196.N.0/24, IPv4 only: the default network) plus a dual-stack network made by
    `cnirun network create --ipv6`: t196-dN on bridge t196bN, 10.196.(100+N).0/24 and a /64 from fd96:N::/48."""

    @property
    def dual(self) -> str:
        return f"t196-d{self.n}"

    @property
    def dual_bridge(self) -> str:
        return f"t196b{self.n}"

    @property
    def v6_pool(self) -> str:
        return f"fd96:{self.n:x}::/48"

    def create_dual(self, *extra: str) -> dict[str, Any]:
        r = self.cnirun("network", "create", "--ipv6", self.dual, "--subnet", f"10.196.{100 + self.n}.0/24",
                        "--opt", f"com.docker.network.bridge.name={self.dual_bridge}", *extra, "--format", "json")
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)


def _dual_world(tmp_path: Path, engine: str = "") -> DualWorld:
    w = _make_world(tmp_path, 196, net="t196-{n}", bridge="t196x{n}", engine=engine, cls=DualWorld)
    w.watch(Net(w.dual, w.dual_bridge, f"10.196.{100 + w.n}.0/24", w.v6_pool, created=True))
    w.env[POOL_ENV_V6] = w.v6_pool
    w.env["CNIRUN_SUBNET_POOL"] = f"10.196.{100 + w.n}.0/24"
    w.env["CNIRUN_IPAM_DATA_DIR"] = str(w.data_dir)
    return w


dual_world = world_fixture(_dual_world)
podman_dual_world = world_fixture(_dual_world, "podman")


def _addr6(w: World, name: str, ifname: str = "eth0") -> str:
    """The container's global IPv6 address on `ifname` (address only), as the container sees it."""
    out = subprocess.run([w.engine, "exec", name, "ip", "-6", "-o", "addr", "show", "dev", ifname,
                          "scope", "global"], capture_output=True, text=True, timeout=30).stdout
    words = out.split()
    assert "inet6" in words, f"no IPv6 address on {ifname} of {name}: {out!r}"
    return words[words.index("inet6") + 1].split("/")[0]


def _ping6(w: World, src: str, dst: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([w.engine, "exec", src, "ping6", "-c", "1", "-W", "3", dst],
                          capture_output=True, text=True, timeout=30)


def _two_containers_reach_each_other(w: DualWorld, prefix: str, *mode: str) -> None:
    """Two -d containers on the dual network (one with --ip6): both families, ps shows them, ping6 works."""
    net = ipaddress.ip_network(w.create_dual()["subnets"][1])
    assert net.subnet_of(ipaddress.ip_network(w.v6_pool))
    static = str(net.network_address + 0x77)
    a, b = f"{prefix}a-{w.n}", f"{prefix}b-{w.n}"
    assert Path(f"/proc/sys/net/ipv6/conf/{w.dual_bridge}/accept_dad").read_text().strip() == "0"
    try:
        ra = w.cnirun("run", *mode, "-d", "--name", a, "--net", w.dual, "--ip6", static, "busybox", "sleep", "120")
        assert ra.returncode == 0, ra.stderr
        rb = w.cnirun("run", *mode, "-d", "--name", b, "--net", w.dual, "busybox", "sleep", "120")
        assert rb.returncode == 0, rb.stderr
        assert _addr6(w, a) == static
        # The first container on the new bridge reaches the IPv6 gateway at once: network create made
        # the bridge with DAD off (v6bridge), so the gateway address is not tentative.
        gw = str(net.network_address + 1)
        p = _ping6(w, a, gw)
        assert p.returncode == 0, p.stdout + p.stderr
        b6 = _addr6(w, b)
        assert ipaddress.ip_address(b6) in net and b6 != static
        v4 = subprocess.run([w.engine, "exec", b, "ip", "-4", "-o", "addr", "show", "eth0"],
                            capture_output=True, text=True).stdout
        assert f"10.196.{100 + w.n}." in v4
        ps = w.cnirun("ps", "--format", "json")
        assert ps.returncode == 0, ps.stderr
        rows = json.loads(ps.stdout)
        mine = {r["name"]: r for r in rows if r.get("name") in (a, b)}
        assert set(mine) == {a, b}, ps.stdout
        addrs = [x for r in mine.values() for att in r["attachments"] for x in att["addresses"]]
        assert f"{static}/64" in addrs and f"{b6}/64" in addrs
        assert sum(1 for x in addrs if x.startswith(f"10.196.{100 + w.n}.")) == 2
        table = w.cnirun("ps").stdout
        assert f"{static}/64" in table and f"10.196.{100 + w.n}." in table
        p = _ping6(w, a, b6)
        assert p.returncode == 0, p.stdout + p.stderr
        p = _ping6(w, b, static)
        assert p.returncode == 0, p.stdout + p.stderr
    finally:
        subprocess.run([w.engine, "rm", "-f", a, b], capture_output=True, timeout=60)


@needs_root
@needs_plugins
@needs_docker
def test_docker_sandbox_dual_stack(dual_world: DualWorld) -> None:
    _two_containers_reach_each_other(dual_world, "t196s", "--mode", "sandbox")


@needs_root
@needs_plugins
@needs_podman
def test_podman_dual_stack(podman_dual_world: DualWorld) -> None:
    # Podman's default capabilities leave out NET_RAW, which busybox's ping6 needs.
    _two_containers_reach_each_other(podman_dual_world, "t196p", "--cap-add", "NET_RAW")


@needs_root
@needs_plugins
@needs_docker
def test_docker_hook_dual_stack(tmp_path: Path) -> None:
    w = _dual_world(tmp_path)
    try:
        with docker_runtime_installed(w, "t196h"):
            _two_containers_reach_each_other(w, "t196h", "--mode", "hook")
    finally:
        w.finish()


def _http(url: str, timeout: float = 2.0) -> str:
    """GET url from the host (urllib: no proxy); '' when it cannot be reached."""
    import urllib.error
    import urllib.request

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout) as resp:
            return resp.read().decode()
    except (OSError, urllib.error.URLError):
        return ""


def _http_within(url: str, seconds: float) -> str:
    """GET until it answers: the bridge's IPv6 gateway address is tentative (DAD) for ~1-2 s after the
    first container plugs into a new bridge."""
    deadline = time.monotonic() + seconds
    body = _http(url)
    while not body and time.monotonic() < deadline:
        time.sleep(0.25)
        body = _http(url)
    return body


HTTPD = ["sh", "-c", "mkdir /www; echo hi6 > /www/index.html; exec httpd -f -p 80 -h /www"]


@needs_root
@needs_plugins
@needs_docker
def test_publish_on_ipv6(dual_world: DualWorld) -> None:
    """-p reaches the container over the host's IPv6 addresses (not ::1: portmap's localhost path is
    IPv4-only); a host IP of one family publishes on that family only."""
    w = dual_world
    gw = str(ipaddress.ip_network(w.create_dual()["subnets"][1]).network_address + 1)  # a host address of ours
    name, other = f"t196web-{w.n}", f"t196web2-{w.n}"
    try:
        r = w.cnirun("run", "--mode", "sandbox", "-d", "--name", name, "--net", w.dual, "-p", "19600:80",
                     "-p", "127.0.0.1:19602:80", "busybox", *HTTPD)
        assert r.returncode == 0, r.stderr
        assert _http_within(f"http://[{gw}]:19600/", 10) == "hi6\n"
        assert _http(f"http://127.0.0.1:19600/") == "hi6\n"
        # A host IP must be the host's already (the port check binds it): the gateway is, once the
        # bridge exists and its address has left DAD, which the wait above made sure of.
        r = w.cnirun("run", "--mode", "sandbox", "-d", "--name", other, "--net", w.dual,
                     "-p", f"[{gw}]:19601:80", "busybox", *HTTPD)
        assert r.returncode == 0, r.stderr
        assert _http_within(f"http://[{gw}]:19601/", 5) == "hi6\n"
        assert _http(f"http://10.196.{100 + w.n}.1:19601/", 1) == ""  # an IPv6 host IP: IPv6 only
        assert _http(f"http://127.0.0.1:19602/") == "hi6\n"
        assert _http(f"http://[{gw}]:19602/", 1) == ""  # an IPv4 host IP: IPv4 only
        assert _http("http://[::1]:19600/", 1) == ""  # no IPv6 counterpart of route_localnet
    finally:
        subprocess.run(["docker", "rm", "-f", name, other], capture_output=True, timeout=60)


@needs_root
@needs_plugins
@needs_docker
def test_connect_ip6_and_single_container_sandbox(dual_world: DualWorld) -> None:
    """network connect --ip6 adds a dual-stack eth1; a foreground sandbox run gets both families too."""
    w = dual_world
    net = ipaddress.ip_network(w.create_dual()["subnets"][1])
    fg = w.cnirun("run", "--rm", "--mode", "sandbox", "--net", w.dual, "busybox", "ip", "-6", "-o", "addr",
                  "show", "dev", "eth0", "scope", "global")
    assert fg.returncode == 0, fg.stderr
    assert str(net.network_address).rstrip(":") in fg.stdout, fg.stdout
    name = f"t196c-{w.n}"
    static = str(net.network_address + 0x99)
    try:
        r = w.cnirun("run", "--mode", "sandbox", "-d", "--name", name, "busybox", "sleep", "120")  # IPv4 only
        assert r.returncode == 0, r.stderr
        bad = w.cnirun("network", "connect", "--ip6", static, w.net, name)
        assert bad.returncode == 1 and bad.stderr.count("\n") == 1, bad.stderr
        assert "has no IPv6 subnet" in bad.stderr
        c = w.cnirun("network", "connect", "--ip6", static, w.dual, name)
        assert c.returncode == 0, c.stderr
        assert _addr6(w, name, "eth1") == static
        v6_eth0 = subprocess.run(["docker", "exec", name, "ip", "-6", "-o", "addr", "show", "dev", "eth0", "scope",
                                  "global"], capture_output=True, text=True).stdout
        assert v6_eth0.strip() == ""  # the default network stays IPv4-only
        d = w.cnirun("network", "disconnect", w.dual, name)
        assert d.returncode == 0, d.stderr
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, timeout=60)


@needs_root
@needs_plugins
@needs_docker
def test_bad_input_is_one_line_and_does_nothing(dual_world: DualWorld) -> None:
    w = dual_world
    subnet6 = w.create_dual()["subnets"][1]
    netconf = Path(w.env["NETCONFPATH"])
    before = sorted(p.name for p in netconf.iterdir())
    for args, message in [
        (["--ipv6", "--subnet", "fd96::/129"], "invalid subnet"),
        (["--subnet", "fd96:ff::1/64"], "host bits are set"),
        (["--subnet", "10.196.250.0/24", "--subnet", subnet6], "overlaps"),
        (["--subnet", "10.196.250.0/24", "--subnet", "fd96:fe::/64", "--gateway", "fd96:fd::1"], "in none of"),
    ]:
        r = w.cnirun("network", "create", "t196-bad", *args)
        assert r.returncode == 1 and r.stderr.startswith("cnirun: ") and r.stderr.count("\n") == 1, r.stderr
        assert message in r.stderr, r.stderr
    assert sorted(p.name for p in netconf.iterdir()) == before
    outside = "fd96:ffff::5"
    for args, message in [
        (["--net", w.dual, "--ip6", outside], "outside network"),
        (["--net", w.net, "--ip6", str(ipaddress.ip_network(subnet6).network_address + 5)], "has no IPv6 subnet"),
        (["--net", w.dual, "--ip6", "10.196.1.5"], "invalid --ip6 '10.196.1.5': not an IPv6 address"),
        (["--net", w.dual, "--ip6", "fd96::5%eth0"], "invalid --ip6 'fd96::5%eth0': not an IPv6 address"),
    ]:
        r = w.cnirun("run", "--rm", "--mode", "sandbox", "--name", f"t196bad-{w.n}", *args, "busybox", "true")
        assert r.returncode == 125 and r.stderr.startswith("cnirun: ") and r.stderr.count("\n") == 1, r.stderr
        assert message in r.stderr, r.stderr
    made = subprocess.run(["docker", "ps", "-aq", "--filter", f"name=t196bad-{w.n}"], capture_output=True, text=True)
    assert made.stdout.strip() == ""


@needs_root
@needs_plugins
@needs_docker
def test_file_network_enable_ipv6_without_subnet(dual_world: DualWorld) -> None:
    """A compose-style network with enable_ipv6 and no IPv6 subnet: a /64 from the pool, used as is by run -f."""
    w = dual_world
    f = w.tmp / "nets.yaml"
    f.write_text(f"networks:\n  t196-f{w.n}:\n    enable_ipv6: true\n    driver_opts:\n"
                 f"      com.docker.network.bridge.name: t196f{w.n}\n")
    try:
        r = w.cnirun("run", "--rm", "--mode", "sandbox", "-f", str(f), "--net", f"t196-f{w.n}", "busybox",
                     "ip", "-o", "addr", "show", "dev", "eth0", "scope", "global")
        assert r.returncode == 0, r.stderr
        v6 = [ln.split()[3] for ln in r.stdout.splitlines() if " inet6 " in ln]
        v4 = [ln.split()[3] for ln in r.stdout.splitlines() if " inet " in ln]
        assert len(v6) == 1 and ipaddress.ip_interface(v6[0]).network.subnet_of(ipaddress.ip_network(w.v6_pool))
        assert len(v4) == 1 and v4[0].startswith(f"10.196.{100 + w.n}.")
    finally:
        subprocess.run(["ip", "link", "del", f"t196f{w.n}"], capture_output=True)


def test_default_network_stays_ipv4_only() -> None:
    from cnirun.cni.config import load_file
    from cnirun.cni.defaults import shipped_netconf_dir

    d = shipped_netconf_dir()
    assert d is not None
    net = load_file(Path(d) / "cnirun.conflist")
    assert net.subnets() and all(ipaddress.ip_network(s).version == 4 for s in net.subnets())
    doc = Document(source="test", data={})
    spec = parse_network(doc, "t196-plain", {}, ())
    conf = Planner([], routes=[]).conflist(spec)
    assert all(len(rs) == 1 and ":" not in rs[0]["subnet"] for rs in _ranges(conf))


@needs_root
@needs_plugins
@needs_docker
def test_compose_enable_ipv6_and_ipv6_address(dual_world: DualWorld) -> None:
    """compose: enable_ipv6 without a subnet gets a /64 from the pool; ipv6_address pins a service's address."""
    w = dual_world
    project = f"t196c{w.n}"
    f = w.tmp / "compose.yaml"
    f.write_text(f"""services:
  a:
    image: busybox
    command: sleep 120
    cap_add: [NET_RAW]
    networks:
      v6:
        ipv6_address: "{w.v6_pool.split('::')[0]}::a"
  b:
    image: busybox
    command: sleep 120
    networks: [v6]
networks:
  v6:
    enable_ipv6: true
    driver_opts:
      com.docker.network.bridge.name: t196k{w.n}
""")
    up = w.cnirun("compose", "-f", str(f), "-p", project, "up", "-d", timeout=180)
    try:
        assert up.returncode == 0, up.stderr
        a, b = f"{project}-a-1", f"{project}-b-1"
        assert _addr6(w, a) == f"{w.v6_pool.split('::')[0]}::a"
        b6 = _addr6(w, b)
        assert ipaddress.ip_address(b6) in ipaddress.ip_network(w.v6_pool)
        p = _ping6(w, a, b6)
        assert p.returncode == 0, p.stdout + p.stderr
    finally:
        down = w.cnirun("compose", "-f", str(f), "-p", project, "down", timeout=180)
        subprocess.run(["ip", "link", "del", f"t196k{w.n}"], capture_output=True)
        assert down.returncode == 0, down.stderr
