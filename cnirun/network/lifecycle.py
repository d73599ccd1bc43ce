"""The attachment lifecycle: the one path every entry point takes to attach and detach a container.

    spec -> network_options.options_for -> (netns holder: the caller's) -> attach: ADD eth0,
    eth1, ... in order, names on each network's resolver, the container's own
    resolver when it is on several, undo on failure -> (hosts/resolv: the caller's) ->
    ... live: reattach into a new netns ... -> detach: DEL from the cache,
    leftover cleanup, hosts of other runs, netns pin -> (state removal: the
    caller's)

`cnirun run` in every mode, `cnirun exec`, the OCI hook, the watcher,
`cnirun gc` and compose all come through here; none of them runs a DEL or
builds run options of its own. Each ADD records its intent in the result
cache before any plugin runs (runtime.CNI.add), so `detach` can always finish
what a killed process started. A container's lifecycle steps are serialised
by its lock (core.lock.container_locked, which says who takes it).
"""
from __future__ import annotations

import os

from ..cni import cache as cnicache
from ..cni.config import BANDWIDTH_CAPABILITY, PORT_CAPABILITY, NetworkConfigList
from ..core.errors import ArgumentError, CacheError, CNIError
from ..cni import runtime
from ..cni.policy_record import PLUGIN_TYPE
from ..cni.runtime import CNI
from ..cni.runtime_conf import RuntimeConf
from .attachment import Attachment
from .network_options import NetworkOptions, declares, keep_addresses, pinned_ranges

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def _policy_in_process(command: str, args: Any) -> bytes:
    from .policy_plugin import run  # only when a policy is there: its code is not on the hook's path otherwise

    return run(command, args)


# cnirun-policy's callbacks run in this process when cnirun's runtime reaches its own launcher (a live
# policy update: one nft transaction instead of two Python starts); other runtimes start the program.
runtime.IN_PROCESS.setdefault(PLUGIN_TYPE, _policy_in_process)

def ifname_for(index: int) -> str:
    return f"eth{index}"


def _add(
    cni: CNI, net: NetworkConfigList, rt: RuntimeConf, opts: NetworkOptions, notes: list[str] | None
) -> dict[str, Any]:
    """cni.add; when it fails and `opts` has a fallback (keep_addresses), once more with that, noted."""
    pinned = opts.pinned()
    try:
        # An address pinned outside the network's ranges (compose's ip_range) is given a range of its own.
        return cni.add((pinned_ranges(net, pinned) if pinned else None) or net, rt)
    except CNIError as e:
        if opts.fallback is None:
            raise
        if notes is not None:
            notes.append(f"network {net.name}: the address or MAC it had could not be kept ({e}): new ones")
        rt.args, rt.capability_args = list(opts.fallback.args), dict(opts.fallback.capability_args)
        return cni.add(net, rt)


# -- attach ----------------------------------------------------------------------------
def attach(
    cni: CNI,
    networks: list[NetworkConfigList],
    container_id: str,
    netns: str,
    options: list[NetworkOptions] | None = None,
    notes: list[str] | None = None,
) -> list[Attachment]:
    """ADD each network as eth0, eth1, ...; on any failure DEL those done, then raise.

    An option's fallback (keep_addresses) is used when its ADD fails; `notes` gets a line then.
    """
    done: list[Attachment] = []
    try:
        for i, net in enumerate(networks):
            opts = options[i] if options and i < len(options) else NetworkOptions()
            rt = RuntimeConf(
                container_id=container_id,
                netns=netns,
                ifname=ifname_for(i),
                args=list(opts.args),
                capability_args=dict(opts.capability_args),
            )
            result = _add(cni, net, rt, opts, notes)
            done.append(Attachment(net.name, rt.ifname, result))
            _publish_names(cni, net, container_id, result, opts.names, notes)
        if len(done) > 1:
            _sync_resolver(container_id, [a.network for a in done], netns)
        _forward_ports(cni)
    except BaseException:
        _undo(cni, container_id, netns, done)
        raise
    return done


def _forward_ports(cni: CNI) -> None:
    """Inside a user's namespaces, slirp4netns forwards the published ports from the host (network.rootless)."""
    if os.environ.get("CNIRUN_SLIRP_SOCKET"):
        from .rootless import forward_ports

        forward_ports(cni.cache_dir)


def _publish_names(
    cni: CNI, net: NetworkConfigList, container_id: str, result: dict[str, Any], names: list[str] | None,
    notes: list[str] | None = None,
) -> None:
    """The container's names on the network's resolver (cnirun.dns; started on demand), and the firewall
    policies naming them (policy_follow). None: keep its names."""
    from ..dns.names import register
    from .policy_follow import after, before

    old = before(net.name, container_id)
    register(net, container_id, result, names, cni.cache_dir)
    after(net.name, container_id, old, notes)


def _drop_names(network: str, container_id: str) -> None:
    """Drop the container's names from the network's resolver (cnirun.dns), and from the policies naming them."""
    from ..dns.names import unregister
    from .policy_follow import after, before

    old = before(network, container_id)
    unregister(network, container_id)
    after(network, container_id, old)


def _sync_resolver(container_id: str, networks: list[str], netns: str) -> list[str]:
    """The container's own resolver when it is on several networks with DNS (cnirun.dns); its nameservers."""
    from ..dns.view import sync_view

    return sync_view(container_id, networks, netns)


def _stop_resolver(container_id: str) -> None:
    """Stop the container's own resolver (it lives in the netns and keeps it alive: before any DEL)."""
    from ..dns.view import stop_view

    stop_view(container_id)


def _undo(cni: CNI, container_id: str, netns: str, done: list[Attachment]) -> None:
    """DEL what an attach that failed part-way did, last first; the original error matters more."""
    _stop_resolver(container_id)
    for att in reversed(done):
        try:
            cni.delete(att.network, RuntimeConf(container_id=container_id, netns=netns, ifname=att.ifname))
        except CNIError:
            continue  # gc retries from the cache (and drops the names then)
        _drop_names(att.network, container_id)
    try:
        _forward_ports(cni)
    except CNIError:
        pass  # the next ADD, DEL or gc puts the forwards right


def cached_attachments(cni: CNI, container_id: str) -> list[cnicache.CachedAttachment]:
    """Every cached attachment of a container (pending ones too), in interface order."""
    atts = cnicache.list_attachments(cni.cache_dir, container_id=container_id)
    return sorted(atts, key=lambda a: (len(a.ifname), a.ifname))


def reattach(
    cni: CNI, container_id: str, netns: str, attachments: list[cnicache.CachedAttachment],
    notes: list[str] | None = None,
) -> list[Attachment]:
    """Attach again, into a new netns, what a container had: same networks, interfaces and options.

    For a container whose netns holder was restarted (dockerd restarted, the
    helper was stopped, a named netns vanished): the old netns is gone, so
    each cached attachment is DELeted (plugins clean up the host side, cnirun
    sweeps what bridge leaves) and ADDed again with its cached config and
    arguments, asking for the addresses and MAC it had (keep_addresses; new
    ones, noted in `notes`, when they cannot be had). Raises like attach(),
    after undoing what it re-added.
    """
    from ..cni.config import conflist_from_bytes
    from ..core.paths import NO_NETNS

    plans: list[tuple[NetworkConfigList, RuntimeConf, NetworkOptions]] = []
    for att in sorted(attachments, key=lambda a: (len(a.ifname), a.ifname)):
        net = conflist_from_bytes(att.config, f"cached config of {att.path}") if att.config else cni.network(
            att.network_name
        )
        opts = NetworkOptions(dict(att.capability_args), [(k, v) for k, v in att.cni_args])
        had = Attachment.from_cache(att).had()
        # Its own reservation is still there (DELeted below): not "taken".
        for note in keep_addresses(cni, net, opts, had, container_id):
            if notes is not None:
                notes.append(note)
        plans.append((net, RuntimeConf(container_id, netns, att.ifname, list(opts.args), dict(opts.capability_args)),
                      opts))
    for net, rt, _ in reversed(plans):
        # Never the old cached path: a /proc/<pid> path may be another process's
        # netns by now. An entry already pointing at the new netns is from an
        # earlier reattach cut short: DEL it there, so its interface goes too.
        try:
            current = cni.cached(net.name, RuntimeConf(container_id=container_id, ifname=rt.ifname))
        except CacheError:
            current = None  # unreadable: DEL copes with it by name
        where = netns if current is not None and current.netns == netns else NO_NETNS
        cni.delete(net.name, RuntimeConf(container_id=container_id, ifname=rt.ifname, netns=where))
    done: list[Attachment] = []
    try:
        for net, rt, opts in plans:
            result = _add(cni, net, rt, opts, notes)
            done.append(Attachment(net.name, rt.ifname, result))
            _publish_names(cni, net, container_id, result, None, notes)  # same names, the new addresses
        if len(done) > 1:
            _sync_resolver(container_id, [a.network for a in done], netns)  # into the new netns
    except BaseException:
        _undo(cni, container_id, netns, done)
        raise
    return done


# -- detach ----------------------------------------------------------------------------
def _usable_netns(path: str) -> bool:
    """Whether a cached netns path may be entered: a /proc/<pid> path may name another process by now."""
    return bool(path) and not path.startswith("/proc/") and os.path.exists(path)


def detach(
    cni: CNI,
    container_id: str,
    netns: str | None = None,
    attachments: list[cnicache.CachedAttachment] | None = None,
) -> list[str]:
    """The one teardown of a container's networks. Returns what could not be undone ('' list: all done).

    0. Drop the container's names from each network's resolver (and the
       policies naming them) before any DEL: it stops resolving at once.
    1. DEL every cached attachment (pending ones included), last interface
       first, from the cache (config, arguments, prevResult). In `netns` when
       given and it still exists (the caller knows it is the container's);
       else in the cached netns when that is a pin or a named netns that
       still exists; else without one (plugins clean the host side).
    2. After a DEL without a netns, remove the rules naming the attachment
       that the bridge plugin cannot find then (leftovers).
    3. Drop the freed addresses from every other run's hosts file: an
       address may soon be another container's.
    4. Drop the container's netns pin (the hook's), unless a DEL failed: a
       retry must still be able to enter the netns.
    Goes on past errors; each failed DEL keeps its cache file for a retry.
    `attachments`: what cached_attachments() returned, when already listed.
    """
    if attachments is None:
        attachments = cached_attachments(cni, container_id)
    _stop_resolver(container_id)
    problems = _del_attachments(cni, container_id, netns, attachments)
    try:
        _forward_ports(cni)
    except CNIError:
        pass  # a forward is not the DEL's: the next ADD, DEL or gc puts the forwards right
    if not problems:
        from .netns import is_pinned, pin_path, unpin_netns

        if is_pinned(pin_path(container_id)) or os.path.lexists(pin_path(container_id)):
            err = unpin_netns(container_id)
            if err:
                problems.append(err)
    return problems


def _del_attachments(
    cni: CNI, container_id: str, netns: str | None, attachments: list[cnicache.CachedAttachment]
) -> list[str]:
    """Steps 0-3 of detach() for `attachments` (DELs last interface first); what could not be undone."""
    from ..core.paths import NO_NETNS

    problems: list[str] = []
    freed: set[str] = set()
    # Names first: a container on its way out stops resolving before its DELs, which each run a chain of
    # plugins. Also when a DEL then fails: only an ADD publishes names again.
    for network in dict.fromkeys(att.network_name for att in attachments):
        _drop_names(network, container_id)
    for att in reversed(attachments):
        if netns:
            where = netns if os.path.exists(netns) else NO_NETNS
        else:
            where = att.netns if _usable_netns(att.netns) else NO_NETNS
        try:
            cni.delete(att.network_name, RuntimeConf(container_id=container_id, netns=where, ifname=att.ifname))
        except CNIError as e:
            problems.append(str(e))
            continue
        freed.update(a.split("/", 1)[0] for a in Attachment.from_cache(att).addresses())
        if where == NO_NETNS:
            from ..cni.leftovers import remove_rules_naming

            problems += remove_rules_naming(att.network_name, container_id)
    if freed and not problems:
        _forget_in_other_runs(container_id, freed)
    return problems


def _forget_in_other_runs(container_id: str, addresses: set[str]) -> None:
    """Drop `addresses` from the hosts file of every other `cnirun run` (compose peers, --add-host)."""
    from ..core.paths import runs_dir

    root = runs_dir()
    try:
        runs = [n for n in os.listdir(root) if not n.startswith(".") and n != container_id]
    except OSError:
        return
    if runs:
        from .files import forget_addresses

        forget_addresses([os.path.join(root, n, "hosts") for n in runs], addresses)


# -- live changes: connect, disconnect, ports ---------------------------------------------
def next_ifname(taken: set[str]) -> str:
    """The first of eth0, eth1, ... not in `taken`."""
    i = 0
    while ifname_for(i) in taken:
        i += 1
    return ifname_for(i)


def connect(
    cni: CNI,
    net: NetworkConfigList,
    container_id: str,
    netns: str,
    options: NetworkOptions | None = None,
    present: list[str] | None = None,
    notes: list[str] | None = None,
) -> Attachment:
    """ADD one more network to a running container, as the next free ethN; undone on failure.

    The same ADD as attach() (intent record first, a failed chain DELs
    itself), for one network. `present`: interface names the netns already
    has (the ADD's failure cleanup DELs its interface name, which must never
    be one it did not create). Call with the container's lock held
    (core.lock.container_locked), which the container's teardown takes too. An
    option's fallback (keep_addresses) is used when its ADD fails; `notes`
    gets a line then.
    """
    atts = cached_attachments(cni, container_id)
    if any(a.network_name == net.name for a in atts):
        raise ArgumentError(
            f"the container is already connected to network {net.name}: disconnect it first, or pick another network"
        )
    ifname = next_ifname({a.ifname for a in atts} | set(present or []))
    opts = options or NetworkOptions()
    rt = RuntimeConf(container_id, netns, ifname, list(opts.args), dict(opts.capability_args))
    att = Attachment(net.name, ifname, _add(cni, net, rt, opts, notes))
    try:
        _publish_names(cni, net, container_id, att.result, opts.names, notes)
        _sync_resolver(container_id, [a.network_name for a in atts] + [net.name], netns)
    except BaseException:
        _undo(cni, container_id, netns, [att])
        raise
    return att


def disconnect(cni: CNI, network: str, container_id: str, netns: str | None) -> list[str]:
    """DEL exactly the container's attachment to `network` (from its cache entry); what could not be undone.

    The others stay as they are. `netns`: the container's, when it runs
    (None: the cached one if it can still be entered, else none). Call with
    the container's lock held.
    """
    every = cached_attachments(cni, container_id)
    atts = [a for a in every if a.network_name == network]
    if not atts:
        raise ArgumentError(f"the container is not connected to network {network}: see cnirun inspect")
    problems = _del_attachments(cni, container_id, netns, atts)
    rest = [a.network_name for a in every if a.network_name != network]
    if netns and os.path.exists(netns):
        try:
            _sync_resolver(container_id, rest, netns)  # fewer networks to answer for, or none of its own
        except CNIError as e:  # the attachment is gone all the same: say so, do not undo it
            _stop_resolver(container_id)
            problems.append(str(e))
    else:
        _stop_resolver(container_id)
    return problems




def port_attachment(cni: CNI, container_id: str) -> cnicache.CachedAttachment | None:
    """The attachment that publishes the container's ports: the one holding them, else the first whose
    chain takes portMappings (options_for's rule: one chain DNATs a host port)."""
    return _capability_attachment(cni, container_id, PORT_CAPABILITY)


def published(cni: CNI, container_id: str) -> list[dict[str, Any]]:
    """The container's port mappings (portMappings capability entries), as cached."""
    out: list[dict[str, Any]] = []
    for a in cached_attachments(cni, container_id):
        out += [m for m in a.capability_args.get(PORT_CAPABILITY) or [] if isinstance(m, dict)]
    return out


def set_ports(cni: CNI, container_id: str, mappings: list[dict[str, Any]]) -> cnicache.CachedAttachment:
    """Make `mappings` the container's published ports, re-running only the portmap plugin(s).

    cni.update.update_capabilities does it (DEL with the cached mappings,
    ADD with the new ones, cached prevResult, cache rewritten), so a later
    DEL or gc removes exactly the current rules. Call with the container's
    lock held and, when ports are added, their claim (portlock.reserve).
    """
    att = port_attachment(cni, container_id)
    if att is None:
        raise ArgumentError(
            "published ports need a network with the portmap plugin (capabilities portMappings); "
            "none of the container's networks has one: connect it to one first"
        )
    from ..cni.update import update_capabilities

    rt = RuntimeConf(container_id=container_id, ifname=att.ifname)
    out = update_capabilities(cni, att.network_name, rt, {PORT_CAPABILITY: mappings})
    try:
        _forward_ports(cni)
    except CNIError:
        # Nothing half-done: the ports the host cannot forward are not published inside either.
        before = (att.capability_args or {}).get(PORT_CAPABILITY) or []
        update_capabilities(cni, att.network_name, RuntimeConf(container_id=container_id, ifname=att.ifname),
                            {PORT_CAPABILITY: before})
        try:
            _forward_ports(cni)
        except CNIError:
            pass  # the next ADD, DEL or gc puts the forwards right
        raise
    return out


def _network_of(cni: CNI, att: cnicache.CachedAttachment) -> NetworkConfigList | None:
    """The conflist an attachment was made with (its cached copy, else the installed one); None if unreadable."""
    from ..cni.config import conflist_from_bytes

    try:
        return conflist_from_bytes(att.config, att.path) if att.config else cni.network(att.network_name)
    except CNIError:
        return None


def _capability_attachment(cni: CNI, container_id: str, capability: str) -> cnicache.CachedAttachment | None:
    """The attachment holding `capability`, else the first whose chain declares it (options_for's rule)."""
    atts = cached_attachments(cni, container_id)
    for a in atts:
        if a.capability_args.get(capability):
            return a
    for a in atts:
        net = _network_of(cni, a)
        if net is not None and declares(net, capability):
            return a
    return None


def bandwidth(cni: CNI, container_id: str) -> tuple[str, Any]:
    """(network, cached `bandwidth` capability value or None) of a container; ('', None) without one."""
    att = _capability_attachment(cni, container_id, BANDWIDTH_CAPABILITY)
    return (att.network_name, att.capability_args.get(BANDWIDTH_CAPABILITY)) if att else ("", None)


def set_bandwidth(
    cni: CNI, container_id: str, value: dict[str, int] | None, netns: str = ""
) -> cnicache.CachedAttachment:
    """Make `value` (rates.capability(); None: no limit) the container's rate limits, live.

    Re-runs only the bandwidth plugin with the cached prevResult
    (cni.update.update_capabilities: intent record first, cache rewritten),
    so the container keeps its address, MAC and connections, and a later DEL,
    gc or reattach applies the current limits. `netns`: the container's
    (default: the cached one). Call with the container's lock held.
    """
    att = _capability_attachment(cni, container_id, BANDWIDTH_CAPABILITY)
    if att is None:
        raise ArgumentError(
            "rate limits need a network with the bandwidth plugin (capabilities bandwidth); none of the "
            "container's networks has one: connect it to one first"
        )
    from ..cni.update import update_capabilities

    rt = RuntimeConf(container_id=container_id, netns=netns, ifname=att.ifname)
    return update_capabilities(cni, att.network_name, rt, {BANDWIDTH_CAPABILITY: value})


def policy(cni: CNI, container_id: str) -> Any:
    """The container's firewall policy (network.policies' capability value), None without one.

    It is the same on every attachment (options_for, set_policy): the first one holding it answers.
    """
    from .policies import CAPABILITY

    for a in cached_attachments(cni, container_id):
        if a.capability_args.get(CAPABILITY) is not None:
            return a.capability_args[CAPABILITY]
    return None


def set_policy(cni: CNI, container_id: str, value: dict[str, Any] | None, netns: str = "") -> list[str]:
    """Make `value` (policies.capability(); None: none) the firewall policy of every attachment, live.

    Re-runs only the cnirun-policy plugin of each (cni.update.update_capabilities:
    intent record first, cached prevResult), so addresses, MACs and the
    connections the new policy allows are kept. Every network must carry the
    plugin for a policy (else one is a way round it): ArgumentError before
    anything changes. When one attachment fails, those already changed get
    their old value back and the error is raised. Returns the networks
    changed. Call with the container's lock held.
    """
    from ..cni.update import update_capabilities
    from .policies import CAPABILITY

    atts = cached_attachments(cni, container_id)
    if not atts:
        raise ArgumentError("the container has no CNI network: connect it to one first")
    if value is not None:
        lacking = [a.network_name for a in atts if not (n := _network_of(cni, a)) or not declares(n, CAPABILITY)]
        if lacking:
            raise ArgumentError(
                f"a firewall policy needs the cnirun-policy plugin on every network of the container; "
                f"{', '.join(lacking)} has none: disconnect it, or add "
                '{"type": "cnirun-policy", "capabilities": {"firewallPolicy": true}} to its chain'
            )
    changed: list[tuple[cnicache.CachedAttachment, Any]] = []
    try:
        for a in atts:
            old = a.capability_args.get(CAPABILITY)
            if old == value:
                continue
            rt = RuntimeConf(container_id=container_id, netns=netns, ifname=a.ifname)
            update_capabilities(cni, a.network_name, rt, {CAPABILITY: value})
            changed.append((a, old))
    except BaseException:
        for a, old in reversed(changed):
            try:
                rt = RuntimeConf(container_id=container_id, netns=netns, ifname=a.ifname)
                update_capabilities(cni, a.network_name, rt, {CAPABILITY: old})
            except CNIError:
                pass  # its intent record stays: gc or the next change finishes it
        raise
    return [a.network_name for a, _ in changed]


# -- gc ----------------------------------------------------------------------------------
def finish_changes(cni: CNI, container_id: str) -> list[str] | None:
    """For `cnirun gc`: finish the live port or rate changes of a running container that a kill cut short.

    Their intent record holds the arguments they were making (cni.update.update_capabilities);
    re-running the change to them leaves exactly those rules (none of portmap's second identity).
    None when the container is busy (its lock is held: its own change or teardown finishes it);
    else what could not be finished.
    """
    from ..cni.update import LIVE_CAPABILITIES, update_capabilities
    from ..core.lock import container_locked

    problems: list[str] = []
    with container_locked(container_id, blocking=False) as lock:
        if not lock.held:
            return None
        for att in cached_attachments(cni, container_id):
            if att.pending is None or att.pending.get("update") != 1:
                continue
            again = {k: v for k, v in att.capability_args.items() if k in LIVE_CAPABILITIES}
            try:
                update_capabilities(cni, att.network_name, RuntimeConf(container_id, "", att.ifname), again)
            except CNIError as e:
                problems.append(f"{att.network_name}/{att.ifname}: {e}")
    return problems


def reclaim(cni: CNI, container_id: str) -> list[str] | None:
    """For `cnirun gc`: detach a container whose own teardown never ran (poststop skipped, process killed).

    None when the container is busy (a start or a teardown holds its lock:
    leave it to them); else what could not be undone.
    """
    from ..core.lock import container_locked

    with container_locked(container_id, blocking=False) as lock:
        return detach(cni, container_id) if lock.held else None
