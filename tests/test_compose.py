"""`cnirun compose up/down` with real Docker containers and real plugins (issue 5).

Address plan unique to this file: 10.153.0.0/16 (CNIRUN_SUBNET_POOL and the
static subnets below). Project names are random (t153xxxxxx), so networks,
bridges (cni-<hash of the name>) and containers are this test's own; every
test asserts that `down` left nothing behind.
"""
from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import time
from pathlib import Path
from typing import Iterator

import pytest

from conftest import needs_docker, needs_plugins, needs_root

from cnirun.netstore import hostnet, isolation
from cnirun.netstore.networks import auto_bridge_name

REPO = Path(__file__).resolve().parent.parent
CNIRUN = str(REPO / ".venv" / "bin" / "cnirun")


pytestmark = [needs_root, needs_plugins, pytest.mark.docker]


class Proj:
    def __init__(self, tmp: Path) -> None:
        self.name = "t153" + secrets.token_hex(3)
        self.dir = tmp / "proj"
        self.dir.mkdir()
        self.file = self.dir / "compose.yaml"
        self.netconf = tmp / "net.d"
        self.cache = tmp / "cache"
        self.ipam = tmp / "ipam"
        self.env = dict(os.environ, NETCONFPATH=str(self.netconf), CNI_CACHE_DIR=str(self.cache),
                        CNIRUN_SUBNET_POOL="10.153.0.0/16", CNIRUN_IPAM_DATA_DIR=str(self.ipam),
                        CNI_PATH="/usr/lib/cni", CNIRUN_ENGINE="docker")

    def write(self, text: str) -> None:
        self.file.write_text(text)

    def cnirun(self, *args: str, ok: bool = True, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        p = subprocess.run([CNIRUN, "compose", "-f", str(self.file), "-p", self.name, *args],
                           capture_output=True, text=True, env=self.env, timeout=timeout)
        if ok:
            assert p.returncode == 0, p.stderr
        return p

    def sh(self, service: str, cmd: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["docker", "exec", f"{self.name}-{service}-1", "sh", "-c", cmd],
                              capture_output=True, text=True, timeout=30)

    def containers(self) -> list[str]:
        p = subprocess.run(["docker", "ps", "-a", "-q", "--filter", f"label=com.docker.compose.project={self.name}"],
                           capture_output=True, text=True)
        return p.stdout.split()

    def assert_clean(self, keys: list[str]) -> None:
        assert self.containers() == []
        results = self.cache / "results"
        assert not results.exists() or list(results.iterdir()) == []
        assert not self.netconf.exists() or list(self.netconf.iterdir()) == []
        for key in keys:
            net = f"{self.name}_{key}"
            br = auto_bridge_name(net)
            assert not hostnet.link_exists(br), br
            assert isolation.rules_for(br) == []
            assert not (self.ipam / net).exists()
            assert not Path("/var/lib/cni/networks", net).exists()
        p = subprocess.run(["docker", "ps", "-a", "--format", "{{.Labels}}"], capture_output=True, text=True)
        assert self.name not in p.stdout


@pytest.fixture
def proj(tmp_path: Path) -> Iterator[Proj]:
    p = Proj(tmp_path)
    yield p
    if p.containers() or (p.netconf.exists() and list(p.netconf.iterdir())):
        p.cnirun("down", ok=False)


THREE_SERVICES = """
services:
  front:
    image: busybox
    init: true
    command: sleep 600
    networks: [public]
  middle:
    image: busybox
    init: true
    command: ["sleep", "600"]
    hostname: mid
    depends_on: [back]
    networks:
      public:
        aliases: [api]
        ipv4_address: 10.153.201.60
      private:
        ipv4_address: 10.153.200.50
  back:
    image: busybox
    init: true
    entrypoint: ["sh", "-c"]
    command: ["echo $$GREETING; sleep 600"]
    environment:
      GREETING: hello
    networks: [private]
networks:
  public:
    ipam:
      config:
        - subnet: 10.153.201.0/24
  private:
    internal: true
    ipam:
      config:
        - subnet: 10.153.200.0/24
"""


@needs_docker
def test_three_services_two_networks_and_down_leaves_nothing(proj: Proj) -> None:
    proj.write(THREE_SERVICES)
    up = proj.cnirun("up", "-d")
    assert up.stdout == ""
    # depends_on order: back before middle.
    started = [ln.split()[1] for ln in up.stderr.splitlines() if ln.strip().endswith("Started")]
    assert started.index(f"{proj.name}-back-1") < started.index(f"{proj.name}-middle-1")

    # Shared networks: by service name, alias, container name and hostname.
    for target in ("middle", "api", f"{proj.name}-middle-1", "mid"):
        r = proj.sh("front", f"ping -c1 -W2 {target}")
        assert r.returncode == 0, (target, r.stdout, r.stderr)
    r = proj.sh("back", "ping -c1 -W2 middle")
    assert r.returncode == 0 and "10.153.200.50" in r.stdout
    # A static address on each of middle's two networks (eth0 and eth1).
    r = proj.sh("front", "ping -c1 -W2 api")
    assert r.returncode == 0 and "10.153.201.60" in r.stdout
    r = proj.sh("middle", "ip -o -4 addr show")
    assert "10.153.201.60/24" in r.stdout and "10.153.200.50/24" in r.stdout, r.stdout
    r = proj.sh("middle", "ping -c1 -W2 back && ping -c1 -W2 front")
    assert r.returncode == 0, r.stdout + r.stderr
    # Not shared: no name, and no route through the host either.
    r = proj.sh("front", "ping -c1 -W1 back")
    assert r.returncode != 0 and "bad address" in r.stderr
    r = proj.sh("front", "ping -c1 -W1 10.153.200.50")
    assert r.returncode != 0
    back_ip = proj.sh("back", "hostname -i").stdout.strip()
    assert back_ip.startswith("10.153.200.")
    assert proj.sh("front", f"ping -c1 -W1 {back_ip}").returncode != 0

    # Compose v2 names and labels.
    info = json.loads(subprocess.run(["docker", "inspect", f"{proj.name}-back-1"], capture_output=True,
                                     text=True).stdout)[0]
    labels = info["Config"]["Labels"]
    assert labels["com.docker.compose.project"] == proj.name and labels["com.docker.compose.service"] == "back"
    assert labels["com.docker.compose.container-number"] == "1"
    logs = subprocess.run(["docker", "logs", f"{proj.name}-back-1"], capture_output=True, text=True).stdout
    assert logs.strip() == "hello"

    # Networks are the project's: listed with their compose labels.
    ls = json.loads(subprocess.run([CNIRUN, "network", "ls", "--format", "json"], capture_output=True, text=True,
                                   env=proj.env).stdout)
    ours = {r["name"]: r for r in ls if r["name"].startswith(proj.name)}
    assert set(ours) == {f"{proj.name}_public", f"{proj.name}_private"}
    assert ours[f"{proj.name}_private"]["labels"]["com.docker.compose.network"] == "private"
    assert ours[f"{proj.name}_private"]["plugins"] == ["bridge", "firewall", "tuning", "bandwidth"]

    # A second `up -d` keeps what runs.
    again = proj.cnirun("up", "-d")
    assert "Running" in again.stderr and "Created" not in again.stderr

    down = proj.cnirun("down", timeout=120)
    assert "Removed" in down.stderr
    proj.assert_clean(["public", "private"])


@needs_docker
def test_hosts_follow_services_coming_and_going(proj: Proj) -> None:
    # Peers go into hosts files only on networks without DNS (with it, tests/test_dns.py).
    proj.write("""
services:
  one: {image: busybox, init: true, command: sleep 600}
  two: {image: busybox, init: true, command: sleep 600}
networks:
  default:
    x-cni: {dns: false}
""")
    proj.cnirun("up", "-d")
    assert proj.sh("one", "ping -c1 -W2 two").returncode == 0
    subprocess.run(["docker", "stop", "-t", "2", f"{proj.name}-two-1"], capture_output=True, check=True)
    # Re-running up brings `two` back and rewrites both hosts files in place.
    proj.cnirun("up", "-d")
    assert proj.sh("one", "ping -c1 -W2 two").returncode == 0
    # Removed behind compose's back: the watcher tears `two` down, and its freed
    # address leaves `one`'s hosts file (it could soon be another container's).
    two_ip = proj.sh("two", "ip -4 -o addr show eth0").stdout.split()[3].split("/")[0]
    assert two_ip in proj.sh("one", "cat /etc/hosts").stdout
    subprocess.run(["docker", "rm", "-f", f"{proj.name}-two-1"], capture_output=True, check=True)
    deadline = time.monotonic() + 15
    while two_ip in proj.sh("one", "cat /etc/hosts").stdout and time.monotonic() < deadline:
        time.sleep(0.5)
    hosts = proj.sh("one", "cat /etc/hosts").stdout
    assert two_ip not in hosts and "\ttwo" not in hosts, hosts
    proj.cnirun("down")
    proj.assert_clean(["default"])


@needs_docker
def test_foreground_up_streams_logs_and_ctrl_c_tears_down(proj: Proj) -> None:
    proj.write("""
services:
  talker:
    image: busybox
    init: true
    command: sh -c 'echo ready-to-talk; sleep 600'
""")
    p = subprocess.Popen([CNIRUN, "compose", "-f", str(proj.file), "-p", proj.name, "up"], env=proj.env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not proj.containers():
            time.sleep(0.2)
        time.sleep(2.0)
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=90)
    finally:
        if p.poll() is None:
            p.kill()
    assert f"{proj.name}-talker-1  | ready-to-talk" in out
    assert "Gracefully stopping" in err and p.returncode == 0
    proj.assert_clean(["default"])


@needs_docker
def test_failed_service_rolls_back(proj: Proj) -> None:
    proj.write("""
services:
  ok: {image: busybox, init: true, command: sleep 600}
  broken:
    image: t153-no-such-image:never
    depends_on: [ok]
""")
    p = proj.cnirun("up", "-d", ok=False)
    assert p.returncode != 0
    assert "service broken" in p.stderr and "Traceback" not in p.stderr
    proj.assert_clean(["default"])


@pytest.mark.parametrize("text, expected", [
    ("services:\n  a:\n    image: busybox\n   oops: [\n", "compose.yaml:4: invalid YAML"),
    ("services:\n  a:\n    image: busybox\n    ports: 80\n", "compose.yaml:4: services.a.ports: expected a list"),
    ("services:\n  a:\n    image: busybox\n    colour: red\n", "compose.yaml:4: services.a.colour: unknown key"),
    ("services:\n  a:\n    image: busybox\n    networks: [nowhere]\n",
     "compose.yaml:4: services.a.networks.nowhere: network 'nowhere' is not declared"),
    ("services:\n  a:\n    image: busybox\n    depends_on: [b]\n", "services.a.depends_on: unknown service 'b'"),
    ("services:\n  a:\n    image: busybox\n    environment: 3\n", "services.a.environment: expected a mapping or a list"),
    ("services:\n  a:\n    image: busybox\nnetworks:\n  n:\n    driver: overlay\n",
     "compose.yaml:6: networks.n.driver: driver 'overlay' is not supported"),
    ("services:\n  a:\n    image: busybox\n    networks:\n      n: {ipv4_address: 999.1.1.1}\nnetworks:\n  n: {}\n",
     "compose.yaml:5: services.a.networks.n.ipv4_address: invalid IP address"),
    ("services:\n  a: {image: busybox, depends_on: [b]}\n  b: {image: busybox, depends_on: [a]}\n",
     "dependency cycle"),
])
def test_located_errors_through_the_cli(proj: Proj, text: str, expected: str) -> None:
    proj.write(text)
    p = proj.cnirun("up", "-d", ok=False)
    assert p.returncode == 1
    assert p.stderr.startswith("cnirun: ") and p.stderr.count("\n") == 1, p.stderr
    assert expected in p.stderr
    assert proj.containers() == [] and (not proj.netconf.exists() or not list(proj.netconf.iterdir()))


def test_project_name_and_request_conversion(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cnirun.compose.project import load_project, normalize_project_name
    from cnirun.compose.up import run_request

    assert normalize_project_name("My.Project_1-x") == "myproject_1-x"
    assert normalize_project_name("__Ab") == "ab"
    d = tmp_path / "My App"
    d.mkdir()
    (d / "compose.yaml").write_text("""
services:
  s:
    image: busybox
    entrypoint: /bin/sh -c
    command: ["echo ${WHO:-world}"]
    environment: [A=1, B]
    ports: ["127.0.0.1:18153:80/udp", {target: 81, published: 18154}]
    networks:
      n1: {}
      n2: {ipv4_address: 10.153.9.9}
    labels: {team: x}
networks:
  n1: {}
  n2: {name: explicit}
""")
    monkeypatch.chdir(d)
    monkeypatch.delenv("WHO", raising=False)
    proj = load_project()
    assert proj.name == "myapp"
    req = run_request(proj, proj.services[0], "docker")
    assert req.networks == ["myapp_n1", "explicit"] and req.network_ips == {"explicit": "10.153.9.9"}
    assert req.spec.entrypoint == "/bin/sh" and req.spec.command == ["-c", "echo world"]
    assert req.spec.env == ["A=1", "B"] and req.spec.name == "myapp-s-1" and req.spec.hostname == "s"
    assert req.publish == ["127.0.0.1:18153:80/udp", "18154:81"]
    assert req.spec.labels["team"] == "x" and req.spec.labels["com.docker.compose.project"] == "myapp"
    assert req.mode == "sandbox" and req.spec.detach


def _podman_ok() -> bool:
    try:
        p = subprocess.run(["podman", "image", "exists", "busybox:latest"], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return p.returncode == 0


@pytest.mark.podman
@pytest.mark.skipif(not _podman_ok(), reason="podman or its busybox:latest missing")
def test_podman_up_down(proj: Proj) -> None:
    proj.env["CNIRUN_ENGINE"] = "podman"
    proj.write("""
services:
  one: {image: busybox, command: sleep 600}
  two: {image: busybox, command: sleep 600, depends_on: [one]}
""")
    up = proj.cnirun("up", "-d")
    assert up.stdout == ""
    # Peers by DNS (the network's resolver, cnirun.dns), by service and container name.
    for peer in ("two", f"{proj.name}-two-1"):
        look = subprocess.run(["podman", "exec", f"{proj.name}-one-1", "nslookup", peer], capture_output=True,
                              text=True)  # the server in its resolv.conf (podman gives no NET_RAW for ping)
        assert look.returncode == 0 and "Address: 10.153." in look.stdout, (peer, look.stdout, look.stderr)
    proj.cnirun("down")
    _assert_podman_project_gone(proj)
    assert not proj.netconf.exists() or list(proj.netconf.iterdir()) == []
    assert not hostnet.link_exists(auto_bridge_name(f"{proj.name}_default"))


def _assert_podman_project_gone(proj: Proj) -> None:
    """After `down` on Podman: no container of the project, no cached attachment."""
    ps = subprocess.run(["podman", "ps", "-a", "-q", "--filter", f"label=com.docker.compose.project={proj.name}"],
                        capture_output=True, text=True).stdout
    assert ps.strip() == ""
    results = proj.cache / "results"
    assert not results.exists() or list(results.iterdir()) == []


@pytest.mark.podman
@pytest.mark.skipif(not _podman_ok(), reason="podman or its busybox:latest missing")
def test_podman_restart_policy_comes_back_on_the_network(proj: Proj) -> None:
    """restart: on-failure:2 on Podman: conmon restarts the container twice, each time in the run's
    netns with the same address; down leaves nothing."""
    proj.env["CNIRUN_ENGINE"] = "podman"
    proj.write("""
services:
  flaky:
    image: busybox
    command: ["sh", "-c", "ip -4 -o addr show eth0 | awk '{print $$4}'; sleep 0.3; exit 1"]
    restart: on-failure:2
""")
    proj.cnirun("up", "-d")
    name = f"{proj.name}-flaky-1"
    deadline = time.monotonic() + 60
    state = ""
    while time.monotonic() < deadline:
        state = subprocess.run(["podman", "inspect", "-f", "{{.State.Status}} {{.RestartCount}}", name],
                               capture_output=True, text=True).stdout.strip()
        if state == "exited 2":
            break
        time.sleep(0.5)
    assert state == "exited 2", state
    logs = subprocess.run(["podman", "logs", name], capture_output=True, text=True).stdout.split()
    assert len(logs) == 3 and len(set(logs)) == 1 and logs[0].startswith("10.153."), logs
    proj.cnirun("down")
    _assert_podman_project_gone(proj)
