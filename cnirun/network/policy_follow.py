"""Policies follow names: when a network's names store changes, the firewall policies naming what changed are
refreshed (cnirun.network.policy_attachments.refresh), with no command.

The attachment lifecycle wraps each change of a container's names on a
network (register after ADD, unregister before DEL, add_names) in before()
and after(): after() refreshes the attachments whose policies name one of
the container's names of before or after the change on that network, or
name the network itself (net:NETWORK). So a container named in a rule is
covered when its start's ADD returns, and a removed one's address leaves
the sets before its DEL runs. The refresh is synchronous: a run pays for it
only when some attachment names it, and it runs nft in all their netns at
once.

Cost when no attachment has a policy: one listdir of the records
directory, nothing of nftables imported.

A refresh that fails never fails the change that called it: the
attachments it failed on are marked stale (the next refresh, on any
network, tries them again) and a warning says so (the caller's notes when
it keeps them, else a line on stderr); `cnirun gc` refreshes every
attachment with peers by name or network (repair()).
"""
from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Iterable


def _any_records() -> bool:
    from ..cni.policy_record import records_dir

    try:
        return bool(os.listdir(records_dir()))
    except OSError:
        return False


def _names(network: str, container_id: str) -> set[str]:
    """The container's names (own and aliases) in `network`'s names store, lowercased."""
    from ..dns.store import hosts_file, read_entry

    _, _, own, aliases, _ = read_entry(hosts_file(network, container_id))
    return {n.lower() for n in own + aliases}


def before(network: str, container_id: str) -> set[str] | None:
    """The container's names on `network` before a change, for after(); None when no attachment has a policy
    (or its names cannot be read: after() then refreshes for every name there)."""
    if not _any_records():
        return None
    try:
        return _names(network, container_id)
    except ValueError:  # a hosts file that is not text: the change itself says what to do with it
        return None


def after(network: str, container_id: str, names_before: set[str] | None, notes: list[str] | None = None) -> None:
    """Refresh the policies the change of the container's names on `network` concerns; never raises.

    `names_before`: what before() gave (None while no policy existed then:
    one made since is refreshed for every name on the network)."""
    if not _any_records():
        return
    from ..core import trace

    start = trace.now()
    try:
        from .policy_attachments import refresh

        names = None if names_before is None else names_before | _names(network, container_id)
        done = refresh(network, names)
        if trace.ON:
            trace.event("policy refresh", trace.now() - start, f"{len(done)} attachments ({network})")
    except Exception as e:  # noqa: BLE001 - the change stands; the stale marks and gc catch up
        _warn(f"network {network}: the firewall policies naming its containers were not all updated: {e}", notes)


def add_names(container_id: str, names: Iterable[str]) -> None:
    """cnirun.dns.names.add_names (a name known only after create), then the policies naming it follow."""
    from ..dns.names import add_names as add
    from ..dns.store import networks, registered

    names = list(names)
    if not _any_records():
        add(container_id, names)
        return
    nets = [n for n in networks() if registered(n, container_id)]
    old = {n: before(n, container_id) for n in nets}
    add(container_id, names)
    for n in nets:
        after(n, container_id, old[n])


def repair() -> list[str]:
    """For `cnirun gc`: refresh every attachment with peers by name or network (a refresh a kill cut short,
    a store gc changed); one line per failure."""
    if not _any_records():
        return []
    from .policy_attachments import PolicyError, refresh

    try:
        refresh(None)
    except PolicyError as e:
        return [str(e)]
    return []


def _warn(line: str, notes: list[str] | None) -> None:
    if notes is not None:
        notes.append(line)
        return
    import sys

    sys.stderr.write(f"cnirun: warning: {line}\n")
