"""`cnirun compose up`: a project's images, networks, volumes and containers, in depends_on order.

Each service runs through `cnirun run`'s own code (cnirun.run.run, detached,
sandbox mode so cnirun owns the container's /etc/hosts), so networking,
teardown on exit and `cnirun gc` behave exactly as for a single container.
`up` adds what a project needs on top: its networks and volumes, the start
order and depends_on's conditions, and hosts entries for every peer on a
shared network (compose.peers). It leaves nothing half-done: a failure
removes the containers and networks this invocation made, and the secrets
and configs it wrote unless a container of the project still mounts them.
Except a dependency that fails its healthcheck or exits non-zero under
service_completed_successfully: as compose does, it stays (with what it needs,
its networks) for inspection, until `down`.
"""
from __future__ import annotations

import os
import threading
from typing import Any

from ..core.errors import CNIError
from .anon_volumes import RECORD, inherited, recorded, remember, remembered, settled
from .containers import STOP_TIMEOUT, project_containers, remove_containers, start_engine_networked, start_service
from .dependencies import DependencyFailed, wait_for
from .down import down
from .images import ensure_images
from .labels import LABEL_SERVICE
from .logs import LogPrinter
from .messages import ComposeFailed, hide_progress, say, show_progress, step
from .mounts import forget, make_bind_sources, materialize
from .networks import ensure_networks
from .peers import members, refresh_hosts
from .project import Project, Service
from .request import engine_lacks, run_request
from .services import MAX_REPLICAS
from .volumes import ensure_volumes, remove_named


class UpOptions:
    """What `up` was asked beside the project (compose's flags).

    `pull` is `--pull` (None: each service's pull_policy); `scale` is
    `--scale SERVICE=N`, overriding the file's replicas; `no_recreate` keeps
    existing containers even when their config changed; `no_build` never
    builds (a build: service's image must exist); `quiet_pull` draws no pull
    progress; `timeout` is the seconds a container removed (recreated,
    scaled down, at the end of a foreground up) gets to stop; a recreated
    container takes the old one's anonymous volumes unless `renew_anon_volumes`."""

    def __init__(self, detach: bool = False, build: bool = False, force_recreate: bool = False,
                 no_deps: bool = False, services: list[str] | None = None, remove_orphans: bool = False,
                 pull: str | None = None, scale: dict[str, int] | None = None,
                 progress: Any = None, no_recreate: bool = False, no_build: bool = False,
                 quiet_pull: bool = False, timeout: int = STOP_TIMEOUT, renew_anon_volumes: bool = False) -> None:
        if force_recreate and no_recreate:
            raise ComposeFailed("--force-recreate and --no-recreate are incompatible")
        if build and no_build:
            raise ComposeFailed("--build and --no-build are incompatible")
        self.detach, self.build, self.force_recreate = detach, build, force_recreate
        self.no_deps, self.services, self.remove_orphans = no_deps, services or [], remove_orphans
        self.pull, self.scale = pull, dict(scale or {})
        self.no_recreate, self.no_build, self.quiet_pull, self.timeout = no_recreate, no_build, quiet_pull, timeout
        self.renew_anon_volumes = renew_anon_volumes
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


def up(project: Project, detach: bool | UpOptions, engine: str) -> int:
    from ..cni.runtime import CNI
    from ..engines import get as engine_for

    opts = detach if isinstance(detach, UpOptions) else UpOptions(detach=bool(detach))
    if os.geteuid() != 0:
        raise ComposeFailed("compose up needs root to run CNI plugins: run it with sudo")
    eng = engine_for(engine)
    cni = CNI()
    services = _selected(project, opts)
    for svc in services:
        engine_lacks(project, svc, eng)
        run_request(project, svc, engine)  # every service checked before anything is made
        if not svc.attaches:
            say(f" Container {project.container_name(svc)}  network_mode {svc.network_mode}: no CNI networks")
    existing = {c.name: c for c in project_containers(eng, project.name)}
    orphans = _orphans(project, existing, opts.remove_orphans)
    created: list[str] = []
    started: list[str] = []
    show_progress(opts.progress(sum(len(project.container_names(s)) for s in services))
                  if opts.progress is not None else None)
    try:
        if orphans and opts.remove_orphans:
            for e in remove_containers(project.name, eng, {c.name for c in orphans}):
                say(f"cnirun: {e}")
        ensure_images(project, services, eng, opts.build, opts.pull, opts.no_build, opts.quiet_pull)
        # before any network: a state dir it refuses to write through leaves nothing made
        materialize(project.name, {"secrets": project.secrets, "configs": project.configs},
                    [c for s in project.services for c in s.mounts.copies])
        make_bind_sources([s.mounts for s in services])
        created = ensure_networks(project, cni)
        ensure_volumes(project, eng)
        for svc in services:
            _converge(project, svc, eng, engine, opts, existing, started)
        for cname in set(started) & set(remembered(project.name)):  # a failed up keeps them (see _undo)
            settled(project.name, cname)
    except DependencyFailed:
        raise  # what it made stays for inspection, as compose leaves it
    except BaseException:
        _undo(project, eng, cni, started, created)
        raise
    finally:
        hide_progress()
    if opts.detach:
        return 0
    return _foreground(project, eng, cni, opts.timeout)


def _selected(project: Project, opts: UpOptions) -> list[Service]:
    """The services `up` starts, in start order, with --scale applied to their replicas."""
    known = {s.name: s for s in project.services}
    for name, n in opts.scale.items():
        if name not in known:
            raise ComposeFailed(f"--scale {name}={n}: no such service (services: {', '.join(known)})")
        known[name].replicas = n
    return project.select(opts.services, with_deps=not opts.no_deps) if opts.services else project.services


def _orphans(project: Project, existing: dict[str, Any], remove: bool) -> list[Any]:
    """The project's containers of services the file no longer names (warned about unless removed)."""
    names = {s.name for s in project.services}
    orphans = [c for c in existing.values() if c.labels.get(LABEL_SERVICE) not in names]
    if orphans and not remove:
        say(f"WARN Found orphan containers ({', '.join(c.name for c in orphans)}) for this project: "
            "run with --remove-orphans to clean them up")
    return orphans


def _converge(project: Project, svc: Service, eng: Any, engine: str, opts: UpOptions, existing: dict[str, Any],
              started: list[str]) -> None:
    """Once svc's dependencies meet their conditions: its containers as the file says (extra replicas
    removed, unchanged ones kept, changed ones recreated, missing ones started); appends what it started."""
    wait_for(project, svc, eng)
    # Scaled down: the highest numbers go, as compose does.
    wanted = {n for s in project.services for n in project.container_names(s)}
    extra = {c.name for c in existing.values() if c.labels.get(LABEL_SERVICE) == svc.name and c.name not in wanted}
    if extra:
        remove_containers(project.name, eng, extra, timeout=opts.timeout)
    for number, cname in enumerate(project.container_names(svc), 1):
        step(cname)
        old = existing.get(cname)
        if old is not None and (opts.no_recreate or not opts.force_recreate and
                                old.labels.get("com.docker.compose.config-hash") == svc.config_hash()):
            if not old.running:
                eng.start(old.id)
                say(f" Container {cname}  Started")
            else:
                say(f" Container {cname}  Running")
            continue
        if old is not None:
            inherit = _remove_for_recreate(project, svc, eng, old, existing, opts)
        else:
            inherit = _recorded(project, svc, eng, cname, opts)
        if svc.attaches:
            start_service(project, svc, engine, number, inherit)
        else:
            start_engine_networked(project, svc, eng, number, inherit)
        started.append(cname)
    refresh_hosts(project)


def _remove_for_recreate(project: Project, svc: Service, eng: Any, old: Any, existing: dict[str, Any],
                         opts: UpOptions) -> dict[str, str]:
    """Remove container old before it is made again; the anonymous volumes its successor takes
    (anon_volumes.inherited: none with renew_anon_volumes), kept. Containers in its network namespace
    (network_mode service:SVC) go with it and are made again after it (they come later in the order):
    theirs is gone."""
    joined = {n for s in project.services if s.network_mode == f"service:{svc.name}"
              for n in project.container_names(s) if n in existing}
    inherit, others = ({}, set()) if opts.renew_anon_volumes else inherited(eng, old.id, svc.volumes)
    if inherit:  # they belong to no container until the new one is made: down -v finds them here meanwhile
        remember(project.name, old.name, inherit)
    problems = remove_containers(project.name, eng, joined, timeout=opts.timeout) if joined else []
    problems += remove_containers(project.name, eng, {old.name}, volumes=not inherit, timeout=opts.timeout)
    problems += remove_named(eng, others if inherit else ())  # what its `rm -v` would have taken
    for problem in problems:
        say(f"cnirun: {problem}")
    for n in joined:
        existing.pop(n, None)
    return inherit


def _recorded(project: Project, svc: Service, eng: Any, cname: str, opts: UpOptions) -> dict[str, str]:
    """The anonymous volumes an earlier up kept for container cname and never gave it (killed or failed
    between the old container's removal and the new one's start): taken as a recreate takes them, or
    removed (-V, or a destination that now mounts something else)."""
    vols = remembered(project.name).get(cname)
    if not vols:
        return {}
    inherit, others = recorded(eng, vols, svc.volumes)
    if opts.renew_anon_volumes:
        inherit, others = {}, others | set(inherit.values())
    for problem in remove_named(eng, others):
        say(f"cnirun: {problem}")
    if not inherit:
        settled(project.name, cname)
    return inherit


def _undo(project: Project, eng: Any, cni: Any, started: list[str], created: list[str]) -> None:
    """Nothing half-done: remove this invocation's containers and networks, and the secrets and
    configs it wrote unless a container of the project (started before) still mounts them."""
    from ..netstore import store

    # The anonymous volumes recreated containers took stay for the next up or down -v (anon_volumes).
    keep = {v for vols in remembered(project.name).values() for v in vols.values()}
    for problem in remove_containers(project.name, eng, set(started), keep_volumes=keep) if started else []:
        say(f"cnirun: cleanup: {problem}")
    for name in created:
        try:
            store.remove(cni, name)
        except CNIError as e:
            say(f"cnirun: cleanup: {e}")
    try:
        unused = not project_containers(eng, project.name)
    except CNIError:
        unused = False
    if unused:
        forget(project.name, keep=RECORD)  # volumes a recreate kept and no container took: down -v removes them


def _foreground(project: Project, eng: Any, cni: Any, timeout: int) -> int:
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
    return down(project.name, eng.name, cni, timeout=timeout)


