"""The flannel plugin under `cnirun run`, the OCI hook and Podman: found without an install step.

No agent here (tests/test_overlay.py runs whole simulated hosts): the test
writes the subnet.env an agent would, and checks that a container on a
`{"type": "flannel"}` network gets an address in this host's subnet through
the delegated bridge + host-local chain, and that nothing is left after.
The plugin lives in cnirun/plugins/bin, which CNI_PATH does not name here:
invoke searches it last. Subnet 10.172.250.0/24 (overlay 10.172.0.0/16),
bridge cno15run.
"""
from __future__ import annotations

import ipaddress
import json
import subprocess

import pytest

from conftest import HAVE_PODMAN, World, docker_runtime_installed, first_address, needs_docker, needs_root

pytestmark = [needs_root, needs_docker]
SUBNET = "10.172.250.0/24"


def flannel_network(w: World) -> str:
    (w.tmp / "subnet.env").write_text(
        "FLANNEL_NETWORK=10.172.0.0/16\nFLANNEL_SUBNET=10.172.250.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n")
    name = f"t15-run{w.n}"
    conf = {
        "cniVersion": "1.0.0", "name": name,
        "plugins": [{
            "type": "flannel", "subnetFile": str(w.tmp / "subnet.env"), "dataDir": str(w.tmp / "flannel"),
            "ipam": {"dataDir": str(w.data_dir)}, "delegate": {"bridge": "cno15run"},
        }],
    }
    (w.tmp / "net.d" / f"{name}.conflist").write_text(json.dumps(conf))
    assert "/usr/lib/cni" == w.env["CNI_PATH"]  # cnirun's own plugin dir is not named
    return name


def _clean(w: World, name: str) -> None:
    reservations = list((w.data_dir / name).glob("10.*")) if (w.data_dir / name).is_dir() else []
    assert reservations == [], reservations
    rules = subprocess.run(["iptables-save"], capture_output=True, text=True).stdout
    assert "10.172.250." not in rules
    assert not list((w.tmp / "flannel").glob("*")), "the saved delegate configs go with DEL"


@pytest.fixture
def net(docker_world: World) -> str:
    name = flannel_network(docker_world)
    yield name
    subprocess.run(["ip", "link", "del", "cno15run"], capture_output=True)


def _addr_in_subnet(out: str) -> None:
    assert ipaddress.ip_interface(first_address(out)).ip in ipaddress.ip_network(SUBNET), out


def test_cnirun_run_on_a_flannel_network(docker_world: World, net: str) -> None:
    r = docker_world.cnirun("--net", net, "--rm", "busybox", "ip", "-o", "-4", "addr", "show", "eth0")
    assert r.returncode == 0, r.stderr
    _addr_in_subnet(r.stdout)
    docker_world.assert_clean(within=5.0)
    _clean(docker_world, net)


def test_hook_mode_on_a_flannel_network(docker_world: World, net: str) -> None:
    with docker_runtime_installed(docker_world, f"{docker_world.bridge}-fl-"):
        r = docker_world.cnirun("--mode", "hook", "--net", net, "--rm", "busybox", "ip", "-o", "-4", "addr", "show",
                                "eth0")
        assert r.returncode == 0, r.stderr
        _addr_in_subnet(r.stdout)
        docker_world.assert_clean(within=10.0)
    _clean(docker_world, net)


@pytest.mark.skipif(not HAVE_PODMAN, reason="podman with a busybox image not available")
def test_podman_on_a_flannel_network(docker_world: World, net: str) -> None:
    r = docker_world.cnirun("--engine", "podman", "--net", net, "--rm", "busybox", "ip", "-o", "-4", "addr", "show",
                            "eth0")
    assert r.returncode == 0, r.stderr
    _addr_in_subnet(r.stdout)
    docker_world.assert_clean(within=5.0)
    _clean(docker_world, net)
