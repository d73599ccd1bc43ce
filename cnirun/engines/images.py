"""`--pull missing|always|never`: make a run's image present through the engine's own pull.

One function for every engine and run mode (the runner calls it once,
before anything is created). Docker goes through the lean Engine API client
on a unix socket (no SDK import on the run path), else the SDK; Podman
through its CLI. Progress shows only on a terminal, as each engine's CLI
draws it; elsewhere the run stays quiet but for docker's one line
"Unable to find image 'X' locally".
"""
from __future__ import annotations

import sys

from ..core.errors import EngineError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

PULL_POLICIES = ("missing", "always", "never")


class ImageMissing(EngineError):
    """--pull never and the image is not there."""


def check_policy(policy: str) -> str:
    if policy not in PULL_POLICIES:
        raise EngineError(f"invalid --pull {policy!r}: expected missing, always or never")
    return policy


def image_client(engine: str) -> Any:
    """The engine client that can say has_image(image) and pull(image, progress), cheapest first."""
    if engine == "docker":
        from .dockerapi import LeanDocker, unix_socket_path

        sock = unix_socket_path()
        if sock:
            return LeanDocker(sock)
    from . import get

    return get(engine)


def ensure_image(engine: str, image: str, policy: str = "missing", client: Any = None,
                 progress: Any = None) -> None:
    """As `docker run --pull POLICY`: missing pulls when absent, always pulls (an unreachable
    registry fails the run), never refuses when absent (ImageMissing)."""
    check_policy(policy)
    client = client if client is not None else image_client(engine)
    progress = progress if progress is not None else sys.stderr
    if policy != "always" and client.has_image(image):
        return
    if policy == "never":
        raise ImageMissing(f"Unable to find image '{image}' locally, and --pull never: pull or load it "
                           f"first ({engine} pull {image}), or use --pull missing")
    if policy == "missing":
        progress.write(f"Unable to find image '{image}' locally\n")  # as docker run and podman run say
        progress.flush()
    client.pull(image, progress)
