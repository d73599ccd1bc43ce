"""`cnirun compose down`: the project's containers (with their attachments), networks, the
secrets and configs `up` wrote, and with -v its named volumes and the containers' anonymous ones
(kept without -v, as compose keeps them)."""
from __future__ import annotations

from typing import Any, Callable

from ..core.errors import CNIError
from .anon_volumes import remembered
from .containers import STOP_TIMEOUT, project_containers, remove_containers
from .labels import LABEL_SERVICE
from .messages import say
from .mounts import forget
from .networks import remove_networks
from .project import Project, normalize_project_name
from .volumes import remove_named, remove_volumes


def target(name: str | None, load: Callable[[], Project]) -> tuple[str, set[str] | None]:
    """The project `down` removes, and the services its file names (those profiles leave out
    included: they are not orphans). With a name (-p) the file is optional: when none can be read,
    the services are None and every container of the project goes."""
    if not name:
        project = load()
        return project.name, file_services(project)
    try:
        services: set[str] | None = file_services(load())
    except (CNIError, OSError):
        services = None
    return normalize_project_name(name), services


def file_services(project: Project) -> set[str]:
    return {s.name for s in project.services} | set(project.inactive)


def down(project_name: str, engine: str, cni: Any = None, volumes: bool = False,
         services: set[str] | None = None, remove_orphans: bool = False, timeout: int | None = None) -> int:
    """Remove the project's containers, networks (volumes: named and anonymous volumes).

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
    errors = remove_containers(project_name, eng, only, volumes, STOP_TIMEOUT if timeout is None else timeout)
    if volumes:  # those a recreate kept for a container an up never made (anon_volumes)
        left = {c.name for c in project_containers(eng, project_name)} if only is not None else set()
        errors += remove_named(eng, {v for name, vols in remembered(project_name).items() if name not in left
                                     for v in vols.values()})
    errors += remove_networks(project_name, cni, in_use_ok=only is not None)
    if only is None:
        forget(project_name)  # the environment:/content: secrets up wrote
    if volumes:
        errors += remove_volumes(project_name, eng)
    for e in errors:
        say(f"cnirun: {e}")
    return 1 if errors else 0

