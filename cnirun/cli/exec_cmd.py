"""`cnirun exec`: run a host command in a fresh netns attached to CNI networks.

What upstream's priv-net-run.sh does, with teardown on every exit path: the
command's exit, Ctrl-C, SIGTERM and SIGHUP all end in DEL and netns removal;
after a SIGKILL, `cnirun gc` does it once the command has ended (exec is a run
with a state dir, torn down as `cnirun run`'s are).

`cli.main` calls :func:`main` directly: the options are parsed by hand, so
`cnirun exec` never imports typer (its import would be most of cnirun's own
start-up cost). `register` only lists the command in the typer app's help.
"""
from __future__ import annotations

import os
import shutil
import signal
import sys
from typing import Any

from .errors import fail, one_line_errors

USAGE = """\
Usage: cnirun exec [--net NAME]... [--] COMMAND [ARG...]

Run COMMAND (a host program) in a private network namespace attached to the
networks (eth0, eth1, ... in order; default: the default network). The
attachments and the netns are removed however COMMAND ends. Exit status:
COMMAND's; 125 when cnirun fails; 127 when COMMAND is not in PATH.

  --net, --network NAME   network to attach (repeatable)
  -h, --help              show this help

Examples:
  cnirun exec --net mynet -- ping -c1 10.88.0.1
  cnirun exec --net a --net b -- ip addr
"""


def main(argv: list[str]) -> int:
    """`cnirun exec ARGV...`: options end at the first non-option (or `--`).

    Not cli.run's parser: docker-run's grammar (combined short flags, -h as
    --hostname, UsageError wording) is not exec's, and only the loop's shape
    is shared.
    """
    networks: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            i += 1
            break
        if arg in ("-h", "--help"):
            sys.stdout.write(USAGE)
            return 0
        if arg in ("--net", "--network"):
            if i + 1 >= len(argv):
                sys.stderr.write(f"cnirun: {arg} needs a network name: see cnirun exec --help\n")
                return 2
            networks.append(argv[i + 1])
            i += 2
            continue
        if arg.startswith(("--net=", "--network=")):
            networks.append(arg.split("=", 1)[1])
            i += 1
            continue
        if arg.startswith("-") and arg != "-":
            sys.stderr.write(f"cnirun: unknown exec option {arg}: see cnirun exec --help\n")
            return 2
        break
    try:
        return run_in_netns(networks, argv[i:])
    except SystemExit as e:  # fail() and one_line_errors() exit with the status they chose
        return e.code if isinstance(e.code, int) else 1


def register(app: Any) -> None:
    import typer

    from .completion import network_names

    @app.command(
        name="exec",
        context_settings={"allow_interspersed_args": False},
    )
    def exec_(
        command: list[str] = typer.Argument(..., metavar="COMMAND [ARG...]", help="What to run in the netns."),
        net: list[str] = typer.Option([], "--net", "--network", help="Network to attach (repeatable: eth0, eth1, ...).",
                                      autocompletion=network_names),
    ) -> None:
        """Run COMMAND in a private netns attached to the networks (default: the default network)."""
        raise SystemExit(run_in_netns(net, command))


def run_in_netns(networks: list[str], command: list[str]) -> int:
    """Attach a fresh netns, run `command` in it, tear down; the command's exit status.

    A run like `cnirun run`'s (state.RunState: engine "", mode "exec"), so
    that `cnirun gc` finishes what a killed exec started through the same
    teardown: the netns is named in the run's record before it is made, each
    ADD writes its intent record first, and the command's process (pid and
    start time) is recorded before the command may start. gc leaves the run
    alone while its lock is held (this process) or that process still runs.
    """
    from ..network import netns as nsmod
    from ..cni.defaults import default_network_name
    from ..network.lifecycle import attach
    from ..cni.runtime import CNI
    from ..core.fsutil import identity
    from ..state.runs import RunMeta, RunState, state_root
    from ..run.caches import cni_env
    from ..run.teardown import teardown

    if not command:
        fail("exec needs a command: cnirun exec [--net NAME]... -- COMMAND [ARG...]")
    # Checked before anything is attached, and with the shell's exit code for it.
    if shutil.which(command[0]) is None:
        fail(f"command not found: {command[0]!r} (not an executable in PATH)", 127)
    if os.geteuid() != 0:
        fail("cnirun exec needs root to make a network namespace and run CNI plugins: run it with sudo", 125)
    cni = CNI()
    with one_line_errors():
        nets = cni.networks_named(networks or [default_network_name()])
    # Signals during set-up must still lead to teardown: turn them into an exception.
    received: list[int] = []
    child: _Command | None = None

    def on_signal(signum: int, _frame: object) -> None:
        received.append(signum)
        if child is None or child.held():
            raise KeyboardInterrupt  # still setting up: tear down (the held command never runs)
        child.send_signal(signum)

    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, on_signal)
    st: RunState | None = None
    meta: RunMeta | None = None
    code = 125
    try:
        with one_line_errors(125):
            try:
                st = RunState.create()
            except OSError as e:
                fail(f"cannot make the run's state dir in {state_root()}: {e.strerror}", 125)
            name = f"cnirun-{st.id[:16]}"
            meta = RunMeta(
                id=st.id, engine="", mode="exec", image=command[0], netns=nsmod.path_of(name),
                networks=[n.name for n in nets], remove=True, cni_env=cni_env(cni),
            )
            st.write_meta(meta)
            nsmod.create(name)
            meta.netns_id = identity(meta.netns)
            st.write_meta(meta)
            attach(cni, nets, st.id, meta.netns)
            if nsmod.named_dir() == nsmod.NETNS_DIR:
                child = _Command(["ip", "netns", "exec", name, *command])
            else:  # inside a user's namespaces: the netns is the state dir's, not iproute2's
                child = _Command(["nsenter", f"--net={meta.netns}", "--", *command])
            meta.pid, meta.pid_start, meta.phase = child.pid, child.start, "running"
            st.write_meta(meta)
            child.release()
            code = child.wait()
            if code < 0:
                code = 128 - code
            elif code == 255 and received:
                code = 128 + received[0]
    finally:
        # Teardown must not be cut short by a second Ctrl-C.
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(s, signal.SIG_IGN)
        if child is not None:
            child.abandon()  # set-up failed before the command was released: it never runs
        if st is not None:
            try:
                errors = teardown(st, meta, stop=False, workload=False)
            except Exception as e:  # noqa: BLE001 - report, never mask the exit code; gc retries
                errors = [str(e)]
            for e in errors:
                sys.stderr.write(f"cnirun: teardown: {e}\n")
    return code


class _Command:
    """The command, forked and held before its exec until release(): its pid and start time are
    recorded first. If this process dies before releasing it, the gate pipe reads EOF and the
    command never runs."""

    def __init__(self, argv: list[str]) -> None:
        from ..core.process import process_start

        gate_r, gate_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: no Python-level cleanup, no return into the caller's frames
            try:
                os.close(gate_w)
                for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                    signal.signal(s, signal.SIG_DFL)
                if os.read(gate_r, 1) == b"1":
                    os.close(gate_r)
                    os.execvp(argv[0], argv)
            except OSError as e:
                os.write(2, f"cnirun: cannot run {argv[0]}: {e.strerror}\n".encode())
                os._exit(125)
            finally:
                os._exit(125)
        os.close(gate_r)
        self.pid, self._gate, self.returncode = pid, gate_w, None
        self.start = process_start(pid)

    def held(self) -> bool:
        return self._gate >= 0

    def release(self) -> None:
        os.write(self._gate, b"1")
        os.close(self._gate)
        self._gate = -1

    def abandon(self) -> None:
        """Close the gate unreleased (the child then exits without running the command) and reap it."""
        if self._gate >= 0:
            os.close(self._gate)
            self._gate = -1
        if self.returncode is None:
            self.wait()

    def send_signal(self, signum: int) -> None:
        if self.returncode is None:
            try:
                os.kill(self.pid, signum)
            except ProcessLookupError:
                pass

    def wait(self) -> int:
        """The exit status as subprocess gives it (-N: killed by signal N)."""
        while self.returncode is None:
            try:
                _, status = os.waitpid(self.pid, 0)
            except InterruptedError:
                continue
            except ChildProcessError:
                self.returncode = 125
                break
            self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode


__all__ = ["register", "run_in_netns"]
