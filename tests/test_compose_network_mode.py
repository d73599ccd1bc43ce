"""compose's network_mode (host, none, service:X, container:X) on Docker and on Podman (issue 17).

Such a service gets the engine's own network and no CNI attachment (said
once by `up`); service:X shares X's network namespace, hostname, /etc/hosts
and resolv.conf, so it reaches X on localhost and X's peers by name.

Address plan: CNIRUN_SUBNET_POOL 10.236.32.0/20 (networks get 10.236.(32+N).0/24),
projects (and so networks) c17pxxxxxx, bridges cr17pxxxxxx. Each test owns its
NETCONFPATH, cache and IPAM dirs and checks that `down -v` left nothing.
"""
from __future__ import annotations

import os
import secrets
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from conftest import CNIRUN_BIN
from conftest import HAVE_DOCKER, HAVE_PODMAN, needs_plugins, needs_root

from cnirun.netstore import hostnet

REPO = Path(__file__).resolve().parent.parent

pytestmark = [needs_root, needs_plugins]

ENGINES = [
    pytest.param("docker", marks=[pytest.mark.docker, pytest.mark.skipif(not HAVE_DOCKER, reason="no dockerd")]),
    pytest.param("podman", marks=[pytest.mark.podman, pytest.mark.skipif(not HAVE_PODMAN, reason="no podman")]),
]


class Proj:
    def __init__(self, tmp: Path, engine: str) -> None:
        token = secrets.token_hex(3)
        self.name, self.bridge, self.engine = "c17p" + token, "cr17p" + token, engine
        self.dir = tmp
        self.file = tmp / "compose.yaml"
        self.env = dict(os.environ, NETCONFPATH=str(tmp / "net.d"), CNI_CACHE_DIR=str(tmp / "cache"),
                        CNIRUN_SUBNET_POOL="10.236.32.0/20", CNIRUN_IPAM_DATA_DIR=str(tmp / "ipam"),
                        CNI_PATH="/usr/lib/cni", CNIRUN_ENGINE=engine)
        self.env.pop("COMPOSE_PROFILES", None)

    def cnirun(self, *args: str, ok: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        p = subprocess.run([CNIRUN_BIN, "compose", "-f", str(self.file), "-p", self.name, *args], capture_output=True,
                           text=True, env=self.env, timeout=timeout, cwd=self.dir)
        if ok:
            assert p.returncode == 0, p.stderr
        return p

    def engine_cmd(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([self.engine, *args], capture_output=True, text=True, timeout=60)

    def sh(self, service: str, cmd: str) -> subprocess.CompletedProcess[str]:
        return self.engine_cmd("exec", f"{self.name}-{service}-1", "sh", "-c", cmd)

    def containers(self) -> list[str]:
        return self.engine_cmd("ps", "-a", "-q", "--filter", f"label=com.docker.compose.project={self.name}") \
            .stdout.split()

    def attachments(self) -> list[str]:
        results = self.dir / "cache" / "results"
        return sorted(p.name for p in results.iterdir()) if results.exists() else []

    def assert_clean(self) -> None:
        assert self.containers() == []
        assert self.attachments() == []
        netconf = self.dir / "net.d"
        assert not netconf.exists() or list(netconf.iterdir()) == []
        assert not hostnet.link_exists(self.bridge)


@pytest.fixture(params=ENGINES)
def proj(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Proj]:
    p = Proj(tmp_path, request.param)
    yield p
    if p.containers() or ((tmp_path / "net.d").exists() and list((tmp_path / "net.d").iterdir())):
        p.cnirun("down", "-v", "--remove-orphans", ok=False)
    for cid in p.containers():  # an outside container:X target, if the test failed before removing it
        p.engine_cmd("rm", "-f", cid)


def _ipv4(out: str) -> list[str]:
    """The IPv4 addresses of `ip -4 -o addr` output, loopback left out."""
    return sorted(line.split()[3] for line in out.splitlines() if " lo " not in line and "inet " in line)


def test_network_mode_host_none_service_and_container(proj: Proj) -> None:
    """host: the host's interfaces; none: loopback only; service:app: app's eth0, hostname, hosts and
    resolver (app on localhost, app's peer by name); container:X an outside container's namespace.
    Only app and peer are attached; `up` says so once per service; --force-recreate of app brings
    its joiner back in the new namespace; down -v leaves nothing."""
    outside = f"{proj.name}-outside"
    made = proj.engine_cmd("run", "-d", "--init", "--name", outside, "--network", "none", "--label",
                           f"com.docker.compose.project={proj.name}-x", "busybox", "sleep", "3600")
    assert made.returncode == 0, made.stderr
    try:
        proj.file.write_text(f"""
services:
  app:
    image: busybox
    command: httpd -f -p 8080 -h /
    init: true
  peer:
    image: busybox
    command: sleep 3600
    init: true
  side:
    image: busybox
    command: sleep 3600
    init: true
    network_mode: service:app
    environment: {{WHO: side}}
  hostnet:
    image: busybox
    command: sleep 3600
    init: true
    network_mode: host
  isolated:
    image: busybox
    command: sleep 3600
    init: true
    network_mode: none
  borrowed:
    image: busybox
    command: sleep 3600
    init: true
    network_mode: container:{outside}
networks:
  default:
    driver_opts: {{com.docker.network.bridge.name: {proj.bridge}}}
""")
        up = proj.cnirun("up", "-d")
        for svc, mode in (("side", "service:app"), ("hostnet", "host"), ("isolated", "none"),
                          ("borrowed", f"container:{outside}")):
            line = f" Container {proj.name}-{svc}-1  network_mode {mode}: no CNI networks"
            assert up.stderr.count(line) == 1, up.stderr
        assert up.stderr.count("no CNI networks") == 4
        assert len(proj.attachments()) == 2  # app and peer only

        app_ip = _ipv4(proj.sh("app", "ip -4 -o addr").stdout)
        assert len(app_ip) == 1 and app_ip[0].startswith("10.236."), app_ip
        assert _ipv4(proj.sh("side", "ip -4 -o addr").stdout) == app_ip
        assert proj.sh("side", "hostname").stdout.strip() == "app"
        assert proj.sh("side", "echo $WHO").stdout.strip() == "side"
        assert "404" in proj.sh("side", "wget -qO- http://127.0.0.1:8080/nothing 2>&1").stdout
        peer_ip = _ipv4(proj.sh("peer", "ip -4 -o addr").stdout)[0].split("/")[0]
        look = proj.sh("side", "nslookup peer")
        assert f"Address: {peer_ip}" in look.stdout, look.stdout + look.stderr

        assert _ipv4(proj.sh("isolated", "ip -4 -o addr").stdout) == []
        host_ips = _ipv4(subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True).stdout)
        in_host = _ipv4(proj.sh("hostnet", "ip -4 -o addr").stdout)
        assert set(in_host) & set(host_ips) and any(ip.startswith("10.236.") for ip in in_host)
        assert _ipv4(proj.sh("borrowed", "ip -4 -o addr").stdout) == []
        outside_ns = proj.engine_cmd("inspect", "-f", "{{.State.Pid}}", outside).stdout.strip()
        borrowed_ns = proj.engine_cmd("inspect", "-f", "{{.State.Pid}}", f"{proj.name}-borrowed-1").stdout.strip()
        assert os.readlink(f"/proc/{outside_ns}/ns/net") == os.readlink(f"/proc/{borrowed_ns}/ns/net")

        # app replaced: its joiner goes first and comes back in app's new namespace.
        old_side = proj.engine_cmd("inspect", "-f", "{{.Id}}", f"{proj.name}-side-1").stdout.strip()
        again = proj.cnirun("up", "-d", "--force-recreate", "--no-deps", "app", "side")
        assert again.stderr.index(f"{proj.name}-side-1  Removed") < again.stderr.index(f"{proj.name}-app-1  Removed")
        assert proj.engine_cmd("inspect", "-f", "{{.Id}}", f"{proj.name}-side-1").stdout.strip() != old_side
        new_app = _ipv4(proj.sh("app", "ip -4 -o addr").stdout)
        assert _ipv4(proj.sh("side", "ip -4 -o addr").stdout) == new_app
        assert "404" in proj.sh("side", "wget -qO- http://127.0.0.1:8080/nothing 2>&1").stdout

        down = proj.cnirun("down", "-v")
        assert down.stderr.index(f"{proj.name}-side-1  Removed") < down.stderr.index(f"{proj.name}-app-1  Removed")
        assert "Traceback" not in down.stderr
        proj.assert_clean()
    finally:
        proj.engine_cmd("rm", "-f", outside)


def test_network_mode_of_a_missing_container_is_one_line_and_undone(proj: Proj) -> None:
    """container:X where X does not exist: one `cnirun:` line naming the service, exit 1, and nothing of the
    project is left (the attached service before it, its network, a created-but-unstarted container)."""
    proj.file.write_text(f"""
services:
  a:
    image: busybox
    command: sleep 3600
    init: true
  b:
    image: busybox
    command: sleep 3600
    network_mode: container:{proj.name}-nosuch
networks:
  default:
    driver_opts: {{com.docker.network.bridge.name: {proj.bridge}}}
""")
    r = proj.cnirun("up", "-d", ok=False)
    last = r.stderr.strip().splitlines()[-1]
    assert r.returncode == 1 and last.startswith(f"cnirun: service b: network_mode container:{proj.name}-nosuch: ")
    assert "Traceback" not in r.stderr
    proj.assert_clean()
