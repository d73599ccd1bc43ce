"""A foreground Docker run's console: attach, start, relay I/O, signals and terminal size, wait.

Shared by sandbox and hook mode (both start a Docker workload and wait for
it the same way); the engine is either client (lean or SDK), and the
attach stream it returns reads its own framing. Podman needs none of this:
`podman run` in the foreground relays its own console.
"""
from __future__ import annotations

import os
import threading

# signal and socket are imported where used: with enum and selectors they cost
# ~5 ms of every foreground run, which needs them only for a signal, a tty or stdin.
TYPE_CHECKING = False  # start-up cost: see cnirun.core

if TYPE_CHECKING:
    from typing import Any

    from ..engines.base import AttachStream, DockerClient
    from .signals import SignalGate


class StartFailed(Exception):
    """The workload was created but would not start (exit status as docker run: 125/126/127)."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def foreground(
    docker: DockerClient, cid: str, spec: Any, gate: SignalGate, on_started: Any = None, auto_removed: bool = False,
    before_run: Any = None,
) -> int:
    """Attach, start, relay I/O and signals, and return the exit status.

    on_started: called once start returned (or failed). before_run: called
    once start succeeded, before signals are forwarded and stdin is relayed
    (a signal meanwhile still aborts set-up): the single-container sandbox
    attaches its network there, then releases the container's first
    instruction. auto_removed: dockerd removes the container on exit; the
    wait (registered before start: docker.waits_before_start) then returns
    once it is gone.
    """
    from ..engines.docker import StartError

    pending = docker.wait_pending(cid, "removed" if auto_removed else "next-exit")  # None: wait after start
    stream = docker.attach_socket(cid, stdin=spec.interactive)
    restore_tty = None
    if spec.tty and spec.interactive and os.isatty(0):
        restore_tty = _raw_terminal()
    out_thread = threading.Thread(target=_pump_out, args=(stream, spec.tty), daemon=True)
    out_thread.start()
    try:
        try:
            docker.start(cid)
        except StartError as e:
            raise StartFailed(str(e), e.exit_code()) from None
        finally:
            if on_started is not None:
                on_started()
        if before_run is not None:
            before_run()
        waiter = docker.clone()

        def forward(signum: int) -> None:
            import signal

            waiter.kill(cid, signal.Signals(signum).name)

        gate.forward = forward
        if spec.tty and os.isatty(1):
            _resize(docker, cid)
            import signal

            signal.signal(signal.SIGWINCH, lambda *_: threading.Thread(target=_resize, args=(waiter, cid)).start())
        if spec.interactive:
            threading.Thread(target=_pump_in, args=(stream,), daemon=True).start()
        result: dict[str, int] = {}
        done = threading.Event()

        def wait() -> None:
            result["code"] = pending.result() if pending is not None else docker.wait(cid)
            done.set()

        threading.Thread(target=wait, daemon=True).start()
        done.wait()  # interruptible: signal handlers run and forward
        out_thread.join(2.0)  # drain what the container printed last
        return result["code"]
    finally:
        gate.forward = None
        if pending is not None:
            pending.close()
        if restore_tty:
            restore_tty()
        try:
            stream.close()
        except OSError:
            pass


def _pump_out(stream: AttachStream, tty: bool) -> None:
    try:
        for fd, data in stream.frames(tty):
            os.write(2 if fd == 2 else 1, data)
    except OSError:
        pass


def _pump_in(stream: AttachStream) -> None:
    try:
        while True:
            data = os.read(0, 65536)
            if not data:
                break
            stream.send(data)
        stream.end_input()
    except OSError:
        pass


def _raw_terminal() -> Any:
    import termios
    import tty

    old = termios.tcgetattr(0)
    tty.setraw(0)
    return lambda: termios.tcsetattr(0, termios.TCSADRAIN, old)


def _resize(docker: Any, cid: str) -> None:
    try:
        size = os.get_terminal_size(1)
    except OSError:
        return
    docker.resize(cid, size.lines, size.columns)
