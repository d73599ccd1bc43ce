"""The project's networks: installed with compose's labels by `up`, removed by `down`."""
from __future__ import annotations

from typing import Any

from ..core.errors import CNIError
from .labels import LABEL_PROJECT, network_labels
from .messages import say
from .project import Project


def ensure_networks(project: Project, cni: Any) -> list[str]:
    """Install the project's networks that do not exist yet; return the names created."""
    from ..netstore import store

    created: list[str] = []
    try:
        with store.creating(cni) as nets:
            _create_missing(project, cni, {n.name: n for n in nets}, created)
    except BaseException:
        for name in created:
            store.remove(cni, name)
        raise
    return created


def _create_missing(project: Project, cni: Any, existing: dict[str, Any], created: list[str]) -> None:
    """Plan and install the project's networks missing from `existing` (under store.creating), into `created`."""
    from ..netstore import store
    from ..netstore.networks import Planner

    planner = Planner(list(existing.values()))
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
