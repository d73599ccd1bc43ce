"""Anonymous volumes across a recreate: the new container of a service takes the old one's (their data
survives), as compose's does unless `up -V`.

The engine names an anonymous volume by 64 hex digits. The new container mounts it by that name, so the
engine's `rm -v` no longer counts it as the container's own: the container carries the names in a label
(LABEL_INHERITED) and whoever removes it with its volumes removes them too (inherited_names).

Between the old container's removal and the new one's creation the volumes belong to no container: up
records them first (remember, in RECORD under the project's dir) and marks the new container's start
(settled). A record left unsettled (up killed, or failed) is taken by the next up's container of that
name (remembered), or removed by `down -v`.
"""
from __future__ import annotations

import json
import os
from typing import Any

from ..engines.spec import is_anonymous_volume

LABEL_INHERITED = "cnirun.compose.anonymous-volumes"
RECORD = "recreating"  # under mounts.sources_dir(project): JSON lines {"container": NAME, "volumes": {DST: VOLUME}}
RECORD_MAX = 1 << 20


def inherited(eng: Any, cid: str, volumes: list[str]) -> tuple[dict[str, str], set[str]]:
    """The old container cid's anonymous volumes the service's new one takes (destination -> volume name),
    and the others (which go with the old container).

    It takes those at a destination the service mounts anonymously (`/path`), or not at all (the image's
    VOLUME); not where it now mounts a named volume or a bind."""
    return _split({dst: name for dst, name in eng.volume_mounts(cid).items() if is_anonymous_volume(name)}, volumes)


def recorded(eng: Any, vols: dict[str, str], volumes: list[str]) -> tuple[dict[str, str], set[str]]:
    """As inherited, for the volumes a record (remembered) keeps for a container that no longer exists;
    those the engine no longer has left out."""
    return _split({dst: name for dst, name in vols.items() if eng.volume_labels(name) is not None}, volumes)


def _split(anonymous: dict[str, str], volumes: list[str]) -> tuple[dict[str, str], set[str]]:
    sourced = {v.split(":")[1] for v in volumes if ":" in v}
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


def remember(project: str, container: str, inherit: dict[str, str]) -> None:
    """Record (appended, before the old container goes) that container's successor takes `inherit`."""
    _append(project, {"container": container, "volumes": inherit})


def settled(project: str, container: str) -> None:
    """The container took its inherited volumes (its label names them now): its record is done."""
    _append(project, {"container": container, "volumes": {}})


def remembered(project: str) -> dict[str, dict[str, str]]:
    """Container name -> the anonymous volumes recorded for it and not settled (newest record wins).
    A torn or foreign line is skipped: only anonymous volume names come out. A project dir that is not
    cnirun's (a planted symlink: up refuses it) has no record."""
    from ..core.errors import CNIError
    from .mounts import open_project_dir

    try:
        pfd = open_project_dir(project, create=False)
    except (OSError, ValueError, CNIError):
        return {}
    try:
        fd = os.open(RECORD, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=pfd)
    except OSError:
        return {}
    finally:
        os.close(pfd)
    with os.fdopen(fd, "rb") as f:
        text = f.read(RECORD_MAX)
    out: dict[str, dict[str, str]] = {}
    for line in text.splitlines():
        if line.count(b"{") + line.count(b"[") > 512:
            continue  # not a line cnirun wrote (its paths would need hundreds of brackets); never parsed deep
        try:
            entry = json.loads(line)
            name, vols = entry["container"], entry["volumes"]
        except (ValueError, TypeError, KeyError):
            continue
        if isinstance(name, str) and isinstance(vols, dict):
            out[name] = {d: v for d, v in vols.items() if isinstance(d, str) and isinstance(v, str) and is_anonymous_volume(v)}
    return {name: vols for name, vols in out.items() if vols}


def _append(project: str, entry: dict[str, Any]) -> None:
    import stat

    from ..core.errors import ConfigError
    from .mounts import open_project_dir

    pfd = open_project_dir(project)
    try:
        fd = os.open(RECORD, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                     0o600, dir_fd=pfd)
    except OSError:
        raise ConfigError(f"{RECORD} in the project's state dir is a symlink or not a file: remove it and run up "
                          "again") from None
    finally:
        os.close(pfd)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1 or st.st_uid != os.geteuid():
            raise ConfigError(f"{RECORD} in the project's state dir is not a file cnirun wrote: remove it and run "
                              "up again")
        # A line of its own even after a torn one (a kill inside an earlier write): remembered skips that.
        os.write(fd, ("\n" + json.dumps(entry, sort_keys=True) + "\n").encode())
    finally:
        os.close(fd)
