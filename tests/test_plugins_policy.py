"""The cnirun-policy plugin (cnirun/plugins/policy.py): per-container firewall policies, with real traffic.

Engine-free: `ip netns add` namespaces attached to a test bridge with `cnirun cni add` (bridge + host-local +
portmap + firewall + cnirun-policy, a private NETCONFPATH), servers and clients run in them with python3.
Address plan: 10.232.N.0/24, networks t25h-N, bridges c25hN, netns t25h-N-*; the runtime's side (world33, also
used by test_live_reload and test_run_gc): 10.233.N.0/24, networks t33-N, bridges c33xN, netns t33-N-*.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest

from conftest import REPO, World, _make_world, needs_plugins, needs_root
from _wait import wait_for

pytestmark = [needs_root, needs_plugins]
LAUNCHER = REPO / "cnirun" / "plugins" / "bin" / "cnirun-policy"
POLICY_PLUGIN = {"type": "cnirun-policy", "capabilities": {"firewallPolicy": True}}
# A server in a netns: accepts on every port given, echoes what it reads.
SERVER = """
import socket, sys, threading
def serve(s):
    while True:
        c, _ = s.accept()
        threading.Thread(target=echo, args=(c,), daemon=True).start()
def echo(c):
    while (data := c.recv(100)):
        c.sendall(data)
for p in sys.argv[1:]:
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("0.0.0.0", int(p))); s.listen()
    threading.Thread(target=serve, args=(s,), daemon=True).start()
print("up", flush=True)
threading.Event().wait()
"""
# A client in a netns: "ok", "refused" or "timeout" of a TCP connect (or a UDP question with "udp").
CLIENT = """
import socket, sys
host, port, proto = sys.argv[1], int(sys.argv[2]), sys.argv[3]
try:
    if proto == "udp":
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(2); s.sendto(b"q", (host, port)); s.recv(10)
    else:
        socket.create_connection((host, port), timeout=2).sendall(b"x")
    print("ok")
except ConnectionRefusedError:
    print("refused")
except OSError as e:
    print("timeout" if isinstance(e, TimeoutError) else "refused")
"""


class PolicyWorld(World):
    """A World whose containers are `ip netns add` namespaces attached with `cnirun cni add`."""

    spaces: list[str]
    procs: list[subprocess.Popen[str]]
    prefix = "t25h"  # of its netns: PREFIX-N-TAG

    def space(self, tag: str) -> str:
        return f"{self.prefix}-{self.n}-{tag}"

    def leftovers(self) -> list[str]:
        """World's check, without its cnirun-* netns: this World's netns are PREFIX-*, those are other tests' runs."""
        return [x for x in super().leftovers() if not x.startswith("netns: ")]

    def ns(self, tag: str, policy: dict[str, Any] | None = None, names: list[str] | None = None) -> str:
        """Attach a new netns PREFIX-N-TAG with `policy`; registered under `names` in the names store. Its address."""
        name = self.space(tag)
        subprocess.run(["ip", "netns", "add", name], check=True)
        self.spaces.append(name)
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        p = self.add(name, policy)
        assert p.returncode == 0, p.stderr + p.stdout
        addr = json.loads(p.stdout)["ips"][0]["address"].split("/")[0]
        if names is not None:
            self.register(name, addr, names)
        return addr

    def add(self, name: str, policy: Any = None) -> subprocess.CompletedProcess[str]:
        env = dict(self.env, CNI_CONTAINERID=name)
        if policy is not None:
            env["CAP_ARGS"] = json.dumps({"firewallPolicy": policy})
        return subprocess.run([sys.executable, "-m", "cnirun.cli.main", "cni", "add", self.net, name], env=env,
                              capture_output=True, text=True, timeout=60, cwd=REPO)

    def cni(self, verb: str, name: str, policy: Any = None) -> subprocess.CompletedProcess[str]:
        """`cnirun cni VERB`; CHECK, as libcni's, gets the capability arguments from its caller (`policy`)."""
        env = dict(self.env, CNI_CONTAINERID=name)
        if policy is not None:
            env["CAP_ARGS"] = json.dumps({"firewallPolicy": policy})
        return subprocess.run([sys.executable, "-m", "cnirun.cli.main", "cni", verb, self.net, name], env=env,
                              capture_output=True, text=True, timeout=60, cwd=REPO)

    def register(self, name: str, addr: str, names: list[str]) -> None:
        """Publish `name`'s address under `names` as cnirun's DNS registration does (the names store only)."""
        code = ("import sys; from cnirun.dns.store import write_hosts; "
                "write_hosts(sys.argv[1], sys.argv[2], [sys.argv[3]], sys.argv[4:5], sys.argv[5:], '', False)")
        subprocess.run([sys.executable, "-c", code, self.net, name, addr, *names], env=self.env, check=True, cwd=REPO)

    def unregister(self, name: str) -> None:
        (self.state_dir / "dns" / self.net / "hosts" / name).unlink()

    def python(self, code: str, *args: str) -> str:
        p = subprocess.run([sys.executable, "-c", code, *args], env=self.env, capture_output=True, text=True,
                           timeout=60, cwd=REPO)
        assert p.returncode == 0, p.stderr
        return p.stdout

    def serve(self, name: str, *ports: int) -> None:
        proc = subprocess.Popen(["ip", "netns", "exec", self.space(name), sys.executable, "-c", SERVER,
                                 *map(str, ports)], stdout=subprocess.PIPE, text=True)
        self.procs.append(proc)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "up"

    def connect(self, name: str, host: str, port: int, proto: str = "tcp") -> str:
        """From netns `name` ("" for the host): ok, refused or timeout."""
        argv = [sys.executable, "-c", CLIENT, host, str(port), proto]
        if name:
            argv = ["ip", "netns", "exec", self.space(name), *argv]
        return subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout.strip()

    def tables(self, name: str) -> str:
        netns = [] if not name else ["ip", "netns", "exec", self.space(name)]
        return subprocess.run([*netns, "nft", "list", "tables"], capture_output=True, text=True).stdout

    def records(self) -> list[str]:
        d = self.state_dir / "policies"
        return sorted(os.listdir(d)) if d.is_dir() else []


@pytest.fixture
def world(tmp_path: Path) -> Iterator[PolicyWorld]:
    yield from _policy_world(_make_world(tmp_path, 232, "policy", net="t25h-{n}", bridge="c25h{n}",
                                         subnet="10.232.{n}.0/24", extra=[POLICY_PLUGIN], cls=PolicyWorld), "t25h")


@pytest.fixture
def world33(tmp_path: Path) -> Iterator[PolicyWorld]:
    """A PolicyWorld for the runtime's side of the plugin (reload, gc too): 10.233.N.0/24, networks t33-N,
    bridges c33xN, netns t33-N-*."""
    yield from _policy_world(_make_world(tmp_path, 233, "policy", net="t33-{n}", bridge="c33x{n}",
                                         subnet="10.233.{n}.0/24", extra=[POLICY_PLUGIN], cls=PolicyWorld), "t33")


def _policy_world(w: PolicyWorld, prefix: str) -> Iterator[PolicyWorld]:
    w.prefix, w.spaces, w.procs = prefix, [], []
    try:
        yield w
    finally:
        for proc in w.procs:
            proc.kill()
            proc.wait()
        for name in w.spaces:
            w.cni("del", name)
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
        w.finish()
    assert "cnirun_" not in w.tables("")  # nothing of a policy on the host, ever


def plugin(command: str, conf: dict[str, Any], netns: str = "", env: dict[str, str] | None = None,
           ) -> subprocess.CompletedProcess[str]:
    base = dict(os.environ, CNI_COMMAND=command, CNI_CONTAINERID="t25h-plugin", CNI_NETNS=netns, CNI_IFNAME="eth0",
                CNI_PATH="/usr/lib/cni")
    return subprocess.run([str(LAUNCHER)], input=json.dumps(conf), env={**base, **(env or {})}, capture_output=True,
                          text=True, timeout=30)


PREV = {"cniVersion": "1.0.0", "interfaces": [{"name": "eth0", "sandbox": "/x"}],
        "ips": [{"address": "10.232.0.2/24", "gateway": "10.232.0.1", "interface": 0}]}


def test_no_policy_passes_the_result_through_and_runs_no_program(tmp_path: Path) -> None:
    """Without a policy ADD prints the prevResult unchanged, CHECK and DEL succeed, and nothing is executed
    (nsenter and nft on PATH are recorders that would leave a mark); not chained: error 7."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("nsenter", "nft"):
        (bin_dir / tool).write_text(f"#!/bin/sh\ntouch {tmp_path}/ran-{tool}\nexit 1\n")
        (bin_dir / tool).chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "CNIRUN_STATE_DIR": str(tmp_path / "state")}
    conf = {"cniVersion": "1.0.0", "name": "t25h-plain", "type": "cnirun-policy", "prevResult": PREV}
    for command in ("ADD", "CHECK", "DEL"):
        p = plugin(command, {**conf, "runtimeConfig": {"portMappings": []}}, "/run/netns/t25h-none", env)
        assert p.returncode == 0, p.stdout + p.stderr
        if command == "ADD":
            assert json.loads(p.stdout) == PREV
    assert list(tmp_path.glob("ran-*")) == [] and not (tmp_path / "state").exists()
    code = ("import io, json, sys; from cnirun.plugins.policy import main; "
            "env = dict(CNI_COMMAND='ADD', CNI_CONTAINERID='x', CNI_NETNS='/run/netns/t25h-none', CNI_IFNAME='eth0', "
            "CNI_PATH='/usr/lib/cni'); out = io.StringIO(); "
            "assert main(environ=env, stdin=sys.argv[1], stdout=out) == 0, out.getvalue(); "
            "print(' '.join(m for m in sys.modules if m.startswith('cnirun.network') or m in ('subprocess', 'ipaddress')))")
    loaded = subprocess.run([sys.executable, "-c", code, json.dumps(conf)], capture_output=True, text=True, cwd=REPO)
    # nothing more loaded than the callbacks' own module (its rules, records and peers load with a policy)
    assert loaded.returncode == 0 and loaded.stdout.split() == ["cnirun.network", "cnirun.network.policy_plugin"], \
        loaded.stderr + loaded.stdout
    p = plugin("ADD", {k: v for k, v in conf.items() if k != "prevResult"}, "/run/netns/t25h-none", env)
    assert p.returncode == 1 and json.loads(p.stdout)["code"] == 7


def test_a_garbage_value_is_one_line_and_nothing_is_made(world: PolicyWorld) -> None:
    """A firewallPolicy value that is no policy: the plugin prints a CNI error (code 7, one line), the chain's
    ADD fails and is undone, and no record, table or reservation is left; a policy that cannot be put in place
    (no such netns) leaves no record either."""
    w = world
    for value in ("garbage", {"ingress": [{"peer": {"cidr": "10.0.0.0/33"}}]}, {"egress": [{"peer": {}}]}):
        p = plugin("ADD", {"cniVersion": "1.0.0", "name": w.net, "type": "cnirun-policy", "prevResult": PREV,
                           "runtimeConfig": {"firewallPolicy": value}}, "/run/netns/t25h-none",
                   {"CNIRUN_STATE_DIR": str(w.state_dir)})
        err = json.loads(p.stdout)
        assert p.returncode == 1 and err["code"] == 7 and "\n" not in err["msg"], p.stdout
        assert err["msg"].startswith("cnirun-policy: invalid firewallPolicy capability")
    p = plugin("ADD", {"cniVersion": "1.0.0", "name": w.net, "type": "cnirun-policy", "prevResult": PREV,
                       "runtimeConfig": {"firewallPolicy": {"egress": []}}}, "/run/netns/t25h-none",
               {"CNIRUN_STATE_DIR": str(w.state_dir)})
    assert p.returncode == 1 and json.loads(p.stdout)["code"] == 5 and w.records() == [], p.stdout  # no netns
    name = f"t25h-{w.n}-bad"
    subprocess.run(["ip", "netns", "add", name], check=True)
    w.spaces.append(name)
    p = w.add(name, {"ingress": [{"peer": {"cidr": "10.0.0.0/33"}}]})
    assert p.returncode != 0 and "invalid firewallPolicy capability" in p.stderr, p.stderr
    assert w.records() == [] and "cnirun_" not in w.tables("bad")
    w.assert_clean()


def test_ingress_by_peer_and_port(world: PolicyWorld) -> None:
    """Ingress: the allowed peer reaches the allowed port; another peer and another port are refused at once;
    the host (the gateway) only as a peer of its own; replies to the container's own connections pass."""
    w = world
    b = w.ns("b")
    c = w.ns("c")
    a = w.ns("a", {"ingress": [{"peer": {"cidr": f"{b}/32"}, "ports": [{"protocol": "tcp", "port": 8080}]},
                               {"peer": {"host": True}, "ports": [{"protocol": "tcp", "port": 8081}]}]})
    w.serve("a", 8080, 8081)
    w.serve("b", 9000)
    assert w.connect("b", a, 8080) == "ok"
    assert w.connect("b", a, 8081) == "refused"
    assert w.connect("c", a, 8080) == "refused"
    assert w.connect("", a, 8081) == "ok" and w.connect("", a, 8080) == "refused"
    assert w.connect("a", b, 9000) == "ok"  # no egress policy: a's own connections, and their replies, pass
    assert "cnirun_eth0" in w.tables("a") and "cnirun_" not in w.tables("b")
    assert w.cni("check", f"t25h-{w.n}-a", {"ingress": []}).returncode == 0


def test_egress_to_one_cidr_port_and_dns_to_the_gateway(world: PolicyWorld) -> None:
    """Egress limited to CIDR:port: that port of that address is reached, another port and another address are
    refused, and the gateway's port 53 (the network's resolver) answers over udp and tcp."""
    w = world
    b = w.ns("b")
    c = w.ns("c")
    a = w.ns("a", {"egress": [{"peer": {"cidr": f"{b}/32"}, "ports": [{"protocol": "tcp", "port": 9000}]}]})
    gateway = w.subnet.rsplit(".", 1)[0] + ".1"
    stop = threading.Event()
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tcp = socket.socket()
    try:
        udp.bind((gateway, 53))
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        tcp.bind((gateway, 53))
        tcp.listen()
        udp.settimeout(0.2)

        def answer() -> None:
            while not stop.is_set():
                try:
                    _, peer = udp.recvfrom(100)
                    udp.sendto(b"a", peer)
                except OSError:
                    pass

        threading.Thread(target=answer, daemon=True).start()
        w.serve("b", 9000, 9001)
        w.serve("c", 9000)
        assert w.connect("a", b, 9000) == "ok"
        assert w.connect("a", b, 9001) == "refused"
        assert w.connect("a", c, 9000) == "refused"
        assert w.connect("a", gateway, 53, "udp") == "ok"
        assert w.connect("a", gateway, 53) == "ok"
        assert w.connect("b", a, 22) == "refused"  # nothing listens; no ingress policy: the kernel's own reset
    finally:
        stop.set()
        udp.close()
        tcp.close()


UPDATE = """
import json, os, sys
from cnirun.cni.runtime import CNI
from cnirun.cni.runtime_conf import RuntimeConf
from cnirun.cni.update import update_capabilities
cni = CNI(netconf_path=os.environ["NETCONFPATH"], cache_dir=os.environ["CNI_CACHE_DIR"])
update_capabilities(cni, sys.argv[1], RuntimeConf(sys.argv[2], "", "eth0"), {"firewallPolicy": json.loads(sys.argv[3])})
"""


def test_live_update_replaces_the_lists_and_keeps_an_allowed_connection(world: PolicyWorld) -> None:
    """cnirun's live update (DEL then ADD of the capability's plugins with the cached prevResult) replaces the
    lists: an open connection the new policy still allows goes on, the address stays, a connection the new
    policy no longer allows is reset by its next packet, and removing the policy allows everyone."""
    w = world
    b = w.ns("b")
    c = w.ns("c")
    a_name = f"t25h-{w.n}-a"
    a = w.ns("a", {"ingress": [{"peer": {"cidr": f"{b}/32"}, "ports": [{"protocol": "tcp", "port": 8080}]}]})
    w.serve("a", 8080)
    stream = subprocess.Popen(["ip", "netns", "exec", f"t25h-{w.n}-b", sys.executable, "-u", "-c",
                               "import socket, sys\ns = socket.create_connection((sys.argv[1], 8080), timeout=5)\n"
                               "for line in sys.stdin:\n"
                               "    try:\n        s.sendall(line.encode()); print(s.recv(100).decode().strip())\n"
                               "    except OSError as e:\n        print(type(e).__name__)\n", a],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    w.procs.append(stream)
    assert stream.stdin is not None and stream.stdout is not None

    def say(word: str) -> str:
        stream.stdin.write(word + "\n")
        stream.stdin.flush()
        return stream.stdout.readline().strip()

    assert say("one") == "one"
    assert w.connect("c", a, 8080) == "refused"
    new = {"ingress": [{"peer": {"cidr": f"{b}/32"}, "ports": [{"protocol": "tcp", "port": 8080}]},
                       {"peer": {"cidr": f"{c}/32"}}]}
    w.python(UPDATE, w.net, a_name, json.dumps(new))
    assert say("two") == "two"  # the open allowed connection survived the DEL and ADD
    assert w.connect("c", a, 8080) == "ok"
    cached = json.loads(next((w.cache_dir / "results").glob(f"{w.net}-{a_name}-eth0")).read_text())
    assert cached["capabilityArgs"]["firewallPolicy"] == new and cached["result"]["ips"][0]["address"].startswith(a)
    w.python(UPDATE, w.net, a_name, json.dumps({"ingress": [{"peer": {"cidr": f"{c}/32"}}]}))
    assert say("three") in ("ConnectionResetError", "")  # b is no longer allowed: reset on its next packet
    assert w.connect("b", a, 8080) == "refused" and w.connect("c", a, 8080) == "ok"
    w.python(UPDATE, w.net, a_name, "{}")
    assert w.connect("b", a, 8080) == "ok" and "cnirun_" not in w.tables("a") and w.records() == []


REFRESH = """
import sys
from cnirun.network.policy_attachments import refresh
print(" ".join(refresh(sys.argv[1], sys.argv[2:] or None)))
"""


def test_peers_by_name_follow_the_names_store(world: PolicyWorld) -> None:
    """A name no container has yet matches nothing; once a container registers it, refresh() puts its address
    in the policy's set (no chain changes); when it unregisters and another takes the name, the set follows;
    net:NETWORK covers every container registered there."""
    w = world
    a_name = f"t25h-{w.n}-a"
    b = w.ns("b")
    a = w.ns("a", {"ingress": [{"peer": {"name": "db"}, "ports": [{"protocol": "tcp", "port": 5432}]}]}, names=["a"])
    w.serve("a", 5432)
    rules_before = subprocess.run(["ip", "netns", "exec", a_name, "nft", "list", "chain", "inet", "cnirun_eth0",
                                   "ingress"], capture_output=True, text=True).stdout
    assert w.connect("b", a, 5432) == "refused"
    w.register(f"t25h-{w.n}-b", b, ["b", "db"])
    assert w.python(REFRESH, w.net, "b", "db").split() == [f"{w.net}/{a_name}/eth0"]
    assert w.connect("b", a, 5432) == "ok"
    w.unregister(f"t25h-{w.n}-b")
    c = w.ns("c", names=["db"])
    assert w.python(REFRESH, w.net, "db").split() == [f"{w.net}/{a_name}/eth0"]
    assert w.connect("b", a, 5432) == "refused" and w.connect("c", a, 5432) == "ok"
    assert w.python(REFRESH, w.net, "unrelated").split() == []
    after = subprocess.run(["ip", "netns", "exec", a_name, "nft", "list", "chain", "inet", "cnirun_eth0", "ingress"],
                           capture_output=True, text=True).stdout
    assert after == rules_before  # a peer coming or going changed a set, not the chain
    # net:NETWORK: every container registered on the network
    w.register(f"t25h-{w.n}-b", b, ["b"])
    w.python(UPDATE, w.net, a_name, json.dumps({"ingress": [{"peer": {"network": w.net}}]}))
    assert w.connect("b", a, 5432) == "ok" and w.connect("c", a, 5432) == "ok"
    w.unregister(f"t25h-{w.n}-b")
    assert w.python(REFRESH, w.net).split() == [f"{w.net}/{a_name}/eth0"]
    assert w.connect("b", a, 5432) == "refused" and w.connect("c", a, 5432) == "ok"


def test_del_leaves_nothing_and_check_finds_what_is_missing(world: PolicyWorld) -> None:
    """CHECK fails when the table's sets or chains are gone; DEL removes table and record, again and again,
    also with the netns gone; nothing is left on the host or in the netns."""
    w = world
    a_name = f"t25h-{w.n}-a"
    policy = {"ingress": [], "egress": [{"peer": {"host": True}}]}
    w.ns("a", policy)
    assert w.cni("check", a_name, policy).returncode == 0
    subprocess.run(["ip", "netns", "exec", a_name, "nft", "delete", "chain", "inet", "cnirun_eth0", "egress"],
                   check=True)
    p = w.cni("check", a_name, policy)
    assert p.returncode != 0 and "chain egress" in p.stderr, p.stderr
    subprocess.run(["ip", "netns", "exec", a_name, "nft", "delete", "table", "inet", "cnirun_eth0"], check=True)
    p = w.cni("check", a_name, policy)
    assert p.returncode != 0 and "table inet cnirun_eth0" in p.stderr, p.stderr
    assert len(w.records()) == 1
    for _ in range(2):
        p = w.cni("del", a_name)
        assert p.returncode == 0, p.stderr
        assert w.records() == [] and "cnirun_" not in w.tables("a")
    w.ns("b", {"egress": []})
    subprocess.run(["ip", "netns", "del", f"t25h-{w.n}-b"], check=True)
    p = w.cni("del", f"t25h-{w.n}-b")
    assert p.returncode == 0 and w.records() == [], p.stderr
    wait_for(lambda: not w.leftovers(), 10)
    w.assert_clean()


def _recording_launcher(w: PolicyWorld) -> Path:
    """A cnirun-policy launcher (it runs cnirun.plugins.policy, so the runtime knows it as cnirun's own) that also
    appends each CNI_COMMAND it runs for to a file, first in the World's CNI_PATH; the file's path."""
    bin_dir, mark = w.tmp / "policy-bin", w.tmp / "policy-ran"
    bin_dir.mkdir()
    (bin_dir / "cnirun-policy").write_text(
        f"#!{sys.executable}\nimport os, sys\nopen({str(mark)!r}, 'a').write(os.environ['CNI_COMMAND'] + '\\n')\n"
        f"sys.path.insert(0, {str(REPO)!r})\nfrom cnirun.plugins.policy import main\nraise SystemExit(main())\n")
    (bin_dir / "cnirun-policy").chmod(0o755)
    w.env["CNI_PATH"] = f"{bin_dir}:{w.env['CNI_PATH']}"
    return mark


def test_runtime_runs_no_program_without_a_policy_and_del_still_removes_one(world33: PolicyWorld) -> None:
    """cnirun's runtime answers cnirun-policy's calls without a policy itself: ADD, CHECK and DEL of a chain
    carrying it run no plugin process, and ADD's result is the previous plugin's. With a policy it runs: the
    table is made, CHECK runs, and DEL removes table and record, by the cached capability arguments, and also
    with none cached (the plugin's record says a policy was made)."""
    w = world33
    mark = _recording_launcher(w)
    a_name, b_name = w.space("a"), w.space("b")
    w.ns("a")
    cached = json.loads((w.cache_dir / "results" / f"{w.net}-{a_name}-eth0").read_text())
    assert cached["result"]["interfaces"] and cached["result"]["ips"][0]["address"].startswith("10.233.")
    assert w.cni("check", a_name).returncode == 0
    assert w.cni("del", a_name).returncode == 0
    assert not mark.exists(), mark.read_text()  # no process for ADD, CHECK, DEL
    policy = {"ingress": [], "egress": [{"peer": {"host": True}}]}
    w.add(a_name, policy).check_returncode()
    w.ns("b", policy)
    assert mark.read_text().split() == ["ADD", "ADD"]
    assert "cnirun_eth0" in w.tables("a") and "cnirun_eth0" in w.tables("b") and len(w.records()) == 2
    assert w.cni("check", b_name, policy).returncode == 0 and mark.read_text().split()[-1] == "CHECK"
    p = w.cni("del", b_name)  # the capability arguments come from the cache
    assert p.returncode == 0 and "cnirun_" not in w.tables("b") and len(w.records()) == 1, p.stderr
    entry = w.cache_dir / "results" / f"{w.net}-{a_name}-eth0"
    entry.write_text(json.dumps(dict(json.loads(entry.read_text()), capabilityArgs={})))  # none for its DEL
    p = w.cni("del", a_name)
    assert p.returncode == 0 and "cnirun_" not in w.tables("a") and w.records() == [], p.stderr
    assert mark.read_text().split() == ["ADD", "ADD", "CHECK", "DEL", "DEL"]
