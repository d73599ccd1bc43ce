"""The attach: what the createRuntime hook and the Docker shim's early attach do for a labelled container.

- What to attach comes from the state's annotations (cnirun.networks, .ports,
  .ip, .mac), parsed only by options.ContainerNetworkSpec.from_labels, which
  validates every value. The CNI container ID is the OCI container ID, never
  a label, so a container cannot name another container's attachments.
- Trust: the labels/annotations, the hostname and the mounts are the
  container's choice. Before anything is done the attach checks that the
  container is in its own new network namespace (netns.check_own_netns:
  not --network host, not container:X, not a namespace pinned for another
  container) and that the interfaces it will create do not exist; ports go
  through portlock's in-use/duplicate check; the hosts update writes only the
  engine's own generated file (network.files). A network whose conflist sets
  "cnirun": {"allowLabels": false} is refused (check_label_policy).
- The container's netns (/proc/<pid>/ns/net) is first bind-mounted at
  <state dir>/netns/<id> and that path is what ADD gets and the cache
  records: the DEL at poststop, after the process died, still enters the
  netns, so every plugin cleans up fully (a DEL with an empty netns leaves
  the bridge plugin's NAT rules behind). `cnirun gc` uses the same pin after
  a crash. The shim's early attach makes a new namespace and pins it instead.
- Before ADD, everything cached for the container is DELeted: a restart goes
  through create again and host-local would refuse a duplicate allocation.
- Time: the engine kills a createRuntime hook after argv.HOOK_TIMEOUT s (hooks.d
  template, the Docker shim). The attach gives up after ATTACH_BUDGET s
  (waits for locks included), then undoes what it did with plugins limited to
  CLEANUP_PLUGIN_TIMEOUT s each; if that too is not over CLEANUP_GRACE s
  later, the hook exits and leaves the rest to `cnirun gc` (Deadline). 90 + 20 < 120.
- Failures: nothing stays allocated; the poststop that may still follow
  finds nothing to undo and succeeds.
"""
from __future__ import annotations

import os
import time

from .log import finish
from ..core.lock import CONTAINER_LOCK_WAIT, container_locked
from ..core.oci_state import HookError, OCIConfig, OCIState, read_config
from ..network.netns import check_free_ifnames, check_own_netns, pin_netns, unpin_netns

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Mapping

    from ..cni.runtime import CNI
    from ..network.attachment import Attachment
    from ..network.network_options import NetworkOptions
    from ..network.options import ContainerNetworkSpec


# -- the budget -------------------------------------------------------------------
ATTACH_BUDGET = 90.0
CLEANUP_GRACE = 20.0
CLEANUP_PLUGIN_TIMEOUT = 2.0


class HookTimeout(HookError):
    """The attach did not finish within the hook's budget (ATTACH_BUDGET)."""


def attach_budget(environ: Mapping[str, str] | None = None) -> float:
    """Seconds the attach may take (CNIRUN_HOOK_BUDGET, never above ATTACH_BUDGET)."""
    env = os.environ if environ is None else environ
    try:
        budget = float(env.get("CNIRUN_HOOK_BUDGET") or ATTACH_BUDGET)
    except ValueError:
        budget = ATTACH_BUDGET
    return min(max(budget, 0.1), ATTACH_BUDGET)


class Deadline:
    """SIGALRM after the budget: the attach stops where it waits and undoes what it did.

    The first alarm raises HookTimeout where the hook is (a lock wait, a
    plugin: invoke kills the plugin on any exception) and shortens every
    later plugin call (the cleanup DELs) to CLEANUP_PLUGIN_TIMEOUT; a second
    one, CLEANUP_GRACE s later, ends the process before the engine's
    HOOK_TIMEOUT: what is left is in the cache for `cnirun gc`. _signal, not
    signal: the signal module imports enum (hook path).
    """

    def __init__(self, cni: CNI, seconds: float, record: dict[str, Any], total: float | None = None) -> None:
        self.cni = cni
        self.seconds = seconds  # what is left of `total` when armed
        self.total = seconds if total is None else total
        self.record = record
        self.fired = False
        self._old: Any = None

    def arm(self) -> None:
        import _signal

        self._old = _signal.signal(_signal.SIGALRM, self._fire)
        _signal.setitimer(_signal.ITIMER_REAL, max(self.seconds, 0.01))

    def disarm(self) -> None:
        import _signal

        _signal.setitimer(_signal.ITIMER_REAL, 0)
        if self._old is not None:
            _signal.signal(_signal.SIGALRM, self._old)
            self._old = None

    def _fire(self, signum: int, frame: Any) -> None:
        import _signal

        if not self.fired:
            from .argv import HOOK_TIMEOUT  # here: a hook that keeps to its budget never loads argv

            self.fired = True
            self.cni.timeout = CLEANUP_PLUGIN_TIMEOUT
            _signal.setitimer(_signal.ITIMER_REAL, CLEANUP_GRACE)
            raise HookTimeout(
                f"attaching took longer than {self.total:g} s (the engine stops hooks after {HOOK_TIMEOUT} s): "
                "a plugin or another CNI operation is slow; retry, or look at cnirun's hook log"
            )
        msg = "cleanup after the timeout did not finish either: `cnirun gc` reclaims what is left"
        self.record.update(outcome="failed", error=msg)
        try:
            os.write(2, f"cnirun: {msg}\n".encode())
            finish(self.record, time.monotonic() - (self.seconds + CLEANUP_GRACE))
        finally:
            os._exit(1)


# -- the attach -------------------------------------------------------------------
class NotEarly(HookError):
    """The Docker shim's early attach cannot serve these networks: the createRuntime hook must.

    Docker's own prestart hook (libnetwork-setkey) sets
    net.ipv6.conf.all.disable_ipv6=1 in the container's namespace, which
    drops every IPv6 address there: an ADD that may run before it (the early
    attach) would lose its IPv6 addresses, one that runs after it (the
    createRuntime hook) keeps them (the bridge plugin enables IPv6 on its
    interface).
    """


def spec_from_state(state: OCIState) -> ContainerNetworkSpec | None:
    from ..network.options import ContainerNetworkSpec

    return ContainerNetworkSpec.from_labels(state.annotations)


def check_label_policy(nets: list[Any]) -> None:
    """Refuse a network whose conflist does not let containers join it through labels/annotations.

    A top-level `"cnirun": {"allowLabels": false}` in the conflist: only
    `cnirun run` (root on the host) attaches containers to it, a label or
    annotation naming it fails the start. Default: allowed.
    """
    from ..cni.config import labels_allowed

    for net in nets:
        if not labels_allowed(net):
            raise HookError(
                f"network {net.name} does not accept containers through labels or annotations "
                f'({net.source} sets "cnirun": {{"allowLabels": false}}): attach with cnirun run'
            )


def attach_container(
    cni: CNI, state: OCIState, spec: ContainerNetworkSpec, config: OCIConfig | None = None, lock_wait: float | None = None,
    on_netns: Callable[[str], None] | None = None, notes: list[str] | None = None,
) -> list[Attachment]:
    """Check the container, DEL anything left from an earlier start, pin the netns, ADD every network.

    Each network is asked for the addresses and MAC the container had there
    at its last start (files.saved_addresses, lifecycle.keep_addresses):
    a restart keeps them; what cannot be kept is noted in `notes` (the log).

    Refuses (HookError) a container that is not in its own new network
    namespace, before anything is done. On failure nothing stays allocated
    and the pin is removed. `config`: the bundle's config.json as read
    (read here when None). `lock_wait`: at most this long for the port lock.
    `on_netns`: the Docker shim's early attach (run_for_shim): the container
    has no process yet; a new namespace is made and pinned here, and
    on_netns(path) is called once everything is checked and the namespace
    exists, before the first ADD (runc may create the container from then on).
    """
    from ..network.lifecycle import ifname_for
    from ..network.portlock import WAIT_SECONDS, reserve

    fresh = on_netns is not None
    nets, opts = _checked_networks(cni, state, spec, config, fresh)
    _start_clean(cni, state.id, nets, opts, notes)
    # An ADD that fails is undone by a DEL of the same interface name: it
    # must never be an interface the ADD did not create (a fresh namespace has lo only).
    if not fresh:
        check_free_ifnames(state.pid, [ifname_for(i) for i in range(len(nets))])
    # Labels publish ports through the same check as `cnirun run -p`; the
    # ports stay claimed until ADD has cached the mappings.
    ports = reserve(
        cni, spec.ports, exclude=state.id, wait=WAIT_SECONDS if lock_wait is None else lock_wait,
        hint="pick another host port in cnirun.ports",
    )
    try:
        return _pin_and_add(cni, state, nets, opts, on_netns, notes)
    finally:
        if ports is not None:
            ports.release()


def _checked_networks(
    cni: CNI, state: OCIState, spec: ContainerNetworkSpec, config: OCIConfig | None, fresh: bool
) -> tuple[list[Any], list[NetworkOptions]]:
    """Every check before the host is touched; the networks and each one's options."""
    from ..cni.runtime_conf import validate_container_id
    from ..network.network_options import options_for

    validate_container_id(state.id)
    if state.pid <= 0 and not fresh:
        raise HookError("the OCI state has no pid: attach in createRuntime or prestart, not in poststop")
    if config is None:
        config = read_config(state.bundle)
    # The namespace first: nothing at all is done for a container that shares
    # the host's or another container's namespace (a fresh one is ours by making).
    if not fresh:
        check_own_netns(state.pid, state.id, config.netns)
    nets = [cni.network(n) for n in spec.networks]
    check_label_policy(nets)
    if fresh:
        from ..cni.config import has_ipv6
        from .reapply import live_networks

        if any(has_ipv6(n) for n in nets + live_networks(cni, state.id)):
            raise NotEarly("an IPv6 network: attached by the createRuntime hook, after Docker's own hook")
    opts = options_for(spec, nets, cni, state.id)
    if config.hostname:  # the hook knows no engine name: the hostname (Docker's default: the short ID) serves
        for o in opts:
            o.names.append(config.hostname)
    return nets, opts


def _start_clean(
    cni: CNI, container_id: str, nets: list[Any], opts: list[NetworkOptions], notes: list[str] | None
) -> None:
    """DEL what an earlier start left, and ask each network for the addresses and MAC it gave then."""
    from ..network.files import saved_addresses
    from ..network.lifecycle import detach
    from ..network.network_options import keep_addresses

    leftovers = detach(cni, container_id)
    if leftovers:
        raise HookError("cannot undo the previous attachment: " + "; ".join(leftovers))
    saved = saved_addresses(container_id)
    for net, o in zip(nets, opts):
        if net.name in saved:
            found = keep_addresses(cni, net, o, saved[net.name], container_id)
            if notes is not None:
                notes += found


def _pin_and_add(
    cni: CNI, state: OCIState, nets: list[Any], opts: list[NetworkOptions],
    on_netns: Callable[[str], None] | None, notes: list[str] | None,
) -> list[Attachment]:
    """Pin the namespace (the process's, or a new one for the early attach), then ADD every network."""
    from ..network.lifecycle import attach

    try:
        if on_netns is not None:
            from ..network.netns import new_pinned_netns

            path = new_pinned_netns(state.id)
            on_netns(path)
        else:
            path = pin_netns(state.pid, state.id)
        return attach(cni, nets, state.id, path, opts, notes)
    except BaseException:
        from ..network.lifecycle import cached_attachments

        # attach() DELed what it did; what it could not is still cached and needs the
        # pin for its DEL (poststop, the Docker runtime's delete, gc): keep it then.
        if not cached_attachments(cni, state.id):
            unpin_netns(state.id)
        raise


def attach_stage(
    state: OCIState, record: dict[str, Any], started: float | None = None,
    config: OCIConfig | None = None, on_netns: Callable[[str], None] | None = None,
) -> int:
    """createRuntime/prestart (and the early attach): attach under the container's lock and the budget, then the host files."""
    from ..cni.runtime import CNI
    from ..cni.runtime_conf import validate_container_id

    validate_container_id(state.id)
    spec = spec_from_state(state)
    if spec is None:
        record["outcome"] = "skipped"  # no cnirun.networks annotation: not ours
        return 0
    record["networks"] = spec.networks
    if config is None:
        config = read_config(state.bundle)
    cni = CNI()
    elapsed = 0.0 if started is None else time.monotonic() - started
    total = attach_budget()
    budget = total - elapsed
    deadline = Deadline(cni, budget, record, total)
    deadline.arm()
    try:
        with container_locked(state.id, wait=max(min(CONTAINER_LOCK_WAIT, budget), 0.0)) as lock:
            notes: list[str] = []
            atts = attach_container(cni, state, spec, config, lock_wait=budget, on_netns=on_netns, notes=notes)
            lock.remove_file = False  # attached: the container lives on
            problem = _reapply_and_remember(cni, state, atts, on_netns is not None, notes)
            if problem:
                record["live"] = problem
            if notes:
                record["warnings"] = notes
    finally:
        deadline.disarm()
    record["interfaces"] = {a.ifname: a.addresses() for a in atts}
    _write_host_files(config, state.id, atts, record)
    return 0


def _reapply_and_remember(cni: CNI, state: OCIState, atts: list[Attachment], fresh: bool, notes: list[str]) -> str:
    """After the labels' attach: what the live verbs added (reapply_live), then every address and MAC recorded.

    Returns reapply_live's problems; a recording problem goes into `notes`.
    """
    from ..core.paths import live_record
    from ..network.files import remember_addresses

    problem = ""
    if os.path.exists(live_record(state.id)):  # reapply is loaded only for a container the live verbs changed
        from .reapply import reapply_live

        problem = reapply_live(cni, state, atts, ["lo"] if fresh else None, notes)
    recorded = remember_addresses(state.id, {a.network: a.had() for a in atts})
    if recorded:
        notes.append(recorded)
    return problem


def _write_host_files(config: OCIConfig, container_id: str, atts: list[Attachment], record: dict[str, Any]) -> None:
    """The engine's hosts file gets the container's names; its resolv.conf its own resolver when it has a view."""
    from ..dns.resolver import resolvers
    from ..dns.view import VIEW_ADDRESS, has_view
    from ..network.files import add_hosts_entries

    problem = add_hosts_entries(config, container_id, atts)
    if problem:
        record["hosts"] = problem
    if has_view(container_id):
        # On several networks with DNS it asks its own resolver; after a restart the engine wrote
        # resolv.conf again from the run's --dns, which knew only the networks the run started with.
        from ..network.files import point_resolv_conf

        ours = {VIEW_ADDRESS} | {r for a in atts for r in resolvers(a.network)}
        problem = point_resolv_conf(config, container_id, ours, [VIEW_ADDRESS])
        if problem:
            record["resolv"] = problem


def run_for_shim(state: OCIState, config: OCIConfig, gate_fd: int, ready_fd: int, started: float) -> int:
    """The Docker shim's attach worker: the createRuntime hook's work, started before runc's create.

    A forked child of the shim (cnirun.oci.shim) with the hook's environment:
    it checks what the labels ask for, DELs what an earlier start left, makes
    the container's netns and pins it, then writes a newline to `ready_fd`
    (the shim execs runc, which joins the namespace by path) and ADDs while
    runc creates the container. The outcome goes into the start gate
    (`gate_fd`, cnirun.oci.start_gate), which `runc start` waits on. A failure
    before the namespace exists goes back through `ready_fd` instead (the
    shim fails the create with it, as the hook's createRuntime did). Logged
    as stage "create". Returns the process's exit code.
    """
    from ..core.errors import CNIError
    from .start_gate import settle

    record: dict[str, Any] = {"stage": "create", "container": state.id, "networks": [], "outcome": "ok"}
    told: list[bool] = []

    def ready(path: str) -> None:
        os.write(ready_fd, b"\n")
        os.close(ready_fd)
        told.append(True)

    try:
        attach_stage(state, record, started, config=config, on_netns=ready)
    except NotEarly:
        os.write(ready_fd, b"hook\n")  # nothing was done: the shim adds the createRuntime hook instead
        return 0
    except (CNIError, HookError) as e:
        record.update(outcome="failed", error=str(e))
    except BaseException as e:  # noqa: BLE001 - the gate must say something, whatever happened
        record.update(outcome="failed", error=f"unexpected error: {type(e).__name__}: {e}")
    error = record.get("error", "") if record["outcome"] == "failed" else ""
    try:
        if told:
            settle(gate_fd, error)
        else:
            os.write(ready_fd, ("cnirun: " + (error or "the attach did not start")).encode())
    except OSError:
        pass  # the shim or the launcher is gone: the log below still tells
    finish(record, started)
    return 1 if error else 0
