"""`cnirun network create|ls|inspect|rm|prune|convert` against real plugins (issue 5).

Every test has its own NETCONFPATH, CNI_CACHE_DIR and host-local data dir.
Address plan unique to this file: 10.152.0.0/16 (automatic subnets come from
CNIRUN_SUBNET_POOL=10.152.0.0/16), and 10.236.0.0/20 for concurrent creates. Bridges: automatic cni-<hash> names of
per-test random network names, removed by `network rm` (asserted) or at the end.
"""
from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
from pathlib import Path
from typing import Iterator

import pytest

from conftest import CNIRUN_BIN
from conftest import needs_root

from cnirun.netstore import hostnet, isolation

REPO = Path(__file__).resolve().parent.parent
needs_plugins = pytest.mark.skipif(not os.path.isfile("/usr/lib/cni/bridge"), reason="CNI plugins missing")


class Env:
    def __init__(self, tmp: Path) -> None:
        self.netconf = tmp / "net.d"
        self.cache = tmp / "cache"
        self.ipam = tmp / "ipam"
        self.env = dict(os.environ, NETCONFPATH=str(self.netconf), CNI_CACHE_DIR=str(self.cache),
                        CNIRUN_SUBNET_POOL="10.152.0.0/16", CNIRUN_IPAM_DATA_DIR=str(self.ipam),
                        CNIRUN_LOCK_FILE=str(tmp / "lock"), CNI_PATH="/usr/lib/cni")
        self.made: list[str] = []

    def run(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        p = subprocess.run([CNIRUN_BIN, *args], capture_output=True, text=True, env=self.env, timeout=120)
        if ok:
            assert p.returncode == 0, p.stderr
        return p

    def json(self, *args: str) -> object:
        return json.loads(self.run(*args, "--format", "json").stdout)

    def name(self) -> str:
        n = "t152-" + secrets.token_hex(3)
        self.made.append(n)
        return n


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    e = Env(tmp_path)
    yield e
    # Whatever a failed test left: its conflists' bridges and isolation rules.
    for f in e.netconf.glob("*.conflist"):
        conf = json.loads(f.read_text())
        br = conf.get("cnirun", {}).get("bridge")
        if br:
            isolation.remove(br)
            hostnet.delete_link(br)


pytestmark = [needs_root, needs_plugins]


def test_create_ls_inspect_rm_json(env: Env) -> None:
    a, b = env.name(), env.name()
    created = env.json("network", "create", a, "--subnet", "10.152.10.0/24", "--gateway", "10.152.10.1",
                       "--ip-range", "10.152.10.128/25", "--label", "team=blue")
    assert created["name"] == a and created["subnets"] == ["10.152.10.0/24"] and created["labels"] == {"team": "blue"}
    assert (env.netconf / f"{a}.conflist").is_file()
    env.run("network", "create", b, "--internal", "--opt", "com.docker.network.driver.mtu=1400")

    rows = {r["name"]: r for r in env.json("network", "ls")}
    assert set(rows) >= {a, b, "cnirun"}
    assert rows[b]["plugins"] == ["bridge", "firewall", "tuning", "bandwidth", "cnirun-policy"]
    assert rows[a]["plugins"] == ["bridge", "portmap", "firewall", "tuning", "bandwidth", "cnirun-policy"]
    assert rows[b]["subnets"][0].startswith("10.152.")
    table = env.run("network", "ls").stdout
    assert table.splitlines()[0].split() == ["NAME", "DRIVER", "PLUGINS", "SUBNET", "ATTACHED", "FILE"]

    (det,) = env.json("network", "inspect", b)
    assert det["conflist"]["plugins"][0]["mtu"] == 1400 and det["containers"] == []
    assert det["file"] == str(env.netconf / f"{b}.conflist")

    # Isolation rules exist while the network exists.
    bridge_a = rows[a]["bridge"]
    assert isolation.rules_for(bridge_a)

    removed = env.json("network", "rm", a, b)
    assert [r["name"] for r in removed] == [a, b]
    assert not list(env.netconf.glob("*.conflist"))
    assert not isolation.rules_for(bridge_a)


def test_concurrent_creates_choose_distinct_subnets(env: Env) -> None:
    """Six `network create` without --subnet, started at once on one NETCONFPATH, each get a subnet and a
    bridge of their own: choosing them and writing the conflist is one step under the networks lock."""
    env.env["CNIRUN_SUBNET_POOL"] = "10.236.0.0/20"
    names = [env.name() for _ in range(6)]
    procs = [subprocess.Popen([CNIRUN_BIN, "network", "create", n, "--format", "json"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env.env) for n in names]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 6, [err for _, err in outs]
    subnets = [json.loads(out)["subnets"] for out, _ in outs]
    assert all(len(s) == 1 and s[0].startswith("10.236.") for s in subnets), subnets
    assert len({s[0] for s in subnets}) == 6, subnets
    assert len({json.loads(out)["bridge"] for out, _ in outs}) == 6
    for n in names:
        env.run("network", "rm", n)
    assert "networks.lock" in os.listdir(env.env["CNIRUN_LOCK_FILE"] + ".d")  # beside the chain locks


def test_errors_are_one_line(env: Env) -> None:
    a = env.name()
    env.run("network", "create", a, "--subnet", "10.152.20.0/24")
    p = env.run("network", "create", env.name(), "--subnet", "10.152.20.0/25", ok=False)
    assert p.returncode == 1 and p.stderr.count("\n") == 1 and "overlaps" in p.stderr and a in p.stderr
    p = env.run("network", "create", a, ok=False)
    assert "already exists" in p.stderr
    p = env.run("network", "create", env.name(), "--driver", "overlay", ok=False)
    assert "driver 'overlay' is not supported" in p.stderr and "Traceback" not in p.stderr
    p = env.run("network", "inspect", "no-such-net", ok=False)
    assert p.returncode == 1 and "known networks:" in p.stderr and a in p.stderr
    p = env.run("network", "rm", "cnirun", ok=False)
    assert "built into cnirun" in p.stderr
    env.run("network", "rm", a)


def test_rm_refuses_while_in_use_and_removes_bridge(env: Env) -> None:
    from cnirun.network import netns
    from cnirun.network.lifecycle import attach, detach
    from cnirun.cni.runtime import CNI

    a = env.name()
    conf = env.json("network", "create", a, "--subnet", "10.152.30.0/24")
    bridge = conf["bridge"]
    ns_name, ns_path = netns.create(prefix="t152-")
    cid = "t152" + secrets.token_hex(8)
    try:
        cni = CNI(netconf_path=str(env.netconf), cache_dir=str(env.cache), plugin_path="/usr/lib/cni",
                  lock_file=env.env["CNIRUN_LOCK_FILE"])
        (att,) = attach(cni, [cni.network(a)], cid, ns_path)
        assert att.addresses()[0].startswith("10.152.30.")

        p = env.run("network", "rm", a, ok=False)
        assert p.returncode == 1 and "in use" in p.stderr and cid[:12] in p.stderr
        (det,) = env.json("network", "inspect", a)
        assert det["containers"][0]["containerId"] == cid
        assert det["containers"][0]["addresses"] == att.addresses()
        assert env.json("network", "prune", "-f") == []  # in use: not pruned

        assert detach(cni, cid) == []
    finally:
        netns.remove(ns_name)
    assert hostnet.link_exists(bridge)  # the bridge plugin made it on ADD
    (r,) = env.json("network", "rm", a)
    assert r["bridgeDeleted"] == bridge and r["warnings"] == []
    assert not hostnet.link_exists(bridge)
    assert not (env.ipam / a).exists()  # host-local's bookkeeping went with the network
    assert not list((env.cache / "results").iterdir())
    locks = os.listdir(env.env["CNIRUN_LOCK_FILE"] + ".d")  # the chain locks' files went too
    assert f"net-{a}.lock" not in locks and f"link-{bridge}.lock" not in locks, locks


def test_prune_removes_only_unused_cnirun_networks(env: Env) -> None:
    a, b = env.name(), env.name()
    env.run("network", "create", a)
    env.run("network", "create", b)
    hand = env.netconf / "handwritten.conflist"
    hand.write_text(json.dumps({"cniVersion": "1.0.0", "name": "t152-hand", "plugins": [{"type": "loopback"}]}))
    pruned = sorted(r["name"] for r in env.json("network", "prune", "-f"))
    assert pruned == sorted([a, b])
    assert [f.name for f in env.netconf.iterdir()] == ["handwritten.conflist"]


def test_convert_prints_and_writes(env: Env, tmp_path: Path) -> None:
    f = tmp_path / "nets.yaml"
    f.write_text("networks:\n  t152-conv:\n    ipam: {config: [{subnet: 10.152.40.0/24}]}\n")
    out = env.run("network", "convert", str(f)).stdout
    assert json.loads(out)["plugins"][0]["ipam"]["ranges"] == [[{"subnet": "10.152.40.0/24"}]]
    env.run("network", "convert", str(f), "--dir", str(tmp_path / "out"))
    assert json.loads((tmp_path / "out" / "t152-conv.conflist").read_text())["name"] == "t152-conv"
    f.write_text("networks:\n  x:\n    ipam:\n      config: 3\n")
    p = env.run("network", "convert", str(f), ok=False)
    assert p.stderr == f"cnirun: {f}:4: networks.x.ipam.config: expected a list of subnet entries, got a number\n"


@pytest.mark.skipif(subprocess.run(["docker", "image", "inspect", "busybox"], capture_output=True).returncode != 0,
                    reason="dockerd with a busybox image not available")
def test_rm_right_after_a_foreground_run_waits_for_its_del(env: Env, tmp_path: Path) -> None:
    """A foreground run's DEL may finish just after cnirun returned: `network rm` waits for it, while a
    network a running container uses is refused at once; right after `docker rm -f` of a `-d` run (its
    watcher's teardown under way or about to be), `network rm` waits for that and succeeds."""
    import time

    a = env.name()
    env.run("network", "create", a, "--subnet", "10.152.40.0/24")
    env.env["CNIRUN_STATE_DIR"] = str(tmp_path / "state")
    env.run("--rm", "--net", a, "busybox", "true")
    env.json("network", "rm", a)
    assert not (env.netconf / f"{a}.conflist").exists() and not (env.ipam / a).exists()
    b = env.name()
    env.run("network", "create", b, "--subnet", "10.152.42.0/24")
    name = f"t152-live-{secrets.token_hex(3)}"
    env.run("run", "-d", "--name", name, "--net", b, "busybox", "sleep", "60")
    try:
        t0 = time.monotonic()
        p = env.run("network", "rm", b, ok=False)
        assert p.returncode == 1 and "in use" in p.stderr
        assert time.monotonic() - t0 < 5.0  # a live container is not waited for
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)
    p = env.run("network", "rm", b, ok=False)
    assert p.returncode == 0, p.stderr
    assert not (env.netconf / f"{b}.conflist").exists()


def _th_networks(env: Env, *specs: tuple[str, list[str]]) -> list[str]:
    """Networks th-<hex>-N made by `network create` on 10.217.3N.0/24, bridges cthpN (helper H's plan)."""
    tag = secrets.token_hex(2)
    names = []
    for i, (_, extra) in enumerate(specs):
        name = f"th-{tag}-{i}"
        env.run("network", "create", name, "--subnet", f"10.217.{30 + i}.0/24",
                "-o", f"com.docker.network.bridge.name=cthp{tag}{i}", *extra)
        names.append(name)
    return names


def _left(env: Env) -> list[str]:
    return sorted(f.stem for f in env.netconf.glob("*.conflist"))


def test_prune_asks_on_stdin_as_docker_and_only_yes_removes(env: Env) -> None:
    """Without --force, prune asks docker's question and reads a line of stdin (a pipe too): n, anything
    else, or end of input remove nothing (exit 1); y/Y/yes remove; -f/--force do not ask."""
    names = _th_networks(env, ("a", []), ("b", []))
    for answer in ("n\n", "", "no\n", "yess\n", "\n"):
        p = subprocess.run([CNIRUN_BIN, "network", "prune"], input=answer, capture_output=True, text=True,
                           env=env.env, timeout=60)
        assert p.returncode == 1 and p.stdout == "", (answer, p.stderr)
        assert p.stderr.startswith("WARNING! This will remove all networks created by cnirun not used by at least "
                                   "one container.\nAre you sure you want to continue? [y/N] \n"), p.stderr
        assert p.stderr.endswith("cnirun: network prune cancelled: nothing removed\n")
        assert _left(env) == names
    closed = subprocess.run(["sh", "-c", f"exec {CNIRUN_BIN} network prune <&-"], capture_output=True, text=True,
                            env=env.env, timeout=60)  # no stdin at all: as end of input
    assert closed.returncode == 1 and closed.stderr.endswith("nothing removed\n") and _left(env) == names, \
        closed.stderr
    p = subprocess.run([CNIRUN_BIN, "network", "prune"], input="Y\n", capture_output=True, text=True, env=env.env,
                       timeout=60)
    assert p.returncode == 0 and sorted(p.stdout.split()) == names and _left(env) == [], p.stderr
    names = _th_networks(env, ("a", []))
    p = subprocess.run([CNIRUN_BIN, "network", "prune", "--force"], input="n\n", capture_output=True, text=True,
                       env=env.env, timeout=60)
    assert p.returncode == 0 and p.stdout.split() == names and "WARNING" not in p.stderr, p.stderr


def test_prune_filters(env: Env) -> None:
    """--filter label=k[=v], label!=k[=v] and until=<timestamp|duration|date> choose what is pruned, as docker's;
    other keys and bad values are one line, exit 1, nothing removed."""
    blue, red, plain = _th_networks(env, ("blue", ["--label", "team=blue"]), ("red", ["--label", "team=red"]),
                                    ("plain", []))
    for bad, needle in ((["driver=bridge"], "network prune filters by until="), (["label"], "invalid --filter"),
                        (["until=soon"], "expected a Unix timestamp"),
                        (["until=1h", "until=2h"], "more than one --filter until")):
        p = env.run("network", "prune", "-f", *[a for f in bad for a in ("--filter", f)], ok=False)
        assert p.returncode == 1 and p.stderr.count("\n") == 1 and needle in p.stderr, (bad, p.stderr)
    assert _left(env) == sorted([blue, red, plain])
    assert env.json("network", "prune", "-f", "--filter", "label=team=nope") == []
    # label! keeps what matches it; label=KEY takes any value.
    assert [r["name"] for r in env.json("network", "prune", "-f", "--filter", "label!=team=red",
                                        "--filter", "label=team")] == [blue]
    assert _left(env) == sorted([red, plain])
    # until: the conflist's time; red is two hours old.
    old = env.netconf / f"{red}.conflist"
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    assert [r["name"] for r in env.json("network", "prune", "-f", "--filter", "until=1h30m")] == [red]
    stamp = str(int(time.time()) - 60)
    assert env.json("network", "prune", "-f", "--filter", f"until={stamp}") == []
    assert env.json("network", "prune", "-f", "--filter", "until=2000-01-01T00:00:00Z") == []
    assert [r["name"] for r in env.json("network", "prune", "-f", "--filter", "until=2099-01-01")] == [plain]
    assert _left(env) == []
