"""`cnirun exec`: run a host command in a fresh netns attached to CNI networks.

What upstream's priv-net-run.sh does, with teardown on every exit path: the
command's exit, Ctrl-C, SIGTERM and SIGHUP all end in DEL and netns removal.

`cli.main` calls :func:`main` directly: the options are parsed by hand, so
`cnirun exec` never imports typer (its import would be most of cnirun's own
start-up cost). `register` only lists the command in the typer app's help.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
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
    from ..lifecycle import attach, detach
    from ..defaults import default_network_name
    from ..netns import create, remove
    from ..runtime import CNI

    if not command:
        fail("exec needs a command: cnirun exec [--net NAME]... -- COMMAND [ARG...]")
    # Checked before anything is attached, and with the shell's exit code for it.
    if shutil.which(command[0]) is None:
        fail(f"command not found: {command[0]!r} (not an executable in PATH)", 127)
    cni = CNI()
    with one_line_errors():
        nets = cni.networks_named(networks or [default_network_name()])
    # Signals during set-up must still lead to teardown: turn them into an exception.
    received: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        received.append(signum)
        if child is None:
            raise KeyboardInterrupt
        try:
            child.send_signal(signum)
        except ProcessLookupError:
            pass

    child: subprocess.Popen[bytes] | None = None
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, on_signal)
    name = ""
    code = 125
    try:
        with one_line_errors(125):
            name, path = create()
            attach(cni, nets, name, path)
            try:
                child = subprocess.Popen(["ip", "netns", "exec", name, *command])
            except OSError as e:
                fail(f"cannot run ip netns exec: {e.strerror}", 125)
            code = child.wait()
            if code < 0:
                code = 128 - code
            elif code == 255 and received:
                code = 128 + received[0]
    finally:
        # Teardown must not be cut short by a second Ctrl-C.
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(s, signal.SIG_IGN)
        if name:
            errors = detach(cni, name)
            for e in errors:
                sys.stderr.write(f"cnirun: teardown: {e}\n")
            try:
                remove(name)
            except Exception as e:  # noqa: BLE001 - report, never mask the exit code
                sys.stderr.write(f"cnirun: teardown: {e}\n")
    return code


__all__ = ["register", "run_in_netns", "os"]
