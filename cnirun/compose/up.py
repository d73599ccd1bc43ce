"""`cnirun compose up` and `down`: a project's networks and containers.

Each service runs through `cnirun run`'s own code (runner.run, detached,
sandbox mode so cnirun owns the container's /etc/hosts), so networking,
teardown on exit and `cnirun gc` behave exactly as for a single container.
This module adds what a project needs on top: its networks (installed with
compose labels, removed by `down`), start order, and hosts entries for every
peer on a shared network, rewritten in place whenever services come or go.
"""
from __future__ import annotations

import os
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from ..errors import CNIError
from .project import Project, Service

LABEL_PROJECT = "com.docker.compose.project"
LABEL_SERVICE = "com.docker.compose.service"
LABEL_NETWORK = "com.docker.compose.network"
COMPOSE_VERSION = "2.0.0-cnirun"
STOP_TIMEOUT = 10
TEARDOWN_WAIT = 20.0


class ComposeFailed(CNIError):
    """compose could not do what it was asked (the message says why)."""


@dataclass
class Member:
    """A running service container as its peers see it."""

    service: Service
    container: str
    state: Any  # cnirun.state.RunState
    addresses: dict[str, list[str]] = field(default_factory=dict)  # network name -> IPs


def say(msg: str) -> None:
    sys.stderr.write(msg + "\n")
    sys.stderr.flush()


# -- naming and labels -----------------------------------------------------------------

def network_names(project: Project) -> dict[str, str]:
    return {key: spec.name for key, spec in project.networks.items()}


def container_labels(project: Project, svc: Service) -> dict[str, str]:
    """The labels Docker Compose v2 puts on a container (tools find projects by them)."""
    return {
        **svc.labels,
        LABEL_PROJECT: project.name,
        LABEL_SERVICE: svc.name,
        "com.docker.compose.container-number": "1",
        "com.docker.compose.oneoff": "False",
        "com.docker.compose.project.config_files": project.file,
        "com.docker.compose.project.working_dir": project.working_dir,
        "com.docker.compose.config-hash": svc.config_hash(),
        "com.docker.compose.version": COMPOSE_VERSION,
        "com.docker.compose.depends_on": ",".join(f"{d}:service_started:false" for d in svc.depends_on),
        "com.docker.compose.image": svc.image,
    }


def network_labels(project: Project, key: str) -> dict[str, str]:
    return {LABEL_PROJECT: project.name, LABEL_NETWORK: key, "com.docker.compose.version": COMPOSE_VERSION}


def run_request(project: Project, svc: Service, engine: str) -> Any:
    """The `cnirun run` request for one service."""
    from ..engines.spec import RunSpec
    from ..request import RunRequest

    names = network_names(project)
    # Each network keeps its static address (cnirun run validates it against that network's subnets).
    ordered = list(svc.networks)
    command = list(svc.command or [])
    entrypoint: str | None = None
    if svc.entrypoint is not None:
        # Setting an entrypoint drops the image's CMD (as compose does); its
        # extra words come before the service's command.
        entrypoint = svc.entrypoint[0] if svc.entrypoint else ""
        command = svc.entrypoint[1:] + command
    env = [k if v is None else f"{k}={v}" for k, v in svc.environment.items()]
    spec = RunSpec(
        image=svc.image, command=command, entrypoint=entrypoint, env=env, volumes=list(svc.volumes),
        workdir=svc.working_dir, user=svc.user, name=project.container_name(svc),
        hostname=svc.hostname or svc.name, labels=container_labels(project, svc), init=svc.init,
        detach=True, remove=False, privileged=svc.privileged, read_only=svc.read_only,
        cap_add=list(svc.cap_add), cap_drop=list(svc.cap_drop), stop_signal=svc.stop_signal,
        add_hosts=list(svc.extra_hosts), tty=svc.tty, interactive=svc.stdin_open, restart="no",
    )
    return RunRequest(
        spec=spec, networks=[names[n.key] for n in ordered], publish=list(svc.ports),
        network_ips={names[n.key]: n.ipv4_address for n in ordered if n.ipv4_address}, engine=engine,
        # Service discovery rewrites each service's hosts file in its run state:
        # Docker's hook mode lets dockerd own that file (Podman runs always own it).
        mode="sandbox",
    )


# -- state of the project's running containers ---------------------------------------

def _states_by_name() -> dict[str, Any]:
    from ..state import list_states

    out: dict[str, Any] = {}
    for st in list_states():
        meta = st.read_meta()
        if meta is not None and meta.name:
            out[meta.name] = (st, meta)
    return out


def members(project: Project) -> list[Member]:
    """The project's services whose run is up, with their addresses per network."""
    from .. import cache as cnicache
    from ..lifecycle import Attachment
    from ..teardown import cni_for

    states = _states_by_name()
    out: list[Member] = []
    for svc in project.services:
        cname = project.container_name(svc)
        if cname not in states:
            continue
        st, meta = states[cname]
        if meta.phase != "running":
            continue
        m = Member(svc, cname, st)
        for att in cnicache.list_attachments(cni_for(meta).cache_dir):
            if att.container_id == st.id:
                addrs = Attachment(att.network_name, att.ifname, att.result or {}).addresses()
                m.addresses[att.network_name] = [a.split("/", 1)[0] for a in addrs]
        out.append(m)
    return out


def hosts_entries(project: Project, me: Member, peers: list[Member]) -> list[tuple[str, list[str]]]:
    """Own addresses, then every peer on each network we share (service name, aliases, container)."""
    names = network_names(project)
    entries: list[tuple[str, list[str]]] = []
    own = [me.service.hostname or me.service.name, me.container]
    for net in me.service.networks:
        for ip in me.addresses.get(names[net.key], []):
            entries.append((ip, list(dict.fromkeys(own + [me.service.name]))))
            own = [me.service.name]  # the hostname resolves to the first address only
    for peer in peers:
        if peer is me:
            continue
        mine = {names[n.key] for n in me.service.networks}
        for net in peer.service.networks:
            netname = names[net.key]
            if netname not in mine:
                continue
            pnames = [peer.service.name, *net.aliases, peer.container]
            if peer.service.hostname and peer.service.hostname not in pnames:
                pnames.append(peer.service.hostname)
            for ip in peer.addresses.get(netname, []):
                entries.append((ip, list(dict.fromkeys(pnames))))
    for h in me.service.extra_hosts:
        name, sep, ip = h.replace("=", ":", 1).partition(":")
        if sep:
            entries.append((ip, [name]))
    return entries


def refresh_hosts(project: Project) -> None:
    """Rewrite every running service's /etc/hosts in place (it is a bind mount)."""
    from ..hostfiles import write_hosts

    current = members(project)
    for m in current:
        if m.state.hosts.exists():
            write_hosts(m.state.hosts, hosts_entries(project, m, current))


# -- networks ---------------------------------------------------------------------------

def ensure_networks(project: Project, cni: Any) -> list[str]:
    """Install the project's networks that do not exist yet; return the names created."""
    from ..netstore import store
    from ..netstore.networks import Planner

    existing = {n.name: n for n in cni.networks()}
    planner = Planner(list(existing.values()))
    created: list[str] = []
    try:
        for spec in project.used_networks():
            if spec.external:
                if spec.name not in existing:
                    raise project.doc.error(spec.path + ("external",),
                                            f'external network "{spec.name}" does not exist: create it first '
                                            f"(cnirun network create {spec.name})")
                continue
            if spec.name in existing:
                found = existing[spec.name]
                if store.labels(found).get(LABEL_PROJECT) != project.name:
                    raise project.doc.error(spec.path, f'network "{spec.name}" already exists ({found.source}) '
                                                       "and does not belong to this project: rename it with name:")
                continue
            spec.labels = {**spec.labels, **network_labels(project, spec.key)}
            conf = planner.conflist(spec, {"createdBy": "cnirun compose"})
            store.install(cni, conf)
            created.append(spec.name)
            say(f" Network {spec.name}  Created")
    except BaseException:
        for name in created:
            store.remove(cni, name)
        raise
    return created


def remove_networks(project_name: str, cni: Any) -> list[str]:
    from ..netstore import store

    errors: list[str] = []
    for net in cni.networks():
        if not store.is_managed(net) or store.labels(net).get(LABEL_PROJECT) != project_name:
            continue
        try:
            r = store.remove(cni, net.name)
            for w in r.warnings:
                errors.append(w)
            say(f" Network {net.name}  Removed")
        except CNIError as e:
            errors.append(str(e))
    return errors


# -- containers ---------------------------------------------------------------------------

def start_service(project: Project, svc: Service, engine: str) -> str:
    """Start one service's container (detached) through `cnirun run`'s runner; its container ID."""
    from .. import runner

    outcome = runner.run(run_request(project, svc, engine))
    for line in outcome.warnings:
        say(f" Container {project.container_name(svc)}  teardown: {line}")
    if outcome.code != 0:
        raise ComposeFailed(f"service {svc.name}: container {project.container_name(svc)} failed to start: "
                            f"{outcome.error or f'exit {outcome.code}'}")
    say(f" Container {project.container_name(svc)}  Started")
    return outcome.container


def _wait_torn_down(run_state: Any, deadline: float) -> bool:
    while time.monotonic() < deadline:
        if not run_state.path.exists():
            return True
        time.sleep(0.1)
    return not run_state.path.exists()


def remove_containers(project_name: str, eng: Any, only: set[str] | None = None) -> list[str]:
    """Stop and remove the project's containers; DEL their attachments. Returns problems."""
    from ..teardown import teardown

    errors: list[str] = []
    containers = [c for c in eng.containers(f"{LABEL_PROJECT}={project_name}") if only is None or c.name in only]
    states = _states_by_name()
    threads = [threading.Thread(target=eng.stop, args=(c.id, STOP_TIMEOUT)) for c in containers if c.running]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for c in containers:
        try:
            eng.remove(c.id)
            say(f" Container {c.name}  Removed")
        except CNIError as e:
            errors.append(str(e))
            continue
        if c.name in states:
            st, meta = states[c.name]
            # The watcher tears a detached run down when its container is
            # removed (a stopped one keeps its networks for a restart); when
            # no one owns the run (watcher gone), we do it ourselves.
            if not _wait_torn_down(st, time.monotonic() + TEARDOWN_WAIT) and st.lock(blocking=False):
                errors += teardown(st, meta, eng, stop=False)
            elif st.path.exists():
                errors.append(f"container {c.name}: its networks are still attached (run `cnirun gc`)")
    return errors


# -- logs ------------------------------------------------------------------------------------

class LogPrinter:
    """Follows every container's output, each line prefixed like compose: `name  | line`."""

    def __init__(self, eng: Any, width: int) -> None:
        self.eng = eng
        self.width = width
        self.lock = threading.Lock()
        self.threads: list[threading.Thread] = []

    def follow(self, name: str, cid: str) -> None:
        t = threading.Thread(target=self._pump, args=(name, cid), daemon=True)
        t.start()
        self.threads.append(t)

    def _pump(self, name: str, cid: str) -> None:
        prefix = f"{name.ljust(self.width)}  | ".encode()
        buf = b""
        for chunk in self.eng.logs(cid):
            buf += chunk
            *lines, buf = buf.split(b"\n")
            with self.lock:
                for line in lines:
                    os.write(1, prefix + line + b"\n")
        if buf:
            with self.lock:
                os.write(1, prefix + buf + b"\n")


# -- the commands ------------------------------------------------------------------------------

def up(project: Project, detach: bool, engine: str) -> int:
    from ..runtime import CNI
    from ..engines import get as engine_for

    if os.geteuid() != 0:
        raise ComposeFailed("compose up needs root to run CNI plugins: run it with sudo")
    eng = engine_for(engine)
    cni = CNI()
    for svc in project.services:
        run_request(project, svc, engine)  # every service checked before anything is made
    existing = {c.name: c for c in eng.containers(f"{LABEL_PROJECT}={project.name}")}
    created: list[str] = []
    started: list[str] = []
    try:
        created = ensure_networks(project, cni)
        for svc in project.services:
            cname = project.container_name(svc)
            old = existing.get(cname)
            if old is not None and old.running and old.labels.get("com.docker.compose.config-hash") \
                    == svc.config_hash():
                say(f" Container {cname}  Running")
                continue
            if old is not None:
                remove_containers(project.name, eng, {cname})
            start_service(project, svc, engine)
            started.append(cname)
            refresh_hosts(project)
    except BaseException:
        # Nothing half-done: undo this invocation's containers and networks.
        for problem in remove_containers(project.name, eng, set(started)) if started else []:
            say(f"cnirun: cleanup: {problem}")
        for name in created:
            try:
                from ..netstore import store

                store.remove(cni, name)
            except CNIError as e:
                say(f"cnirun: cleanup: {e}")
        raise
    if detach:
        return 0
    return _foreground(project, eng, cni)


def _foreground(project: Project, eng: Any, cni: Any) -> int:
    import signal

    names = {project.container_name(s): s for s in project.services}
    width = max(len(n) for n in names)
    printer = LogPrinter(eng, width)
    ids = {c.name: c.id for c in eng.containers(f"{LABEL_PROJECT}={project.name}") if c.name in names}
    for name, cid in ids.items():
        printer.follow(name, cid)
    stop = threading.Event()
    old = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        known = set(ids)
        while not stop.is_set():
            alive = {m.container for m in members(project)}
            if alive != known:
                refresh_hosts(project)  # a service went away: its peers forget it
                known = alive
            if not any(eng.is_running(cid) for cid in ids.values()):
                break
            stop.wait(1.0)
        say("Gracefully stopping... (press Ctrl+C again to force)" if stop.is_set() else "All services exited")
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    return down(project.name, eng.name, cni)


def down(project_name: str, engine: str, cni: Any = None) -> int:
    from ..runtime import CNI
    from ..engines import get as engine_for

    eng = engine_for(engine)
    cni = cni or CNI()
    errors = remove_containers(project_name, eng)
    errors += remove_networks(project_name, cni)
    for e in errors:
        say(f"cnirun: {e}")
    return 1 if errors else 0

