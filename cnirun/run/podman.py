"""Podman runs: a netns made by cnirun, attached, then `podman run --network ns:PATH`.

podman starts up while ADD runs; a prestart hook (written per run into the
run's hooks.d) holds the container's first instruction until ADD is done.
Once the container of a foreground run has run and `podman run` returned
its status, the DEL goes on in a detached process (teardown_in_background),
as the Docker runs' do: the user does not wait for the plugins. A detached
run's poststop hook wakes the watcher instead. The netns is cnirun's own, so
teardown never depends on the container still existing.
"""
from __future__ import annotations

import os

from .etc_files import host_file_binds, publish_engine_name, write_host_files
from .failures import EXIT_CNIRUN
TYPE_CHECKING = False  # start-up cost: see cnirun.core

if TYPE_CHECKING:
    from typing import Callable

    from ..state.runs import RunMeta, RunState
    from .request import RunOutcome
    from .plan import Plan
    from .signals import SignalGate


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


def _replay(path: str, failed: bool) -> str:
    """What podman wrote into `path`: onto our stderr (its own messages, as `podman run` shows them),
    or, when podman run failed, its reason (the last line, without "Error: ") for cnirun's one line."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return ""
    if failed:
        lines = data.decode(errors="replace").strip().splitlines()
        return lines[-1].removeprefix("Error: ") if lines else ""
    if data:
        os.write(2, data)
    return ""


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def run_podman(p: Plan, gate: SignalGate, outcome: RunOutcome) -> RunOutcome:
    """Make and record the netns; start `podman run` while ADD runs; wait; hand a -d run to the watcher.

    Whatever happens before the hand-over, the run is undone (_PodmanRun.undo).
    """
    from ..engines import podman_run as podman
    from .plan import record_run

    spec = p.req.spec
    podman.podman_bin()
    st, meta = record_run(p, "podman", detached=spec.detach)
    run = _PodmanRun(p, st, meta)
    outcome.code, outcome.run_id, outcome.detached = EXIT_CNIRUN, st.id, spec.detach
    try:
        argv, env_passthrough = run.prepare()
        run.start(argv, env_passthrough)
        gate.forward = run.forward
        outcome.code = run.wait()
        if run.reason:
            outcome.error = f"podman run: {run.reason}"
        if spec.detach and outcome.code == 0:
            run.hand_over()
        outcome.container = meta.workload
        return outcome
    finally:
        gate.forward = None
        _remove(run.env_file)
        if not run.handed_over:
            gate.shield()
            outcome.warnings += run.undo()


class _PodmanRun:
    """One Podman run's steps and what they made, for its teardown."""

    def __init__(self, p: Plan, st: RunState, meta: RunMeta) -> None:
        self.p, self.st, self.meta = p, st, meta
        self.spec = p.req.spec
        self.hostname = self.spec.hostname or st.id[:12]
        self.hooks_dir = str(st.path / "hooks.d")
        self.cidfile = st.path / "cid"
        self.env_file = str(st.path / "env")
        self.errfile = str(st.path / "podman.err") if self.spec.detach else ""
        self.gate_lock, self.gate_ok = st.path / "add.lock", st.path / "add.ok"
        self.gate_fd = -1
        self.child: _Child | None = None
        self.handed_over = False
        self.reason = ""  # why a detached `podman run` failed, in podman's words

    def prepare(self) -> tuple[list[str], dict[str, str]]:
        """The netns (recorded), the hooks, the env file; `podman run`'s argv and the environment it takes."""
        from ..core.fsutil import identity
        from ..core.lock import flock
        from ..engines import podman_run as podman
        from ..network import netns as nsmod

        st, meta, spec = self.st, self.meta, self.spec
        name = f"cnirun-{st.id[:16]}"
        meta.netns = nsmod.path_of(name)
        st.write_meta(meta)  # intent first: a kill from here on leaves a run whose teardown removes the netns
        _, path = nsmod.create(name)
        meta.netns, meta.netns_id = path, identity(path)
        st.write_meta(meta)
        labels = {**spec.labels, "cnirun.id": st.id, "cnirun.state": str(st.path.parent), "cnirun.role": "workload"}
        # podman starts up while ADD runs; a prestart hook holds the container's
        # first instruction until ADD is done (and aborts it if ADD failed).
        self.gate_fd = flock(str(self.gate_lock))
        podman.write_gate_hook(self.hooks_dir, str(self.gate_lock), str(self.gate_ok))
        if spec.detach:  # the watcher hears of each stop: a `podman rm` is torn down as soon as the storage goes
            from .watch import wake_path

            podman.write_exit_hook(self.hooks_dir, str(wake_path(st.path.parent)), st.id)
        # Env values never go on podman's command line (world-readable in /proc):
        # a 0600 file in the run's root-only state dir, removed once podman has
        # run, or podman's own environment for what the file cannot carry.
        env_lines, env_passthrough = podman.split_env(spec.resolved_env())
        if env_lines:
            podman.write_env_file(self.env_file, env_lines)
        argv = podman.run_argv(
            spec, path, labels, host_file_binds(st), self.hostname, str(self.cidfile), self.hooks_dir,
            env_file=self.env_file if env_lines else "", env_names=list(env_passthrough),
        )
        meta.phase = "running"
        st.write_meta(meta)
        return argv, env_passthrough

    def start(self, argv: list[str], env_passthrough: dict[str, str]) -> None:
        """`podman run` as a child while ADD runs; the gate opens once ADD (and the host files) are done."""
        from ..network.lifecycle import attach

        p, st = self.p, self.st
        # -d: podman prints the container ID; the outcome carries it (from the cidfile) instead.
        # Its messages wait in a file: a failure of cnirun's own is then one line, not podman's
        # "error running hook" about the container the gate refused as well.
        self.child = _Child(argv, {**os.environ, **env_passthrough}, quiet=self.spec.detach, errfile=self.errfile)
        try:
            atts = attach(p.cni, p.networks, st.id, self.meta.netns, p.options)
            write_host_files(st, p.req, atts, self.hostname)
            self.gate_ok.touch()
        finally:
            p.release_ports()
            if self.gate_ok.exists():
                self.gate_fd = _release(self.gate_fd)  # the hook lets the container start

    def forward(self, signum: int) -> None:
        if self.child is not None:
            try:
                self.child.send_signal(signum)  # podman run proxies it to the container
            except ProcessLookupError:
                pass

    def wait(self) -> int:
        """`podman run`'s exit status (the container's); the container's ID from the cidfile."""
        assert self.child is not None  # start() made it
        code = self.child.wait()
        if self.errfile:
            self.reason = _replay(self.errfile, failed=code != 0)
        _remove(self.env_file)  # podman read it before it created the container
        self._read_cidfile()
        return 128 - code if code < 0 else code

    def _read_cidfile(self) -> None:
        try:
            self.meta.workload = self.cidfile.read_text().strip()
        except OSError:
            pass

    def hand_over(self) -> None:
        """A detached run that started: its container and state go to the watcher."""
        from .watch import ensure_watcher

        if not self.spec.name and self.meta.workload:
            from ..engines import get

            publish_engine_name(get(self.meta.engine), self.meta.workload, self.st.id)  # podman's generated name
        self.st.write_meta(self.meta)
        self.st.unlock()
        ensure_watcher()
        self.handed_over = True

    def undo(self) -> list[str]:
        """Before the hand-over: end `podman run` (never before it recorded its container), tear the run down."""
        from .teardown import teardown

        child, spec, meta = self.child, self.spec, self.meta
        ended = child is not None and child.poll() is not None
        if child is not None and not ended:
            if spec.detach:
                # The hook fails the container and podman run -d ends by itself (its words go
                # to errfile, unread: cnirun's own failure is the one line).
                self.gate_fd = _release(self.gate_fd)
                ended = child.wait_for(FAILS_WITHIN_S)
            else:
                # Its stderr is the user's: podman is killed before the hook fails, once it has
                # recorded the container (--cidfile), which it does before it runs the hook.
                ended = child.wait_for(FAILS_WITHIN_S, until=self.cidfile.exists)
        if child is not None and not ended:
            child.kill()
            child.wait()
        self.gate_fd = _release(self.gate_fd)  # the hook fails the container: ADD did not finish
        if not meta.workload:
            self._read_cidfile()
        # podman run ended on its own: it stopped (and with --rm removed) the container. A
        # detached one that failed was never handed over: it goes (`podman run -d` keeps it).
        if spec.detach:
            meta.remove = True
        elif ended and self.gate_ok.exists():  # attached, ran, and its status is known: DEL off the user's path
            from .teardown import teardown_in_background

            self.st.write_meta(meta)
            teardown_in_background(self.st, meta)
            return []
        return teardown(self.st, meta, stop=not ended, workload=spec.detach or not ended)
