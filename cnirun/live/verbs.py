"""Changing a running container's networks: `cnirun network connect/disconnect`, `cnirun port`, `cnirun update`.

Finds the container through the Engine protocol (name, ID or unique prefix),
works out which CNI container ID and which netns its attachments use, takes
its lifecycle lock and hands over to lifecycle.connect / disconnect /
set_ports: the one ADD and DEL path.

Which container ID and netns:
- a `cnirun run` (Docker sandbox mode, Podman; label cnirun.id): the run ID,
  in the run's netns (the sandbox helper's, or the named netns), with the
  run's recorded CNI paths;
- a container the OCI hook attached (Docker hook mode): the engine's ID, in
  the hook's netns pin;
- any other container with its own netns (`docker run --network none`): the
  engine's ID; its netns is pinned the way the hook pins it, so a DEL can
  always enter it.
Host-network and `container:` containers are refused.

For the last two, a record in the run state dir (<state>/containers/<id>/,
mode "hook" or "foreign") hands the container to the `-d` watcher, which
tears it down when the container is removed (and `cnirun gc` after a crash),
and lists in live.json what was connected and published here, which the
hook's createRuntime attaches again after a restart (oci.reapply).
"""
from __future__ import annotations

import os

from ..core import jsonfast as json  # not the json package: re and enum cost ~8 ms of every connect and port
from ..core.errors import ArgumentError, EngineError
from ..core.value import Value

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any

LIVE_FILE = "live.json"


class Target(Value):
    """A running container as connect/disconnect/port see it."""

    _fields = ("engine", "container", "cni", "cni_id", "netns", "kind", "state_dir")
    __match_args__ = _fields

    def __init__(self, engine: str, container: Any, cni: Any, cni_id: str, netns: str, kind: str,
                 state_dir: str | None) -> None:
        self.engine = engine  # its engine's name
        self.container = container  # engines.base.ContainerNet
        self.cni = cni
        self.cni_id = cni_id
        self.netns = netns  # '' when it does not run
        self.kind = kind  # run | hook | foreign
        self.state_dir = state_dir  # the run's, or the record's (hook, foreign; None until made)

    @property
    def display(self) -> str:
        return self.container.name or self.container.id[:12]


def lookup(ref: str) -> tuple[Any, Any]:
    """(engine, ContainerNet) of `ref` in CNIRUN_ENGINE's engine, else Docker's, then Podman's."""
    from ..engines import ENGINES, engine_name, quick

    if not ref or any(c in ref for c in "/?#") or ref.startswith("-"):
        raise ArgumentError(f"invalid container {ref!r}: give its name or ID (full or a unique prefix)")
    names = [engine_name(None)] if os.environ.get("CNIRUN_ENGINE") else list(ENGINES)
    problems: list[str] = []
    for name in names:
        try:
            eng = quick(name)
            found = eng.lookup(ref)
        except EngineError as e:
            problems.append(str(e))
            continue
        if found is not None:
            return eng, found
    if problems and len(problems) == len(names):
        raise EngineError(problems[0])
    raise ArgumentError(f"no such container: {ref} (give a running container's name or ID; see docker ps / podman ps)")


def target(ref: str, running: bool = True) -> Target:
    """Resolve `ref`; ArgumentError for a container cnirun cannot change (not running, host, container:).

    From the record a previous live command left (cnirun.state.containers) when it
    is verifiably still true, else through the engine (then recorded).
    """
    from ..state.containers import recall, remember

    found = recall(ref)
    if found is not None:
        return _target_of(*found, running)
    eng, c = lookup(ref)
    t = _target_of(eng.name, c, running)
    if t.state_dir is not None:
        remember(t.state_dir, t.engine, c)
    return t


def _target_of(engine: str, c: Any, running: bool) -> Target:
    """target() of container `c` (engines.base.ContainerNet) of `engine`, however it was found."""
    from ..network.netns import is_pinned, pin_path
    from ..core.paths import runs_dir
    from ..core.fsutil import identity
    from ..state.runs import read_meta
    from ..run.caches import cni_for, cni_holding

    show = c.name or c.id[:12]
    if running and not c.running:
        raise ArgumentError(f"container {show} is not running ({c.state}): start it first")
    run_id, root = c.labels.get("cnirun.id", ""), c.labels.get("cnirun.state", "")
    if run_id and root and c.labels.get("cnirun.role") == "workload":
        path = os.path.join(root, run_id)
        meta = read_meta(os.path.join(path, "meta.json"))
        if meta is None:
            raise ArgumentError(f"container {show} is a cnirun run whose state {path} is gone: recreate it")
        netns = ""
        if c.running:
            same = meta.netns and meta.netns_id and identity(meta.netns) == meta.netns_id
            netns = meta.netns if same else f"/proc/{c.pid}/ns/net"
        return Target(engine, c, cni_for(meta), meta.id, netns, "run", path)
    mode = c.network_mode
    if mode == "host":
        raise ArgumentError(
            f"container {show} uses the host's network (--network host): cnirun connects only containers "
            "with their own network namespace"
        )
    if mode.startswith("container:") or mode.startswith("ns:"):
        raise ArgumentError(
            f"container {show} shares another network namespace ({mode}): connect the container that owns it"
        )
    record = os.path.join(runs_dir(), c.id)
    meta = read_meta(os.path.join(record, "meta.json"))
    cni = cni_for(meta) if meta is not None else cni_holding(c.id)
    pinned = is_pinned(pin_path(c.id))
    kind = "foreign" if meta is not None and meta.mode == "foreign" else ("hook" if pinned else "foreign")
    netns = pin_path(c.id) if pinned else ""
    return Target(engine, c, cni, c.id, netns, kind, record if meta is not None else None)


def _present_ifnames(t: Target) -> list[str]:
    from ..network.netns import interfaces

    return interfaces(t.container.pid) if t.container.pid > 0 else []


def _locked(t: Target) -> Any:
    """The container's lock (core.lock.container_locked), in the state dir of a run's teardown when it is a run's."""
    from ..core.lock import container_locked

    run_state = os.path.dirname(os.path.dirname(t.state_dir)) if t.kind == "run" and t.state_dir else None
    return container_locked(t.cni_id, state_dir=run_state)


def _still_running(t: Target) -> None:
    """ArgumentError unless the container's run (or record) is in phase "running": attached, no teardown yet.

    Checked under the container's lock (core.lock.container_locked), which
    the teardown of a run or record takes too: a change never adds to what
    that teardown has begun, or is about, to DEL. A container without a
    record yet (hook-mode, foreign) has no such teardown: its hook's poststop
    takes the lock.
    """
    from ..state.runs import read_meta

    if t.state_dir is None:
        return
    meta = read_meta(os.path.join(t.state_dir, "meta.json"))
    if meta is None or meta.phase == "teardown":
        raise ArgumentError(f"container {t.display} has stopped: its run's teardown removes its networks")
    if meta.phase != "running":
        raise ArgumentError(f"container {t.display} is still starting: try again once it runs")


# -- the record for hook-mode and foreign containers ---------------------------------
def _ensure_record(t: Target) -> None:
    """The state dir that hands a hook-mode or foreign container to the watcher (teardown on removal)."""
    from ..core.fsutil import identity
    from ..core.fsutil import TMP_PREFIX
    from ..state.runs import RunMeta, RunState, state_root
    from ..run.caches import cni_env

    if t.kind == "run" or t.state_dir is not None:
        return
    root = state_root()
    root.mkdir(mode=0o755, parents=True, exist_ok=True)
    tmp = root / (TMP_PREFIX + t.cni_id)
    tmp.mkdir(mode=0o755, exist_ok=True)
    st = RunState(tmp)
    st.lock()
    try:
        st.write_meta(RunMeta(
            id=t.cni_id, engine=t.engine, name=t.container.name, workload=t.container.id, netns=t.netns,
            netns_id=identity(t.netns), detached=True, mode=t.kind, cni_env=cni_env(t.cni), phase="running",
        ))
        os.rename(tmp, root / t.cni_id)
    finally:
        st.unlock()
    t.state_dir = str(root / t.cni_id)
    from ..state.containers import remember
    from ..run.watch import ensure_watcher

    remember(t.state_dir, t.engine, t.container)

    ensure_watcher(root)


def read_live(state_dir: Path | str) -> dict[str, Any]:
    """live.json: {"networks": [{"network", "ifname", "capability_args", "args"}], "ports": [...] | absent}."""
    try:
        with open(os.path.join(state_dir, LIVE_FILE), "rb") as f:
            obj = json.loads(f.read())
    except (OSError, ValueError):
        return {}
    return obj if isinstance(obj, dict) else {}


def _write_live(t: Target, change: Any) -> None:
    """Record a change for the hook's re-attach after a restart (hook-mode containers only need it)."""
    from ..core.fsutil import atomic_write

    if t.kind != "hook" or t.state_dir is None:
        return
    live = read_live(t.state_dir)
    change(live)
    atomic_write(os.path.join(t.state_dir, LIVE_FILE), json.dumps(live).encode(), 0o600, fsync=False)


# -- operations ---------------------------------------------------------------------------
def connect(ref: str, network: str, ip: str = "", mac: str = "", aliases: list[str] | None = None,
            ingress_rate: Any = None, egress_rate: Any = None, ip6: str = "") -> Any:
    """`cnirun network connect`: lifecycle.connect of one more network; returns the Attachment.

    `ip6`: a static IPv6 address on a dual-stack network (--ip6).

    `ingress_rate`/`egress_rate`: network.rates.Rate limits on this attachment (its chain must take bandwidth).
    """
    from ..network import lifecycle
    from ..network.network_options import options_for
    from ..network.netns import check_own_netns, pin_netns, unpin_netns
    from ..core.oci_state import HookError
    from ..network.options import ContainerNetworkSpec, parse_hostname, parse_ip, parse_ip6, parse_mac

    for a in aliases or []:
        parse_hostname(a, "alias")
    t = target(ref)
    net = t.cni.network(network)
    spec = ContainerNetworkSpec(networks=[net.name], ports=[], ips={net.name: parse_ip(ip)} if ip else {},
                                mac=parse_mac(mac) if mac else "", ingress_rate=ingress_rate,
                                egress_rate=egress_rate, ips6={net.name: parse_ip6(ip6)} if ip6 else {},
                                # DNS on the network (cnirun.dns): the container's name, and --alias there only
                                aliases={net.name: [n for n in [t.container.name, *(aliases or [])] if n]})
    opts = options_for(spec, [net], t.cni, t.cni_id)[0]
    with _locked(t):
        _still_running(t)
        _same_policy(t, net, opts)
        pinned_here = False
        if not t.netns:  # a foreign container: pin its netns as the hook does, after the hook's checks
            try:
                check_own_netns(t.container.pid, t.cni_id, "")
            except HookError as e:
                raise ArgumentError(str(e).replace("start it with --network none", "connect another container"))
            t.netns = pin_netns(t.container.pid, t.cni_id)
            pinned_here = True
        ours = _our_resolvers(t)
        try:
            att = lifecycle.connect(t.cni, net, t.cni_id, t.netns, opts, _present_ifnames(t))
        except BaseException:
            if pinned_here:
                unpin_netns(t.cni_id)
            raise
        _follow_dns(t, ours)
        try:
            _ensure_record(t)
        except BaseException:
            _undo_connect(t, att)
            raise
        _write_live(t, lambda live: live.setdefault("networks", []).append(
            {"network": net.name, "ifname": att.ifname, "capability_args": opts.capability_args,
             "args": opts.args, "names": opts.names}))
        if t.kind == "hook":  # the hook asks for the same address and MAC again after a restart
            from ..network.files import remember_addresses

            remember_addresses(t.cni_id, {net.name: att.had()})
    return att


def _same_policy(t: Target, net: Any, opts: Any) -> None:
    """The container's firewall policy goes to the new network too (else it would be a way round it)."""
    from ..network.lifecycle import policy
    from ..network.network_options import declares
    from ..network.policies import CAPABILITY

    value = policy(t.cni, t.cni_id)
    if value is None:
        return
    if not declares(net, CAPABILITY):
        raise ArgumentError(
            f"container {t.display} has a firewall policy and network {net.name} has no cnirun-policy plugin "
            "to apply it there: connect it to a network that has one (the default and `cnirun network create` "
            "networks do), or remove the policy first (cnirun update --ingress-allow none --egress-allow none)"
        )
    opts.capability_args[CAPABILITY] = value


def _our_resolvers(t: Target) -> set[str]:
    """The nameservers cnirun may have put in the container's resolv.conf for the networks it is on now."""
    from ..dns.resolver import resolvers
    from ..dns.view import VIEW_ADDRESS
    from ..network.lifecycle import cached_attachments

    return {VIEW_ADDRESS} | {r for a in cached_attachments(t.cni, t.cni_id) for r in resolvers(a.network_name)}


def _follow_dns(t: Target, ours: set[str]) -> None:
    """Point the running container's resolv.conf at what its networks offer now (cnirun.dns).

    Only cnirun's own nameserver lines change (network.files.follow_nameservers).
    """
    from ..dns.resolver import resolvers
    from ..dns.view import nameservers
    from ..network.files import follow_nameservers
    from ..network.lifecycle import cached_attachments

    if t.container.pid <= 0:
        return
    now = [a.network_name for a in cached_attachments(t.cni, t.cni_id)]
    ours = ours | {r for n in now for r in resolvers(n)}
    follow_nameservers(t.container.pid, ours, lambda: nameservers(t.cni_id, now))


def _undo_connect(t: Target, att: Any) -> None:
    from ..network.lifecycle import disconnect

    disconnect(t.cni, att.network, t.cni_id, t.netns)


def disconnect(ref: str, network: str, force: bool = False) -> list[str]:
    """`cnirun network disconnect`; force: also for a stopped (or, by ID, removed) container."""
    from ..network import lifecycle

    t = target(ref, running=not force)
    with _locked(t):
        _still_running(t)
        ours = _our_resolvers(t)
        problems = lifecycle.disconnect(t.cni, network, t.cni_id, t.netns or None)
        _follow_dns(t, ours)
        _write_live(t, lambda live: live.update(
            networks=[n for n in live.get("networks") or [] if n.get("network") != network]))
    return problems


def ports(ref: str) -> list[dict[str, Any]]:
    from ..network.lifecycle import published

    t = target(ref, running=False)
    return published(t.cni, t.cni_id)


def change_ports(ref: str, add: list[Any], remove: list[Any]) -> list[dict[str, Any]]:
    """`cnirun port add|rm`: the new set through lifecycle.set_ports; returns it."""
    from ..network.lifecycle import published, set_ports
    from ..network.portlock import reserve
    from ..state.runs import container_display

    t = target(ref)
    with _locked(t):
        _still_running(t)
        current = published(t.cni, t.cni_id)
        key = lambda m: (int(m.get("hostPort", 0)), str(m.get("protocol", "tcp")))  # noqa: E731
        have = {key(m): m for m in current}
        new = list(current)
        for p in remove:
            m = have.get((p.host_port, p.protocol))
            if m is None or int(m.get("containerPort", 0)) != p.container_port or \
                    (p.host_ip and m.get("hostIP", "") != p.host_ip):
                raise ArgumentError(f"container {t.display} does not publish {p}: see cnirun port {t.display}")
            new.remove(m)
        for p in add:
            if (p.host_port, p.protocol) in have:
                raise ArgumentError(
                    f"container {t.display} already publishes host port {p.host_port}/{p.protocol}: "
                    f"`cnirun port rm` it first"
                )
        lock = reserve(t.cni, add, exclude=t.cni_id, display=container_display,
                       hint="pick another host port") if add else None
        try:
            new += [p.to_cni() for p in add]
            set_ports(t.cni, t.cni_id, new)
        finally:
            if lock is not None:
                lock.release()
        _write_live(t, lambda live: live.update(ports=new))
    return new


KEEP: Any = object()  # update_rates, update_policy: leave this direction as it is


def update_rates(ref: str, ingress: Any = KEEP, egress: Any = KEEP) -> tuple[str, Any]:
    """`cnirun update`: new rate limits (network.rates.Rate, None: unlimited, KEEP) through lifecycle.set_bandwidth.

    Returns (network, the bandwidth capability value now in force). Nothing
    runs when the limits are already those asked for.
    """
    from ..network.lifecycle import bandwidth, set_bandwidth
    from ..network.rates import capability, from_capability

    t = target(ref)
    with _locked(t):
        _still_running(t)
        network, current = bandwidth(t.cni, t.cni_id)
        if not network:
            raise ArgumentError(
                f"container {t.display} has no network with the bandwidth plugin (capabilities bandwidth): "
                "connect it to one (the default and `cnirun network create` networks have it)"
            )
        cur_in, cur_eg = from_capability(current)
        value = capability(cur_in if ingress is KEEP else ingress, cur_eg if egress is KEEP else egress)
        if value == (current or None):
            return network, value
        set_bandwidth(t.cni, t.cni_id, value, t.netns)
        if t.kind == "hook":
            _ensure_record(t)  # live.json lives in the record: the hook applies it again after a restart
        _write_live(t, lambda live: live.update(bandwidth=value))
    return network, value


def update_policy(ref: str, ingress: Any = KEEP, egress: Any = KEEP) -> tuple[list[str], Any]:
    """`cnirun update --ingress-allow/--egress-allow`: the new rules of each direction (network.policies
    parse_allow: a list, None: no policy, KEEP) through lifecycle.set_policy.

    Returns (the networks changed, the policy now in force). Nothing runs when
    it is already the one asked for.
    """
    from ..network.lifecycle import policy, set_policy
    from ..network.policies import capability

    t = target(ref)
    with _locked(t):
        _still_running(t)
        current = policy(t.cni, t.cni_id) or {}
        value = capability(current.get("ingress") if ingress is KEEP else ingress,
                           current.get("egress") if egress is KEEP else egress)
        if value == (current or None):
            return [], value
        changed = set_policy(t.cni, t.cni_id, value, t.netns)
        if t.kind == "hook":
            _ensure_record(t)  # live.json lives in the record: the hook applies it again after a restart
        _write_live(t, lambda live: live.update(policy=value))
    return changed, value


def format_port(m: dict[str, Any]) -> str:
    """`docker port`'s line: 80/tcp -> 127.0.0.1:18080."""
    ip = str(m.get("hostIP") or "0.0.0.0")
    host = f"[{ip}]" if ":" in ip else ip
    return f"{m.get('containerPort')}/{m.get('protocol', 'tcp')} -> {host}:{m.get('hostPort')}"
