"""At a restart, what the live verbs changed on a running container, applied again after the labels' attach.

`cnirun network connect`, `cnirun port` and `cnirun update` record what
they changed in <state dir>/containers/<id>/live.json (cnirun.live.verbs:
the labels cannot change on a running container). The createRuntime attach
(and the Docker shim's early attach) reads it after the label networks are
up: networks connected again on the addresses and MAC they had, ports
published again, rates set again. What cannot come back is reported in the
hook log, never a reason to fail the start.
"""
from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ..cni.runtime import CNI
    from ..core.oci_state import OCIState
    from ..network.attachment import Attachment


def _live_record(container_id: str) -> dict[str, Any]:
    """What cnirun.live.verbs recorded for the container (paths.live_record); {} without one."""
    from ..core.paths import live_record

    try:
        with open(live_record(container_id), "rb") as f:
            from ..core import jsonfast as json

            live = json.loads(f.read())
    except (OSError, ValueError):
        return {}
    return live if isinstance(live, dict) else {}


def live_networks(cni: CNI, container_id: str) -> list[Any]:
    """The networks `cnirun network connect` added to the container (reapply_live connects them again)."""
    from ..core.errors import CNIError

    out = []
    for entry in _live_record(container_id).get("networks") or []:
        try:
            out.append(cni.network(str(entry.get("network"))))
        except (CNIError, AttributeError):
            continue  # reapply_live reports it
    return out


def reapply_live(
    cni: CNI, state: OCIState, atts: list[Attachment], present: list[str] | None = None, notes: list[str] | None = None
) -> str:
    """After a restart: connect again what `cnirun network connect` added, publish what `cnirun port` set.

    Appends to `atts`; returns what went wrong ('' when done or nothing to
    do): the label networks are up, so a network that cannot come back (its
    address taken, its netconf gone) is reported in the log, never a reason
    to fail the start. `present`: the namespace's interfaces when the
    container has no process yet (read from /proc/<pid> otherwise). Each
    network is asked for the addresses and MAC it had (as the labels'
    attach does; `notes`).
    """
    live = _live_record(state.id)
    if not live:
        return ""
    problems = _connect_again(cni, state, live, atts, present, notes)
    if isinstance(live.get("ports"), list):
        problems += _publish_again(cni, state, live["ports"])
    # What `cnirun update` set instead of the labels' rates and firewall policy (a non-dict: it removed them).
    from ..network.lifecycle import set_bandwidth, set_policy

    for key, what, setter in (("bandwidth", "rates", set_bandwidth), ("policy", "firewall policy", set_policy)):
        if key in live:
            problems += _set_again(cni, state, what, setter, live[key])
    return "; ".join(problems)


def _connect_again(
    cni: CNI, state: OCIState, live: dict[str, Any], atts: list[Attachment], present: list[str] | None,
    notes: list[str] | None,
) -> list[str]:
    """ADD the recorded connected networks again, each on the addresses and MAC it had where it can."""
    from ..core.errors import CNIError
    from ..network.files import saved_addresses
    from ..network.lifecycle import connect
    from ..network.network_options import NetworkOptions, keep_addresses
    from ..network.netns import interfaces, pin_path

    problems: list[str] = []
    saved = saved_addresses(state.id) if live.get("networks") else {}
    for entry in live.get("networks") or []:
        try:
            net = cni.network(str(entry.get("network")))
            opts = NetworkOptions(dict(entry.get("capability_args") or {}),
                                  [(str(k), str(v)) for k, v in entry.get("args") or []],
                                  [str(n) for n in entry.get("names") or []])
            if net.name in saved:
                found = keep_addresses(cni, net, opts, saved[net.name], state.id)
                if notes is not None:
                    notes += found
            names = interfaces(state.pid) if present is None else present + [a.ifname for a in atts]
            atts.append(connect(cni, net, state.id, pin_path(state.id), opts, names, notes))
        except CNIError as e:
            problems.append(f"network {entry.get('network')}: {e}")
    return problems


def _publish_again(cni: CNI, state: OCIState, ports: list[Any]) -> list[str]:
    """Publish the ports `cnirun port` set, through the same in-use check as a run's -p."""
    from ..core.errors import CNIError
    from ..network.lifecycle import set_ports
    from ..network.options import PortMapping
    from ..network.portlock import reserve

    try:
        wanted = [PortMapping(int(m["hostPort"]), int(m["containerPort"]), str(m.get("protocol", "tcp")),
                              str(m.get("hostIP", ""))) for m in ports]
        lock = reserve(cni, wanted, exclude=state.id, hint="cnirun port rm it, then add another")
        try:
            set_ports(cni, state.id, [p.to_cni() for p in wanted])
        finally:
            if lock is not None:
                lock.release()
    except (CNIError, KeyError, TypeError, ValueError) as e:
        return [f"ports: {e}"]
    return []


def _set_again(cni: CNI, state: OCIState, what: str, setter: Any, value: Any) -> list[str]:
    """setter(cni, id, value or None, netns): lifecycle.set_bandwidth or set_policy, with what update recorded."""
    from ..core.errors import CNIError
    from ..network.netns import pin_path

    try:
        setter(cni, state.id, value if isinstance(value, dict) else None, pin_path(state.id))
    except CNIError as e:
        return [f"{what}: {e}"]
    return []
