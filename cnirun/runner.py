"""`cnirun run`: resolve networks, make the netns, attach, start, wait, tear down.

Docker (sandbox mode): a helper container of the user's own image, network
`none`, running the host's static busybox `sleep`, holds the netns; the CNI
chain is ADDed to it; the workload joins it with `--network container:` and
starts only after ADD finished, so the network is up before its first
instruction. A thread creates and starts the helper and runs ADD while the
main thread creates the workload. This process also opens the helper's netns,
so at the end the helper is removed while DEL still runs in that netns.
Docker (hook mode): an ordinary `docker run` with the cnirun OCI runtime,
which attaches from the container's labels; chosen automatically only when
the runtime was installed with this run's CNI paths (engines/docker_mode).
Docker calls go through a lean Engine API client on the unix socket
(engines/dockerapi) unless the run needs the SDK. Podman: a named netns made
by cnirun, attached, then `podman run --network ns:PATH`; a prestart hook
holds the container until ADD is done and a poststop hook starts DEL early.

Published ports: a lock is held from the "is the host port free" check until
ADD has cached the mappings, so two runs cannot both take one port.

Exit status: the container's; 125 for cnirun's own failures; 126/127 when
the command cannot be run (as docker run).
"""
from __future__ import annotations

import fcntl
import os
import signal
import socket
import sys
import threading
TYPE_CHECKING = False  # typing costs ~7 ms of start-up on `cnirun run`: annotations only

from .attach import Attachment, NetworkOptions
from .config import NetworkConfigList
from .errors import ArgumentError, CNIError, ConfigError, EngineError
from .value import Record
from .request import RunRequest

if TYPE_CHECKING:  # the hook path never makes a state dir: state (pathlib, secrets) is imported lazily
    from typing import Any
    from .state import RunMeta, RunState

EXIT_CNIRUN = 125
_FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Interrupted(Exception):
    def __init__(self, signum: int) -> None:
        super().__init__(f"interrupted by signal {signum}")
        self.signum = signum


class RunFailed(Exception):
    """A failure with its exit code and message (already one line)."""

    def __init__(self, message: str, code: int = EXIT_CNIRUN) -> None:
        super().__init__(message)
        self.code = code


class Plan(Record):
    req: RunRequest
    cni: Any
    networks: list[NetworkConfigList]
    options: list[NetworkOptions]
    ports: list[Any]
    file_networks: list[str]  # defined by -f only: invisible to the hook
    ips: dict[str, str]  # network name -> static IP
    port_lock: Any  # held from the port check until ADD has cached the mappings

    _fields = ('req', 'cni', 'networks', 'options', 'ports', 'file_networks', 'ips', 'port_lock')
    _defaults = {'ports': list, 'file_networks': list, 'ips': dict, 'port_lock': None}

    def release_ports(self) -> None:
        if self.port_lock is not None:
            self.port_lock.release()
            self.port_lock = None


# -- validation --------------------------------------------------------------------
def _load_networks(req: RunRequest, cni: Any) -> tuple[list[NetworkConfigList], list[str]]:
    """The requested networks in order, and the names of those taken from -f."""
    from .defaults import default_network_name

    from_file: dict[str, NetworkConfigList] = {}
    if req.file:
        try:
            from .compose.networks import load_networks_file  # type: ignore[import-not-found]
        except ImportError:
            raise ConfigError("-f needs cnirun's compose support (cnirun.compose), which is not installed") from None
        from_file = {n.name: n for n in load_networks_file(req.file)}
    names = req.networks or [default_network_name()]
    if len(set(names)) != len(names):
        raise ArgumentError(f"network listed twice in --network {','.join(names)}: each network attaches once")
    nets = [from_file[n] if n in from_file else cni.network(n) for n in names]
    return nets, [n for n in names if n in from_file]


def _host_local_dir(net: NetworkConfigList) -> str:
    for p in net.plugins:
        ipam = p.raw.get("ipam")
        if isinstance(ipam, dict) and ipam.get("type") == "host-local":
            return os.path.join(ipam.get("dataDir") or "/var/lib/cni/networks", net.name)
    return ""


def _wants(net: NetworkConfigList, capability: str) -> bool:
    return any(capability in p.capabilities for p in net.plugins)


def _check_ports(cni: Any, ports: list[Any]) -> None:
    """A host port taken by another container (cache) or a host process (bind) is refused.

    portmap itself would happily install a second DNAT rule for the same port.
    """
    from . import cache as cnicache

    taken: dict[tuple[int, str], str] = {}
    for att in cnicache.list_attachments(cni.cache_dir):
        for m in att.capability_args.get("portMappings") or []:
            if isinstance(m, dict):
                taken[(int(m.get("hostPort", 0)), str(m.get("protocol", "tcp")))] = att.container_id
    for p in ports:
        if (p.host_port, p.protocol) in taken:
            raise ArgumentError(
                f"host port {p.host_port}/{p.protocol} is already published by container "
                f"{taken[(p.host_port, p.protocol)][:12]}: pick another -p host port"
            )
        if p.protocol in ("tcp", "udp"):
            family = socket.AF_INET6 if ":" in p.host_ip else socket.AF_INET
            kind = socket.SOCK_STREAM if p.protocol == "tcp" else socket.SOCK_DGRAM
            s = socket.socket(family, kind)
            try:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind((p.host_ip or ("::" if family == socket.AF_INET6 else "0.0.0.0"), p.host_port))
            except OSError:
                raise ArgumentError(
                    f"host port {p.host_port}/{p.protocol} is in use on this host: pick another -p host port"
                ) from None
            finally:
                s.close()


def _static_ips(req: RunRequest, nets: list[NetworkConfigList]) -> dict[str, str]:
    """Network name -> static IP, from --ip (the first network) and per-network IPs."""
    from .options import parse_ip

    names = [n.name for n in nets]
    ips: dict[str, str] = {}
    for name, raw in req.network_ips.items():
        if name not in names:
            raise ArgumentError(
                f"static IP {raw} is for network {name!r}, which this container does not join "
                f"({', '.join(names)}): add --network {name} or drop the IP"
            )
        ips[name] = parse_ip(raw)
    if req.ip:
        ip = parse_ip(req.ip)
        if ips.get(names[0], ip) != ip:
            raise ArgumentError(f"--ip {ip} and {ips[names[0]]} both name the address on {names[0]}: keep one")
        ips[names[0]] = ip
    return ips


def _set_arg(opts: NetworkOptions, key: str, value: str) -> None:
    if ("IgnoreUnknown", "1") not in opts.args:
        opts.args.append(("IgnoreUnknown", "1"))
    opts.args.append((key, value))


def _apply_ip(net: NetworkConfigList, opts: NetworkOptions, ip: str) -> None:
    """Validate a static IP against the network and hand it to its chain (ips capability or CNI_ARGS IP=)."""
    from .options import ip_in_network

    subnets = net.subnets()
    if not ip_in_network(ip, subnets):
        raise ArgumentError(f"--ip {ip} is outside network {net.name}'s subnet {', '.join(subnets)}")
    d = _host_local_dir(net)
    if d and os.path.exists(os.path.join(d, ip)):
        raise ArgumentError(f"--ip {ip} is already taken on network {net.name}: pick another address")
    if _wants(net, "ips"):
        opts.capability_args["ips"] = [ip]
    else:
        _set_arg(opts, "IP", ip)


def plan(req: RunRequest) -> Plan:
    """Resolve and validate everything before anything is made on the host."""
    from .invoke import find_plugin
    from .options import parse_mac, parse_ports
    from .runtime import CNI

    if os.geteuid() != 0:
        raise ArgumentError("cnirun run needs root (CAP_NET_ADMIN) to run CNI plugins: run it with sudo")
    cni = CNI()
    nets, from_file = _load_networks(req, cni)
    for net in nets:
        for p in net.plugins:
            find_plugin(p.type, cni.plugin_dirs)
    ports = parse_ports(",".join(req.publish)) if req.publish else []
    mac = parse_mac(req.mac) if req.mac else ""
    opts = [NetworkOptions() for _ in nets]
    ips = _static_ips(req, nets)
    for net, o in zip(nets, opts):
        if net.name in ips:
            _apply_ip(net, o, ips[net.name])
    if mac:
        if _wants(nets[0], "mac"):
            opts[0].capability_args["mac"] = mac
        else:
            _set_arg(opts[0], "MAC", mac)
    result = Plan(req=req, cni=cni, networks=nets, options=opts, ports=ports, file_networks=from_file, ips=ips)
    if ports:
        target = next((i for i, n in enumerate(nets) if _wants(n, "portMappings")), None)
        if target is None:
            raise ArgumentError(
                f"-p needs a network with the portmap plugin (portMappings capability); "
                f"{', '.join(n.name for n in nets)} has none"
            )
        opts[target].capability_args["portMappings"] = [p.to_cni() for p in ports]
        # Two runs publishing one port at the same moment: the second waits
        # here until the first has cached its mappings, then sees them.
        from .portlock import PortLock

        result.port_lock = PortLock.acquire(cni)
        try:
            _check_ports(cni, ports)
        except BaseException:
            result.release_ports()
            raise
    return result


# -- signals -------------------------------------------------------------------------
class SignalGate:
    """SIGINT/TERM/HUP: abort set-up (raise Interrupted), later forward to the container."""

    def __init__(self) -> None:
        self.forward: Any = None  # callable(signum) once the workload runs
        self.received: list[int] = []
        self._old: dict[int, Any] = {}

    def install(self) -> None:
        for s in _FORWARDED:
            self._old[s] = signal.signal(s, self._on)

    def _on(self, signum: int, _frame: Any) -> None:
        self.received.append(signum)
        if self.forward is None:
            raise Interrupted(signum)
        # Never do I/O inside a handler: the main thread may hold the connection pool.
        threading.Thread(target=self.forward, args=(signum,), daemon=True).start()

    def shield(self) -> None:
        """Teardown must not be cut short by a second Ctrl-C."""
        for s in _FORWARDED:
            signal.signal(s, signal.SIG_IGN)

    def restore(self) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)


# -- hosts and resolv.conf ----------------------------------------------------------
def _write_host_files(st: RunState, req: RunRequest, atts: list[Attachment], hostname: str) -> None:
    from .hostfiles import container_dns, write_hosts, write_resolv_conf

    entries: list[tuple[str, list[str]]] = []
    names = [hostname] + ([req.spec.name] if req.spec.name and req.spec.name != hostname else [])
    for att in atts[:1]:
        for addr in att.addresses():
            entries.append((addr.split("/", 1)[0], names))
    for h in req.spec.add_hosts:
        name, sep, ip = h.replace("=", ":", 1).partition(":")
        if sep:
            entries.append((ip, [name]))
    write_hosts(st.hosts, entries)
    write_resolv_conf(st.resolv_conf, container_dns([a.result for a in atts], req.dns, req.dns_search))


def _host_file_binds(st: RunState) -> list[str]:
    from .hostfiles import touch

    touch(st.hosts)
    touch(st.resolv_conf)
    return [f"{st.hosts}:/etc/hosts", f"{st.resolv_conf}:/etc/resolv.conf"]


# -- entry point ---------------------------------------------------------------------
def run(req: RunRequest) -> int:
    from .engines import ENGINES, engine_name

    gate = SignalGate()
    gate.install()
    p: Plan | None = None
    try:
        engine = engine_name(req.engine)
        if engine not in ENGINES:
            raise RunFailed(f"unknown engine {engine!r}: use --engine docker or --engine podman")
        p = plan(req)
        if engine == "podman":
            if req.mode == "hook":
                raise RunFailed("--mode hook is for Docker; Podman always uses --network ns:PATH")
            return _run_podman(p, gate)
        return _run_docker(p, gate)
    except RunFailed as e:
        sys.stderr.write(f"cnirun: {e}\n")
        return e.code
    except CNIError as e:
        sys.stderr.write(f"cnirun: {e}\n")
        return EXIT_CNIRUN
    except Interrupted as e:
        sys.stderr.write("cnirun: interrupted during set-up; everything was torn down\n")
        return 128 + e.signum
    finally:
        if p is not None:
            p.release_ports()
        gate.restore()


# -- Docker ----------------------------------------------------------------------------
def _docker_mode(p: Plan) -> str:
    from .engines.docker_mode import choose

    extra_ips = [n.name for n in p.networks[1:] if n.name in p.ips]
    return choose(p.req.mode, p.cni, p.file_networks, extra_ips)


def _docker_client(spec: Any, sdk_ok: bool = True) -> Any:
    """The lean Engine API client when it can do this run (unix socket, plain options), else the SDK's.

    sdk_ok=False: None instead of importing the SDK here.
    """
    from .engines.dockerapi import LeanDocker, lean_supported, unix_socket_path

    sock = unix_socket_path()
    if sock and lean_supported(spec):
        return LeanDocker(sock)
    if not sdk_ok:
        return None
    from .engines.docker import Docker

    return Docker()


def _run_docker(p: Plan, gate: SignalGate) -> int:
    req = p.req
    if _docker_mode(p) == "hook":
        try:
            return _run_docker_hook(p, _docker_client(req.spec), gate)
        except RuntimeUnknown as e:
            if req.mode == "hook":
                raise RunFailed(
                    f"--mode hook: dockerd does not know the cnirun runtime ({e}): run "
                    "`cnirun install docker-runtime` (it reloads dockerd)"
                ) from None
            # daemon.json names the runtime but dockerd was not reloaded: the sandbox always works.
    return _run_docker_sandbox(p, gate)


def _run_docker_sandbox(p: Plan, gate: SignalGate) -> int:
    """Helper container holding the netns; ADD; the workload joins it with --network container:.

    The helper is created and started by a thread, and ADD runs there too,
    while the main thread creates the workload (and, when the run needs the
    Docker SDK, imports it meanwhile: the helper goes over the lean client).
    """
    from .attach import attach
    from .engines.dockerapi import LeanDocker, unix_socket_path
    from .state import RunMeta, RunState, netns_identity
    from .teardown import cni_env

    req, spec = p.req, p.req.spec
    st = RunState.create()
    meta = RunMeta(
        id=st.id, engine="docker", image=spec.image, name=spec.name, networks=[n.name for n in p.networks],
        detached=spec.detach, remove=spec.remove, cni_env=cni_env(p.cni),
    )
    st.write_meta(meta)
    base_labels = {"cnirun.id": st.id, "cnirun.state": str(st.path.parent)}
    workload_started = False
    code = EXIT_CNIRUN
    add_result: dict[str, Any] = {}
    sandbox_made = threading.Event()
    sock = unix_socket_path()
    docker: Any = _docker_client(spec, sdk_ok=not sock)  # None: the SDK is imported below, in parallel

    def add() -> None:
        try:
            helper = LeanDocker(sock) if sock else docker.clone()
            try:
                meta.sandbox = helper.create_sandbox(spec.image, spec.hostname,
                                                     {**base_labels, "cnirun.role": "sandbox"})
                st.write_meta(meta)  # before the main thread goes on: teardown must know it
            finally:
                sandbox_made.set()
            helper.start(meta.sandbox)
            netns = helper.netns_of(meta.sandbox)
            meta.netns, meta.netns_id = netns, netns_identity(netns)
            # Our own reference to the netns: teardown can then remove the
            # sandbox while DEL still runs in the netns (see _teardown_parallel).
            add_result["netns_fd"] = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
            if netns_identity(f"/proc/self/fd/{add_result['netns_fd']}") != meta.netns_id:
                raise EngineError(f"docker helper container {meta.sandbox[:12]} exited right after start")
            add_result["atts"] = attach(p.cni, p.networks, st.id, netns, p.options)
        except BaseException as e:  # noqa: BLE001 - handed to the main thread
            add_result["error"] = e

    t = threading.Thread(target=add, daemon=True)
    try:
        t.start()
        if docker is None:
            docker = _docker_client(spec)  # the SDK import runs while dockerd starts the helper
        while not sandbox_made.wait(0.05):  # short waits: a signal handler can still interrupt us
            pass
        if not meta.sandbox:
            t.join()
            raise add_result["error"]
        hostname = spec.hostname or meta.sandbox[:12]  # docker's default: the (sandbox's) short ID
        binds = _host_file_binds(st)
        try:
            labels = {**spec.labels, **base_labels, "cnirun.role": "workload", "cnirun.sandbox": meta.sandbox}
            meta.workload = docker.create_workload(
                spec, f"container:{meta.sandbox}", labels, binds, auto_remove=spec.remove and spec.detach
            )
        finally:
            while t.is_alive():
                t.join(0.05)
        st.write_meta(meta)
        p.release_ports()  # ADD cached the mappings (or failed and undid itself)
        if "error" in add_result:
            raise add_result["error"]
        _write_host_files(st, req, add_result["atts"], hostname)
        meta.phase = "running"
        st.write_meta(meta)
        if spec.detach:
            from .watch import ensure_watcher

            docker.start(meta.workload)
            workload_started = True
            st.unlock()  # the watcher owns it from here
            ensure_watcher()
            sys.stdout.write(meta.workload + "\n")
            sys.stdout.flush()
            return 0
        code = _foreground(docker, meta.workload, spec, gate)
        workload_started = True
        return code
    except Exception as e:
        if isinstance(e, StartFailed):
            sys.stderr.write(f"cnirun: {e}\n")
            code = e.code
            return code
        raise
    finally:
        if not (spec.detach and workload_started):
            gate.shield()
            if t.ident is not None:
                t.join()  # an interrupted set-up: let ADD finish (or undo itself) before DEL
            if docker is None:
                docker = _docker_client(spec)
            st.write_meta(meta)
            errors = _teardown_parallel(st, meta, docker, add_result.get("netns_fd"))
            for err in errors:
                sys.stderr.write(f"cnirun: teardown: {err}\n")


def _teardown_parallel(st: RunState, meta: RunMeta, docker: Any, netns_fd: int | None) -> list[str]:
    """DEL while the workload (and, with our netns reference, the sandbox) is removed.

    DEL needs the netns: normally the sandbox holds it, so the sandbox goes
    after DEL. When this process holds the netns open (netns_fd), DEL runs in
    /proc/<our pid>/fd/N (the same netns, checked by identity) and the sandbox
    can go at the same time; closing the fd afterwards frees the netns.
    """
    from .state import RunMeta
    from .teardown import teardown

    errors: list[str] = []
    removals = [meta.workload] if meta.workload and meta.remove else []
    rest = RunMeta(**{**meta.__dict__, "workload": ""})
    if netns_fd is not None and meta.sandbox:
        removals.append(meta.sandbox)
        rest.sandbox = ""
        rest.netns = f"/proc/{os.getpid()}/fd/{netns_fd}"

    def rm(cid: str) -> None:
        try:
            docker.clone().remove(cid)
        except Exception as e:  # noqa: BLE001
            errors.append(str(e))

    threads = [threading.Thread(target=rm, args=(cid,)) for cid in removals]
    for th in threads:
        th.start()
    try:
        errors += teardown(st, rest, docker, stop=False)
    finally:
        for th in threads:
            th.join()
        if netns_fd is not None:
            os.close(netns_fd)
    return errors


class StartFailed(Exception):
    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def _foreground(
    docker: Any, cid: str, spec: Any, gate: SignalGate, on_started: Any = None, auto_removed: bool = False
) -> int:
    """Attach, start, relay I/O and signals, and return the exit status.

    on_started: called once start returned (or failed). auto_removed: dockerd
    removes the container on exit; the wait (registered before start, lean
    client only) then returns once it is gone.
    """
    from .engines.docker import StartError

    pending = None
    if hasattr(docker, "wait_pending"):
        pending = docker.wait_pending(cid, "removed" if auto_removed else "next-exit")
    sock = docker.attach_socket(cid, stdin=spec.interactive)
    raw = getattr(sock, "_sock", sock)
    restore_tty = None
    if spec.tty and spec.interactive and os.isatty(0):
        restore_tty = _raw_terminal()
    out_thread = threading.Thread(target=_pump_out, args=(sock, spec.tty), daemon=True)
    out_thread.start()
    try:
        try:
            docker.start(cid)
        except StartError as e:
            raise StartFailed(str(e), e.exit_code()) from None
        finally:
            if on_started is not None:
                on_started()
        waiter = docker.clone()

        def forward(signum: int) -> None:
            waiter.kill(cid, signal.Signals(signum).name)

        gate.forward = forward
        if spec.tty and os.isatty(1):
            _resize(docker, cid)
            signal.signal(signal.SIGWINCH, lambda *_: threading.Thread(target=_resize, args=(waiter, cid)).start())
        if spec.interactive:
            threading.Thread(target=_pump_in, args=(raw,), daemon=True).start()
        result: dict[str, int] = {}
        done = threading.Event()

        def wait() -> None:
            result["code"] = pending.result() if pending is not None else docker.wait(cid)
            done.set()

        threading.Thread(target=wait, daemon=True).start()
        done.wait()  # interruptible: signal handlers run and forward
        out_thread.join(2.0)  # drain what the container printed last
        return result["code"]
    finally:
        gate.forward = None
        if pending is not None:
            pending.close()
        if restore_tty:
            restore_tty()
        try:
            raw.close()
        except OSError:
            pass


def _pump_out(sock: Any, tty: bool) -> None:
    from .engines.dockerapi import Hijacked, frames

    if isinstance(sock, Hijacked):
        stream_iter = frames(sock, tty)
    else:
        from docker.utils.socket import frames_iter

        stream_iter = frames_iter(sock, tty)
    try:
        for stream, data in stream_iter:
            os.write(2 if stream == 2 else 1, data)
    except OSError:
        pass


def _pump_in(raw: Any) -> None:
    try:
        while True:
            data = os.read(0, 65536)
            if not data:
                break
            raw.sendall(data)
        raw.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def _raw_terminal() -> Any:
    import termios
    import tty

    old = termios.tcgetattr(0)
    tty.setraw(0)
    return lambda: termios.tcsetattr(0, termios.TCSADRAIN, old)


def _resize(docker: Any, cid: str) -> None:
    try:
        size = os.get_terminal_size(1)
    except OSError:
        return
    docker.resize(cid, size.lines, size.columns)


class RuntimeUnknown(Exception):
    """dockerd refused runtime `cnirun` at create: daemon.json names it but dockerd was not reloaded."""


def _run_docker_hook(p: Plan, docker: Any, gate: SignalGate) -> int:
    """An ordinary docker run with the cnirun runtime; the hook attaches from the labels."""
    from .options import ContainerNetworkSpec

    req, spec = p.req, p.req.spec
    first_ip = p.ips.get(p.networks[0].name, "")
    netspec = ContainerNetworkSpec(networks=[n.name for n in p.networks], ports=p.ports, ip=first_ip, mac=req.mac)
    labels = {**spec.labels, **netspec.to_labels()}
    # Foreground --rm: dockerd removes the container as it exits (as `docker run --rm`), when the
    # client can register its wait before start; else cnirun removes it after the wait.
    auto_remove = spec.remove and (spec.detach or hasattr(docker, "wait_pending"))
    try:
        cid = docker.create_workload(
            spec, "none", labels, [], runtime="cnirun", auto_remove=auto_remove, hostname=spec.hostname or None,
            dns=req.dns, dns_search=req.dns_search,  # the hook cannot write resolv.conf: dockerd does
        )
    except EngineError as e:
        if "runtime" in str(e) and ("unknown" in str(e) or "invalid" in str(e)):
            raise RuntimeUnknown(str(e).split(": ", 1)[-1]) from None
        raise
    if spec.detach:
        try:
            docker.start(cid)
        except Exception as e:
            docker.remove(cid)
            raise RunFailed(str(e), getattr(e, "exit_code", lambda: EXIT_CNIRUN)()) from None
        finally:
            p.release_ports()  # the hook's ADD ran inside start
        sys.stdout.write(cid + "\n")
        return 0
    try:
        return _foreground(docker, cid, spec, gate, on_started=p.release_ports, auto_removed=auto_remove)
    except StartFailed as e:
        sys.stderr.write(f"cnirun: {e}\n")
        return e.code
    finally:
        gate.shield()
        if spec.remove:
            docker.remove(cid)  # gone already when auto-removed (then a quick 404), else now


# -- Podman -------------------------------------------------------------------------------
class _EarlyDel:
    """DEL as soon as the container has stopped (a poststop hook writes to a FIFO).

    `podman run --rm` spends tens of ms removing the container after it
    stopped; the netns is cnirun's, so DEL need not wait for that. The
    final teardown still runs detach again (then a no-op, or a retry).
    """

    def __init__(self, st: RunState, meta: RunMeta) -> None:
        self.fifo = str(st.path / "exited")
        os.mkfifo(self.fifo, 0o600)
        self._fd = os.open(self.fifo, os.O_RDWR | os.O_CLOEXEC)
        self._meta = meta
        self._thread: threading.Thread | None = None
        self._cancelled = False

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        from .teardown import detach_networks

        try:
            os.read(self._fd, 1)
        except OSError:
            return
        if not self._cancelled:
            detach_networks(self._meta)  # errors: the final teardown retries and reports

    def finish(self) -> None:
        """Wait for an early DEL under way; wake the reader if the hook never ran. Idempotent."""
        if self._fd < 0:
            return
        if self._thread is not None and self._thread.is_alive():
            import select

            if not select.select([self._fd], [], [], 0)[0]:
                self._cancelled = True
                os.write(self._fd, b"c")
            self._thread.join()
        os.close(self._fd)
        self._fd = -1


def _run_podman(p: Plan, gate: SignalGate) -> int:
    import subprocess

    from . import netns as nsmod
    from .attach import attach
    from .engines import podman
    from .state import RunMeta, RunState, netns_identity
    from .teardown import cni_env, teardown

    req, spec = p.req, p.req.spec
    podman.podman_bin()
    st = RunState.create()
    meta = RunMeta(
        id=st.id, engine="podman", image=spec.image, name=spec.name, networks=[n.name for n in p.networks],
        detached=spec.detach, remove=spec.remove, cni_env=cni_env(p.cni),
    )
    st.write_meta(meta)
    hostname = spec.hostname or st.id[:12]
    cidfile = st.path / "cid"
    child: subprocess.Popen[bytes] | None = None
    early: _EarlyDel | None = None
    handed_over = False
    code = EXIT_CNIRUN
    try:
        name, path = nsmod.create(f"cnirun-{st.id[:16]}")
        meta.netns, meta.netns_id = path, netns_identity(path)
        st.write_meta(meta)
        binds = _host_file_binds(st)
        labels = {**spec.labels, "cnirun.id": st.id, "cnirun.state": str(st.path.parent), "cnirun.role": "workload"}
        # podman starts up while ADD runs; a prestart hook holds the container's
        # first instruction until ADD is done (and aborts it if ADD failed).
        gate_lock, gate_ok = st.path / "add.lock", st.path / "add.ok"
        gate_fd = os.open(gate_lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(gate_fd, fcntl.LOCK_EX)
        podman.write_gate_hook(str(st.path / "hooks.d"), str(gate_lock), str(gate_ok))
        if not spec.detach:
            early = _EarlyDel(st, meta)
            podman.write_exit_hook(str(st.path / "hooks.d"), early.fifo)
        argv = podman.run_argv(spec, path, labels, binds, hostname, str(cidfile), str(st.path / "hooks.d"))
        meta.phase = "running"
        st.write_meta(meta)
        child = subprocess.Popen(argv)
        try:
            atts = attach(p.cni, p.networks, st.id, path, p.options)
            _write_host_files(st, req, atts, hostname)
            gate_ok.touch()
            if early is not None:
                early.start()
        finally:
            p.release_ports()
            os.close(gate_fd)  # releases the hook: it starts the container or fails it

        def forward(signum: int) -> None:
            try:
                child.send_signal(signum)  # podman run proxies it to the container
            except ProcessLookupError:
                pass

        gate.forward = forward
        code = child.wait()
        if code < 0:
            code = 128 - code
        if early is not None:
            early.finish()  # DEL may be done already
        try:
            meta.workload = cidfile.read_text().strip()
        except OSError:
            pass
        if spec.detach and code == 0:
            from .watch import ensure_watcher

            st.write_meta(meta)
            st.unlock()
            ensure_watcher()
            handed_over = True
        return code
    finally:
        gate.forward = None
        if not handed_over:
            gate.shield()
            ended = child is not None and child.poll() is not None
            if child is not None and not ended:
                child.kill()
                child.wait()
            if not meta.workload:
                try:
                    meta.workload = cidfile.read_text().strip()
                except OSError:
                    pass
            if early is not None:
                early.finish()
            # podman run ended on its own: it stopped (and with --rm removed) the container.
            for err in teardown(st, meta, stop=not ended, workload=not ended):
                sys.stderr.write(f"cnirun: teardown: {err}\n")
