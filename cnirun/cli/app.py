"""The typer application: every subcommand except `run`."""
from __future__ import annotations

import typer

from . import cni_cmd, exec_cmd

app = typer.Typer(
    name="cnirun",
    help="Run Docker and Podman containers on CNI networks. `cnirun IMAGE [CMD...]` runs a container.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
app.add_typer(cni_cmd.app, name="cni")
exec_cmd.register(app)

# Later subcommand groups register themselves here when their module exists.
for _name in ("network_cmd", "container_cmd", "hook_cmd", "install_cmd", "compose_cmd", "overlay_cmd"):
    try:
        _mod = __import__(f"{__package__}.{_name}", fromlist=["register"])
    except ModuleNotFoundError as _e:
        if _e.name != f"{__package__}.{_name}":
            raise
        continue
    _mod.register(app)
