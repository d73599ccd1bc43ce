"""Entry point of the `cnirun` command.

`cnirun IMAGE ...` is short for `cnirun run IMAGE ...`. The run path parses
docker-run style options itself and never imports typer: it is the command
people run most, and typer's import is pure start-up cost there.

A first word that is a docker or podman command cnirun does not have (`logs`,
`stop`, `images`, ...) is never taken for an image: it gets one line naming
the engine's command to use, and nothing is pulled or run. An image named
like one of those words runs with `cnirun run IMAGE`.
"""
from __future__ import annotations

import sys

# Subcommands served by the typer application; anything else is an image.
SUBCOMMANDS = frozenset(
    {"cni", "exec", "network", "ps", "inspect", "gc", "hook", "install", "uninstall", "compose", "watch", "version", "overlay", "port",
     "update"}
)

# The top-level commands of the docker CLI (20.10, management commands included)
# and of podman (4.x) that cnirun does not have, with the engine that has them
# ("" : both; the engine in use, CNIRUN_ENGINE, is named). cnirun's own
# commands of the same names (run, exec, inspect, ps, port, update, network,
# version, compose) are in SUBCOMMANDS; `help` is cnirun's help.
ENGINE_COMMANDS: dict[str, str] = {
    **dict.fromkeys(
        ("attach", "build", "commit", "cp", "create", "diff", "events", "export", "history", "images", "import",
         "info", "kill", "load", "login", "logout", "logs", "pause", "pull", "push", "rename", "restart", "rm", "rmi",
         "save", "search", "start", "stats", "stop", "tag", "top", "unpause", "wait",
         "container", "image", "manifest", "secret", "system", "volume"), ""),
    **dict.fromkeys(("builder", "buildx", "config", "context", "node", "plugin", "service", "stack", "swarm",
                     "trust"), "docker"),
    **dict.fromkeys(("auto-update", "generate", "healthcheck", "init", "kube", "machine", "mount", "play", "pod",
                     "unmount", "umount", "unshare", "untag"), "podman"),
}

# The docker CLI's global options cnirun does not take, and what to use instead.
_HOST = "set DOCKER_HOST or use --context NAME"
_TLS = "use a Docker context with TLS (--context NAME)"
DOCKER_GLOBALS = {
    "-H": _HOST, "--host": _HOST, "--config": "set DOCKER_CONFIG", "--log-level": "use --debug for cnirun's trace",
    "--tls": _TLS, "--tlsverify": _TLS, "--tlscacert": _TLS, "--tlscert": _TLS, "--tlskey": _TLS,
}


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        args = _global_options(args)
    except ValueError as e:
        sys.stderr.write(f"cnirun: {e}\n")
        return 125
    first = args[0] if args else ""
    if first == "-h":
        args[0] = first = "--help"  # as docker -h
    elif args == ["-v"]:
        args[0] = first = "--version"  # as docker -v (with a value, -v is run's --volume)
    if first == "help":
        return _help(args[1:])
    if first in ENGINE_COMMANDS:
        sys.stderr.write(_not_ours(first, args[1:]) + "\n")
        return 1
    from ..core.paths import rootless

    if rootless():
        from .rootless import dispatch

        code = dispatch(first, args, is_run=first == "run" or (
            first not in SUBCOMMANDS and first not in ("", "-h", "--help", "--version", "help")
            and not _is_global_typer_option(first)))
        if code is not None:
            return code
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
            if first == "run":
                return _done(run_main(args[1:]), argv)
            # `cnirun [OPTIONS] IMAGE` never takes a command's name for the image.
            return _done(run_main(args, not_images=SUBCOMMANDS | ENGINE_COMMANDS.keys() | {"run", "help"},
                                  slips_of=SUBCOMMANDS | {"run", "help"}), argv)
    from typer._click.exceptions import ClickException  # typer's own click (typer is pinned)
    from typer.exceptions import Abort

    from .app import command

    try:
        code = command().main(args=args, prog_name="cnirun", standalone_mode=False)
    except SystemExit as e:
        return int(e.code or 0) if not isinstance(e.code, str) else 1
    except ClickException as e:
        return _usage_error(e)
    except Abort:
        sys.stderr.write("cnirun: aborted\n")
        return 1
    return code if isinstance(code, int) else 0


def _usage_error(e: Exception) -> int:
    """A typer command's usage error as one line naming the command's help (a bare group: its help)."""
    from typer._click.exceptions import NoArgsIsHelpError, UsageError

    if isinstance(e, NoArgsIsHelpError):
        e.show()
        return e.exit_code
    message = "; ".join(ln.strip() for ln in e.format_message().splitlines() if ln.strip())  # type: ignore[attr-defined]
    ctx = e.ctx if isinstance(e, UsageError) else None
    sys.stderr.write(f"cnirun: {message} (see {ctx.command_path if ctx else 'cnirun'} --help)\n")
    return int(e.exit_code)  # type: ignore[attr-defined]


def _done(code: int, argv: list[str] | None) -> int:
    """The program's own run (argv from sys.argv) of `run` or of a command timed against its plugins
    ends at once (cnirun.core.process: the teardown of a run's interpreter costs 8-12 ms); a caller that
    passed argv (tests, in-process) gets the code back."""
    if argv is None:
        from ..core.process import exit_now

        exit_now(code)
    return code


def _global_options(args: list[str]) -> list[str]:
    """Take cnirun's global options (before the command or image) off args and act on them.

    --context NAME: the Docker context, as the docker CLI's flag. It goes into
    DOCKER_CONTEXT so that every Docker client of this process and of its
    children (the watcher, the docker CLI) resolves the same daemon
    (engines.docker_context). --engine NAME: CNIRUN_ENGINE for every command
    (a command's own --engine still wins). --debug (-D, as docker's): trace each phase
    (cnirun.core.trace), in every command. ValueError: a bad global option, or one of
    the docker CLI's that cnirun does not take (125, as a bad option of a run).
    """
    import os

    while args:
        flag, eq, value = args[0].partition("=")
        if flag in ("--debug", "-D"):
            if eq and value.lower() not in ("true", "false", "1", "0"):
                raise ValueError(f"invalid value {value!r} for {flag}: expected true or false")
            if not eq or value.lower() in ("true", "1"):
                from ..core import trace

                trace.enable()
            args = args[1:]
        elif flag == "--context":
            name, args = _option_value(args, "--context needs a Docker context name: see `docker context ls`")
            os.environ["DOCKER_CONTEXT"] = name
            from ..engines.docker_context import resolve_endpoint
            from ..core.errors import EngineError

            try:
                resolve_endpoint()  # a context that does not exist fails every command, as docker's
            except EngineError as e:
                raise ValueError(str(e)) from None
        elif flag == "--engine":
            name, args = _option_value(args, "--engine needs docker or podman")
            from ..core.errors import EngineError
            from ..engines import check_name

            try:
                os.environ["CNIRUN_ENGINE"] = check_name(name.strip().lower())
            except EngineError as e:
                raise ValueError(str(e)) from None
        elif flag in DOCKER_GLOBALS:
            raise ValueError(f"{flag} is a docker CLI option cnirun does not take: {DOCKER_GLOBALS[flag]}")
        else:
            return args
    return args


def _option_value(args: list[str], missing: str) -> tuple[str, list[str]]:
    """The value of the global option args[0] (`--flag VALUE` or `--flag=VALUE`) and the arguments after it;
    ValueError(missing) when it has none."""
    flag, eq, value = args[0].partition("=")
    if not eq:
        if len(args) < 2 or not args[1] or args[1].startswith("-"):
            raise ValueError(missing)
        return args[1], args[2:]
    if not value:
        raise ValueError(missing)
    return value, args[1:]


def _engine_line(engine: str, command: str, rest: list[str]) -> str:
    """`engine command rest...` as a shell would take it back, on one line (control characters escaped)."""
    import shlex

    line = shlex.join([engine, command, *rest])
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in line)


def _not_ours(command: str, rest: list[str]) -> str:
    """The one line for a docker/podman command cnirun does not have: which command to use instead."""
    from ..engines import named_engine

    engine = ENGINE_COMMANDS[command] or named_engine()
    return (f"cnirun: {command!r} is not a cnirun command; use: {_engine_line(engine, command, rest)}"
            f" (to run an image named {command}: cnirun run {command})")


def _help(topic: list[str]) -> int:
    """`cnirun help [COMMAND...]`: the help of cnirun or of that command, as `cnirun [COMMAND...] --help`."""
    if topic and topic[0] in ENGINE_COMMANDS:
        sys.stderr.write(_not_ours(topic[0], topic[1:]) + "\n")
        return 1
    if topic and topic[0] not in SUBCOMMANDS and topic[0] not in ("run", "help"):
        sys.stderr.write(f"cnirun: no help for {topic[0]!r}: not a cnirun command (see cnirun --help)\n")
        return 1
    if topic[:1] == ["help"]:
        topic = []
    return main([*topic, "--help"])


def _is_global_typer_option(arg: str) -> bool:
    return arg.partition("=")[0] in ("--install-completion", "--show-completion")


if __name__ == "__main__":
    sys.exit(main())
