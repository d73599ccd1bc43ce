"""`cnirun overlay agent`: the per-host daemon (flanneld's job, vxlan backend).

Start-up, in an order that leaves nothing behind when a step fails: read the
network config from etcd, find the uplink, check the VNI is free here, lease
a subnet (a transaction), create the VXLAN device, write subnet.env. A
failure after the lease releases it; a failure while making the device
removes the device.

Then one loop, in the main thread (netlink calls stay in one thread):
- a watch on /coreos.com/network/subnets/ streams joins, renewals, deletions
  and expiries; each programs or removes one peer's route, neighbour and FDB
  entry (a host that joins shows up here within milliseconds);
- every `resync` seconds, and whenever the watch breaks, the leases are
  listed again and the device reconciled with them (what a lost watch event
  would have said);
- the lease is renewed `renew_margin` seconds before it expires;
- a lease is programmed only when it could be an honest host's (see
  :func:`choose_peers`); every other one is refused and logged once, with
  the reason;
- while etcd cannot be reached the data plane stays as it is (the kernel
  forwards without the agent) and the agent retries with a capped backoff,
  then lists, reconciles, reclaims its own key if it expired meanwhile, and
  watches again.

SIGTERM/SIGINT: remove the device (its routes, neighbours and FDB entries go
with it), delete this host's lease so the others drop it at once, keep
subnet.env so a restart asks for the same subnet again. A SIGKILLed agent
leaves its lease to expire (TTL) and its device in place; a restarted agent
takes both over (same PublicIP -> same lease).
"""
from __future__ import annotations

import ipaddress
import os
import queue
import signal
import sys
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Callable, Iterable

from . import config as netconfig
from . import registry, status, subnet_env
from .errors import DataPlaneError, EtcdUnavailable, OverlayError
from .lease import MAX_VALUE_BYTES, LeaseAttrs, unicast_problem, vtep_mac_for

if TYPE_CHECKING:
    from .etcd import Credentials, KeyValue, Store, WatchEvent
    from .vxlan import DataPlane, Peer


@dataclass
class AgentOptions:
    etcd: str
    iface: str | None = None
    public_ip: str | None = None
    subnet_file: str = subnet_env.DEFAULT_PATH
    ttl: int = registry.DEFAULT_TTL
    renew_margin: int = registry.DEFAULT_RENEW_MARGIN
    resync: float = 30.0
    etcd_timeout: float = 5.0
    creds: Credentials | None = None


def _log(msg: str) -> None:
    sys.stderr.write(f"{time.strftime('%H:%M:%S')} cnirun overlay agent: {msg}\n")
    sys.stderr.flush()


def _bounded(kv: KeyValue) -> KeyValue:
    """`kv` as the agent keeps it: a value too long to be a lease is kept only as long as it takes to say so."""
    if len(kv.value) <= MAX_VALUE_BYTES:
        return kv
    return replace(kv, value=kv.value[:MAX_VALUE_BYTES + 1])


def _lease_problem(cfg: netconfig.NetworkConfig, own: registry.Lease, lease: registry.Lease) -> str | None:
    """Why `lease` cannot be another honest host's in this network (None: it can)."""
    a, subnet = lease.attrs, lease.subnet
    if a.backend_type != "vxlan" or a.vni != cfg.vni:
        return f"backend {a.backend_type or '(none)'} VNI {a.vni}, not this network's vxlan VNI {cfg.vni}"
    if subnet.overlaps(own.subnet):
        return f"{subnet} overlaps this host's subnet {own.subnet}"
    if not subnet.subnet_of(cfg.network):
        return f"{subnet} is not inside the network {cfg.network}"
    if subnet.prefixlen != cfg.subnet_len:
        return f"{subnet} is not a /{cfg.subnet_len} (the network's SubnetLen)"
    if a.public_ip == own.attrs.public_ip:
        return f"PublicIP {a.public_ip} is this host's own"
    if a.public_ip in cfg.network:
        return f"PublicIP {a.public_ip} is inside the overlay network {cfg.network}"
    if a.vtep_mac == own.attrs.vtep_mac:
        return f"VtepMAC {a.vtep_mac} is this host's own"
    return unicast_problem(a.public_ip, a.vtep_mac)


def choose_peers(cfg: netconfig.NetworkConfig, own: registry.Lease,
                 kvs: Iterable[KeyValue]) -> tuple[dict[ipaddress.IPv4Network, registry.Lease], dict[str, str]]:
    """The leases under the subnets prefix this host programs, and why each other key is refused.

    Anyone who can write to etcd can write a lease, so a lease is programmed
    only when it is what an honest host of this network holds: flannel's
    value (bounded, well typed), this network's backend and VNI, a subnet of
    exactly SubnetLen inside the Network (its key's address aligned), not
    overlapping this host's subnet, and a PublicIP and VtepMAC a VXLAN peer
    can have (unicast, not this host's). Aligned subnets of one length under
    distinct keys never overlap each other; what is left to conflict is a
    host's identity: an honest host holds one lease, with one PublicIP and one
    VtepMAC (a second lease with its VtepMAC would turn its FDB entry to
    another address and take its traffic). The lease created first (etcd's
    create revision, which renewals keep) keeps a PublicIP and a VtepMAC; a
    later lease naming either is refused, so a writer cannot take over a live
    host's traffic by copying its identity.
    """
    rejected: dict[str, str] = {}
    candidates: list[registry.Lease] = []
    for kv in kvs:
        if kv.key == own.key:
            continue
        try:
            lease = registry.parse_lease(kv)
        except OverlayError as e:
            rejected[kv.key] = str(e)
            continue
        why = _lease_problem(cfg, own, lease)
        if why is not None:
            rejected[kv.key] = why
            continue
        candidates.append(lease)
    accepted: dict[ipaddress.IPv4Network, registry.Lease] = {}
    holders: dict[object, registry.Lease] = {}
    for lease in sorted(candidates, key=lambda x: (x.create_revision, x.key)):
        a = lease.attrs
        first = holders.get(a.public_ip) or holders.get(a.vtep_mac)
        if first is not None:
            what = f"PublicIP {a.public_ip}" if first.attrs.public_ip == a.public_ip else f"VtepMAC {a.vtep_mac}"
            rejected[lease.key] = f"{what} is already {first.subnet}'s, whose lease came first"
            continue
        holders[a.public_ip] = holders[a.vtep_mac] = lease
        accepted[lease.subnet] = lease
    return accepted, rejected


class Agent:
    def __init__(self, opts: AgentOptions, log: Callable[[str], None] = _log) -> None:
        self.opts = opts
        self.log = log
        self.stopping = False
        self.store: Store | None = None
        self.dp: DataPlane | None = None
        self.cfg: netconfig.NetworkConfig | None = None
        self.lease: registry.Lease | None = None
        self.index = 0
        self.peers: dict[ipaddress.IPv4Network, Peer] = {}
        #: Every key under the subnets prefix as etcd last said, and the revision of the last full list.
        self.kvs: dict[str, KeyValue] = {}
        self.listed_revision = 0
        #: Keys not programmed, with the reason already logged (each is logged once per reason).
        self.refused: dict[str, str] = {}
        self.etcd_ok = True
        self._dirty = True

    # -- start-up -----------------------------------------------------------------
    def setup(self) -> None:
        """Everything before the loop; raises OverlayError with nothing left behind."""
        from .etcd import Store
        from .vxlan import DataPlane

        opts = self.opts
        if opts.ttl < 5:
            raise OverlayError(f"--lease-ttl {opts.ttl} is too short: etcd needs at least 5 s")
        if not 0 < opts.renew_margin < opts.ttl:
            raise OverlayError(f"--renew-margin must be between 0 and the lease TTL ({opts.ttl} s)")
        self.store = Store(opts.etcd, timeout=opts.etcd_timeout, creds=opts.creds)
        self.cfg = cfg = registry.read_config(self.store)
        self.dp = dp = DataPlane()
        uplink = dp.uplink(opts.iface, opts.public_ip)
        holder = dp.vni_holder(cfg.vni, cfg.device_name)
        if holder:
            raise OverlayError(
                f"VXLAN id {cfg.vni} is already used by device {holder} on this host:"
                f" remove {holder} or give the overlay another VNI (cnirun overlay init --vni N --force)"
            )
        mtu = uplink.mtu - subnet_env.VXLAN_OVERHEAD
        attrs = LeaseAttrs(public_ip=uplink.address, vtep_mac=vtep_mac_for(uplink.address, cfg.vni), vni=cfg.vni)
        previous = subnet_env.read_previous_subnet(opts.subnet_file)
        self.lease = lease = registry.acquire(self.store, cfg, attrs, opts.ttl, previous)
        try:
            existed = dp.index_of(cfg.device_name) is not None
            self.index, _created = dp.ensure_device(
                cfg.device_name, cfg.vni, cfg.port, uplink, attrs.vtep_mac, mtu, lease.subnet.network_address
            )
            if existed:
                self.peers = self._peers_in_kernel()  # a crashed agent's: reconciled below
            subnet_env.write(opts.subnet_file, subnet_env.SubnetEnv(cfg.network, netconfig.gateway(lease.subnet), mtu, False))
        except BaseException:
            self._teardown(release=True)
            raise
        self.uplink = uplink
        self.log(
            f"leased {lease.subnet} for {uplink.address} ({uplink.name}); {cfg.device_name} up"
            f" (VNI {cfg.vni}, port {cfg.port}, MTU {mtu}); wrote {opts.subnet_file}"
        )

    def _peers_in_kernel(self) -> dict[ipaddress.IPv4Network, Peer]:
        from .vxlan import Peer

        out = {}
        assert self.dp is not None
        for subnet, entry in self.dp.programmed(self.index).items():
            try:
                out[ipaddress.IPv4Network(subnet)] = Peer(
                    ipaddress.IPv4Network(subnet), entry.get("vtepMAC") or "", ipaddress.IPv4Address(entry.get("publicIP") or "0.0.0.0")
                )
            except ValueError:
                continue
        return out

    # -- peers ---------------------------------------------------------------------
    def _refuse(self, key: str, why: str) -> None:
        if self.refused.get(key) != why:
            self.refused[key] = why
            self._dirty = True
            self.log(f"refused lease {key.removeprefix(registry.SUBNETS_PREFIX)[:60]!r}: {why}; not programmed")

    def _set_peer(self, peer: Peer, key: str) -> None:
        assert self.dp is not None
        old = self.peers.get(peer.subnet)
        if old == peer:
            return
        try:
            self.dp.set_peer(self.index, peer, old)
        except DataPlaneError as e:
            # Nothing half-programmed stays: neither the old entries nor what the new ones got to.
            for gone in (peer, old):
                if gone is not None:
                    self.dp.remove_peer(self.index, gone)
            self.peers.pop(peer.subnet, None)
            self._dirty = True
            self._refuse(key, str(e))
            return
        self.peers[peer.subnet] = peer
        self.refused.pop(key, None)
        self._dirty = True
        self.log(f"{'updated' if old else 'added'} peer {peer.subnet} at {peer.public_ip} (VtepMAC {peer.vtep_mac})")

    def _remove_peer(self, subnet: ipaddress.IPv4Network, why: str) -> None:
        assert self.dp is not None
        peer = self.peers.pop(subnet, None)
        if peer is None:
            return
        self.dp.remove_peer(self.index, peer)
        self._dirty = True
        self.log(f"removed peer {subnet} at {peer.public_ip} ({why})")

    def reconcile(self) -> None:
        """Make the device hold exactly the peers :func:`choose_peers` accepts from self.kvs."""
        from .vxlan import Peer

        assert self.cfg is not None and self.lease is not None
        accepted, rejected = choose_peers(self.cfg, self.lease, self.kvs.values())
        for key, why in rejected.items():
            self._refuse(key, why)
        for key in [k for k in self.refused if k not in rejected and k not in self.kvs]:
            del self.refused[key]
            self._dirty = True
        for subnet in [s for s in self.peers if s not in accepted]:
            self._remove_peer(subnet, "no usable lease")
        for lease in accepted.values():
            self._set_peer(Peer(lease.subnet, lease.attrs.vtep_mac, lease.attrs.public_ip), lease.key)

    def _on_event(self, ev: WatchEvent) -> bool:
        """Apply one watch event; False when the own lease needs a re-list (gone or changed)."""
        assert self.lease is not None
        if 0 < ev.kv.mod_revision <= self.listed_revision:
            return True  # already in the list read after it
        if ev.kind == "DELETE":
            self.kvs.pop(ev.kv.key, None)
        else:
            self.kvs[ev.kv.key] = _bounded(ev.kv)
        if ev.kv.key == self.lease.key:
            return ev.kind != "DELETE" and ev.kv.value == self.lease.value
        self.reconcile()
        return True

    # -- own lease -------------------------------------------------------------------
    def _keep_own(self, kv: KeyValue | None) -> None:
        """Take the own lease again if etcd lost it (`kv`: what etcd holds under its key)."""
        assert self.store is not None and self.lease is not None
        if kv is not None and kv.value == self.lease.value:
            return
        got = registry.reclaim(self.store, self.lease, self.opts.ttl)
        if got is None:
            raise OverlayError(
                f"subnet {self.lease.subnet} now belongs to another host (this host's lease expired while"
                " etcd was unreachable): restart the agent to lease a new subnet, then restart the containers"
            )
        if got is not self.lease:
            self.lease = got
            self._dirty = True
            self.log(f"lease on {got.subnet} was gone from etcd: taken again")

    def _renew_due(self) -> float:
        assert self.lease is not None
        return self.lease.expires - self.opts.renew_margin

    def _renew(self) -> None:
        assert self.store is not None and self.lease is not None
        got = registry.renew(self.store, self.lease, self.opts.ttl)
        if got is None:
            self._keep_own(self.store.get(self.lease.key))
            return
        self.lease = got
        self._dirty = True

    # -- state for `overlay status` ---------------------------------------------------------
    def _write_state(self) -> None:
        if not self._dirty:
            return
        assert self.cfg is not None and self.lease is not None
        status.write(self.opts.subnet_file, {
            "pid": os.getpid(),
            "etcd": self.opts.etcd,
            "etcdReachable": self.etcd_ok,
            "network": self.cfg.to_dict(),
            "device": self.cfg.device_name,
            "subnet": str(self.lease.subnet),
            "publicIP": str(self.lease.attrs.public_ip),
            "vtepMAC": self.lease.attrs.vtep_mac,
            "leaseExpires": int(self.lease.expires),
            "subnetFile": os.path.abspath(self.opts.subnet_file),
            "peers": [{"subnet": str(p.subnet), "publicIP": str(p.public_ip), "vtepMAC": p.vtep_mac}
                      for p in sorted(self.peers.values(), key=lambda p: p.subnet)],
            "refused": [{"key": k, "reason": why} for k, why in sorted(self.refused.items())],
        })
        self._dirty = False

    # -- the loop ----------------------------------------------------------------------
    def run(self) -> None:
        from .registry import SUBNETS_PREFIX

        assert self.store is not None and self.lease is not None
        events: queue.Queue[tuple[int, str, Any]] = queue.Queue()
        generation = 0
        watching = False
        backoff = 0.2
        next_resync = 0.0
        while not self.stopping:
            now = time.time()
            try:
                if not watching or now >= next_resync:
                    kvs, revision = registry.list_keys(self.store)
                    self.kvs = {kv.key: _bounded(kv) for kv in kvs}
                    self.listed_revision = revision
                    self._keep_own(self.kvs.get(self.lease.key))
                    self.reconcile()
                    if not watching:
                        generation += 1
                        gen = generation
                        self.store.watch_prefix(SUBNETS_PREFIX, revision + 1,
                                                lambda kind, payload, g=gen: events.put((g, kind, payload)))
                        watching = True
                    if not self.etcd_ok:
                        self.etcd_ok = True
                        self._dirty = True
                        self.log("etcd is reachable again: leases listed, peers reconciled, watching")
                    backoff = 0.2
                    next_resync = time.time() + self.opts.resync
                if time.time() >= self._renew_due():
                    self._renew()
            except EtcdUnavailable as e:
                if self.etcd_ok:
                    self.etcd_ok = False
                    self._dirty = True
                    self.log(f"{e}; keeping the data plane as it is and retrying")
                watching = False
                self._write_state()
                self._sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            self._write_state()
            wait = max(0.05, min(next_resync, self._renew_due()) - time.time())
            try:
                gen, kind, payload = events.get(timeout=min(wait, 0.5))  # 0.5: notice signals
            except queue.Empty:
                continue
            if gen != generation:
                continue  # a stream we already gave up on
            if kind == "broken":
                self.log(f"etcd watch lost ({payload}): listing again")
                watching = False
                continue
            if not self._on_event(payload):
                next_resync = 0.0  # the own lease changed: list and keep it now

    def _sleep(self, seconds: float) -> None:
        end = time.time() + seconds
        while not self.stopping and time.time() < end:
            time.sleep(min(0.1, end - time.time()))

    def stop(self, *_: object) -> None:
        self.stopping = True

    # -- the end ------------------------------------------------------------------------
    def _teardown(self, release: bool) -> None:
        if self.dp is not None and self.cfg is not None:
            try:
                self.dp.delete_device(self.cfg.device_name)
            except OverlayError as e:
                self.log(str(e))
        if release and self.store is not None and self.lease is not None:
            try:
                registry.release(self.store, self.lease)
            except OverlayError as e:
                self.log(f"could not delete the lease ({e}): it expires by itself")
        status.remove(self.opts.subnet_file)
        if self.dp is not None:
            self.dp.close()
            self.dp = None

    def shutdown(self) -> None:
        """Remove the device (and everything programmed on it) and this host's lease."""
        self._teardown(release=True)
        if self.lease is not None:
            self.log(f"stopped: {self.cfg.device_name if self.cfg else 'device'} removed, lease {self.lease.subnet} released")


def run_agent(opts: AgentOptions, ready: Callable[[Agent], None] | None = None) -> int:
    """The whole daemon: set up, loop until SIGTERM/SIGINT, clean up. Raises OverlayError on bad input."""
    agent = Agent(opts)
    signal.signal(signal.SIGTERM, agent.stop)
    signal.signal(signal.SIGINT, agent.stop)
    signal.signal(signal.SIGHUP, agent.stop)
    agent.setup()
    if ready is not None:
        ready(agent)
    try:
        agent.run()
    except OverlayError as e:
        agent.log(f"giving up: {e}")
        agent.shutdown()
        raise
    agent.shutdown()
    return 0
