"""CNI's own README walkthrough, verbatim, with cnirun in place of upstream's scripts.

The two files are the ones CNI's README has users write to /etc/cni/net.d
(here: a private NETCONFPATH): 10-mynet.conf (cniVersion 0.2.0, bridge cni0,
host-local 10.22.0.0/16, data in /var/lib/cni/networks/mynet as written) and
99-loopback.conf, which has no "name". Upstream then runs
`priv-net-run.sh ifconfig` and `docker-run.sh --rm busybox:latest ifconfig`,
which attach every network of the directory in order: `--net all`.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Iterator

import pytest

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
IPAM_DIR = Path("/var/lib/cni/networks/mynet")


def _route_conflict() -> bool:
    routes = subprocess.run(["ip", "-4", "route"], capture_output=True, text=True).stdout
    return any(line.startswith("10.22.") for line in routes.splitlines())


@pytest.fixture
def walkthrough(docker_world: World) -> Iterator[World]:
    if os.path.exists("/sys/class/net/cni0") or _route_conflict():
        pytest.skip("cni0 or a 10.22.0.0/16 route already exists on this host")
    ipam_existed = IPAM_DIR.exists()
    netconf = Path(docker_world.env["NETCONFPATH"])
    for f in netconf.iterdir():
        f.unlink()
    (netconf / "10-mynet.conf").write_text(MYNET)
    (netconf / "99-loopback.conf").write_text(LOOPBACK)
    docker_world.env.pop("CNIRUN_DEFAULT_NETWORK")
    try:
        yield docker_world

        def reserved() -> list[str]:
            return [p.name for p in IPAM_DIR.iterdir() if p.name[0].isdigit()] if IPAM_DIR.exists() else []

        # a foreground run's DEL may finish just after cnirun returned (as the hook's poststop)
        deadline = time.monotonic() + 15
        while reserved() and time.monotonic() < deadline:
            time.sleep(0.1)
        left = reserved()
        assert left == [], f"host-local reservations left: {left}"
        rules = subprocess.run(["iptables-save"], capture_output=True, text=True).stdout
        assert "10.22." not in rules and 'name: \\"mynet\\"' not in rules
    finally:
        subprocess.run(["ip", "link", "del", "cni0"], capture_output=True)
        if not ipam_existed:
            shutil.rmtree(IPAM_DIR, ignore_errors=True)


def _check_ifconfig(out: str) -> None:
    eth0, _, rest = out.partition("\nlo")
    assert eth0.startswith("eth0") and "10.22." in eth0, out
    assert "127.0.0.1" in rest and "UP" in rest, out
    addr = next(w for w in eth0.replace("addr:", " ").split() if w.startswith("10.22."))
    assert addr.startswith("10.22.")


@pytest.mark.parametrize("net", ["all", "mynet"])
def test_exec_like_priv_net_run(walkthrough: World, net: str) -> None:
    r = walkthrough.cnirun("exec", "--net", net, "--", "ifconfig")
    assert r.returncode == 0, r.stderr
    _check_ifconfig(r.stdout)


@pytest.mark.skipif(not HAVE_DOCKER, reason="dockerd with a busybox image not available")
@pytest.mark.parametrize("net", ["all", "mynet"])
def test_run_like_docker_run_sh(walkthrough: World, net: str) -> None:
    r = walkthrough.cnirun("--net", net, "--rm", "busybox:latest", "ifconfig")
    assert r.returncode == 0, r.stderr
    _check_ifconfig(r.stdout)


def test_all_with_another_name_is_refused(walkthrough: World) -> None:
    r = walkthrough.cnirun("exec", "--net", "all", "--net", "mynet", "--", "true")
    assert r.returncode != 0 and r.stderr.count("\n") == 1 and "--net all" in r.stderr, r.stderr
