"""What the cnirun-policy plugin does for ADD, DEL and CHECK, as skel callbacks (cnirun.plugins.policy runs them).

They live in the network layer, beside the records and rules they use, so
that cnirun's own runtime can run them in its process too (run: registered
in cni.runtime.IN_PROCESS by network.lifecycle) instead of starting the
plugin's program: a live `cnirun update --ingress-allow` then costs an nft
transaction, not two Python starts. Other runtimes start the program, which
runs the same callbacks.

* ADD (after bridge: it needs the prevResult for the gateways) records the
  attachment (policy_attachments), then puts the table in place in one
  transaction, replacing an earlier one: cnirun's live update sends only an
  ADD with the new value (cni.update.REPLACED_BY_ADD), so there is no moment
  without a policy; established connections the new policy allows go on.
* DEL removes the table and the record; repeated, or with the netns gone,
  it succeeds.
* CHECK fails (code 100) when the policy's record, chains or sets are missing.
* A value that is not a policy: error 7, one line, nothing made.
"""
from __future__ import annotations

import os

from ..core.errors import INVALID_NETWORK_CONFIG, IO_FAILURE, CNIError
from ..cni.config import FIREWALL_POLICY_CAPABILITY as CAPABILITY
from ..cni.policy_record import record_path

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ..cni.skel import CmdArgs

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


def run(command: str, args: CmdArgs) -> bytes:
    """One call in cnirun's own process (cni.runtime.IN_PROCESS): what the program would print on stdout;
    a failure raises the CNIError it would have printed."""
    from ..core import jsonfast as json

    if command == "ADD":
        return json.dumps(cmd_add(args), separators=(",", ":")).encode()
    if command == "DEL":
        cmd_del(args)
    elif command == "CHECK":
        cmd_check(args)
    else:
        raise CNIError(f"cnirun-policy: {command} is not run in process", code=INVALID_NETWORK_CONFIG)
    return b""
