"""What a user who is not root runs: their containers' commands are handed into their namespaces.

A user's containers (rootless Podman) have their networks in the user's
rootless netns (network.rootless). `cnirun run` (and `cnirun IMAGE`),
`exec`, `compose`, `port`, `update` and `network connect/disconnect/reload`
make sure it exists, then become the same command inside it: root of the
user's user namespace, in Podman's mount namespace, with the user's paths
(Rootless.inside_env). `cnirun gc` collects inside, then tears the rootless
netns down once nothing uses it. `network create/rm` go inside while the
rootless netns is there (its isolation rules are made there; it makes them
for every network when it is made). `network ls/inspect`, `ps`, `inspect`,
`cni` and `version` run as they are, on the user's own files. What changes
the host's engines or overlay (`install`, `uninstall`, `hook`, `watch`,
`overlay`) needs root and is refused in one line.
"""
from __future__ import annotations

import os
import sys
from typing import Any

ROOT_ONLY = frozenset({"install", "uninstall", "hook", "watch", "overlay"})
# Commands on a user's containers: they run inside the user's rootless netns, made first if need be.
INSIDE = frozenset({"exec", "compose", "port", "update"})
INSIDE_NETWORK = frozenset({"connect", "disconnect", "reload"})


def dispatch(first: str, args: list[str], is_run: bool) -> int | None:
    """The exit code of a command handled here for a user who is not root; None: main goes on with it."""
    from ..core.errors import CNIError
    from ..core.paths import state_dir

    if first in ("", "-h", "--help", "--version", "version", "help"):
        return None
    # click skips a `--` before a group's command: `network -- reload` is `network reload`.
    sub = next((a for a in args[1:] if a != "--"), "")
    if first in ROOT_ONLY:
        sys.stderr.write(f"cnirun: `cnirun {first}` needs root: it changes the host's engines or overlay "
                         "(a user's containers have run, exec, compose, gc and the live verbs: docs/rootless.md)\n")
        return 1
    try:
        state_dir()  # every command below works on the user's state: a missing session is one line here
    except CNIError as e:
        sys.stderr.write(f"cnirun: {e}\n")
        return 125 if is_run else 1
    if is_run and not (first == "run" and args[1:] in (["--help"], ["-h"])):
        return _inside(args, 125)
    if first in INSIDE or (first == "network" and sub in INSIDE_NETWORK):
        if args[-1] in ("--help", "-h") and "--" not in args and len(args) <= 3:
            return None  # `cnirun exec --help`, `cnirun network connect --help`: the help is the same for everyone
        return _inside(args, 1)
    if first == "gc":
        return _gc(args)
    if first == "network" and sub in ("create", "rm", "remove", "prune"):
        from ..network.rootless import alive

        ns = alive()
        if ns is not None:  # its isolation rules and bridges are made and removed in the rootless netns
            return _exec_inside(ns, args)
    return None


def _inside(args: list[str], code: int) -> int:
    """The command inside the user's rootless netns, with Podman (this process becomes it); `code`: the
    exit code of a failure before that."""
    from ..core.errors import CNIError
    from ..network.rootless import ensure

    engine = (os.environ.get("CNIRUN_ENGINE") or "podman").lower()
    if engine != "podman":
        sys.stderr.write(f"cnirun: a user's containers run on rootless Podman, not {engine}: "
                         "use --engine podman (or run as root)\n")
        return code
    try:
        ns = ensure()
    except CNIError as e:
        sys.stderr.write(f"cnirun: {e}\n")
        return code
    os.environ["CNIRUN_ENGINE"] = "podman"
    return _exec_inside(ns, args)


def _exec_inside(ns: Any, args: list[str]) -> int:
    """Become `cnirun ARGS` inside the user's rootless netns (returns only when that cannot start)."""
    env = ns.inside_env()
    argv = [*ns.enter(), sys.executable, "-m", "cnirun.cli.main", *args]
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execvpe(argv[0], argv, env)
    except OSError as e:
        sys.stderr.write(f"cnirun: cannot run {argv[0]}: {e.strerror} (apt-get install util-linux)\n")
    return 125


def _gc(args: list[str]) -> int:
    """`cnirun gc` inside the user's rootless netns (when there is one: made usable again first, so a dead
    slirp4netns's forwards can be put right), then the netns itself once unused."""
    import subprocess

    from ..core.errors import CNIError
    from ..core.paths import state_dir
    from ..network.rootless import _read_record, ensure, release

    try:
        state = state_dir()
    except CNIError as e:
        sys.stderr.write(f"cnirun: {e}\n")
        return 1
    if _read_record(state):
        try:
            ns = ensure()
        except CNIError as e:
            sys.stderr.write(f"cnirun: {e}\n")
            return 1
        code = subprocess.run([*ns.enter(), sys.executable, "-m", "cnirun.cli.main", *args], env=ns.inside_env(),
                              pass_fds=()).returncode
        ns.unhold()
    else:
        code = _plain_gc(args)
    if "--dry-run" in args:
        return code
    try:
        if release() == "a command runs in it":
            sys.stderr.write("cnirun: kept the rootless netns: a command runs in it; `cnirun gc` again takes it "
                             "down once nothing does\n")
    except CNIError as e:
        sys.stderr.write(f"cnirun: {e}\n")
        return 1
    return code


def _plain_gc(args: list[str]) -> int:
    """gc on the user's own files, outside (no rootless netns to go into)."""
    from typer._click.exceptions import ClickException

    from .app import command

    try:
        code = command().main(args=args, prog_name="cnirun", standalone_mode=False)
    except SystemExit as e:
        return int(e.code or 0) if not isinstance(e.code, str) else 1
    except ClickException as e:
        sys.stderr.write(f"cnirun: {e.format_message()}\n")
        return int(e.exit_code)
    return code if isinstance(code, int) else 0
