"""Issue #11: isolation between containers and between networks.

- cnirun's chained `isolation` plugin (cnirun/plugins/isolation.py, written
  with cnirun.cni.skel): `--opt com.docker.network.bridge.enable_icc=false` puts it
  in the chain; two containers of that network cannot reach each other, both
  reach the gateway, a published port still answers.
- `network create --isolate same-bridge|none`: the firewall plugin's
  ingressPolicy between networks.

Real dockerd and plugins. Address plan: CNIRUN_SUBNET_POOL 10.194.(60+N).0/24
and 10.194.(80+N).0/24, networks t194-*, host ports 19440-19449 on 127.0.0.1.
"""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any, Iterator

import pytest

from conftest import World, needs_docker, needs_plugins, needs_root
from test_network_rates import host_veth, pid_of, policy_world
from test_live_reload import serve, wait_answer

pytestmark = [needs_root, needs_plugins]
REPO = Path(__file__).resolve().parent.parent
LAUNCHER = REPO / "cnirun" / "plugins" / "bin" / "isolation"


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = policy_world(tmp_path)
    w.env["CNIRUN_SUBNET_POOL"] = f"10.194.{60 + w.n}.0/24,10.194.{80 + w.n}.0/24"
    w.env["CNIRUN_IPAM_DATA_DIR"] = str(w.data_dir)
    yield w
    for f in Path(w.env["NETCONFPATH"]).glob(f"t194-{w.n}-*.conflist"):
        w.cnirun("network", "rm", f.stem)
    w.finish()


def plugin(command: str, conf: dict[str, Any], netns: str = "", cid: str = "t194-plugin") -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, CNI_COMMAND=command, CNI_CONTAINERID=cid, CNI_NETNS=netns, CNI_IFNAME="eth0",
               CNI_PATH="/usr/lib/cni")
    return subprocess.run([str(LAUNCHER)], input=json.dumps(conf), env=env, capture_output=True, text=True,
                          timeout=30)


def test_plugin_speaks_cni_and_refuses_misuse(tmp_path: Path) -> None:
    p = plugin("VERSION", {"cniVersion": "1.0.0"})
    assert p.returncode == 0 and "1.0.0" in json.loads(p.stdout)["supportedVersions"], p.stderr
    netns = f"t194-iso-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", netns], check=True)
    try:
        base = {"cniVersion": "1.0.0", "name": "t194-iso", "type": "isolation"}
        p = plugin("ADD", base, f"/run/netns/{netns}")
        err = json.loads(p.stdout)
        assert p.returncode != 0 and err["code"] == 7 and "chained" in err["msg"], p.stdout
        prev = {"cniVersion": "1.0.0", "interfaces": [{"name": "lo"}, {"name": "eth0", "sandbox": "/x"}]}
        p = plugin("ADD", {**base, "prevResult": prev}, f"/run/netns/{netns}")
        err = json.loads(p.stdout)
        assert p.returncode != 0 and err["code"] == 7 and "bridge" in err["msg"], p.stdout
        p = plugin("DEL", base, f"/run/netns/{netns}")
        assert p.returncode == 0, p.stdout  # DEL of what was never made succeeds
    finally:
        subprocess.run(["ip", "netns", "del", netns], capture_output=True)


def test_install_plugins_puts_isolation_beside_the_others(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    p = subprocess.run([str(REPO / ".venv" / "bin" / "python"), "-m", "cnirun.cli.main", "install", "plugins",
                        "--dir", str(tmp_path)], env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "isolation").is_file() and os.access(tmp_path / "isolation", os.X_OK)
    v = subprocess.run([str(tmp_path / "isolation")], env=dict(os.environ, CNI_COMMAND="VERSION"), input="{}",
                       capture_output=True, text=True, timeout=30)
    assert v.returncode == 0 and "supportedVersions" in v.stdout, v.stderr


def _create(w: World, name: str, *opts: str) -> dict[str, Any]:
    p = w.cnirun("network", "create", name, *opts, "--format", "json")
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def _ip(name: str) -> str:
    out = subprocess.run(["docker", "exec", name, "ip", "-4", "-o", "addr", "show", "eth0"], capture_output=True,
                         text=True).stdout.split()
    return out[out.index("inet") + 1].split("/")[0]


def _ping(src: str, dst: str) -> bool:
    """Any of 3 echo requests answered (the first may wait for ARP after a refused one)."""
    return subprocess.run(["docker", "exec", src, "ping", "-c", "3", "-W", "1", dst], capture_output=True).returncode == 0


@needs_docker
def test_enable_icc_false_isolates_the_containers_of_a_network(world: World) -> None:
    w = world
    net = f"t194-{w.n}-icc"
    info = _create(w, net, "--opt", "com.docker.network.bridge.enable_icc=false")
    assert info["plugins"] == ["bridge", "portmap", "firewall", "isolation", "tuning", "bandwidth",
                               "cnirun-policy"]
    a, b = f"t194-{w.n}-a", f"t194-{w.n}-b"
    serve(w, a, 19440, "--network", net)
    p = w.cnirun("run", "-d", "--mode", "sandbox", "--name", b, "--network", net, "busybox", "sleep", "600")
    assert p.returncode == 0, p.stderr
    gateway = info["subnets"][0].rsplit(".", 1)[0] + ".1"
    assert not _ping(a, _ip(b)) and not _ping(b, _ip(a))
    assert _ping(a, gateway) and _ping(b, gateway)
    assert wait_answer(19440) == "hi"  # a published port goes through the bridge (DNAT): still there
    veths = [host_veth(pid_of(n)) for n in (a, b)]
    assert [Path(f"/sys/class/net/{v}/brport/isolated").read_text().strip() for v in veths] == ["1", "1"]

    # a reset flag is found and set again by reload
    Path(f"/sys/class/net/{veths[1]}/brport/isolated").write_text("0")
    assert _ping(a, _ip(b))
    p = w.cnirun("network", "reload", net)
    assert p.returncode == 0 and "repaired: isolation: bridge port flag" in p.stdout, p.stdout
    assert not _ping(a, _ip(b))

    subprocess.run(["docker", "rm", "-f", a, b], capture_output=True)
    w.assert_clean(within=15)
    assert w.cnirun("network", "rm", net).returncode == 0


@needs_docker
def test_isolate_same_bridge_between_networks(world: World) -> None:
    """--isolate none: two networks route to each other; same-bridge: the firewall plugin drops it. The
    networks' removal takes the plugin's per-bridge rules with it."""
    w = world
    bridges: list[str] = []
    for mode, reachable in (("none", True), ("same-bridge", False)):
        n1, n2 = f"t194-{w.n}-{mode}-1", f"t194-{w.n}-{mode}-2"
        bridges += [_create(w, n, "--isolate", mode)["bridge"] for n in (n1, n2)]
        c1, c2 = f"t194-{w.n}-{mode}-c1", f"t194-{w.n}-{mode}-c2"
        for c, n in ((c1, n1), (c2, n2)):
            p = w.cnirun("run", "-d", "--mode", "sandbox", "--name", c, "--network", n, "busybox", "sleep", "600")
            assert p.returncode == 0, p.stderr
        assert _ping(c2, _ip(c1)) is reachable, mode
        assert _ping(c1, _ip(c2)) is reachable, mode
        subprocess.run(["docker", "rm", "-f", c1, c2], capture_output=True)
        w.assert_clean(within=15)
        for n in (n1, n2):
            p = w.cnirun("network", "rm", n)
            assert p.returncode == 0, p.stderr
    rules = subprocess.run(["iptables-save"], capture_output=True, text=True).stdout
    assert not [b for b in bridges if b in rules]


def test_bad_isolation_input(world: World) -> None:
    w = world
    for opts, expect in ((["--isolate", "bogus"], "expected same-bridge or none"),
                         (["-d", "macvlan", "--isolate", "same-bridge"], "bridge network"),
                         (["--opt", "com.docker.network.bridge.enable_icc=maybe"], "enable_icc"),
                         (["-d", "macvlan", "--opt", "com.docker.network.bridge.enable_icc=false"], "macvlan")):
        p = w.cnirun("network", "create", f"t194-{w.n}-bad", *opts)
        assert p.returncode == 1 and p.stderr.count("\n") == 1 and expect in p.stderr, p.stderr
        assert not (Path(w.env["NETCONFPATH"]) / f"t194-{w.n}-bad.conflist").exists()
