"""Entry point of the `cnirun` command.

`cnirun IMAGE ...` is short for `cnirun run IMAGE ...`. The run path parses
docker-run style options itself and never imports typer: it is the command
people run most, and typer's import is pure start-up cost there.
"""
from __future__ import annotations

import sys

# Subcommands served by the typer application; anything else is an image.
SUBCOMMANDS = frozenset(
    {"cni", "exec", "network", "ps", "inspect", "gc", "hook", "install", "uninstall", "compose", "watch", "version", "overlay", "port"}
)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    first = args[0] if args else ""
    if first == "cni":
        # cnitool's drop-in is parsed by hand: no typer import on that path (bench/bench_core.py).
        from .cni_cmd import main as cni_main

        return cni_main(args[1:])
    if first == "exec":
        # Parsed by hand too: `cnirun exec` wraps commands in scripts.
        from .exec_cmd import main as exec_main

        return exec_main(args[1:])
    if first == "port" or (first == "network" and args[1:2] in (["connect"], ["disconnect"])):
        # Parsed by hand too: connect and port add are timed against `cni add` (bench/bench_connect.py).
        if first == "port":
            from .port_cmd import run as port_run

            return port_run(args[1:])
        from .connect_cmd import run as connect_run

        return connect_run(args[1:])
    if first == "run" or (first and first not in SUBCOMMANDS and first not in ("-h", "--help", "--version")
                          and not _is_global_typer_option(first)):
        try:
            from .run import run_main
        except ImportError:  # the runner is not there: let typer report the unknown command
            pass
        else:
            return run_main(args[1:] if first == "run" else args)
    from .app import app

    try:
        app(args=args, prog_name="cnirun", standalone_mode=True)
    except SystemExit as e:
        return int(e.code or 0) if not isinstance(e.code, str) else 1
    return 0


def _is_global_typer_option(arg: str) -> bool:
    return arg in ("--install-completion", "--show-completion")


if __name__ == "__main__":
    sys.exit(main())
