"""A run's /etc/hosts and /etc/resolv.conf, from its request and state (cnirun.network.files writes them).

Sandbox and Podman runs bind-mount two files from the run's state dir: the
binds are made (empty) before the container is created, and filled once ADD
has returned the addresses and DNS settings. In hook mode the engine's own
files are mounted instead, and the hook adds the addresses to them. An
unnamed container's engine-made name joins its DNS names here too.
"""
from __future__ import annotations

TYPE_CHECKING = False

if TYPE_CHECKING:  # the hook path never makes a state dir: state (pathlib, secrets) is imported lazily
    from typing import Any

    from ..network.attachment import Attachment
    from .request import RunRequest
    from ..state.runs import RunState


def write_host_files(st: RunState, req: RunRequest, atts: list[Attachment], hostname: str) -> None:
    """Fill hosts (the first network's addresses under the hostname and name, plus --add-host) and resolv.conf."""
    from ..network.files import write_container_files

    names = [hostname] + ([req.spec.name] if req.spec.name and req.spec.name != hostname else [])
    write_container_files(st.hosts, st.resolv_conf, st.id, atts, names, req.spec.add_hosts, req.dns, req.dns_search)


def host_file_binds(st: RunState) -> list[str]:
    """Create the (empty) files and return their bind mounts: the container is created before ADD."""
    from ..network import files

    return files.host_file_binds(st.hosts, st.resolv_conf)


def publish_engine_name(engine: Any, container: str, run_id: str) -> None:
    """Add the name the engine generated for an unnamed container to its DNS names (cnirun.dns)."""
    from ..network.policy_follow import add_names

    try:
        found = engine.lookup(container)
    except Exception:  # noqa: BLE001 - a name is a convenience: the run goes on without it
        return
    if found is not None and found.name:
        add_names(run_id, [found.name])
