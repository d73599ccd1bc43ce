"""Installs made before the package moved to its layers keep working through the stubs cnirun/{hook,shim,watch,process}.py.

An install is files an engine runs long after `cnirun install` wrote them:
the Docker runtime launcher and its settings, hooks.d files, the cnirun-hook
launcher; and a running watcher starts its workers by module path. Each test
writes them as the code before the move wrote them, then runs real
containers through them. tests/old_installs/docker-runtime is the launcher
that code wrote, byte for byte, its paths left as @name@; the settings and
hooks.d files it wrote differ from today's only in the hook's boot line
(OLD_HOOK_BOOT). Subnets 10.228.N.0/24, networks t24h-N, bridges c24hN.
"""
from __future__ import annotations

import ipaddress
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from _wait import wait_for
from conftest import (
    REPO,
    World,
    _make_world,
    docker_runtime_installed,
    first_address,
    needs_docker,
    needs_podman,
    needs_root,
)

OLD_LAUNCHER = Path(__file__).parent / "old_installs" / "docker-runtime"
OLD_HOOK_BOOT = "from cnirun.hook import run_process; run_process()"
NEW_HOOK_BOOT = "from cnirun.oci.hook import run_process; run_process()"


def _world(tmp_path: Path, **kw: Any) -> World:
    w = _make_world(tmp_path, 228, "old installs", net="t24h-{n}", bridge="c24h{n}", subnet="10.228.{n}.0/24",
                    name_prefix="t24h-{n}-", **kw)
    w.env["CNIRUN_HOOK_LOG"] = str(w.tmp / "hooks.log")
    return w


def _records(w: World) -> list[dict[str, Any]]:
    try:
        text = Path(w.env["CNIRUN_HOOK_LOG"]).read_text()
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _wait_stages(w: World, stages: list[str], ignore: tuple[str, ...] = (), timeout: float = 30.0) -> list[dict[str, Any]]:
    """The log's records but `ignore`'s once their stages are `stages` (a delete's or poststop's DEL ends in the background)."""

    def records() -> list[dict[str, Any]]:
        return [r for r in _records(w) if r["stage"] not in ignore]

    wait_for(lambda: [r["stage"] for r in records()] == stages, timeout)
    return records()


def _on_subnet(w: World, ip_output: str) -> bool:
    return ipaddress.ip_interface(first_address(ip_output)).ip in ipaddress.ip_network(w.subnet)


def _old_boot(argv: list[str]) -> list[str]:
    """A hook argv (hook_argv) as the code before the move wrote it."""
    assert argv[3] == "-c" and argv[4].endswith(NEW_HOOK_BOOT), argv
    return [*argv[:4], argv[4].replace(NEW_HOOK_BOOT, OLD_HOOK_BOOT), *argv[5:]]


def _old_launcher(**values: str) -> str:
    """tests/old_installs/docker-runtime with its @name@ filled in as that code did (shlex.quote: plain paths stay as they are)."""
    text = OLD_LAUNCHER.read_text()
    for name, value in values.items():
        assert shlex.quote(value) == value, f"{value!r} would have been quoted"
        text = text.replace(f"@{name}@", value)
    assert "@" not in text.replace('"$@"', ""), "a placeholder left"
    return text


def _write_old_docker_install(w: World) -> None:
    """Turn the runtime `cnirun install docker-runtime` just wrote into the one the code before the move wrote."""
    from cnirun.core.paths import container_lock, gates_dir, pins_dir

    runtime = w.tmp / "runtime"
    settings_path = runtime / "docker-runtime.json"
    settings = json.loads(settings_path.read_text())
    settings["hook_argv"] = _old_boot(settings["hook_argv"])
    settings_path.write_text(json.dumps(settings, indent=2) + "\n")
    flock = shutil.which("flock")
    assert flock
    text = _old_launcher(
        python=settings["hook_argv"][0], package_parent=str(REPO), runc=settings["runc"], settings=str(settings_path),
        gates=gates_dir(w.env), flock=flock, pins=pins_dir(w.env), locks=os.path.dirname(container_lock("x", w.env)),
    )
    assert "from cnirun.shim import main" in text and "from cnirun.process import exit_now" in text
    (runtime / "docker-runtime").write_text(text)  # the path daemon.json names: no reload needed


@needs_root
@needs_docker
def test_a_docker_runtime_installed_before_the_move_attaches_and_detaches(tmp_path: Path) -> None:
    """The old launcher (cnirun.shim main/delete_main, cnirun.process exit_now) and settings (cnirun.hook):
    a container gets its network at create, loses it at rm; the old createRuntime hook still refuses a shared netns."""
    w = _world(tmp_path)
    name = w.name_prefix + "a"
    try:
        with docker_runtime_installed(w, w.name_prefix):
            _write_old_docker_install(w)
            run = subprocess.run(["docker", "run", "-d", "--name", name, "--runtime", "cnirun", "--network", "none",
                                  "--label", f"cnirun.networks={w.net}", "busybox", "sleep", "300"],
                                 capture_output=True, text=True, timeout=120)
            assert run.returncode == 0, run.stderr
            addr = subprocess.run(["docker", "exec", name, "ip", "-4", "-o", "addr", "show", "eth0"],
                                  capture_output=True, text=True, timeout=60)
            assert _on_subnet(w, addr.stdout), addr.stdout
            # Another container's namespace: the shim leaves it to the createRuntime hook of the old settings.
            shared = subprocess.run(["docker", "run", "--name", name + "-shared", "--runtime", "cnirun",
                                     "--network", f"container:{name}", "--label", f"cnirun.networks={w.net}",
                                     "busybox", "true"], capture_output=True, text=True, timeout=120)
            assert shared.returncode != 0 and "cnirun: " in shared.stderr, shared.stderr
            subprocess.run(["docker", "rm", "-f", name + "-shared"], capture_output=True, timeout=60)
            rm = subprocess.run(["docker", "rm", "-f", name], capture_output=True, text=True, timeout=60)
            assert rm.returncode == 0, rm.stderr
            # (a poststop of the refused container may come too: runc runs it whatever createRuntime said)
            recs = _wait_stages(w, ["create", "createRuntime", "delete"], ignore=("poststop",))
            assert [(r["stage"], r["outcome"]) for r in recs] == [("create", "ok"), ("createRuntime", "failed"),
                                                                    ("delete", "ok")], recs
            w.assert_clean(within=15.0)
    finally:
        w.finish()


def _podman(hooks: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "HOME": "/root"}  # the hooks carry theirs
    return subprocess.run(["podman", "--hooks-dir", str(hooks), *args], capture_output=True, text=True, env=env,
                          timeout=120)


def _run_through(w: World, hooks: Path) -> None:
    """A Podman container on the World's network through `hooks`: its address, then nothing left."""
    before = len(_records(w))
    proc = _podman(hooks, "run", "--rm", "--network", "none", "--annotation", f"cnirun.networks={w.net}",
                   "busybox", "ip", "-4", "-o", "addr", "show", "eth0")
    assert proc.returncode == 0, proc.stderr
    assert _on_subnet(w, proc.stdout), proc.stdout
    stages = [r["stage"] for r in _records(w)[:before]] + ["createRuntime", "poststop"]
    recs = _wait_stages(w, stages)[before:]
    assert [(r["stage"], r["outcome"]) for r in recs] == [("createRuntime", "ok"), ("poststop", "ok")], recs
    w.assert_clean(within=15.0)


@needs_root
@needs_podman
def test_hooks_d_files_installed_before_the_move_attach_and_detach(tmp_path: Path) -> None:
    """hooks.d files running `from cnirun.hook import run_process`, then ones naming an old cnirun-hook launcher
    (`from cnirun.hook import main`): a Podman container gets its network and leaves nothing."""
    w = _world(tmp_path, engine="podman")
    hooks = w.tmp / "hooks.d"
    try:
        inst = w.cnirun("install", "hooks", "--dir", str(hooks))
        assert inst.returncode == 0, inst.stderr
        files = sorted(hooks.glob("*.json"))
        assert len(files) == 2
        for f in files:
            data = json.loads(f.read_text())
            data["hook"]["args"] = _old_boot(data["hook"]["args"])
            f.write_text(json.dumps(data, indent=2) + "\n")
        _run_through(w, hooks)
        # The cnirun-hook launcher scripts/setup.sh wrote (pyproject's entry point was cnirun.hook:main).
        launcher = w.tmp / "cnirun-hook"
        purelib = next(p for p in sys.path if p.endswith("site-packages"))
        launcher.write_text(
            f"#!{sys.executable} -S\n# cnirun launcher 2 (scripts/setup.sh)\n"
            "# no re (pip's launcher), no site (the .pth files): see lean_launchers\n"
            f"import sys\nsys.path += [{purelib!r}, {str(REPO)!r}]\nfrom cnirun.hook import main\nsys.exit(main())\n"
        )
        launcher.chmod(0o755)
        for f in files:
            data = json.loads(f.read_text())
            data["hook"]["path"] = str(launcher)
            data["hook"]["args"] = ["cnirun-hook", data["stages"][0]]
            f.write_text(json.dumps(data, indent=2) + "\n")
        _run_through(w, hooks)
    finally:
        un = w.cnirun("uninstall", "hooks", "--dir", str(hooks))
        w.finish()
    assert un.returncode == 0, un.stderr


@pytest.mark.parametrize("role, says", [("supervise", "worker idle, exiting"), ("worker", "worker started"),
                                        ("resolvers", "no resolver left, exiting")])
def test_watcher_processes_started_by_the_old_module_path_run(tmp_path: Path, role: str, says: str) -> None:
    """`python -m cnirun.watch supervise|worker|resolvers`, as a watcher started before the move runs them:
    each runs cnirun.run.watch and ends by itself once it has nothing to watch."""
    env = {**os.environ, "CNIRUN_STATE_DIR": str(tmp_path / "state"), "CNIRUN_WATCHER_IDLE": "0.5",
           "PYTHONPATH": str(REPO)}
    (tmp_path / "state").mkdir()
    proc = subprocess.run([sys.executable, "-m", "cnirun.watch", role], env=env, capture_output=True, text=True,
                          timeout=60, cwd="/")
    assert proc.returncode == 0, proc.stderr
    assert says in proc.stderr, proc.stderr
