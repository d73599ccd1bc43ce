"""compose up recreating a service's container (cnirun.compose.up, cnirun.compose.anon_volumes), on real
engines: the new container takes the old one's anonymous volumes unless -V.

Address plan: CNIRUN_SUBNET_POOL 10.247.0.0/16, projects c26ixxxxxx. Each test owns its NETCONFPATH,
cache and IPAM dirs and checks that `down -v` left nothing, the anonymous volumes it saw included.
"""
from __future__ import annotations

import json
import secrets
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from conftest import CNIRUN_BIN
from test_compose_commands import ENGINES, Proj, project
from test_compose_lifecycle import SLEEP_WITH_INIT

SUBNET_POOL = "10.247.0.0/16"


@pytest.fixture(params=ENGINES)
def proj(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Proj]:
    """A project on each engine with this suite's names and addresses; what the test left is taken down."""
    for p in project(tmp_path, request.param, SUBNET_POOL):
        p.name = "c26i" + secrets.token_hex(3)
        yield p


def _anonymous(proj: Proj, container: str) -> dict[str, str]:
    """The container's volume mounts: destination -> volume name."""
    return {m["Destination"]: m["Name"] for m in json.loads(proj.inspect(container, "{{json .Mounts}}"))
            if m.get("Type") == "volume"}


# One service with an anonymous volume; GEN changes its config (a recreate).
DB = f"""
services:
  db:
    image: busybox
    command: {SLEEP_WITH_INIT}
    environment: {{GEN: "1"}}
    volumes: [/data]
"""


def _up_with_data(proj: Proj, text: str = DB) -> dict[str, str]:
    """Up the project, write /data/f ("kept") in db; db's volume mounts."""
    proj.write(text)
    proj.cnirun("up", "-d")
    first = _anonymous(proj, proj.c("db"))
    assert subprocess.run([proj.cli, "exec", proj.c("db"), "sh", "-c", "echo kept > /data/f"]).returncode == 0
    return first


def _read(proj: Proj, path: str) -> str:
    return subprocess.run([proj.cli, "exec", proj.c("db"), "cat", path], capture_output=True, text=True).stdout


def test_recreate_keeps_anonymous_volumes_unless_renewed(proj: Proj) -> None:
    """A changed config and --force-recreate make a new container with the old one's anonymous volume (its
    data survives); -V gives it a new one and the old goes; down -v removes every anonymous volume, the
    inherited ones included, and leaves nothing."""
    text = DB
    first = _up_with_data(proj)
    assert list(first) == ["/data"]
    seen = set(first.values())

    proj.write(text.replace('GEN: "1"', 'GEN: "2"'))  # config changed: recreated
    old_id = proj.ids()[proj.c("db")]
    proj.cnirun("up", "-d")
    assert proj.ids()[proj.c("db")] != old_id
    assert _anonymous(proj, proj.c("db")) == first and _read(proj, "/data/f") == "kept\n"
    proj.cnirun("up", "-d", "--force-recreate")
    assert _anonymous(proj, proj.c("db")) == first and _read(proj, "/data/f") == "kept\n"

    proj.cnirun("up", "-d", "--force-recreate", "-V")
    renewed = _anonymous(proj, proj.c("db"))
    assert list(renewed) == ["/data"] and renewed != first and _read(proj, "/data/f") == ""
    assert not proj.volume_exists(first["/data"])  # the inherited one went with the container -V replaced
    seen |= set(renewed.values())
    proj.cnirun("up", "-d", "--force-recreate")  # inherits again, for down -v to remove
    assert _anonymous(proj, proj.c("db")) == renewed

    proj.cnirun("down", "-v")
    proj.assert_clean()
    assert [v for v in seen if proj.volume_exists(v)] == []


def _killed_between_removal_and_start(proj: Proj, text: str, old_id: str) -> None:
    """`up -d` recreating db, SIGKILLed after the old container is removed and before the new one exists.

    The old run's DEL waits for the network's lock, held here exclusively, and up waits for that DEL
    (compose.containers.remove_containers): the moment is held open until the kill."""
    import fcntl
    import os
    import signal
    import time

    from cnirun.core.lock import network_lock_path

    proj.write(text)
    path = network_lock_path(f"{proj.name}_default")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        up = subprocess.Popen([CNIRUN_BIN, "compose", "-f", str(proj.file), "-p", proj.name, "up", "-d"], env=proj.env, cwd=proj.dir, start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 60
            while subprocess.run([proj.cli, "inspect", old_id], capture_output=True).returncode == 0:
                assert time.monotonic() < deadline and up.poll() is None, "the old container was never removed"
                time.sleep(0.05)
            time.sleep(0.3)
            assert up.poll() is None and proj.c("db") not in proj.ids()  # inside the moment
        finally:
            os.killpg(up.pid, signal.SIGKILL)
            up.wait()
    finally:
        os.close(fd)  # the old run's DEL goes on


def test_recreate_killed_midway_keeps_the_volume_for_the_next_up_or_down_v(proj: Proj) -> None:
    """SIGKILL of a recreating up between the old container's removal and the new one's creation: the
    anonymous volume (no container holds it then) is kept; the next up's container takes it, data and all;
    killed again there, down -v removes it and nothing is left."""
    text = DB
    first = _up_with_data(proj)

    _killed_between_removal_and_start(proj, text.replace('GEN: "1"', 'GEN: "2"'), proj.ids()[proj.c("db")])
    assert proj.volume_exists(first["/data"])
    proj.cnirun("up", "-d")
    assert _anonymous(proj, proj.c("db")) == first and _read(proj, "/data/f") == "kept\n"

    _killed_between_removal_and_start(proj, text.replace('GEN: "1"', 'GEN: "3"'), proj.ids()[proj.c("db")])
    proj.cnirun("down", "-v")
    assert not proj.volume_exists(first["/data"])
    proj.assert_clean()


def test_recreate_that_fails_to_start_keeps_the_volume_for_the_next_up(proj: Proj) -> None:
    """A recreated container that fails to start: up undoes what it started, but the anonymous volume the
    old container had (its data) stays for the next up's container; down -v then removes it."""
    text = DB
    first = _up_with_data(proj)
    proj.write(text + '    user: "nosuchuser"\n')
    failed = proj.cnirun("up", "-d", ok=False)
    assert failed.returncode != 0 and proj.ids() == {}, failed.stderr
    assert proj.volume_exists(first["/data"])
    proj.write(text)
    proj.cnirun("up", "-d")
    assert _anonymous(proj, proj.c("db")) == first and _read(proj, "/data/f") == "kept\n"
    proj.cnirun("down", "-v")
    assert not proj.volume_exists(first["/data"])
    proj.assert_clean()
