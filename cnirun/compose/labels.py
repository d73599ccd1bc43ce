"""The names and labels compose puts on what it makes, as Docker Compose v2 does (tools find
projects by them): containers, networks, volumes."""
from __future__ import annotations

from .project import Project, Service

LABEL_PROJECT = "com.docker.compose.project"
LABEL_SERVICE = "com.docker.compose.service"
LABEL_NETWORK = "com.docker.compose.network"
LABEL_VOLUME = "com.docker.compose.volume"
COMPOSE_VERSION = "2.0.0-cnirun"


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
