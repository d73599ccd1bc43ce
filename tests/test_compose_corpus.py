"""Compose files as people write them (issue 17): `config` on the whole corpus, `up`/`down` on real dockerd
and on Podman.

Address plan: CNIRUN_SUBNET_POOL 10.193.0.0/17, projects t17xxxxxx, host
ports 19300-19399 on 127.0.0.1; the Podman section (PodmanProj): 10.201.0.0/16,
projects c17pxxxxxx, bridges cr17pxxxxxxN. Each test owns its NETCONFPATH, cache and
IPAM dirs and checks that `down -v` left nothing (containers, volumes,
networks, attachments).
"""
from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from pathlib import Path
from typing import Callable, Iterator

import pytest

from _wait import wait_for
from conftest import CNIRUN_BIN
from conftest import needs_docker, needs_plugins, needs_podman, needs_root  # noqa: F401

from cnirun.netstore import hostnet
from cnirun.netstore.networks import auto_bridge_name

REPO = Path(__file__).resolve().parent.parent
CORPUS = Path(__file__).resolve().parent / "compose_corpus"
ALL = sorted(p.name for p in CORPUS.iterdir() if (p / "compose.yaml").exists())


class Proj:
    def __init__(self, tmp: Path, corpus: str) -> None:
        self.name = "t17" + secrets.token_hex(3)
        self.dir = tmp / corpus
        shutil.copytree(CORPUS / corpus, self.dir)
        self.files = ["-f", str(self.dir / "compose.yaml")]
        self.env = dict(os.environ, NETCONFPATH=str(tmp / "net.d"), CNI_CACHE_DIR=str(tmp / "cache"),
                        CNIRUN_SUBNET_POOL="10.193.0.0/17", CNIRUN_IPAM_DATA_DIR=str(tmp / "ipam"),
                        CNI_PATH="/usr/lib/cni", CNIRUN_ENGINE="docker")
        self.env.pop("COMPOSE_PROFILES", None)
        self.netconf = tmp / "net.d"
        self.cache = tmp / "cache"

    def cnirun(self, *args: str, ok: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        p = subprocess.run([CNIRUN_BIN, "compose", *self.files, "-p", self.name, *args], capture_output=True,
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
        assert db["volumes"][0] == "db_data:/var/lib/mysql"
        assert data["volumes"]["db_data"] == {"name": f"{p.name}_db_data"}
        assert db["volumes"][1].endswith("/initdb:/docker-entrypoint-initdb.d:ro")
        assert db["healthcheck"]["test"][0] == "CMD" and db["restart"] == "always"
        assert "links" in out.stderr
    if corpus == "envinterp":
        app = data["services"]["app"]
        assert app["image"] == "busybox" and app["ports"] == ["127.0.0.1:19311:80"]
        assert app["environment"] == {"FROM_FILE": "yes", "MODE": "production", "COST": "$$5"}  # $ written $$
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


def _wait(pred: Callable[[], object], timeout: float = 30.0) -> bool:
    """pred() turns true within timeout (polled every 0.3 s: each poll runs the engine's CLI)."""
    return bool(wait_for(pred, timeout, step=0.3))


def _running(name: str, restarts: int = 0) -> bool:
    """The container runs, after at least `restarts` restarts by its policy."""
    p = subprocess.run(["docker", "inspect", "-f", "{{.State.Running}} {{.RestartCount}}", name],
                       capture_output=True, text=True)
    running, _, count = p.stdout.strip().partition(" ")
    return running == "true" and count.isdigit() and int(count) >= restarts


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
    assert _wait(lambda: _running(web, restarts=1)), "restart: always did not bring web back"
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


# -- the corpus on Podman ------------------------------------------------------------------------------
# Address plan of these tests: CNIRUN_SUBNET_POOL 10.201.0.0/16 (10.201.N.0/24 per network), projects
# (and so networks) c17pxxxxxx, bridges cr17pxxxxxxN set through one more -f file. Host ports: the
# corpus' own (19310, 19311 on 127.0.0.1).

class PodmanProj(Proj):
    """A corpus file run on Podman, on this section's addresses and names."""

    def __init__(self, tmp: Path, corpus: str, nets: list[str]) -> None:
        super().__init__(tmp, corpus)
        token = secrets.token_hex(3)
        self.name = "c17p" + token
        self.bridges = [f"cr17p{token}{i}" for i in range(len(nets))]
        self.env.update(CNIRUN_ENGINE="podman", CNIRUN_SUBNET_POOL="10.201.0.0/16")
        # The corpus file stays as written; one more file names its networks' bridges (merged as compose does).
        override = self.dir / "c17p-bridges.yaml"
        override.write_text("networks:\n" + "".join(
            f"  {key}:\n    driver_opts: {{com.docker.network.bridge.name: {bridge}}}\n"
            for key, bridge in zip(nets, self.bridges)))
        self.files += ["-f", str(override)]

    def podman(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout)

    def sh(self, container: str, cmd: str) -> subprocess.CompletedProcess[str]:
        return self.podman("exec", container, "sh", "-c", cmd)

    def c(self, service: str, n: int = 1) -> str:
        return f"{self.name}-{service}-{n}"

    def ip(self, container: str, ifname: str = "eth0") -> str:
        out = self.sh(container, f"ip -4 -o addr show {ifname}").stdout.split()
        return out[3].split("/")[0] if len(out) > 3 else ""

    def resolves(self, container: str, name: str) -> list[str]:
        """The addresses `name` has from inside `container` (its resolv.conf: the network's resolver)."""
        out = self.sh(container, f"nslookup {name}").stdout
        return sorted(line.split()[1] for line in out.split("Name:", 1)[-1].splitlines()
                      if line.startswith("Address: ") and "#" not in line)

    def containers(self) -> list[str]:
        p = self.podman("ps", "-a", "--format", "{{.Names}}", "--filter",
                        f"label=com.docker.compose.project={self.name}")
        return sorted(p.stdout.split())

    def volumes(self) -> list[str]:
        return self.podman("volume", "ls", "-q", "--filter", f"label=com.docker.compose.project={self.name}") \
            .stdout.split()

    def assert_clean(self, keys: list[str]) -> None:
        assert self.containers() == [] and self.volumes() == []
        results = self.cache / "results"
        assert not results.exists() or list(results.iterdir()) == []
        assert not self.netconf.exists() or list(self.netconf.iterdir()) == []
        for bridge in self.bridges:
            assert not hostnet.link_exists(bridge)


def _podman_running(name: str) -> bool:
    p = subprocess.run(["podman", "inspect", "-f", "{{.State.Running}}", name], capture_output=True, text=True)
    return p.stdout.strip() == "true"


@pytest.fixture
def on_podman(tmp_path: Path) -> Iterator[object]:
    made: list[PodmanProj] = []

    def factory(corpus: str, nets: list[str] | None = None) -> PodmanProj:
        p = PodmanProj(tmp_path / f"p{len(made)}", corpus, nets or ["default"])
        made.append(p)
        return p

    yield factory
    for p in made:
        if p.containers() or p.volumes() or (p.netconf.exists() and list(p.netconf.iterdir())):
            p.cnirun("--profile", "debug", "down", "-v", "--remove-orphans", ok=False)
        p.podman("rmi", "-f", f"{p.name}-app", "t17-worker-image")


def _check_multinet(p: PodmanProj) -> None:
    proxy, api, db = p.c("proxy"), p.c("api"), p.c("db")
    api_front, api_back, db_ip = p.ip(api, "eth0"), p.ip(api, "eth1"), p.ip(db)
    assert api_front.startswith("10.201.") and api_back.startswith("10.201.") and db_ip.startswith("10.201.")
    assert api_front.rsplit(".", 1)[0] != api_back.rsplit(".", 1)[0]  # two networks, two /24s
    assert p.resolves(proxy, "api") == [api_front] and p.resolves(proxy, "backend-api") == [api_front]
    assert p.resolves(proxy, "db") == []  # not on a network proxy shares
    assert p.resolves(api, "db") == [db_ip] and p.resolves(db, "api") == [api_back]
    caps = int(p.sh(db, "grep CapEff /proc/self/status").stdout.split()[1], 16)
    assert caps & (1 << 12) and not caps & (1 << 27)  # cap_add NET_ADMIN, cap_drop MKNOD


def _check_profiles(p: PodmanProj) -> None:
    assert p.containers() == [p.c("app")]
    up = p.cnirun("--profile", "debug", "up", "-d")
    assert f"{p.c('app')}  Running" in up.stderr and f"{p.c('debug')}  Started" in up.stderr
    assert p.containers() == [p.c("app"), p.c("debug")]
    assert p.resolves(p.c("debug"), "app") == [p.ip(p.c("app"))]
    p.cnirun("--profile", "debug", "down", "-v")


def _check_replicas(p: PodmanProj) -> None:
    assert p.containers() == [p.c("front"), p.c("worker", 1), p.c("worker", 2)]
    both = sorted([p.ip(p.c("worker", 1)), p.ip(p.c("worker", 2))])
    assert len(set(both)) == 2 and p.resolves(p.c("front"), "worker") == both
    limit = p.podman("inspect", "-f", "{{.HostConfig.Memory}}", p.c("worker", 2)).stdout.strip()
    assert limit == str(32 * 1024 * 1024)  # deploy.resources.limits


def _check_secrets(p: PodmanProj) -> None:
    c = p.c("backend")
    assert p.sh(c, "cat /run/secrets/db_password /run/secrets/password_copy /etc/app.conf").stdout == \
        "topsecret\ntopsecret\nlevel=debug\n"
    assert p.sh(c, "cat /run/secrets/api_token; echo; cat /etc/motd").stdout == "tok-123\nwelcome to corpus\n"
    written = Path("/run/cnirun/compose") / p.name
    assert (written / "secrets" / "api_token").stat().st_mode & 0o777 == 0o400
    assert written.stat().st_mode & 0o777 == 0o700


def _check_envinterp(p: PodmanProj) -> None:
    env = p.sh(p.c("app"), "echo $MODE $COST $FROM_FILE").stdout.split()
    assert env == ["production", "$5", "yes"]
    assert fetch_local(19311) == "404"  # ${APP_PORT} published; httpd has no page to serve


def _check_extends(p: PodmanProj) -> None:
    worker = p.c("worker")
    assert p.sh(worker, "echo $LOG_LEVEL").stdout.strip() == "debug"
    assert p.podman("inspect", "-f", "{{index .Config.Labels \"tier\"}}", worker).stdout.strip() == "base"
    assert p.sh(worker, "cat /proc/1/comm").stdout.strip() == "podman-init"  # init: true from base.yaml
    assert p.resolves(worker, "web") == [p.ip(p.c("web"))]


def _check_include(p: PodmanProj) -> None:
    assert p.containers() == [p.c("app"), p.c("cache")]
    assert p.resolves(p.c("app"), "cache") == [p.ip(p.c("cache"))]


PODMAN_CORPUS = {
    "multinet": (["frontnet", "backnet"], _check_multinet),
    "profiles": (["default"], _check_profiles),
    "replicas": (["default"], _check_replicas),
    "secrets": (["default"], _check_secrets),
    "envinterp": (["default"], _check_envinterp),
    "extends": (["default"], _check_extends),
    "include": (["default"], _check_include),
}


@needs_root
@needs_plugins
@needs_podman
@pytest.mark.podman
@pytest.mark.slow
@pytest.mark.parametrize("corpus", sorted(PODMAN_CORPUS))
def test_corpus_up_down_on_podman(on_podman: object, corpus: str) -> None:
    """The corpus file up on Podman: what it asks for holds, services resolve each other by name, and
    down -v leaves no container, volume, network, bridge or attachment."""
    nets, check = PODMAN_CORPUS[corpus]
    p = on_podman(corpus, nets)  # type: ignore[operator]
    up = p.cnirun("up", "-d")
    assert "Traceback" not in up.stderr
    check(p)
    down = p.cnirun("down", "-v")
    assert "Traceback" not in down.stderr
    p.assert_clean(nets)
    if corpus == "secrets":
        assert not (Path("/run/cnirun/compose") / p.name).exists()


@needs_root
@needs_plugins
@needs_podman
@pytest.mark.podman
@pytest.mark.slow
def test_build_stop_start_exec_and_commands_on_podman(on_podman: object) -> None:
    """buildsvc on Podman: both images built through podman build (args, image: tag), the peer by name and
    over the network, podman stop/start keeps the address, exec's status, stop/start/restart, logs, a pull
    with no registry is one line; down -v leaves nothing."""
    p = on_podman("buildsvc")  # type: ignore[operator]
    up = p.cnirun("up", "-d")
    assert up.stderr.count("Building") == 2, up.stderr
    app, worker = p.c("app"), p.c("worker")
    assert p.sh(app, "cat /version").stdout.strip() == "1.2.3"
    assert p.sh(worker, "cat /version").stdout.strip() == "dev"
    assert p.resolves(worker, "app") == [p.ip(app)]
    assert p.sh(worker, "wget -qO- http://app:8000/version").stdout.strip() == "1.2.3"
    ip = p.ip(app)
    assert p.podman("stop", "-t", "1", app).returncode == 0
    assert p.podman("start", app).returncode == 0
    assert _wait(lambda: _podman_running(app)) and p.ip(app) == ip
    out = p.cnirun("exec", "worker", "sh", "-c", "echo from-exec; exit 3", ok=False)
    assert out.returncode == 3 and "from-exec" in out.stdout
    p.cnirun("stop", "worker")
    assert not _podman_running(worker)
    p.cnirun("start", "worker")
    assert _podman_running(worker)
    p.cnirun("restart", "worker")
    assert p.sh(worker, "wget -qO- http://app:8000/version").stdout.strip() == "1.2.3"
    logs = p.cnirun("logs", "app").stdout
    assert logs == "" or logs.startswith(app)
    pull = p.cnirun("pull", ok=False)
    assert pull.returncode == 1 and "Traceback" not in pull.stderr  # no registry: one line
    p.cnirun("down", "-v")
    p.assert_clean(["default"])


@needs_root
@needs_plugins
@needs_podman
@pytest.mark.podman
@pytest.mark.slow
def test_webdb_restart_always_on_podman(on_podman: object) -> None:
    """restart: always on Podman brings web back after its process is killed behind podman's back, in
    the same netns with the same address; db still resolves and reaches it; down -v leaves nothing."""
    p = on_podman("webdb")  # type: ignore[operator]
    p.cnirun("up", "-d")
    web, db = p.c("web"), p.c("db")
    ip = p.ip(web)
    assert p.resolves(db, "web") == [ip]
    pid = p.podman("inspect", "-f", "{{.State.Pid}}", web).stdout.strip()
    os.kill(int(pid), 9)

    def back() -> bool:
        state = p.podman("inspect", "-f", "{{.State.Running}} {{.RestartCount}} {{.State.Pid}}", web).stdout.split()
        return state[:1] == ["true"] and state[2] != pid

    assert _wait(back, 30), "restart: always did not bring web back"
    assert p.ip(web) == ip and p.resolves(db, "web") == [ip]
    assert "404" in p.sh(db, "wget -qO- http://web/ 2>&1").stdout  # reachable: httpd has no page to serve
    p.cnirun("down", "-v")
    p.assert_clean(["default"])


@needs_root
@needs_plugins
@needs_podman
@pytest.mark.podman
def test_what_podman_lacks_is_one_warning_and_anonymous_volumes_go(on_podman: object) -> None:
    """A log driver Podman 4.3 does not have (syslog) is one located WARN line and left out with its options
    (podman's default driver, `logs` works); an anonymous volume goes with its container on down."""
    p = on_podman("profiles")  # type: ignore[operator]
    (p.dir / "compose.yaml").write_text("""
services:
  app:
    image: busybox
    command: ["sh", "-c", "echo started; exec sleep 3600"]
    init: true
    volumes: [/scratch]
    logging: {driver: syslog, options: {tag: app}}
""")
    up = p.cnirun("up", "-d")
    warns = [line for line in up.stderr.splitlines() if line.startswith("WARN")]
    assert len(warns) == 1 and "services.app.logging.driver: podman has no syslog log driver" in warns[0], up.stderr
    assert "compose.yaml:8:" in warns[0]  # located as compose's other warnings
    app = p.c("app")
    assert p.podman("inspect", "-f", "{{.HostConfig.LogConfig.Type}}", app).stdout.strip() in ("k8s-file", "journald")
    assert _wait(lambda: "started" in p.cnirun("logs", "app").stdout, 10)
    mounts = p.podman("inspect", "-f", "{{range .Mounts}}{{.Name}} {{end}}", app).stdout.split()
    assert len(mounts) == 1 and p.podman("volume", "exists", mounts[0]).returncode == 0
    p.cnirun("down", "-v")
    p.assert_clean(["default"])
    assert p.podman("volume", "exists", mounts[0]).returncode == 1
