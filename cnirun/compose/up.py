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

from ..core.errors import CNIError
from .project import Project, Service
from .services import MAX_REPLICAS
from .mounts import forget, materialize

LABEL_PROJECT = "com.docker.compose.project"
LABEL_SERVICE = "com.docker.compose.service"
LABEL_NETWORK = "com.docker.compose.network"
LABEL_VOLUME = "com.docker.compose.volume"
HEALTH_WAIT = 180.0
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
    state: Any  # cnirun.state.runs.RunState
    addresses: dict[str, list[str]] = field(default_factory=dict)  # network name -> IPs


# The progress line `up` draws on a terminal (cli.output.Progress, handed in by the CLI):
# every message clears it first, so lines never mix with it. None off a terminal.
_progress: Any = None


def say(msg: str) -> None:
    if _progress is not None:
        _progress.clear()
    sys.stderr.write(msg + "\n")
    sys.stderr.flush()


# -- naming and labels -----------------------------------------------------------------

def network_names(project: Project) -> dict[str, str]:
    return {key: spec.name for key, spec in project.networks.items()}


def container_labels(project: Project, svc: Service, number: int = 1) -> dict[str, str]:
    """The labels Docker Compose v2 puts on a container (tools find projects by them)."""
    return {
        **svc.labels,
        LABEL_PROJECT: project.name,
        LABEL_SERVICE: svc.name,
        "com.docker.compose.container-number": str(number),
        "com.docker.compose.oneoff": "False",
        "com.docker.compose.project.config_files": project.file,
        "com.docker.compose.project.working_dir": project.working_dir,
        "com.docker.compose.config-hash": svc.config_hash(),
        "com.docker.compose.version": COMPOSE_VERSION,
        "com.docker.compose.depends_on": ",".join(f"{d}:{dep.condition}:{str(dep.restart).lower()}"
                                                  for d, dep in svc.depends_on.items()),
        "com.docker.compose.image": svc.image,
    }


def network_labels(project: Project, key: str) -> dict[str, str]:
    return {LABEL_PROJECT: project.name, LABEL_NETWORK: key, "com.docker.compose.version": COMPOSE_VERSION}


def volume_labels(project: Project, key: str) -> dict[str, str]:
    return {LABEL_PROJECT: project.name, LABEL_VOLUME: key, "com.docker.compose.version": COMPOSE_VERSION}


def run_spec(project: Project, svc: Service, number: int = 1) -> Any:
    """The container options of one service's container (everything but its networks)."""
    from ..engines.spec import RunSpec

    command = list(svc.command or [])
    entrypoint: str | None = None
    if svc.entrypoint is not None:
        # Setting an entrypoint drops the image's CMD (as compose does); its
        # extra words come before the service's command.
        entrypoint = svc.entrypoint[0] if svc.entrypoint else ""
        command = svc.entrypoint[1:] + command
    env = [k if v is None else f"{k}={v}" for k, v in svc.environment.items()]
    return RunSpec(
        image=svc.image, command=command, entrypoint=entrypoint, env=env, volumes=list(svc.volumes),
        workdir=svc.working_dir, user=svc.user, name=project.container_name(svc, number),
        hostname=svc.hostname or svc.name, labels=container_labels(project, svc, number), init=svc.init,
        detach=True, remove=False, privileged=svc.privileged, read_only=svc.read_only,
        cap_add=list(svc.cap_add), cap_drop=list(svc.cap_drop), stop_signal=svc.stop_signal,
        stop_timeout=int(svc.stop_grace_period) if svc.stop_grace_period is not None else None,
        add_hosts=list(svc.extra_hosts), tty=svc.tty, interactive=svc.stdin_open, restart=svc.restart,
        tmpfs=list(svc.tmpfs), memory=svc.memory, memory_reservation=svc.memory_reservation, cpus=svc.cpus,
        cpu_shares=svc.cpu_shares, pids_limit=svc.pids_limit, shm_size=svc.shm_size,
        security_opt=list(svc.security_opt), group_add=list(svc.group_add), devices=list(svc.devices),
        healthcheck=svc.healthcheck, ulimits=list(svc.ulimits), sysctls=dict(svc.sysctls),
        expose=list(svc.expose), platform=svc.platform, log_driver=svc.log_driver, log_opts=dict(svc.log_opts),
    )


def run_request(project: Project, svc: Service, engine: str, number: int = 1) -> Any:
    """The `cnirun run` request for one service's container."""
    from ..run.request import RunRequest

    names = network_names(project)
    ordered = list(svc.networks)
    return RunRequest(
        spec=run_spec(project, svc, number), networks=[names[n.key] for n in ordered], publish=list(svc.ports),
        network_ips={names[n.key]: n.ipv4_address for n in ordered if n.ipv4_address}, engine=engine,
        network_ips6={names[n.key]: n.ipv6_address for n in ordered if n.ipv6_address},
        mac=svc.mac_address, dns=list(svc.dns), dns_search=list(svc.dns_search),
        ingress_rate=svc.ingress_rate, egress_rate=svc.egress_rate,
        # DNS names (cnirun.dns), as Docker's: the service name and the container
        # name (spec.name) on every network, the aliases on their network.
        aliases=[svc.name, *([svc.hostname] if svc.hostname else [])], network_aliases={names[n.key]: list(n.aliases) for n in ordered if n.aliases},
        # Service discovery rewrites each service's hosts file in its run state:
        # Docker's hook mode lets dockerd own that file (Podman runs always own it).
        mode="sandbox",
    )


# -- state of the project's running containers ---------------------------------------

def _states_by_name() -> dict[str, Any]:
    from ..state.runs import list_states

    out: dict[str, Any] = {}
    for st in list_states():
        meta = st.read_meta()
        if meta is not None and meta.name:
            out[meta.name] = (st, meta)
    return out


def members(project: Project) -> list[Member]:
    """The project's services whose run is up, with their addresses per network."""
    from ..cni import cache as cnicache
    from ..network.attachment import Attachment
    from ..run.caches import cni_for

    states = _states_by_name()
    out: list[Member] = []
    for svc in project.services:
        for cname in project.container_names(svc):
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
    """Own addresses, then every peer on each network we share that has no DNS (service name, aliases,
    container): on a network with a resolver (cnirun.dns) the peers are found by DNS, not in this file."""
    from ..dns.resolver import resolvers

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
            if netname not in mine or resolvers(netname):
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
    from ..network.files import write_hosts

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


def remove_networks(project_name: str, cni: Any, in_use_ok: bool = False) -> list[str]:
    """Remove the project's networks; in_use_ok: one still attached (kept orphans) stays, said, not an error."""
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
        except store.NetworkInUse as e:
            if not in_use_ok:
                errors.append(str(e))
            else:
                say(f" Network {net.name}  Resource is still in use")
        except CNIError as e:
            errors.append(str(e))
    return errors


# -- containers ---------------------------------------------------------------------------

def start_service(project: Project, svc: Service, engine: str, number: int = 1) -> str:
    """Start one container of a service (detached) through `cnirun run`'s runner; its container ID."""
    from .. import run as runner

    cname = project.container_name(svc, number)
    outcome = runner.run(run_request(project, svc, engine, number))
    for line in outcome.warnings:
        say(f" Container {cname}  teardown: {line}")
    if outcome.code != 0:
        raise ComposeFailed(f"service {svc.name}: container {cname} failed to start: "
                            f"{outcome.error or f'exit {outcome.code}'}")
    say(f" Container {cname}  Started")
    return outcome.container


# What an engine may lack (Engine.unsupported, by RunSpec field): the compose key, and the service's
# settings left out with it (a log driver's options belong to it).
_LEFT_OUT = {"log_driver": (("logging", "driver"), ("log_driver", "log_opts"))}


def engine_lacks(project: Project, svc: Service, eng: Any) -> None:
    """Leave out of svc what the engine cannot do, one WARN line each (compose warns and goes on)."""
    for fld, why in eng.unsupported(run_spec(project, svc)).items():
        if fld not in _LEFT_OUT:
            raise ComposeFailed(f"service {svc.name}: {why}")
        key, dropped = _LEFT_OUT[fld]
        say(f"WARN {project.doc.where(svc.path + key)}: {why}")
        for name in dropped:
            setattr(svc, name, type(getattr(svc, name))())


def start_engine_networked(project: Project, svc: Service, eng: Any, number: int = 1) -> str:
    """A network_mode service: the engine's own network (host, none, another container's), no CNI."""
    mode = svc.network_mode
    if mode.startswith("service:"):
        mode = "container:" + project.container_name(project.service(mode.split(":", 1)[1]))
    spec = run_spec(project, svc, number)
    cid = ""
    try:
        cid = str(eng.create_workload(spec, mode, dict(spec.labels), []))
        eng.start(cid)
    except CNIError as e:
        if cid:  # created, not started (Docker checks container:X only then): not left behind
            try:
                eng.remove(cid)
            except CNIError:
                pass
        raise ComposeFailed(f"service {svc.name}: network_mode {svc.network_mode}: {e}") from None
    say(f" Container {spec.name}  Started")
    return cid


def wait_for(project: Project, svc: Service, eng: Any) -> None:
    """Block until every dependency of svc meets its depends_on condition (compose's semantics)."""
    containers = {c.name: c for c in project_containers(eng, project.name)}
    for dep, d in svc.depends_on.items():
        if d.condition == "service_started":
            continue
        try:
            target = project.service(dep)
        except KeyError:
            continue
        for cname in project.container_names(target):
            c = containers.get(cname)
            if c is None:
                continue
            deadline = time.monotonic() + HEALTH_WAIT
            while True:
                if d.condition == "service_healthy":
                    h = eng.health(c.id)
                    if h == "healthy":
                        say(f" Container {cname}  Healthy")
                        break
                    if h == "unhealthy":
                        raise ComposeFailed(f"dependency failed to start: container {cname} is unhealthy")
                    if h == "":
                        raise ComposeFailed(f"service {svc.name} waits for {dep} to be healthy, but {cname} has "
                                            "no healthcheck: add one to {dep} or use service_started")
                else:  # service_completed_successfully
                    code = eng.exit_code(c.id)
                    if code is not None:
                        if code != 0:
                            raise ComposeFailed(f"service {dep} didn't complete successfully: exit {code}")
                        say(f" Container {cname}  Exited")
                        break
                if time.monotonic() > deadline:
                    raise ComposeFailed(f"timed out after {HEALTH_WAIT:.0f}s waiting for {cname} "
                                        f"({d.condition})")
                time.sleep(0.5)


def _wait_torn_down(run_state: Any, deadline: float) -> bool:
    while time.monotonic() < deadline:
        if not run_state.path.exists():
            return True
        time.sleep(0.1)
    return not run_state.path.exists()


def project_containers(eng: Any, project_name: str) -> list[Any]:
    """The project's service containers (a sandbox helper of an image carrying compose labels is not one)."""
    return [c for c in eng.containers(f"{LABEL_PROJECT}={project_name}") if c.labels.get("cnirun.role") != "sandbox"]


def _dependents_first(containers: list[Any]) -> list[Any]:
    """Containers in compose's removal order: a service before those it depends on (its depends_on label,
    which holds network_mode service:X's X too). Podman refuses to remove a container whose network
    namespace another container still shares."""
    deps = {c.labels.get(LABEL_SERVICE, ""): [d.split(":", 1)[0] for d in
                                               c.labels.get("com.docker.compose.depends_on", "").split(",") if d]
            for c in containers}
    depth: dict[str, int] = {}

    def level(svc: str, seen: frozenset[str] = frozenset()) -> int:
        if svc not in depth:
            depth[svc] = 1 + max((level(d, seen | {svc}) for d in deps.get(svc, []) if d not in seen), default=-1)
        return depth[svc]

    return sorted(containers, key=lambda c: -level(c.labels.get(LABEL_SERVICE, "")))


def remove_containers(project_name: str, eng: Any, only: set[str] | None = None) -> list[str]:
    """Stop and remove the project's containers; DEL their attachments. Returns problems."""
    from ..run.teardown import teardown

    errors: list[str] = []
    containers = _dependents_first([c for c in project_containers(eng, project_name)
                                    if only is None or c.name in only])
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

class UpOptions:
    """What `up` was asked beside the project (compose's flags).

    `pull` is `--pull` (None: each service's pull_policy); `scale` is
    `--scale SERVICE=N`, overriding the file's replicas."""

    def __init__(self, detach: bool = False, build: bool = False, force_recreate: bool = False,
                 no_deps: bool = False, services: list[str] | None = None, remove_orphans: bool = False,
                 pull: str | None = None, scale: dict[str, int] | None = None,
                 progress: Any = None) -> None:
        self.detach, self.build, self.force_recreate = detach, build, force_recreate
        self.no_deps, self.services, self.remove_orphans = no_deps, services or [], remove_orphans
        self.pull, self.scale = pull, dict(scale or {})
        # progress(total) -> a context manager with step(item) and clear(), e.g. cli.output.Progress.
        self.progress = progress


def parse_scale(values: list[str]) -> dict[str, int]:
    """`--scale SERVICE=N` (repeatable) as compose takes it."""
    out: dict[str, int] = {}
    for v in values:
        name, sep, num = v.partition("=")
        if not sep or not name or not num.isdigit() or len(num) > 6 or int(num) > MAX_REPLICAS:
            raise ComposeFailed(f"invalid --scale {v!r}: expected SERVICE=NUMBER (0 to {MAX_REPLICAS}), "
                                "e.g. --scale worker=3")
        out[name] = int(num)
    return out


def pull_policy(svc: Service, flag: str | None) -> str:
    """The policy for one service's image: `--pull` wins over pull_policy (as in compose v2);
    compose's if_not_present, daily and weekly are `missing` here (no pull-age record is kept)."""
    policy = flag or svc.pull_policy
    return {"if_not_present": "missing", "daily": "missing", "weekly": "missing"}.get(policy, policy)


def ensure_images(project: Project, services: list[Service], eng: Any, build: bool = False,
                  pull: str | None = None) -> None:
    """Build what has build: (always with --build or pull_policy build, else when the image is missing);
    make the others present through the engine's pull as `--pull`/pull_policy says (missing: when
    absent; always: every time; never: refuse when absent)."""
    from ..engines.images import ImageMissing, ensure_image

    for svc in services:
        policy = pull_policy(svc, pull)
        have = eng.has_image(svc.image)
        if svc.build is not None:
            # A built service's image is never pulled by up (compose's behaviour: it may not exist anywhere).
            if build or policy == "build" or not have:
                build_service(project, svc, eng)
            continue
        if policy == "build":
            raise ComposeFailed(f"service {svc.name}: pull_policy build needs a build: section")
        if policy == "missing" and have:
            continue
        if policy == "never" and not have:
            raise ComposeFailed(f"service {svc.name}: image {svc.image} is missing and the pull policy is never: "
                                f"pull or load it first, or use --pull missing")
        if policy == "never":
            continue
        say(f" Image {svc.image}  Pulling")
        try:
            # The one pull path `cnirun run --pull` takes; the engine's progress on a terminal only.
            ensure_image(eng.name, svc.image, "always", client=eng,
                         progress=sys.stderr if sys.stderr.isatty() else _Quiet())
        except ImageMissing as e:
            raise ComposeFailed(f"service {svc.name}: {e}") from None
        except CNIError as e:
            raise ComposeFailed(f"service {svc.name}: cannot pull {svc.image} ({e}); build or load it first") \
                from None
        say(f" Image {svc.image}  Pulled")


class _Quiet:
    """A progress sink for pulls off a terminal (compose prints its own Pulling/Pulled lines)."""

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


def build_service(project: Project, svc: Service, eng: Any) -> None:
    b = svc.build
    assert b is not None
    say(f" Image {svc.image}  Building")
    # No compose labels on the image: every container of it (Docker's sandbox
    # helper too) would inherit them and look like a service container.
    labels = dict(b.labels)
    eng.build(b.context, b.dockerfile, svc.image, b.args, b.target, labels, b.no_cache, b.pull)
    say(f" Image {svc.image}  Built")


def ensure_volumes(project: Project, eng: Any) -> list[str]:
    """Create the project's named volumes that do not exist (compose's labels); the names created."""
    used = {v.split(":", 1)[0] for s in project.services for v in s.volumes}
    created: list[str] = []
    for spec in project.volumes.values():
        if spec.name not in used:
            continue
        labels = eng.volume_labels(spec.name)
        if spec.external:
            if labels is None:
                raise ComposeFailed(f'external volume "{spec.name}" not found: create it first '
                                    f"(docker volume create {spec.name})")
            continue
        if labels is not None:
            if labels.get(LABEL_PROJECT) not in (None, project.name):
                say(f'WARN volume "{spec.name}" already exists but was created for project '
                    f'"{labels.get(LABEL_PROJECT)}": using it')
            continue
        eng.volume_create(spec.name, spec.driver, spec.driver_opts, {**spec.labels, **volume_labels(project,
                                                                                                     spec.key)})
        created.append(spec.name)
        say(f" Volume {spec.name}  Created")
    return created


def remove_volumes(project_name: str, eng: Any) -> list[str]:
    errors: list[str] = []
    for name in eng.volumes(f"{LABEL_PROJECT}={project_name}"):
        try:
            eng.volume_remove(name)
            say(f" Volume {name}  Removed")
        except CNIError as e:
            errors.append(str(e))
    return errors


def up(project: Project, detach: bool | UpOptions, engine: str) -> int:
    from ..cni.runtime import CNI
    from ..engines import get as engine_for

    opts = detach if isinstance(detach, UpOptions) else UpOptions(detach=bool(detach))
    if os.geteuid() != 0:
        raise ComposeFailed("compose up needs root to run CNI plugins: run it with sudo")
    eng = engine_for(engine)
    cni = CNI()
    known = {s.name: s for s in project.services}
    for name, n in opts.scale.items():
        if name not in known:
            raise ComposeFailed(f"--scale {name}={n}: no such service (services: {', '.join(known)})")
        known[name].replicas = n
    services = project.select(opts.services, with_deps=not opts.no_deps) if opts.services else project.services
    for svc in services:
        engine_lacks(project, svc, eng)
        run_request(project, svc, engine)  # every service checked before anything is made
        if not svc.attaches:
            say(f" Container {project.container_name(svc)}  network_mode {svc.network_mode}: no CNI networks")
    existing = {c.name: c for c in project_containers(eng, project.name)}
    wanted = {n for s in project.services for n in project.container_names(s)}
    orphans = [c for c in existing.values() if c.labels.get(LABEL_SERVICE) not in {s.name for s in project.services}]
    if orphans and not opts.remove_orphans:
        say(f"WARN Found orphan containers ({', '.join(c.name for c in orphans)}) for this project: "
            "run with --remove-orphans to clean them up")
    created: list[str] = []
    started: list[str] = []
    global _progress
    total = sum(len(project.container_names(s)) for s in services)
    _progress = opts.progress(total) if opts.progress is not None else None
    try:
        if orphans and opts.remove_orphans:
            for e in remove_containers(project.name, eng, {c.name for c in orphans}):
                say(f"cnirun: {e}")
        ensure_images(project, services, eng, opts.build, opts.pull)
        # before any network: a state dir it refuses to write through leaves nothing made
        materialize(project.name, {"secrets": project.secrets, "configs": project.configs})
        created = ensure_networks(project, cni)
        ensure_volumes(project, eng)
        for svc in services:
            wait_for(project, svc, eng)
            # Scaled down: the highest numbers go, as compose does.
            extra = {c.name for c in existing.values() if c.labels.get(LABEL_SERVICE) == svc.name
                     and c.name not in wanted}
            if extra:
                remove_containers(project.name, eng, extra)
            for number, cname in enumerate(project.container_names(svc), 1):
                if _progress is not None:
                    _progress.step(cname)
                old = existing.get(cname)
                if old is not None and not opts.force_recreate and \
                        old.labels.get("com.docker.compose.config-hash") == svc.config_hash():
                    if not old.running:
                        eng.start(old.id)
                        say(f" Container {cname}  Started")
                    else:
                        say(f" Container {cname}  Running")
                    continue
                if old is not None:
                    # Containers in its network namespace (network_mode service:SVC) go with it and are
                    # made again after it (they come later in the order): theirs is gone.
                    joined = {n for s in project.services if s.network_mode == f"service:{svc.name}"
                              for n in project.container_names(s) if n in existing}
                    for problem in remove_containers(project.name, eng, {cname} | joined):
                        say(f"cnirun: {problem}")
                    for n in joined:
                        existing.pop(n, None)
                if svc.attaches:
                    start_service(project, svc, engine, number)
                else:
                    start_engine_networked(project, svc, eng, number)
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
    finally:
        if _progress is not None:
            _progress.clear()
        _progress = None
    if opts.detach:
        return 0
    return _foreground(project, eng, cni)


def _foreground(project: Project, eng: Any, cni: Any) -> int:
    import signal

    names = {n: s for s in project.services for n in project.container_names(s)}
    width = max(len(n) for n in names)
    printer = LogPrinter(eng, width)
    ids = {c.name: c.id for c in project_containers(eng, project.name) if c.name in names}
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


def down(project_name: str, engine: str, cni: Any = None, volumes: bool = False,
         services: set[str] | None = None, remove_orphans: bool = False) -> int:
    """Remove the project's containers, networks (-v: volumes).

    `services`: the services the compose file names, when it could be read.
    As docker compose does, containers of other services (orphans) stay unless
    remove_orphans, with a warning; a network they still use stays too (its
    removal is refused while attached). Without the file every container of
    the project goes.
    """
    from ..cni.runtime import CNI
    from ..engines import get as engine_for

    eng = engine_for(engine)
    cni = cni or CNI()
    only = None
    if services is not None and not remove_orphans:
        containers = project_containers(eng, project_name)
        orphans = sorted(c.name for c in containers if c.labels.get(LABEL_SERVICE) not in services)
        if orphans:
            say(f"WARN Found orphan containers ({', '.join(orphans)}) for this project: if you removed or "
                "renamed their service in the compose file, run down with --remove-orphans to remove them")
            only = {c.name for c in containers if c.name not in orphans}
    errors = remove_containers(project_name, eng, only)
    errors += remove_networks(project_name, cni, in_use_ok=only is not None)
    if only is None:
        forget(project_name)  # the environment:/content: secrets up wrote
    if volumes:
        errors += remove_volumes(project_name, eng)
    for e in errors:
        say(f"cnirun: {e}")
    return 1 if errors else 0
