"""`cnirun network reload`: put back the plugin state a firewall reload or `iptables -F` destroyed.

A firewalld reload (or `iptables -F`, or a tc mistake) removes the rules and
qdiscs plugins made at ADD, while the containers keep running with their
interfaces: published ports stop answering, masquerade and forwarding stop.
For every live attachment (found through the result caches of this shell,
the installed hook and every run's recorded CNI paths, as `cnirun gc` finds
them) this module

1. reads the host state once (iptables-save per table and family, sysfs,
   tc only for shaped attachments) and checks what each policy plugin of the
   cached chain made: portmap's DNAT chain and its jumps, the firewall
   plugin's forward rules (and its same-bridge isolation), bandwidth's
   qdiscs and ifb, cnirun's isolation plugin's bridge port flag, the
   cnirun-policy plugin's nftables table in the container's netns (what
   its CHECK looks at; `nft flush ruleset` there removes it), the bridge
   plugin's masquerade rules, cnirun's own network isolation chains, the
   rules that keep each network's resolver to its network (dns.guard), and
   the resolvers themselves (one that died is started again: cnirun.dns);
2. re-applies only what is missing: policy plugins run again with the
   cached prevResult through cni.update.update_capabilities (DEL + ADD of
   those plugins alone, intent record first), never the interface or IPAM
   plugins, so every interface, address and MAC stays. The bridge plugin's
   masquerade rules cannot be re-made by running bridge again (its IPAM
   would allocate twice): they are re-added as the plugin writes them (same
   chain name and comment), so its DEL still removes them. cnirun's network
   isolation rules are re-added by netstore.isolation.ensure.

Nothing runs when nothing is missing.
"""
from __future__ import annotations

import hashlib
import ipaddress
import os
import subprocess
from typing import Any

from ..cni import cache as cnicache
from ..cni.config import BANDWIDTH_CAPABILITY, FIREWALL_POLICY_CAPABILITY, PORT_CAPABILITY, bridge_of, meta_of
from ..cni.policy_record import PLUGIN_TYPE
from ..core.value import Value

POLICY_PLUGINS = ("portmap", "firewall", "bandwidth", "isolation", PLUGIN_TYPE)
_FAMILY = {4: ("iptables-save", "iptables", "/32", "224.0.0.0/4"), 6: ("ip6tables-save", "ip6tables", "/128", "ff00::/8")}


class Repair(Value):
    """What reload found missing for one attachment and what it did."""

    _fields = ("network", "container_id", "ifname", "missing", "error")
    __match_args__ = _fields

    def __init__(self, network: str, container_id: str, ifname: str, missing: list[str], error: str = "") -> None:
        self.network = network
        self.container_id = container_id
        self.ifname = ifname
        self.missing = missing
        self.error = error


class Report(Value):
    _fields = ("checked", "repairs", "skipped")
    __match_args__ = _fields

    def __init__(self, checked: int = 0, repairs: list[Repair] | None = None, skipped: list[str] | None = None):
        self.checked = checked
        self.repairs = [] if repairs is None else repairs
        self.skipped = [] if skipped is None else skipped


# -- names the reference plugins give their rules (containernetworking/plugins pkg/utils) ----------
def _hash(name: str, cid: str) -> str:
    return hashlib.sha512((name + cid).encode()).hexdigest()


def masq_chain(network: str, cid: str) -> str:
    return ("CNI-" + _hash(network, cid))[:28]


def dnat_chain(network: str, cid: str) -> str:
    return ("CNI-DN-" + _hash(network, cid))[:28]


def comment(network: str, cid: str) -> str:
    return f'name: "{network}" id: "{cid}"'


# -- the host state, read once -----------------------------------------------------------------
class Rules:
    """iptables-save output by (family, table), read on first use."""

    def __init__(self) -> None:
        self._tables: dict[tuple[int, str], list[str]] = {}
        self._qdiscs: dict[str, list[str]] | None = None

    def qdiscs(self, dev: str) -> list[str]:
        """The device's qdiscs (tc, one exec for all devices)."""
        if self._qdiscs is None:
            from ..cni.bandwidth import all_qdiscs

            self._qdiscs = all_qdiscs()
        return self._qdiscs.get(dev, [])

    def lines(self, family: int, table: str) -> list[str]:
        key = (family, table)
        if key not in self._tables:
            save = _FAMILY[family][0]
            try:
                p = subprocess.run([save, "-t", table], capture_output=True, text=True, timeout=60)
                out = p.stdout.splitlines() if p.returncode == 0 else []
            except (OSError, subprocess.TimeoutExpired):
                out = []
            self._tables[key] = out
        return self._tables[key]

    def has(self, family: int, table: str, *words: str, chain: str = "") -> bool:
        """A rule of `chain` (any with '') containing every word."""
        prefix = f"-A {chain} " if chain else "-A "
        return any(ln.startswith(prefix) and all(w in ln for w in words) for ln in self.lines(family, table))

    def chain_exists(self, family: int, table: str, chain: str) -> bool:
        return any(ln.startswith(f":{chain} ") for ln in self.lines(family, table))


def _addresses(result: dict[str, Any]) -> list[ipaddress.IPv4Interface | ipaddress.IPv6Interface]:
    out = []
    for ip in result.get("ips") or []:
        try:
            out.append(ipaddress.ip_interface(str(ip.get("address"))))
        except (ValueError, AttributeError):
            continue
    return out


# -- checks -------------------------------------------------------------------------------------
def missing_state(att: cnicache.CachedAttachment, net: Any, rules: Rules) -> tuple[list[str], list[str], bool]:
    """(plugin types to re-run, descriptions of what is missing, masquerade missing) for one attachment."""
    from ..cni.bandwidth import host_veth, ifb_name, shaping

    name, cid, result = att.network_name, att.container_id, att.result or {}
    addrs = _addresses(result)
    types = {p.type for p in net.plugins}
    rerun: list[str] = []
    what: list[str] = []
    veth = host_veth(result)
    if "portmap" in types and att.capability_args.get(PORT_CAPABILITY):
        chain = dnat_chain(name, cid)
        for fam in sorted({a.version for a in addrs}):
            ok = (rules.chain_exists(fam, "nat", chain) and rules.has(fam, "nat", "-j DNAT", chain=chain)
                  and rules.has(fam, "nat", f"-j {chain}", chain="CNI-HOSTPORT-DNAT")
                  and rules.has(fam, "nat", "-j CNI-HOSTPORT-DNAT", chain="PREROUTING")
                  and rules.has(fam, "nat", "-j CNI-HOSTPORT-DNAT", chain="OUTPUT")
                  and rules.has(fam, "nat", "-j CNI-HOSTPORT-MASQ", chain="POSTROUTING")
                  and rules.has(fam, "nat", "-j MARK", chain="CNI-HOSTPORT-SETMARK"))
            if not ok:
                rerun.append("portmap")
                what.append(f"portmap: DNAT rules of the published ports (IPv{fam})")
                break
    fw = next((p for p in net.plugins if p.type == "firewall"), None)
    if fw is not None and (fw.raw.get("backend") or "iptables") == "iptables":
        for a in addrs:
            fam, host = a.version, str(a.ip) + _FAMILY[a.version][2]
            ok = (rules.has(fam, "filter", f"-s {host} ", "-j ACCEPT", chain="CNI-FORWARD")
                  and rules.has(fam, "filter", f"-d {host} ", "-j ACCEPT", chain="CNI-FORWARD")
                  and rules.has(fam, "filter", "-j CNI-FORWARD", chain="FORWARD"))
            if ok and fw.raw.get("ingressPolicy") == "same-bridge":
                br = bridge_of(net)
                ok = (rules.has(fam, "filter", f"-i {br} ", f"! -o {br} ", chain="CNI-ISOLATION-STAGE-1")
                      and rules.has(fam, "filter", f"-o {br} ", "-j DROP", chain="CNI-ISOLATION-STAGE-2")
                      and rules.has(fam, "filter", "-j CNI-ISOLATION-STAGE-1", chain="FORWARD"))
            if not ok:
                rerun.append("firewall")
                what.append(f"firewall: forward rules of {a.ip}")
                break
    bw = att.capability_args.get(BANDWIDTH_CAPABILITY)
    if "bandwidth" in types and isinstance(bw, dict) and veth:
        tbf, ingress = shaping(veth, rules.qdiscs(veth))
        ok = tbf if bw.get("ingressRate") else True
        if ok and bw.get("egressRate"):
            ifb = ifb_name(name, cid)
            ok = ingress and os.path.exists(f"/sys/class/net/{ifb}") and shaping(ifb, rules.qdiscs(ifb))[0]
        if not ok:
            rerun.append("bandwidth")
            what.append(f"bandwidth: rate limit qdiscs on {veth}")
    policy = att.capability_args.get(FIREWALL_POLICY_CAPABILITY)
    if PLUGIN_TYPE in types and isinstance(policy, dict) and policy:
        # What the plugin's CHECK finds missing (its record, its table, chains and sets in the netns).
        from ..network.policy_attachments import missing

        gone = missing(name, cid, att.ifname, att.netns, policy)
        if gone:
            rerun.append(PLUGIN_TYPE)
            what.append(f"cnirun-policy: the firewall policy's {', '.join(gone)} in {att.netns}")
    if "isolation" in types and veth:
        try:
            with open(f"/sys/class/net/{veth}/brport/isolated") as f:
                isolated = f.read().strip() == "1"
        except OSError:
            isolated = False
        if not isolated:
            rerun.append("isolation")
            what.append(f"isolation: bridge port flag on {veth}")
    masq = False
    br = next((p for p in net.plugins if p.type == "bridge"), None)
    if br is not None and br.raw.get("ipMasq") is True:
        chain = masq_chain(name, cid)
        for a in addrs:
            fam = a.version
            ok = (rules.has(fam, "nat", f"-s {a.ip}{_FAMILY[fam][2]} ", f"-j {chain}", chain="POSTROUTING")
                  and rules.has(fam, "nat", f"-d {a.network} ", "-j ACCEPT", chain=chain)
                  and rules.has(fam, "nat", "-j MASQUERADE", chain=chain))
            if not ok:
                masq = True
                what.append(f"bridge: masquerade rules of {a.ip}")
                break
    return rerun, what, masq


def restore_masquerade(att: cnicache.CachedAttachment) -> None:
    """Re-add the bridge plugin's masquerade rules as it writes them (ip.SetupIPMasq), idempotently."""
    from ..core.errors import CNIError

    name, cid = att.network_name, att.container_id
    chain, text = masq_chain(name, cid), comment(name, cid)
    for a in _addresses(att.result or {}):
        _, tool, host, mcast = _FAMILY[a.version]
        wanted = [
            (chain, ["-d", str(a.network), "-m", "comment", "--comment", text, "-j", "ACCEPT"]),
            (chain, ["!", "-d", mcast, "-m", "comment", "--comment", text, "-j", "MASQUERADE"]),
            ("POSTROUTING", ["-s", f"{a.ip}{host}", "-m", "comment", "--comment", text, "-j", chain]),
        ]
        subprocess.run([tool, "-w", "-t", "nat", "-N", chain], capture_output=True)  # exists: fine
        for ch, rule in wanted:
            if subprocess.run([tool, "-w", "-t", "nat", "-C", ch, *rule], capture_output=True).returncode != 0:
                p = subprocess.run([tool, "-w", "-t", "nat", "-A", ch, *rule], capture_output=True, text=True)
                if p.returncode != 0:
                    raise CNIError(f"{tool} -t nat -A {ch}: {p.stderr.strip()}")


def _network_isolation_missing(net: Any, rules: Rules) -> str:
    """The bridge of a cnirun-made network whose isolation chains (netstore.isolation) are gone, else ''."""
    from ..netstore.isolation import STAGE1, STAGE2

    meta = meta_of(net)
    bridge = meta.get("bridge") if meta.get("isolated") else None
    if not bridge:
        return ""
    for family in (4, 6):
        if family == 6 and not rules.lines(6, "mangle"):
            continue  # no IPv6 filtering on this host: ensure() makes IPv4 rules only
        ok = (rules.has(family, "mangle", f"-i {bridge} ", f"-j {STAGE2}", chain=STAGE1)
              and rules.has(family, "mangle", f"-o {bridge} ", "-j DROP", chain=STAGE2)
              and rules.has(family, "mangle", f"-j {STAGE1}", chain="FORWARD"))
        if not ok:
            return str(bridge)
    return ""


# -- finding live attachments -----------------------------------------------------------------
def _live(att: cnicache.CachedAttachment) -> bool:
    """A finished attachment whose container still runs: its netns is there and so is its host veth."""
    from ..cni.bandwidth import host_veth

    if att.pending is not None or not att.result or not att.netns or not os.path.exists(att.netns):
        return False
    has_host_side = any(isinstance(i, dict) and not i.get("sandbox") for i in att.result.get("interfaces") or [])
    return bool(host_veth(att.result)) if has_host_side else True


# -- reload ----------------------------------------------------------------------------------
def reload(networks: list[str] | None = None, dry_run: bool = False, cnis: list[Any] | None = None,
           progress: Any = None) -> Report:
    """Check every live attachment (of `networks`, default all) and re-apply what is missing.

    progress(total) -> a context manager with step(item) (cli.output.Progress): the CLI's status line
    on a terminal, one step per attachment checked."""
    from ..run.caches import runtimes

    wanted = set(networks or [])
    rules = Rules()
    report = Report()
    isolation_fixed: set[str] = set()
    todo = [(cni, att) for cni in (cnis if cnis is not None else runtimes())
            for att in cnicache.list_attachments(cni.cache_dir)
            if not (wanted and att.network_name not in wanted) and _live(att)]
    with progress(len(todo)) if progress is not None else _NoProgress() as bar:
        for cni, att in todo:
            bar.step(f"{att.network_name} {att.container_id[:12]} {att.ifname}")
            _check_one(cni, att, rules, report, isolation_fixed, dry_run)
    if not dry_run:
        from ..network.policy_follow import repair

        # Peers' address sets a refresh left stale (a kill, a failed nft): refreshed; a failure is reported.
        for error in repair():
            report.repairs.append(Repair("", "", "", ["cnirun-policy: the peers' address sets"], error))
    from ..dns.keeper import revive
    from ..dns.resolver import repair_guards

    # A resolver that died first: starting it puts its guard rules back too.
    for network, error in revive(wanted or None, dry_run):
        report.repairs.append(Repair(network, "", "", ["cnirun: the DNS resolver (dnsmasq), dead"], error))
    for network, error in repair_guards(wanted or None, dry_run):
        report.repairs.append(Repair(network, "", "", ["cnirun: the DNS resolver's guard rules (INPUT)"], error))
    return report


class _NoProgress:
    def __enter__(self) -> "_NoProgress":
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def step(self, item: str) -> None:
        pass


def _check_one(cni: Any, att: cnicache.CachedAttachment, rules: Rules, report: Report, isolation_fixed: set[str],
               dry_run: bool) -> None:
    """Check one live attachment; repair (unless dry_run) what a flush removed."""
    from ..cni.config import conflist_from_bytes
    from ..core.errors import CNIError
    from ..core.lock import container_locked
    from ..cni.runtime_conf import RuntimeConf
    from ..cni.update import update_capabilities

    report.checked += 1
    try:
        net = conflist_from_bytes(att.config, att.path) if att.config else cni.network(att.network_name)
    except CNIError as e:
        report.skipped.append(f"{att.network_name} {att.container_id[:12]}: {e}")
        return
    bridge = _network_isolation_missing(net, rules)
    if bridge and bridge not in isolation_fixed:
        isolation_fixed.add(bridge)
        rep = Repair(net.name, "", "", [f"cnirun: isolation rules of bridge {bridge}"])
        if not dry_run:
            from ..netstore.isolation import ensure

            try:
                ensure(bridge)
            except CNIError as e:
                rep.error = str(e)
        report.repairs.append(rep)
    types, what, masq = missing_state(att, net, rules)
    if not what:
        return
    rep = Repair(att.network_name, att.container_id, att.ifname, what)
    report.repairs.append(rep)
    if dry_run:
        return
    with container_locked(att.container_id, blocking=False) as lock:
        if not lock.held:
            rep.error = "the container is starting or stopping: run reload again"
            return
        try:
            if masq:
                restore_masquerade(att)
            if types:
                rt = RuntimeConf(container_id=att.container_id, netns=att.netns, ifname=att.ifname)
                update_capabilities(cni, att.network_name, rt, {}, plugin_types=tuple(types))
        except CNIError as e:
            rep.error = str(e)
