"""Container engines cnirun drives: Docker (SDK, plus a lean client on the run path) and Podman (CLI).

Everything above this package speaks to an engine through the protocol in
engines.base (`get(name)` returns one); no code outside engines/ branches on
an engine's name. Each engine module is imported only when used: the Docker
SDK costs ~100 ms of start-up and the Podman path does not need it at all.
"""
from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .base import Engine

ENGINES = ("docker", "podman")


def engine_name(flag: str | None) -> str:
    """--engine, else CNIRUN_ENGINE, else docker."""
    return (flag or os.environ.get("CNIRUN_ENGINE") or "docker").strip().lower()


def get(name: str) -> Engine:
    """The engine called `name`; EngineError when it is unknown or cannot be reached."""
    from ..core.errors import EngineError

    if name == "docker":
        from .docker import Docker

        return Docker()
    if name == "podman":
        from .podman import Podman

        return Podman()
    raise EngineError(f"unknown engine {name!r}: use --engine docker or --engine podman")


def quick(name: str) -> Engine:
    """get(name), or for a local Docker socket the SDK-free client (lookup, inspect, start, kill, rm).

    For commands timed against `cnirun cni add` (network connect, port): the
    SDK's import alone costs more than a whole ADD.
    """
    if name == "docker":
        from .dockerapi import LeanDocker, unix_socket_path

        sock = unix_socket_path()
        if sock:
            return LeanDocker(sock)  # type: ignore[return-value]
    return get(name)


def present() -> list[Engine]:
    """Every engine that answers here (for gc and ps, which look at all of them)."""
    from ..core.errors import EngineError

    out = []
    for name in ENGINES:
        try:
            out.append(get(name))
        except EngineError:
            continue
    return out
