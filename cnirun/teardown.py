"""Tearing a run down: one function used by `cnirun run`, the watcher and gc.

Order matters: DEL runs while the netns still exists (plugins then remove the
veth and firewall rules with the cached prevResult), and the helper container
or netns goes last. A failed DEL keeps the state dir and the cache file so
`cnirun gc` can retry.
"""
from __future__ import annotations

import os
TYPE_CHECKING = False  # typing costs ~7 ms of start-up on `cnirun run`: annotations only
if TYPE_CHECKING:
    from typing import Any

from .runtime import NO_NETNS as _NO_NETNS  # DEL without entering a stale netns
from .state import RunMeta, RunState


def cni_env(cni: Any) -> dict[str, str]:
    """The paths a later DEL must use (they may differ from the env of whoever tears down)."""
    from .lock import lock_file

    return {
        "CNI_PATH": ":".join(cni.plugin_dirs),
        "NETCONFPATH": cni.netconf_path or os.environ.get("NETCONFPATH", ""),
        "CNI_CACHE_DIR": cni.cache_dir,
        "CNIRUN_LOCK_FILE": cni.lock_file or lock_file(),
    }


def cni_for(meta: RunMeta) -> Any:
    from .runtime import CNI

    env = meta.cni_env
    return CNI(
        plugin_path=env.get("CNI_PATH") or None,
        netconf_path=env.get("NETCONFPATH") or None,
        cache_dir=env.get("CNI_CACHE_DIR") or None,
        lock_file=env.get("CNIRUN_LOCK_FILE") or None,
    )


def detach_networks(meta: RunMeta) -> list[str]:
    """DEL every attachment of the run, in the recorded netns only if it is still the same one."""
    from .attach import cached_attachments, detach
    from .state import netns_identity

    netns = meta.netns if meta.netns and meta.netns_id and netns_identity(meta.netns) == meta.netns_id else _NO_NETNS
    cni = cni_for(meta)
    cached = cached_attachments(cni, meta.id)
    freed = _addresses(cached)
    errors = [str(e) for e in detach(cni, meta.id, netns, cached)]
    if netns == _NO_NETNS and not errors:
        from .leftovers import remove_rules_naming

        for net in meta.networks:  # bridge's DEL without a netns leaves its NAT rules
            errors += remove_rules_naming(net, meta.id)
    if freed and not errors:
        # A freed address may soon be another container's: no hosts file of
        # another run (compose peers, --add-host) may keep pointing at it.
        from .hostfiles import forget_addresses
        from .state import list_states

        forget_addresses([s.hosts for s in list_states() if s.id != meta.id], freed)
    return errors


def _addresses(cached: list[Any]) -> set[str]:
    from .attach import Attachment

    return {
        a.split("/", 1)[0]
        for att in cached
        for a in Attachment(att.network_name, att.ifname, att.result or {}).addresses()
    }


def teardown(
    st: RunState, meta: RunMeta | None, docker: Any = None, stop: bool = True, workload: bool = True
) -> list[str]:
    """Stop (if asked) and remove what the run made; DEL its attachments. Returns error messages.

    workload=False: leave the workload alone (its engine already stopped/removed it).
    """
    if meta is None:
        st.remove()
        return []
    errors: list[str] = []
    if meta.engine == "podman":
        from .engines import podman
        from .netns import remove as remove_netns

        if workload and not meta.workload:
            try:  # podman wrote it at create; the run may have died before reading it
                meta.workload = (st.path / "cid").read_text().strip()
            except OSError:
                pass
        if workload and meta.workload:
            if stop:
                podman.kill(meta.workload)
            if meta.remove:
                podman.remove(meta.workload)
        errors += detach_networks(meta)
        if meta.netns:
            try:
                remove_netns(os.path.basename(meta.netns))
            except Exception as e:  # noqa: BLE001 - reported, teardown goes on
                errors.append(str(e))
    else:
        if docker is None:
            from .engines.docker import Docker

            docker = Docker()
        if meta.workload:
            if stop:
                docker.kill(meta.workload)
            if meta.remove:
                try:
                    docker.remove(meta.workload)
                except Exception as e:  # noqa: BLE001
                    errors.append(str(e))
        errors += detach_networks(meta)
        if meta.sandbox:
            try:
                docker.remove(meta.sandbox)
            except Exception as e:  # noqa: BLE001
                errors.append(str(e))
    if not errors:
        st.remove()
    return errors
