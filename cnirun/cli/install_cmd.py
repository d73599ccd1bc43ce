"""`cnirun install|uninstall hooks|docker-runtime|plugins`: wiring cnirun into the engines.

hooks: hooks.d files for Podman and CRI-O (cnirun.oci.install.hooksd).
docker-runtime: the `cnirun` runtime shim registered in dockerd's
daemon.json (cnirun.oci.install.docker_runtime). plugins: launchers of cnirun's own CNI
plugins (flannel, sysctl, isolation) where other runtimes look (cnirun.plugins). hooks
and docker-runtime record NETCONFPATH, CNI_PATH,
CNI_CACHE_DIR and PATH as they are now, so the hooks see the same networks
as this shell; relative entries and directories others than root can write
are refused, and so is a --dir (or a parent of it) others than root can
write or own (--force: installed with a warning each).
"""
from __future__ import annotations

import os

import typer

from .errors import one_line_errors


def register(app: typer.Typer) -> None:
    from ..oci.install.docker_runtime import DAEMON_JSON, DEFAULT_DIR
    from ..oci.install.hooksd import DEFAULT_HOOKS_DIR

    install_app = typer.Typer(help="Install cnirun's OCI hooks, Docker runtime or CNI plugins.", no_args_is_help=True)
    uninstall_app = typer.Typer(help="Remove what `cnirun install` installed.", no_args_is_help=True)
    app.add_typer(install_app, name="install")
    app.add_typer(uninstall_app, name="uninstall")

    dir_opt = typer.Option(DEFAULT_HOOKS_DIR, "--dir", help="hooks.d directory (podman --hooks-dir).")
    rt_dir_opt = typer.Option(DEFAULT_DIR, "--dir", help="Where the runtime launcher and its settings go.")
    daemon_opt = typer.Option(DAEMON_JSON, "--daemon-json", help="dockerd's configuration file.")

    force_opt = typer.Option(
        False, "--force", help="Install even with relative or non-root-owned directories in PATH/CNI_PATH/NETCONFPATH, "
                               "or a --dir others than root can write (warns)."
    )

    def warn(problems: list[str]) -> None:
        for problem in problems:
            typer.echo(f"cnirun: WARNING: installed anyway (--force): {problem}", err=True)

    @install_app.command("hooks")
    def install_hooks(directory: str = dir_opt, force: bool = force_opt) -> None:
        """Write the createRuntime/poststop hooks.d files (Podman, CRI-O)."""
        from ..oci.install.hooksd import install, podman_reads

        with one_line_errors():
            problems: list[str] = []
            paths = install(directory, force=force, warnings=problems)
            warn(problems)
            for path in paths:
                typer.echo(f"installed {path}")
            dropin = podman_reads(directory)
            if dropin:
                typer.echo(f"installed {dropin} (podman reads hooks from {directory} too)")

    @uninstall_app.command("hooks")
    def uninstall_hooks(directory: str = dir_opt) -> None:
        """Remove cnirun's hooks.d files."""
        from ..oci.install.hooksd import DEFAULT_HOOKS_DIR, forget_podman_dropin, uninstall

        with one_line_errors():
            removed = []
            if os.path.abspath(directory) == DEFAULT_HOOKS_DIR:
                dropin = forget_podman_dropin()  # first: uninstall then removes the directories made for it
                if dropin:
                    removed.append(dropin)
            removed = uninstall(directory) + removed
        typer.echo("\n".join(f"removed {p}" for p in removed) if removed else f"no cnirun hooks in {directory}")

    @install_app.command("docker-runtime")
    def install_docker_runtime(directory: str = rt_dir_opt, daemon_json: str = daemon_opt, force: bool = force_opt) -> None:
        """Register the `cnirun` runtime with dockerd (then: docker run --runtime cnirun ...)."""
        from ..oci.install.docker_runtime import install

        with one_line_errors():
            problems: list[str] = []
            launcher = install(directory, daemon_json, force=force, warnings=problems)
            warn(problems)
        typer.echo(f"installed runtime cnirun ({launcher}) in {daemon_json}; dockerd reloaded")

    @uninstall_app.command("docker-runtime")
    def uninstall_docker_runtime(
        directory: str = rt_dir_opt,
        daemon_json: str = daemon_opt,
        force: bool = typer.Option(False, "--force", help="Even while containers still use the runtime."),
    ) -> None:
        """Remove the `cnirun` runtime from dockerd's configuration."""
        from ..oci.install.docker_runtime import uninstall

        with one_line_errors():
            was = uninstall(directory, daemon_json, force=force)
        typer.echo(f"removed runtime cnirun from {daemon_json}" if was else f"runtime cnirun was not in {daemon_json}")

    from ..plugins import DEFAULT_INSTALL_DIR

    plugins_dir_opt = typer.Option(DEFAULT_INSTALL_DIR, "--dir", help="CNI plugin directory other runtimes search.")

    @install_app.command("plugins")
    def install_plugins(
        directory: str = plugins_dir_opt,
        force: bool = typer.Option(
            False, "--force", help="Install into a non-root-owned directory or over a plugin cnirun did not write (warns)."
        ),
    ) -> None:
        """Put cnirun's CNI plugins (flannel, sysctl, isolation) where other runtimes look (cnirun itself needs no install)."""
        from ..plugins import install_plugins as install

        with one_line_errors():
            problems: list[str] = []
            paths = install(directory, force=force, warnings=problems)
            warn(problems)
        for path in paths:
            typer.echo(f"installed {path}")

    @uninstall_app.command("plugins")
    def uninstall_plugins(directory: str = plugins_dir_opt) -> None:
        """Remove the plugin launchers `cnirun install plugins` wrote (other files are left alone)."""
        from ..plugins import uninstall_plugins as uninstall

        with one_line_errors():
            removed = uninstall(directory)
        typer.echo("\n".join(f"removed {p}" for p in removed) if removed else f"no cnirun plugins in {directory}")
