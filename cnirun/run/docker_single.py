"""Docker sandbox mode with one container: the user's own, held before its first instruction until ADD is done.

Docker has no "join this netns path" option and no way to stop between
runc's create and start without daemon configuration, so the helper mode
(docker_sandbox) starts a second container to hold the netns. This mode
starts only the user's container:

1. The image's ENTRYPOINT and CMD are merged with the run's --entrypoint and
   arguments exactly as dockerd merges them (resolve_argv).
2. The container is created with network `none`, the run's own options
   (env, --user, --workdir, -t/-i, --init, mounts, ...) and, as its
   entrypoint, the host's static busybox, bind-mounted read-only under
   /.cnirun-<run id> (a path no image has). It runs `sh -c WAIT` with the
   real argv as arguments; WAIT blocks in read(2) on a FIFO bind-mounted
   from the run's state dir: no polling.
3. cnirun attaches and starts it, takes /proc/<pid>/ns/net, pins it under the
   state dir (network.netns, as the hook does), records it, runs the one
   lifecycle.attach, writes hosts/resolv.conf, then writes one line into the
   FIFO: WAIT puts back what busybox's shell changed in the environment
   (SHLVL, PWD), looks the command up in PATH as runc does (never busybox's
   own applets) and execs it with the user's argv[0]. Signals, exit status,
   the console: from here on the container is the user's program, PID 1.
4. Teardown: DEL in the pinned netns while dockerd removes the container.

If cnirun dies at any moment, its end of the FIFO closes: a container not yet
released reads EOF and exits 125 without running anything. The run state
records the container before it starts and the pin before ADD, so `cnirun gc`
(teardown.teardown) finishes the run as it finishes a helper-mode one.

Where it cannot work (docker_mode.single_unfit says why), docker_mode.decide
takes the helper mode: detached runs (`docker restart`, `docker stop; docker start` and
restart policies would block the entrypoint again with nobody to release
it, and must keep the addresses), environment names busybox's shell cannot
carry through exec (`discovery.type=...`), and a run with no command at all
(dockerd's own error then comes from the helper path).
"""
from __future__ import annotations

import os

from ..core.errors import EngineError, NetnsError
from .console import StartFailed, foreground
from .failures import EXIT_CNIRUN

TYPE_CHECKING = False  # start-up cost: see cnirun.core

if TYPE_CHECKING:
    from typing import Any

    from ..engines.base import DockerClient
    from .request import RunOutcome
    from ..state.runs import RunMeta, RunState
    from .plan import Plan
    from .signals import SignalGate

MOUNT_PREFIX = "/.cnirun-"  # + the run ID's first 16 hex digits: a directory no image has
ABORTED = 125  # the waiter's exit status when cnirun went away before releasing it

# $1, $2: SHLVL and PWD as docker would set them ("-": unset, "=VALUE"); then the argv.
# busybox sh exports SHLVL and PWD at start-up; with its standalone applets
# `exec NAME` would run busybox's NAME, so PATH is searched here as runc's
# exec.LookPath does and the file is exec'd by path with argv[0] as given.
WAIT_SCRIPT = r"""set -f
IFS= read -r go <"${0%/*}/release" || exit 125
case $1 in -) unset SHLVL ;; *) export SHLVL="${1#=}" ;; esac
case $2 in -) unset PWD ;; *) export PWD="${2#=}" ;; esac
shift 2
c=$1
case $c in
*/*) p=$c ;;
*) p=
   IFS=:
   for d in $PATH; do
     [ -n "$d" ] || d=.
     if [ -f "$d/$c" ] && [ -x "$d/$c" ]; then p=$d/$c; break; fi
   done
   unset IFS
   if [ -z "$p" ]; then echo "cnirun: exec: \"$c\": executable file not found in \$PATH" >&2; exit 127; fi ;;
esac
if [ ! -e "$p" ]; then echo "cnirun: exec: \"$c\": stat $p: no such file or directory" >&2; exit 127; fi
if [ -d "$p" ] || [ ! -x "$p" ]; then echo "cnirun: exec: \"$c\": permission denied" >&2; exit 126; fi
shift
exec -a "$c" "$p" "$@"
"""


def resolve_argv(image_config: dict[str, Any], entrypoint: str | None, command: list[str]) -> list[str]:
    """The container's argv as dockerd merges it (daemon's merge + getEntrypointAndArgs).

    --entrypoint (even "") drops the image's CMD; otherwise the image's
    ENTRYPOINT stays and the run's arguments replace its CMD.
    """
    if entrypoint is not None:
        return ([entrypoint] if entrypoint else []) + list(command)
    ep = list(image_config.get("Entrypoint") or [])
    return ep + (list(command) if command else list(image_config.get("Cmd") or []))


def merged_env(image_config: dict[str, Any], run_env: list[str]) -> dict[str, str]:
    """KEY -> VALUE of the image's Env overridden by the run's (docker's ReplaceOrAppendEnvValues)."""
    out: dict[str, str] = {}
    for entry in list(image_config.get("Env") or []) + list(run_env):
        key, _, value = entry.partition("=")
        out[key] = value
    return out


def shell_name(name: str) -> bool:
    """Whether busybox's shell can carry an environment variable of this name through exec."""
    return bool(name) and not name[0].isdigit() and all(c == "_" or (c.isascii() and c.isalnum()) for c in name)


def waiter_command(image_config: dict[str, Any], spec: Any, mount: str) -> tuple[str, list[str]]:
    """Entrypoint and Cmd of the held container: busybox `sh -c WAIT_SCRIPT` before the real argv."""
    env = merged_env(image_config, spec.resolved_env())
    keep = ["=" + env[k] if k in env else "-" for k in ("SHLVL", "PWD")]
    argv = resolve_argv(image_config, spec.entrypoint, spec.command)
    return f"{mount}/busybox", ["sh", "-c", WAIT_SCRIPT, f"{mount}/wait", *keep, *argv]


def run_docker_single(
    p: Plan, gate: SignalGate, outcome: RunOutcome, docker: DockerClient, image_config: dict[str, Any]
) -> RunOutcome:
    """Create the user's container held at its entrypoint; start; pin and ADD; release; wait; tear down.

    For a run docker_mode.decide() found fit (image_config: the image's
    Config it read through `docker`).
    """
    from ..engines.docker import find_static_busybox
    from ..engines.spec import RunSpec
    from .plan import record_run
    from .etc_files import host_file_binds

    spec = p.req.spec
    busybox = find_static_busybox()

    st, meta = record_run(p, "docker", detached=False, mode="single")
    outcome.code, outcome.run_id = EXIT_CNIRUN, st.id
    release_fd: int | None = None
    ran = False  # the user's command ran and ended: only DEL is left
    try:
        fifo = st.path / "release"
        os.mkfifo(fifo, 0o600)
        os.chmod(fifo, 0o444)  # read by the container's user, whoever that is; written by root only
        # Read-write: opening never blocks, and the container's open for reading
        # succeeds at once; its read(2) then waits for our line, or EOF if we die.
        release_fd = os.open(fifo, os.O_RDWR | os.O_CLOEXEC)
        mount = MOUNT_PREFIX + st.id[:16]
        entrypoint, command = waiter_command(image_config, spec, mount)
        held = RunSpec(**{**spec.to_dict(), "entrypoint": entrypoint, "command": command})
        binds = host_file_binds(st) + [f"{busybox}:{mount}/busybox:ro", f"{fifo}:{mount}/release:ro"]
        labels = {**spec.labels, "cnirun.id": st.id, "cnirun.state": str(st.path.parent), "cnirun.role": "workload"}
        # --rm: dockerd removes the container as it exits and the wait returns once it is gone, as
        # `docker run --rm` does; a held container whose cnirun died goes too. (A client that cannot
        # register its wait before start, the SDK's: cnirun removes it after the wait.)
        auto_remove = spec.remove and docker.waits_before_start
        meta.workload = docker.create_workload(held, "none", labels, binds, auto_remove=auto_remove)
        st.write_meta(meta)
        outcome.container = meta.workload

        def attach_then_release() -> None:
            _attach(p, st, meta, docker)
            # The write end stays open until the container is done: a FIFO's data
            # goes with its last descriptor, and a container slow to reach its
            # open(2) of the FIFO would then wait in it forever for a writer.
            os.write(release_fd, b"go\n")  # type: ignore[arg-type]

        outcome.code = foreground(docker, meta.workload, spec, gate, before_run=attach_then_release,
                                  auto_removed=auto_remove)
        if spec.remove and not auto_remove:
            docker.remove(meta.workload)
        ran = True
        return outcome
    except StartFailed as e:
        outcome.code, outcome.error = e.code, str(e)
        return outcome
    finally:
        gate.shield()
        if release_fd is not None:
            os.close(release_fd)  # a container still held reads EOF and exits 125 without running anything
        st.write_meta(meta)
        if ran:
            from .teardown import teardown_in_background

            teardown_in_background(st, meta, docker)
        else:
            from .docker_sandbox import teardown_parallel

            outcome.warnings += teardown_parallel(st, meta, docker, None)


def _attach(p: Plan, st: RunState, meta: RunMeta, docker: Any) -> None:
    """Pin the started container's netns (recorded first), ADD every network, write hosts/resolv.conf."""
    from ..network.lifecycle import attach
    from ..network.netns import pin_netns
    from ..core.fsutil import identity
    from .etc_files import write_host_files

    info = docker.inspect(meta.workload) or {}
    state = info.get("State") or {}
    exited = EngineError(f"docker container {meta.workload[:12]} exited before its network was attached")
    if not state.get("Running") or not state.get("Pid"):
        raise exited
    pid = int(state["Pid"])
    ident = identity(f"/proc/{pid}/ns/net")
    if not ident:  # it exited since dockerd answered
        raise exited
    try:
        meta.netns = pin_netns(pid, st.id)
    except NetnsError:
        if identity(f"/proc/{pid}/ns/net") != ident:
            raise exited from None
        raise
    meta.netns_id = identity(meta.netns)
    st.write_meta(meta)  # the pin is recorded before ADD: gc DELs in it whatever happens next
    if meta.netns_id != ident:
        raise exited
    atts = attach(p.cni, p.networks, st.id, meta.netns, p.options)
    p.release_ports()  # ADD cached the mappings
    write_host_files(st, p.req, atts, p.req.spec.hostname or meta.workload[:12])
    meta.phase = "running"
    st.write_meta(meta)


__all__ = ["merged_env", "resolve_argv", "run_docker_single", "shell_name"]
