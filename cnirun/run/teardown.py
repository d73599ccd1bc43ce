"""Tearing a run down: one function used by `cnirun run`, the watcher and gc.

Order matters: DEL runs while the netns still exists (plugins then remove the
veth and firewall rules with the cached prevResult), and the helper container
or netns goes last. A failed DEL keeps the state dir and the cache file so
`cnirun gc` can retry.
"""
from __future__ import annotations

import os
TYPE_CHECKING = False  # start-up cost: see cnirun.core
if TYPE_CHECKING:
    from typing import Any

from ..state.runs import RunMeta, RunState
from .caches import cni_for


def detach_networks(meta: RunMeta) -> list[str]:
    """lifecycle.detach of the run, in its recorded netns only while it is still the same one.

    Under the container's lock (cnirun.core.lock: after the run's state-dir
    lock, which the caller holds): a live change under way (`network
    connect`) ends first and its attachment goes too.
    """
    from ..core.errors import LockError
    from ..core.lock import container_locked

    try:
        with container_locked(meta.id):
            return _detach_networks(meta)
    except LockError as e:
        return [str(e)]  # the state stays: gc tears the run down later


def _detach_networks(meta: RunMeta) -> list[str]:
    from ..network.lifecycle import detach
    from ..core.paths import NO_NETNS
    from ..core.fsutil import identity

    same = meta.netns and meta.netns_id and identity(meta.netns) == meta.netns_id
    found = [b for b in file_bridges(meta) if b not in meta.bridges]
    if found:
        # Recorded before the DELs take the cache entries that name them: the teardown that
        # removes the state (this one, or gc's after a kill) deletes them (remove_file_bridges).
        meta.bridges += found
        st = RunState.open(meta.id)
        try:
            if st.path.is_dir():
                st.write_meta(meta)
        except OSError:
            pass
    return detach(cni_for(meta), meta.id, meta.netns if same else NO_NETNS)


def teardown(
    st: RunState, meta: RunMeta | None, engine: Any = None, stop: bool = True, workload: bool = True
) -> list[str]:
    """Stop (if asked) and remove what the run made; DEL its attachments. Returns error messages.

    `engine`: the run's engine or client (an engines.base.Engine), made
    from meta.engine when None. workload=False: leave the workload alone (its engine already
    stopped/removed it). Order: the workload, then DEL (lifecycle.detach)
    while the netns holder still holds the netns, then the holder: Docker's
    sandbox helper, or the named netns a Podman run or `cnirun exec` made;
    last, the bridges of its -f networks that nothing uses any more. The
    workload goes with --rm, and always when the run was detached and never
    got past set-up (nobody was handed the container); containers a run
    killed in set-up made but never recorded are found by its labels.
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
        from ..engines import get

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
    if (unnamed or in_setup and helper_mode and not meta.sandbox) and engine is not None:
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
                engine.remove(meta.workload, keep=frozenset(meta.borrowed))
            except Exception as e:  # noqa: BLE001 - reported, teardown goes on
                errors.append(str(e))
    errors += detach_networks(meta)
    if meta.sandbox and engine is not None:
        try:
            engine.remove(meta.sandbox)
        except Exception as e:  # noqa: BLE001
            errors.append(str(e))
    from ..network.netns import named_dir, remove as remove_netns

    if meta.netns.startswith(named_dir() + "/"):
        try:
            remove_netns(os.path.basename(meta.netns))
        except Exception as e:  # noqa: BLE001
            errors.append(str(e))
    if not errors:
        remove_file_bridges(meta)
        st.remove()
    return errors


def file_bridges(meta: RunMeta) -> list[dict[str, Any]]:
    """The bridges of the run's networks from `-f` files (netstore: "cnirun" {"source", "bridge"} in the
    conflist, never installed), from its cached attachments: {"network", "bridge", "subnets"} each."""
    from ..cni import cache as cnicache
    from ..core import jsonfast as json
    from ..core.errors import CNIError

    out: list[dict[str, Any]] = []
    try:
        atts = cnicache.list_attachments(cni_for(meta).cache_dir, container_id=meta.id)
    except CNIError:
        return out  # an unreadable cache: detach reports it
    for att in atts:
        try:
            conf = json.loads(att.config)
        except (ValueError, TypeError):
            continue
        from ..cni.config import conflist_from_bytes, meta_of

        own = meta_of(conf)
        if not own.get("source") or not isinstance(own.get("bridge"), str):
            continue

        try:
            subnets = conflist_from_bytes(att.config, att.path).subnets()
        except CNIError:
            continue
        out.append({"network": att.network_name, "bridge": own["bridge"], "subnets": subnets})
    return out


def remove_file_bridges(meta: RunMeta) -> None:
    """Delete the run's recorded -f bridges that nothing uses any more (netstore.store.remove_file_bridge)."""
    if not meta.bridges:
        return
    from ..core.errors import CNIError
    from ..netstore.store import remove_file_bridge

    cni = cni_for(meta)
    for b in meta.bridges:
        try:
            remove_file_bridge(cni, str(b["network"]), str(b["bridge"]), [str(s) for s in b["subnets"]])
        except (CNIError, OSError, KeyError, TypeError, ValueError):
            continue  # kept: in use, busy, or not ours to delete


def teardown_in_background(st: RunState, meta: RunMeta, engine: Any = None) -> None:
    """DEL in a detached grandchild, which inherits the run's lock, while this process returns the exit status.

    For a foreground run whose container is done (the one-container Docker
    sandbox, a Podman run), as the OCI hook's poststop does: the container is
    gone (or, without --rm, stopped) and its exit status known, so nobody
    waits for the plugins' DEL. The run's netns (the pin, or Podman's named netns) outlives the
    container for DEL. The lock stays held until DEL is done; if the grandchild is killed, `cnirun gc` finishes
    the run (teardown keeps the state when a DEL fails, for gc as well).
    """
    import sys

    from ..core import trace

    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    try:
        pid = os.fork()
    except OSError:  # no process to spare: DEL here, as a failed run does
        teardown(st, meta, engine, stop=False, workload=False)
        return
    if pid:
        os.waitpid(pid, 0)  # the middle child exits at once: no zombie is left to our caller
        return
    try:
        os.setsid()
        os.chdir("/")  # as a daemon: whatever the caller's cwd was may go away before DEL runs
        if os.fork():
            os._exit(0)
        # Nobody may wait for our end of their pipes (`$(cnirun ...)`, a test capturing output).
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1) if trace.ON else (0, 1, 2):
            os.dup2(null, fd)
        teardown(st, meta, engine, stop=False, workload=False)
    except BaseException:  # noqa: BLE001 - nobody to tell: the state stays for gc
        pass
    finally:
        os._exit(0)
