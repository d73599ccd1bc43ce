"""Docker runs: which mode (hook or sandbox) a run takes, and which Engine API client it uses.

Hook mode (docker_hook) is chosen automatically only when the cnirun
runtime was installed with this run's CNI paths (runner.docker_mode); when
dockerd turns out not to know the runtime, an auto-chosen run falls back to
sandbox mode, which always works: the user's container alone, held at its
entrypoint until ADD is done (docker_single), or, where that cannot work
(-d, restart policies; CNIRUN_SANDBOX=helper), with a helper container
holding the netns (docker_sandbox). Each mode's module is
imported only when the run takes it, so neither pays for the other.

Docker calls go through the lean Engine API client on the unix socket
(engines.dockerapi) unless the run needs the SDK (docker_client).
"""
from __future__ import annotations

from .failures import RunFailed
TYPE_CHECKING = False  # typing costs ~7 ms of start-up on `cnirun run`: annotations only

if TYPE_CHECKING:

    from .request import RunOutcome
    from .plan import Plan
    from .signals import SignalGate


def _docker_mode(p: Plan) -> str:
    from ..cni.config import labels_allowed
    from .docker_mode import choose

    closed = [n.name for n in p.networks if not labels_allowed(n)]
    if closed:
        # The hook refuses label joins of these networks: the sandbox attaches them itself.
        if p.req.mode == "hook":
            from ..core.errors import ArgumentError

            raise ArgumentError(
                f"--mode hook cannot attach {', '.join(closed)}: its conflist sets \"cnirun\": "
                '{"allowLabels": false}; drop --mode hook (sandbox mode is used)'
            )
        return "sandbox"
    return choose(p.req.mode, p.cni, p.file_networks)


def run_docker(p: Plan, gate: SignalGate) -> RunOutcome:
    """Run the plan on Docker in hook mode when chosen (and dockerd knows the runtime), else in sandbox mode."""
    req = p.req
    if _docker_mode(p) == "hook":
        from .docker_mode import warn_sandbox_ignored

        warn_sandbox_ignored("this run uses hook mode (the cnirun runtime)", "add --mode sandbox to use it")
        from ..engines.dockerapi import docker_client
        from .docker_hook import RuntimeUnknown, run_docker_hook

        try:
            return run_docker_hook(p, docker_client(req.spec), gate)
        except RuntimeUnknown as e:
            if req.mode == "hook":
                raise RunFailed(
                    f"--mode hook: dockerd does not know the cnirun runtime ({e}): run "
                    "`cnirun install docker-runtime` (it reloads dockerd)"
                ) from None
            # daemon.json names the runtime but dockerd was not reloaded: the sandbox always works.
    return _run_sandbox(p, gate)


def _run_sandbox(p: Plan, gate: SignalGate) -> RunOutcome:
    """Sandbox mode: the user's container alone when it can be held (docker_single), else a helper."""
    from .docker_mode import SANDBOX_ENV, sandbox_requested

    kind = sandbox_requested()
    if kind != "helper":
        from .docker_single import SingleUnfit, run_docker_single

        try:
            return run_docker_single(p, gate)
        except SingleUnfit as e:
            if kind == "single":
                from ..core.errors import ArgumentError

                raise ArgumentError(f"{SANDBOX_ENV}=single cannot carry out this run: {e}; unset {SANDBOX_ENV} "
                                    "(a helper container is used)") from None
    from .docker_sandbox import run_docker_sandbox

    return run_docker_sandbox(p, gate)
