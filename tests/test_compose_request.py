"""A service's container as compose asks the engine for it (cnirun.compose.request), on real engines:
the service key runtime:, what of a service the engine lacks, and the engine's refusal to start it.

Address plan: CNIRUN_SUBNET_POOL 10.244.0.0/16, projects c26dxxxxxx (iproj: 10.247.0.0/16,
c26ixxxxxx). Each test owns its NETCONFPATH, cache and IPAM dirs and checks that `down -v` (or the
failed `up`) left nothing.
"""
from __future__ import annotations

import secrets
import subprocess
import time
from pathlib import Path
from typing import Iterator

import pytest

from conftest import HAVE_PODMAN, needs_docker, needs_plugins, needs_root
from test_compose_commands import Proj, project
from test_compose_lifecycle import SLEEP_WITH_INIT

pytestmark = [needs_root, needs_plugins, needs_docker]

ENGINES = [
    pytest.param("docker", marks=pytest.mark.docker),
    pytest.param("podman", marks=[pytest.mark.podman, pytest.mark.skipif(not HAVE_PODMAN, reason="no podman")]),
]
# The OCI runtime each engine's inspect names a container's by.
RUNTIME_OF = {"docker": "{{.HostConfig.Runtime}}", "podman": "{{.OCIRuntime}}"}


@pytest.fixture(params=ENGINES)
def proj(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Proj]:
    """test_compose_commands' project on the engine, with this suite's names and addresses; what the test
    left is taken down after it."""
    for p in project(tmp_path, request.param):
        p.name = "c26d" + secrets.token_hex(3)
        p.env.update(CNIRUN_SUBNET_POOL="10.244.0.0/16")
        yield p


@pytest.fixture(params=ENGINES)
def iproj(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Proj]:
    """As proj, with the names and addresses of the tests of what an engine lacks: projects c26ixxxxxx,
    CNIRUN_SUBNET_POOL 10.247.0.0/16."""
    for p in project(tmp_path, request.param):
        p.name = "c26i" + secrets.token_hex(3)
        p.env.update(CNIRUN_SUBNET_POOL="10.247.0.0/16")
        yield p


def test_runtime_runs_the_container_under_it_attached(proj: Proj) -> None:
    """runtime: runc: the engine runs the container under runc, on its CNI network with an address of the
    project's subnet; a service without runtime: keeps the engine's default."""
    proj.write(f"""
services:
  web:
    image: busybox
    command: {SLEEP_WITH_INIT}
    runtime: runc
  plain:
    image: busybox
    command: {SLEEP_WITH_INIT}
""")
    proj.cnirun("up", "-d")
    web, plain = proj.c("web"), proj.c("plain")
    assert proj.inspect(web, RUNTIME_OF[proj.cli]) == "runc"
    if proj.cli == "docker":
        assert proj.inspect(plain, RUNTIME_OF[proj.cli]) == "runc"  # dockerd's default, not asked for
    addr = proj.cnirun("exec", "web", "ip", "-4", "-o", "addr", "show", "eth0").stdout
    assert " inet 10.244." in addr, addr
    assert len(proj.attachments()) == 2
    proj.cnirun("down", "-v")
    proj.assert_clean()


def test_an_unknown_runtime_fails_the_up_and_leaves_nothing(proj: Proj) -> None:
    """runtime: naming no runtime the engine knows: `up` refuses before it makes anything, in one line
    naming the runtimes the engine has (Docker: all of them; Podman: its default), and leaves nothing."""
    proj.write(f"""
services:
  web:
    image: busybox
    command: {SLEEP_WITH_INIT}
    runtime: c26dnosuch
""")
    p = proj.cnirun("up", "-d", ok=False)
    assert p.returncode == 1
    lines = p.stderr.splitlines()
    daemon = "dockerd" if proj.cli == "docker" else "podman"
    assert len(lines) == 1 and lines[0].startswith(f"cnirun: service web: {daemon} has no runtime 'c26dnosuch' ("), \
        p.stderr
    assert "runc" in lines[0], p.stderr
    proj.assert_clean()


def test_healthcheck_start_interval_the_engine_lacks_is_warned_about_and_left_out(iproj: Proj) -> None:
    """healthcheck.start_interval on an engine without it (dockerd below API 1.44, Podman): one WARN line
    naming the key, the rest of the healthcheck works (Docker: the container turns healthy), and `config`
    keeps it."""
    iproj.write("""
services:
  web:
    image: busybox
    command: ["sleep", "3600"]
    init: true
    healthcheck: {test: ["CMD", "true"], interval: 1s, start_interval: 500ms}
""")
    assert "start_interval: 500ms" in iproj.cnirun("config").stdout
    if iproj.cli == "docker":
        api = subprocess.run(["docker", "version", "-f", "{{.Server.APIVersion}}"], capture_output=True, text=True)
        if tuple(int(x) for x in api.stdout.strip().split(".")) >= (1, 44):
            pytest.skip("this dockerd has StartInterval")
    up = iproj.cnirun("up", "-d")
    warns = [line for line in up.stderr.splitlines() if "start_interval" in line]
    assert len(warns) == 1 and warns[0].startswith("WARN ") and "healthcheck start interval" in warns[0], up.stderr
    if iproj.cli == "docker":  # Podman runs healthchecks from systemd timers, which this host may lack
        deadline = time.monotonic() + 30
        while iproj.inspect(iproj.c("web"), "{{.State.Health.Status}}") != "healthy" and time.monotonic() < deadline:
            time.sleep(0.2)
        assert iproj.inspect(iproj.c("web"), "{{.State.Health.Status}}") == "healthy"
    iproj.cnirun("down", "-v")
    iproj.assert_clean()


def test_a_container_the_engine_fails_to_start_is_one_line_with_the_engines_reason(iproj: Proj) -> None:
    """A command the image does not have: the engine refuses to start the container; `up` says so in one
    line carrying the engine's reason (Podman's own Error line is not printed besides), and leaves nothing."""
    iproj.write("""
services:
  web:
    image: busybox
    command: ["/c26inosuch"]
""")
    p = iproj.cnirun("up", "-d", ok=False)
    assert p.returncode == 1
    errors = [line for line in p.stderr.splitlines() if "c26inosuch" in line]
    assert len(errors) == 1 and errors[0].startswith(f"cnirun: service web: container {iproj.c('web')} failed to "
                                                     "start: "), p.stderr
    assert "no such file or directory" in errors[0], p.stderr
    iproj.assert_clean()
