"""How a Docker run attaches (cnirun.run.docker_mode) when it asks for an OCI runtime of its own: real
dockerd, real plugins. Which mode decide() picks for which run is checked engine-free in test_run_plan.

Address plan: network c26d-250, bridge c26dx250, 10.244.250.0/24; containers c26d-rt*.
"""
from __future__ import annotations

import subprocess

from conftest import World, _make_world, needs_docker, needs_root, world_fixture

pytestmark = [needs_root, needs_docker]

world = world_fixture(_make_world, 244, "runtime", net="c26d-{n}", bridge="c26dx{n}", subnet="10.244.{n}.0/24",
                      n=250, name_prefix="c26d-rt")


def test_run_with_a_runtime_of_its_own(world: World) -> None:
    """--runtime runc: the container runs under runc, attached in sandbox mode before its first instruction
    (--debug says why); the run's teardown leaves nothing."""
    p = world.cnirun("--debug", "run", "--name", "c26d-rt1", "--runtime", "runc", "busybox",
                     "ip", "-4", "-o", "addr", "show", "eth0", timeout=90)
    assert p.returncode == 0 and " inet 10.244.250." in p.stdout, p.stderr
    assert ": the container asks for runtime 'runc', and hook mode is the cnirun runtime" in p.stderr, p.stderr
    runtime = subprocess.run(["docker", "inspect", "-f", "{{.HostConfig.Runtime}}", "c26d-rt1"],
                             capture_output=True, text=True, timeout=30).stdout.strip()
    assert runtime == "runc"
    subprocess.run(["docker", "rm", "-f", "c26d-rt1"], capture_output=True, timeout=30)
    world.assert_clean(within=10.0)


def test_an_unknown_runtime_is_one_line_and_leaves_nothing(world: World) -> None:
    """--runtime naming no runtime dockerd knows: exit 125 with dockerd's reason on one line, in the
    foreground and detached alike, and nothing of the run is left."""
    for detach in ([], ["-d"]):
        p = world.cnirun("run", *detach, "--rm", "--runtime", "c26dnosuch", "busybox", "true", timeout=90)
        assert p.returncode == 125, p.stderr
        errors = [line for line in p.stderr.splitlines() if line.startswith("cnirun:")]
        assert errors == ["cnirun: docker create: Unknown runtime specified c26dnosuch"], p.stderr
    world.assert_clean(within=10.0)
