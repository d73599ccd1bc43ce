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
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from _wait import wait_for
from conftest import CNIRUN_BIN
from conftest import needs_docker, needs_plugins, needs_root

from cnirun.netstore import hostnet, isolation
from cnirun.netstore.networks import auto_bridge_name

REPO = Path(__file__).resolve().parent.parent


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
        p = subprocess.run([CNIRUN_BIN, "compose", "-f", str(self.file), "-p", self.name, *args],
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
    ls = json.loads(subprocess.run([CNIRUN_BIN, "network", "ls", "--format", "json"], capture_output=True, text=True,
                                   env=proj.env).stdout)
    ours = {r["name"]: r for r in ls if r["name"].startswith(proj.name)}
    assert set(ours) == {f"{proj.name}_public", f"{proj.name}_private"}
    assert ours[f"{proj.name}_private"]["labels"]["com.docker.compose.network"] == "private"
    assert ours[f"{proj.name}_private"]["plugins"] == ["bridge", "firewall", "tuning", "bandwidth",
                                                               "cnirun-policy"]

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

    def hosts_without_two() -> str:
        text = proj.sh("one", "cat /etc/hosts").stdout
        return "" if two_ip in text else text

    hosts = wait_for(hosts_without_two, 15, step=0.3) or proj.sh("one", "cat /etc/hosts").stdout
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
    p = subprocess.Popen([CNIRUN_BIN, "compose", "-f", str(proj.file), "-p", proj.name, "up"], env=proj.env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = f"{proj.name}-talker-1  | ready-to-talk\n"
    streamed = threading.Event()
    out: list[str] = []

    def read_stdout() -> None:
        for text in p.stdout or []:
            out.append(text)
            if text == line:
                streamed.set()

    reader = threading.Thread(target=read_stdout, daemon=True)
    reader.start()
    try:
        assert streamed.wait(60), out  # the talker's line streamed: up follows the logs
        p.send_signal(signal.SIGINT)
        p.wait(timeout=90)  # its stderr is a few lines: the pipe does not fill meanwhile
        err = p.stderr.read() if p.stderr else ""
    finally:
        if p.poll() is None:
            p.kill()
    reader.join(10)
    assert "Gracefully stopping" in err and p.returncode == 0, err
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
    from cnirun.compose.request import run_request

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
  one: {image: busybox, init: true, command: sleep 600}
  two: {image: busybox, init: true, command: sleep 600, depends_on: [one]}
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

    def state() -> str:
        return subprocess.run(["podman", "inspect", "-f", "{{.State.Status}} {{.RestartCount}}", name],
                              capture_output=True, text=True).stdout.strip()

    assert wait_for(lambda: state() == "exited 2", 60, step=0.3), state()
    logs = subprocess.run(["podman", "logs", name], capture_output=True, text=True).stdout.split()
    assert len(logs) == 3 and len(set(logs)) == 1 and logs[0].startswith("10.153."), logs
    proj.cnirun("down")
    _assert_podman_project_gone(proj)


# -- input an attacker or a downloaded file controls ------------------------------------------------
# Address plan of this section: CNIRUN_SUBNET_POOL 10.215.0.0/16, projects tf<hex>.

class Hostile:
    """A compose file from elsewhere, in a tmp dir with its own state, NETCONFPATH, cache and IPAM dirs."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.name = "tf" + secrets.token_hex(4)
        self.dir = tmp / "proj"
        self.dir.mkdir()
        self.file = self.dir / "compose.yaml"
        self.state = tmp / "s1" / "s2" / "state"
        self.netconf = tmp / "net.d"
        self.env = dict(os.environ, NETCONFPATH=str(self.netconf), CNI_CACHE_DIR=str(tmp / "cache"),
                        CNIRUN_SUBNET_POOL="10.215.0.0/16", CNIRUN_IPAM_DATA_DIR=str(tmp / "ipam"),
                        CNIRUN_STATE_DIR=str(self.state), CNI_PATH="/usr/lib/cni", CNIRUN_ENGINE="docker")
        self.env.pop("COMPOSE_PROFILES", None)

    def cnirun(self, *args: str, file: Path | None = None, memory: int = 1 << 30,
               timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """`cnirun compose -f FILE -p NAME ARGS` with its address space capped (prlimit: a regression
        fails, it does not eat the machine; no preexec_fn, these run from threads)."""
        return subprocess.run(["prlimit", f"--as={memory}", "--", CNIRUN_BIN, "compose", "-f", str(file or self.file),
                               "-p", self.name, *args],
                              capture_output=True, text=True, env=self.env, timeout=timeout, cwd=self.dir)

    def containers(self) -> list[str]:
        p = subprocess.run(["docker", "ps", "-a", "-q", "--filter", f"label=com.docker.compose.project={self.name}"],
                           capture_output=True, text=True)
        return p.stdout.split()


@pytest.fixture
def hostile(tmp_path: Path) -> Iterator[Hostile]:
    h = Hostile(tmp_path)
    yield h
    if h.containers():
        h.cnirun("down")
    assert h.containers() == []
    assert not h.netconf.exists() or list(h.netconf.iterdir()) == []


def _modes(*paths: Path) -> list[tuple[str, int]]:
    return [(str(p), p.lstat().st_mode) for p in paths]


@needs_docker
@pytest.mark.parametrize("kind, name", [
    ("configs", "../../../../../victim/pwned"),
    ("secrets", "../../../../../victim/pwned"),
    ("configs", "/TMP/victim/pwned"),
])
def test_secret_or_config_name_cannot_write_outside(hostile: Hostile, kind: str, name: str) -> None:
    """A top-level secret/config name that is a path (`../../x`, `/abs/x`) is refused by `config` and `up`
    with one line before anything is made; the file it aimed at keeps its content and mode, its
    directories their modes, and no container exists."""
    victim_dir = hostile.tmp / "victim"
    victim_dir.mkdir(mode=0o755)
    victim_dir.chmod(0o755)
    victim = victim_dir / "pwned"
    victim.write_text("original\n")
    victim.chmod(0o644)
    name = name.replace("/TMP", str(hostile.tmp))
    source = "environment: TF_SECRET" if kind == "secrets" else "content: hacked"
    hostile.env["TF_SECRET"] = "hacked"
    hostile.file.write_text(f"""
services:
  a:
    image: busybox
    network_mode: none
    command: ["sleep", "600"]
{kind}:
  "{name}":
    {source}
""")
    before = _modes(hostile.tmp, victim_dir, victim)
    for args in (["config"], ["up", "-d"]):
        p = hostile.cnirun(*args)
        assert p.returncode != 0 and p.stderr.count("\n") == 1 and "Traceback" not in p.stderr, p.stderr
        assert f"{kind}.{name}: invalid {kind[:-1]} name" in p.stderr, p.stderr
    assert victim.read_text() == "original\n"
    assert _modes(hostile.tmp, victim_dir, victim) == before
    assert hostile.containers() == []
    assert not (hostile.state / "compose").exists()


@needs_docker
@pytest.mark.parametrize("target", ["/etc/x:rw", "../../etc/passwd", "/run/../etc/shadow", ""])
def test_secret_target_must_be_a_plain_container_path(hostile: Hostile, target: str) -> None:
    """A service's secrets/configs target with ':' (a mount option smuggled into `-v`), '..' or nothing
    is refused with one line."""
    (hostile.dir / "s.txt").write_text("s\n")
    hostile.file.write_text(f"""
services:
  a:
    image: busybox
    secrets: [{{source: s, target: "{target}"}}]
secrets:
  s: {{file: ./s.txt}}
""")
    p = hostile.cnirun("config")
    assert p.returncode != 0 and p.stderr.count("\n") == 1, p.stderr
    assert "services.a.secrets[0].target: " in p.stderr, p.stderr


@needs_docker
@pytest.mark.parametrize("planted", ["compose", "compose/PROJECT", "compose/PROJECT/configs"])
def test_planted_symlink_in_state_dir_redirects_nothing(hostile: Hostile, planted: str) -> None:
    """A symlink planted where `up` keeps a project's content:/environment: configs (the state dir's
    compose/, compose/PROJECT or its configs/) is refused with one line: nothing is written through
    it, the directory it points at keeps its mode and content, no container is left; `down` removes
    nothing through it either."""
    outside = hostile.tmp / "outside"
    outside.mkdir()
    outside.chmod(0o755)
    (outside / "keep").write_text("keep\n")
    if planted.endswith("configs"):
        (outside / "motd").write_text("original\n")
    link = hostile.state / planted.replace("PROJECT", hostile.name)
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(outside)
    hostile.file.write_text("""
services:
  a:
    image: busybox
    network_mode: none
    command: ["sleep", "600"]
    configs: [{source: motd, target: /etc/motd}]
configs:
  motd:
    content: hacked
""")
    before = sorted(p.name for p in outside.iterdir())
    mode = outside.stat().st_mode
    p = hostile.cnirun("up", "-d")
    assert p.returncode != 0 and "Traceback" not in p.stderr, p.stderr
    assert p.stderr.strip().splitlines()[-1].startswith("cnirun: ") and "symlink" in p.stderr, p.stderr
    assert hostile.containers() == []
    d = hostile.cnirun("down")
    assert "Traceback" not in d.stderr, d.stderr
    assert sorted(p.name for p in outside.iterdir()) == before
    assert outside.stat().st_mode == mode and (outside / "keep").read_text() == "keep\n"
    if planted.endswith("configs"):
        assert (outside / "motd").read_text() == "original\n"
        assert not os.path.lexists(link)  # down removed the project's dir, the link in it unfollowed
    else:
        assert link.is_symlink()  # down does not remove through it


FUZZ_BASE = """\
name: tfbase
services:
  web:
    image: tf-absent-image:never
    command: ["sh", "-c", "sleep 1"]
    environment:
      A: "1"
    labels: [x=y]
    ports: ["127.0.0.1:18080:80"]
    depends_on:
      db: {condition: service_started}
    networks:
      front:
        aliases: [www]
    volumes: ["data:/data", {type: bind, source: ./static, target: /static}]
    secrets: [{source: token, target: token}]
    configs: [{source: conf, target: /etc/app.conf}]
    healthcheck: {test: ["CMD", "true"], interval: 5s}
    env_file: [./app.env]
    cap_add: [NET_ADMIN]
    restart: "no"
    cpus: 0.5
    mem_limit: 64m
    stop_grace_period: 3s
    tmpfs: [/run]
    extra_hosts: {gw: 10.215.1.1}
    dns: [10.215.1.1]
    sysctls: {net.core.somaxconn: 1024}
    ulimits: {nofile: {soft: 1024, hard: 2048}}
    logging: {driver: json-file, options: {max-size: 1m}}
    expose: [8080]
    devices: ["/dev/null:/dev/xnull", {source: /dev/zero, target: /dev/xzero}]
  db:
    image: tf-absent-image:never
    networks: [front, back]
    extends: {service: base}
    deploy: {replicas: 2, resources: {limits: {cpus: "1", memory: 128m}}}
  base:
    image: tf-absent-image:never
    user: "1000"
    init: true
networks:
  front:
    ipam: {config: [{subnet: 10.215.1.0/24, gateway: 10.215.1.1}]}
  back: {internal: true}
volumes:
  data: {driver_opts: {type: tmpfs}}
secrets:
  token: {file: ./token.txt}
  env: {environment: HOME}
configs:
  conf: {content: hello}
"""


def _bomb(levels: int = 9, width: int = 9) -> str:
    lines = ["x-bomb:", f"  a0: &a0 [{', '.join(['x'] * width)}]"]
    lines += [f"  a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]" for i in range(1, levels + 1)]
    return "\n".join(lines) + f"\nservices:\n  a:\n    image: busybox\n    command: *a{levels}\n"


def _merge_bomb(levels: int = 9, width: int = 9) -> str:
    lines = ["x-bomb:", "  m0: &m0 {k: v}"]
    lines += [f"  m{i}: &m{i} {{<<: [{', '.join([f'*m{i - 1}'] * width)}], k{i}: [*m{i - 1}, *m{i - 1}]}}"
              for i in range(1, levels + 1)]
    return "\n".join(lines) + f"\nservices:\n  a:\n    image: busybox\n    labels: *m{levels}\n"


# Inputs that are wrong for certain: each must be refused with one line.
FUZZ_BAD: list[tuple[str, bytes]] = [
    ("services-list", b"services:\n  - a\n  - b\n"),
    ("services-string", b"services: hello\n"),
    ("services-number", b"services: 5\n"),
    ("service-list", b"services:\n  a: [1, 2]\n"),
    ("service-string", b"services:\n  a: busybox\n"),
    ("networks-list", b"services:\n  a: {image: busybox}\nnetworks: [a, b]\n"),
    ("volumes-string", b"services:\n  a: {image: busybox}\nvolumes: data\n"),
    ("secrets-list", b"services:\n  a: {image: busybox}\nsecrets: [s]\n"),
    ("configs-string", b"services:\n  a: {image: busybox}\nconfigs: c\n"),
    ("include-mapping", b"include: {a: b}\nservices:\n  a: {image: busybox}\n"),
    ("name-mapping", b"name: {a: b}\nservices:\n  a: {image: busybox}\n"),
    ("version-list", b"version: [3]\nservices:\n  a: {image: busybox}\n"),
    ("top-list", b"- services\n"),
    ("top-scalar", b"just a string\n"),
    ("empty", b""),
    ("labels-string-merge", b"services:\n  a: {image: busybox, labels: abc, extends: b}\n"
                            b"  b: {image: busybox, labels: [x=y]}\n"),
    ("depends-number", b"services:\n  a: {image: busybox, depends_on: 5, extends: b}\n"
                       b"  b: {image: busybox, depends_on: [c]}\n  c: {image: busybox}\n"),
    ("extends-null", b"services:\n  a: {image: busybox, extends: b}\n  b:\n"),
    ("secret-and-config-null", b"services:\n  a: {image: busybox}\nsecrets:\n  s:\nconfigs:\n  c:\n"),
    ("extends-number", b"services:\n  a: {image: busybox, extends: 5}\n"),
    ("volumes-entry-number", b"services:\n  a: {image: busybox, volumes: [5]}\n"),
    ("env-file-mapping", b"services:\n  a: {image: busybox, env_file: {a: b}}\n"),
    ("alias-bomb", _bomb().encode()),
    ("merge-bomb", _merge_bomb().encode()),
    ("recursive-alias", b"x-r: &r [*r]\nservices:\n  a: {image: busybox, command: *r}\n"),
    ("recursive-mapping", b"x-r: &r {a: *r}\nservices:\n  a: {image: busybox, labels: *r}\n"),
    ("deep-nesting", b"services:\n  a:\n    image: busybox\n    command: " + b"[" * 5000 + b"]" * 5000 + b"\n"),
    ("deep-mapping", b"x-d: " + b"{a: " * 3000 + b"b" + b"}" * 3000 + b"\nservices:\n  a: {image: busybox}\n"),
    ("truncated-flow", b"services:\n  a:\n    image: busybox\n    command: [\"sh\", \"-c\n"),
    ("truncated-mapping", b"services:\n  a: {image: busybox, command: [x, y"),
    ("unterminated-quote", b"services:\n  a:\n    image: 'busybox\n"),
    ("huge-int", b"services:\n  a:\n    image: busybox\n    ports: [" + b"9" * 6000 + b"]\n"),
    ("huge-port", b"services:\n  a:\n    image: busybox\n    ports: [999999999999999999999999:80]\n"),
    ("huge-scale", b"services:\n  a:\n    image: busybox\n    scale: 99999999999999999999\n"),
    ("big-scale", b"services:\n  a:\n    image: busybox\n    scale: 100000000\n"),
    ("float-inf", b"services:\n  a:\n    image: busybox\n    cpus: 1e999999\n    stop_grace_period: .nan\n"),
    ("bad-timestamp", b"services:\n  a:\n    image: busybox\n    labels: {t: 2001-13-45}\n    colour: x\n"),
    ("bad-date-key", b"services:\n  a:\n    image: busybox\n    environment: {2001-13-45: x}\n    colour: x\n"),
    ("python-tag", b"services:\n  a: !!python/object/apply:os.system [true]\n"),
    ("binary-tag", b"services:\n  a:\n    image: !!binary aGVsbG8=\n    colour: x\n"),
    ("bad-binary", b"services:\n  a:\n    image: !!binary '*&^'\n"),
    ("set-tag", b"services: !!set {a, b}\n"),
    ("non-utf8", b"services:\n  a:\n    image: busy\xff\xfebox\n"),
    ("utf16", "services:\n  a: {image: busybox}\n".encode("utf-16")),
    ("nul-byte", b"services:\n  a:\n    image: busy\x00box\n"),
    ("control-char", b"services:\n  a:\n    image: busy\x07box\n"),
    ("tab-indent", b"services:\n\ta:\n\t\timage: busybox\n"),
    ("duplicate-top", b"services:\n  a: {image: busybox}\nservices:\n  b: {image: busybox}\n"),
    ("duplicate-service-key", b"services:\n  a:\n    image: busybox\n    image: alpine\n"),
    ("complex-key", b"services:\n  ? [a, b]\n  : {image: busybox}\n"),
    ("null-key", b"services:\n  ~: {image: busybox}\n"),
    ("bad-interpolation", b"services:\n  a:\n    image: ${\n"),
    ("required-variable", b"services:\n  a:\n    image: ${TF_UNSET_VAR:?set it}\n"),
    ("include-dev-zero", b"include: [/dev/zero]\nservices:\n  a: {image: busybox}\n"),
    ("extends-dev-zero", b"services:\n  a: {image: busybox, extends: {service: b, file: /dev/zero}}\n"),
    ("env-file-dev-zero", b"services:\n  a: {image: busybox, env_file: /dev/zero}\n"),
    ("env-file-not-utf8", b"services:\n  a: {image: busybox, env_file: ./latin1.env}\n"),
    ("env-file-too-large", b"services:\n  a: {image: busybox, env_file: [./big.env]}\n"),
    ("too-large", b"services:\n  a: {image: busybox}\n" + b"# padding padding padding\n" * 200000),
    ("long-truncated", b"services:\n  a: {image: busybox, command: [" + b"x," * 450000 + b"\n"),
    ("secret-name-path", b"services:\n  a: {image: busybox}\nsecrets:\n  ../x: {file: /etc/hostname}\n"),
    ("config-name-slash", b"services:\n  a: {image: busybox}\nconfigs:\n  a/b: {content: x}\n"),
    ("volume-name-path", b"services:\n  a: {image: busybox, volumes: [v:/v]}\nvolumes:\n  v: {name: /etc}\n"),
    ("container-name-path", b"services:\n  a: {image: busybox, container_name: ../../x}\n"),
]


def _wrong_types(base: Any, seed: int) -> list[tuple[str, Any]]:
    """Every value of `base` (a parsed compose file) replaced, one at a time, by a value of another type
    (picked with a fixed seed)."""
    import copy
    import random

    rnd = random.Random(seed)
    others = {dict: [[1, 2], "text", 7], list: [{"k": "v"}, 7, "text"], str: [{"k": "v"}, [["x"]]],
              int: [{"k": "v"}, ["x"]], float: [{"k": "v"}, ["x"]], bool: [{"k": "v"}, ["x"]]}
    out: list[tuple[str, Any]] = []

    def walk(node: Any, path: list[Any]) -> None:
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
        for k, v in list(items):
            wrong = rnd.choice(others[type(v)])
            doc = copy.deepcopy(base)
            target = doc
            for p in path:
                target = target[p]
            target[k] = wrong
            out.append((".".join(map(str, path + [k])) + "=" + type(wrong).__name__, doc))
            walk(v, path + [k])

    walk(base, [])
    return out


def _mutations(text: str, n: int, seed: int) -> list[tuple[str, bytes]]:
    """Random edits of `text` (fixed seed): characters YAML gives meaning to inserted, lines dropped,
    duplicated, swapped or re-indented, the text cut short."""
    import random

    rnd = random.Random(seed)
    specials = list(":-[]{}&*!|>'\"%@#,?\t\n ") + ["*x", "&a", "<<: ", "${", "$$", "\\u0000", "\xff", "9" * 40]
    out: list[tuple[str, bytes]] = []
    for i in range(n):
        lines = text.splitlines(keepends=True)
        for _ in range(rnd.randint(1, 3)):
            if not lines:
                break
            op = rnd.randrange(6)
            j = rnd.randrange(len(lines))
            if op == 0:
                lines.pop(j)
            elif op == 1:
                lines.insert(j, lines[j])
            elif op == 2:
                k = rnd.randrange(len(lines))
                lines[j], lines[k] = lines[k], lines[j]
            elif op == 3:
                lines[j] = " " * rnd.randint(0, 6) + lines[j].lstrip(" ")
            elif op == 4:
                pos = rnd.randint(0, len(lines[j]))
                lines[j] = lines[j][:pos] + rnd.choice(specials) + lines[j][pos:]
            else:
                joined = "".join(lines)
                lines = [joined[:rnd.randrange(len(joined))]]
        out.append((f"mutation-{i}", "".join(lines).encode("utf-8", "surrogateescape")))
    return out


def _check_one_line(what: str, p: subprocess.CompletedProcess[str], elapsed: float) -> None:
    """No traceback, within 20 s; a refusal is one `cnirun: ` line (WARN lines aside)."""
    assert "Traceback" not in p.stderr and "Error" not in p.stderr.split("cnirun: ", 1)[0], (what, p.stderr)
    assert elapsed < 20, (what, elapsed)
    if p.returncode != 0:
        lines = [ln for ln in p.stderr.splitlines() if not ln.startswith(("WARN ", "WARN[0000] "))]
        assert len(lines) == 1 and lines[0].startswith("cnirun: "), (what, p.returncode, p.stderr[:2000])


def _run_all(h: Hostile, cases: list[tuple[str, bytes]], args: list[str]) -> dict[str, int]:
    """Each case as its own compose file through `cnirun compose -f FILE ARGS`, 4 at a time; the exit codes."""
    from concurrent.futures import ThreadPoolExecutor

    files = {}
    for i, (what, data) in enumerate(cases):
        f = h.dir / f"case{i}.yaml"
        f.write_bytes(data)
        files[what] = f

    def one(what: str) -> tuple[str, subprocess.CompletedProcess[str], float]:
        t = time.monotonic()
        p = h.cnirun(*args, file=files[what], memory=1 << 30, timeout=60)
        return what, p, time.monotonic() - t

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(one, [w for w, _ in cases]))
    assert len(results) == len(cases)
    for what, p, dt in results:
        _check_one_line(what, p, dt)
    return {what: p.returncode for what, p, _ in results}


@pytest.fixture
def fuzz_project(hostile: Hostile) -> Hostile:
    (hostile.dir / "static").mkdir()
    (hostile.dir / "app.env").write_text("B=2\n")
    (hostile.dir / "token.txt").write_text("t\n")
    (hostile.dir / "latin1.env").write_bytes(b"A=caf\xe9\n")
    (hostile.dir / "big.env").write_bytes(b"A=" + b"x" * (2 << 20) + b"\n")
    return hostile


@needs_docker
def test_fuzz_bad_inputs_are_one_line(fuzz_project: Hostile) -> None:
    """Inputs wrong for certain (bad shapes at every level, YAML alias and merge-key bombs, recursive
    aliases, deep nesting, truncated YAML, huge numbers, non-UTF-8 bytes, tabs, duplicate keys, files
    too large, /dev/zero included, path-like names) through `compose config` and `compose up -d`: each
    exits non-zero with one `cnirun: ` line, no traceback, within 20 s, with its address space capped
    at 1 GiB; nothing is created."""
    h = fuzz_project
    (h.dir / "base.yaml").write_text(FUZZ_BASE)
    ok = h.cnirun("config", file=h.dir / "base.yaml")
    assert ok.returncode == 0, ok.stderr
    for args in (["config"], ["up", "-d", "--pull", "never"]):
        codes = _run_all(h, FUZZ_BAD, args)
        failed = sorted(w for w, c in codes.items() if c == 0)
        assert failed == [], (args, failed)
    assert h.containers() == []


@needs_docker
def test_fuzz_wrong_types_and_mutations(fuzz_project: Hostile) -> None:
    """Every value of a realistic compose file replaced by one of another type, and 60 random edits of its
    text (fixed seeds), through `compose config` and (a quarter of what config refuses) `compose up -d`:
    never a traceback, a refusal is one `cnirun: ` line, each within 20 s in 1 GiB; most are refused
    (the edits are not no-ops); nothing is created."""
    import yaml

    h = fuzz_project
    wrong = [(what, yaml.safe_dump(doc).encode()) for what, doc in _wrong_types(yaml.safe_load(FUZZ_BASE), 23)]
    cases = wrong + _mutations(FUZZ_BASE, 60, seed=23)
    assert len(wrong) > 100
    codes = _run_all(h, cases, ["config"])
    refused = [(w, d) for w, d in cases if codes[w] != 0]
    assert len([w for w, _ in refused if not w.startswith("mutation-")]) > len(wrong) // 2
    assert len([w for w, _ in refused if w.startswith("mutation-")]) > 20
    up = _run_all(h, refused[::4], ["up", "-d", "--pull", "never"])
    assert sorted(w for w, c in up.items() if c == 0) == []
    assert h.containers() == []


@needs_docker
def test_anchors_and_merge_keys_within_the_bounds_are_accepted(fuzz_project: Hostile) -> None:
    """The bounds refuse bombs, not YAML people write: anchors, merge keys and an extension field whose
    aliases expand to some 75,000 values (nine of nine of ... five deep) are accepted by `config`."""
    h = fuzz_project
    h.file.write_text(_bomb(levels=4).replace("*a4", "*a0") + """\
    <<: &common
      image: busybox
      labels: {tier: back}
  b:
    <<: *common
    environment: {A: "1"}
""")
    p = h.cnirun("config", "--format", "json")
    assert p.returncode == 0, p.stderr
    services = json.loads(p.stdout)["services"]
    assert services["a"]["command"] == ["x"] * 9
    assert services["b"]["image"] == "busybox" and services["b"]["labels"] == {"tier": "back"}
    assert services["a"]["labels"] == {"tier": "back"} and services["b"]["environment"] == {"A": "1"}
