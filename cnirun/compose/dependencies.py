"""depends_on's conditions: waiting until a service's dependencies are healthy or completed."""
from __future__ import annotations

import time
from typing import Any

from .containers import project_containers
from .messages import ComposeFailed, say
from .project import Project, Service

HEALTH_WAIT = 180.0


class DependencyFailed(ComposeFailed):
    """A dependency failed its healthcheck or exited non-zero under service_completed_successfully: `up`
    leaves what it made for inspection, as compose does (`down` removes it)."""


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
                        say(f" Container {cname}  Unhealthy: left for inspection (compose down removes it)")
                        raise DependencyFailed(f"dependency failed to start: container {cname} is unhealthy")
                    if h == "":
                        raise ComposeFailed(f"service {svc.name} waits for {dep} to be healthy, but {cname} has "
                                            f"no healthcheck: add one to {dep} or use service_started")
                else:  # service_completed_successfully
                    code = eng.exit_code(c.id)
                    if code is not None:
                        if code != 0:
                            say(f" Container {cname}  Exited ({code}): left for inspection (compose down removes it)")
                            raise DependencyFailed(f"service \"{dep}\" didn't complete successfully: exit {code}")
                        say(f" Container {cname}  Exited")
                        break
                if time.monotonic() > deadline:
                    raise ComposeFailed(f"timed out after {HEALTH_WAIT:.0f}s waiting for {cname} "
                                        f"({d.condition})")
                time.sleep(0.5)
