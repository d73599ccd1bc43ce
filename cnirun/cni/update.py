"""Changing a live attachment's capability args (ports, rate limits, firewall policies): CNI has no UPDATE verb.

What portmap (portMappings) or bandwidth read only at ADD is changed by a DEL
of those plugins with the cached capability args and an ADD with the new
ones, both with the cached final result as prevResult; the interface plugins
never run, so the container keeps its address, MAC and connections. Those
plugins must pass prevResult through (portmap, bandwidth, cnirun-policy do): the cached
result stays. portmap is changed make-before-break (swap_portmap);
cnirun-policy's ADD replaces its table in one transaction, so it gets no DEL
before a new value (REPLACED_BY_ADD).
"""
from __future__ import annotations

from . import cache as cnicache
from . import chains, policy_record
from ..core.errors import ArgumentError, CNIError
from ..core.lock import chain_lock
from .config import BANDWIDTH_CAPABILITY, FIREWALL_POLICY_CAPABILITY, PORT_CAPABILITY
from .invoke import find_plugin, kill_orphaned_adds
from .runtime import parse_result, shadow_id
from .runtime_conf import RuntimeConf, validate_container_id, validate_ifname

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from .config import NetworkConfigList, PluginConf
    from .runtime import CNI

# What update_capabilities changes on a live attachment.
# Plugins whose ADD with a new value replaces what an earlier ADD made in one step: cnirun-policy
# (one nft transaction). A DEL first would leave the container without a policy in between.
REPLACED_BY_ADD = (policy_record.PLUGIN_TYPE,)
LIVE_CAPABILITIES = (PORT_CAPABILITY, BANDWIDTH_CAPABILITY, FIREWALL_POLICY_CAPABILITY)


def update_capabilities(
    cni: CNI, network: str, rt: RuntimeConf, changes: dict[str, Any], plugin_types: tuple[str, ...] = ()
) -> cnicache.CachedAttachment:
    """Re-run, for a cached attachment, only the plugins that declare a capability in `changes`.

    An empty value ([] / {} / None) drops the capability.

    Under the network's lock, exclusively. The intent record comes first: the
    cache entry is rewritten with the new arguments and the pending mark
    {"update": 1} (for an emptied capability it keeps the old value, so that a
    DEL still reaches the plugin), so whatever kills this process, a DEL (gc,
    teardown) removes the old and the new rules alike, the second identity's
    included; a change cut short is finished by the next change of the
    attachment (it runs the same idempotent steps to the recorded arguments).
    On failure the old arguments are put back (DEL new, ADD old) and the
    error raised. Returns the new entry.

    `plugin_types`: also re-run these plugins (with unchanged arguments when
    `changes` is empty): `cnirun network reload` repairs what a firewall
    reload removed this way.
    """
    validate_container_id(rt.container_id)
    validate_ifname(rt.ifname)
    att0 = cni.cached(network, rt)
    net0 = cni.cached_network(att0) if att0 else None
    if net0 is not None:
        chains.ensure(net0, cni.lock_file)  # portmap's ADD may be the first to need them
    # Exclusively: a DEL of the same attachment must not run beside it (rare: a port change).
    with chain_lock(network, cni.lock_file, exclusive=True):
        att, resumed = _changeable(cni, network, rt)
        net = cni.cached_network(att) or cni.network(network)
        plugins = _plugins_to_rerun(net, att, changes, plugin_types, resumed)
        netns = rt.netns or att.netns
        cni.check_netns(netns)
        for p in plugins:
            find_plugin(p.type, cni.plugin_dirs)
        if resumed:  # the plugins of the change cut short may still be running
            kill_orphaned_adds(rt.container_id, rt.ifname)
            kill_orphaned_adds(shadow_id(rt.container_id), rt.ifname)
        args = [(k, v) for k, v in att.cni_args]
        old_caps = dict(att.capability_args)  # a resumed change: the arguments it was going to
        new_caps = {k: v for k, v in {**old_caps, **changes}.items() if v not in (None, [], {})}
        old_rt = RuntimeConf(rt.container_id, netns, rt.ifname, args, old_caps)
        new_rt = RuntimeConf(rt.container_id, netns, rt.ifname, args, new_caps)
        record = _intent(cni, att, len(net.plugins), old_caps, new_caps, changes)
        prev = att.result
        if prev.get("cniVersion") != net.cni_version:
            from .result import convert

            prev = convert(prev, net.cni_version)
        try:
            _rerun(cni, net, plugins, old_rt, new_rt, prev)
        except BaseException:
            try:
                _rerun(cni, net, plugins, new_rt, old_rt, prev)
            except CNIError:
                pass  # the record below still names both sets' plugin: a DEL removes them
            else:
                record.capability_args, record.pending = old_caps, None
                cnicache.write_file(cni.cache_dir, record)
            raise
        record.capability_args, record.pending = new_caps, None
        # No fsync, as ADD's final write: a power loss takes the rules and qdiscs with it.
        cnicache.write_file(cni.cache_dir, record, fsync=False)
    return record


def _changeable(cni: CNI, network: str, rt: RuntimeConf) -> tuple[cnicache.CachedAttachment, bool]:
    """The cached attachment to change (under the lock), and whether it holds a change cut short to finish."""
    att = cni.cached(network, rt)
    if att is None or att.result is None:
        raise ArgumentError(f"container {rt.container_id[:12]} has no attachment to network {network} on {rt.ifname}")
    resumed = att.pending is not None and att.pending.get("update") == 1
    if att.pending is not None and not resumed:
        raise ArgumentError(
            f"the attachment of {rt.container_id[:12]} to {network} is still being set up "
            "(or was cut short: `cnirun gc` finishes it): try again"
        )
    return att, resumed


def _plugins_to_rerun(
    net: NetworkConfigList, att: cnicache.CachedAttachment, changes: dict[str, Any],
    plugin_types: tuple[str, ...], resumed: bool,
) -> list[PluginConf]:
    """The plugins taking a changed capability, or named in `plugin_types`; none: ArgumentError."""
    # A change cut short is finished whatever this one changes: its plugins run again too.
    caps = [*changes, *(k for k in att.capability_args if k in LIVE_CAPABILITIES)] if resumed else list(changes)
    plugins = [p for p in net.plugins if any(k in p.capabilities for k in caps) or p.type in plugin_types]
    if not plugins:
        raise ArgumentError(f"network {net.name} has no plugin that takes {', '.join(sorted(changes) or plugin_types)}")
    return plugins


def _intent(
    cni: CNI, att: cnicache.CachedAttachment, started: int,
    old_caps: dict[str, Any], new_caps: dict[str, Any], changes: dict[str, Any],
) -> cnicache.CachedAttachment:
    """Write the change's intent record: the new arguments, an emptied capability's old value, {"update": 1}."""
    intent = {**new_caps, **{k: old_caps[k] for k in changes if k not in new_caps and k in old_caps}}
    record = cnicache.CachedAttachment(
        network_name=att.network_name, container_id=att.container_id, ifname=att.ifname,
        config=att.config, netns=att.netns, cni_args=att.cni_args, capability_args=intent,
        result=att.result, pending={"started": started, "update": 1},
    )
    cnicache.write_file(cni.cache_dir, record, fsync=False)
    return record


def _rerun(
    cni: CNI, net: NetworkConfigList, plugins: list[PluginConf], old: RuntimeConf, new: RuntimeConf,
    prev: dict[str, Any],
) -> None:
    """DEL `plugins` with `old`'s arguments, ADD them with `new`'s (portmap: swap_portmap; a plugin of
    REPLACED_BY_ADD given a new value: its ADD alone, so there is no moment without either)."""
    for p in reversed(plugins):
        if p.type == "portmap" or (p.type in REPLACED_BY_ADD and _has_value(p, new)):
            continue
        cni.call(net, p, "DEL", old, prev)
    if any(p.type == "bandwidth" for p in plugins):
        # bandwidth's DEL leaves its qdiscs on the host veth; its ADD would fail on them.
        from .bandwidth import clear_host_shaping

        clear_host_shaping(prev, old.capability_args.get(BANDWIDTH_CAPABILITY))
    for p in plugins:
        if p.type == "portmap":
            swap_portmap(cni, net, p, old, new, prev)
        else:
            _add(cni, net, p, new, prev)


def _has_value(p: PluginConf, rt: RuntimeConf) -> bool:
    return any(rt.capability_args.get(k) not in (None, [], {}) for k in p.capabilities)


def _add(cni: CNI, net: NetworkConfigList, p: PluginConf, rt: RuntimeConf, prev: dict[str, Any]) -> None:
    parse_result(cni.call(net, p, "ADD", rt, prev), net.cni_version, p.type, net.name, "ADD")


def swap_portmap(
    cni: CNI, net: NetworkConfigList, p: PluginConf, old: RuntimeConf, new: RuntimeConf, prev: dict[str, Any]
) -> None:
    """Replace portmap's rules for `old`'s mappings by `new`'s with no moment without a rule for a kept port.

    portmap keys its per-container chain (CNI-DN-<hash>) on network name
    and container ID, and its DEL removes all of the chain: a DEL then ADD
    of the same identity refuses connections to every port in between. So
    the new mappings are ADDed first under a second identity
    (shadow_id: its own chain, jumped to beside the first), then the
    container's own identity is DELed and ADDed again with them, then the
    second is DELed. A port in both sets has a DNAT rule at every moment;
    portmap stays the owner of every rule. Every step is idempotent
    (portmap's ADD inserts only missing rules, its DEL of a missing chain
    is a no-op), so running all of them again finishes a change cut short
    anywhere. portmap does nothing for an empty list, DEL included: the
    DELs are given a non-empty one.
    """
    twin = RuntimeConf(shadow_id(new.container_id), new.netns, new.ifname, new.args, new.capability_args)
    wanted = bool(new.capability_args.get(PORT_CAPABILITY))
    if wanted:
        _add(cni, net, p, twin, prev)
    cni.call(net, p, "DEL", new if wanted else old, prev)
    if wanted:
        _add(cni, net, p, new, prev)
        cni.call(net, p, "DEL", twin, prev)
