"""cnirun.network.network_options: the network an ADD sees when it pins an address outside the ranges."""
from __future__ import annotations

import json
import subprocess

import pytest

from conftest import Net, World, docker_world  # noqa: F401  (fixture)

from cnirun.cni.config import conflist_from_bytes
from cnirun.network.network_options import pinned_ranges


def _net(ranges: list[list[dict[str, str]]]) -> object:
    conf = {"cniVersion": "1.0.0", "name": "nno", "plugins": [
        {"type": "bridge", "bridge": "nno0", "ipam": {"type": "host-local", "ranges": ranges}},
        {"type": "portmap", "capabilities": {"portMappings": True}}]}
    return conflist_from_bytes(json.dumps(conf).encode(), "nno.conflist")


V4 = {"subnet": "10.241.250.0/24", "gateway": "10.241.250.1"}
V6 = {"subnet": "fd00:241::/64"}


def test_an_address_outside_the_ranges_gets_a_range_of_its_own_for_its_add() -> None:
    """A pinned address in the subnet but outside ip_range (rangeStart..rangeEnd): that ADD's range set is
    the address alone (subnet and gateway kept); the other family's set and the other plugins stay."""
    net = _net([[dict(V4, rangeStart="10.241.250.128", rangeEnd="10.241.250.254")], [V6]])
    narrowed = pinned_ranges(net, ["10.241.250.2"])  # type: ignore[arg-type]
    assert narrowed is not None
    ipam = narrowed.raw["plugins"][0]["ipam"]
    assert ipam["ranges"] == [[dict(V4, rangeStart="10.241.250.2", rangeEnd="10.241.250.2")], [V6]]
    assert narrowed.name == "nno" and [pl.type for pl in narrowed.plugins] == ["bridge", "portmap"]
    assert net.raw["plugins"][0]["ipam"]["ranges"][0][0]["rangeStart"] == "10.241.250.128"  # the file's: untouched


def test_an_address_the_ranges_hold_or_outside_every_subnet_changes_nothing() -> None:
    net = _net([[dict(V4, rangeStart="10.241.250.128", rangeEnd="10.241.250.254")], [V6]])
    assert pinned_ranges(net, ["10.241.250.130", "fd00:241::5"]) is None  # type: ignore[arg-type]
    assert pinned_ranges(net, ["10.9.9.9"]) is None  # type: ignore[arg-type]  (refused earlier, with its own line)
    # the subnet's network and broadcast addresses are never a container's: host-local refuses them as before
    assert pinned_ranges(net, ["10.241.250.0"]) is None  # type: ignore[arg-type]
    assert pinned_ranges(net, ["10.241.250.255"]) is None  # type: ignore[arg-type]
    whole = _net([[V4]])  # no rangeStart/End: the whole subnet, as host-local reads it
    assert pinned_ranges(whole, ["10.241.250.2"]) is None  # type: ignore[arg-type]
    # aux_addresses split a range in two: an address in either part is held by the ranges, the hole
    # itself is reserved (host-local refuses it, as Docker does), and outside both a range of its own
    split = _net([[dict(V4, rangeStart="10.241.250.128", rangeEnd="10.241.250.139"),
                   dict(V4, rangeStart="10.241.250.141", rangeEnd="10.241.250.254")]])
    assert pinned_ranges(split, ["10.241.250.142"]) is None  # type: ignore[arg-type]
    assert pinned_ranges(split, ["10.241.250.140"]) is None  # type: ignore[arg-type]
    narrowed = pinned_ranges(split, ["10.241.250.3"])  # type: ignore[arg-type]
    assert narrowed is not None and narrowed.raw["plugins"][0]["ipam"]["ranges"][0] == [
        dict(V4, rangeStart="10.241.250.3", rangeEnd="10.241.250.3")]


@pytest.mark.docker
def test_run_pins_an_address_outside_the_ip_range_and_later_ones_come_from_it(docker_world: World) -> None:
    """`network create --ip-range`: `run --ip` outside the range (inside the subnet) is attached with it,
    as Docker allows; containers without --ip still get addresses from the range; nothing is left."""
    w = docker_world
    from cnirun.netstore.networks import auto_bridge_name

    net = "nno-range"
    w.watch(Net(net, auto_bridge_name(net), "10.239.77.0/24", created=True))
    r = w.cnirun("network", "create", net, "--subnet", "10.239.77.0/24", "--ip-range", "10.239.77.128/25")
    assert r.returncode == 0, r.stderr
    pinned = w.cnirun("--rm", "--net", net, "--ip", "10.239.77.5", "busybox", "ip", "-o", "-4", "addr", "show", "eth0")
    assert pinned.returncode == 0 and "10.239.77.5/24" in pinned.stdout, pinned.stderr
    d = w.cnirun("-d", "--name", "nno-pinned", "--net", net, "--ip", "10.239.77.6", "busybox", "sleep", "60")
    assert d.returncode == 0, d.stderr
    try:
        auto = w.cnirun("--rm", "--net", net, "busybox", "ip", "-o", "-4", "addr", "show", "eth0")
        assert auto.returncode == 0, auto.stderr
        addr = auto.stdout.split()[3].split("/")[0]
        assert 128 <= int(addr.rsplit(".", 1)[1]) <= 254, auto.stdout  # from the range, after a pinned one
    finally:
        subprocess.run(["docker", "rm", "-f", "nno-pinned"], capture_output=True)
    w.assert_clean(within=15)
