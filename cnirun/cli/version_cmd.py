"""`cnirun --version` and `cnirun version`: cnirun's version, the CNI spec versions it speaks,
the engines that answer here and their versions, the plugin and config directories in use.

Hand-parsed (main.py routes here before typer is imported): people type
`--version` to check an install, it should answer at once.
"""
# No `from __future__ import annotations`: typer evaluates register()'s annotations in this
# module's globals, and typer is imported only inside register().
import os
import sys
from typing import Any

USAGE = """\
Usage: cnirun version [--format json|TEMPLATE]
       cnirun --version

Show cnirun's version, the CNI spec versions it speaks, the container
engines that answer here (and the Docker context in use) and the CNI plugin
and network config directories, as `docker version` does.

Examples:
  cnirun version
  cnirun version --format '{{.Cnirun.Version}}'
  cnirun version --format '{{range .Engines}}{{.Name}} {{.Version}} {{end}}'
"""


def cnirun_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("cnirun")
    except PackageNotFoundError:  # run from a source tree without an install
        return "unknown"


def info() -> dict[str, Any]:
    """The report as JSON-ready data (field names documented in README "Output formats")."""
    import platform

    from ..engines.versions import engine_versions
    from ..cni.config import netconf_dirs
    from ..cni.invoke import plugin_dirs
    from ..core.version import SUPPORTED_VERSIONS

    out: dict[str, Any] = {
        "cnirun": {
            "version": cnirun_version(),
            "python": platform.python_version(),
            "cniVersions": list(SUPPORTED_VERSIONS),
            "pluginDirs": plugin_dirs(),
            "netconfPath": netconf_dirs(None),
        },
        "engines": engine_versions(),
    }
    from ..core.paths import rootless

    if rootless():
        out["rootless"] = rootless_info()
    return out


def rootless_info() -> dict[str, Any]:
    """A user's side: their state dir, and what this host lacks for their containers' networks."""
    import pwd

    from ..core.errors import CNIError
    from ..core.paths import state_dir
    from ..network.rootless import problems

    try:
        user = pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        user = str(os.geteuid())
    try:
        state = state_dir()
    except CNIError:
        state = ""  # problems() names the fix
    return {"user": user, "stateDir": state, "containers": "not supported yet (docs/rootless.md)",
            "hostLacks": problems()}


def text(data: dict[str, Any]) -> str:
    c = data["cnirun"]
    lines = [
        f"cnirun version {c['version']}",
        f" Python:          {c['python']}",
        f" CNI versions:    {', '.join(c['cniVersions'])}",
        f" Plugin dirs:     {':'.join(c['pluginDirs'])}",
        f" Network configs: {':'.join(c['netconfPath'])}",
    ]
    r = data.get("rootless")
    if r:
        lines += ["", f"Rootless (user {r['user']}):", f" State dir:       {r['stateDir'] or '-'}",
                  f" Containers:      {r['containers']}"]
        for i, problem in enumerate(r["hostLacks"]):
            lines.append((" Host lacks:      " if i == 0 else " " * 18) + problem)
    for e in data["engines"]:
        lines.append("")
        lines.append(f"Engine: {e['name']}")
        if "error" in e:
            lines.append(f" Not available:   {e['error']}")
            continue
        lines.append(f" Version:         {e['version']}")
        lines.append(f" API version:     {e['apiVersion']}")
        if e.get("host"):
            lines.append(f" Host:            {e['host']}")
            src = e["contextSource"]
            lines.append(f" Context:         {e['context']}" + ("" if src == "default" else f" (from {src})"))
        if e.get("binary"):
            lines.append(f" Binary:          {e['binary']}")
    return "\n".join(lines)


def show(fmt: str) -> int:
    from ..core.errors import CNIError
    from .output import check_format, emit, render

    try:
        fmt = check_format(fmt)
        data = info()
        emit(render([data], fmt, lambda rows: text(rows[0]), json_value=data))
    except CNIError as e:
        sys.stderr.write(f"cnirun: {e}\n")
        return 1
    return 0


def main(args: list[str]) -> int:
    """`cnirun version ARGS` (also `cnirun --version`, args empty)."""
    fmt = "table"
    i = 0
    while i < len(args):
        a = args[i]
        if a in ("-h", "--help"):
            sys.stdout.write(USAGE)
            return 0
        if a in ("-f", "--format"):
            if i + 1 >= len(args):
                sys.stderr.write(f"cnirun: {a} needs a value: table, json or a template\n")
                return 1
            fmt, i = args[i + 1], i + 2
            continue
        if a.startswith("--format="):
            fmt, i = a.partition("=")[2], i + 1
            continue
        sys.stderr.write(f"cnirun: unknown argument {a!r} to version: see cnirun version --help\n")
        return 1
    return show(fmt)


def register(app: Any) -> None:
    """The typer face of the command (main.py serves it without typer; this is for --help listings)."""
    import typer

    @app.command(name="version", help="Show cnirun's, the CNI spec's and the engines' versions and the "
                 "directories in use (as docker version).", add_help_option=False,
                 context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
    def version(ctx: typer.Context) -> None:
        raise SystemExit(main(list(ctx.args)))
