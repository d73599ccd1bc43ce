"""Benchmarks of the OCI hook path (issue 4); every figure is a median of 10+ runs.

1. Hook process overhead beyond plugin executions: a createRuntime call on a
   one-plugin network whose plugin is a trivial sh script, minus the same
   script's own exec cost (target: <= 40 ms per call); the import time of the
   hook path; the poststop call as the engine sees it (it forks the DEL into
   the background).
2. Shim overhead on a non-create call: the installed launcher vs runc itself
   (`--version`; target: <= 5 ms); the create call of a spec without a
   netns entry (hooks added); the early attach (create, start, delete as the
   engine waits for each, runc faked, one stub plugin).
3. docker run --rm --runtime cnirun --network none --label cnirun.networks=NET
   busybox true  vs  docker run --rm --network none busybox true (<= 1.6x).
4. podman with the hooks (--network none --annotation cnirun.networks=NET) vs
   podman --network-backend cni run --network NET (Podman's own CNI path on
   the same conflist) (<= 1.1x).
NET: bridge + host-local + portmap + firewall + tuning, 10.144.0.0/24, bridge
cnh4b0. Everything lives in a tmp dir; the Docker runtime and hooks.d files
are installed there for the run and removed at the end.
"""
from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from cnirun.oci.install import docker_runtime  # noqa: E402
from cnirun.oci import argv as hook_command  # noqa: E402
from _common import ratio  # noqa: E402

CNIRUN = str(REPO / ".venv" / "bin" / "cnirun")
RUNS = int(os.environ.get("BENCH_RUNS", "12"))
NET = "h4bench"
BRIDGE = "cnh4b0"
SUBNET = "10.144.0.0/24"


def median_ms(fn, runs: int = RUNS) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def run(argv: list[str], **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv, capture_output=True, text=True, **kw)
    if proc.returncode != 0:
        raise SystemExit(f"bench: {' '.join(argv[:6])}... failed: {proc.stderr.strip()[-300:]}")
    return proc


def write_net(d: Path, ipam_dir: Path | None) -> None:
    ipam: dict = {"type": "host-local", "ranges": [[{"subnet": SUBNET}]], "routes": [{"dst": "0.0.0.0/0"}]}
    if ipam_dir:
        ipam["dataDir"] = str(ipam_dir)
    conf = {
        "cniVersion": "1.0.0",
        "name": NET,
        "plugins": [
            {"type": "bridge", "bridge": BRIDGE, "isGateway": True, "ipMasq": True, "hairpinMode": True, "ipam": ipam},
            {"type": "portmap", "capabilities": {"portMappings": True}},
            {"type": "firewall"},
            {"type": "tuning"},
        ],
    }
    d.mkdir(parents=True, exist_ok=True)
    (d / f"{NET}.conflist").write_text(json.dumps(conf))


# -- 1. hook overhead -------------------------------------------------------------------
def bench_hook_overhead(root: Path) -> None:
    bin_dir, net_dir, cache = root / "stub-bin", root / "stub-net", root / "stub-cache"
    for d in (bin_dir, net_dir, cache):
        d.mkdir(parents=True)
    stub = bin_dir / "h4stub"
    stub.write_text('#!/bin/sh\ncat >/dev/null\necho \'{"cniVersion":"1.0.0","interfaces":[],"ips":[]}\'\n')
    stub.chmod(0o755)
    (net_dir / "stub.conflist").write_text(json.dumps({"cniVersion": "1.0.0", "name": "h4stub", "plugins": [{"type": "h4stub"}]}))
    env_vars = {
        "NETCONFPATH": str(net_dir), "CNI_PATH": str(bin_dir), "CNI_CACHE_DIR": str(cache),
        "CNIRUN_STATE_DIR": str(root / "stub-state"), "CNIRUN_HOOK_LOG": str(root / "stub.log"),
    }
    env = dict(e.split("=", 1) for e in hook_command.hook_env(env_vars))
    # The hook attaches only into a container's own new netns, which it reads from the bundle.
    bundle = root / "stub-bundle"
    bundle.mkdir()
    (bundle / "config.json").write_text(json.dumps({"ociVersion": "1.0.2", "linux": {"namespaces": [{"type": "network"}]}}))
    sleeper = subprocess.Popen(["unshare", "--net", "sleep", "600"])
    time.sleep(0.1)
    try:
        def state(stage: str) -> bytes:
            return json.dumps({"id": "h4bench-stub", "pid": sleeper.pid if stage != "poststop" else 0,
                               "bundle": str(bundle), "annotations": {"cnirun.networks": "h4stub"}}).encode()

        def call(stage: str) -> float:
            t = time.perf_counter()
            subprocess.run(hook_command.hook_argv(stage), input=state(stage), env=env, check=True, capture_output=True)
            return (time.perf_counter() - t) * 1000

        lock = root / "stub-state" / "locks" / "h4bench-stub.lock"
        create_ms, post_ms = [], []
        for _ in range(max(RUNS, 20)):
            create_ms.append(call("createRuntime"))
            post_ms.append(call("poststop"))
            while lock.exists():  # the background DEL: not on the engine's path, not timed
                time.sleep(0.002)
        stub_cost = median_ms(lambda: subprocess.run([str(stub)], input=b"{}", capture_output=True), 30)
        python_ms = median_ms(lambda: subprocess.run([sys.executable, "-I", "-S", "-c", "pass"]), 20)
    finally:
        sleeper.kill()
        sleeper.wait()
    create = statistics.median(create_ms)
    post = statistics.median(post_ms)
    children = [r["duration_ms"] for r in map(json.loads, (root / "stub.log").read_text().splitlines())
                if r["stage"] == "poststop"]
    imp = subprocess.run(
        [sys.executable, "-I", "-S", "-X", "importtime", "-c",
         f"import sys; sys.path.insert(0, {str(REPO)!r}); import cnirun.oci.hook, cnirun.network.lifecycle, cnirun.cni.runtime, cnirun.network.options"],
        capture_output=True, text=True,
    ).stderr
    rows = [line.split("|") for line in imp.splitlines() if line.startswith("import time:")]
    rows = [r for r in rows if r[1].strip().isdigit()]
    total_us = sum(int(r[1]) for r in rows if not r[2].startswith("  "))  # top-level imports only
    loaded = {r[2].strip().split(".")[0] for r in rows}
    heavy = sorted(loaded & {"docker", "typer", "yaml", "pyroute2", "click", "requests"})
    print(f"hook: createRuntime call {create:.1f} ms with one stub plugin exec of {stub_cost:.1f} ms "
          f"(python -I -S start alone {python_ms:.1f} ms)")
    print(f"hook: overhead beyond plugin executions {create - stub_cost:.1f} ms per createRuntime call (target <= 40 ms; "
          f"includes the netns pin mount); import of the hook path {total_us / 1000:.1f} ms; "
          f"heavy modules imported: {heavy or 'none'}")
    print(f"hook: poststop call {post:.1f} ms as the engine sees it; its background DEL took "
          f"{statistics.median(children):.1f} ms (incl. the umount)")


# -- 2. shim non-create path --------------------------------------------------------------
def bench_shim_create(root: Path) -> None:
    """The create path of a spec without a network namespace entry (the createRuntime hook's case): Python
    starts, reads and rewrites config.json, execs (here) /bin/true."""
    settings = root / "shim-settings.json"
    settings.write_text(json.dumps({"runc": "/bin/true", "hook_argv": hook_command.hook_argv("")[:-1], "hook_env": ["PATH=/usr/bin"]}))
    launcher = root / "shim-launcher"
    launcher.write_text(docker_runtime.launcher_text(sys.executable, hook_command.package_parent(), "/bin/true", str(settings)))
    launcher.chmod(0o755)
    bundle = root / "shim-bundle"
    bundle.mkdir()
    (bundle / "config.json").write_text(json.dumps({"ociVersion": "1.0.2", "annotations": {"cnirun.networks": NET}}))
    argv = [str(launcher), "--root", "/x", "create", "--bundle", str(bundle), "c1"]
    ms = median_ms(lambda: subprocess.run(argv, check=True), 20)
    print(f"shim: create call (adds the hooks, then execs the runtime) {ms:.1f} ms")


def bench_shim_early(root: Path) -> None:
    """The Docker runtime's early attach, runc faked by /bin/true, one stub plugin (the ADD itself ~free):
    `create` as the engine waits for it (Python, the worker's checks, the new netns pinned; then the exec),
    `start` (the gate, once the worker is done), `delete` (the lock, the background DEL started)."""
    bin_dir, net_dir = root / "stub-bin", root / "stub-net"
    env_vars = {
        "NETCONFPATH": str(net_dir), "CNI_PATH": str(bin_dir), "CNI_CACHE_DIR": str(root / "early-cache"),
        "CNIRUN_STATE_DIR": str(root / "early-state"), "CNIRUN_HOOK_LOG": str(root / "early.log"),
    }
    settings = root / "early-settings.json"
    settings.write_text(json.dumps({"runc": "/bin/true", "hook_argv": hook_command.hook_argv("")[:-1],
                                    "hook_env": hook_command.hook_env(env_vars), "docker_root": str(root / "none")}))
    state = root / "early-state"
    launcher = root / "early-launcher"
    launcher.write_text(docker_runtime.launcher_text(sys.executable, hook_command.package_parent(), "/bin/true",
                                                     str(settings), str(state / "starting"), shutil.which("flock") or "flock",
                                                     str(state / "netns"), str(state / "locks")))
    launcher.chmod(0o755)
    create_ms, start_ms, delete_ms = [], [], []
    for i in range(max(RUNS, 20)):
        bundle = root / f"early-bundle-{i}"
        bundle.mkdir()
        (bundle / "config.json").write_text(json.dumps({"ociVersion": "1.0.2", "annotations": {"cnirun.networks": "h4stub"},
                                                        "linux": {"namespaces": [{"type": "network"}]}}))
        cid = f"h4early{i}"
        for what, argv, into in (("create", ["create", "--bundle", str(bundle), cid], create_ms),
                                 ("start", ["start", cid], start_ms), ("delete", ["delete", cid], delete_ms)):
            if what == "start":
                time.sleep(0.05)  # runc's own create takes ~100 ms: the worker is done by its start
            if what == "delete":
                time.sleep(0.02)
            t = time.perf_counter()
            subprocess.run([str(launcher), "--root", str(root / "no-runc"), *argv], check=True)
            into.append((time.perf_counter() - t) * 1000)
        wait_background_teardowns(state)
        while (state / "netns" / cid).exists():
            time.sleep(0.005)
    print(f"shim: early attach, as the engine sees it: create {statistics.median(create_ms):.1f} ms "
          f"(Python, the checks, a new netns pinned, then runc), start {statistics.median(start_ms):.1f} ms "
          f"(the gate), delete {statistics.median(delete_ms):.1f} ms (the lock taken, the DEL started in the background)")


def bench_shim(launcher: str) -> None:
    runc = shutil.which("runc") or "/usr/sbin/runc"
    a = [median_ms(lambda: subprocess.run([runc, "--version"], capture_output=True), 1) for _ in range(40)]
    b = [median_ms(lambda: subprocess.run([launcher, "--version"], capture_output=True), 1) for _ in range(40)]
    ra, rb = statistics.median(a), statistics.median(b)
    print(f"shim: non-create call {rb:.2f} ms vs runc directly {ra:.2f} ms: overhead {rb - ra:.2f} ms "
          f"(target <= 5 ms), ratio {rb / ra:.2f}x")
    ratio("hook", "shim non-create call", rb, ra, None, "runc")


# -- 3./4. engines ------------------------------------------------------------------------------
def interleaved(a, b, runs: int = RUNS) -> tuple[float, float]:
    ta, tb = [], []
    for _ in range(runs):
        ta.append(median_ms(a, 1))
        tb.append(median_ms(b, 1))
    return statistics.median(ta), statistics.median(tb)


def bench_docker() -> None:
    def plain() -> None:
        run(["docker", "run", "--rm", "--network", "none", "busybox", "true"])

    def hooked() -> None:
        run(["docker", "run", "--rm", "--runtime", "cnirun", "--network", "none",
             "--label", f"cnirun.networks={NET}", "busybox", "true"])

    hooked()
    plain()
    p, h = interleaved(plain, hooked)
    print(f"docker: run --rm --runtime cnirun (CNI {NET}) {h:.0f} ms vs run --rm --network none {p:.0f} ms: "
          f"{h / p:.2f}x (target <= 1.6x)")
    ratio("hook", "docker run --runtime cnirun", h, p, 1.6, "docker run --network none")


def bench_podman(hooks_dir: Path, podman_net_dir: Path) -> None:
    def own_cni() -> None:
        run(["podman", "--network-backend", "cni", "--network-config-dir", str(podman_net_dir),
             "run", "--rm", "--network", NET, "busybox", "true"])

    def hooked() -> None:
        run(["podman", "--hooks-dir", str(hooks_dir), "run", "--rm", "--network", "none",
             "--annotation", f"cnirun.networks={NET}", "busybox", "true"])

    own_cni()
    hooked()
    o, h = interleaved(own_cni, hooked)
    print(f"podman: run --rm with cnirun hooks {h:.0f} ms vs --network-backend cni on the same conflist {o:.0f} ms: "
          f"{h / o:.2f}x (target <= 1.1x)")
    ratio("hook", "podman run with cnirun hooks", h, o, 1.1, "podman --network-backend cni")


def wait_background_teardowns(state: Path, timeout: float = 60.0) -> None:
    """poststop DELs in a background child that removes its lock file when done: wait for all of them.

    Removing the tmp dir (networks, cache) under a DEL still running would
    leave its attachment behind.
    """
    locks = state / "locks"
    deadline = time.monotonic() + timeout
    while locks.is_dir() and any(locks.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.05)


def main() -> int:
    if os.geteuid() != 0:
        print("bench_hook: needs root; skipped")
        return 0
    root = Path(tempfile.mkdtemp(prefix="cnirun-bench-hook-"))
    env = {**os.environ, "NETCONFPATH": str(root / "net"), "CNI_CACHE_DIR": str(root / "cache"),
           "CNIRUN_STATE_DIR": str(root / "state"), "CNIRUN_HOOK_LOG": str(root / "hooks.log")}
    write_net(root / "net", root / "ipam")
    write_net(root / "podman-net", None)  # podman's own path keeps host-local in /var/lib/cni
    installed_rt = False
    try:
        bench_hook_overhead(root)
        bench_shim_create(root)
        bench_shim_early(root)
        have_docker = shutil.which("docker") and subprocess.run(["docker", "info"], capture_output=True).returncode == 0
        if have_docker and docker_runtime.registered_path():
            print("docker: a cnirun runtime is already registered; not replacing it, docker figures skipped")
        elif have_docker:
            run([CNIRUN, "install", "docker-runtime", "--dir", str(root / "runtime")], env=env)
            installed_rt = True
            bench_shim(str(root / "runtime" / docker_runtime.LAUNCHER))
            bench_docker()
        else:
            print("docker: not running; skipped")
        if shutil.which("podman"):
            run([CNIRUN, "install", "hooks", "--dir", str(root / "hooks.d")], env=env)
            bench_podman(root / "hooks.d", root / "podman-net")
    finally:
        wait_background_teardowns(root / "state")
        if installed_rt:
            subprocess.run([CNIRUN, "uninstall", "docker-runtime", "--dir", str(root / "runtime")], capture_output=True)
        subprocess.run(["ip", "link", "del", BRIDGE], capture_output=True)
        shutil.rmtree(f"/var/lib/cni/networks/{NET}", ignore_errors=True)
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
