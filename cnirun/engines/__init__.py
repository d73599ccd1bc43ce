"""Container engines cnirun drives: Docker (SDK, plus a lean client on the run path) and Podman (CLI).

Everything above this package speaks to an engine through the protocols in
engines.base (`get(name)` returns one, `quick(name)` the cheapest client),
and what differs between engines is decided here (joins_netns_path), so no
code outside engines/ branches on an engine's name. Each engine module is
imported only when used: the Docker SDK costs ~100 ms of start-up and the
Podman path does not need it at all.
"""
from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .base import Engine, FullEngine

ENGINES = ("docker", "podman")

# Engines whose run joins a netns path cnirun made (`podman run --network ns:PATH`). Docker has no
# such option: its runs attach through a sandbox (a held or helper container) or the OCI hook.
_JOINS_NETNS_PATH = frozenset({"podman"})


def engine_name(flag: str | None) -> str:
    """--engine, else CNIRUN_ENGINE, else docker."""
    return (flag or os.environ.get("CNIRUN_ENGINE") or "docker").strip().lower()


def named_engine() -> str:
    """The engine whose CLI a message names (what to use instead): engine_name(None) when cnirun knows
    it, else docker."""
    name = engine_name(None)
    return name if name in ENGINES else "docker"


def check_name(name: str) -> str:
    """`name` when cnirun knows the engine; EngineError otherwise."""
    if name not in ENGINES:
        from ..core.errors import EngineError

        raise EngineError(f"unknown engine {name!r}: use --engine docker or --engine podman")
    return name


def joins_netns_path(name: str) -> bool:
    """Whether a run on engine `name` starts its container in a netns cnirun made and attached first
    (else the engine makes the netns: Docker's sandbox and hook modes)."""
    return check_name(name) in _JOINS_NETNS_PATH


def get(name: str) -> FullEngine:
    """The engine called `name`; EngineError when it is unknown or cannot be reached."""
    if check_name(name) == "docker":
        from .docker import Docker

        return Docker()
    from .podman import Podman

    return Podman()


def quick(name: str) -> Engine:
    """The cheapest client of engine `name`: for a local Docker socket the SDK-free one, else get(name).

    For the run path (the image pull) and commands timed against `cnirun
    cni add` (network connect, port): the SDK's import alone costs more than
    a whole ADD.
    """
    if check_name(name) == "docker":
        from .dockerapi import LeanDocker, unix_socket_path

        sock = unix_socket_path()
        if sock:
            return LeanDocker(sock)
    return get(name)


def present() -> list[FullEngine]:
    """Every engine that answers here (for gc and ps, which look at all of them)."""
    from ..core.errors import EngineError

    out = []
    for name in ENGINES:
        try:
            out.append(get(name))
        except EngineError:
            continue
    return out
