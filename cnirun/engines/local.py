"""What an engine's own files on this host say about a container, without a call to its daemon.

cnirun.state.containers remembers, for the live commands (network connect, port,
update), where a running container's attachments are; before it uses such
a record it must know that the name still belongs to the same container.
The kernel answers for the process (state.containers checks it), but only the
engine knows its names: `docker rename` of a running container, then a new
container under the old name, changes nothing a process shows.

Docker writes a container's name, state and pid to
<data root>/containers/<id>/config.v2.json before it answers a create,
start, stop, kill or rename (it is how dockerd restores its state), so that
file is as good as an inspect for these fields. Anything unexpected (the
file unreadable, another shape, another name, not running, paused) means:
ask the daemon. Podman keeps these in a database: no shortcut, ever.

On the live commands' path: imports only os and cnirun.core.jsonfast.
"""
from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def docker_state_file(info: dict[str, Any]) -> str:
    """The container's config.v2.json, from an inspect document: beside its hosts file, in a dir named by its ID."""
    cid = str(info.get("Id") or "")
    for key in ("HostsPath", "ResolvConfPath", "HostnamePath"):
        path = str(info.get(key) or "")
        folder = os.path.dirname(path)
        if cid and path.startswith("/") and os.path.basename(folder) == cid:
            return os.path.join(folder, "config.v2.json")
    return ""


def endpoint(engine: str) -> str:
    """Which daemon `engine` means in this environment (Docker: the resolved DOCKER_HOST or context's host).

    A record made while another daemon was in force is not used: the same
    name there may be another container.
    """
    if engine == "docker":
        from ..core.errors import EngineError
        from .docker_context import resolve_endpoint

        try:
            return resolve_endpoint().host
        except EngineError:
            return ""
    return engine


def confirms(engine: str, state_file: str, cid: str, name: str, pid: int) -> bool:
    """Whether the engine's own file says, now, that container `cid` is called `name` and runs as `pid`.

    False whenever that cannot be read (then the caller asks the engine).
    """
    if engine != "docker" or not state_file or not cid or pid <= 0:
        return False
    from ..core import jsonfast as json

    try:
        with open(state_file, "rb") as f:
            doc = json.loads(f.read())
        state = doc.get("State") or {}
        return (doc.get("ID") == cid and doc.get("Name") == "/" + name and state.get("Running") is True
                and not state.get("Paused") and not state.get("Restarting") and not state.get("RemovalInProgress")
                and not state.get("Dead") and state.get("Pid") == pid)
    except (OSError, ValueError, AttributeError, TypeError):
        return False
