"""What one `podman run` is given: its command line for a RunSpec, the env file that carries the
spec's environment, and the hooks.d files that hold its start and report its stop (engines.podman runs
it; run.podman and the engine's create_workload build it here)."""
from __future__ import annotations

import os

from ..core import jsonfast as json
from ..core.errors import EngineError
from ..core.fsutil import which

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .spec import RunSpec

DEFAULT_HOOKS_DIRS = ("/usr/share/containers/oci/hooks.d", "/etc/containers/oci/hooks.d")


def write_gate_hook(hooks_dir: str, lock_file: str, ok_file: str) -> None:
    """A prestart hook that holds the container's first instruction until cnirun's ADD is done.

    It lets `podman run` start up while ADD runs: the hook blocks on the
    lock cnirun holds during ADD, then fails (aborting the start) unless ADD
    succeeded. flock(1) and sh are exec'd directly: hooks get no PATH.
    """
    flock = which("flock") or "/usr/bin/flock"
    hook = {
        "version": "1.0.0",
        "hook": {
            "path": "/bin/sh",
            "args": ["sh", "-c", f'{flock} -s "$0" true && [ -e "$1" ]', lock_file, ok_file],
            "timeout": 120,
        },
        "when": {"always": True},
        "stages": ["prestart"],
    }
    os.makedirs(hooks_dir, exist_ok=True)
    with open(os.path.join(hooks_dir, "cnirun-gate.json"), "w") as f:
        f.write(json.dumps(hook))


def write_exit_hook(hooks_dir: str, fifo: str, line: str = "x") -> None:
    """A poststop hook that writes `line` to a FIFO when the container has stopped, before `podman run`
    or `podman rm` returns.

    `podman run --rm` still removes the container after that; cnirun's DEL
    (the netns is cnirun's own) can run meanwhile; `podman rm` removes its
    storage (storage_dir) after that. The FIFO is opened read-write, which
    never blocks, and a line fits its buffer: the hook cannot hang even when
    nobody reads. No FIFO there (nobody listening): nothing is written.
    """
    hook = {
        "version": "1.0.0",
        "hook": {"path": "/bin/sh", "args": ["sh", "-c", '[ ! -p "$0" ] || { exec 3<>"$0" && echo "$1" >&3; }', fifo,
                                             line], "timeout": 10},
        "when": {"always": True},
        "stages": ["poststop"],
    }
    os.makedirs(hooks_dir, exist_ok=True)
    with open(os.path.join(hooks_dir, "cnirun-exit.json"), "w") as f:
        f.write(json.dumps(hook))


def podman_bin() -> str:
    path = which("podman")
    if not path:
        raise EngineError("podman is not installed: apt-get install podman, or use --engine docker")
    return path


# A line podman's --env-file reader (bufio.Scanner, 64 KiB tokens) takes back intact.
_ENV_LINE_MAX = 60000


def split_env(env: list[str]) -> tuple[list[str], dict[str, str]]:
    """Environment entries as (lines for a --env-file, KEY -> VALUE for podman's own environment).

    Never `-e KEY=VALUE` on podman's command line: /proc/<pid>/cmdline is
    world-readable, and env values are often secrets. A value the env-file
    format cannot carry (a newline or CR, a very long line, a key podman
    would read as a comment) goes through podman's own environment instead,
    named by `-e KEY` (podman then takes it from there, as docker does).
    """
    lines: list[str] = []
    passthrough: dict[str, str] = {}
    for e in env:
        key, _, value = e.partition("=")
        if not key or "\0" in e:
            continue
        fits = not any(c in e for c in "\n\r") and len(e) < _ENV_LINE_MAX
        if fits and not key[0].isspace() and not key.startswith("#"):
            lines.append(e)
        else:
            passthrough[key] = value
    return lines, passthrough


def write_env_file(path: str, lines: list[str]) -> None:
    """The env values for `podman run --env-file`: a new file, mode 0600, never through a symlink."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        data = "".join(line + "\n" for line in lines).encode()
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


def run_argv(
    spec: RunSpec,
    netns_path: str,
    labels: dict[str, str],
    extra_volumes: list[str],
    hostname: str,
    cidfile: str,
    hooks_dir: str = "",
    env_file: str = "",
    env_names: list[str] | None = None,
    network: str = "",
    verb: str = "run",
    extra: list[str] | None = None,
) -> list[str]:
    """`podman run ...` for the spec, joined to netns_path. Ulimits etc. come from containers.conf.

    The environment is never on this command line: `env_file` (written by
    write_env_file from split_env's lines) and `env_names`, keys podman takes
    from its own environment. Without either, the spec must have no env.
    `network` (host, none, container:ID) replaces `ns:netns_path`; verb
    "create" makes the container without starting it (no -d); `extra` are
    more options, before the image.
    """
    argv = [podman_bin()]
    if hooks_dir:
        # --hooks-dir replaces the default dirs: name them too so system hooks still run.
        for d in (*DEFAULT_HOOKS_DIRS, hooks_dir):
            if os.path.isdir(d):
                argv += ["--hooks-dir", d]
    if spec.runtime:
        argv += ["--runtime", spec.runtime]  # podman's global option: before the verb
    argv += [verb, "--network", network or f"ns:{netns_path}"] + (["--cidfile", cidfile] if cidfile else [])
    flags: list[tuple[str, bool]] = [
        ("--rm", spec.remove), ("-d", spec.detach and verb == "run"), ("-i", spec.interactive), ("-t", spec.tty),
        ("--init", spec.init), ("--privileged", spec.privileged), ("--read-only", spec.read_only),
    ]
    argv += [f for f, on in flags if on]
    if hostname:
        argv += ["--hostname", hostname]
    for k, v in labels.items():
        argv += ["--label", f"{k}={v}"]
    if env_file:
        argv += ["--env-file", env_file]
    for key in env_names or []:
        argv += ["-e", key]
    if not env_file and not env_names and spec.resolved_env():
        raise EngineError("internal: the environment must go through an env file, not podman's command line")
    for v in list(spec.volumes) + list(extra_volumes):
        argv += ["-v", v]
    return argv + _option_args(spec) + list(extra or []) + ["--", spec.image, *spec.command]


def _option_args(spec: RunSpec) -> list[str]:
    """podman run's options for the spec's container options (workdir, user, limits, health, ...)."""
    single = [
        ("-w", spec.workdir), ("-u", spec.user), ("--name", spec.name), ("-m", spec.memory),
        ("--stop-signal", spec.stop_signal), ("--shm-size", spec.shm_size),
    ]
    argv = [x for f, v in single if v for x in (f, v)]
    if spec.entrypoint is not None:
        argv += ["--entrypoint", spec.entrypoint]
    if spec.cpus:
        argv += ["--cpus", str(spec.cpus)]
    if spec.stop_timeout is not None:
        argv += ["--stop-timeout", str(spec.stop_timeout)]
    if spec.pids_limit is not None:
        argv += ["--pids-limit", str(spec.pids_limit)]
    if spec.restart and spec.restart != "no":
        argv += ["--restart", spec.restart]
    if spec.cpu_shares is not None:
        argv += ["--cpu-shares", str(spec.cpu_shares)]
    argv += _health_args(spec.healthcheck)
    for k, v in spec.sysctls.items():
        argv += ["--sysctl", f"{k}={v}"]
    for k, v in spec.log_opts.items():
        argv += ["--log-opt", f"{k}={v}"]
    more = [("--platform", spec.platform), ("--log-driver", spec.log_driver),
            ("--memory-reservation", spec.memory_reservation)]
    argv += [x for f, v in more if v for x in (f, v)]
    multi = [
        ("--cap-add", spec.cap_add), ("--cap-drop", spec.cap_drop), ("--tmpfs", spec.tmpfs),
        ("--device", spec.devices), ("--security-opt", spec.security_opt), ("--group-add", spec.group_add),
        ("--ulimit", spec.ulimits), ("--expose", spec.expose),
    ]
    for f, vals in multi:
        for v in vals:
            argv += [f, v]
    return argv


def _health_args(hc: dict[str, object] | None) -> list[str]:
    """podman's --health-* flags for a spec's healthcheck (test ["NONE"]: --no-healthcheck)."""
    if hc is None:
        return []
    test = [str(t) for t in hc.get("test") or []]  # type: ignore[union-attr]
    if not test or test[0] == "NONE":
        return ["--no-healthcheck"]
    if test[0] == "CMD-SHELL":
        cmd = " ".join(test[1:])
    else:  # ["CMD", argv...]: podman takes the argv as a JSON list
        cmd = json.dumps(test[1:] if test[0] == "CMD" else test)
    argv = ["--health-cmd", cmd]
    for key in ("interval", "timeout", "start_period"):
        if hc.get(key) is not None:
            argv += [f"--health-{key.replace('_', '-')}", f"{float(hc[key]):g}s"]  # type: ignore[arg-type]
    if hc.get("retries") is not None:
        argv += ["--health-retries", str(hc["retries"])]
    return argv
