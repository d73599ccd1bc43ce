"""`cnirun run`: resolve networks, make the netns, attach, start, wait, tear down.

run(req) is the entry point (cli.run and compose.up call it). It plans the
run (plan: every check before anything is made on the host), then hands it
to one engine mode, each in its own module and imported only when taken:

- docker_mode: decides how a Docker run attaches (hook, single or helper), and why;
- docker_run: carries out that decision with the run's Engine API client;
- docker_single: sandbox mode with the user's container alone, held at its
  entrypoint until ADD is done (foreground runs);
- docker_sandbox: a helper container holds the netns, the workload joins it
  (-d, restart policies, CNIRUN_SANDBOX=helper);
- docker_hook: an ordinary `docker run` with the cnirun OCI runtime;
- podman: a cnirun-made netns, `podman run --network ns:PATH` (an engine whose
  runs join a netns path: engines.joins_netns_path);
- console: a foreground Docker run's attach I/O (both Docker modes);
- etc_files: the container's hosts/resolv.conf (sandbox and Podman);
- signals: SignalGate (abort set-up, forward to the workload, shield teardown);
- failures: RunFailed and EXIT_CNIRUN.

run() returns a RunOutcome (exit status: the container's; 125 for cnirun's
own failures; 126/127 when the command cannot be run, as docker run); the
caller prints (cli.run like docker run, compose its own lines).
"""
from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .plan import Plan
    from .request import RunOutcome, RunRequest

# The package imports nothing when it loads: its modules (caches, teardown,
# watch, ...) are imported by paths that never run a container.
__all__ = ["run"]


def run(req: RunRequest) -> RunOutcome:
    """Carry out one run; its outcome says how it ended. Prints nothing but the container's own I/O."""
    from ..core.errors import CNIError
    from ..engines import engine_name, joins_netns_path
    from .failures import EXIT_CNIRUN, RunFailed
    from .plan import plan
    from .request import RunOutcome
    from .signals import Interrupted, SignalGate

    gate = SignalGate()
    gate.install()
    p: Plan | None = None
    # One outcome for the run, filled by the mode as it goes: what its undo could not
    # tear down (warnings) is reported with the error that made it undo.
    outcome = RunOutcome()
    try:
        engine = engine_name(req.engine)
        own_netns = joins_netns_path(engine)  # EngineError for an engine cnirun does not know
        if own_netns:
            if req.mode == "hook":
                raise RunFailed(f"--mode hook is for Docker; {engine} runs attach their own netns")
            from .docker_mode import warn_sandbox_ignored

            warn_sandbox_ignored(f"this is a {engine} run (it attaches its own netns)")
        # The image first, in one place for every mode (docker run's order: pull, then create),
        # and before plan() may take the port lock: a slow pull must not hold up other runs.
        from ..engines.images import ensure_image

        ensure_image(engine, req.spec.image, req.pull or "missing")
        p = plan(req)
        if own_netns:
            from .podman import run_podman

            return run_podman(p, gate, outcome)
        from .docker_run import run_docker

        return run_docker(p, gate, outcome)
    except RunFailed as e:
        outcome.code, outcome.error = e.code, str(e)
    except CNIError as e:
        outcome.code, outcome.error = EXIT_CNIRUN, str(e)
    except Interrupted as e:
        outcome.code, outcome.error = 128 + e.signum, "interrupted during set-up; everything was torn down"
    finally:
        if p is not None:
            p.release_ports()
        gate.restore()
    return outcome
