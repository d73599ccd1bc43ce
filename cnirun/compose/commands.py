"""compose's everyday commands beside up/down: ps, logs, exec, stop, start, restart, pull, build.

They act on the project's containers through the Engine protocol; stop,
start and restart keep the networks (a detached run keeps its attachments
while its container exists, see cnirun.run.watch), so a restarted container
comes back on the same addresses.
"""
from __future__ import annotations

from typing import Any

from .containers import STOP_TIMEOUT, project_containers
from .images import build_service, ensure_images
from .labels import LABEL_SERVICE
from .logs import LogOptions, LogPrinter
from .messages import ComposeFailed, say
from .peers import refresh_hosts
from .project import Project


def _containers(project: Project, eng: Any, services: list[str] | set[str]) -> list[Any]:
    """The containers of `services` (all when empty) in start order: a service's dependencies before
    it, one service's replicas by name (stop walks it backwards, as compose does)."""
    wanted = {s.name for s in (project.select(list(services), with_deps=False) if services else project.services)}
    rank = {s.name: i for i, s in enumerate(project.services)}
    out = [c for c in project_containers(eng, project.name) if c.labels.get(LABEL_SERVICE) in wanted]
    return sorted(out, key=lambda c: (rank[c.labels[LABEL_SERVICE]], c.name))


def _with_dependents(project: Project, services: list[str]) -> set[str]:
    """The named services and, as compose's restart, those depending on one with `restart: true`."""
    want = {s.name for s in project.select(services, with_deps=False)}
    for s in project.services:  # start order: a dependent comes after what it depends on
        if any(dep.restart and d in want for d, dep in s.depends_on.items()):
            want.add(s.name)
    return want


PS_FIELDS = ("id", "name", "image", "service", "project", "number", "state", "health")


def ps_records(project: Project, eng: Any, services: list[str], all_: bool = False) -> list[dict[str, Any]]:
    """The project's containers as `compose ps` prints them; the keys (PS_FIELDS) are the JSON and
    template field names (`{{.Name}}`, `{{.Service}}`, ... as in docker compose ps)."""
    return [{"id": c.id, "name": c.name, "image": c.image, "service": c.labels.get(LABEL_SERVICE, ""),
             "project": project.name, "number": int(c.labels.get("com.docker.compose.container-number", "1")),
             "state": c.state, "health": eng.health(c.id) if c.running else ""}
            for c in sorted(_containers(project, eng, services), key=lambda c: c.name) if all_ or c.running]


def logs(project: Project, eng: Any, services: list[str], opts: LogOptions, index: int | None = None) -> int:
    """The services' output (replica `index` only when given), each container's in turn; with follow,
    all at once as it comes, until every container has ended or Ctrl+C."""
    containers = [c for c in _containers(project, eng, services)
                  if index is None or c.labels.get("com.docker.compose.container-number") == str(index)]
    if not containers:
        return 0
    printer = LogPrinter(eng, max(len(c.name) for c in containers), opts)
    if not opts.follow:
        for c in containers:
            printer.print(c.name, c.id)
        return 0
    for c in containers:
        printer.follow(c.name, c.id)
    try:
        for t in printer.threads:
            while t.is_alive():
                t.join(0.5)
    except KeyboardInterrupt:
        return 130
    return 0


def exec_(project: Project, eng: Any, service: str, argv: list[str], index: int, user: str, workdir: str,
          env: list[str]) -> int:
    svc = project.select([service], with_deps=False)[0]
    name = project.container_name(svc, index)
    target = [c for c in project_containers(eng, project.name) if c.name == name and c.running]
    if not target:
        raise ComposeFailed(f"service {service} is not running (container {name}): run compose up first")
    return int(eng.exec(target[0].id, argv, user, workdir, env))


def stop(project: Project, eng: Any, services: list[str], timeout: int | None) -> int:
    for c in reversed(_containers(project, eng, services)):
        if c.running:
            eng.stop(c.id, STOP_TIMEOUT if timeout is None else timeout)
            say(f" Container {c.name}  Stopped")
    return 0


def start(project: Project, eng: Any, services: list[str]) -> int:
    for c in _containers(project, eng, services):
        if not c.running:
            eng.start(c.id)
            say(f" Container {c.name}  Started")
    refresh_hosts(project)
    return 0


def restart(project: Project, eng: Any, services: list[str], timeout: int | None, no_deps: bool = False) -> int:
    """Restart in start order (dependencies first); named services bring their `restart: true`
    dependents along unless no_deps."""
    for c in _containers(project, eng, services if no_deps or not services else _with_dependents(project, services)):
        eng.restart(c.id, STOP_TIMEOUT if timeout is None else timeout)
        say(f" Container {c.name}  Started")
    refresh_hosts(project)
    return 0


def pull(project: Project, eng: Any, services: list[str], ignore_failures: bool) -> int:
    failed = 0
    for svc in project.select(services, with_deps=False) if services else project.services:
        if svc.build is not None and not svc.raw.get("image"):
            continue  # built here, nothing to pull
        say(f" Image {svc.image}  Pulling")
        try:
            eng.pull(svc.image)
            say(f" Image {svc.image}  Pulled")
        except Exception as e:  # noqa: BLE001 - EngineError or the SDK's: reported per image
            failed += 1
            say(f"cnirun: {e}" if ignore_failures else f"cnirun: pull {svc.image}: {e}")
            if not ignore_failures:
                return 1
    return 0


def build(project: Project, eng: Any, services: list[str]) -> int:
    for svc in project.select(services, with_deps=False) if services else project.services:
        if svc.build is not None:
            build_service(project, svc, eng)
    return 0


__all__ = ["build", "ensure_images", "exec_", "logs", "ps_records", "pull", "restart", "start", "stop"]
