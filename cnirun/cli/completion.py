"""Shell completion of network and container names (typer's bash/zsh completion calls these).

Cheap on purpose, they run on every <Tab>: network names come from the
netconf files (no plugin runs), container names from cnirun's run state
(no engine is asked). Anything that fails completes nothing.
"""
from __future__ import annotations


def network_names(incomplete: str) -> list[str]:
    try:
        from ..config import load_all
        from ..runtime import CNI

        cni = CNI()
        nets, _ = load_all(cni.netconf_path)
        names = [n.name for n in nets]
        from ..defaults import default_network_name

        names.append(default_network_name())
    except Exception:  # noqa: BLE001 - completion must never print a traceback into the shell
        return []
    return sorted({n for n in names if n.startswith(incomplete)})


def container_names(incomplete: str) -> list[str]:
    """Names, then IDs (12 characters), of the containers cnirun runs."""
    try:
        from ..state import list_states

        out: set[str] = set()
        for st in list_states():
            meta = st.read_meta()
            if meta is None:
                continue
            for key in (meta.name, (meta.workload or "")[:12]):
                if key and key.startswith(incomplete):
                    out.add(key)
    except Exception:  # noqa: BLE001
        return []
    return sorted(out)
