"""Entry point of the `cnirun` command.

`cnirun IMAGE ...` is short for `cnirun run IMAGE ...`. The run path parses
docker-run style options itself and never imports typer: it is the command
people run most, and typer's import is pure start-up cost there.
"""
from __future__ import annotations

import sys

# Subcommands served by the typer application; anything else is an image.
SUBCOMMANDS = frozenset(
    {"cni", "exec", "network", "ps", "inspect", "gc", "hook", "install", "uninstall", "compose", "watch", "version", "overlay", "port",
     "update"}
)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        args = _global_options(args)
    except ValueError as e:
        sys.stderr.write(f"cnirun: {e}\n")
        return 125
    first = args[0] if args else ""
    if first in ("--version", "version"):
        # Hand-parsed: no typer import for the first thing people type.
        from .version_cmd import main as version_main

        return version_main(args[1:])
    if first == "cni":
        # cnitool's drop-in is parsed by hand: no typer import on that path (bench/bench_core.py).
        from .cni_cmd import main as cni_main

        return _done(cni_main(args[1:]), argv)
    if first == "exec":
        # Parsed by hand too: `cnirun exec` wraps commands in scripts.
        from .exec_cmd import main as exec_main

        return exec_main(args[1:])
    if first == "update":
        # Parsed by hand too: update is timed against a full ADD (bench/bench_policy.py).
        from .update_cmd import run as update_run

        return _done(update_run(args[1:]), argv)
    if first == "port" or (first == "network" and args[1:2] in (["connect"], ["disconnect"])):
        # Parsed by hand too: connect and port add are timed against `cni add` (bench/bench_connect.py).
        if first == "port":
            from .port_cmd import run as port_run

            return _done(port_run(args[1:]), argv)
        from .connect_cmd import run as connect_run

        return _done(connect_run(args[1:]), argv)
    if first == "run" or (first and first not in SUBCOMMANDS and first not in ("-h", "--help", "--version")
                          and not _is_global_typer_option(first)):
        try:
            from .run import run_main
        except ImportError:  # the runner is not there: let typer report the unknown command
            pass
        else:
            return _done(run_main(args[1:] if first == "run" else args), argv)
    from .app import command

    try:
        command().main(args=args, prog_name="cnirun", standalone_mode=True)
    except SystemExit as e:
        return int(e.code or 0) if not isinstance(e.code, str) else 1
    return 0


def _done(code: int, argv: list[str] | None) -> int:
    """The program's own run (argv from sys.argv) of `run` or of a command timed against its plugins
    ends at once (cnirun.process: the teardown of a run's interpreter costs 8-12 ms); a caller that
    passed argv (tests, in-process) gets the code back."""
    if argv is None:
        from ..process import exit_now

        exit_now(code)
    return code


def _global_options(args: list[str]) -> list[str]:
    """Take cnirun's global options (before the command or image) off args and act on them.

    --context NAME: the Docker context, as the docker CLI's flag. It goes into
    DOCKER_CONTEXT so that every Docker client of this process and of its
    children (the watcher, the docker CLI) resolves the same daemon
    (engines.docker_context). 125: a bad global option of a run.
    """
    import os

    while args and (args[0] == "--context" or args[0].startswith("--context=")):
        if args[0] == "--context":
            if len(args) < 2 or not args[1] or args[1].startswith("-"):
                raise ValueError("--context needs a Docker context name: see `docker context ls`")
            name, args = args[1], args[2:]
        else:
            name, args = args[0].partition("=")[2], args[1:]
            if not name:
                raise ValueError("--context needs a Docker context name: see `docker context ls`")
        os.environ["DOCKER_CONTEXT"] = name
    return args


def _is_global_typer_option(arg: str) -> bool:
    return arg.partition("=")[0] in ("--install-completion", "--show-completion")


if __name__ == "__main__":
    sys.exit(main())
