"""`--pull missing|always|never`: make a run's image present through the engine's own pull.

One function for every engine and run mode (cnirun.run calls it once,
before anything is created), through the engine's cheapest client
(engines.quick: Docker's lean Engine API client on a unix socket, no SDK
import on the run path, else the SDK; Podman's CLI). Progress shows only
on a terminal, as each engine's CLI draws it; elsewhere the run stays
quiet but for docker's one line "Unable to find image 'X' locally".
"""
from __future__ import annotations

import sys

from ..core.errors import EngineError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from .base import Engine

PULL_POLICIES = ("missing", "always", "never")


class ImageMissing(EngineError):
    """--pull never and the image is not there."""


def check_policy(policy: str) -> str:
    if policy not in PULL_POLICIES:
        raise EngineError(f"invalid --pull {policy!r}: expected missing, always or never")
    return policy


def ensure_image(engine: str, image: str, policy: str = "missing", client: Engine | None = None,
                 progress: Any = None) -> None:
    """As `docker run --pull POLICY`: missing pulls when absent, always pulls (an unreachable
    registry fails the run), never refuses when absent (ImageMissing). `client`: the engine's
    cheapest client (engines.quick) unless given."""
    check_policy(policy)
    if client is None:
        from . import quick

        client = quick(engine)
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
