"""CNI's own README walkthrough, with cnirun in place of upstream's scripts.

The two files are the ones CNI's README has users write to /etc/cni/net.d
(here: a private NETCONFPATH): 10-mynet.conf (cniVersion 0.2.0, bridge cni0,
host-local 10.22.0.0/16, data in host-local's default /var/lib/cni/networks/
NAME) and 99-loopback.conf, which has no "name". Upstream then runs
`priv-net-run.sh ifconfig` and `docker-run.sh --rm busybox:latest ifconfig`,
which attach every network of the directory in order: `--net all`. MYNET is
the file as upstream shows it; each test writes it with its World's network
name, bridge and /24 in place of mynet, cni0 and 10.22.0.0/16, so tests in
parallel workers never share a bridge, a subnet or host-local's directory.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Iterator

import pytest

from _wait import wait_for
from conftest import HAVE_DOCKER, World, needs_root

pytestmark = [needs_root]

MYNET = """{
	"cniVersion": "0.2.0",
	"name": "mynet",
	"type": "bridge",
	"bridge": "cni0",
	"isGateway": true,
	"ipMasq": true,
	"ipam": {
		"type": "host-local",
		"subnet": "10.22.0.0/16",
		"routes": [
			{ "dst": "0.0.0.0/0" }
		]
	}
}
"""
LOOPBACK = '{"cniVersion": "0.2.0", "type": "loopback"}\n'
IPAM_ROOT = Path("/var/lib/cni/networks")  # host-local's default dataDir


def mynet_of(w: World) -> str:
    """MYNET with the World's network name, bridge and subnet in place of mynet, cni0 and 10.22.0.0/16."""
    text = MYNET
    for upstream, ours in (("mynet", w.net), ("cni0", w.bridge), ("10.22.0.0/16", w.subnet)):
        assert text.count(f'"{upstream}"') == 1, upstream
        text = text.replace(f'"{upstream}"', f'"{ours}"')
    return text


@pytest.fixture
def walkthrough(docker_world: World) -> Iterator[World]:
    ipam_dir = IPAM_ROOT / docker_world.net
    netconf = Path(docker_world.env["NETCONFPATH"])
    for f in netconf.iterdir():
        f.unlink()
    (netconf / "10-mynet.conf").write_text(mynet_of(docker_world))
    (netconf / "99-loopback.conf").write_text(LOOPBACK)
    docker_world.env.pop("CNIRUN_DEFAULT_NETWORK")
    try:
        yield docker_world

        def reserved() -> list[str]:
            return [p.name for p in ipam_dir.iterdir() if p.name[0].isdigit()] if ipam_dir.exists() else []

        # a foreground run's DEL may finish just after cnirun returned (as the hook's poststop)
        assert wait_for(lambda: not reserved(), 15), f"host-local reservations left: {reserved()}"
    finally:
        shutil.rmtree(ipam_dir, ignore_errors=True)


def _check_ifconfig(out: str, w: World) -> None:
    prefix = w.subnet.rsplit(".", 1)[0] + "."
    eth0, _, rest = out.partition("\nlo")
    assert eth0.startswith("eth0") and prefix in eth0, out
    assert "127.0.0.1" in rest and "UP" in rest, out


def _net(w: World, net: str) -> str:
    """The name a test's `--net` gives: `all`, or this World's mynet."""
    return w.net if net == "mynet" else net


@pytest.mark.parametrize("net", ["all", "mynet"])
def test_exec_like_priv_net_run(walkthrough: World, net: str) -> None:
    r = walkthrough.cnirun("exec", "--net", _net(walkthrough, net), "--", "ifconfig")
    assert r.returncode == 0, r.stderr
    _check_ifconfig(r.stdout, walkthrough)


@pytest.mark.skipif(not HAVE_DOCKER, reason="dockerd with a busybox image not available")
@pytest.mark.parametrize("net", ["all", "mynet"])
def test_run_like_docker_run_sh(walkthrough: World, net: str) -> None:
    r = walkthrough.cnirun("--net", _net(walkthrough, net), "--rm", "busybox:latest", "ifconfig")
    assert r.returncode == 0, r.stderr
    _check_ifconfig(r.stdout, walkthrough)


def test_all_with_another_name_is_refused(walkthrough: World) -> None:
    r = walkthrough.cnirun("exec", "--net", "all", "--net", walkthrough.net, "--", "true")
    assert r.returncode != 0 and r.stderr.count("\n") == 1 and "--net all" in r.stderr, r.stderr
