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


def _read(proj: Proj, path: str) -> str:
    return subprocess.run([proj.cli, "exec", proj.c("db"), "cat", path], capture_output=True, text=True).stdout


def test_recreate_keeps_anonymous_volumes_unless_renewed(proj: Proj) -> None:
    """A changed config and --force-recreate make a new container with the old one's anonymous volume (its
    data survives); -V gives it a new one and the old goes; down -v removes every anonymous volume, the
    inherited ones included, and leaves nothing."""
    text = f"""
services:
  db:
    image: busybox
    command: {SLEEP_WITH_INIT}
    environment: {{GEN: "1"}}
    volumes: [/data]
"""
    proj.write(text)
    proj.cnirun("up", "-d")
    first = _anonymous(proj, proj.c("db"))
    assert list(first) == ["/data"]
    assert subprocess.run([proj.cli, "exec", proj.c("db"), "sh", "-c", "echo kept > /data/f"]).returncode == 0
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
