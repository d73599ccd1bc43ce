"""compose down's habits on real engines (cnirun.compose.down): which volumes go, and what a failed
`up` leaves for `down`.

Address plan and harness: test_compose_commands's (here 10.243.128.0/18, projects c26cxxxxxx).
"""
from __future__ import annotations

import subprocess

import pytest

from conftest import needs_plugins, needs_root
from test_compose_commands import SLEEP_WITH_INIT, Proj, engine_proj  # noqa: F401 - the fixture

pytestmark = [needs_root, needs_plugins]
SUBNET_POOL = "10.243.128.0/18"

ANONYMOUS_AND_NAMED = f"""
services:
  app:
    image: busybox
    command: {SLEEP_WITH_INIT}
    volumes: [/scratch, "data:/data"]
volumes:
  data: {{}}
"""


def _volumes_of(proj: Proj, container: str) -> dict[str, str]:
    """Mount destination -> volume name."""
    out = proj.inspect(container, "{{range .Mounts}}{{.Destination}}={{.Name}} {{end}}")
    return dict(m.split("=", 1) for m in out.split())


def test_plain_down_keeps_anonymous_volumes_and_down_v_removes_them(engine_proj: Proj) -> None:
    """As compose: plain down removes the containers but keeps their anonymous volume (and the named one);
    down -v removes the anonymous volume of the containers it removes and the project's named volume."""
    proj = engine_proj
    proj.write(ANONYMOUS_AND_NAMED)
    proj.cnirun("up", "-d")
    first = _volumes_of(proj, proj.c("app"))
    anon, named = first["/scratch"], first["/data"]
    assert named == f"{proj.name}_data" and anon != named
    try:
        proj.cnirun("down")
        assert proj.ids() == {}
        assert proj.volume_exists(anon) and proj.volume_exists(named)
        proj.cnirun("up", "-d")
        again = _volumes_of(proj, proj.c("app"))
        assert again["/data"] == named and again["/scratch"] != anon  # a new container, a new anonymous volume
        proj.cnirun("down", "-v")
        assert not proj.volume_exists(again["/scratch"]) and not proj.volume_exists(named)
        proj.assert_clean()
    finally:
        subprocess.run([proj.cli, "volume", "rm", "-f", anon], capture_output=True)
    assert not proj.volume_exists(anon)


def test_unhealthy_dependency_is_left_for_inspection_until_down(engine_proj: Proj) -> None:
    """A service_healthy dependency whose healthcheck fails: up exits 1 with compose's message, the
    dependency stays (running, unhealthy, its output readable through `logs`, its network attached),
    its dependent is never made; down removes all of it and leaves nothing."""
    proj = engine_proj
    proj.write(f"""
services:
  db:
    image: busybox
    command: ["sh", "-c", "echo db-was-here; exec sleep 3600"]
    init: true
    healthcheck: {{test: ["CMD", "false"], interval: 1s, timeout: 2s, retries: 1}}
  app:
    image: busybox
    command: {SLEEP_WITH_INIT}
    depends_on:
      db: {{condition: service_healthy}}
""")
    up = proj.cnirun("up", "-d", ok=False)
    db = proj.c("db")
    assert up.returncode == 1 and "Traceback" not in up.stderr, up.stderr
    assert up.stderr.splitlines()[-1] == f"cnirun: dependency failed to start: container {db} is unhealthy"
    assert list(proj.ids()) == [db]
    assert proj.inspect(db, "{{.State.Running}}") == "true"
    assert proj.inspect(db, "{{.State.Health.Status}}") == "unhealthy"
    assert "db-was-here" in proj.cnirun("logs", "db").stdout
    assert proj.attachments() != []
    proj.cnirun("down")
    proj.assert_clean()
