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

What ADD, DEL and CHECK do: cnirun.network.policy_plugin (cnirun's runtime
runs those callbacks in its own process; other runtimes run this program).
"""
from __future__ import annotations

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

from ..cni.skel import plugin_main
from ..network.policy_plugin import ERR_POLICY_MISSING, cmd_add, cmd_check, cmd_del

ABOUT = "CNI cnirun-policy plugin (cnirun): per-container firewall policies in the container's netns"
__all__ = ["ABOUT", "ERR_POLICY_MISSING", "cmd_add", "cmd_check", "cmd_del", "main"]


def main(**streams: Any) -> int:
    """Run one CNI operation; `streams`: plugin_main's environ, stdin, stdout, stderr (default: the process's)."""
    return plugin_main(cmd_add, cmd_check, cmd_del, about=ABOUT, **streams)


if __name__ == "__main__":
    sys.exit(main())
