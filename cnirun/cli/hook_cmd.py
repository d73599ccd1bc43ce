"""`cnirun hook STAGE`: the OCI hook, for runtimes configured to call `cnirun`.

The same code as the lean `cnirun-hook` entry point (cnirun.oci.hook.main); the
installed hooks use that one, because typer's import costs tens of ms on
every container start.
"""
from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    @app.command(name="hook")
    def hook(
        stage: str = typer.Argument(..., metavar="STAGE", help="createRuntime or prestart (attach), poststop (detach)."),
    ) -> None:
        """OCI hook: read the container state on stdin, attach or detach its CNI networks."""
        from ..oci.hook import main

        raise SystemExit(main([stage]))
