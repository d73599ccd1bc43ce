"""Anonymous volumes across a recreate: the new container of a service takes the old one's (their data
survives), as compose's does unless `up -V`.

The engine names an anonymous volume by 64 hex digits. The new container mounts it by that name, so the
engine's `rm -v` no longer counts it as the container's own: the container carries the names in a label
(LABEL_INHERITED) and whoever removes it with its volumes removes them too (inherited_names).
"""
from __future__ import annotations

from typing import Any

LABEL_INHERITED = "cnirun.compose.anonymous-volumes"


def is_anonymous(name: str) -> bool:
    return len(name) == 64 and all(ch in "0123456789abcdef" for ch in name)


def inherited(eng: Any, cid: str, volumes: list[str]) -> tuple[dict[str, str], set[str]]:
    """The old container cid's anonymous volumes the service's new one takes (destination -> volume name),
    and the others (which go with the old container).

    It takes those at a destination the service mounts anonymously (`/path`), or not at all (the image's
    VOLUME); not where it now mounts a named volume or a bind."""
    sourced = {v.split(":")[1] for v in volumes if ":" in v}
    anonymous = {dst: name for dst, name in eng.volume_mounts(cid).items() if is_anonymous(name)}
    taken = {dst: name for dst, name in anonymous.items() if dst not in sourced}
    return taken, set(anonymous.values()) - set(taken.values())


def with_inherited(volumes: list[str], inherit: dict[str, str]) -> list[str]:
    """A service's volume entries with the inherited anonymous volumes mounted by name at their destination."""
    out = [f"{inherit[v]}:{v}" if v in inherit else v for v in volumes]
    return out + [f"{name}:{dst}" for dst, name in inherit.items() if dst not in volumes]


def labels_for(inherit: dict[str, str]) -> dict[str, str]:
    return {LABEL_INHERITED: ",".join(sorted(inherit.values()))} if inherit else {}


def inherited_names(container: Any) -> list[str]:
    """The anonymous volumes a container took in its recreate (to remove with it and its own)."""
    return [n for n in container.labels.get(LABEL_INHERITED, "").split(",") if n]
