"""The project's named volumes: created with compose's labels by `up`, removed by `down -v`."""
from __future__ import annotations

from typing import Any, Iterable

from ..core.errors import CNIError
from .labels import LABEL_PROJECT, volume_labels
from .messages import ComposeFailed, say
from .project import Project


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


def remove_named(eng: Any, names: Iterable[str]) -> list[str]:
    """Remove these volumes (one gone already is no error); the problems, one line each."""
    errors: list[str] = []
    for name in sorted(names):
        try:
            eng.volume_remove(name)
        except CNIError as e:
            errors.append(str(e))
    return errors


def remove_volumes(project_name: str, eng: Any) -> list[str]:
    errors: list[str] = []
    for name in eng.volumes(f"{LABEL_PROJECT}={project_name}"):
        try:
            eng.volume_remove(name)
            say(f" Volume {name}  Removed")
        except CNIError as e:
            errors.append(str(e))
    return errors
