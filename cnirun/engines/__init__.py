"""Container engines cnirun drives: Docker (SDK) and Podman (CLI).

Each engine module is imported only when used: the Docker SDK costs ~100 ms
of start-up and the Podman path does not need it at all.
"""
from __future__ import annotations

import os

ENGINES = ("docker", "podman")


def engine_name(flag: str | None) -> str:
    """--engine, else CNIRUN_ENGINE, else docker."""
    return (flag or os.environ.get("CNIRUN_ENGINE") or "docker").strip().lower()
