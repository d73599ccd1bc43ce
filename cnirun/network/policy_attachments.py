"""The attachments that have a firewall policy: their records, their tables, and refreshing them when peers change.

A record per attachment, <state>/policies/<network>-<container id>-<ifname>
(0600, JSON: network, containerId, ifname, netns, netnsId, gateways, policy),
is what refresh() goes by: written (under the record's flock) before the
attachment's table is made, removed after it is gone. So whatever kills the
plugin, the record names every table that may exist, and its DEL (the
runtime's cache keeps the capability arguments for it) removes both.

Peers by name are resolved when the table is made. A container whose name
or aliases (or network) a policy names coming or going changes that
attachment's sets: refresh(network, names) re-resolves, under each record's
flock, the policies of the attachments on `network` naming one of `names`
and of those naming net:`network`, and replaces their sets in one nft
transaction each, run in all their netns at once. It is called after the
names store changed (cnirun.network.policy_follow); an attachment made
meanwhile wrote its record before resolving, so either it saw the change
or refresh sees its record.

Start-up cost: see cnirun.core.
"""
from __future__ import annotations

import os

from ..cni.policy_record import DIR_NAME, record_path, records_dir
from . import policy_rules
from .policy_peers import names_of, sets_for

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Iterable


class PolicyError(Exception):
    """A policy could not be put in place (one line)."""


def _netns_id(netns: str) -> str:
    try:
        st = os.stat(netns)
    except (OSError, ValueError):
        return ""
    return f"{st.st_dev}:{st.st_ino}"


def _open_locked(path: str, create: bool) -> int | None:
    """The record's descriptor, flocked; None when it does not exist (or went while we waited)."""
    import fcntl

    flags = os.O_RDWR | os.O_CLOEXEC | (os.O_CREAT if create else 0)
    try:
        fd = os.open(path, flags, 0o600)
    except FileNotFoundError:
        return None
    fcntl.flock(fd, fcntl.LOCK_EX)
    if os.fstat(fd).st_nlink == 0:  # removed by a DEL while we waited
        os.close(fd)
        return _open_locked(path, create) if create else None
    return fd


def _read(fd: int) -> dict[str, Any] | None:
    from ..core.jsonfast import loads

    data = b""
    while chunk := os.pread(fd, 65536, len(data)):
        data += chunk
    try:
        record = loads(data)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def _write(fd: int, record: dict[str, Any]) -> None:
    from ..core.jsonfast import dumps

    os.ftruncate(fd, 0)
    os.pwrite(fd, dumps(record).encode(), 0)


def attach(network: str, container_id: str, ifname: str, netns: str, gateways: list[str],
           policy: dict[str, Any]) -> None:
    """Record the attachment, then make its table in `netns` (replacing one an earlier ADD made)."""
    try:
        policy_rules.table_name(ifname)
    except ValueError as e:
        raise PolicyError(str(e)) from None
    d = records_dir()
    os.makedirs(d, mode=0o700, exist_ok=True)
    record = {"network": network, "containerId": container_id, "ifname": ifname, "netns": netns,
              "netnsId": _netns_id(netns), "gateways": gateways, "policy": policy}
    fd = _open_locked(record_path(network, container_id, ifname), create=True)
    assert fd is not None
    try:
        _write(fd, record)
        try:
            policy_rules.apply(netns, policy_rules.table_script(ifname, sets_for(policy, network, gateways)))
        except policy_rules.NftError as e:
            try:  # a failed ADD leaves nothing: no half policy, no record
                policy_rules.delete(netns, ifname)
            except policy_rules.NftError:
                pass
            else:
                os.unlink(record_path(network, container_id, ifname))
            raise PolicyError(f"cannot install the firewall policy in {netns}: {e}") from None
    finally:
        os.close(fd)


def detach(network: str, container_id: str, ifname: str, netns: str) -> None:
    """Remove the attachment's table (when its netns is still the recorded one) and its record; idempotent."""
    path = record_path(network, container_id, ifname)
    fd = _open_locked(path, create=False)
    record = _read(fd) if fd is not None else None
    try:
        if record is not None and not netns:
            netns = record.get("netns") or ""
        same = record is None or not record.get("netnsId") or record.get("netnsId") == _netns_id(netns)
        if netns and same:
            try:
                policy_rules.delete(netns, ifname)
            except (policy_rules.NftError, ValueError) as e:
                raise PolicyError(f"cannot remove the firewall policy in {netns}: {e}") from None
        if fd is not None:
            os.unlink(path)
    finally:
        if fd is not None:
            os.close(fd)


def missing(network: str, container_id: str, ifname: str, netns: str, policy: dict[str, Any]) -> list[str]:
    """What of the attachment's policy is not in place: its record, its table's chains and sets."""
    out = [] if os.path.exists(record_path(network, container_id, ifname)) else ["its record"]
    return out + policy_rules.missing(netns, ifname, [d for d in ("ingress", "egress") if d in policy])


def records() -> list[str]:
    try:
        return sorted(os.path.join(records_dir(), n) for n in os.listdir(records_dir()))
    except OSError:
        return []


def _concerns(record: dict[str, Any], network: str | None, names: set[str] | None) -> bool:
    policy = record.get("policy")
    if not isinstance(policy, dict):
        return False
    if record.get("stale"):
        return True
    peer_names, peer_networks = names_of(policy)
    if network is None:
        return bool(peer_names or peer_networks)
    if network in peer_networks:
        return True
    return record.get("network") == network and bool(peer_names) and (names is None or bool(peer_names & names))


def _peek(path: str) -> dict[str, Any] | None:
    """A record read without its lock: to choose which to lock (one being written reads as None, and its
    writer resolves its peers after writing it)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return _read(fd)
    finally:
        os.close(fd)


def refresh(network: str | None, names: Iterable[str] | None = None) -> list[str]:
    """Re-resolve the sets of every attachment whose policy names one of `names` on `network` (names None:
    any name there) or names net:`network` (network None: every attachment with peers by name or network),
    and of those an earlier refresh failed on; the records refreshed ("network/container id/ifname").

    The records concerned are locked (in path order, so two refreshes never wait on each other crosswise),
    re-read, their sets resolved with each names store read once, and nft run in all their netns at once
    (policy_rules.apply_many). An attachment whose netns is gone or no longer the recorded one is left to
    its DEL. One that fails is marked stale (refreshed again by the next refresh of any network, and by
    gc) and PolicyError names it, after the others were done.
    """
    wanted = None if names is None else {n.lower() for n in names}
    held: list[tuple[int, str, dict[str, Any]]] = []
    try:
        for path in records():
            peeked = _peek(path)
            if peeked is None or not _concerns(peeked, network, wanted):
                continue
            fd = _open_locked(path, create=False)
            if fd is None:
                continue
            record = _read(fd)
            if record is None or not _concerns(record, network, wanted):
                os.close(fd)
                continue
            held.append((fd, path, record))
        return _refresh_held(held)
    finally:
        for fd, _, _ in held:
            os.close(fd)


def _refresh_held(held: list[tuple[int, str, dict[str, Any]]]) -> list[str]:
    seen: dict[str, Any] = {}
    jobs: list[tuple[str, str]] = []
    todo: list[tuple[int, dict[str, Any]]] = []
    for fd, _, record in held:
        netns, ifname = record.get("netns") or "", record.get("ifname") or ""
        if not netns or _netns_id(netns) != record.get("netnsId"):
            continue
        try:
            sets = sets_for(record["policy"], record.get("network") or "", record.get("gateways") or [], seen)
            jobs.append((netns, policy_rules.set_script(ifname, sets)))
        except (KeyError, TypeError, ValueError):
            continue  # not a record this code wrote: its DEL or gc handles it
        todo.append((fd, record))
    done, failed = [], []
    for (fd, record), error in zip(todo, policy_rules.apply_many(jobs)):
        name = f"{record.get('network')}/{record.get('containerId')}/{record.get('ifname')}"
        if error:
            failed.append(f"{name} ({error})")
        else:
            done.append(name)
        if bool(error) != bool(record.get("stale")):
            _write(fd, {**{k: v for k, v in record.items() if k != "stale"}, **({"stale": True} if error else {})})
    if failed:
        raise PolicyError(f"cannot refresh the firewall policy of {', '.join(failed)}")
    return done


def collect(cache_dirs: Iterable[str], dry_run: bool = False) -> list[str]:
    """Remove the records of attachments that are gone, and their tables where the netns still is; the
    report lines ("removed the firewall policy of NETWORK/CONTAINER/IFNAME (why)").

    Gone: its netns is gone or another one now (the table went with the old one), or no cache of
    `cache_dirs` holds the attachment (no runtime will DEL it). Decided under the record's flock, the
    cache looked at last: a runtime writes its cache entry before the plugin's ADD writes the record, and
    removes it after the plugin's DEL removed the record, so an attachment being made or removed is never
    taken for gone. A record that cannot be read is left alone (whose table it is cannot be known).
    """
    from ..cni.cache import cache_path

    out = []
    for path in records():
        fd = _open_locked(path, create=False)
        if fd is None:
            continue
        try:
            record = _read(fd)
            if record is None:
                continue
            network, cid, ifname = (str(record.get(k) or "") for k in ("network", "containerId", "ifname"))
            netns, netns_id = str(record.get("netns") or ""), record.get("netnsId")
            here = bool(netns) and os.path.exists(netns) and (not netns_id or _netns_id(netns) == netns_id)
            if not here:
                why = "its netns is gone"
            elif not any(cache_path(d, network, cid, ifname).exists() for d in cache_dirs):
                why = "no runtime's cache holds the attachment"
            else:
                continue
            what = f"the firewall policy of {network}/{cid[:12]}/{ifname} ({why})"
            if dry_run:
                out.append(f"would remove {what}")
                continue
            if here:
                try:
                    policy_rules.delete(netns, ifname)
                except (policy_rules.NftError, ValueError) as e:
                    out.append(f"cannot remove {what}: {e}")
                    continue
            os.unlink(path)
            out.append(f"removed {what}")
        finally:
            os.close(fd)
    return out
