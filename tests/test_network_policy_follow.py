"""Policies follow names (cnirun/network/policy_follow.py): a peer named in a rule is covered when its attach
returns, with no command, and leaves the sets when it is detached; with real traffic.

Engine-free: `ip netns add` namespaces attached and detached through the attachment lifecycle
(network.lifecycle.attach/detach, as every run does: ADD, then its names on the network's resolver), a private
NETCONFPATH whose chain ends with cnirun-policy. Address plan: 10.234.N.0/24, networks t34-N, bridges c34N,
netns t34-N-*.
"""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

from conftest import REPO, World, _make_world, needs_docker, needs_plugins, needs_root
from _wait import wait_for

pytestmark = [needs_root, needs_plugins]
POLICY_PLUGIN = {"type": "cnirun-policy", "capabilities": {"firewallPolicy": True}}
DB_5432 = {"ingress": [{"peer": {"name": "db"}, "ports": [{"protocol": "tcp", "port": 5432}]}]}
# Runs its argv's steps in one process: ["attach", id, netns, names, policy] or ["detach", id]; prints, per step,
# {"address", "notes", "seconds"}.
DRIVER = """
import json, os, sys, time
from cnirun.cni.runtime import CNI
from cnirun.network.lifecycle import attach, detach
from cnirun.network.network_options import NetworkOptions
cni = CNI(netconf_path=os.environ["NETCONFPATH"], cache_dir=os.environ["CNI_CACHE_DIR"])
net = cni.network(os.environ["CNIRUN_DEFAULT_NETWORK"])
out = []
for step in json.loads(sys.argv[1]):
    start, notes, address = time.monotonic(), [], ""
    if step[0] == "attach":
        caps = {"firewallPolicy": step[4]} if step[4] else {}
        att = attach(cni, [net], step[1], step[2], [NetworkOptions(caps, [], step[3])], notes)[0]
        address = att.result["ips"][0]["address"].split("/")[0]
    else:
        notes = detach(cni, step[1])
    out.append({"address": address, "notes": notes, "seconds": time.monotonic() - start})
print(json.dumps(out))
"""
# A server in a netns accepting on the ports given; a client printing ok or refused (as test_plugins_policy's).
SERVER = """
import socket, sys, threading
for p in sys.argv[1:]:
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("0.0.0.0", int(p))); s.listen()
    threading.Thread(target=lambda s=s: [s.accept()[0].close() for _ in iter(int, 1)], daemon=True).start()
print("up", flush=True)
threading.Event().wait()
"""
CLIENT = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2).close()
    print("ok")
except OSError:
    print("refused")
"""


class FollowWorld(World):
    """A World whose containers are `ip netns add` namespaces t34-N-TAG, attached by the lifecycle."""

    spaces: list[str]
    procs: list[subprocess.Popen[str]]

    def leftovers(self) -> list[str]:
        """World's check, without its cnirun-* netns: this World's netns are t34-*, those are other tests' runs."""
        return [x for x in super().leftovers() if not x.startswith("netns: ")]

    def space(self, tag: str) -> str:
        name = f"t34-{self.n}-{tag}"
        subprocess.run(["ip", "netns", "add", name], check=True)
        self.spaces.append(name)
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        return name

    def steps(self, *steps: list[Any], env: dict[str, str] | None = None) -> list[dict[str, Any]]:
        p = subprocess.run([sys.executable, "-c", DRIVER, json.dumps(steps)], env={**self.env, **(env or {})},
                           capture_output=True, text=True, timeout=300, cwd=REPO)
        assert p.returncode == 0, p.stderr
        return json.loads(p.stdout)

    def attach(self, tag: str, names: list[str], policy: dict[str, Any] | None = None,
               env: dict[str, str] | None = None) -> dict[str, Any]:
        """A new netns t34-N-TAG attached with `policy` under `names`: its address, notes and the attach's seconds."""
        name = self.space(tag)
        return self.steps(["attach", name, f"/run/netns/{name}", names, policy], env=env)[0]

    def detach(self, tag: str) -> None:
        assert self.steps(["detach", f"t34-{self.n}-{tag}"])[0]["notes"] == []

    def serve(self, tag: str, *ports: int) -> None:
        proc = subprocess.Popen(["ip", "netns", "exec", f"t34-{self.n}-{tag}", sys.executable, "-c", SERVER,
                                 *map(str, ports)], stdout=subprocess.PIPE, text=True)
        self.procs.append(proc)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "up"

    def connect(self, tag: str, host: str, port: int) -> str:
        return subprocess.run(["ip", "netns", "exec", f"t34-{self.n}-{tag}", sys.executable, "-c", CLIENT, host,
                               str(port)], capture_output=True, text=True, timeout=30).stdout.strip()

    def nft(self, tag: str, *args: str) -> str:
        return subprocess.run(["ip", "netns", "exec", f"t34-{self.n}-{tag}", "nft", *args], capture_output=True,
                              text=True).stdout

    def has(self, tag: str, address: str) -> bool:
        """Whether the holder's ingress any-port set covers `address`."""
        return subprocess.run(["ip", "netns", "exec", f"t34-{self.n}-{tag}", "nft", "get", "element", "inet",
                               "cnirun_eth0", "in_any4", f"{{ {address} }}"], capture_output=True).returncode == 0

    def covered(self, tag: str) -> str:
        """The elements of the holder's ingress service set (address . proto . port), as nft prints them."""
        listing = json.loads(self.nft(tag, "-j", "list", "set", "inet", "cnirun_eth0", "in_svc4"))
        elems = [o["set"].get("elem", []) for o in listing["nftables"] if "set" in o][0]
        return " ".join(str(e["concat"][0]) if isinstance(e, dict) else str(e) for e in elems)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[FollowWorld]:
    w = _make_world(tmp_path, 234, "policy follow", net="t34-{n}", bridge="c34{n}", subnet="10.234.{n}.0/24",
                    extra=[POLICY_PLUGIN], cls=FollowWorld)
    w.spaces, w.procs = [], []
    try:
        yield w
    finally:
        for proc in w.procs:
            proc.kill()
        # Every netns detached as a run's teardown does (one process), then removed.
        subprocess.run([sys.executable, "-c", DRIVER, json.dumps([["detach", name] for name in w.spaces])],
                       env=w.env, capture_output=True, timeout=300, cwd=REPO)
        for name in w.spaces:
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
        for proc in w.procs:
            proc.wait()
        w.finish()
    assert not list((w.state_dir / "policies").glob("*"))


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]


def test_a_replaced_peer_is_covered_when_its_attach_returns(world: FollowWorld) -> None:
    """A holder allows ingress from db:5432 before any db exists; db attached -> its address is in the holder's
    set when the attach returns (it connects), another container is refused; db replaced by a new container
    of the same name at a new address -> the new one connects, the old address left the set; the holder's
    chain never changed; db removed -> the set is empty."""
    w = world
    holder = w.attach("h", ["h"], DB_5432)["address"]
    w.serve("h", 5432)
    chain = w.nft("h", "list", "chain", "inet", "cnirun_eth0", "ingress")
    assert w.covered("h") == ""
    old = w.attach("db1", ["db"])
    assert old["notes"] == [] and w.covered("h") == old["address"]
    assert w.connect("db1", holder, 5432) == "ok"
    w.attach("other", ["other"])
    assert w.connect("other", holder, 5432) == "refused"
    w.detach("db1")
    assert w.covered("h") == ""
    new = w.attach("db2", ["db"])
    assert new["address"] != old["address"] and w.covered("h") == new["address"]
    assert w.connect("db2", holder, 5432) == "ok"
    assert w.nft("h", "list", "chain", "inet", "cnirun_eth0", "ingress") == chain  # a set changed, not the chain
    w.detach("db2")
    assert w.covered("h") == ""


def test_twenty_holders_cover_a_new_peer_within_a_second(world: FollowWorld) -> None:
    """20 holders name db: each of 5 db containers started one after the other is in all 20 sets, and reaches
    each holder, when its attach returns; that attach takes < 1 s more than one no policy names (p99 printed);
    a holder of net:NETWORK covers every container attached after it."""
    w = world
    holders = [f"h{i}" for i in range(20)]
    spaces = [w.space(h) for h in holders]
    w.steps(*[["attach", s, f"/run/netns/{s}", [h], DB_5432] for s, h in zip(spaces, holders)])
    w.attach("all", ["all"], {"ingress": [{"peer": {"network": w.net}}]})
    named, plain = [], []
    for i in range(5):
        db = w.attach(f"db{i}", ["db"])
        named.append(db["seconds"])
        plain.append(w.attach(f"x{i}", [f"x{i}"])["seconds"])
        assert all(w.covered(h) == db["address"] for h in holders)
        assert w.has("all", db["address"])
        w.detach(f"db{i}")
        assert not w.has("all", db["address"])
    print(f"attach of a peer 20 holders name: p99 {p99(named):.3f} s; of one nobody names: p99 {p99(plain):.3f} s")
    assert p99(named) - p99(plain) < 1.0
    assert all(w.covered(h) == "" for h in holders)


@pytest.mark.parametrize("repair", [["gc"], ["network", "reload"]], ids=["gc", "reload"])
def test_a_failed_refresh_fails_nothing_and_gc_repairs_it(world: FollowWorld, tmp_path: Path,
                                                          repair: list[str]) -> None:
    """When nft cannot run for the refresh, the peer's attach succeeds all the same with a note saying so, the
    holder's record is marked stale, and `cnirun gc` (or `cnirun network reload`) covers the peer."""
    w = world
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "nft").write_text("#!/bin/sh\necho 'nft: broken' >&2\nexit 1\n")
    (bin_dir / "nft").chmod(0o755)
    holder = w.attach("h", ["h"], DB_5432)["address"]
    w.serve("h", 5432)
    db = w.attach("db", ["db"], env={"PATH": f"{bin_dir}:/usr/sbin:/usr/bin:/sbin:/bin"})
    assert len(db["notes"]) == 1 and "nft: broken" in db["notes"][0], db["notes"]
    assert w.covered("h") == "" and w.connect("db", holder, 5432) == "refused"
    record = json.loads(next((w.state_dir / "policies").iterdir()).read_text())
    assert record["stale"] is True
    p = w.cnirun(*repair)
    assert p.returncode == 0, p.stderr
    assert w.covered("h") == db["address"] and w.connect("db", holder, 5432) == "ok"
    assert "stale" not in json.loads(next((w.state_dir / "policies").iterdir()).read_text())


@needs_docker
def test_real_containers_a_replaced_peer_is_allowed_with_no_command(tmp_path: Path) -> None:
    """Docker: web runs with --ingress-allow DB:5432 before DB exists; `cnirun run -d --name DB` reaches web's
    port as soon as the run returns, another container does not; `docker rm -f DB` (the watcher's teardown)
    empties web's set; a new DB of the same name is allowed again, with no command in between."""
    w = _make_world(tmp_path, 234, "policy follow, docker", net="t34-{n}", bridge="c34{n}", subnet="10.234.{n}.0/24",
                    extra=[POLICY_PLUGIN], engine="docker", name_prefix="t34-{n}-")
    web, db, other = (f"t34-{w.n}-{x}" for x in ("web", "db", "other"))
    try:
        p = w.cnirun("run", "-d", "--name", web, "--ingress-allow", f"{db}:5432", "busybox", "httpd", "-f", "-p",
                     "5432")
        assert p.returncode == 0, p.stderr
        web_ip = w.cnirun("inspect", web, "--format", "{{range .Attachments}}{{join .Addresses \" \"}}{{end}}"
                          ).stdout.split()[0].split("/")[0]
        pid = subprocess.run(["docker", "inspect", "-f", "{{.State.Pid}}", web], capture_output=True, text=True
                             ).stdout.strip()

        def reaches(client: str) -> bool:
            return subprocess.run(["docker", "exec", client, "nc", "-w", "2", web_ip, "5432"], stdin=subprocess.DEVNULL,
                                  capture_output=True, timeout=30).returncode == 0

        def allowed() -> str:
            return subprocess.run(["nsenter", "-t", pid, "-n", "nft", "list", "set", "inet", "cnirun_eth0", "in_svc4"],
                                  capture_output=True, text=True).stdout

        assert w.cnirun("run", "-d", "--name", other, "busybox", "sleep", "300").returncode == 0
        for _ in range(2):
            p = w.cnirun("run", "-d", "--name", db, "busybox", "sleep", "300")
            assert p.returncode == 0, p.stderr
            assert reaches(db) and not reaches(other)
            subprocess.run(["docker", "rm", "-f", db], capture_output=True, check=True)
            assert wait_for(lambda: "elements" not in allowed(), 20), allowed()
    finally:
        w.finish()
