"""Issue #11: `cnirun network reload` puts back what a firewall reload or `iptables -F` removed.

Real dockerd, podman and plugins. The host is shared with other tests, so
instead of flushing the shared chains (CNI-HOSTPORT-DNAT, CNI-FORWARD), each
test deletes exactly the rules of its own containers that such a flush
removes; `reload` is asked for the test's own networks. Address plan:
10.194.N.0/24, networks t194-*, host ports 19420-19449 on 127.0.0.1.
"""
from __future__ import annotations

import socket
import subprocess
import time

from conftest import (
    Net,
    CNIRUN,
    REPO,
    World,
    needs_docker,
    needs_plugins,
    needs_podman,
    needs_root,
    run_with_a_terminal,
    world_fixture,
)
from test_network_rates import (
    cached,
    eth0,
    host_veth,
    pid_of,
    policy_world,
    qdiscs,
)
from test_plugins_policy import PolicyWorld, world33  # noqa: F401 (world33: a fixture)

pytestmark = [needs_root, needs_plugins]


dworld = world_fixture(policy_world)
pworld = world_fixture(policy_world, "podman")


def serve(w: World, name: str, port: int, *opts: str, engine: str = "docker") -> str:
    """A container answering "hi" on port 80, published on 127.0.0.1:`port`."""
    mode = ["--mode", "sandbox"] if engine == "docker" else []
    p = w.cnirun("run", "-d", *mode, "--name", name, "-p", f"127.0.0.1:{port}:80", *opts, "busybox",
                 "nc", "-ll", "-p", "80", "-e", "echo", "hi", timeout=120)
    assert p.returncode == 0, p.stderr
    return p.stdout.strip().splitlines()[-1]


def answer(port: int, timeout: float = 2.0) -> str:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.settimeout(timeout)
            return s.recv(100).decode().strip()
    except OSError as e:
        return f"error: {e}"


def wait_answer(port: int, within: float = 10.0) -> str:
    deadline = time.monotonic() + within
    got = answer(port)
    while got != "hi" and time.monotonic() < deadline:
        time.sleep(0.2)
        got = answer(port)
    return got


def rules_naming(cid: str, table: str) -> list[str]:
    out = subprocess.run(["iptables-save", "-t", table], capture_output=True, text=True).stdout
    return sorted(ln for ln in out.splitlines() if ln.startswith("-A ") and cid in ln)


def rules_with(text: str, table: str) -> list[str]:
    out = subprocess.run(["iptables-save", "-t", table], capture_output=True, text=True).stdout
    return sorted(ln for ln in out.splitlines() if ln.startswith("-A ") and text in ln)


def delete_rule(table: str, line: str) -> None:
    """`iptables -t TABLE -D ...` of one iptables-save line (its words, as the shell would split them)."""
    import shlex

    words = shlex.split(line)
    assert words[0] == "-A"
    p = subprocess.run(["iptables", "-w", "-t", table, "-D", *words[1:]], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr


def reload(w: World, *nets: str) -> subprocess.CompletedProcess[str]:
    p = w.cnirun("network", "reload", *(nets or (w.net,)))
    assert p.returncode == 0, p.stderr
    return p


@needs_docker
def test_reload_brings_back_a_published_port(dworld: World) -> None:
    """The DNAT jump a flush of CNI-HOSTPORT-DNAT removes: the port stops answering, reload brings it
    back with the same container address and MAC; a second reload changes nothing."""
    w = dworld
    name = f"t194-{w.n}-web"
    serve(w, name, 19420)
    assert wait_answer(19420) == "hi"
    pid = pid_of(name)
    addr = eth0(pid)
    (entry,) = cached(w)
    cid = entry["containerId"]
    before = rules_naming(cid, "nat")
    assert w.cnirun("network", "reload", w.net).stdout.startswith("nothing to repair (1 live")

    (jump,) = [ln for ln in before if ln.startswith("-A CNI-HOSTPORT-DNAT ")]
    delete_rule("nat", jump)
    assert answer(19420, timeout=1.0) != "hi"
    dry = w.cnirun("network", "reload", "--dry-run", w.net)
    assert dry.returncode == 0 and "missing: portmap" in dry.stdout, dry.stdout
    assert answer(19420, timeout=1.0) != "hi"  # --dry-run changed nothing

    p = reload(w)
    assert f"{w.net} {name} eth0: repaired: portmap" in p.stdout, p.stdout
    assert wait_answer(19420) == "hi"
    assert eth0(pid) == addr
    assert rules_naming(cid, "nat") == before
    (after,) = cached(w)
    assert after["result"] == entry["result"] and after.get("capabilityArgs") == entry.get("capabilityArgs")

    p = reload(w)
    assert p.stdout.strip() == "nothing to repair (1 live attachments checked)", p.stdout
    assert rules_naming(cid, "nat") == before

    subprocess.run(["docker", "rm", "-f", name], capture_output=True)
    w.assert_clean(within=15)


@needs_docker
def test_reload_repairs_firewall_masquerade_and_qdiscs(dworld: World) -> None:
    """The firewall plugin's forward rules, the bridge plugin's masquerade chain and the bandwidth
    qdisc, removed as `iptables -F` / a tc mistake would: reload re-makes each (bridge's masquerade by
    hand, exactly as the plugin writes it, so its DEL still removes it), and the container's removal
    leaves nothing."""
    w = dworld
    name = f"t194-{w.n}-fw"
    serve(w, name, 19421, "--ingress-rate", "4mbit")
    pid = pid_of(name)
    ip, mac = eth0(pid)
    veth = host_veth(pid)
    (entry,) = cached(w)
    cid = entry["containerId"]
    forward = rules_with(f" {ip}/32 ", "filter")
    masq = rules_naming(cid, "nat")
    assert len(forward) == 2 and any("MASQUERADE" in ln for ln in masq)
    assert "rate 4Mbit" in qdiscs(veth)

    for ln in forward:
        delete_rule("filter", ln)
    for ln in masq:
        if not ln.startswith(("-A CNI-HOSTPORT-DNAT ", "-A CNI-DN-")):
            delete_rule("nat", ln)
    subprocess.run(["tc", "qdisc", "del", "dev", veth, "root"], check=True)
    assert rules_with(f" {ip}/32 ", "filter") == [] and "tbf" not in qdiscs(veth)

    p = reload(w)
    line = next(ln for ln in p.stdout.splitlines() if name in ln)
    for what in ("firewall: forward rules", "bridge: masquerade rules", "bandwidth: rate limit qdiscs"):
        assert what in line, p.stdout
    assert "portmap" not in line  # its rules were there: not re-run
    assert rules_with(f" {ip}/32 ", "filter") == forward
    assert rules_naming(cid, "nat") == masq
    assert "rate 4Mbit" in qdiscs(veth)
    assert eth0(pid) == (ip, mac)
    assert wait_answer(19421) == "hi"
    assert reload(w).stdout.startswith("nothing to repair")

    subprocess.run(["docker", "rm", "-f", name], capture_output=True)
    w.assert_clean(within=15)


def isolation_rules(tool: str, bridge: str) -> list[str]:
    out = subprocess.run([f"{tool}-save", "-t", "mangle"], capture_output=True, text=True).stdout
    return sorted(ln for ln in out.splitlines() if ln.startswith("-A CNIRUN-ISOLATION") and bridge in ln.split())


@needs_docker
def test_reload_repairs_network_isolation_in_both_families(dworld: World) -> None:
    """cnirun's own isolation rules of a `network create`d network (mangle, IPv4 and IPv6): reload puts back
    those a flush removed, in each family."""
    w = dworld
    net, bridge = f"t194-{w.n}-iso", f"c194i{w.n}"
    w.env["CNIRUN_IPAM_DATA_DIR"] = str(w.data_dir)
    w.watch(Net(net, bridge, f"10.194.{150 + w.n}.0/24", created=True))
    p = w.cnirun("network", "create", net, "--subnet", f"10.194.{150 + w.n}.0/24", "-o",
                 f"com.docker.network.bridge.name={bridge}")
    assert p.returncode == 0, p.stderr
    name = f"t194-{w.n}-isoc"
    p = w.cnirun("run", "-d", "--mode", "sandbox", "--net", net, "--name", name, "busybox", "sleep", "120")
    assert p.returncode == 0, p.stderr
    v4, v6 = isolation_rules("iptables", bridge), isolation_rules("ip6tables", bridge)
    assert len(v4) == 2 and len(v6) == 2, (v4, v6)
    for tool, lines in (("iptables", v4[:1]), ("ip6tables", v6[:1])):  # one rule of each family
        import shlex

        for line in lines:
            subprocess.run([tool, "-w", "-t", "mangle", "-D", *shlex.split(line)[1:]], check=True)
        p = reload(w, net)
        assert f"{net} network: repaired: cnirun: isolation rules of bridge {bridge}" in p.stdout, (tool, p.stdout)
        assert isolation_rules("iptables", bridge) == v4 and isolation_rules("ip6tables", bridge) == v6, tool
    p = reload(w, net)
    assert "isolation" not in p.stdout, p.stdout
    subprocess.run(["docker", "rm", "-f", name], capture_output=True)


@needs_podman
def test_reload_podman_run(pworld: World) -> None:
    w = pworld
    name = f"t194-{w.n}-pweb"
    serve(w, name, 19422, engine="podman")
    assert wait_answer(19422) == "hi"
    (entry,) = cached(w)
    (jump,) = [ln for ln in rules_naming(entry["containerId"], "nat") if ln.startswith("-A CNI-HOSTPORT-DNAT ")]
    delete_rule("nat", jump)
    assert answer(19422, timeout=1.0) != "hi"
    p = reload(w)
    assert "repaired: portmap" in p.stdout
    assert wait_answer(19422) == "hi"
    subprocess.run(["podman", "rm", "-f", "-t", "0", name], capture_output=True)
    w.assert_clean(within=15)


def test_reload_bad_input(tmp_path) -> None:  # type: ignore[no-untyped-def]
    w = policy_world(tmp_path)
    try:
        p = w.cnirun("network", "reload", "t194-no-such-network")
        assert p.returncode == 1 and p.stderr.count("\n") == 1 and "t194-no-such-network" in p.stderr, p.stderr
        p = w.cnirun("network", "reload", w.net)
        assert p.returncode == 0 and p.stdout.strip() == "nothing to repair (0 live attachments checked)"
    finally:
        w.finish()


def test_reload_skips_attachments_whose_container_is_gone(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A cache entry whose netns is gone (a crash before DEL) is gc's business: reload leaves it alone."""
    w = policy_world(tmp_path)
    ns = f"t194-{w.n}-ns"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        p = w.cnirun("cni", "add", w.net, f"/run/netns/{ns}")
        assert p.returncode == 0, p.stderr
        assert "nothing to repair (1 live" in reload(w).stdout
        subprocess.run(["ip", "netns", "del", ns], check=True)
        assert "nothing to repair (0 live" in reload(w).stdout
        assert len(cached(w)) == 1  # still there for gc / DEL
        p = w.cnirun("cni", "del", w.net, f"/run/netns/{ns}")  # the same container ID (from the path)
        assert p.returncode == 0, p.stderr
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        w.finish()



def test_reload_progress_on_a_terminal_only(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """On a terminal reload draws one status line per attachment checked; in a pipe its output is plain."""
    w = policy_world(tmp_path)
    made = []
    try:
        for i in range(2):
            ns = f"t194-{w.n}-pg{i}"
            subprocess.run(["ip", "netns", "add", ns], check=True)
            made.append(ns)
            p = w.cnirun("cni", "add", w.net, f"/run/netns/{ns}")
            assert p.returncode == 0, p.stderr
        p, text = run_with_a_terminal([*CNIRUN, "network", "reload", w.net], w.env, REPO)
        assert p.returncode == 0
        assert f"network reload [1/2] {w.net} " in text and f"network reload [2/2] {w.net} " in text, text
        assert text.endswith("\r\x1b[2K")  # the status line is cleared before the report
        assert p.stdout.decode().strip() == "nothing to repair (2 live attachments checked)"
        plain = reload(w)
        assert "\x1b" not in plain.stderr and "\r" not in plain.stderr
        assert plain.stdout.strip() == "nothing to repair (2 live attachments checked)"
        for ns in made:
            assert w.cnirun("cni", "del", w.net, f"/run/netns/{ns}").returncode == 0
    finally:
        for ns in made:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        w.finish()


def test_reload_repairs_a_firewall_policy_removed_in_the_netns(world33: PolicyWorld) -> None:
    """A container's firewall policy (cnirun-policy's nftables table in its netns), removed there by `nft flush
    ruleset`, then by `nft delete table`: the peer it refused gets through, CHECK (with the cached policy) says
    the table is missing; reload re-runs cnirun-policy alone (the address and cached result stay) and the peer is
    refused again while the allowed one passes; then reload finds nothing to repair."""
    w = world33
    a_name = w.space("a")
    b, c = w.ns("b"), w.ns("c")
    a = w.ns("a", {"ingress": [{"peer": {"cidr": f"{b}/32"}, "ports": [{"protocol": "tcp", "port": 8080}]}]})
    w.serve("a", 8080)
    assert w.connect("b", a, 8080) == "ok" and w.connect("c", a, 8080) == "refused"
    assert reload(w).stdout.startswith("nothing to repair (3 live")
    entry = (w.cache_dir / "results" / f"{w.net}-{a_name}-eth0").read_text()
    for removal in (["flush", "ruleset"], ["delete", "table", "inet", "cnirun_eth0"]):
        subprocess.run(["ip", "netns", "exec", a_name, "nft", *removal], check=True)
        assert w.connect("c", a, 8080) == "ok"  # no policy any more
        p = w.cni("check", a_name)
        assert p.returncode != 0 and "table inet cnirun_eth0" in p.stderr, p.stderr
        p = reload(w)
        assert f"{w.net} {a_name} eth0: repaired: cnirun-policy: " in p.stdout, p.stdout
        assert w.connect("c", a, 8080) == "refused" and w.connect("b", a, 8080) == "ok"
        assert w.cni("check", a_name).returncode == 0
    assert reload(w).stdout.startswith("nothing to repair (3 live")
    assert (w.cache_dir / "results" / f"{w.net}-{a_name}-eth0").read_text() == entry
