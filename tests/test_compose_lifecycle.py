"""compose up's lifecycle flags on real dockerd and real plugins (issue 17, compose parts of 14):
--force-recreate, --no-deps, --remove-orphans, --scale and replicas changes,
depends_on service_completed_successfully, --pull, and ps --format/-q.

Address plan: CNIRUN_SUBNET_POOL 10.193.128.0/17 (10.236.16.0/20 for projects brought up at
once on one NETCONFPATH), projects t17zxxxxxx. Each
test owns its NETCONFPATH, cache and IPAM dirs and checks that `down -v` left
nothing (containers, volumes, networks, attachments, bridges).
"""
from __future__ import annotations

import ipaddress
import json
import os
import secrets
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from conftest import CNIRUN_BIN
from conftest import needs_docker, needs_plugins, needs_root, run_with_a_terminal

from cnirun.core.paths import state_dir
from cnirun.netstore import hostnet
from cnirun.netstore.networks import auto_bridge_name

REPO = Path(__file__).resolve().parent.parent

pytestmark = [needs_root, needs_plugins, needs_docker, pytest.mark.docker]

# `command: {SLEEP_WITH_INIT}` in a service (4-space indent): it runs until stopped, and with init
# (docker-init) the stop's SIGTERM ends sleep at once; sleep as PID 1 ignores it, so each stop would
# wait the 10 s grace period for the SIGKILL.
SLEEP_WITH_INIT = '["sleep", "3600"]\n    init: true'


class Proj:
    def __init__(self, tmp: Path) -> None:
        self.name = "t17z" + secrets.token_hex(3)
        self.dir = tmp
        self.file = tmp / "compose.yaml"
        self.env = dict(os.environ, NETCONFPATH=str(tmp / "net.d"), CNI_CACHE_DIR=str(tmp / "cache"),
                        CNIRUN_SUBNET_POOL="10.193.128.0/17", CNIRUN_IPAM_DATA_DIR=str(tmp / "ipam"),
                        CNI_PATH="/usr/lib/cni", CNIRUN_ENGINE="docker")
        self.env.pop("COMPOSE_PROFILES", None)

    def write(self, text: str) -> None:
        self.file.write_text(text)

    def cnirun(self, *args: str, ok: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        p = subprocess.run([CNIRUN_BIN, "compose", "-f", str(self.file), "-p", self.name, *args], capture_output=True,
                           text=True, env=self.env, timeout=timeout, cwd=self.dir)
        if ok:
            assert p.returncode == 0, p.stderr
        return p

    def ids(self) -> dict[str, str]:
        """Container name -> ID of the project's containers, running or not."""
        p = subprocess.run(["docker", "ps", "-a", "--no-trunc", "--format", "{{.Names}} {{.ID}}", "--filter",
                            f"label=com.docker.compose.project={self.name}"], capture_output=True, text=True)
        return dict(line.split() for line in p.stdout.splitlines())

    def sh(self, container: str, cmd: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["docker", "exec", container, "sh", "-c", cmd], capture_output=True, text=True,
                              timeout=30)

    def c(self, service: str, n: int = 1) -> str:
        return f"{self.name}-{service}-{n}"

    def attachments(self) -> list[str]:
        results = self.dir / "cache" / "results"
        return sorted(p.name for p in results.iterdir()) if results.exists() else []

    def assert_clean(self) -> None:
        assert self.ids() == {}
        vols = subprocess.run(["docker", "volume", "ls", "-q", "--filter",
                               f"label=com.docker.compose.project={self.name}"], capture_output=True, text=True)
        assert vols.stdout.split() == []
        assert self.attachments() == []
        netconf = self.dir / "net.d"
        assert not netconf.exists() or list(netconf.iterdir()) == []
        assert not hostnet.link_exists(auto_bridge_name(f"{self.name}_default"))
        assert not (Path(state_dir(self.env)) / "compose" / self.name).exists()  # the configs up wrote


@pytest.fixture
def proj(tmp_path: Path) -> Iterator[Proj]:
    p = Proj(tmp_path)
    yield p
    if p.ids() or ((tmp_path / "net.d").exists() and list((tmp_path / "net.d").iterdir())):
        if p.file.exists():
            p.cnirun("down", "-v", "--remove-orphans", ok=False)


def test_force_recreate_and_no_deps(proj: Proj) -> None:
    """An unchanged container is left alone; --force-recreate replaces it (new container, peers still
    resolve it); --no-deps SERVICE starts that service only."""
    proj.write(f"""
services:
  db:
    image: busybox
    command: {SLEEP_WITH_INIT}
  web:
    image: busybox
    command: {SLEEP_WITH_INIT}
    depends_on: [db]
""")
    proj.cnirun("up", "-d")
    first = proj.ids()
    assert sorted(first) == [proj.c("db"), proj.c("web")]
    again = proj.cnirun("up", "-d")
    assert proj.ids() == first and f"{proj.c('web')}  Running" in again.stderr
    proj.cnirun("up", "-d", "--force-recreate", "--no-deps", "web")
    after = proj.ids()
    assert after[proj.c("db")] == first[proj.c("db")] and after[proj.c("web")] != first[proj.c("web")]
    # The new web has an address the old db knows, and one attachment per container remains.
    assert "1 packets received" in proj.sh(proj.c("db"), "ping -c1 -W2 web").stdout
    assert "1 packets received" in proj.sh(proj.c("web"), "ping -c1 -W2 db").stdout
    assert len(proj.attachments()) == 2
    proj.cnirun("up", "-d", "--force-recreate")
    recreated = proj.ids()
    assert all(recreated[n] != after[n] for n in after)
    proj.cnirun("down", "-v")
    proj.assert_clean()

    proj.cnirun("up", "-d", "--no-deps", "web")
    assert sorted(proj.ids()) == [proj.c("web")]
    proj.cnirun("up", "-d", "web")  # with its dependencies
    assert sorted(proj.ids()) == [proj.c("db"), proj.c("web")]
    proj.cnirun("down", "-v")
    proj.assert_clean()


def test_remove_orphans_on_up_and_down(proj: Proj) -> None:
    """A service dropped from the file is an orphan: warned about, removed by --remove-orphans, and
    forgotten by its peers' hosts files."""
    both = f"""
services:
  app:
    image: busybox
    command: {SLEEP_WITH_INIT}
  old:
    image: busybox
    command: {SLEEP_WITH_INIT}
"""
    proj.write(both)
    proj.cnirun("up", "-d")
    assert proj.sh(proj.c("app"), "nslookup old").returncode == 0  # by DNS (cnirun.dns)
    proj.write(f"services:\n  app:\n    image: busybox\n    command: {SLEEP_WITH_INIT}\n")
    warned = proj.cnirun("up", "-d")
    assert f"Found orphan containers ({proj.c('old')})" in warned.stderr
    assert proj.c("old") in proj.ids()
    proj.cnirun("up", "-d", "--remove-orphans")
    assert sorted(proj.ids()) == [proj.c("app")] and len(proj.attachments()) == 1
    assert proj.sh(proj.c("app"), "nslookup old").returncode != 0

    proj.write(both)
    proj.cnirun("up", "-d")
    proj.write(f"services:\n  app:\n    image: busybox\n    command: {SLEEP_WITH_INIT}\n")
    # down without the flag keeps the orphan (and the network it uses), as docker compose does
    kept = proj.cnirun("down", "-v")
    assert f"Found orphan containers ({proj.c('old')})" in kept.stderr
    assert sorted(proj.ids()) == [proj.c("old")] and len(proj.attachments()) == 1
    assert "Resource is still in use" in kept.stderr
    proj.cnirun("down", "-v", "--remove-orphans")
    proj.assert_clean()


def test_scale_down_keeps_the_lowest_numbers(proj: Proj) -> None:
    """--scale and a changed replica count remove the highest-numbered containers only; the others
    keep running untouched; the front's hosts file follows."""
    proj.write(f"""
services:
  front:
    image: busybox
    command: {SLEEP_WITH_INIT}
  worker:
    image: busybox
    command: {SLEEP_WITH_INIT}
    scale: 2
""")
    proj.cnirun("up", "-d")
    first = proj.ids()
    assert sorted(first) == [proj.c("front"), proj.c("worker", 1), proj.c("worker", 2)]

    def worker_ips() -> set[str]:
        out = proj.sh(proj.c("front"), "nslookup worker").stdout  # the network's resolver (cnirun.dns)
        return {line.split()[1] for line in out.splitlines() if line.startswith("Address: ")}

    assert len(worker_ips()) == 2
    proj.cnirun("up", "-d", "--scale", "worker=1")
    assert proj.ids() == {n: i for n, i in first.items() if n != proj.c("worker", 2)}
    assert len(worker_ips()) == 1 and len(proj.attachments()) == 2
    proj.cnirun("up", "-d", "--scale", "worker=3")
    assert sorted(proj.ids()) == sorted([*first, proj.c("worker", 3)])
    assert proj.ids()[proj.c("worker", 1)] == first[proj.c("worker", 1)]
    assert len(worker_ips()) == 3
    # The file says 1 now: worker-2 and -3 go, worker-1 (same config but its count) stays.
    proj.write(proj.file.read_text().replace("scale: 2", "deploy: {replicas: 1}"))
    proj.cnirun("up", "-d")
    assert proj.ids() == {n: i for n, i in first.items() if n != proj.c("worker", 2)}
    assert len(worker_ips()) == 1
    bad = proj.cnirun("up", "-d", "--scale", "nosuch=2", ok=False)
    assert bad.returncode == 1 and bad.stderr.startswith("cnirun: ") and "no such service" in bad.stderr
    proj.cnirun("down", "-v")
    proj.assert_clean()


def test_depends_on_completed_successfully(proj: Proj) -> None:
    """The app starts after its init job exited 0. An init that exits non-zero stops up (exit 1, compose's
    message) before app is made, and, as compose does, stays (exited, with its exit code) for inspection
    rather than being rolled back; down removes it and leaves nothing."""
    text = """
services:
  init:
    image: busybox
    command: ["sh", "-c", "sleep 1; exit CODE"]
  app:
    image: busybox
    command: {sleep}
    depends_on:
      init: {{condition: service_completed_successfully}}
    configs: [{{source: motd, target: /etc/motd}}]
configs:
  motd: {{content: hello}}
""".format(sleep=SLEEP_WITH_INIT)
    proj.write(text.replace("CODE", "0"))
    up = proj.cnirun("up", "-d")
    assert up.stderr.index(f"{proj.c('init')}  Exited") < up.stderr.index(f"{proj.c('app')}  Started")
    assert subprocess.run(["docker", "inspect", "-f", "{{.State.Running}}", proj.c("app")], capture_output=True,
                          text=True).stdout.strip() == "true"
    assert proj.sh(proj.c("app"), "cat /etc/motd").stdout == "hello"
    proj.cnirun("down", "-v")
    proj.assert_clean()

    proj.write(text.replace("CODE", "3"))
    failed = proj.cnirun("up", "-d", ok=False)
    assert failed.returncode == 1 and "Traceback" not in failed.stderr
    assert failed.stderr.splitlines()[-1] == "cnirun: service \"init\" didn't complete successfully: exit 3"
    assert list(proj.ids()) == [proj.c("init")]
    assert subprocess.run(["docker", "inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", proj.c("init")],
                          capture_output=True, text=True).stdout.strip() == "exited 3"
    proj.cnirun("down", "-v")
    proj.assert_clean()


def test_pull_policies_without_a_registry(proj: Proj) -> None:
    """--pull never/missing with the local busybox reach no registry; a missing image under never is a
    one-line refusal; an unreachable registry is a one-line error; nothing is left behind either way."""
    proj.write(f"services:\n  app:\n    image: busybox:latest\n    command: {SLEEP_WITH_INIT}\n")
    for policy in ("never", "missing"):
        up = proj.cnirun("up", "-d", "--pull", policy)
        assert "Pulling" not in up.stderr
        proj.cnirun("down", "-v")
        proj.assert_clean()
    bad = proj.cnirun("up", "-d", "--pull", "sometimes", ok=False)
    assert bad.returncode == 1 and bad.stderr.startswith("cnirun: ") and "missing, always or never" in bad.stderr

    proj.write(f"services:\n  app:\n    image: 127.0.0.1:1/nope:latest\n    command: {SLEEP_WITH_INIT}\n")
    never = proj.cnirun("up", "-d", "--pull", "never", ok=False)
    assert never.returncode == 1 and "pull policy is never" in never.stderr.splitlines()[-1]
    for args in (("--pull", "missing"), ("--pull", "always"), ()):
        r = proj.cnirun("up", "-d", *args, ok=False, timeout=60)
        last = r.stderr.splitlines()[-1]
        assert r.returncode == 1 and last.startswith("cnirun: service app: cannot pull 127.0.0.1:1/nope:latest")
        assert "Traceback" not in r.stderr
        proj.assert_clean()
    # pull_policy in the file is honoured the same way.
    proj.write(f"services:\n  app:\n    image: 127.0.0.1:1/nope:latest\n    pull_policy: never\n"
               f"    command: {SLEEP_WITH_INIT}\n")
    r = proj.cnirun("up", "-d", ok=False)
    assert r.returncode == 1 and "pull policy is never" in r.stderr
    proj.assert_clean()


def test_ps_formats(proj: Proj) -> None:
    proj.write(f"""
services:
  app:
    image: busybox
    command: {SLEEP_WITH_INIT}
  job:
    image: busybox
    command: ["true"]
""")
    proj.cnirun("up", "-d")
    ids = proj.ids()
    table = proj.cnirun("ps").stdout.splitlines()
    assert table[0].split() == ["NAME", "IMAGE", "SERVICE", "STATUS", "HEALTH"]
    # job exits at once: only running containers unless -a.
    assert [line.split()[0] for line in table[1:]] == [proj.c("app")]
    rows = json.loads(proj.cnirun("ps", "-a", "--format", "json").stdout)
    assert [(r["name"], r["service"], r["project"], r["number"]) for r in rows] == \
        [(proj.c("app"), "app", proj.name, 1), (proj.c("job"), "job", proj.name, 1)]
    assert rows[0]["id"] == ids[proj.c("app")] and rows[0]["state"] == "running" and rows[1]["state"] == "exited"
    assert proj.cnirun("ps", "-a", "--format", "{{.Service}}:{{.State}}").stdout == "app:running\njob:exited\n"
    head = proj.cnirun("ps", "--format", "table {{.Name}}\\t{{.Service}}").stdout.splitlines()
    assert head[0].split() == ["NAME", "SERVICE"] and head[1].split() == [proj.c("app"), "app"]
    assert proj.cnirun("ps", "-q").stdout == ids[proj.c("app")][:12] + "\n"
    bad = proj.cnirun("ps", "--format", "{{.Nope}}", ok=False)
    assert bad.returncode == 1 and bad.stderr.startswith("cnirun: ") and "Nope" in bad.stderr
    assert "Traceback" not in bad.stderr
    bad = proj.cnirun("ps", "--format", "yaml", ok=False)
    assert bad.returncode == 1 and "unknown --format" in bad.stderr
    proj.cnirun("down", "-v")
    proj.assert_clean()


def test_up_progress_on_a_terminal_only(proj: Proj) -> None:
    """On a terminal `up` rewrites one progress line per container; in a pipe its output is plain lines."""
    proj.write(f"services:\n  a:\n    image: busybox\n    command: {SLEEP_WITH_INIT}\n"
               f"  b:\n    image: busybox\n    command: {SLEEP_WITH_INIT}\n")
    p, text = run_with_a_terminal([CNIRUN_BIN, "compose", "-f", str(proj.file), "-p", proj.name, "up", "-d"], proj.env,
                                  proj.dir)
    assert p.returncode == 0, text
    assert f"compose up [1/2] {proj.c('a')}" in text and f"compose up [2/2] {proj.c('b')}" in text
    assert f"\r\x1b[2K Container {proj.c('b')}  Started" in text.replace("\r\n", "\n")  # cleared before each line
    plain = proj.cnirun("up", "-d")
    assert "\x1b" not in plain.stderr and "\r" not in plain.stderr
    assert plain.stderr.splitlines()[-1] == f" Container {proj.c('b')}  Running"
    proj.cnirun("down", "-v")
    proj.assert_clean()


def test_concurrent_ups_get_networks_of_their_own(tmp_path: Path) -> None:
    """Six projects brought up at once on one NETCONFPATH each get a default network on a subnet of its
    own, and their containers an address in it: the networks are chosen and written under one lock."""
    netconf = tmp_path / "net.d"
    projs = []
    for i in range(6):
        (tmp_path / f"p{i}").mkdir()
        p = Proj(tmp_path / f"p{i}")
        p.env.update(NETCONFPATH=str(netconf), CNIRUN_SUBNET_POOL="10.236.16.0/20")
        p.write(f"services:\n  app:\n    image: busybox\n    command: {SLEEP_WITH_INIT}\n")
        projs.append(p)
    try:
        ups = [subprocess.Popen([CNIRUN_BIN, "compose", "-f", str(p.file), "-p", p.name, "up", "-d"], cwd=p.dir,
                                env=p.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
               for p in projs]
        errors = [u.communicate(timeout=120)[1] for u in ups]
        assert [u.returncode for u in ups] == [0] * 6, errors
        subnets = []
        for p in projs:
            conf = json.loads((netconf / f"{p.name}_default.conflist").read_text())
            subnet = conf["plugins"][0]["ipam"]["ranges"][0][0]["subnet"]
            addr = p.sh(p.c("app"), "ip -4 -o addr show eth0").stdout.split()[3]
            assert ipaddress.ip_interface(addr).network == ipaddress.ip_network(subnet), (addr, subnet)
            subnets.append(subnet)
        assert len(set(subnets)) == 6 and all(s.startswith("10.236.") for s in subnets), subnets
    finally:
        downs = [p.cnirun("down", "-v", ok=False) for p in projs]
    assert [d.returncode for d in downs] == [0] * 6, [d.stderr for d in downs]
    for p in projs:
        p.assert_clean()
    assert not netconf.exists() or list(netconf.iterdir()) == []
