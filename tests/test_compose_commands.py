"""compose's everyday commands on real engines (cnirun.compose.commands): restart's order.

Address plan: CNIRUN_SUBNET_POOL 10.243.0.0/18 here, 10.243.64.0/18 in test_compose_logs,
10.243.128.0/18 in test_compose_down (which take Proj and engine_proj from here; each
module's SUBNET_POOL, as parallel workers may run them at once); projects c26cxxxxxx.
Each test owns its NETCONFPATH, cache and IPAM dirs and checks that `down -v` left nothing.
"""
from __future__ import annotations

import secrets
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from conftest import needs_docker, needs_plugins, needs_podman, needs_root
from test_compose_lifecycle import SLEEP_WITH_INIT, Proj as LifecycleProj

pytestmark = [needs_root, needs_plugins]
SUBNET_POOL = "10.243.0.0/18"


class Proj(LifecycleProj):
    """test_compose_lifecycle's project with this suite's names and addresses, on `engine`'s CLI."""

    def __init__(self, tmp: Path, engine: str = "docker", pool: str = SUBNET_POOL) -> None:
        super().__init__(tmp)
        self.name = "c26c" + secrets.token_hex(3)
        self.cli = engine
        self.env.update(CNIRUN_SUBNET_POOL=pool, CNIRUN_ENGINE=engine)

    def ids(self) -> dict[str, str]:
        p = subprocess.run([self.cli, "ps", "-a", "--no-trunc", "--format", "{{.Names}} {{.ID}}", "--filter",
                            f"label=com.docker.compose.project={self.name}"], capture_output=True, text=True)
        return dict(line.split() for line in p.stdout.splitlines())

    def inspect(self, container: str, template: str) -> str:
        return subprocess.run([self.cli, "inspect", "-f", template, container], capture_output=True,
                              text=True).stdout.strip()

    def volume_exists(self, name: str) -> bool:
        return subprocess.run([self.cli, "volume", "inspect", name], capture_output=True).returncode == 0

    def assert_clean(self) -> None:
        if self.cli == "docker":
            super().assert_clean()
            return
        assert self.ids() == {}
        vols = subprocess.run([self.cli, "volume", "ls", "-q", "--filter",
                               f"label=com.docker.compose.project={self.name}"], capture_output=True, text=True)
        assert vols.stdout.split() == []
        assert self.attachments() == []


def project(tmp_path: Path, engine: str = "docker", pool: str = SUBNET_POOL) -> Iterator[Proj]:
    """A Proj; whatever the test left is taken down (-v, orphans too) at the end."""
    p = Proj(tmp_path, engine, pool)
    yield p
    if p.ids() or ((tmp_path / "net.d").exists() and list((tmp_path / "net.d").iterdir())):
        if p.file.exists():
            p.cnirun("down", "-v", "--remove-orphans", ok=False)


# Docker and Podman, each marked and skipped as the suite's engine tests are.
ENGINES = [pytest.param("docker", marks=[needs_docker, pytest.mark.docker]),
           pytest.param("podman", marks=[needs_podman, pytest.mark.podman])]


@pytest.fixture(params=ENGINES)
def engine_proj(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Proj]:
    """A Proj on each engine, in the requesting module's SUBNET_POOL; what the test left is taken down."""
    yield from project(tmp_path, request.param, request.module.SUBNET_POOL)


def _started_lines(stderr: str, names: list[str]) -> list[str]:
    """The names in the order their ` Container NAME  Started` lines came."""
    out = []
    for line in stderr.splitlines():
        for n in names:
            if line.strip() == f"Container {n}  Started":
                out.append(n)
    return out


def test_restart_follows_dependency_order(engine_proj: Proj) -> None:
    """restart restarts dependencies first (compose's order, not the names' alphabet): zdb before
    mid before app, each started after the one it depends on; `restart zdb` brings along the
    service depending on it with restart: true (mid), not app; --no-deps restarts zdb alone."""
    proj = engine_proj
    proj.write(f"""
services:
  app:
    image: busybox
    command: {SLEEP_WITH_INIT}
    depends_on: [mid]
  mid:
    image: busybox
    command: {SLEEP_WITH_INIT}
    depends_on:
      zdb: {{condition: service_started, restart: true}}
  zdb:
    image: busybox
    command: {SLEEP_WITH_INIT}
""")
    proj.cnirun("up", "-d")
    names = [proj.c("zdb"), proj.c("mid"), proj.c("app")]
    p = proj.cnirun("restart")
    assert _started_lines(p.stderr, names) == names, p.stderr
    started = [proj.inspect(n, "{{.State.StartedAt}}") for n in names]
    assert started == sorted(started), started  # RFC 3339 with nanoseconds, all in UTC: sortable
    before = {n: proj.inspect(n, "{{.State.StartedAt}}") for n in names}
    p = proj.cnirun("restart", "zdb")
    assert _started_lines(p.stderr, names) == names[:2], p.stderr
    assert proj.inspect(proj.c("app"), "{{.State.StartedAt}}") == before[proj.c("app")]
    p = proj.cnirun("restart", "--no-deps", "zdb")
    assert _started_lines(p.stderr, names) == names[:1], p.stderr
    if proj.cli == "docker":  # same networks after the restarts: app still reaches zdb by name
        assert "1 packets received" in proj.sh(proj.c("app"), "ping -c1 -W2 zdb").stdout
    proj.cnirun("down", "-v")
    proj.assert_clean()


def test_podman_compose_flags(engine_proj: Proj) -> None:
    """What a podman-compose user types works: up's --no-color, --quiet-pull, -t, -V, --no-recreate (a changed
    service keeps its container), --no-build (a missing build: image is one line, nothing made for it),
    --pull-always (exclusive with another --pull, as --force-recreate with --no-recreate), logs --names,
    down -t; down -v leaves nothing."""
    proj = engine_proj
    service = f"""
services:
  app:
    image: busybox
    command: {SLEEP_WITH_INIT}
"""
    proj.write(service)
    proj.cnirun("up", "-d", "--no-color", "--quiet-pull", "-t", "1")
    first = proj.ids()[proj.c("app")]
    proj.write(service.replace("3600", "3601"))
    kept = proj.cnirun("up", "-d", "--no-recreate")
    assert proj.ids()[proj.c("app")] == first and f"{proj.c('app')}  Running" in kept.stderr
    proj.cnirun("up", "-d", "-V", "-t", "1")
    assert proj.ids()[proj.c("app")] != first  # changed: recreated
    for args, words in ((["--force-recreate", "--no-recreate"], "--force-recreate and --no-recreate"),
                        (["--pull-always", "--pull", "never"], "--pull-always and --pull never"),
                        (["--build", "--no-build"], "--build and --no-build")):
        bad = proj.cnirun("up", "-d", *args, ok=False)
        assert bad.returncode != 0 and words in bad.stderr and "Traceback" not in bad.stderr, bad.stderr
    (proj.dir / "Dockerfile").write_text("FROM busybox\n")
    proj.write(service.replace("3600", "3601") + f"  built:\n    build: .\n    image: {proj.name}-img:none\n")
    nobuild = proj.cnirun("up", "-d", "--no-build", ok=False)
    assert nobuild.returncode == 1 and nobuild.stderr.splitlines()[-1] == (
        f"cnirun: service built: image {proj.name}-img:none is missing and --no-build says not to build it: "
        "build it first (compose build)"), nobuild.stderr
    assert sorted(proj.ids()) == [proj.c("app")]
    proj.write(service.replace("3600", "3601"))
    assert proj.cnirun("logs", "--names", "app").returncode == 0
    proj.cnirun("down", "-v", "-t", "1")
    proj.assert_clean()
