"""Docker hook mode: an ordinary `docker run` with the cnirun OCI runtime.

The container is created with network `none`, runtime `cnirun` and the
run's networks as labels (options.ContainerNetworkSpec); the runtime's hook
attaches from those labels at createRuntime (inside `start`) and detaches
at poststop, so this process only creates, starts, waits and removes. dockerd
writes hosts/resolv.conf itself (the hook cannot), from --dns options.
"""
from __future__ import annotations


from ..core.errors import EngineError
from .console import StartFailed, foreground
from .failures import EXIT_CNIRUN, RunFailed
TYPE_CHECKING = False  # start-up cost: see cnirun.core

if TYPE_CHECKING:
    from typing import Any

    from .request import RunOutcome
    from .plan import Plan
    from .signals import SignalGate


class RuntimeUnknown(Exception):
    """dockerd refused runtime `cnirun` at create: daemon.json names it but dockerd was not reloaded."""


def run_docker_hook(p: Plan, docker: Any, gate: SignalGate, outcome: RunOutcome) -> RunOutcome:
    """An ordinary docker run with the cnirun runtime; the hook attaches from the labels."""
    req, spec = p.req, p.req.spec
    # The hook publishes the ports: it takes the port lock and checks again
    # inside `docker start`; holding the lock here would make it wait for us.
    p.release_ports()
    labels = {**spec.labels, **p.netspec.to_labels()}
    # Foreground --rm: dockerd removes the container as it exits (as `docker run --rm`), when the
    # client can register its wait before start; else cnirun removes it after the wait.
    auto_remove = spec.remove and (spec.detach or docker.waits_before_start)
    from ..network.files import planned_resolvers

    # dockerd writes resolv.conf, before the hook ADDs: it is given the networks'
    # resolvers (cnirun.dns), known from their configs already.
    dns = req.dns or planned_resolvers(p.networks)[:3]
    try:
        cid = docker.create_workload(
            spec, "none", labels, [], runtime="cnirun", auto_remove=auto_remove, hostname=spec.hostname or None,
            dns=dns, dns_search=req.dns_search,
        )
    except EngineError as e:
        if "runtime" in str(e) and ("unknown" in str(e) or "invalid" in str(e)):
            raise RuntimeUnknown(str(e).split(": ", 1)[-1]) from None
        raise
    if spec.detach:
        try:
            docker.start(cid)
        except Exception as e:
            docker.remove(cid)
            from ..engines.docker import StartError

            raise RunFailed(str(e), e.exit_code() if isinstance(e, StartError) else EXIT_CNIRUN) from None
        finally:
            p.release_ports()  # the hook's ADD ran inside start
        outcome.code, outcome.container, outcome.detached = 0, cid, True
        return outcome
    outcome.container = cid
    try:
        outcome.code = foreground(docker, cid, spec, gate, on_started=p.release_ports, auto_removed=auto_remove)
    except StartFailed as e:
        outcome.code, outcome.error = e.code, str(e)
    finally:
        gate.shield()
        if spec.remove:
            docker.remove(cid)  # gone already when auto-removed (then a quick 404), else now
    return outcome
