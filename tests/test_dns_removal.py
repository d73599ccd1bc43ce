"""A removed container's name stops resolving at once, in every mode, on the real engines.

From the moment `docker rm -f X` / `podman rm -f X` returns, X must no
longer resolve from the network's resolver within REMOVED_WITHIN seconds (the
bench asks for 100 ms; the bound here holds on a loaded machine): hook
mode, the sandbox helper of `-d`, the one-container sandbox of a foreground
run, Podman `-d`, and Podman with cnirun's hooks.d files. A poller asks the
World's own resolver (its gateway, port 53) for the name every few ms from
the host; a client container keeps the network, so the resolver stays up
and only the name goes.

Each test has its World: network n28f-N, bridge n28fN, 10.245.N.0/24,
containers n28fN-*.
"""
from __future__ import annotations

import struct
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from _wait import wait_for
from conftest import CNIRUN_BIN, World, _make_world, docker_runtime_installed, needs_docker, needs_plugins, \
    needs_podman, needs_root
from test_dns import reply

pytestmark = [needs_root, needs_plugins]

REMOVED_WITHIN = 0.5


@pytest.fixture
def world(tmp_path: Path) -> Any:
    w = _make_world(tmp_path, 245, "dns", net="n28f-{n}", bridge="n28f{n}", subnet="10.245.{n}.0/24",
                    name_prefix="n28f{n}-")
    yield w
    w.finish()


def answers(server: str, name: str, timeout: float = 0.5) -> bool | None:
    """Whether `server`:53 answers an A record for `name`: True, False (no such name), None (no reply)."""
    data = reply(server, name, timeout)
    return None if data is None else (data[3] & 15) == 0 and struct.unpack(">H", data[6:8])[0] > 0


def resolves_after(server: str, name: str, remove: list[str]) -> float:
    """Seconds from `remove` (the engine's command) returning until `name` stopped resolving (0: before)."""
    assert wait_for(lambda: answers(server, name), 10.0), f"{name} does not resolve before its removal"
    gone: list[float] = []
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            if answers(server, name) is False:
                gone.append(time.monotonic())
                return
            stop.wait(0.003)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    try:
        p = subprocess.run(remove, capture_output=True, text=True, timeout=60)
        returned = time.monotonic()
        assert p.returncode == 0, p.stderr
        poller.join(30.0)
    finally:
        stop.set()
    assert gone, f"{name} still resolves 30 s after `{' '.join(remove)}` returned"
    return max(0.0, gone[0] - returned)


def run_d(w: World, *args: str) -> str:
    """`cnirun -d ARGS`: the container's ID."""
    p = w.cnirun("-d", *args)
    assert p.returncode == 0, p.stderr
    return p.stdout.strip()


def client_and_target(w: World, *mode: str) -> tuple[str, str]:
    """A client keeping the network's resolver up, and the target whose name goes: the target's name and ID."""
    target = f"{w.name_prefix}x"
    run_d(w, *mode, "--name", f"{w.name_prefix}client", "busybox", "sleep", "300")
    return target, run_d(w, *mode, "--name", target, "busybox", "sleep", "300")


def watched(w: World, container_id: str) -> None:
    """Wait until the watcher follows the container (its log says so)."""
    log = w.state_dir / "containers" / ".watcher.log"
    wait_for(lambda: log.is_file() and f"container {container_id[:12]} " in log.read_text(), 30.0,
             f"the watcher following {container_id[:12]}")


def gateway(w: World) -> str:
    return f"10.245.{w.n}.1"


def report(mode: str, took: float) -> None:
    print(f"{mode}: the name went {took * 1000:.0f} ms after the engine's rm returned")


WHEN = pytest.mark.parametrize("followed", [False, True], ids=["at-once", "followed"])


def remove_d(w: World, rm: list[str], followed: bool) -> float:
    """A `cnirun -d` target removed with `rm` (+ its name) as soon as it resolves, or once the watcher
    follows it: how long its name outlived the command."""
    target, cid = client_and_target(w)
    if followed:
        watched(w, cid)
    return resolves_after(gateway(w), target, [*rm, target])


@needs_docker
@WHEN
def test_sandbox_d_name_goes_when_docker_rm_returns(world: World, followed: bool) -> None:
    """`cnirun -d` (helper sandbox): after `docker rm -f X` returns, X stops resolving within the bound,
    also when X is removed right after the run returned (the watcher is woken to adopt it at once)."""
    took = remove_d(world, ["docker", "rm", "-f"], followed)
    report("sandbox -d", took)
    assert took <= REMOVED_WITHIN


@needs_docker
def test_hook_mode_name_goes_when_docker_rm_returns(world: World) -> None:
    """Hook mode: after `docker rm -f X` returns, X stops resolving within the bound."""
    w = world
    with docker_runtime_installed(w, w.name_prefix):
        target, _ = client_and_target(w, "--mode", "hook")
        took = resolves_after(gateway(w), target, ["docker", "rm", "-f", target])
        subprocess.run(["docker", "rm", "-f", f"{w.name_prefix}client"], capture_output=True)
    report("hook", took)
    assert took <= REMOVED_WITHIN


@needs_docker
def test_single_container_name_goes_when_docker_rm_returns(world: World) -> None:
    """The one-container sandbox of a foreground run: after `docker rm -f X` returns, X stops resolving
    within the bound (the run's own process tears it down)."""
    w = world
    client, target = f"{w.name_prefix}client", f"{w.name_prefix}x"
    run_d(w, "--name", client, "busybox", "sleep", "300")
    w.env["CNIRUN_SANDBOX"] = "single"
    fg = w.popen("--mode", "sandbox", "--rm", "--name", target, "busybox", "sleep", "300",
                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        took = resolves_after(gateway(w), target, ["docker", "rm", "-f", target])
    finally:
        fg.wait(60)
    report("single", took)
    assert took <= REMOVED_WITHIN


@needs_podman
@WHEN
def test_podman_name_goes_when_podman_rm_returns(world: World, followed: bool) -> None:
    """Podman (`cnirun -d`): after `podman rm -f X` returns, X stops resolving within the bound (the run's
    poststop hook has the watcher look at X's storage, which podman removes before it returns)."""
    world.env["CNIRUN_ENGINE"] = "podman"
    took = remove_d(world, ["podman", "rm", "-f", "-t", "0"], followed)
    report("podman", took)
    assert took <= REMOVED_WITHIN


@needs_podman
def test_podman_hooks_name_goes_when_podman_rm_returns(world: World, tmp_path: Path) -> None:
    """Podman with cnirun's hooks.d files (the poststop hook detaches): after `podman rm -f X` returns, X
    stops resolving within the bound."""
    w = world
    w.env["CNIRUN_ENGINE"] = "podman"  # what a failed test leaves is removed with podman
    hooks = str(tmp_path / "hooks.d")
    p = subprocess.run([CNIRUN_BIN, "install", "hooks", "--dir", hooks], env=w.env, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    pod = ["podman", "--hooks-dir", hooks]
    names = [f"{w.name_prefix}client", f"{w.name_prefix}x"]
    try:
        for name in names:
            p = subprocess.run([*pod, "run", "-d", "--network", "none", "--annotation", f"cnirun.networks={w.net}",
                                "--name", name, "--hostname", name, "busybox", "sleep", "300"],
                               capture_output=True, text=True, timeout=120)
            assert p.returncode == 0, p.stderr
        took = resolves_after(gateway(w), names[1], [*pod, "rm", "-f", "-t", "0", names[1]])
    finally:
        for name in names:  # while the hooks are there: their poststop detaches
            subprocess.run([*pod, "rm", "-f", "-t", "0", name], capture_output=True, timeout=120)
        p = subprocess.run([CNIRUN_BIN, "uninstall", "hooks", "--dir", hooks], capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
    report("podman hooks.d", took)
    assert took <= REMOVED_WITHIN
