"""Which CNI result caches are in use, and the CNI of each: one answer for gc, ps, reload and the live verbs.

A container's attachments are cached where whoever attached it pointed
CNI_CACHE_DIR, and its DEL must use that cache (and the plugin and config
paths beside it). So the caches in use are:

- this shell's (CNI_CACHE_DIR, else /var/lib/cni);
- the paths the Docker runtime and the hooks.d files were installed with
  (the OCI hook attaches with those);
- every run's recorded paths (RunMeta.cni_env, written from `cni_env` at
  the run's start: `cnirun run`, `cnirun exec`, and the records the live
  verbs make for hook-mode and foreign containers).

`runtimes()` gives one CNI per distinct cache directory, in that order;
`cni_holding(id)` the first whose cache holds a container's attachments.
"""
from __future__ import annotations

import os

TYPE_CHECKING = False  # start-up cost: see cnirun.core
if TYPE_CHECKING:
    from typing import Any, Iterator

    from ..state.runs import RunMeta


def cni_env(cni: Any) -> dict[str, str]:
    """The paths a later DEL must use (they may differ from the env of whoever tears down)."""
    from ..core.lock import lock_file

    return {
        "CNI_PATH": ":".join(cni.plugin_dirs),
        "NETCONFPATH": cni.netconf_path or os.environ.get("NETCONFPATH", ""),
        "CNI_CACHE_DIR": cni.cache_dir,
        "CNIRUN_LOCK_FILE": cni.lock_file or lock_file(),
    }


def cni_of(env: dict[str, str]) -> Any:
    """The CNI of recorded paths (cni_env's keys; a missing one: this process's default)."""
    from ..cni.runtime import CNI

    return CNI(
        plugin_path=env.get("CNI_PATH") or None,
        netconf_path=env.get("NETCONFPATH") or None,
        cache_dir=env.get("CNI_CACHE_DIR") or None,
        lock_file=env.get("CNIRUN_LOCK_FILE") or None,
    )


def cni_for(meta: RunMeta) -> Any:
    """The CNI of a run: the paths it recorded."""
    return cni_of(meta.cni_env)


def installed_envs() -> list[dict[str, str]]:
    """The environments the Docker runtime and the hooks.d files were installed with ([] when unreadable)."""
    try:
        from ..oci.install.docker_runtime import installed_settings
        from ..oci.install.hooksd import installed_envs as hooksd_envs

        return [(installed_settings() or {}).get("env") or {}, *hooksd_envs()]
    except Exception:  # noqa: BLE001 - unreadable install files: the other caches still answer
        return []


def _every() -> Iterator[Any]:
    """The CNI of each place a cache is named, one at a time (repeats included): this shell's, the installed
    hooks', every run's (the run states last: listing them costs the most)."""
    from ..cni.runtime import CNI
    from ..state.runs import list_states

    yield CNI()
    for env in installed_envs():
        if env.get("CNI_CACHE_DIR"):
            yield cni_of(env)
    for st in list_states():
        meta = st.read_meta()
        if meta is not None:
            yield cni_for(meta)


def runtimes() -> list[Any]:
    """A CNI for every result cache in use (see the module): one per cache directory, this shell's first."""
    found: dict[str, Any] = {}
    for cni in _every():
        found.setdefault(os.path.abspath(cni.cache_dir), cni)
    return list(found.values())


def cni_holding(container_id: str) -> Any:
    """The CNI whose cache holds the container's attachments (this shell's when none does)."""
    from ..cni import cache as cnicache

    first, seen = None, set()
    for cni in _every():
        first = first or cni
        d = os.path.abspath(cni.cache_dir)
        if d not in seen:
            seen.add(d)
            if cnicache.list_attachments(d, container_id=container_id):
                return cni
    return first
