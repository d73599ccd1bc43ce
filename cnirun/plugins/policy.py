"""cnirun-policy: a chained CNI plugin that enforces a container's firewall policy (who may talk to it, and to whom it may talk).

Configuration::

    {"type": "cnirun-policy", "capabilities": {"firewallPolicy": true}}

The policy comes as the `firewallPolicy` capability in runtimeConfig (its
schema and the grammar people write it in: cnirun.network.policies). No
policy: ADD passes the prevResult through and DEL and CHECK do nothing, with
no program run (the plugin sits in every chain at the cost of its start).

Where the rules live: in the container's own network namespace, an nftables
table per attachment (cnirun.network.policy_rules). So they go with the
netns, whatever ends the container: nothing of a policy is ever left in the
host's firewall, and a host firewall reload (firewalld, `nft flush
ruleset`, Docker's restarts) cannot remove them. They see every packet the
container sends or receives on that interface, bridged or routed, with no
br_netfilter and no rules per veth on the host. The container cannot change
them without CAP_NET_ADMIN (engines do not grant it by default; a
privileged container could). Kernel sets hold the addresses, so the rule
count stays constant however many containers a peer's name covers.

* ADD (after bridge: it needs the prevResult for the gateways) records the
  attachment (cnirun.network.policy_attachments), then puts the table in
  place in one transaction, replacing an earlier one: a re-ADD with a new
  value (cnirun's live update: DEL, then ADD with the cached prevResult)
  replaces the lists; established connections the new policy allows go on.
* DEL removes the table and the record; repeated, or with the netns gone,
  it succeeds.
* CHECK fails (code 100) when the policy's record, chains or sets are missing.
* A value that is not a policy: error 7, one line, nothing made.
"""
from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

from ..core.errors import INVALID_NETWORK_CONFIG, IO_FAILURE, CNIError
from ..cni.config import FIREWALL_POLICY_CAPABILITY as CAPABILITY
from ..cni.policy_record import record_path
from ..cni.skel import CmdArgs, plugin_main

ABOUT = "CNI cnirun-policy plugin (cnirun): per-container firewall policies in the container's netns"
ERR_POLICY_MISSING = 100


def _policy(args: CmdArgs) -> dict[str, Any] | None:
    """The canonical policy of runtimeConfig; None when there is none."""
    rc = args.netconf.get("runtimeConfig")
    value = rc.get(CAPABILITY) if isinstance(rc, dict) else None
    if value is None or value == {}:
        return None
    from ..core.errors import ArgumentError
    from ..network.policies import validate

    try:
        return validate(value)
    except ArgumentError as e:
        raise CNIError(f"cnirun-policy: {e}", code=INVALID_NETWORK_CONFIG) from None


def _gateways(prev: dict[str, Any]) -> list[str]:
    out = []
    for ip in prev.get("ips") or []:
        gw = ip.get("gateway") if isinstance(ip, dict) else None
        if isinstance(gw, str) and gw and gw not in out:
            out.append(gw)
    return out


def cmd_add(args: CmdArgs) -> dict:
    prev = args.prev_result()
    if prev is None:
        raise CNIError("cnirun-policy must be called as a chained plugin: no prevResult", code=INVALID_NETWORK_CONFIG)
    policy = _policy(args)
    if policy is None:
        return prev
    from ..network.policy_attachments import PolicyError, attach

    try:
        attach(args.name, args.container_id, args.ifname, args.netns, _gateways(prev), policy)
    except PolicyError as e:
        raise CNIError(f"cnirun-policy: {e}", code=IO_FAILURE) from None
    return prev


def cmd_del(args: CmdArgs) -> None:
    # No policy and no record: nothing was made (no program run).
    if _policy_or_none(args) is None and not os.path.exists(record_path(args.name, args.container_id, args.ifname)):
        return None
    from ..network.policy_attachments import PolicyError, detach

    try:
        detach(args.name, args.container_id, args.ifname, args.netns)
    except PolicyError as e:
        raise CNIError(f"cnirun-policy: {e}", code=IO_FAILURE) from None
    return None


def _policy_or_none(args: CmdArgs) -> dict[str, Any] | None:
    """DEL's view: a value that is not a policy made nothing, so there is nothing of it to remove."""
    try:
        return _policy(args)
    except CNIError:
        return None


def cmd_check(args: CmdArgs) -> None:
    if args.prev_result() is None:
        raise CNIError("cnirun-policy CHECK: required prevResult missing", code=INVALID_NETWORK_CONFIG)
    policy = _policy(args)
    if policy is None:
        return None
    from ..network.policy_attachments import missing

    gone = missing(args.name, args.container_id, args.ifname, args.netns, policy)
    if gone:
        raise CNIError(f"cnirun-policy: the firewall policy's {', '.join(gone)} missing in {args.netns}",
                       code=ERR_POLICY_MISSING)
    return None


def main(**streams: Any) -> int:
    """Run one CNI operation; `streams`: plugin_main's environ, stdin, stdout, stderr (default: the process's)."""
    return plugin_main(cmd_add, cmd_check, cmd_del, about=ABOUT, **streams)


if __name__ == "__main__":
    sys.exit(main())
