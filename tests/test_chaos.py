"""SIGKILL at any moment leaves nothing behind once `cnirun gc` ran (tests/_chaos.py).

30 killed runs (10 per mechanism: Docker sandbox, Docker hook mode, Podman),
6 killed hooks and 6 killed watchers per `make test`; bench/bench_chaos.py
does the same with 200 runs. Subnets: the Worlds' 10.131.N/10.132.N.
"""
from __future__ import annotations

import pytest

from _chaos import Chaos, chain_with_slow_noop
from conftest import HAVE_PODMAN, World, docker_runtime_installed, needs_docker, needs_root

pytestmark = [needs_root, needs_docker, pytest.mark.slow]


def test_sigkill_of_sandbox_runs_then_gc_leaves_nothing(docker_world: World) -> None:
    c = Chaos(docker_world, seed=81)
    c.kill_runs(10, "docker", "sandbox")
    c.assert_clean()


@pytest.mark.skipif(not HAVE_PODMAN, reason="podman with a busybox image not available")
def test_sigkill_of_podman_runs_then_gc_leaves_nothing(podman_world: World) -> None:
    c = Chaos(podman_world, seed=82)
    c.kill_runs(10, "podman")
    c.assert_clean()


def test_sigkill_of_hook_mode_runs_and_of_hooks_then_gc_leaves_nothing(docker_world: World) -> None:
    chain_with_slow_noop(docker_world, 0.5)  # before install: the runtime records CNI_PATH
    c = Chaos(docker_world, seed=83)
    with docker_runtime_installed(docker_world, f"{docker_world.bridge}-chaos-"):
        c.kill_runs(10, "docker", "hook")
        c.kill_hooks(6, slow_plugin_s=0.5)
        c.assert_clean()
    assert c.report["kill_hooks"]["hooks_killed"] >= 3, c.report


def test_sigkill_of_the_watcher_loses_nothing(docker_world: World) -> None:
    c = Chaos(docker_world, seed=84)
    c.kill_watcher(6)
    c.assert_clean()
    assert c.report["kill_watcher"]["watcher_kills"] >= 3, c.report
