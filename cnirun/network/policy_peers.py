"""A policy's peers as addresses: names through the names cnirun keeps for DNS (cnirun.dns.store).

A peer of a rule on attachment A (of network N) covers:
  {"name": X}      the addresses on N of the containers N's names store answers X for (own name or alias);
                   none while no container there has the name (it may start later)
  {"network": M}   the addresses on M of every container registered on M, and their addresses on N
  {"cidr": C}      C
  {"host": true}   the attachment's gateways (the host's addresses on N)
The names store is the one of CNIRUN_STATE_DIR. sets_for gives the nftables
sets (cnirun.network.policy_rules) of a whole policy; an egress policy
always lets the network's resolver (its gateways' port 53, udp and tcp) be
reached, so names keep working (a container's own resolver on several
networks, 127.0.0.11 in its netns, is reached over lo, which no policy
filters, and forwards to those gateways).
"""
from __future__ import annotations

from .policy_rules import any_elements, set_names, svc_elements

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

DNS_PORT = 53


def _host_cidr(address: str) -> str:
    return address + ("/128" if ":" in address else "/32")


def _registered(network: str, seen: dict[str, Any] | None = None) -> list[tuple[str, list[str], list[str]]]:
    """(container id, addresses, names answered) of each container in `network`'s names store; `seen`:
    what earlier calls of one refresh read (network -> this), so each store is read once."""
    if seen is not None and network in seen:
        return seen[network]
    from ..dns.store import hosts_file, members, read_entry

    out = []
    for cid in members(network):
        _, addrs, _, _, served = read_entry(hosts_file(network, cid))
        out.append((cid, addrs, served))
    if seen is not None:
        seen[network] = out
    return out


def peer_cidrs(peer: dict[str, Any], network: str, gateways: list[str], seen: dict[str, Any] | None = None
               ) -> list[str]:
    """The CIDRs `peer` covers for an attachment to `network` whose gateways are `gateways` (`seen`: see
    _registered)."""
    if peer.get("host"):
        return [_host_cidr(g) for g in gateways]
    if "cidr" in peer:
        return [peer["cidr"]]
    here = _registered(network, seen)
    if "name" in peer:
        name = peer["name"].lower()
        addrs = [a for _, addrs, served in here if name in (s.lower() for s in served) for a in addrs]
    else:
        there = _registered(peer["network"], seen)
        ids = {cid for cid, _, _ in there}
        addrs = [a for _, addrs, _ in there for a in addrs] + [a for cid, addrs, _ in here if cid in ids for a in addrs]
    return sorted({_host_cidr(a) for a in addrs if a})


def sets_for(policy: dict[str, Any], network: str, gateways: list[str], seen: dict[str, Any] | None = None
             ) -> dict[str, list[str]]:
    """Set name -> elements of a canonical policy (cnirun.network.policies.validate); `seen`: see _registered."""
    out: dict[str, list[str]] = {}
    for direction in ("ingress", "egress"):
        if direction not in policy:
            continue
        anywhere: list[str] = []
        services: list[tuple[str, str, int, int]] = []
        for rule in policy[direction]:
            cidrs = peer_cidrs(rule["peer"], network, gateways, seen)
            if not rule.get("ports"):
                anywhere += cidrs
            for p in rule.get("ports") or []:
                services += [(c, p["protocol"], p["port"], p.get("endPort", p["port"])) for c in cidrs]
        if direction == "egress":
            services += [(_host_cidr(g), proto, DNS_PORT, DNS_PORT) for g in gateways for proto in ("udp", "tcp")]
        names = set_names([direction])
        for name, elements in zip(names, (*any_elements(anywhere), *svc_elements(services))):
            out[name] = elements
    return out


def names_of(policy: dict[str, Any]) -> tuple[set[str], set[str]]:
    """(peer names lowercased, peer networks) the policy names: what a refresh looks for."""
    rules = [r for d in ("ingress", "egress") for r in policy.get(d) or []]
    return ({r["peer"]["name"].lower() for r in rules if "name" in r["peer"]},
            {r["peer"]["network"] for r in rules if "network" in r["peer"]})
