"""Interoperability with a real libcni runtime: Podman 4.3 with its CNI backend.

Podman (CNI backend) runs libcni with libcni's default cache dir, /var/lib/cni
(it has no option to move it), so these tests share that directory and touch
only the cache files of their own containers. Podman itself is isolated:
its own --root/--runroot under tmp_path, --cni-config-dir holding the test's
conflist, the busybox image copied in from the default store.

(a) podman ADDs; cnirun DELs from podman's cache entry, with an empty
    NETCONFPATH (so the cached config is the only one it can use).
(b) cnirun ADDs (same container, netns, ifname); podman tears down from
    cnirun's cache entry - with the conflist on disk changed so that a
    teardown from the file would miss the host-local reservation.
(c) a cache file written by cnirun and one written by libcni for the same
    network have the same structure (keys, order, types).

Subnets 10.121.20.0/24 .. 10.121.22.0/24, bridges cnt2pod<x>.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Iterator

import pytest

from conftest import CNIRUN_BIN
from _core_fixtures import (  # noqa: F401  (fixture)
    CoreEnv,
    bridge_chain,
    bridge_members,
    core,
    delete_bridge,
    host_local_reservations,
    iptables_rules_naming,
    needs_real_plugins,
    needs_root,
)

LIBCNI_CACHE = Path("/var/lib/cni")

pytestmark = [
    needs_root,
    needs_real_plugins,
    pytest.mark.podman,
    pytest.mark.skipif(shutil.which("podman") is None, reason="podman not installed"),
]


class Podman:
    """podman with the CNI backend and a private store."""

    def __init__(self, store: Path, confdir: Path) -> None:
        self.base = ["podman", "--network-backend", "cni", "--cni-config-dir", str(confdir),
                     "--root", str(store / "root"), "--runroot", str(store / "run")]
        self.names: list[str] = []

    def __call__(self, *args: str, check: bool = True) -> str:
        out = subprocess.run([*self.base, *args], capture_output=True, text=True, timeout=180)
        if check and out.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)}: {out.stderr}")
        return out.stdout.strip()

    def run(self, name: str, network: str) -> dict[str, Any]:
        self.names.append(name)
        self("run", "-d", "--name", name, "--network", network, "busybox:latest", "sleep", "600")
        return json.loads(self("inspect", name))[0]


@pytest.fixture(scope="module")
def podman_store() -> Iterator[Path]:
    """A private podman store holding busybox (podman wants a runroot under 50 characters)."""
    if subprocess.run(["podman", "image", "exists", "busybox:latest"], capture_output=True).returncode != 0:
        pytest.skip("busybox:latest is not in podman's store (scripts/setup.sh image)")
    store = Path(tempfile.mkdtemp(prefix="t2pod-", dir="/tmp"))
    p = Podman(store, store)
    archive = store / "busybox.tar"
    subprocess.run(["podman", "save", "-o", str(archive), "busybox:latest"], check=True, capture_output=True)
    p("load", "-i", str(archive))
    archive.unlink()
    yield store
    p("rm", "-a", "-f", "-t", "0", check=False)
    p("rmi", "-a", "-f", check=False)
    subprocess.run(["umount", "-R", str(store / "root" / "overlay")], capture_output=True)
    shutil.rmtree(store, ignore_errors=True)


@pytest.fixture
def podman(core: CoreEnv, podman_store: Path) -> Iterator[Podman]:
    confdir = core.root / "podman-net.d"
    confdir.mkdir()
    p = Podman(podman_store, confdir)
    yield p
    for name in p.names:
        p("rm", "-f", "-t", "0", name, check=False)


def _network(core: CoreEnv, podman: Podman, name: str, bridge: str, index: int) -> Path:
    conf = {"cniVersion": "0.4.0", "name": name,
            "plugins": bridge_chain(bridge, f"10.121.{index}.0/24", f"10.121.{index}.1", core.ipam)}
    path = Path(podman.base[podman.base.index("--cni-config-dir") + 1]) / f"{name}.conflist"
    path.write_text(json.dumps(conf))
    return path


def _cache_file(network: str, cid: str) -> Path:
    return LIBCNI_CACHE / "results" / f"{network}-{cid}-eth0"


def _cnirun(args: list[str], core: CoreEnv, **env: str) -> subprocess.CompletedProcess[str]:
    e = core.env(real=True, CNI_CACHE_DIR=str(LIBCNI_CACHE), **env)
    return subprocess.run([CNIRUN_BIN, *args], env=e, capture_output=True, text=True, timeout=120)


def _assert_gone(core: CoreEnv, network: str, bridge: str, cid: str) -> None:
    assert not _cache_file(network, cid).exists()
    assert bridge_members(bridge) == []
    assert host_local_reservations(core.ipam, network) == []
    assert iptables_rules_naming(cid) == []


def test_cnirun_deletes_what_podman_added(core: CoreEnv, podman: Podman) -> None:
    try:
        _network(core, podman, "t2-pod-a", "cnt2poda", 20)
        info = podman.run("t2-pod-a1", "t2-pod-a")
        cid, pid = info["Id"], info["State"]["Pid"]
        cache = _cache_file("t2-pod-a", cid)
        assert cache.exists(), "podman (libcni) wrote no cache entry"
        assert json.loads(cache.read_text())["kind"] == "cniCacheV1"
        assert len(host_local_reservations(core.ipam, "t2-pod-a")) == 1
        assert len(bridge_members("cnt2poda")) == 1
        # NETCONFPATH is empty: only the cached config can tell cnirun what to run
        empty = core.root / "empty.d"
        empty.mkdir()
        proc = _cnirun(["cni", "del", "t2-pod-a", f"/proc/{pid}/ns/net"], core, CNI_CONTAINERID=cid,
                       NETCONFPATH=str(empty))
        assert proc.returncode == 0, proc.stderr
        _assert_gone(core, "t2-pod-a", "cnt2poda", cid)
        # podman's own teardown afterwards is a harmless second DEL
        podman("rm", "-f", "-t", "0", "t2-pod-a1")
        _assert_gone(core, "t2-pod-a", "cnt2poda", cid)
    finally:
        delete_bridge("cnt2poda")


def test_podman_deletes_what_cnirun_added(core: CoreEnv, podman: Podman) -> None:
    try:
        conflist = _network(core, podman, "t2-pod-b", "cnt2podb", 21)
        info = podman.run("t2-pod-b1", "t2-pod-b")
        cid, pid = info["Id"], info["State"]["Pid"]
        netns = f"/proc/{pid}/ns/net"
        shutil.copy(conflist, core.netconf / conflist.name)
        # take podman's attachment down with cnirun, then put it back with cnirun
        assert _cnirun(["cni", "del", "t2-pod-b", netns], core, CNI_CONTAINERID=cid).returncode == 0
        assert host_local_reservations(core.ipam, "t2-pod-b") == []
        add = _cnirun(["cni", "add", "t2-pod-b", netns], core, CNI_CONTAINERID=cid,
                      CNI_ARGS="IgnoreUnknown=1;K8S_POD_NAME=t2-pod-b1")
        assert add.returncode == 0, add.stderr
        assert len(host_local_reservations(core.ipam, "t2-pod-b")) == 1
        written = json.loads(_cache_file("t2-pod-b", cid).read_text())
        assert written["config"] and written["result"]["cniVersion"] == "0.4.0"
        # Change the file podman would fall back to: a teardown from the file would
        # look for the reservation in another dataDir and leave ours behind.
        conf = json.loads(conflist.read_text())
        conf["plugins"][0]["ipam"]["dataDir"] = str(core.root / "elsewhere")
        conflist.write_text(json.dumps(conf))
        podman("rm", "-f", "-t", "0", "t2-pod-b1")
        _assert_gone(core, "t2-pod-b", "cnt2podb", cid)
        assert not (core.root / "elsewhere").exists()
    finally:
        delete_bridge("cnt2podb")


def test_cache_files_have_the_same_structure(core: CoreEnv, podman: Podman) -> None:
    try:
        conflist = _network(core, podman, "t2-pod-c", "cnt2podc", 22)
        info = podman.run("t2-pod-c1", "t2-pod-c")
        cid, pid = info["Id"], info["State"]["Pid"]
        theirs_text = _cache_file("t2-pod-c", cid).read_text()
        theirs = json.loads(theirs_text)
        shutil.copy(conflist, core.netconf / conflist.name)
        netns = f"/proc/{pid}/ns/net"
        assert _cnirun(["cni", "del", "t2-pod-c", netns], core, CNI_CONTAINERID=cid).returncode == 0
        args = ";".join(f"{k}={v}" for k, v in theirs["cniArgs"])
        assert _cnirun(["cni", "add", "t2-pod-c", netns], core, CNI_CONTAINERID=cid, CNI_ARGS=args,
                       CAP_ARGS=json.dumps(theirs["capabilityArgs"])).returncode == 0
        ours_text = _cache_file("t2-pod-c", cid).read_text()
        ours = json.loads(ours_text)
        # podman 4.3's libcni does not record netns yet; newer libcni does, and cnirun does
        assert [k for k in ours if k != "netns"] == list(theirs)
        for key in ("kind", "containerId", "config", "ifName", "networkName", "cniArgs", "capabilityArgs"):
            assert ours[key] == theirs[key], key
        assert list(ours["result"]) == list(theirs["result"])  # sorted, as Go marshals a map
        assert [list(i) for i in ours["result"]["ips"]] == [list(i) for i in theirs["result"]["ips"]]
        assert ours["result"]["routes"] == theirs["result"]["routes"]
        assert ours_text.startswith('{"kind":"cniCacheV1","containerId":') and ": " not in ours_text[:40]
        podman("rm", "-f", "-t", "0", "t2-pod-c1")
        _assert_gone(core, "t2-pod-c", "cnt2podc", cid)
    finally:
        delete_bridge("cnt2podc")
