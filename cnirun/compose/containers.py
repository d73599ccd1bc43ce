"""The project's containers: found by label, started (through `cnirun run`'s runner, or on the
engine's own network for network_mode), stopped and removed with their attachments."""
from __future__ import annotations

import threading
import time
from typing import Any

from ..core.errors import CNIError
from .anon_volumes import inherited_names
from .labels import LABEL_PROJECT, LABEL_SERVICE
from .messages import ComposeFailed, say
from .peers import states_by_name
from .project import Project, Service
from .request import run_request, run_spec
from .volumes import remove_named

STOP_TIMEOUT = 10
TEARDOWN_WAIT = 20.0


def start_service(project: Project, svc: Service, engine: str, number: int = 1,
                  inherit: dict[str, str] | None = None) -> str:
    """Start one container of a service (detached) through `cnirun run`'s runner; its container ID.
    `inherit`: the anonymous volumes it takes from the container it replaces (request.run_spec)."""
    from ..run import run

    cname = project.container_name(svc, number)
    outcome = run(run_request(project, svc, engine, number, inherit))
    for line in outcome.warnings:
        say(f" Container {cname}  teardown: {line}")
    if outcome.code != 0:
        raise ComposeFailed(f"service {svc.name}: container {cname} failed to start: "
                            f"{outcome.error or f'exit {outcome.code}'}")
    say(f" Container {cname}  Started")
    return outcome.container


def start_engine_networked(project: Project, svc: Service, eng: Any, number: int = 1,
                           inherit: dict[str, str] | None = None) -> str:
    """A network_mode service: the engine's own network (host, none, another container's), no CNI."""
    mode = svc.network_mode
    if mode.startswith("service:"):
        mode = "container:" + project.container_name(project.service(mode.split(":", 1)[1]))
    spec = run_spec(project, svc, number, inherit)
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


def remove_containers(project_name: str, eng: Any, only: set[str] | None = None, volumes: bool = True,
                      timeout: int = STOP_TIMEOUT, keep_volumes: set[str] | frozenset[str] = frozenset()) -> list[str]:
    """Stop (`timeout` seconds before the kill) and remove the project's containers (with their anonymous
    volumes, those inherited in a recreate included but for keep_volumes, unless not `volumes`); DEL their
    attachments. Returns problems."""
    from ..run.teardown import teardown

    errors: list[str] = []
    containers = _dependents_first([c for c in project_containers(eng, project_name)
                                    if only is None or c.name in only])
    states = states_by_name()
    threads = [threading.Thread(target=eng.stop, args=(c.id, timeout)) for c in containers if c.running]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for c in containers:
        gone = set(inherited_names(c)) - keep_volumes if volumes else set()
        try:
            eng.remove(c.id, volumes, keep=frozenset(keep_volumes))
            say(f" Container {c.name}  Removed")
        except CNIError as e:
            errors.append(str(e))
            continue
        errors += remove_named(eng, gone)
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
