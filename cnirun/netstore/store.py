"""Installed networks: writing conflists into NETCONFPATH and removing them again.

A network cnirun creates carries a top-level "cnirun" object in its conflist
(libcni and the plugins ignore unknown top-level keys): the driver, the
bridge cnirun chose, labels. Only such networks are pruned, and only their
bridges are deleted: hand-written conflists may belong to other tools.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..cni import cache as cnicache
from ..cni.config import NetworkConfigList, bridges_of, host_local_dirs, meta_of, netconf_dirs
from ..core.errors import CNIError, ConfigError
from ..core.fsutil import atomic_write
from ..cni.runtime import CNI


class NetworkInUse(CNIError):
    code = 7


@dataclass
class Removal:
    """What removing a network did (for the command's report)."""

    name: str
    file: str
    bridge_deleted: str = ""
    warnings: list[str] = field(default_factory=list)


def is_managed(net: NetworkConfigList) -> bool:
    return bool(meta_of(net))


def labels(net: NetworkConfigList) -> dict[str, str]:
    lab = meta_of(net).get("labels")
    return {str(k): str(v) for k, v in lab.items()} if isinstance(lab, dict) else {}


def target_dir(netconf_path: str | None = None) -> Path:
    """Where new conflists go: the first NETCONFPATH directory."""
    return Path(netconf_dirs(netconf_path)[0])


class creating:  # noqa: N801 - used as `with creating(cni) as existing:`
    """The networks lock (core.lock.networks_lock_path) for a block; entering gives the networks that exist.

    A network's subnet and bridge are chosen against the conflists found
    (networks.Planner) and are taken only once its conflist is written: the
    reading, the choosing and every `install` of one creation happen inside
    this block, so two creations at once (two `network create`, two compose
    projects' `up`) never choose the same free subnet or bridge.
    """

    def __init__(self, cni: CNI) -> None:
        from ..core.lock import host_lock, networks_lock_path

        self.cni = cni
        self._lock = host_lock(networks_lock_path(cni.lock_file))

    def __enter__(self) -> list[NetworkConfigList]:
        self._lock.__enter__()
        try:
            return self.cni.networks()
        except BaseException:
            self._lock.__exit__(None, None, None)
            raise

    def __exit__(self, *exc: object) -> None:
        self._lock.__exit__(None, None, None)


def install(cni: CNI, conf: dict[str, Any]) -> NetworkConfigList:
    """Write `conf` as <dir>/<name>.conflist (atomically); refuse an existing name.

    Call it inside `creating`, which `conf`'s choices were made under.
    """
    from ..cni.config import load_file

    name = conf["name"]
    for net in cni.networks():
        if net.name == name:
            raise ConfigError(f'network "{name}" already exists ({net.source}): pick another name or remove it first')
    from ..core.paths import rootless

    on_host = not rootless()
    d = target_dir(cni.netconf_path)
    try:
        d.mkdir(parents=True, exist_ok=True)
        path = d / f"{name}.conflist"
        atomic_write(path, (json.dumps(conf, indent=2) + "\n").encode(), 0o644, fsync=False)
    except PermissionError:
        raise ConfigError(f"{d}: permission denied writing the network: run as root or set NETCONFPATH") from None
    except OSError as e:
        raise ConfigError(f"{d}: cannot write the network: {e.strerror}") from None
    net = load_file(path)
    # A user's bridge is never the host's: it will live in the user's own netns (docs/rootless.md).
    bridge = meta_of(net).get("bridge") if on_host else None
    if bridge and meta_of(net).get("isolated"):
        from ..core.lock import host_lock
        from . import isolation

        try:
            # Under the host lock, exclusively: two networks created at once would
            # both find FORWARD's jump missing and insert it twice (see chains.py).
            with host_lock(cni.lock_file):
                isolation.ensure(str(bridge))
        except CNIError:
            os.unlink(path)  # nothing half-done: no file without its isolation
            raise
    if bridge:
        from .v6bridge import prepare, wants_bridge

        br, mtu = wants_bridge(conf)
        if br:
            prepare(br, mtu)  # dual stack: the gateway's IPv6 address skips DAD (v6bridge)
    return net


def isolate_all(cni: CNI) -> list[str]:
    """Put back the isolation rules of every isolated network cnirun made (a user's rootless netns, made
    again, has none yet); the bridges done."""
    from ..core.lock import host_lock
    from . import isolation

    done: list[str] = []
    with host_lock(cni.lock_file):
        for net in cni.networks():
            bridge = meta_of(net).get("bridge")
            if bridge and meta_of(net).get("isolated"):
                isolation.ensure(str(bridge))
                done.append(str(bridge))
    return done


def attachments(cni: CNI, name: str) -> list[cnicache.CachedAttachment]:
    return cnicache.list_attachments(cni.cache_dir, name)


def _ipam_dirs(net: NetworkConfigList) -> list[Path]:
    return [Path(d) for d in host_local_dirs(net)]


def reservations(net: NetworkConfigList) -> list[Path]:
    """host-local's files that hold an address (not its lock or last-reserved marker)."""
    out: list[Path] = []
    for d in _ipam_dirs(net):
        try:
            out += [f for f in d.iterdir() if f.name != "lock" and not f.name.startswith("last_reserved_ip")]
        except OSError:
            continue
    return out


TEARDOWN_WAIT = 15.0  # seconds `network rm` waits for DELs already under way


def _tearing_down(container_id: str, engines: dict[str, Any]) -> bool | None:
    """A DEL of this container is under way or about to be (True): a hook's poststop (container lock
    held), a run's teardown (phase "teardown" in its state, its lock held), or a detached run whose
    container the engine no longer has (`docker rm -f` a moment ago: the watcher tears it down).
    None: no run state says (an attachment of another runtime, or a run whose teardown just removed its
    state and is finishing its DELs); False: a container that stays."""
    from ..core.lock import is_held
    from ..core.paths import container_lock
    from ..state.runs import RunState, state_root, watcher_lock

    if is_held(container_lock(container_id)):
        return True
    st = RunState(state_root() / container_id)
    meta = st.read_meta() if st.path.is_dir() else None
    if meta is None:
        return None
    if meta.phase == "teardown":
        return is_held(str(st.path / "lock"))
    watched = meta.detached and meta.phase == "running" and is_held(str(watcher_lock()))
    if not (watched and meta.workload and meta.engine):
        return False
    try:
        if meta.engine not in engines:
            from ..engines import get

            engines[meta.engine] = get(meta.engine)
        return not engines[meta.engine].exists(meta.workload)
    except Exception:  # noqa: BLE001 - no engine to ask: the container counts as attached
        return False


def _after_teardowns(cni: CNI, name: str, atts: list[Any]) -> list[Any]:
    """The attachments left once the teardowns already under way are done (or TEARDOWN_WAIT passed).

    `cnirun --rm IMAGE; cnirun network rm NET` must work: the run's DEL, as
    the OCI hook's poststop, may still be running when cnirun returns. A
    container that is merely attached is not waited for; an attachment no
    run state speaks for is waited for only beside a teardown under way."""
    import time

    deadline = time.monotonic() + TEARDOWN_WAIT
    engines: dict[str, Any] = {}
    while atts and time.monotonic() < deadline:
        states = [_tearing_down(a.container_id, engines) for a in atts]
        if False in states or True not in states:
            break
        time.sleep(0.1)
        atts = attachments(cni, name)
    return atts


def remove(cni: CNI, name: str, force: bool = False) -> Removal:
    """Remove an installed network: refuse while containers are attached.

    Deletes the conflist, the bridge cnirun chose for it (when nothing is
    plugged in any more), its isolation rules, its chain lock files (unless
    held) and host-local's empty bookkeeping directory.
    """
    net = cni.network(name)
    if net.source == "<memory>" or not Path(net.source).is_file():
        raise ConfigError(f'network "{name}" is not a file in NETCONFPATH and cannot be removed')
    from ..cni.defaults import shipped_netconf_dir

    shipped = shipped_netconf_dir()
    if shipped is not None and Path(net.source).resolve().parent == Path(shipped).resolve():
        raise ConfigError(f'network "{name}" is built into cnirun and cannot be removed')
    atts = attachments(cni, name)
    if atts and not force:
        atts = _after_teardowns(cni, name, atts)
    if atts and not force:
        from ..state.runs import container_display

        ids = ", ".join(sorted({container_display(a.container_id) for a in atts}))
        raise NetworkInUse(f'network "{name}" is in use by {len(atts)} attachment(s) (containers {ids}): '
                           "stop those containers first")
    out = Removal(name=name, file=net.source)
    try:
        os.unlink(net.source)
    except FileNotFoundError:
        pass
    except OSError as e:
        raise ConfigError(f"{net.source}: cannot remove: {e.strerror}") from None
    from ..core.paths import rootless

    m = meta_of(net)
    bridge = str(m.get("bridge") or "")
    if bridge and not rootless():  # a user's bridge is not on the host (see install)
        from ..core.lock import host_lock
        from . import hostnet, isolation

        with host_lock(cni.lock_file):
            isolation.remove(bridge)
            if any(p.type == "firewall" and p.raw.get("ingressPolicy") == "same-bridge" for p in net.plugins):
                isolation.remove_firewall_isolation(bridge)
        ports = hostnet.bridge_ports(bridge) if hostnet.link_exists(bridge) else []
        if ports:
            out.warnings.append(f"bridge {bridge} kept: interfaces still plugged in ({', '.join(ports)})")
        elif hostnet.delete_link(bridge):
            out.bridge_deleted = bridge
    from ..core.lock import link_lock_path, network_lock_path, remove_lock_file

    remove_lock_file(network_lock_path(name, cni.lock_file))  # kept while a chain holds it
    if out.bridge_deleted:
        remove_lock_file(link_lock_path(bridge, cni.lock_file))
    for d in _ipam_dirs(net):
        left = reservations(net)
        if left:
            out.warnings.append(f"{d}: {len(left)} address reservation(s) left (not from cnirun's cache): kept")
            continue
        try:
            for f in d.iterdir():
                f.unlink()
            d.rmdir()
        except FileNotFoundError:
            pass
        except OSError as e:
            out.warnings.append(f"{d}: cannot clean up: {e.strerror}")
    return out


BRIDGE_LOCK_WAIT = 5.0  # seconds a -f bridge's removal waits for chains on it; then it is kept


def remove_file_bridge(cni: CNI, network: str, bridge: str, subnets: list[str]) -> bool:
    """Delete the bridge of a `-f` network (a compose-style file's, never installed) once nothing uses
    it; whether it was deleted. Also removes the network's and the bridge's chain lock files.

    Under the bridge's chain lock, exclusively (no ADD or DEL on the bridge meanwhile), it is kept
    when: an interface is plugged in; a network of NETCONFPATH (the run's or this shell's) names it,
    as an installed network's bridge must stay; or it has an address outside the network's subnets
    (a bridge that is not the network's own, such as docker0 named in a file).
    """
    import ipaddress

    from ..core.errors import LockError
    from ..core.lock import flock, link_lock_path, network_lock_path, remove_lock_file
    from . import hostnet

    def installed() -> bool:
        for c in (cni, CNI()):
            for net in c.networks():
                if bridge in bridges_of(net):
                    return True
        return False

    def foreign_address() -> bool:
        nets = [ipaddress.ip_network(s, strict=False) for s in subnets]
        for a in hostnet.link_addresses(bridge):
            ip = ipaddress.ip_interface(a).ip
            if not any(ip.version == n.version and ip in n for n in nets):
                return True
        return False

    lock = link_lock_path(bridge, cni.lock_file)
    deleted = False
    if hostnet.link_exists(bridge):
        try:
            fd = flock(lock, wait=BRIDGE_LOCK_WAIT, replaceable=True, what=f"the chains on bridge {bridge}")
        except LockError:
            return False
        try:
            if hostnet.bridge_ports(bridge) or installed() or foreign_address():
                return False
            deleted = hostnet.delete_link(bridge)
        finally:
            os.close(fd)  # type: ignore[arg-type]
    remove_lock_file(lock)
    remove_lock_file(network_lock_path(network, cni.lock_file))
    return deleted


def prune(cni: CNI, match: Callable[[NetworkConfigList], bool] | None = None) -> list[Removal]:
    """Remove every cnirun-created network nothing is attached to (of those `match` accepts, when given)."""
    out: list[Removal] = []
    for net in cni.networks():
        if not is_managed(net) or attachments(cni, net.name):
            continue
        if match is not None and not match(net):
            continue
        try:
            out.append(remove(cni, net.name))
        except ConfigError:
            continue  # built-in or not a file: not ours to prune
    return out
