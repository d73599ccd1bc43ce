"""The OCI hook: attach a container's CNI networks at createRuntime, detach at poststop.

Run by the OCI runtime (runc, crun) with the container's state JSON on stdin
and the stage as its only argument; installed through Podman/CRI-O hooks.d or
added to config.json by the Docker runtime shim (cnirun.oci.shim). Under Docker
the shim runs the createRuntime stage's work itself, before runc, in a forked
worker (run_for_shim: a new namespace made and pinned here instead of the
process's, the same checks, the same attach), and the runtime's `delete`
runs the poststop stage's (run_delete); the hooks serve the cases the early
attach does not (see cnirun.oci.shim).

- What to attach comes from the state's annotations (cnirun.networks, .ports,
  .ip, .mac), parsed only by options.ContainerNetworkSpec.from_labels, which
  validates every value. The CNI container ID is the OCI container ID, never
  a label, so a container cannot name another container's attachments.
- Trust: the labels/annotations, the hostname and the mounts are the
  container's choice. Before anything is done the hook checks that the
  container is in its own new network namespace (netns_pin.check_own_netns:
  not --network host, not container:X, not a namespace pinned for another
  container) and that the interfaces it will create do not exist; ports go
  through portlock's in-use/duplicate check; the hosts update writes only the
  engine's own generated file (hosts_patch). A network whose conflist sets
  "cnirun": {"allowLabels": false} is refused (check_label_policy).
- Time: the attach gives up after ATTACH_BUDGET s (90 of the engine's 120)
  and cleans up within CLEANUP_GRACE s (_Deadline).
- createRuntime/prestart: the container's netns (/proc/<pid>/ns/net) is first
  bind-mounted at <state dir>/netns/<id> and that path is what ADD gets and
  the cache records. poststop runs after the process died, when
  /proc/<pid>/ns/net is gone; with the pin the DEL still enters the netns, so
  every plugin cleans up fully (a DEL with an empty netns leaves the bridge
  plugin's NAT rules behind). `cnirun gc` uses the same pin after a crash.
- Before ADD, everything cached for the container is DELeted: a restart goes
  through create again and host-local would refuse a duplicate allocation.
- poststop never blocks the engine: it takes the container's lock
  (<state dir>/locks/<id>.lock), forks, and returns; the child, which
  inherits the lock, DELs and unpins, then logs. A createRuntime of the same
  container (docker restart) waits on that lock, so it can never race the
  DEL of the previous run. CNIRUN_HOOK_SYNC=1 keeps poststop in the foreground.
- Failures: one `cnirun: ...` line on stderr (the engine shows it), exit 1,
  nothing left allocated; the poststop that may still follow finds nothing to
  undo and succeeds.
- One log line per run in CNIRUN_HOOK_LOG (default /var/log/cnirun/hooks.log).

This module is on the path of every container start: it imports only os,
sys, time, cnirun.core.jsonfast, cnirun.core.oci_state and cnirun.network.netns_pin at the top and the runtime core inside
functions. Nothing on the hook path imports the docker SDK, typer, yaml,
pyroute2, nor the slow parts of the standard library (dataclasses, typing,
pathlib, the json package, re, enum, subprocess): test_hook.py checks it.
The process is started with `python -I -S` (no site, no editable-install
finder; hook_argv puts the package on sys.path) and leaves with os._exit
(run_process). The netns pin is made with mount(2) through ctypes, plugins
are started with posix_spawn (cnirun.cni.invoke).
"""
from __future__ import annotations

import os
import sys
import time

# The json package (it imports re and enum), typing, dataclasses and
# subprocess cost ~20 ms of imports together: nothing on the hook path
# imports them (jsonfast drives the same C codec), and the poststop parent,
# which only takes the container lock and forks, not even the runtime core.
from .argv import HOOK_PATH
from .log import write_log
from ..core.lock import CONTAINER_LOCK_WAIT, lock_container, unlock_container
from ..network.netns_pin import check_free_ifnames, check_own_netns, pin_netns, unpin_netns
from ..core.oci_state import HookError, OCIConfig, OCIState, parse_state, read_config

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Mapping

    from ..network.lifecycle import Attachment
    from ..network.options import ContainerNetworkSpec
    from ..cni.runtime import CNI

ATTACH_STAGES = ("createRuntime", "prestart")
DETACH_STAGES = ("poststop",)
POSTSTOP_PLUGIN_TIMEOUT = 20.0
# poststop's engine timeout is 60 s (hooks/cnirun-detach.json); its parent
# only waits for the container lock, then forks.
POSTSTOP_LOCK_WAIT = 30.0
# The engine kills a createRuntime hook after HOOK_TIMEOUT s (hooks.d
# template, the Docker shim). The attach gives up after ATTACH_BUDGET s
# (waits for locks included), then undoes what it did with plugins limited
# to CLEANUP_PLUGIN_TIMEOUT s each; if that too is not over CLEANUP_GRACE s
# later, the hook exits and leaves the rest to `cnirun gc`. 90 + 20 < 120.
HOOK_TIMEOUT = 120
ATTACH_BUDGET = 90.0
CLEANUP_GRACE = 20.0
CLEANUP_PLUGIN_TIMEOUT = 2.0


class HookTimeout(HookError):
    """The attach did not finish within the hook's budget (ATTACH_BUDGET)."""


class NotEarly(HookError):
    """The Docker shim's early attach cannot serve these networks: the createRuntime hook must.

    Docker's own prestart hook (libnetwork-setkey) sets
    net.ipv6.conf.all.disable_ipv6=1 in the container's namespace, which
    drops every IPv6 address there: an ADD that may run before it (the early
    attach) would lose its IPv6 addresses, one that runs after it (the
    createRuntime hook) keeps them (the bridge plugin enables IPv6 on its
    interface).
    """


# -- attach / detach ----------------------------------------------------------
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
    at its last start (hosts_patch.saved_addresses, lifecycle.keep_addresses):
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
    from ..network.hosts_patch import saved_addresses
    from ..network.lifecycle import attach, detach, ifname_for, keep_addresses, options_for
    from ..network.portlock import WAIT_SECONDS, reserve
    from ..cni.runtime import validate_container_id

    validate_container_id(state.id)
    fresh = on_netns is not None
    if state.pid <= 0 and not fresh:
        raise HookError("the OCI state has no pid: attach in createRuntime or prestart, not in poststop")
    if config is None:
        config = read_config(state.bundle)
    # The namespace first: nothing at all is done for a container that shares
    # the host's or another container's namespace (a fresh one is ours by making).
    if not fresh:
        check_own_netns(state.pid, state.id, config.netns)
    # Resolve and validate everything before touching the host.
    nets = [cni.network(n) for n in spec.networks]
    check_label_policy(nets)
    if fresh:
        from ..cni.config import has_ipv6

        if any(has_ipv6(n) for n in nets + _live_networks(cni, state.id)):
            raise NotEarly("an IPv6 network: attached by the createRuntime hook, after Docker's own hook")
    opts = options_for(spec, nets, cni, state.id)
    if config.hostname:  # the hook knows no engine name: the hostname (Docker's default: the short ID) serves
        for o in opts:
            o.names.append(config.hostname)
    leftovers = detach(cni, state.id)
    if leftovers:
        raise HookError("cannot undo the previous attachment: " + "; ".join(leftovers))
    saved = saved_addresses(state.id)
    for net, o in zip(nets, opts):
        if net.name in saved:
            found = keep_addresses(cni, net, o, saved[net.name], state.id)
            if notes is not None:
                notes += found
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
        try:
            if fresh:
                from ..network.netns_pin import new_pinned_netns

                path = new_pinned_netns(state.id)
            else:
                path = pin_netns(state.pid, state.id)
            if on_netns is not None:
                on_netns(path)
            return attach(cni, nets, state.id, path, opts, notes)
        except BaseException:
            from ..network.lifecycle import cached_attachments

            # attach() DELed what it did; what it could not is still cached and needs the
            # pin for its DEL (poststop, the Docker runtime's delete, gc): keep it then.
            if not cached_attachments(cni, state.id):
                unpin_netns(state.id)
            raise
    finally:
        if ports is not None:
            ports.release()


def _live_record(container_id: str) -> dict[str, Any]:
    """What cnirun.live.verbs recorded for the container (live.json in its record's state dir); {} without one."""
    from ..core.paths import runs_dir

    try:
        with open(os.path.join(runs_dir(), container_id, "live.json"), "rb") as f:
            from ..core import jsonfast as json

            live = json.loads(f.read())
    except (OSError, ValueError):
        return {}
    return live if isinstance(live, dict) else {}


def _live_networks(cni: CNI, container_id: str) -> list[Any]:
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

    cnirun.live.verbs records those in <state dir>/containers/<id>/live.json (the
    labels cannot change on a running container). Appends to `atts`; returns
    what went wrong ('' when done or nothing to do): the label networks are
    up, so a network that cannot come back (its address taken, its netconf
    gone) is reported in the log, never a reason to fail the start.
    `present`: the namespace's interfaces when the container has no process
    yet (read from /proc/<pid> otherwise). Each network is asked for the
    addresses and MAC it had (as attach_container does; `notes`).
    """
    live = _live_record(state.id)
    if not live:
        return ""
    from ..core.errors import CNIError
    from ..network.hosts_patch import saved_addresses
    from ..network.lifecycle import NetworkOptions, connect, keep_addresses, set_ports
    from ..network.netns_pin import interfaces, pin_path

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
    if isinstance(live.get("ports"), list):
        from ..network.options import PortMapping
        from ..network.portlock import reserve

        try:
            wanted = [PortMapping(int(m["hostPort"]), int(m["containerPort"]), str(m.get("protocol", "tcp")),
                                  str(m.get("hostIP", ""))) for m in live["ports"]]
            lock = reserve(cni, wanted, exclude=state.id, hint="cnirun port rm it, then add another")
            try:
                set_ports(cni, state.id, [p.to_cni() for p in wanted])
            finally:
                if lock is not None:
                    lock.release()
        except (CNIError, KeyError, TypeError, ValueError) as e:
            problems.append(f"ports: {e}")
    if "bandwidth" in live:  # `cnirun update` changed the labels' rates (None: removed them)
        from ..network.lifecycle import set_bandwidth

        try:
            value = live["bandwidth"] if isinstance(live["bandwidth"], dict) else None
            set_bandwidth(cni, state.id, value, pin_path(state.id))
        except CNIError as e:
            problems.append(f"rates: {e}")
    return "; ".join(problems)


def detach_container(cni: CNI, container_id: str) -> list[str]:
    """DEL every cached attachment of the container, then drop the netns pin (lifecycle.detach)."""
    from ..network.lifecycle import detach

    return detach(cni, container_id)


# -- container IDs -----------------------------------------------------------------
def _safe_id(cid: str) -> bool:
    """libcni's container ID rule, without importing re (the poststop parent stays lean)."""
    ok = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    return bool(cid) and cid[0] in ok and all(c in ok or c in "_.-" for c in cid) and len(cid) <= 256


# -- entry point ----------------------------------------------------------------
def attach_budget(environ: Mapping[str, str] | None = None) -> float:
    """Seconds the attach may take (CNIRUN_HOOK_BUDGET, never above ATTACH_BUDGET)."""
    env = os.environ if environ is None else environ
    try:
        budget = float(env.get("CNIRUN_HOOK_BUDGET") or ATTACH_BUDGET)
    except ValueError:
        budget = ATTACH_BUDGET
    return min(max(budget, 0.1), ATTACH_BUDGET)


class _Deadline:
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
            _finish(self.record, time.monotonic() - (self.seconds + CLEANUP_GRACE))
        finally:
            os._exit(1)


def _attach_stage(
    stage: str, state: OCIState, record: dict[str, Any], started: float | None = None,
    config: OCIConfig | None = None, on_netns: Callable[[str], None] | None = None,
) -> int:
    from ..cni.runtime import CNI, validate_container_id

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
    deadline = _Deadline(cni, budget, record, total)
    deadline.arm()
    try:
        fd = lock_container(state.id, wait=max(min(CONTAINER_LOCK_WAIT, budget), 0.0))
        assert fd is not None  # blocking
        ok = False
        notes: list[str] = []
        try:
            atts = attach_container(cni, state, spec, config, lock_wait=budget, on_netns=on_netns, notes=notes)
            ok = True
            problem = reapply_live(cni, state, atts, ["lo"] if on_netns is not None else None, notes)
            if problem:
                record["live"] = problem
            from ..network.hosts_patch import remember_addresses

            problem = remember_addresses(state.id, {a.network: a.had() for a in atts})
            if problem:
                notes.append(problem)
            if notes:
                record["warnings"] = notes
        finally:
            unlock_container(fd, state.id, remove=not ok)
    finally:
        deadline.disarm()
    record["interfaces"] = {a.ifname: a.addresses() for a in atts}
    from ..network.hosts_patch import add_hosts_entries as patch_hosts

    problem = patch_hosts(config, state.id, atts)
    if problem:
        record["hosts"] = problem
    from ..dns.names import VIEW_ADDRESS, has_view, resolvers

    if has_view(state.id):
        # On several networks with DNS it asks its own resolver; after a restart the engine wrote
        # resolv.conf again from the run's --dns, which knew only the networks the run started with.
        from ..network.hosts_patch import point_resolv_conf

        ours = {VIEW_ADDRESS} | {r for a in atts for r in resolvers(a.network)}
        problem = point_resolv_conf(config, state.id, ours, [VIEW_ADDRESS])
        if problem:
            record["resolv"] = problem
    return 0


def _detach_stage(state: OCIState, record: dict[str, Any]) -> None:
    from ..cni.runtime import CNI

    problems = detach_container(CNI(timeout=POSTSTOP_PLUGIN_TIMEOUT), state.id)
    if problems:
        record["outcome"] = "incomplete"
        record["error"] = "; ".join(problems)


def _finish(record: dict[str, Any], started: float) -> None:
    record["duration_ms"] = round((time.monotonic() - started) * 1000, 1)
    write_log({"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **record})


def _detach_in_background(state: OCIState, record: dict[str, Any], started: float) -> int:
    """poststop: take the container lock, fork, and let the child DEL; the engine goes on at once.

    The engine waits for a hook's stdout/stderr to close, so the child
    points them at /dev/null. CNIRUN_HOOK_SYNC=1 keeps everything in the
    foreground (debugging).
    """
    fd = lock_container(state.id, wait=POSTSTOP_LOCK_WAIT)
    if os.environ.get("CNIRUN_HOOK_SYNC") == "1":
        try:
            _detach_stage(state, record)
        finally:
            unlock_container(fd, state.id, remove=True)
            _finish(record, started)
        return 0
    sys.stdout.flush()
    sys.stderr.flush()
    if os.fork() != 0:
        return 0  # the child holds the lock now (flock belongs to the shared open file)
    code = 0
    try:
        os.setsid()
        # The bundle directory we were started in goes away with the container:
        # plugins started from a vanished cwd can fail (a pyenv python3 shim does).
        os.chdir("/")
        null = os.open(os.devnull, os.O_RDWR)
        for target in (0, 1, 2):
            os.dup2(null, target)
        record["background"] = True
        try:
            _detach_stage(state, record)
        except Exception as e:  # noqa: BLE001 - nobody is listening: the log is the report
            record["outcome"] = "incomplete"
            record["error"] = str(e)
        unlock_container(fd, state.id, remove=True)
        _finish(record, started)
    except BaseException:
        code = 1
    finally:
        os._exit(code)


def run_delete(container_id: str, lock_fd: int) -> int:
    """The Docker runtime's `delete` (cnirun.oci.shim.delete_main): DEL what the container's start attached.

    The launcher takes the container's lock on `lock_fd` (flock(1)), starts
    this process in the background with it, and execs `runc delete` at once:
    the DEL, which poststop ran before, is off the engine's path. The lock is
    taken again here (a no-op when the launcher got it; a wait when its
    flock timed out) and checked to be on the lock file that is there now
    (the holder before may have removed it). Logged as stage "delete".
    """
    import fcntl

    from ..core.lock import lock_container
    from ..core.paths import container_lock

    started = time.monotonic()
    record: dict[str, Any] = {"stage": "delete", "container": container_id, "networks": [], "outcome": "ok",
                              "background": True}
    if not _safe_id(container_id):
        return 2
    os.setsid()
    os.chdir("/")  # the bundle goes away with the container
    fd = -1
    try:
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the launcher's own lock: no wait
            current = os.stat(container_lock(container_id))
            if (current.st_dev, current.st_ino) != (os.fstat(lock_fd).st_dev, os.fstat(lock_fd).st_ino):
                raise FileNotFoundError  # a lock nobody else will see: take the one that is there
            fd = lock_fd
        except OSError:
            try:
                os.close(lock_fd)
            except OSError:
                pass
            fd = lock_container(container_id, wait=POSTSTOP_LOCK_WAIT)  # waits, replaceable, bounded
        _detach_stage(OCIState(container_id), record)
    except Exception as e:  # noqa: BLE001 - nobody is listening: the log is the report (gc finishes it)
        record.update(outcome="incomplete", error=str(e))
    if fd >= 0:
        unlock_container(fd, container_id, remove=True)
    _finish(record, started)
    return 0 if record["outcome"] == "ok" else 1


def run_hook(stage: str, state_data: bytes, started: float | None = None) -> tuple[int, dict[str, Any] | None]:
    """Run one stage; returns (exit code, log record or None when a background child logs it)."""
    from ..core.errors import CNIError

    started = time.monotonic() if started is None else started
    record: dict[str, Any] = {"stage": stage, "container": "", "networks": [], "outcome": "ok"}
    try:
        if stage not in ATTACH_STAGES + DETACH_STAGES:
            raise HookError(
                f"unknown hook stage {stage!r}: use createRuntime or prestart (attach) or poststop (detach)"
            )
        state = parse_state(state_data)
        record["container"] = state.id
        if stage in DETACH_STAGES:
            if not _safe_id(state.id):
                raise HookError(f"invalid container ID {state.id!r} in the OCI state")
            return _detach_in_background(state, record, started), None
        return _attach_stage(stage, state, record, started), record
    except (CNIError, HookError) as e:
        record["outcome"] = "failed"
        record["error"] = str(e)
        return 1, record


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
        _attach_stage("create", state, record, started, config=config, on_netns=ready)
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
    _finish(record, started)
    return 1 if error else 0


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not os.environ.get("PATH"):
        os.environ["PATH"] = HOOK_PATH
    started = time.monotonic()
    stage = args[0] if args else ""
    if len(args) != 1 or stage in ("-h", "--help"):
        sys.stderr.write("usage: cnirun-hook STAGE  (createRuntime|prestart|poststop; OCI state JSON on stdin)\n")
        return 2
    try:
        data = sys.stdin.buffer.read()
    except OSError:
        data = b""
    try:
        code, record = run_hook(stage, data, started)
    except KeyboardInterrupt:
        code, record = 130, {"stage": stage, "outcome": "interrupted"}
    if record is None:
        return code
    _finish(record, started)
    if record.get("error"):
        prefix = "cnirun: " if code else "cnirun: warning: "
        sys.stderr.write(f"{prefix}{record['error']}\n")
    return code


def run_process() -> None:
    """The hook process's entry point (hook_argv): main(), then exit at once.

    Tearing the interpreter down (module dicts, GC) costs ~2 ms per hook run,
    on every container start; a hook process has nothing to finalise but
    stdio (the log is written with os.write), so it is flushed and the
    process leaves with os._exit. An unexpected exception still propagates
    (traceback, normal exit).
    """
    from ..core.process import exit_now

    exit_now(main())


if __name__ == "__main__":
    sys.exit(main())
