"""flannel's key layout in etcd, and leasing a subnet with transactions.

    /coreos.com/network/config                  the network config (config.py)
    /coreos.com/network/subnets/10.5.34.0-24    one lease per host (lease.py),
                                                attached to an etcd lease (TTL)

A subnet is taken with one transaction "create the key if its version is 0"
(what flanneld's createSubnet does), never read-then-write: two agents that
pick the same free subnet at the same moment cannot both win; the loser
revokes its etcd lease and picks again. A lease is renewed like flanneld's:
a new etcd lease and a put of the same value, here guarded by "the value is
still ours" so a renewal never takes back a subnet another host got after
ours expired.
"""
from __future__ import annotations

import ipaddress
import random
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from . import config as netconfig
from . import lease as leasefmt
from .errors import OverlayError

if TYPE_CHECKING:
    from .etcd import KeyValue, Store

PREFIX = "/coreos.com/network"
CONFIG_KEY = f"{PREFIX}/config"
SUBNETS_PREFIX = f"{PREFIX}/subnets/"
DEFAULT_TTL = 24 * 3600  # flanneld's subnet lease TTL
DEFAULT_RENEW_MARGIN = 3600  # flanneld renews an hour before expiry
_ACQUIRE_ROUNDS = 20


def subnet_key(subnet: ipaddress.IPv4Network) -> str:
    return SUBNETS_PREFIX + netconfig.subnet_key(subnet)


@dataclass(frozen=True)
class Lease:
    """A subnet lease as read from (or written to) etcd."""

    subnet: ipaddress.IPv4Network
    attrs: leasefmt.LeaseAttrs
    value: bytes  # exactly as stored: transactions compare it byte for byte
    lease_id: int = 0
    expires: float = 0.0  # time.time() of expiry (0: unknown)
    create_revision: int = 0  # etcd's revision of the key's creation: who came first

    @property
    def key(self) -> str:
        return subnet_key(self.subnet)


def parse_lease(kv: KeyValue) -> Lease:
    """The lease a key under SUBNETS_PREFIX holds; OverlayError says why it is not one."""
    subnet = netconfig.parse_subnet_key(kv.key)
    if subnet is None or kv.key != subnet_key(subnet):
        raise OverlayError("the key is not flannel's <address>-<length> form")
    if not kv.value:
        raise OverlayError("the value is empty")
    attrs = leasefmt.decode(kv.value)
    return Lease(subnet=subnet, attrs=attrs, value=kv.value, lease_id=kv.lease, create_revision=kv.create_revision)


def lease_from_kv(kv: KeyValue) -> Lease | None:
    """A lease from a key under SUBNETS_PREFIX; None for a key or value that is not one."""
    try:
        return parse_lease(kv)
    except OverlayError:
        return None


# -- the network config --------------------------------------------------------------
def read_config(store: Store) -> netconfig.NetworkConfig:
    kv = store.get(CONFIG_KEY)
    if kv is None:
        raise OverlayError(
            f"etcd at {store.url} has no overlay network config ({CONFIG_KEY}):"
            f" run cnirun overlay init --etcd {store.url} --network CIDR first"
        )
    try:
        return netconfig.from_json(kv.value)
    except OverlayError as e:
        raise OverlayError(f"{CONFIG_KEY} in etcd: {e}") from None


def write_config(store: Store, cfg: netconfig.NetworkConfig, force: bool = False) -> str:
    """Write the config: "created", "unchanged" or "replaced"; a different one needs `force`."""
    value = cfg.to_json().encode()
    ok, _ = store.txn([store.cmp_absent(CONFIG_KEY)], [store.op_put(CONFIG_KEY, value)])
    if ok:
        return "created"
    kv = store.get(CONFIG_KEY)
    if kv is not None:
        try:
            if netconfig.from_json(kv.value).same_as(cfg):
                return "unchanged"
        except OverlayError:
            pass  # an unreadable config is "different"
        if not force:
            raise OverlayError(
                f"etcd at {store.url} already holds a different overlay config ({kv.value.decode(errors='replace')}):"
                " pass --force to replace it (hosts keep their leases only if they still fit)"
            )
    store.put(CONFIG_KEY, value)
    return "replaced"


# -- leases -------------------------------------------------------------------------
def list_keys(store: Store) -> tuple[list[KeyValue], int]:
    """Every key under SUBNETS_PREFIX as stored (well-formed or not), and the revision to watch from (+1)."""
    return store.get_prefix(SUBNETS_PREFIX)


def _granted(store: Store, ttl: int) -> tuple[int, float]:
    lease_id, granted = store.grant(ttl)
    return lease_id, time.time() + granted


def _try_create(store: Store, subnet: ipaddress.IPv4Network, value: bytes, attrs: leasefmt.LeaseAttrs,
                ttl: int) -> Lease | None:
    """Take a free subnet in one transaction; None when another host was first."""
    lease_id, expires = _granted(store, ttl)
    key = subnet_key(subnet)
    try:
        ok, _ = store.txn([store.cmp_absent(key)], [store.op_put(key, value, lease_id)])
    except BaseException:
        _revoke_quietly(store, lease_id)
        raise
    if not ok:
        _revoke_quietly(store, lease_id)
        return None
    return Lease(subnet, attrs, value, lease_id, expires)


def _revoke_quietly(store: Store, lease_id: int) -> None:
    try:
        store.revoke(lease_id)
    except OverlayError:
        pass  # it expires by itself


def acquire(
    store: Store,
    cfg: netconfig.NetworkConfig,
    attrs: leasefmt.LeaseAttrs,
    ttl: int = DEFAULT_TTL,
    previous: ipaddress.IPv4Network | None = None,
) -> Lease:
    """This host's lease, flanneld's way.

    1. a lease that already names this host's PublicIP (an agent restarted
       while its lease lived): taken over with a transaction on its revision;
    2. else `previous` (the subnet in the old subnet.env) when it is free;
    3. else a random free subnet.
    """
    value = attrs.encode()
    for _ in range(_ACQUIRE_ROUNDS):
        kvs, _rev = store.get_prefix(SUBNETS_PREFIX)
        taken: set[ipaddress.IPv4Network] = set()
        mine: list[tuple[Lease, int]] = []
        for kv in kvs:
            subnet = netconfig.parse_subnet_key(kv.key)
            if subnet is None:
                continue
            taken.add(subnet)
            current = lease_from_kv(kv)
            if current is not None and current.attrs.public_ip == attrs.public_ip and cfg.contains(subnet):
                mine.append((current, kv.mod_revision))
        if mine:
            current, mod = mine[0]
            lease_id, expires = _granted(store, ttl)
            ok, _ = store.txn([store.cmp_mod(current.key, mod)], [store.op_put(current.key, value, lease_id)])
            if ok:
                return Lease(current.subnet, attrs, value, lease_id, expires)
            _revoke_quietly(store, lease_id)
            continue  # it changed under us: look again
        if previous is not None and cfg.contains(previous) and previous not in taken:
            got = _try_create(store, previous, value, attrs, ttl)
            if got is not None:
                return got
            continue
        free = [s for s in cfg.subnets() if s not in taken]
        if not free:
            raise OverlayError(
                f"overlay network {cfg.network} has no free /{cfg.subnet_len} subnet left"
                f" ({len(taken)} leased of {cfg.capacity()}): remove stale leases under {SUBNETS_PREFIX}"
                " or init a larger Network (--force)"
            )
        # Random, as flanneld: agents starting together rarely pick the same one.
        for subnet in random.sample(free, min(len(free), 8)):
            got = _try_create(store, subnet, value, attrs, ttl)
            if got is not None:
                return got
    raise OverlayError("could not lease a subnet: other hosts kept taking the free ones; try again")


def renew(store: Store, current: Lease, ttl: int = DEFAULT_TTL) -> Lease | None:
    """A fresh TTL for `current`; None when the key is gone or no longer ours."""
    lease_id, expires = _granted(store, ttl)
    ok, _ = store.txn([store.cmp_value(current.key, current.value)], [store.op_put(current.key, current.value, lease_id)])
    if not ok:
        _revoke_quietly(store, lease_id)
        return None
    if current.lease_id:
        _revoke_quietly(store, current.lease_id)  # holds no key any more
    return replace(current, lease_id=lease_id, expires=expires)


def reclaim(store: Store, current: Lease, ttl: int = DEFAULT_TTL) -> Lease | None:
    """`current` again after its key vanished (expiry during an etcd outage); None if another host has it."""
    kv = store.get(current.key)
    if kv is not None:
        return current if kv.value == current.value else None
    return _try_create(store, current.subnet, current.value, current.attrs, ttl)


def release(store: Store, current: Lease) -> None:
    """Delete this host's lease (only if it is still ours) and revoke its etcd lease."""
    store.txn([store.cmp_value(current.key, current.value)], [store.op_delete(current.key)])
    if current.lease_id:
        _revoke_quietly(store, current.lease_id)
