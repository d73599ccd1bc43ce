"""Compose files as people write them (issue 17): `config` on the whole corpus, `up`/`down` on real dockerd.

Address plan: CNIRUN_SUBNET_POOL 10.193.0.0/16, projects t17xxxxxx, host
ports 19300-19399 on 127.0.0.1. Each test owns its NETCONFPATH, cache and
IPAM dirs and checks that `down -v` left nothing (containers, volumes,
networks, attachments).
"""
from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import time
from pathlib import Path
from typing import Iterator

import pytest

from conftest import needs_docker, needs_plugins, needs_root  # noqa: F401

from cnirun.netstore import hostnet
from cnirun.netstore.networks import auto_bridge_name

REPO = Path(__file__).resolve().parent.parent
CNIRUN = str(REPO / ".venv" / "bin" / "cnirun")
CORPUS = Path(__file__).resolve().parent / "compose_corpus"
ALL = sorted(p.name for p in CORPUS.iterdir() if (p / "compose.yaml").exists())


class Proj:
    def __init__(self, tmp: Path, corpus: str) -> None:
        self.name = "t17" + secrets.token_hex(3)
        self.dir = tmp / corpus
        shutil.copytree(CORPUS / corpus, self.dir)
        self.files = ["-f", str(self.dir / "compose.yaml")]
        self.env = dict(os.environ, NETCONFPATH=str(tmp / "net.d"), CNI_CACHE_DIR=str(tmp / "cache"),
                        CNIRUN_SUBNET_POOL="10.193.0.0/16", CNIRUN_IPAM_DATA_DIR=str(tmp / "ipam"),
                        CNI_PATH="/usr/lib/cni", CNIRUN_ENGINE="docker")
        self.env.pop("COMPOSE_PROFILES", None)
        self.netconf = tmp / "net.d"
        self.cache = tmp / "cache"

    def cnirun(self, *args: str, ok: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        p = subprocess.run([CNIRUN, "compose", *self.files, "-p", self.name, *args], capture_output=True,
                           text=True, env=self.env, timeout=timeout, cwd=self.dir)
        if ok:
            assert p.returncode == 0, p.stderr
        return p

    def sh(self, container: str, cmd: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["docker", "exec", container, "sh", "-c", cmd], capture_output=True, text=True,
                              timeout=30)

    def containers(self) -> list[str]:
        p = subprocess.run(["docker", "ps", "-a", "--format", "{{.Names}}", "--filter",
                            f"label=com.docker.compose.project={self.name}"], capture_output=True, text=True)
        return sorted(p.stdout.split())

    def volumes(self) -> list[str]:
        p = subprocess.run(["docker", "volume", "ls", "-q", "--filter", f"label=com.docker.compose.project={self.name}"],
                           capture_output=True, text=True)
        return p.stdout.split()

    def assert_clean(self, keys: list[str]) -> None:
        assert self.containers() == [] and self.volumes() == []
        results = self.cache / "results"
        assert not results.exists() or list(results.iterdir()) == []
        assert not self.netconf.exists() or list(self.netconf.iterdir()) == []
        for key in keys:
            assert not hostnet.link_exists(auto_bridge_name(f"{self.name}_{key}"))


@pytest.fixture
def make(tmp_path: Path) -> Iterator[object]:
    made: list[Proj] = []

    def factory(corpus: str) -> Proj:
        p = Proj(tmp_path / f"p{len(made)}", corpus)
        made.append(p)
        return p

    yield factory
    for p in made:
        if p.containers() or p.volumes() or (p.netconf.exists() and list(p.netconf.iterdir())):
            p.cnirun("down", "-v", ok=False)
        subprocess.run(["docker", "rmi", "-f", f"{p.name}-app", "t17-worker-image"], capture_output=True)


@pytest.mark.parametrize("corpus", ALL)
def test_config_accepts_the_corpus(make: object, corpus: str) -> None:
    """Every file is accepted; Swarm-only keys give one warning line each; output is the normalised project."""
    import yaml

    assert len(ALL) >= 10
    p = make(corpus)  # type: ignore[operator]
    out = p.cnirun("config")
    data = yaml.safe_load(out.stdout)
    assert data["name"] == p.name and data["services"]
    for line in out.stderr.splitlines():
        assert line.startswith("WARN "), line
    assert len(set(out.stderr.splitlines())) == len(out.stderr.splitlines())
    if corpus == "replicas":
        assert "deploy.placement: Swarm-only: ignored" in out.stderr
        assert "deploy.update_config: Swarm-only: ignored" in out.stderr
        assert data["services"]["worker"]["scale"] == 2
    if corpus == "wordpress":
        db = data["services"]["db"]
        assert db["volumes"][0] == f"{p.name}_db_data:/var/lib/mysql"
        assert db["volumes"][1].endswith("/initdb:/docker-entrypoint-initdb.d:ro")
        assert db["healthcheck"]["test"][0] == "CMD" and db["restart"] == "always"
        assert "links" in out.stderr
    if corpus == "envinterp":
        app = data["services"]["app"]
        assert app["image"] == "busybox" and app["ports"] == ["127.0.0.1:19311:80"]
        assert app["environment"] == {"FROM_FILE": "yes", "MODE": "production", "COST": "$5"}
    if corpus == "extends":
        web, worker = data["services"]["web"], data["services"]["worker"]
        assert web["environment"] == {"LOG_LEVEL": "debug"} and web["labels"] == {"tier": "base"}
        assert worker["command"] == ["sleep", "3601"] and worker["init"] is True
    if corpus == "profiles":
        assert list(data["services"]) == ["app"]
        with_debug = p.cnirun("--profile", "debug", "config", "--services").stdout.split()
        assert sorted(with_debug) == ["app", "debug"]
    if corpus == "include":
        assert sorted(data["services"]) == ["app", "cache"]
        p.files += ["-f", str(p.dir / "override.yaml")]
        merged = yaml.safe_load(p.cnirun("config").stdout)["services"]["app"]
        assert merged["environment"] == {"OVERRIDDEN": "1"} and merged["command"] == ["sleep", "3602"]


@pytest.mark.parametrize("text, expected", [
    ("services:\n  a:\n    image: busybox\n    restart: sometimes\n", "invalid restart policy 'sometimes'"),
    ("services:\n  a:\n    image: busybox\n    network_mode: host\n    networks: [x]\n", "contradict"),
    ("services:\n  a:\n    image: busybox\n    volumes: [nowhere:/x]\n", "volume 'nowhere' is not declared"),
    ("services:\n  a:\n    image: busybox\n    secrets: [s]\nsecrets:\n  s: {environment: T17_UNSET_X}\n",
     "variable T17_UNSET_X is not set"),
    ("services:\n  a:\n    image: busybox\n    secrets: [s]\nsecrets:\n  s: {content: x}\n",
     "content: is not supported for secrets"),
    ("services:\n  a:\n    image: busybox\nconfigs:\n  c: {file: ./c, content: x}\n", "exactly one of"),
    ("services:\n  a:\n    image: busybox\n    depends_on: {b: {condition: soon}}\n", "unknown condition"),
    ("services:\n  a: {}\n", "needs image: or build:"),
])
def test_contradictions_are_located_errors(make: object, text: str, expected: str) -> None:
    p = make("profiles")  # type: ignore[operator]
    (p.dir / "compose.yaml").write_text(text)
    r = p.cnirun("config", ok=False)
    assert r.returncode == 1 and r.stderr.startswith("cnirun: ") and expected in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


def _wait(pred: object, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():  # type: ignore[operator]
            return True
        time.sleep(0.3)
    return False


def _running(name: str) -> bool:
    p = subprocess.run(["docker", "inspect", "-f", "{{.State.Running}} {{.RestartCount}}", name],
                       capture_output=True, text=True)
    return p.stdout.startswith("true")


@needs_root
@needs_plugins
@pytest.mark.docker
@pytest.mark.slow
def test_webdb_up_healthy_restart_always_and_down_v(make: object) -> None:
    """Named volume created with compose's labels, service_healthy waits, `always` brings web back after
    its process is killed, on its address, the peer still resolves it, and down -v leaves nothing."""
    p = make("webdb")  # type: ignore[operator]
    up = p.cnirun("up", "-d")
    assert up.stderr.index("db-1  Healthy") < up.stderr.index("web-1  Started")
    assert p.volumes() == [f"{p.name}_db-data"]
    labels = subprocess.run(["docker", "volume", "inspect", "-f", "{{json .Labels}}", f"{p.name}_db-data"],
                            capture_output=True, text=True).stdout
    assert f'"com.docker.compose.project":"{p.name}"' in labels and '"com.docker.compose.volume":"db-data"' in labels
    web, db = f"{p.name}-web-1", f"{p.name}-db-1"
    before = p.sh(db, "ping -c1 -W2 web").stdout
    assert "1 packets received" in before
    # The process dies behind dockerd's back (docker kill counts as a manual stop, which no policy restarts).
    pid = subprocess.run(["docker", "inspect", "-f", "{{.State.Pid}}", web], capture_output=True, text=True)
    os.kill(int(pid.stdout), 9)
    time.sleep(0.5)
    assert _wait(lambda: _running(web)), "restart: always did not bring web back"
    assert _wait(lambda: "1 packets received" in p.sh(db, "ping -c1 -W1 web").stdout, 15)
    ps = p.cnirun("ps").stdout
    assert web in ps and "healthy" in ps
    p.cnirun("down", "-v")
    p.assert_clean(["default"])


@needs_root
@needs_plugins
@pytest.mark.docker
@pytest.mark.slow
def test_build_on_failure_restarts_secrets_replicas_and_commands(make: object) -> None:
    p = make("buildsvc")  # type: ignore[operator]
    up = p.cnirun("up", "-d")
    assert "Building" in up.stderr
    app = f"{p.name}-app-1"
    assert p.sh(app, "cat /version").stdout.strip() == "1.2.3"
    assert p.sh(f"{p.name}-worker-1", "cat /version; ping -c1 -W2 app").stdout.startswith("dev")
    # docker stop/start (the restart policy does not apply to a manual stop) keeps its address.
    ip = p.sh(app, "ip -4 -o addr show eth0").stdout.split()[3]
    subprocess.run(["docker", "stop", "-t", "1", app], capture_output=True, check=True)
    subprocess.run(["docker", "start", app], capture_output=True, check=True)
    assert _wait(lambda: _running(app))
    assert p.sh(app, "ip -4 -o addr show eth0").stdout.split()[3] == ip
    out = p.cnirun("exec", "worker", "sh", "-c", "echo from-exec; exit 3", ok=False)
    assert out.returncode == 3 and "from-exec" in out.stdout
    p.cnirun("stop", "worker")
    assert not _running(f"{p.name}-worker-1")
    p.cnirun("start", "worker")
    assert _running(f"{p.name}-worker-1")
    p.cnirun("restart", "worker")
    assert "1 packets received" in p.sh(f"{p.name}-worker-1", "ping -c1 -W2 app").stdout
    logs = p.cnirun("logs", "app").stdout
    assert logs == "" or logs.startswith(app)
    pull = p.cnirun("pull", ok=False)
    assert pull.returncode == 1 and "Traceback" not in pull.stderr  # no registry: one line
    p.cnirun("down", "-v")
    p.assert_clean(["default"])

    s = make("secrets")  # type: ignore[operator]
    s.cnirun("up", "-d")
    c = f"{s.name}-backend-1"
    assert s.sh(c, "cat /run/secrets/db_password /run/secrets/password_copy /etc/app.conf").stdout == \
        "topsecret\ntopsecret\nlevel=debug\n"
    # environment: and content: are written by up under the project's state dir (root-only), removed by down
    assert s.sh(c, "cat /run/secrets/api_token; echo; cat /etc/motd").stdout == "tok-123\nwelcome to corpus\n"
    written = Path("/run/cnirun/compose") / s.name
    assert (written / "secrets" / "api_token").stat().st_mode & 0o777 == 0o400
    assert (written.stat().st_mode & 0o777) == 0o700
    s.cnirun("down", "-v")
    s.assert_clean(["default"])
    assert not written.exists()

    r = make("replicas")  # type: ignore[operator]
    r.cnirun("up", "-d")
    names = r.containers()
    assert f"{r.name}-worker-1" in names and f"{r.name}-worker-2" in names
    # Both replicas under the service name, from the network's resolver (cnirun.dns).
    found = r.sh(f"{r.name}-front-1", "nslookup worker").stdout
    ips = {line.split()[1] for line in found.splitlines() if line.startswith("Address: ")}
    assert len(ips) == 2, found
    r.cnirun("down", "-v")
    r.assert_clean(["default"])


@needs_root
@needs_plugins
@pytest.mark.docker
@pytest.mark.slow
def test_on_failure_restarts_come_back_on_the_network(make: object) -> None:
    """A service that exits 1 with on-failure:2 runs three times, each time with its address."""
    p = make("profiles")  # type: ignore[operator]
    (p.dir / "compose.yaml").write_text("""
services:
  flaky:
    image: busybox
    command: ["sh", "-c", "ip -4 -o addr show eth0 >> /proc/1/fd/1; sleep 1; exit 1"]
    restart: on-failure:2
""")
    p.cnirun("up", "-d")
    name = f"{p.name}-flaky-1"

    def finished() -> bool:
        out = subprocess.run(["docker", "inspect", "-f", "{{.State.Status}} {{.RestartCount}}", name],
                             capture_output=True, text=True).stdout.split()
        return out == ["exited", "2"]

    assert _wait(finished, 40)
    logs = subprocess.run(["docker", "logs", name], capture_output=True, text=True).stdout
    addrs = [line.split()[3] for line in logs.splitlines() if "eth0" in line]
    assert len(addrs) == 3 and len(set(addrs)) == 1 and addrs[0].startswith("10.193."), logs
    p.cnirun("down", "-v")
    p.assert_clean(["default"])


def fetch_local(port: int) -> str:
    import urllib.error
    import urllib.request

    try:
        return urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read().decode()
    except urllib.error.HTTPError as e:
        return f"{e.code}"
    except OSError as e:
        return f"failed: {e}"


@needs_root
@needs_plugins
@pytest.mark.podman
@pytest.mark.skipif(subprocess.run(["podman", "image", "exists", "busybox:latest"], capture_output=True).returncode != 0,
                    reason="podman with busybox:latest not available")
def test_webdb_on_podman(make: object) -> None:
    """The webdb file on Podman: named volume, init (catatonit), healthcheck and service_healthy, the published
    port, the peer by name; down -v leaves no container, volume or attachment."""
    p = make("webdb")  # type: ignore[operator]
    p.env["CNIRUN_ENGINE"] = "podman"

    def podman(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["podman", *args], capture_output=True, text=True, timeout=60)

    try:
        up = p.cnirun("up", "-d")
        assert up.stderr.index("db-1  Healthy") < up.stderr.index("web-1  Started"), up.stderr
        web, db = f"{p.name}-web-1", f"{p.name}-db-1"
        vols = podman("volume", "ls", "-q", "--filter", f"label=com.docker.compose.project={p.name}").stdout.split()
        assert vols == [f"{p.name}_db-data"]
        look = podman("exec", web, "nslookup", "db")
        ip = podman("exec", db, "ip", "-4", "-o", "addr", "show", "eth0").stdout.split()[3].split("/")[0]
        assert f"Address: {ip}" in look.stdout, look.stdout + look.stderr
        assert podman("exec", db, "cat", "/proc/1/comm").stdout.strip() == "podman-init"  # init: true (catatonit)
        assert fetch_local(19310) == "404"  # the published port answers (httpd has no page to serve)
        ps = p.cnirun("ps").stdout
        assert web in ps and "healthy" in ps
    finally:
        down = p.cnirun("down", "-v", ok=False)
    assert down.returncode == 0, down.stderr
    assert podman("ps", "-aq", "--filter", f"label=com.docker.compose.project={p.name}").stdout.strip() == ""
    assert podman("volume", "ls", "-q", "--filter", f"label=com.docker.compose.project={p.name}").stdout.strip() == ""
    results = p.cache / "results"
    assert not results.exists() or list(results.iterdir()) == []
    assert not p.netconf.exists() or list(p.netconf.iterdir()) == []
