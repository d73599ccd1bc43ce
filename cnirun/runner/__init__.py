"""`cnirun run`: resolve networks, make the netns, attach, start, wait, tear down.

run(req) is the entry point (cli.run and compose.up call it). It plans the
run (plan: every check before anything is made on the host), then hands it
to one engine mode, each in its own module and imported only when taken:

- docker_run: picks Docker hook or sandbox mode and the Engine API client;
- docker_sandbox: a helper container holds the netns, the workload joins it;
- docker_hook: an ordinary `docker run` with the cnirun OCI runtime;
- podman: a cnirun-made netns, `podman run --network ns:PATH`;
- console: a foreground Docker run's attach I/O (both Docker modes);
- etc_files: the container's hosts/resolv.conf (sandbox and Podman);
- signals: SignalGate (abort set-up, forward to the workload, shield teardown);
- failures: RunFailed and EXIT_CNIRUN.

Exit status: the container's; 125 for cnirun's own failures; 126/127 when
the command cannot be run (as docker run).
"""
from __future__ import annotations

import sys

from ..errors import CNIError
from ..request import RunRequest
from .failures import EXIT_CNIRUN, RunFailed
from .plan import Plan, plan
from .signals import Interrupted, SignalGate

__all__ = ["EXIT_CNIRUN", "Interrupted", "Plan", "RunFailed", "SignalGate", "plan", "run"]


def run(req: RunRequest) -> int:
    """Carry out one run and return its exit status; errors are printed as one `cnirun: ...` line."""
    from ..engines import ENGINES, engine_name

    gate = SignalGate()
    gate.install()
    p: Plan | None = None
    try:
        engine = engine_name(req.engine)
        if engine not in ENGINES:
            raise RunFailed(f"unknown engine {engine!r}: use --engine docker or --engine podman")
        p = plan(req)
        if engine == "podman":
            if req.mode == "hook":
                raise RunFailed("--mode hook is for Docker; Podman always uses --network ns:PATH")
            from .podman import run_podman

            return run_podman(p, gate)
        from .docker_run import run_docker

        return run_docker(p, gate)
    except RunFailed as e:
        sys.stderr.write(f"cnirun: {e}\n")
        return e.code
    except CNIError as e:
        sys.stderr.write(f"cnirun: {e}\n")
        return EXIT_CNIRUN
    except Interrupted as e:
        sys.stderr.write("cnirun: interrupted during set-up; everything was torn down\n")
        return 128 + e.signum
    finally:
        if p is not None:
            p.release_ports()
        gate.restore()
