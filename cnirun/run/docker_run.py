"""Docker runs: carry out the mode docker_mode.decide() chooses, with the run's Engine API client.

Each mode's module is imported only when the run takes it, so none pays
for the others. Docker calls go through the lean Engine API client on the
unix socket (engines.dockerapi) unless the run needs the SDK (docker_client).
"""
from __future__ import annotations

TYPE_CHECKING = False  # start-up cost: see cnirun.core

if TYPE_CHECKING:
    from ..engines.base import DockerClient
    from .plan import Plan
    from .request import RunOutcome
    from .signals import SignalGate


def run_docker(p: Plan, gate: SignalGate, outcome: RunOutcome) -> RunOutcome:
    """Run the plan on Docker in the mode decided for it; a hook run dockerd refuses the runtime for
    (daemon.json names it, dockerd was not reloaded) decides again without the hook."""
    from .docker_mode import decide

    made: list[DockerClient] = []

    def client() -> DockerClient:
        if not made:
            from ..engines.dockerapi import docker_client

            made.append(docker_client(p.req.spec))
        return made[0]

    mode = decide(p, client)
    if mode.kind == "hook":
        from .docker_hook import RuntimeUnknown, run_docker_hook
        from .docker_mode import warn_sandbox_ignored

        warn_sandbox_ignored("this run uses hook mode (the cnirun runtime)", "add --mode sandbox to use it")
        try:
            return run_docker_hook(p, client(), gate, outcome)
        except RuntimeUnknown as e:
            mode = decide(p, client, runtime_unknown=str(e))
    if mode.kind == "single":
        from .docker_single import run_docker_single

        return run_docker_single(p, gate, outcome, client(), mode.image_config or {})
    from .docker_sandbox import run_docker_sandbox

    return run_docker_sandbox(p, gate, outcome)
