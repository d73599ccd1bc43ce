"""`cnirun compose [-f FILE]... [-p PROJECT] [--profile P]... [--project-directory DIR] [--env-file FILE]...
COMMAND`: compose projects on CNI networks."""
from __future__ import annotations

from pathlib import Path
from typing import Any, List, Optional

import typer

from .errors import one_line_errors


def register(app: typer.Typer) -> None:
    compose = typer.Typer(help="Run a compose project's services on CNI networks.", no_args_is_help=True)
    app.add_typer(compose, name="compose")

    @compose.callback()
    def options(
        ctx: typer.Context,
        file: Optional[List[Path]] = typer.Option(None, "-f", "--file",
                                                  help="Compose file (repeatable, merged in order; - reads "
                                                       "standard input; default: COMPOSE_FILE, else "
                                                       "compose.yaml etc. here or above)."),
        project: str = typer.Option(None, "-p", "--project-name", help="Project name (default: the directory's)."),
        profile: Optional[List[str]] = typer.Option(None, "--profile", help="Enable a profile (repeatable)."),
        engine: str = typer.Option(None, "--engine", help="docker or podman (env CNIRUN_ENGINE; default docker)."),
        project_directory: Optional[str] = typer.Option(None, "--project-directory",
                                                        help="The project directory: relative paths, .env and "
                                                             "the default name (default: the first file's)."),
        env_file: Optional[List[str]] = typer.Option(None, "--env-file",
                                                     help="Variables for interpolation instead of .env "
                                                          "(repeatable, later files win)."),
    ) -> None:
        ctx.obj = {"file": list(file or []), "project": project, "engine": engine,
                   "profiles": list(profile) if profile else None, "project_directory": project_directory,
                   "env_files": list(env_file or [])}

    _add_up_down(compose)
    _add_config_ps_logs(compose)
    _add_container_commands(compose)


def _add_up_down(compose: typer.Typer) -> None:
    @compose.command("up")
    def up(ctx: typer.Context,
           services: Optional[List[str]] = typer.Argument(None, help="Only these services (and their deps)."),
           detach: bool = typer.Option(False, "-d", "--detach", help="Start in the background."),
           build: bool = typer.Option(False, "--build", help="Build images before starting."),
           force_recreate: bool = typer.Option(False, "--force-recreate", help="Recreate even unchanged containers."),
           no_deps: bool = typer.Option(False, "--no-deps", help="Don't start linked services."),
           remove_orphans: bool = typer.Option(False, "--remove-orphans", help="Remove containers of services "
                                                                               "no longer in the file."),
           pull: Optional[str] = typer.Option(None, "--pull", help="missing, always or never (default: each "
                                                                    "service's pull_policy, else missing)."),
           scale: Optional[List[str]] = typer.Option(None, "--scale", help="SERVICE=N: run N containers of "
                                                                           "SERVICE (repeatable)."),
           no_recreate: bool = typer.Option(False, "--no-recreate", help="Keep existing containers, even "
                                                                         "changed ones."),
           no_build: bool = typer.Option(False, "--no-build", help="Never build (a build: image must exist)."),
           quiet_pull: bool = typer.Option(False, "--quiet-pull", help="Pull without drawing progress."),
           pull_always: bool = typer.Option(False, "--pull-always", help="As --pull always (podman-compose)."),
           timeout: int = typer.Option(10, "-t", "--timeout", help="Seconds a container removed (recreated, "
                                                                    "scaled down, at Ctrl+C) gets to stop."),
           renew_anon_volumes: bool = typer.Option(False, "-V", "--renew-anon-volumes",
                                                   help="A recreated container gets new anonymous volumes "
                                                        "(default: the old container's)."),
           no_color: bool = typer.Option(False, "--no-color", help="Accepted: cnirun prints no colours.")
           ) -> None:
        """Build/pull images, create networks and volumes, start the services (in depends_on order).

        Example: cnirun compose up -d --pull never --scale worker=3
        """
        from ..compose import up as composeup

        with one_line_errors():
            if pull_always and pull not in (None, "always"):
                raise typer.BadParameter(f"--pull-always and --pull {pull} are incompatible", param_hint="--pull")
            pull = "always" if pull_always else pull
            if pull is not None:
                from ..engines.images import check_policy

                check_policy(pull)
            proj = _project(ctx.obj)
            opts = composeup.UpOptions(detach=detach, build=build, force_recreate=force_recreate, no_deps=no_deps,
                                       services=list(services or []), remove_orphans=remove_orphans, pull=pull,
                                       scale=composeup.parse_scale(list(scale or [])),
                                       progress=_up_progress, no_recreate=no_recreate, no_build=no_build,
                                       quiet_pull=quiet_pull, timeout=timeout,
                                       renew_anon_volumes=renew_anon_volumes)
            code = composeup.up(proj, opts, _engine(ctx.obj))
        raise SystemExit(code)

    @compose.command("down")
    def down(ctx: typer.Context,
             volumes: bool = typer.Option(False, "-v", "--volumes", help="Remove the project's named volumes and "
                                                                          "the containers' anonymous ones too."),
             remove_orphans: bool = typer.Option(False, "--remove-orphans",
                                                 help="Also remove containers of services the file no longer "
                                                      "names."),
             timeout: Optional[int] = typer.Option(None, "-t", "--timeout", help="Seconds to wait for a "
                                                                                 "container to stop (default 10).")
             ) -> None:
        """Stop and remove the project's containers, their attachments and its networks (-v: volumes)."""
        from ..compose import down as composedown

        with one_line_errors():
            name, services = composedown.target(ctx.obj["project"], lambda: _project(ctx.obj))
            code = composedown.down(name, _engine(ctx.obj), volumes=volumes, services=services,
                                    remove_orphans=remove_orphans, timeout=timeout)
        raise SystemExit(code)


def _add_config_ps_logs(compose: typer.Typer) -> None:
    @compose.command("config")
    def config(ctx: typer.Context,
               fmt: str = typer.Option("yaml", "--format", help="yaml or json."),
               quiet: bool = typer.Option(False, "-q", "--quiet", help="Only check the file."),
               services: bool = typer.Option(False, "--services", help="Print the service names."),
               volumes: bool = typer.Option(False, "--volumes", help="Print the volume names.")) -> None:
        """Check the files and print the normalised project, as docker compose config does."""
        from ..compose.render import render

        with one_line_errors():
            if fmt not in ("yaml", "json"):
                raise typer.BadParameter("expected yaml or json", param_hint="--format")
            proj = _project(ctx.obj)
            if quiet:
                return
            if services:
                print("\n".join(s.name for s in proj.services))
            elif volumes:
                print("\n".join(proj.volumes))
            else:
                print(render(proj, fmt), end="")

    @compose.command("ps")
    def ps(ctx: typer.Context, services: Optional[List[str]] = typer.Argument(None),
           all_: bool = typer.Option(False, "-a", "--all", help="Stopped containers too."),
           fmt: str = typer.Option("table", "--format", help="table, json or a template such as "
                                                             "'{{.Name}} {{.Service}}'."),
           quiet: bool = typer.Option(False, "-q", "--quiet", help="Only container IDs.")) -> None:
        """List the project's containers.

        Example: cnirun compose ps --format '{{.Service}}\t{{.State}}'
        """
        from .output import check_format, emit, render

        def show(c: Any, p: Any, e: Any) -> int:
            rows = c.ps_records(p, e, list(services or []), all_)
            emit("\n".join(r["id"][:12] for r in rows) if quiet else render(rows, fmt, ps_table))
            return 0

        with one_line_errors():
            fmt = check_format(fmt)
        _do(ctx, show)

    @compose.command("logs")
    def logs(ctx: typer.Context, services: Optional[List[str]] = typer.Argument(None),
             follow: bool = typer.Option(False, "-f", "--follow", help="Follow the output."),
             tail: str = typer.Option("all", "-n", "--tail", help="Lines from the end of each container's "
                                                                  "output (a number or all)."),
             timestamps: bool = typer.Option(False, "-t", "--timestamps", help="Each line after its time."),
             since: Optional[str] = typer.Option(None, "--since", help="Only lines since a time: RFC 3339 "
                                                                       "(2026-12-07T21:30:00Z), Unix, or 10m ago."),
             until: Optional[str] = typer.Option(None, "--until", help="Only lines before a time (as --since)."),
             no_log_prefix: bool = typer.Option(False, "--no-log-prefix", help="Lines without `name  | `."),
             no_color: bool = typer.Option(False, "--no-color", help="Accepted: cnirun prints no colours."),
             names: bool = typer.Option(False, "--names", help="Accepted (podman-compose): lines carry the "
                                                                "container's name unless --no-log-prefix."),
             index: Optional[int] = typer.Option(None, "--index", help="Only this replica of each service.")
             ) -> None:
        """Show the services' output, each line after its container's name.

        Example: cnirun compose logs -f --tail 20 --since 10m web
        """
        from ..compose.logs import LogOptions, log_time, parse_tail

        with one_line_errors():
            opts = LogOptions(follow=follow, tail=parse_tail(tail), timestamps=timestamps,
                              since=log_time(since) if since else None, until=log_time(until) if until else None,
                              prefix=not no_log_prefix)
        _do(ctx, lambda c, p, e: c.logs(p, e, list(services or []), opts, index))


def _add_container_commands(compose: typer.Typer) -> None:
    @compose.command("exec", context_settings={"allow_interspersed_args": False})
    def exec_(ctx: typer.Context, service: str = typer.Argument(...), command: List[str] = typer.Argument(...),
              index: int = typer.Option(1, "--index", help="Which replica."),
              user: str = typer.Option("", "-u", "--user"), workdir: str = typer.Option("", "-w", "--workdir"),
              env: Optional[List[str]] = typer.Option(None, "-e", "--env"),
              no_tty: bool = typer.Option(False, "-T", "--no-TTY", help="Accepted: output is never a TTY.")) -> None:
        """Run a command in a running service container."""
        _do(ctx, lambda c, p, e: c.exec_(p, e, service, list(command), index, user, workdir, list(env or [])))

    @compose.command("stop")
    def stop(ctx: typer.Context, services: Optional[List[str]] = typer.Argument(None),
             timeout: Optional[int] = typer.Option(None, "-t", "--timeout")) -> None:
        """Stop the services' containers (their networks stay for a start)."""
        _do(ctx, lambda c, p, e: c.stop(p, e, list(services or []), timeout))

    @compose.command("start")
    def start(ctx: typer.Context, services: Optional[List[str]] = typer.Argument(None)) -> None:
        """Start stopped service containers (on the networks they had)."""
        _do(ctx, lambda c, p, e: c.start(p, e, list(services or [])))

    @compose.command("restart")
    def restart(ctx: typer.Context, services: Optional[List[str]] = typer.Argument(None),
                timeout: Optional[int] = typer.Option(None, "-t", "--timeout"),
                no_deps: bool = typer.Option(False, "--no-deps", help="Not the services depending on these "
                                                                      "with restart: true.")) -> None:
        """Restart the services' containers in depends_on order (same networks, same addresses)."""
        _do(ctx, lambda c, p, e: c.restart(p, e, list(services or []), timeout, no_deps))

    @compose.command("pull")
    def pull(ctx: typer.Context, services: Optional[List[str]] = typer.Argument(None),
             ignore_pull_failures: bool = typer.Option(False, "--ignore-pull-failures")) -> None:
        """Pull the services' images through the engine."""
        _do(ctx, lambda c, p, e: c.pull(p, e, list(services or []), ignore_pull_failures))

    @compose.command("build")
    def build(ctx: typer.Context, services: Optional[List[str]] = typer.Argument(None)) -> None:
        """Build the services that have build: (tagged PROJECT-SERVICE unless image: is set)."""
        _do(ctx, lambda c, p, e: c.build(p, e, list(services or [])))


def _up_progress(total: int) -> Any:
    """`compose up [n/total] CONTAINER` rewritten in place on a terminal; nothing drawn elsewhere."""
    from .output import Progress

    return Progress("compose up", total)


def ps_table(rows: list[dict[str, Any]]) -> str:
    from .output import align

    return align([["NAME", "IMAGE", "SERVICE", "STATUS", "HEALTH"]] +
                 [[r["name"], r["image"], r["service"], r["state"], r["health"]] for r in rows])


def _do(ctx: typer.Context, fn: Any) -> None:
    from ..compose import commands
    from ..engines import get as engine_for

    with one_line_errors():
        proj = _project(ctx.obj)
        code = fn(commands, proj, engine_for(_engine(ctx.obj)))
    raise SystemExit(code)


def _project(obj: dict[str, Any]) -> Any:
    import sys

    from ..compose.messages import warn_unset
    from ..compose.project import load_project

    proj = load_project(obj["file"] or None, obj["project"], profiles=obj["profiles"],
                        project_directory=obj["project_directory"], env_files=obj["env_files"])
    for name in proj.unset_variables:
        warn_unset(name)
    for line in proj.warnings:
        sys.stderr.write(f"WARN {line}\n")
    return proj


def _engine(obj: dict[str, Any]) -> str:
    from ..engines import engine_name

    return engine_name(obj["engine"])
