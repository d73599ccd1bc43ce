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
    """lifecycle.detach of the run, in its recorded netns only while it is still the same one."""
    from .lifecycle import detach
    from .paths import NO_NETNS
    from .state import netns_identity

    same = meta.netns and meta.netns_id and netns_identity(meta.netns) == meta.netns_id
    return detach(cni_for(meta), meta.id, meta.netns if same else NO_NETNS)


def teardown(
    st: RunState, meta: RunMeta | None, engine: Any = None, stop: bool = True, workload: bool = True
) -> list[str]:
    """Stop (if asked) and remove what the run made; DEL its attachments. Returns error messages.

    `engine`: the run's engine (an engines.base.Engine, or the run path's lean
    Docker client, which has the same kill/remove), made from meta.engine
    when None. workload=False: leave the workload alone (its engine already
    stopped/removed it). Order: the workload, then DEL (lifecycle.detach)
    while the netns holder still holds the netns, then the holder: Docker's
    sandbox helper, or the named netns a Podman run made.
    """
    if meta is None:
        st.remove()
        return []
    in_setup = meta.phase == "setup"  # killed before the run recorded what it made
    if meta.phase != "teardown":
        # Said before the DELs: `network rm` waits for such a run instead of
        # calling its network in use (a foreground run's DEL finishes in the
        # background after cnirun returned, as the hook's poststop does).
        meta.phase = "teardown"
        try:
            st.write_meta(meta)
        except OSError:
            pass  # a state dir already gone: nothing waits on it
    errors: list[str] = []
    if engine is None and meta.engine:  # "": `cnirun exec`, a host command in cnirun's own netns
        from .engines import get

        try:
            engine = get(meta.engine)
        except Exception as e:  # noqa: BLE001 - no engine: the networks still go
            errors.append(str(e))
    if workload and not meta.workload:
        try:  # podman's --cidfile: the run may have died before it read it
            meta.workload = (st.path / "cid").read_text().strip()
        except OSError:
            pass
    helper_mode = meta.engine == "docker" and meta.mode == "sandbox"  # a helper container holds the netns
    unnamed = workload and not meta.workload and (in_setup or meta.remove)
    if (unnamed or in_setup and helper_mode and not meta.sandbox) and hasattr(engine, "containers"):
        # Killed between the engine's create and recording its answer (or `podman run` killed
        # before it wrote its --cidfile): the run's labels name what it made.
        made = {c.labels.get("cnirun.role"): c.id for c in engine.containers(f"cnirun.id={meta.id}")}
        if workload and not meta.workload:
            meta.workload = made.get("workload", "")
        meta.sandbox = meta.sandbox or made.get("sandbox", "")
    if engine is not None and workload and meta.workload:
        if stop:
            engine.kill(meta.workload)
        # A detached run that never got past set-up never handed its container to the user.
        if meta.remove or (in_setup and meta.detached):
            try:
                engine.remove(meta.workload)
            except Exception as e:  # noqa: BLE001 - reported, teardown goes on
                errors.append(str(e))
    errors += detach_networks(meta)
    if meta.sandbox and engine is not None:
        try:
            engine.remove(meta.sandbox)
        except Exception as e:  # noqa: BLE001
            errors.append(str(e))
    from .netns import NETNS_DIR, remove as remove_netns

    if meta.netns.startswith(NETNS_DIR + "/"):
        try:
            remove_netns(os.path.basename(meta.netns))
        except Exception as e:  # noqa: BLE001
            errors.append(str(e))
    if not errors:
        st.remove()
    return errors
