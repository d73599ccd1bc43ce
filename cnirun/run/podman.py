"""Podman runs: a netns made by cnirun, attached, then `podman run --network ns:PATH`.

podman starts up while ADD runs; a prestart hook (written per run into the
run's hooks.d) holds the container's first instruction until ADD is done,
and a poststop hook lets DEL start as soon as the container stopped
(_EarlyDel) instead of after podman removed it. The netns is cnirun's own,
so teardown never depends on the container still existing.
"""
from __future__ import annotations

import os

from .etc_files import host_file_binds, publish_engine_name, write_host_files
from .failures import EXIT_CNIRUN
TYPE_CHECKING = False  # typing costs ~7 ms of start-up on `cnirun run`: annotations only

if TYPE_CHECKING:
    import threading
    from typing import Callable

    from ..state.runs import RunMeta, RunState
    from .request import RunOutcome
    from .plan import Plan
    from .signals import SignalGate


class _EarlyDel:
    """DEL as soon as the container has stopped (a poststop hook writes to a FIFO).

    `podman run --rm` spends tens of ms removing the container after it
    stopped; the netns is cnirun's, so DEL need not wait for that. The
    final teardown still runs detach again (then a no-op, or a retry).
    """

    def __init__(self, st: RunState, meta: RunMeta) -> None:
        self.fifo = str(st.path / "exited")
        os.mkfifo(self.fifo, 0o600)
        self._fd = os.open(self.fifo, os.O_RDWR | os.O_CLOEXEC)
        self._meta = meta
        self._thread: threading.Thread | None = None
        self._cancelled = False

    def start(self) -> None:
        import threading  # once podman runs: not before it starts

        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        from .teardown import detach_networks

        try:
            os.read(self._fd, 1)
        except OSError:
            return
        if not self._cancelled:
            detach_networks(self._meta)  # errors: the final teardown retries and reports

    def finish(self) -> None:
        """Wait for an early DEL under way; wake the reader if the hook never ran. Idempotent."""
        if self._fd < 0:
            return
        if self._thread is not None and self._thread.is_alive():
            import select

            if not select.select([self._fd], [], [], 0)[0]:
                self._cancelled = True
                os.write(self._fd, b"c")
            self._thread.join()
        os.close(self._fd)
        self._fd = -1


class _Child:
    """`podman run` as a child process, started with posix_spawn.

    subprocess would cost ~6 ms of imports (signal, selectors, locale...)
    before podman can start, on every run. Like Popen(close_fds=True), the
    child gets no descriptor of ours above 2.
    """

    def __init__(self, argv: list[str], env: dict[str, str], quiet: bool, errfile: str = "") -> None:
        """quiet: stdout to /dev/null; errfile: stderr into that file (0600) instead of ours."""
        from ..cni.invoke import _inherited_fds

        null = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC) if quiet else -1
        err = os.open(errfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600) if errfile else -1
        try:
            actions: list[tuple[int, ...]] = [(os.POSIX_SPAWN_DUP2, null, 1)] if quiet else []
            if errfile:
                actions.append((os.POSIX_SPAWN_DUP2, err, 2))
            actions += [(os.POSIX_SPAWN_CLOSE, fd) for fd in _inherited_fds((null, err))]
            self.pid = os.posix_spawn(argv[0], argv, env, file_actions=actions)
        finally:
            for fd in (null, err):
                if fd >= 0:
                    os.close(fd)
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self) -> int:
        if self.returncode is None:
            _, status = os.waitpid(self.pid, 0)  # retried on EINTR (PEP 475); forwarded signals run meanwhile
            self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait_for(self, seconds: float, until: Callable[[], bool] | None = None) -> bool:
        """Whether the child ended within `seconds` (polled: waitpid has no timeout); `until()`
        true ends the wait early."""
        import time

        deadline = time.monotonic() + seconds
        while self.poll() is None:
            if time.monotonic() >= deadline or (until is not None and until()):
                return False
            time.sleep(0.01)
        return True

    def send_signal(self, signum: int) -> None:
        if self.returncode is None:
            os.kill(self.pid, signum)

    def kill(self) -> None:
        self.send_signal(9)


# How long `podman run` may take to get to the gate of a run whose ADD failed. It is never
# killed before: killed between creating the container's storage and its record, it leaves a
# container no podman command lists (but `podman ps --external`) that holds the name.
FAILS_WITHIN_S = 30.0


def _release(fd: int) -> int:
    """Close the gate's lock (the hook goes on) if held; returns -1."""
    if fd >= 0:
        os.close(fd)
    return -1


def _replay(path: str) -> None:
    """What podman wrote into `path` onto our stderr (its own messages, as `podman run` shows them)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return
    if data:
        os.write(2, data)


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def run_podman(p: Plan, gate: SignalGate) -> RunOutcome:
    from ..network import netns as nsmod
    from ..engines import podman
    from ..network.lifecycle import attach
    from ..core.lock import flock
    from .request import RunOutcome
    from ..core.fsutil import identity
    from ..state.runs import RunMeta, RunState
    from .caches import cni_env
    from .teardown import teardown

    req, spec = p.req, p.req.spec
    podman.podman_bin()
    st = RunState.create()
    meta = RunMeta(
        id=st.id, engine="podman", image=spec.image, name=spec.name, networks=[n.name for n in p.networks],
        detached=spec.detach, remove=spec.remove, cni_env=cni_env(p.cni),
    )
    st.write_meta(meta)
    hostname = spec.hostname or st.id[:12]
    cidfile = st.path / "cid"
    errfile = str(st.path / "podman.err") if spec.detach else ""
    child: _Child | None = None
    early: _EarlyDel | None = None
    handed_over = False
    gate_fd = -1
    outcome = RunOutcome(code=EXIT_CNIRUN, run_id=st.id, detached=spec.detach)
    try:
        name, path = nsmod.create(f"cnirun-{st.id[:16]}")
        meta.netns, meta.netns_id = path, identity(path)
        st.write_meta(meta)
        binds = host_file_binds(st)
        labels = {**spec.labels, "cnirun.id": st.id, "cnirun.state": str(st.path.parent), "cnirun.role": "workload"}
        # podman starts up while ADD runs; a prestart hook holds the container's
        # first instruction until ADD is done (and aborts it if ADD failed).
        gate_lock, gate_ok = st.path / "add.lock", st.path / "add.ok"
        gate_fd = flock(str(gate_lock))
        podman.write_gate_hook(str(st.path / "hooks.d"), str(gate_lock), str(gate_ok))
        if not spec.detach:
            early = _EarlyDel(st, meta)
            podman.write_exit_hook(str(st.path / "hooks.d"), early.fifo)
        # Env values never go on podman's command line (world-readable in /proc):
        # a 0600 file in the run's root-only state dir, removed once podman has
        # run, or podman's own environment for what the file cannot carry.
        env_lines, env_passthrough = podman.split_env(spec.resolved_env())
        env_file = str(st.path / "env")
        if env_lines:
            podman.write_env_file(env_file, env_lines)
        argv = podman.run_argv(
            spec, path, labels, binds, hostname, str(cidfile), str(st.path / "hooks.d"),
            env_file=env_file if env_lines else "", env_names=list(env_passthrough),
        )
        meta.phase = "running"
        st.write_meta(meta)
        # -d: podman prints the container ID; the outcome carries it (from the cidfile) instead.
        # Its messages wait in a file: a failure of cnirun's own is then one line, not podman's
        # "error running hook" about the container the gate refused as well.
        child = _Child(argv, {**os.environ, **env_passthrough}, quiet=spec.detach, errfile=errfile)
        try:
            atts = attach(p.cni, p.networks, st.id, path, p.options)
            write_host_files(st, req, atts, hostname)
            gate_ok.touch()
            if early is not None:
                early.start()
        finally:
            p.release_ports()
            if gate_ok.exists():
                gate_fd = _release(gate_fd)  # the hook lets the container start

        def forward(signum: int) -> None:
            try:
                child.send_signal(signum)  # podman run proxies it to the container
            except ProcessLookupError:
                pass

        gate.forward = forward
        code = child.wait()
        if errfile:
            _replay(errfile)
        _remove(env_file)  # podman read it before it created the container
        if code < 0:
            code = 128 - code
        if early is not None:
            early.finish()  # DEL may be done already
        try:
            meta.workload = cidfile.read_text().strip()
        except OSError:
            pass
        if spec.detach and code == 0:
            from .watch import ensure_watcher

            if not spec.name and meta.workload:
                from ..engines import get

                publish_engine_name(get("podman"), meta.workload, st.id)  # podman's generated name
            st.write_meta(meta)
            st.unlock()
            ensure_watcher()
            handed_over = True
        outcome.code, outcome.container = code, meta.workload
        return outcome
    finally:
        gate.forward = None
        _remove(str(st.path / "env"))
        if not handed_over:
            gate.shield()
            ended = child is not None and child.poll() is not None
            if child is not None and not ended:
                if spec.detach:
                    # The hook fails the container and podman run -d ends by itself (its words go
                    # to errfile, unread: cnirun's own failure is the one line).
                    gate_fd = _release(gate_fd)
                    ended = child.wait_for(FAILS_WITHIN_S)
                else:
                    # Its stderr is the user's: podman is killed before the hook fails, once it has
                    # recorded the container (--cidfile), which it does before it runs the hook.
                    ended = child.wait_for(FAILS_WITHIN_S, until=cidfile.exists)
            if child is not None and not ended:
                child.kill()
                child.wait()
            gate_fd = _release(gate_fd)  # the hook fails the container: ADD did not finish
            if not meta.workload:
                try:
                    meta.workload = cidfile.read_text().strip()
                except OSError:
                    pass
            if early is not None:
                early.finish()
            # podman run ended on its own: it stopped (and with --rm removed) the container. A
            # detached one that failed was never handed over: it goes (`podman run -d` keeps it).
            if spec.detach:
                meta.remove = True
            outcome.warnings += teardown(st, meta, stop=not ended, workload=spec.detach or not ended)
