"""`cnirun compose [-f FILE] [-p PROJECT] up [-d] | down`: compose projects on CNI networks."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from .errors import one_line_errors


def register(app: typer.Typer) -> None:
    compose = typer.Typer(help="Run a compose project's services on CNI networks.", no_args_is_help=True)
    app.add_typer(compose, name="compose")

    @compose.callback()
    def options(
        ctx: typer.Context,
        file: Path = typer.Option(None, "-f", "--file", help="Compose file (default: compose.yaml etc. here)."),
        project: str = typer.Option(None, "-p", "--project-name", help="Project name (default: the directory's)."),
        engine: str = typer.Option(None, "--engine", help="docker or podman (env CNIRUN_ENGINE; default docker)."),
    ) -> None:
        ctx.obj = {"file": file, "project": project, "engine": engine}

    @compose.command("up")
    def up(ctx: typer.Context,
           detach: bool = typer.Option(False, "-d", "--detach", help="Start in the background.")) -> None:
        """Create the networks and start the services (in depends_on order)."""
        from ..compose import up as composeup

        with one_line_errors():
            proj = _project(ctx.obj)
            code = composeup.up(proj, detach, _engine(ctx.obj))
        raise SystemExit(code)

    @compose.command("down")
    def down(ctx: typer.Context) -> None:
        """Stop and remove the project's containers, their attachments and its networks."""
        from ..compose import up as composeup

        with one_line_errors():
            name = ctx.obj["project"]
            if name:
                from ..compose.project import normalize_project_name

                name = normalize_project_name(name)
            else:
                name = _project(ctx.obj).name
            code = composeup.down(name, _engine(ctx.obj))
        raise SystemExit(code)

    @compose.command("config")
    def config(ctx: typer.Context) -> None:
        """Check the file and print the conflists its networks would get."""
        import json

        from ..netstore.networks import Planner
        from ..runtime import CNI

        with one_line_errors():
            proj = _project(ctx.obj)
            planner = Planner(CNI().networks())
            out = {"name": proj.name, "services": [s.name for s in proj.services],
                   "networks": {k: (planner.conflist(s) if not s.external else {"external": s.name})
                                for k, s in proj.networks.items()}}
        print(json.dumps(out, indent=2))


def _project(obj: dict[str, Any]) -> Any:
    from ..compose.project import load_project

    return load_project(obj["file"], obj["project"])


def _engine(obj: dict[str, Any]) -> str:
    from ..engines import engine_name

    return engine_name(obj["engine"])
