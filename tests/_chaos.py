"""SIGKILL at random moments, then `cnirun gc`: nothing may be left behind.

Shared by tests/test_chaos.py (a few dozen kills, run by `make test`) and
bench/bench_chaos.py (hundreds). Every scenario works in one World (its own
NETCONFPATH, cache, state dir, bridge and subnet), kills what it kills at a
moment drawn uniformly over the whole life of a run (before, during and after
ADD, during teardown), removes the containers a killed client leaves (as a
user would: `docker rm -f`), runs `cnirun gc` and then checks the World's
leftovers: reservations, veths, cache files, iptables rules, helper and
workload containers, netns, run state dirs.

The victims:
- `kill_runs`: the `cnirun run` process (sandbox mode, hook mode, Podman);
- `kill_hooks`: the OCI hook process while it attaches (hook mode, with a
  plugin slowed down so the hook is surely running when the kill lands);
- `kill_watcher`: the `-d` watcher (supervisor and worker) while detached
  containers come and go.
"""
from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any, Callable

from _wait import wait_for
from conftest import World


def _pgrep(pattern: str) -> list[int]:
    out = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def _containers(engine: str, filters: list[str], running: bool = False) -> list[str]:
    """IDs of the containers matching any of `filters` (`running`: only those running)."""
    args = [a for f in filters for a in ("--filter", f)]
    return subprocess.run([engine, "ps", "-q" if running else "-aq", *args], capture_output=True,
                          text=True).stdout.split()


def _rm_containers(engine: str, filters: list[str]) -> None:
    ids = _containers(engine, filters)
    if ids:
        subprocess.run([engine, "rm", "-f", *ids], capture_output=True)


class Chaos:
    """One World under attack; `report` collects what happened, for the bench's output."""

    def __init__(self, world: World, seed: int) -> None:
        self.w = world
        self.rng = random.Random(seed)
        self.report: dict[str, Any] = {}
        self.started = time.time()

    # -- measuring the window to aim at ------------------------------------------------
    def _run_time(self, args: list[str]) -> float:
        t0 = time.monotonic()
        r = self.w.cnirun(*args, timeout=120)
        assert r.returncode == 0, r.stderr
        return time.monotonic() - t0

    def _finish(self, engine: str, name_prefix: str | None) -> list[str]:
        """Remove what killed clients left running, then gc; returns gc's report lines.

        Only this World's containers: its state dir's label, and the names
        this scenario gave (`name_prefix`, unique to the World).
        """
        states = str(self.w.state_dir / "containers")
        # Foreground runs are short: let them end on their own first (for up to a second).
        wait_for(lambda: not _containers(engine, [f"label=cnirun.state={states}"], running=True), 1.0, step=0.2)
        _rm_containers(engine, [f"label=cnirun.state={states}"])
        if name_prefix:
            _rm_containers(engine, [f"name={name_prefix}"])
        g = self.w.cnirun("gc", timeout=180)
        assert g.returncode == 0, g.stderr
        return g.stdout.splitlines()

    # -- the victims ---------------------------------------------------------------------
    def kill_runs(self, n: int, engine: str, mode: str = "") -> None:
        """SIGKILL `cnirun --rm ... busybox sleep 0.2` at a random moment of its life, n times."""
        name = f"{self.w.bridge}-chaos-{engine}{mode}-"
        extra = ["--engine", engine] + (["--mode", mode] if mode else [])
        horizon = 1.3 * self._run_time([*extra, "--rm", "busybox", "sleep", "0.2"])
        delays = []
        for i in range(n):
            delay = self.rng.uniform(0.0, horizon)
            delays.append(round(delay, 3))
            p = self.w.popen(*extra, "--rm", "--name", f"{name}{i}", "busybox", "sleep", "0.2",
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
            time.sleep(delay)
            p.send_signal(signal.SIGKILL)
            p.wait()
        self.report[f"kill_runs {engine} {mode or 'auto'}"] = {
            "n": n, "horizon_s": round(horizon, 3), "gc_lines": self._finish(engine, name),
        }

    def kill_hooks(self, n: int, slow_plugin_s: float = 0.6) -> None:
        """SIGKILL the attach (hook mode) at a random moment: the runtime shim or the worker it forked.

        The World's network must end with the noop plugin sleeping
        `slow_plugin_s` on ADD (chain_with_slow_noop), so that the hook is
        alive for a while after the container's create.
        """
        name = f"{self.w.bridge}-chaos-hookkill-"
        killed = 0
        for i in range(n):
            p = self.w.popen("--mode", "hook", "--rm", "--name", f"{name}{i}", "busybox", "true",
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + 20
            target: list[int] = []
            while time.monotonic() < deadline and not target and p.poll() is None:
                target = _pgrep("cnirun.oci.shim import main.* create ")
                time.sleep(0.01)
            if target:
                time.sleep(self.rng.uniform(0.0, slow_plugin_s))  # the worker lives at least this long
                # Whoever attaches now: the shim execs runc within ms, its forked worker runs the ADDs.
                target = _pgrep("cnirun.oci.shim import main.* create ")
                for pid in target:
                    try:
                        os.kill(pid, signal.SIGKILL)
                        killed += 1
                    except ProcessLookupError:
                        pass
            p.wait(timeout=60)
        self.report["kill_hooks"] = {"n": n, "hooks_killed": killed, "gc_lines": self._finish("docker", name)}

    def kill_watcher(self, n: int) -> None:
        """Detached containers come and go while the watcher is SIGKILLed at random moments."""
        pidfile = self.w.state_dir / "containers" / ".watcher.pid"
        kills = 0
        cids = []
        for i in range(n):
            r = self.w.cnirun("-d", "--rm", "busybox", "sleep", f"{self.rng.uniform(0.2, 1.5):.2f}", timeout=120)
            assert r.returncode == 0, r.stderr
            cids.append(r.stdout.strip())
            time.sleep(self.rng.uniform(0.0, 0.8))
            try:
                pid = int(pidfile.read_text())
                os.killpg(pid, signal.SIGKILL)  # supervisor and worker: the whole watcher
                kills += 1
            except (OSError, ValueError):
                pass
        # Every container's sleep (<= 1.5 s) ends.
        wait_for(lambda: not _containers("docker", [f"id={cid}" for cid in cids], running=True), 10.0, step=0.2)
        self.report["kill_watcher"] = {"n": n, "watcher_kills": kills, "gc_lines": self._finish("docker", None)}

    def assert_clean(self) -> None:
        self.w.assert_clean(within=20.0)
        if not wait_for(lambda: not orphaned_runc_containers(self.started), 10.0, step=0.5):
            left = orphaned_runc_containers(self.started)
            assert not left, f"runc containers dockerd no longer knows (a shim and runc init each): {left}"


RUNC_ROOT = "/run/docker/runtime-runc/moby"


def orphaned_runc_containers(since: float) -> list[str]:
    """Containers runc holds under dockerd's root, made after `since`, that dockerd does not know: a failed
    start whose created container nobody can delete any more (its init waits in runc's exec FIFO forever)."""
    out = []
    for cid in os.listdir(RUNC_ROOT) if os.path.isdir(RUNC_ROOT) else []:
        try:
            if os.stat(os.path.join(RUNC_ROOT, cid)).st_mtime < since:
                continue
        except OSError:
            continue
        if subprocess.run(["docker", "inspect", "--type", "container", cid], capture_output=True).returncode != 0:
            out.append(cid[:12])
    return out


class DockerProxy:
    """A unix socket in front of dockerd's that acts at a chosen moment of a run's Engine API calls.

    Every call is relayed unchanged. For a call `hold(request head, client pid)` picks, the proxy reads
    dockerd's whole answer (the run path's client asks for `Connection: close`: the answer ends
    with EOF), calls `on_answer(request head, answer)` and only then passes the answer on: what
    on_answer does (SIGKILL the run, kill a container) lands after dockerd did the call and
    before the run learnt its result, every time. Point a run at it with DOCKER_HOST=unix://PATH.
    """

    def __init__(self, path: Path, hold: Callable[[bytes, int], bool],
                 on_answer: Callable[[bytes, bytes], None]) -> None:
        import threading

        self.path, self.hold, self.on_answer = str(path), hold, on_answer
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.bind(self.path)
        self.sock.listen(64)
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        import threading

        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            up = socket.socket(socket.AF_UNIX)
            up.connect("/var/run/docker.sock")
            threading.Thread(target=self._relay, args=(conn, up), daemon=True).start()

    def _relay(self, conn: socket.socket, up: socket.socket) -> None:
        import select

        try:
            head = b""
            while b"\r\n\r\n" not in head:
                data = conn.recv(65536)
                if not data:
                    return
                head += data
            import struct

            pid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))[0]
            held = self.hold(head, pid)
            up.sendall(head)
            if held:
                answer = b""
                while True:
                    data = up.recv(65536)
                    if not data:
                        break
                    answer += data
                self.on_answer(head, answer)
                conn.sendall(answer)
                return
            client_open = True
            while True:
                ready = select.select([up] + ([conn] if client_open else []), [], [])[0]
                if conn in ready:
                    data = conn.recv(65536)
                    if data:
                        up.sendall(data)
                    else:  # a half-close (end of an attach's stdin): dockerd's answer keeps flowing
                        client_open = False
                        up.shutdown(socket.SHUT_WR)
                if up in ready:
                    data = up.recv(65536)
                    if not data:
                        return
                    conn.sendall(data)
        except OSError:
            pass
        finally:
            conn.close()
            up.close()

    def close(self) -> None:
        self.sock.close()


def chain_with_slow_noop(w: World, sleep_s: float) -> None:
    """The World's network plus cnirun's noop plugin sleeping `sleep_s` on ADD (a slow plugin)."""
    from cnirun.plugins import install_plugin_script
    from cnirun.plugins import noop

    plugdir = w.tmp / "plugins"
    plugdir.mkdir(exist_ok=True)
    install_plugin_script(plugdir, "noop", "cnirun.plugins.noop")
    debug = w.tmp / "slow.json"
    noop.write_debug(debug, commands={"ADD": {"sleep": sleep_s}})
    w.conflist(extra=[{"type": "noop", "debugFile": str(debug)}])
    w.env["CNI_PATH"] = f"{plugdir}:/usr/lib/cni"


def report_lines(report: dict[str, Any]) -> list[str]:
    return [f"{k}: {json.dumps(v)}" for k, v in report.items()]


__all__ = ["Chaos", "DockerProxy", "chain_with_slow_noop", "report_lines", "Path"]
