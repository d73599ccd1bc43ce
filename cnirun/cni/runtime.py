"""The CNI runtime: ADD, CHECK, DEL, GC, STATUS and validation of network lists.

This is cnirun's counterpart of libcni's CNIConfig. One `CNI` object holds the
paths (plugin dirs, netconf dirs, cache dir), the plugin timeout and the lock;
it has no other state, so several may coexist (tests use one per test).
One attachment's arguments are a `RuntimeConf` (runtime_conf.py); changing
a live attachment's ports or rate limits is update.py's.
"""
from __future__ import annotations

import os

from . import cache as cnicache
from . import chains
from . import config as netconf
from . import policy_record
from ..core import jsonfast as json
from ..core import trace
from ..core import version as cniversion
from .config import BANDWIDTH_CAPABILITY, FIREWALL_POLICY_CAPABILITY, NetworkConfigList, PluginConf, bridges_of
from ..core.errors import (
    ArgumentError,
    CacheError,
    CNIError,
    ConfigError,
    NetnsError,
    NetworkNotFound,
    PluginError,
    VersionError,
)
from .invoke import Invocation, PluginInfo, exec_plugin, find_plugin, kill_orphaned_adds, plugin_dirs, probe_version
from ..core.lock import chain_lock
from .runtime_conf import RuntimeConf, validate_container_id, validate_ifname

TYPE_CHECKING = False  # start-up cost: see cnirun.core
if TYPE_CHECKING:
    from typing import Any, Callable, Mapping



SHADOW_SUFFIX = "-portswap"


def shadow_id(container_id: str) -> str:
    """The second identity under which portmap holds the new mappings while a container's ports change (update.py)."""
    return container_id + SHADOW_SUFFIX


def parse_result(raw: bytes, version: str, ptype: str, net: str, command: str) -> dict[str, Any]:
    from .result import Result  # only ADD needs results; keep DEL/GC imports small

    try:
        obj = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise PluginError(ptype, net, command, f"invalid result: not JSON: {raw[:200]!r}", code=6) from None
    if not isinstance(obj, dict):
        raise PluginError(ptype, net, command, "invalid result: not a JSON object", code=6)
    if not obj.get("cniVersion"):
        obj["cniVersion"] = version  # libcni: a result without a version has the config's
    try:
        # Normalised as libcni's Go types marshal it: that is what the next
        # plugin gets as prevResult, what the cache stores and what is printed.
        return Result.from_dict(obj).to_dict()
    except CNIError as e:
        raise PluginError(ptype, net, command, f"invalid result: {e}", code=6) from None


def _host_veth_present(result: dict[str, Any] | None) -> bool:
    """True when the result names a host-side interface besides the bridge and it still exists.

    A veth pair lives and dies as one: its host end present means the
    container end is too, so the plugins' own DEL finds the addresses.
    """
    if not result:
        return False
    ifaces = [i for i in result.get("interfaces") or [] if isinstance(i, dict)]
    host = [str(i.get("name", "")) for i in ifaces if not i.get("sandbox")]
    # bridge lists the bridge first, then the host veth
    return len(host) >= 2 and all(os.path.exists(f"/sys/class/net/{n}") for n in host if n and "/" not in n)


def _bridges(net: NetworkConfigList) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The bridges `net`'s chain plugs into: (those that exist, those its ADD will create).

    bridge's first ADD creates the bridge and gives it the gateway address,
    and two first ADDs race: lock.chain_lock holds a bridge about to be
    created exclusively.
    """
    names = {n for n in bridges_of(net) if "/" not in n and n not in (".", "..")}
    new = tuple(sorted(n for n in names if not os.path.exists("/sys/class/net/" + n)))
    return tuple(sorted(names.difference(new))), new


BANDWIDTH_KEYS = ("ingressRate", "ingressBurst", "egressRate", "egressBurst")


def _bandwidth_limited(conf: dict[str, Any]) -> bool:
    """Whether the bandwidth plugin's stdin `conf` sets a limit (runtimeConfig.bandwidth or a rate key)."""
    rc = conf.get("runtimeConfig")
    return (isinstance(rc, dict) and rc.get(BANDWIDTH_CAPABILITY) is not None) or any(k in conf for k in BANDWIDTH_KEYS)


def _convert(result: dict[str, Any], version: str) -> dict[str, Any]:
    from .result import convert

    return convert(result, version)


# Plugins of cnirun's own that its runtime may run in its own process instead of starting their program
# (when the program found is cnirun's launcher and the call has the process's environment): type ->
# run(command, CmdArgs) -> stdout bytes, raising CNIError. Filled by the layer that holds the plugin's
# code (network.lifecycle registers cnirun-policy's), so that this layer imports none of it.
IN_PROCESS: dict[str, Callable[[str, Any], bytes]] = {}


class CNI:
    """A CNI runtime bound to plugin dirs, netconf dirs and a cache dir.

    Arguments left as None take the environment (CNI_PATH, NETCONFPATH,
    CNI_CACHE_DIR, CNIRUN_PLUGIN_TIMEOUT) and then the defaults.
    """

    def __init__(
        self,
        *,
        plugin_path: str | list[str] | None = None,
        netconf_path: str | None = None,
        cache_dir: str | None = None,
        timeout: float | None = None,
        lock_file: str | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.plugin_dirs = plugin_dirs(plugin_path)
        self.netconf_path = netconf_path
        self.cache_dir = cache_dir or cnicache.default_cache_dir()
        self.timeout = timeout
        self.lock_file = lock_file
        self.environ = environ

    # -- configuration ---------------------------------------------------
    def network(self, name: str) -> NetworkConfigList:
        """A network by name: NETCONFPATH first, then the built-in default."""
        try:
            with trace.span("config load", name):
                return netconf.find_network(name, self.netconf_path)
        except NetworkNotFound:
            from .defaults import builtin_networks

            for net in builtin_networks():
                if net.name == name:
                    return net
            raise NetworkNotFound(
                name, ":".join(netconf.netconf_dirs(self.netconf_path)), [n.name for n in self.networks()]
            ) from None

    def networks_named(self, names: list[str]) -> list[NetworkConfigList]:
        """The networks to attach, in order; `all` alone means every network of NETCONFPATH.

        `all` is what upstream's docker-run.sh and priv-net-run.sh attach:
        every netconf file, in libcni's file order.
        """
        if "all" in names:
            if names != ["all"]:
                raise ArgumentError("--net all attaches every network already: do not name others beside it")
            nets = netconf.all_networks(self.netconf_path)
            if not nets:
                dirs = ":".join(netconf.netconf_dirs(self.netconf_path))
                raise NetworkNotFound("all", dirs, [])
            return nets
        return [self.network(n) for n in names]

    def networks(self) -> list[NetworkConfigList]:
        """Every network: NETCONFPATH's, then built-ins whose name is not taken."""
        from .defaults import builtin_networks

        nets, _errors = netconf.load_all(self.netconf_path)
        names = {n.name for n in nets}
        return nets + [n for n in builtin_networks() if n.name not in names]

    # -- plugin calls ----------------------------------------------------
    def _exec(self, net: NetworkConfigList, plugin: PluginConf, inv: Invocation, conf: dict[str, Any]) -> bytes:
        path = find_plugin(plugin.type, self.plugin_dirs)
        if plugin.type == policy_record.PLUGIN_TYPE:
            # In every chain cnirun makes, and without a policy a pass-through: answered here, with no
            # process (a Python start per ADD, DEL and CHECK of every container), when it is cnirun's own.
            answer = policy_record.answer_without_running(path, inv.command, inv.container_id, inv.ifname, conf,
                                                          self.environ)
            if answer is not None:
                return answer
            run = IN_PROCESS.get(plugin.type)
            if run is not None and self.environ is None and policy_record.is_own_launcher(path):
                return self._in_process(run, net, plugin, inv, conf)
        inv.path = ":".join(self.plugin_dirs)
        return exec_plugin(
            path,
            inv,
            json.dumps(conf, separators=(",", ":")).encode(),
            plugin_type=plugin.type,
            network=net.name,
            timeout=self.timeout,
            environ=self.environ,
        )

    def _in_process(self, run: Callable[[str, Any], bytes], net: NetworkConfigList, plugin: PluginConf,
                    inv: Invocation, conf: dict[str, Any]) -> bytes:
        """A plugin of cnirun's own run in this process (IN_PROCESS): what its program would print; its
        failure as the program's would be reported."""
        from ..core import trace
        from .skel import CmdArgs

        stdin = json.dumps(conf, separators=(",", ":")).encode()
        args = CmdArgs(inv.container_id, inv.netns, inv.ifname, inv.args, ":".join(self.plugin_dirs), stdin, conf,
                       inv.command)
        t0 = trace.now()
        try:
            return run(inv.command, args)
        except CNIError as e:
            raise PluginError(plugin.type, net.name, inv.command, e.msg, e.code, e.details) from None
        finally:
            if trace.ON:
                trace.event(f"plugin {inv.command}", trace.now() - t0, f"{plugin.type} ({net.name}, in process)")

    @staticmethod
    def build_conf(
        net: NetworkConfigList,
        plugin: PluginConf,
        rt: RuntimeConf | None,
        prev_result: dict[str, Any] | None,
    ) -> dict[str, Any]:
        """A plugin's stdin: its object plus name, cniVersion, runtimeConfig, prevResult."""
        conf = dict(plugin.raw)
        conf["name"] = net.name
        conf["cniVersion"] = net.cni_version
        ipam = conf.get("ipam")
        if isinstance(ipam, dict) and ipam.get("type") == "host-local" and not ipam.get("dataDir"):
            from ..core.paths import HOST_LOCAL_DATA_DIR, host_local_data_dir

            # A user's reservations are theirs, whatever network file names no dataDir (the shipped one).
            data_dir = host_local_data_dir()
            if data_dir != HOST_LOCAL_DATA_DIR:
                conf["ipam"] = {**ipam, "dataDir": data_dir}
        if rt is not None:
            # Only what the plugin asked for AND the runtime supplied (libcni's rule).
            rc = {k: rt.capability_args[k] for k in plugin.capabilities if k in rt.capability_args}
            if rc.get("portMappings") and os.environ.get("CNIRUN_SLIRP_SOCKET"):
                # Inside a user's rootless netns, slirp4netns binds each port's hostIP on the host and
                # delivers to tap0's own address: the plugins match the port on any local address.
                rc["portMappings"] = [{k: v for k, v in m.items() if k != "hostIP"} if isinstance(m, dict) else m
                                      for m in rc["portMappings"]]
            if rc:
                conf["runtimeConfig"] = rc
        if prev_result is not None:
            conf["prevResult"] = prev_result
        return conf

    def call(
        self, net: NetworkConfigList, plugin: PluginConf, command: str, rt: RuntimeConf, prev: dict[str, Any] | None
    ) -> bytes:
        """Run one plugin of `net` for `command` on the attachment `rt`, with `prev` as prevResult; its stdout."""
        return self._exec(net, plugin, self._inv(command, rt), self.build_conf(net, plugin, rt, prev))

    def _inv(self, command: str, rt: RuntimeConf) -> Invocation:
        return Invocation(
            command=command, container_id=rt.container_id, netns=rt.netns, ifname=rt.ifname, args=rt.cni_args()
        )

    def check_netns(self, netns: str) -> None:
        if not netns:
            raise NetnsError("missing network namespace path: ADD and CHECK need one")
        if not os.path.exists(netns):
            raise NetnsError(f"network namespace {netns} does not exist: pass the path of a live netns")

    # -- ADD ---------------------------------------------------------------
    def add(self, net: NetworkConfigList, rt: RuntimeConf) -> dict[str, Any]:
        """ADD the chain; on failure DEL what was done, then raise. Returns the final result."""
        validate_container_id(rt.container_id)
        netconf.validate_name(net.name, net.source)
        validate_ifname(rt.ifname)
        self.check_netns(rt.netns)
        cnicache.check_writable(self.cache_dir)
        # Find every plugin before running any: a missing one fails with nothing done.
        for p in net.plugins:
            find_plugin(p.type, self.plugin_dirs)
        try:
            return self._add_chain(net, rt)
        except PluginError as e:
            # Shared chains flushed behind our back (our markers lie), and two
            # plugins raced to recreate them: make them again, retry once.
            if "Chain already exists" not in str(e) or not chains.forget(net, self.lock_file):
                raise
        return self._add_chain(net, rt)

    def _add_chain(self, net: NetworkConfigList, rt: RuntimeConf) -> dict[str, Any]:
        chains.ensure(net, self.lock_file)
        links, new_links = _bridges(net)
        with chain_lock(net.name, self.lock_file, links=links, new_links=new_links):
            # An ADD over an existing attachment would fail in the plugins (the
            # address is taken, the veth exists), and the undo below would then
            # DEL the attachment that was there and forget its cache entry:
            # refused before anything runs. A cut-short ADD's record must be
            # DELed (its partial result finds what it made), not overwritten.
            old = self.cached(net.name, rt)
            if old is not None:
                how = "is already attached to" if old.pending is None else "has a cut-short ADD on"
                raise ArgumentError(
                    f"container {rt.container_id[:12]} {how} network {net.name} as {rt.ifname}: "
                    "DEL it first (or use another interface name)"
                )
            prev: dict[str, Any] | None = None
            # The intent record: written before the first plugin runs and
            # again before each next one, so that whatever kills this process
            # part-way, DEL (cnirun gc, the hook's DEL-before-ADD) finds the
            # attachment, the plugins that ran and their partial result.
            record = cnicache.CachedAttachment(
                network_name=net.name,
                container_id=rt.container_id,
                ifname=rt.ifname,
                config=net.bytes,
                netns=rt.netns,
                cni_args=[[k, v] for k, v in rt.args],
                capability_args=rt.capability_args,
            )
            started = 0
            try:
                for p in net.plugins:
                    started += 1
                    record.result, record.pending = prev, {"started": started}
                    with trace.span("cache write", "intent"):
                        cnicache.write_file(self.cache_dir, record, fsync=False)
                    conf = self.build_conf(net, p, rt, prev)
                    out = self._exec(net, p, self._inv("ADD", rt), conf)
                    prev = parse_result(out, net.cni_version, p.type, net.name, "ADD")
                if prev is None:
                    raise ConfigError(f"{net.source}: plugins: the network has no plugins")
                record.result, record.pending = prev, None
                # No fsync, as libcni: it guards against a power loss, which takes
                # the netns, veths and iptables rules with it (cache.write_file).
                with trace.span("cache write", "result"):
                    cnicache.write_file(self.cache_dir, record, fsync=False)
            except BaseException:
                # Every ADD must be followed by a DEL, a failed one included: undo
                # with the partial result so plugins can find what they made.
                self._del_chain(net, rt, prev, best_effort=True)
                cnicache.delete(self.cache_dir, net.name, rt.container_id, rt.ifname)
                raise
        return prev

    # -- DEL ---------------------------------------------------------------
    def _del_chain(
        self, net: NetworkConfigList, rt: RuntimeConf, prev: dict[str, Any] | None, best_effort: bool
    ) -> list[CNIError]:
        """DEL the whole chain in reverse, as libcni's DelNetworkList (after a partial ADD too:
        plugins must tolerate a DEL of what they never made, and the reference ones do)."""
        errors: list[CNIError] = []
        if prev is not None and cniversion.at_least(net.cni_version, "0.4.0"):
            # Same version (the usual case): hand it over as cached, without
            # loading the result model on the DEL path.
            if prev.get("cniVersion") != net.cni_version:
                try:
                    prev = _convert(prev, net.cni_version)
                except CNIError:
                    prev = None
        else:
            prev = None  # before 0.4.0 DEL got no prevResult
        for p in reversed(net.plugins):
            conf = self.build_conf(net, p, rt, prev)
            try:
                self._exec(net, p, self._inv("DEL", rt), conf)
            except CNIError as e:
                errors.append(e)
                if not best_effort:
                    break  # libcni stops at the first failing DEL; the cache stays for a retry
        return errors

    def cached(self, network: str, rt: RuntimeConf) -> cnicache.CachedAttachment | None:
        """The cached attachment (network, container ID, ifname), None if there is none."""
        return cnicache.read(self.cache_dir, network, rt.container_id, rt.ifname)

    def delete(self, net: NetworkConfigList | str, rt: RuntimeConf) -> None:
        """DEL, from the cache: its config, result, netns and arguments when they exist.

        `net` may be just the network's name: the cached config is used first,
        so DEL runs the chain that ADD ran even if the netconf file changed or
        is gone. A missing netns, a missing or corrupt cache file are all
        tolerated; a plugin failure is raised and leaves the cache file for a
        retry.
        """
        validate_container_id(rt.container_id)
        # DEL creates nothing shared: the network's lock, shared, is all it needs.
        with chain_lock(net if isinstance(net, str) else net.name, self.lock_file):
            self._delete_locked(net, rt)

    def _delete_locked(self, net: NetworkConfigList | str, rt: RuntimeConf) -> None:
        name = net if isinstance(net, str) else net.name
        try:
            att = self.cached(name, rt)
        except CacheError:
            # libcni: an unreadable cache is removed and DEL goes on without it.
            cnicache.delete(self.cache_dir, name, rt.container_id, rt.ifname)
            att = None
        net_conf = self.cached_network(att) if att else None
        if net_conf is None:
            net_conf = net if isinstance(net, NetworkConfigList) else self.network(name)
        if att is not None:
            rt = RuntimeConf(
                container_id=rt.container_id,
                ifname=rt.ifname,
                netns=rt.netns or att.netns,
                args=rt.args or [(k, v) for k, v in att.cni_args],
                capability_args=rt.capability_args or att.capability_args,
            )
        else:
            rt = RuntimeConf(rt.container_id, rt.netns, rt.ifname, list(rt.args), dict(rt.capability_args))
        if rt.netns and not os.path.exists(rt.netns):
            rt.netns = ""  # gone already: plugins clean up the host side without it
        # Without the netns or the interface, bridge's DEL cannot find the
        # addresses whose masquerade rules it made, and leaves them. When the
        # host end of the cached veth is still there, the plugins can see
        # everything and the (slower) sweep by tag is not needed.
        # (A deleted netns is torn down asynchronously: its veth may linger a moment,
        # so a missing netns always sweeps.)
        sweep = any(p.raw.get("ipMasq") is True for p in net_conf.plugins) and (
            not rt.netns or not _host_veth_present(att.result if att else None)
        )
        if att is not None and att.pending is not None:
            # An ADD that was killed part-way: its last plugin may still be
            # running, and would go on allocating after this DEL.
            kill_orphaned_adds(rt.container_id, rt.ifname)
        errors = self._del_chain(net_conf, rt, att.result if att else None, best_effort=False)
        if att is not None and att.pending is not None and att.pending.get("update") == 1:
            # A port change cut short: its second identity's rules (update.swap_portmap) may be there too.
            twin = RuntimeConf(shadow_id(rt.container_id), rt.netns, rt.ifname, rt.args, rt.capability_args)
            kill_orphaned_adds(twin.container_id, twin.ifname)
            for p in net_conf.plugins:
                if p.type == "portmap" and not errors:
                    try:
                        self.call(net_conf, p, "DEL", twin, att.result)
                    except CNIError as e:
                        errors.append(e)
        if errors:
            raise errors[0]
        if sweep:
            from .leftovers import remove_rules_naming

            remove_rules_naming(net_conf.name, rt.container_id, ("nat",))
        cnicache.delete(self.cache_dir, name, rt.container_id, rt.ifname)

    @staticmethod
    def cached_network(att: cnicache.CachedAttachment) -> NetworkConfigList | None:
        """The chain a cached attachment was ADDed with (None: no config cached, or unreadable)."""
        if not att.config:
            return None
        try:
            return netconf.conflist_from_bytes(att.config, f"cached config of {att.path}")
        except ConfigError:
            return None

    # -- CHECK -------------------------------------------------------------
    def check(self, net: NetworkConfigList, rt: RuntimeConf) -> None:
        """CHECK the chain in order against the cached result (libcni's rules).

        Below 0.4.0: VersionError. disableCheck: returns at once. No cache:
        no prevResult; an unreadable cache: CacheError.

        The bandwidth plugin is not run for an attachment without a limit
        (no `bandwidth` in its runtimeConfig, no rate in its config): it has
        nothing to check then, and the reference plugin (1.1.x) dereferences
        the missing limit and panics, so CHECK of every default chain, which
        carries it unlimited, would fail. With a limit it runs and compares
        the qdiscs: the caller's `bandwidth` capability arg, else the
        attachment's cached one (what ADD or `cnirun update` last applied).
        cnirun-policy, likewise, checks the caller's `firewallPolicy`, else
        the cached one: its table, chains and sets in the netns.
        """
        validate_container_id(rt.container_id)
        validate_ifname(rt.ifname)
        if not cniversion.at_least(net.cni_version, "0.4.0"):
            raise VersionError(f'configuration version "{net.cni_version}" does not support the CHECK command')
        if net.disable_check:
            return
        self.check_netns(rt.netns)
        att = self.cached(net.name, rt)  # unreadable cache: CacheError, as libcni
        prev = _convert(att.result, net.cni_version) if att and att.result else None
        cached = {k: att.capability_args[k] for k in (BANDWIDTH_CAPABILITY, FIREWALL_POLICY_CAPABILITY)
                  if att is not None and att.capability_args.get(k) is not None and k not in rt.capability_args}
        if cached:
            rt = RuntimeConf(rt.container_id, rt.netns, rt.ifname, list(rt.args), {**rt.capability_args, **cached})
        with chain_lock(net.name, self.lock_file):
            for p in net.plugins:
                conf = self.build_conf(net, p, rt, prev)
                if p.type == "bandwidth" and not _bandwidth_limited(conf):
                    continue
                self._exec(net, p, self._inv("CHECK", rt), conf)

    # -- GC ----------------------------------------------------------------
    def gc(self, net: NetworkConfigList, valid: list[tuple[str, str]] | None = None) -> list[CNIError]:
        """DEL every cached attachment of `net` not in `valid` (container ID, ifname), then plugin GC.

        Returns the errors met (GC goes on past them, as the spec asks).
        """
        if net.disable_gc:
            return []
        keep = set(valid or [])
        errors: list[CNIError] = []
        # The network's lock, exclusively, for the whole pass: GC never runs beside
        # an ADD (whose intent record it would take for a leftover) or DEL of it.
        with chain_lock(net.name, self.lock_file, exclusive=True):
            for att in cnicache.list_attachments(self.cache_dir, net.name):
                if (att.container_id, att.ifname) in keep:
                    continue
                try:
                    self._delete_locked(net.name, RuntimeConf(container_id=att.container_id, ifname=att.ifname))
                except CNIError as e:
                    errors.append(e)
            if cniversion.at_least(net.cni_version, "1.1.0"):
                attachments = [{"containerID": c, "ifname": i} for c, i in sorted(keep)]
                for p in net.plugins:
                    conf = self.build_conf(net, p, None, None)
                    conf["cni.dev/valid-attachments"] = attachments
                    conf["cni.dev/attachments"] = attachments  # the legacy alias libcni also sends
                    try:
                        self._exec(net, p, Invocation(command="GC"), conf)
                    except CNIError as e:
                        errors.append(e)
        return errors

    # -- STATUS --------------------------------------------------------------
    def status(self, net: NetworkConfigList) -> None:
        """Raise the first plugin's STATUS error; a no-op below 1.1.0 (libcni)."""
        if not cniversion.at_least(net.cni_version, "1.1.0"):
            return
        for p in net.plugins:
            self._exec(net, p, Invocation(command="STATUS"), self.build_conf(net, p, None, None))

    # -- validation ----------------------------------------------------------
    def version(self, plugin_type: str) -> PluginInfo:
        """VERSION-probe a plugin along the plugin dirs."""
        path = find_plugin(plugin_type, self.plugin_dirs)
        return probe_version(path, plugin_type=plugin_type, timeout=self.timeout, environ=self.environ)

    def validate(self, net: NetworkConfigList) -> list[str]:
        """Every plugin exists and speaks the list's version; returns the capabilities offered."""
        caps: set[str] = set()
        for p in net.plugins:
            info = self.version(p.type)
            if not cniversion.plugin_supports(info.supported_versions, net.cni_version):
                raise VersionError(
                    f'plugin type="{p.type}" does not support config version "{net.cni_version}" '
                    f"(it supports {', '.join(info.supported_versions)}): "
                    f"lower cniVersion in {net.source}"
                )
            caps.update(p.capabilities)
        return sorted(caps)
