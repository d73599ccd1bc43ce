"""The typer application: every subcommand; `run`, `version`, `cni`, `exec`, `port` and `network
connect/disconnect` are served by hand in main.py and listed here for --help and completion.
"""
from __future__ import annotations

from typing import Any

import typer

from . import cni_cmd, exec_cmd
from .completion import handparsed_command
from .examples import EXAMPLES

app = typer.Typer(
    name="cnirun",
    help="Run Docker and Podman containers on CNI networks. `cnirun IMAGE [CMD...]` is short for "
         "`cnirun run IMAGE [CMD...]`; docker's and podman's other commands (logs, stop, images, ...) say which "
         "command to use instead. `cnirun help [COMMAND]` is `cnirun [COMMAND] --help`.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


@app.callback()
def _global(
    version: bool = typer.Option(False, "--version", help="Show versions (as `cnirun version`) and exit."),
    context: str = typer.Option(None, "--context", metavar="NAME",
                                help="Docker context to use (overrides DOCKER_CONTEXT, DOCKER_HOST and "
                                     "`docker context use`)."),
    engine: str = typer.Option(None, "--engine", metavar="NAME",
                               help="docker or podman for every command (as CNIRUN_ENGINE=NAME)."),
    debug: bool = typer.Option(False, "--debug", "-D", help="Trace each phase and its duration on stderr, in "
                               "any command (as CNIRUN_TRACE=1)."),
) -> None:
    """main.py acts on these before typer runs (they must work on the hand-parsed paths too)."""


@app.command(name="run", add_help_option=False, short_help="Run a container on CNI networks: cnirun [run] IMAGE.",
             cls=handparsed_command(".run:USAGE"), context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
def _run(ctx: typer.Context) -> None:
    """Run a container on CNI networks (the default command: `cnirun IMAGE` is `cnirun run IMAGE`)."""
    from .run import run_main

    raise SystemExit(run_main(list(ctx.args)))


@app.command(name="port", add_help_option=False,
             short_help="List, add or remove a running container's published ports (as docker port).",
             cls=handparsed_command(".port_cmd:USAGE", "container"), context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
def _port(ctx: typer.Context) -> None:
    """Published ports of a running container: `cnirun port CONTAINER`, `port add|rm CONTAINER SPEC...`."""
    from .port_cmd import run as port_run

    raise SystemExit(port_run(list(ctx.args)))


@app.command(name="update", add_help_option=False,
             short_help="Change a running container's rate limits live (--ingress-rate/--egress-rate).",
             context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
def _update(ctx: typer.Context) -> None:
    """Rate limits of a running container: `cnirun update CONTAINER --ingress-rate 10mbit|none`."""
    from .update_cmd import run as update_run

    raise SystemExit(update_run(list(ctx.args)))


def _register_all() -> None:
    from . import version_cmd

    version_cmd.register(app)
    app.add_typer(cni_cmd.app, name="cni")
    exec_cmd.register(app)
    # Later subcommand groups register themselves here when their module exists.
    for name in ("network_cmd", "container_cmd", "hook_cmd", "install_cmd", "compose_cmd", "overlay_cmd"):
        try:
            mod = __import__(f"{__package__}.{name}", fromlist=["register"])
        except ModuleNotFoundError as e:
            if e.name != f"{__package__}.{name}":
                raise
            continue
        mod.register(app)


_register_all()


def _add_examples(cmd: Any, path: str) -> None:
    """Every command's help ends with its examples (cli/examples.py), kept as written (click's \\b)."""
    lines = EXAMPLES.get(path)
    if lines and not cmd.epilog:
        cmd.epilog = "\b\nExamples:\n" + "\n".join(f"  {ln}" for ln in lines)
    for name, sub in (getattr(cmd, "commands", None) or {}).items():
        _add_examples(sub, f"{path} {name}".strip())


def command() -> Any:
    """The click command of the whole application, with the examples attached."""
    cmd = typer.main.get_command(app)
    _add_examples(cmd, "")
    return cmd
