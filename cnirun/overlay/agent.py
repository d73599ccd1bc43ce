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
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from . import config as netconfig
from . import registry, status, subnet_env
from .errors import EtcdUnavailable, OverlayError
from .lease import LeaseAttrs, vtep_mac_for

if TYPE_CHECKING:
    from .etcd import Store, WatchEvent
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


def _log(msg: str) -> None:
    sys.stderr.write(f"{time.strftime('%H:%M:%S')} cnirun overlay agent: {msg}\n")
    sys.stderr.flush()


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
        self.store = Store(opts.etcd, timeout=opts.etcd_timeout)
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
    def _peer_of(self, lease: registry.Lease) -> Peer | None:
        from .vxlan import Peer

        assert self.cfg is not None and self.lease is not None
        a = lease.attrs
        if lease.subnet == self.lease.subnet or a.backend_type != "vxlan" or a.vni != self.cfg.vni:
            return None
        if not lease.subnet.subnet_of(self.cfg.network) or a.public_ip == self.lease.attrs.public_ip:
            return None
        return Peer(lease.subnet, a.vtep_mac, a.public_ip)

    def _set_peer(self, peer: Peer) -> None:
        assert self.dp is not None
        old = self.peers.get(peer.subnet)
        if old == peer:
            return
        self.dp.set_peer(self.index, peer, old)
        self.peers[peer.subnet] = peer
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

    def reconcile(self, leases: list[registry.Lease]) -> None:
        want = {p.subnet: p for p in (self._peer_of(x) for x in leases) if p is not None}
        for subnet in [s for s in self.peers if s not in want]:
            self._remove_peer(subnet, "no lease")
        for peer in want.values():
            self._set_peer(peer)

    def _on_event(self, ev: WatchEvent) -> bool:
        """Apply one watch event; False when the own lease needs a re-list (gone or changed)."""
        assert self.lease is not None
        subnet = netconfig.parse_subnet_key(ev.kv.key)
        if subnet is None:
            return True
        if subnet == self.lease.subnet:
            if ev.kind == "DELETE" or ev.kv.value != self.lease.value:
                return False
            return True
        if ev.kind == "DELETE":
            self._remove_peer(subnet, "lease deleted or expired")
            return True
        lease = registry.lease_from_kv(ev.kv)
        peer = self._peer_of(lease) if lease is not None else None
        if peer is None:
            self._remove_peer(subnet, "lease no longer usable")
        else:
            self._set_peer(peer)
        return True

    # -- own lease -------------------------------------------------------------------
    def _keep_own(self, leases: list[registry.Lease]) -> None:
        assert self.store is not None and self.lease is not None
        for x in leases:
            if x.subnet == self.lease.subnet:
                if x.value == self.lease.value:
                    return
                break
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
            leases, _ = registry.list_leases(self.store)
            self._keep_own(leases)
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
        })
        self._dirty = False

    # -- the loop ----------------------------------------------------------------------
    def run(self) -> None:
        from .registry import SUBNETS_PREFIX

        assert self.store is not None
        events: queue.Queue[tuple[int, str, Any]] = queue.Queue()
        generation = 0
        watching = False
        backoff = 0.2
        next_resync = 0.0
        while not self.stopping:
            now = time.time()
            try:
                if not watching or now >= next_resync:
                    leases, revision = registry.list_leases(self.store)
                    self._keep_own(leases)
                    self.reconcile(leases)
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
