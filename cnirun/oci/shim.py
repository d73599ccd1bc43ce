"""The Docker runtime shim: runc, with the container attached while runc creates it.

dockerd (through containerd-shim-runc-v2) calls the runtime registered as
`cnirun` with runc's full command line. On `create` the shim:
1. finds the bundle (--bundle/-b in space or '=' form, else the cwd) and the
   container ID (the positional argument after `create`);
2. learns the container's cnirun.* labels without asking dockerd (which is
   busy starting this very container): from the bundle's annotations when a
   caller already put them there, else from Docker's own container config
   <docker root>/containers/<id>/config.v2.json, written before create;
3. when the spec asks for a new network namespace (`--network none`), makes
   the start gate (start_gate) and forks the attach worker
   (attach.run_for_shim, with the recorded hook environment). The worker
   checks what the labels ask for, DELs what an earlier start left, makes
   the namespace and pins it at <state dir>/netns/<id>, and says so; then it
   runs the ADDs while runc creates the container, and writes the outcome
   into the gate. The shim waits only for that first part: a bad label or an
   unknown network fails the create, as a hook would, with one line on
   stderr and in runc's --log (where containerd looks);
4. copies the labels into the spec's annotations and points the spec's
   network namespace at the pin;
5. execs the real runc with the same argv and environment.
The launcher's `start` then waits on the gate (flock(1)) and fails the start
with the worker's error when it did not attach, so the container's first
instruction never runs without its network; its `delete` takes the
container lock and starts the DEL in the background (delete_main), in place
of a poststop hook. The ADDs (~60 ms for a
five-plugin chain) thus overlap runc's create and containerd's round trips
(~130 ms here) instead of running inside a createRuntime hook.

A spec that joins another namespace (host, container:X) or a Docker network
mode other than none gets the createRuntime hook instead, which refuses it
with its own message; so do networks with IPv6 ranges (attach.NotEarly:
Docker's own prestart hook would drop their addresses). A launcher older
than LAUNCHER_VERSION (installed before an upgrade) gets the createRuntime
and poststop hooks. Containers without a cnirun.networks label, and every
other runc call, go straight to runc. The launcher that dockerd executes (see
docker_runtime) is a tiny sh script that only starts Python when an
argument is `create`, so non-create calls cost a shell start, not a Python
start.

Only os, sys, cnirun.core.jsonfast (the json package's C codec without the
package's ~6 ms import of re and enum), cnirun.core.fsutil (os only) and, for a
labelled container, start_gate and network.netns (os, fcntl) are imported here
before the fork: the create path runs on every container start. The worker
imports the runtime core after it.
"""
from __future__ import annotations

import os
import sys

from ..core import jsonfast as json
from ..core.fsutil import atomic_write, file_mode, which
from ..core.paths import DEFAULT_DOCKER_ROOT, is_safe_name

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

LABEL_PREFIX = "cnirun."
CONFIG_ENV = "CNIRUN_SHIM_CONFIG"
# What the installed launcher can do, which it says in CNIRUN_LAUNCHER: "2" waits
# on the start gate and DELs at delete. An older one (a package upgraded without
# `cnirun install docker-runtime`) does neither: such a create gets the
# createRuntime and poststop hooks, as before.
LAUNCHER_ENV = "CNIRUN_LAUNCHER"
LAUNCHER_VERSION = "2"

# runc's global options that take a value (space form); everything else
# before the subcommand is a flag.
_GLOBAL_VALUE_OPTS = frozenset({"--root", "--log", "--log-format", "--criu", "--rootless"})
# `runc create` options that take a value.
_CREATE_VALUE_OPTS = frozenset({"--bundle", "-b", "--console-socket", "--pid-file", "--preserve-fds"})


class ShimError(Exception):
    """The create path could not prepare the bundle; the start must fail."""


def subcommand(argv: list[str]) -> tuple[str, int]:
    """runc's subcommand and its index in argv (argv[0] is the program).

    runc's own grammar, parsed here rather than with cli.run's helpers: those
    know docker-run's options, and importing the CLI would put it on the
    create path, which must stay lean (tests/test_oci_hook.py).
    """
    i = 1
    while i < len(argv):
        a = argv[i]
        if a == "--":
            i += 1
            break
        if a.startswith("-"):
            if a in _GLOBAL_VALUE_OPTS:
                i += 2  # the value may be anything, even "create"
                continue
            i += 1
            continue
        return a, i
    if i < len(argv):
        return argv[i], i
    return "", -1


def parse_create(argv: list[str], index: int) -> tuple[str, str]:
    """(bundle, container id) of `runc ... create [opts] ID`; bundle defaults to the cwd."""
    bundle = ""
    positional: list[str] = []
    i = index + 1
    while i < len(argv):
        a = argv[i]
        if a == "--":
            positional.extend(argv[i + 1 :])
            break
        if a.startswith("-") and len(a) > 1:
            name, eq, value = a.partition("=")
            if name in ("--bundle", "-b"):
                if eq:
                    bundle = value
                else:
                    bundle = argv[i + 1] if i + 1 < len(argv) else ""
                    i += 1
            elif not eq and name in _CREATE_VALUE_OPTS:
                i += 1
            i += 1
            continue
        positional.append(a)
        i += 1
    cid = positional[-1] if positional else ""
    return os.path.abspath(bundle or os.getcwd()), cid


def docker_labels(docker_root: str, container_id: str) -> tuple[dict[str, str], str]:
    """The cnirun.* labels of a Docker container and its Docker networks (comma-separated: "none" for
    --network none), read from Docker's own config file. ({}, "") when it is not a Docker container here.
    """
    if not is_safe_name(container_id):
        return {}, ""
    path = os.path.join(docker_root, "containers", container_id, "config.v2.json")
    try:
        with open(path, "rb") as f:
            obj = json.loads(f.read())
    except FileNotFoundError:
        return {}, ""  # not a Docker container (or another data root): nothing to add
    except (OSError, ValueError) as e:
        raise ShimError(f"cannot read Docker's container config {path}: {e}") from None
    if not isinstance(obj, dict) or obj.get("ID") != container_id:
        return {}, ""
    labels = (obj.get("Config") or {}).get("Labels") or {}
    nets = (obj.get("NetworkSettings") or {}).get("Networks") or {}
    mode = ",".join(sorted(nets)) if isinstance(nets, dict) else "?"  # "none" for --network none
    if not isinstance(labels, dict):
        return {}, ""
    return {str(k): str(v) for k, v in labels.items() if str(k).startswith(LABEL_PREFIX)}, mode or "?"


def add_hooks(
    spec: dict[str, Any], labels: dict[str, str], conf: dict[str, Any],
    stages: tuple[str, ...] = ("createRuntime", "poststop"),
) -> None:
    """Copy the labels into annotations and append cnirun's hooks (createRuntime and poststop)."""
    ann = spec.get("annotations")
    if not isinstance(ann, dict):
        ann = {}
    ann.update(labels)
    spec["annotations"] = ann
    hooks = spec.get("hooks")
    if not isinstance(hooks, dict):
        hooks = {}
    env = hook_environment(conf)
    from .argv import HOOK_TIMEOUT

    timeout = int(conf.get("hook_timeout") or HOOK_TIMEOUT)
    for stage in stages:
        argv = list(conf["hook_argv"]) + [stage]
        entry = {"path": argv[0], "args": argv, "env": env, "timeout": timeout}
        existing = hooks.get(stage)
        existing = existing if isinstance(existing, list) else []
        if entry not in existing:  # a re-run create on the same bundle must not add it twice
            existing.append(entry)
        hooks[stage] = existing
    spec["hooks"] = hooks


def hook_environment(conf: dict[str, Any]) -> list[str]:
    """The hook's whole environment (KEY=VALUE), as recorded at install."""
    env = list(conf.get("hook_env") or [])
    # The hook writes /etc/hosts only when it is Docker's own file under this root.
    if not any(e.startswith("CNIRUN_DOCKER_ROOT=") for e in env):
        env.append("CNIRUN_DOCKER_ROOT=" + str(conf.get("docker_root") or DEFAULT_DOCKER_ROOT))
    return env


def _new_netns_entry(spec: dict[str, Any]) -> dict[str, Any] | None:
    """The spec's `network` namespace entry when it asks runc for a new namespace, else None."""
    linux = spec.get("linux")
    for ns in (linux.get("namespaces") if isinstance(linux, dict) else None) or []:
        if isinstance(ns, dict) and ns.get("type") == "network":
            return None if ns.get("path") else ns
    return None


def start_attach(bundle: str, container_id: str, spec: dict[str, Any], env: dict[str, str]) -> int:
    """Fork the attach worker (attach.run_for_shim); returns the read end of its ready pipe.

    The start gate is made and locked first, so that it exists before runc
    can be asked to start the container; the worker inherits the lock.
    """
    from .start_gate import open_gate

    started = _monotonic()
    gate = open_gate(container_id, env)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the worker reports through the gate, the pipe and the log
        code = 1
        try:
            os.close(r)
            os.setsid()
            os.chdir("/")
            # go-runc reads the create's stdout/stderr (the container's, with IO) to
            # EOF: the worker keeps none of the shim's descriptors but its own two.
            null = os.open(os.devnull, os.O_RDWR)
            for target in (0, 1, 2):
                os.dup2(null, target)
            keep = sorted({0, 1, 2, gate, w})
            for lo, hi in zip(keep, keep[1:] + [max(os.sysconf("SC_OPEN_MAX"), 65536)]):
                os.closerange(lo + 1, hi)
            os.environ.clear()
            os.environ.update(env)
            from ..core.process import set_name

            set_name("cnirun-attach")
            from .attach import run_for_shim
            from ..core.oci_state import OCIState, config_from_dict

            ann = {k: str(v) for k, v in (spec.get("annotations") or {}).items()}
            state = OCIState(container_id, 0, bundle, "creating", ann)
            code = run_for_shim(state, config_from_dict(spec), gate, w, started)
        finally:
            os._exit(code)
    os.close(w)
    os.close(gate)  # the worker holds the lock now (flock belongs to the shared open file)
    return r


def wait_ready(container_id: str, ready: int, env: dict[str, str]) -> bool:
    """Wait until the worker has made the netns (True), or found it must leave the attach to the hook (False).

    ShimError with the worker's message when it failed before; the gate is
    removed unless the worker goes on attaching.
    """
    chunks = []
    with os.fdopen(ready, "rb") as f:
        while True:
            b = f.read()
            if not b:
                break
            chunks.append(b)
    said = b"".join(chunks)
    if said == b"\n":  # the namespace is there (bare EOF is a worker that died before)
        return True
    from .start_gate import remove_gate

    remove_gate(container_id, env)
    if said == b"hook\n":
        return False
    msg = said.decode(errors="replace").strip()
    if not msg.startswith("cnirun: "):
        raise ShimError("the network attach was killed before the namespace was made: start the container again")
    raise ShimError(msg.removeprefix("cnirun: "))


def _monotonic() -> float:
    import time

    return time.monotonic()


def prepare_bundle(bundle: str, container_id: str, conf: dict[str, Any]) -> bool:
    """Add the hooks to <bundle>/config.json when the container asks for CNI networks.

    A container in a new network namespace (the usual `--network none`) is
    attached early: the namespace is made and pinned by a forked worker,
    runc joins it by path, and the ADDs run while runc creates the
    container; `runc start` waits for them (start_gate). No hook is added
    then. Any other namespace setup gets the createRuntime hook, which
    refuses it with its own message. Returns whether the bundle was changed.
    """
    path = os.path.join(bundle, "config.json")
    try:
        with open(path, "rb") as f:
            spec = json.loads(f.read())
    except (OSError, ValueError) as e:
        raise ShimError(f"cannot read the OCI spec {path}: {e}") from None
    if not isinstance(spec, dict):
        raise ShimError(f"the OCI spec {path} is not a JSON object")
    ann = spec.get("annotations") if isinstance(spec.get("annotations"), dict) else {}
    labels = {k: str(v) for k, v in ann.items() if k.startswith(LABEL_PREFIX)}
    mode = ""
    if "cnirun.networks" not in labels:
        labels, mode = docker_labels(conf.get("docker_root") or DEFAULT_DOCKER_ROOT, container_id)
    if "cnirun.networks" not in labels:
        return False
    # Only an empty namespace is ours to fill before runc: with Docker's bridge (or any network
    # mode but none) Docker's own hook puts its interface there too, and the createRuntime hook
    # refuses that with its own message.
    current = conf.get("launcher") == LAUNCHER_VERSION
    ns = _new_netns_entry(spec) if current and conf.get("early_attach", True) and mode in ("", "none") else None
    early = False
    if ns is not None:
        from ..network.netns import pin_path

        env = dict(e.split("=", 1) for e in hook_environment(conf) if "=" in e)
        ann = spec.get("annotations") if isinstance(spec.get("annotations"), dict) else {}
        spec["annotations"] = {**ann, **labels}
        early = wait_ready(container_id, start_attach(bundle, container_id, spec, env), env)
        if early:
            ns["path"] = pin_path(container_id, env)
    # No poststop hook under a current launcher: its `delete` starts the DEL (delete_main) and lets runc go on.
    stages = ("createRuntime",) if current else ("createRuntime", "poststop")
    add_hooks(spec, labels, conf, stages=() if early else stages)
    try:
        atomic_write(path, json.dumps(spec).encode(), file_mode(path))
    except OSError as e:
        if early:
            _abandon(container_id, env)
        raise ShimError(f"cannot update the OCI spec {path}: {e.strerror}") from None
    return True


def _abandon(container_id: str, env: dict[str, str]) -> None:
    """runc will not run after all: let the worker finish, then undo what it attached (`cnirun gc` if that fails)."""
    from .start_gate import outcome, remove_gate

    outcome(container_id, env)  # waits for the worker's end
    remove_gate(container_id, env)
    os.environ.clear()
    os.environ.update(env)
    from ..core.errors import CNIError
    from .detach import detach_container
    from ..core.lock import container_locked
    from ..cni.runtime import CNI

    try:
        with container_locked(container_id):
            detach_container(CNI(), container_id)
    except CNIError:
        pass  # the create fails anyway; gc finds the cache entries


def load_config() -> dict[str, Any]:
    """The install-time settings (runc path, hook argv and env), from CNIRUN_SHIM_CONFIG."""
    path = os.environ.pop(CONFIG_ENV, "")  # runc and the container need not see it
    conf: dict[str, Any] = {}
    if path:
        try:
            with open(path, "rb") as f:
                conf = json.loads(f.read())
        except (OSError, ValueError) as e:
            raise ShimError(f"cannot read the shim config {path}: {e}") from None
    if not conf.get("runc"):
        conf["runc"] = which("runc", exclude=sys.argv[0]) or "/usr/sbin/runc"
    conf["launcher"] = os.environ.pop(LAUNCHER_ENV, "")
    if not conf.get("hook_argv"):
        from .argv import hook_argv, hook_env

        conf["hook_argv"] = hook_argv("")[:-1]
        conf["hook_env"] = hook_env()
    return conf


def report_error(argv: list[str], msg: str) -> None:
    """Say why the create failed: on stderr and in runc's --log, where containerd looks for it.

    containerd's shim builds "OCI runtime create failed: <msg>" from the last
    error line of runc's log; with the container's IO, stderr goes to the
    container's stream, which nobody may read.
    """
    sys.stderr.write(msg + "\n")
    log = ""
    for i, a in enumerate(argv[:-1]):
        if a == "--log":
            log = argv[i + 1]
        if a.startswith("--log="):
            log = a.partition("=")[2]
    if argv and argv[-1].startswith("--log="):
        log = argv[-1].partition("=")[2]
    if not log or "--log-format=json" not in argv and not any(
            a == "--log-format" and b == "json" for a, b in zip(argv, argv[1:])):
        return
    import time

    line = {"level": "error", "msg": msg, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    try:
        fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, json.dumps(line).encode() + b"\n")
        finally:
            os.close(fd)
    except OSError:
        pass  # stderr has it


DELETE_LOCK_FD = 9  # the launcher's `delete` holds the container lock on this fd (docker_runtime.launcher_text)


def delete_main(argv: list[str]) -> int:
    """`<launcher> delete ...` in the background: DEL the container's attachments (detach.run_delete).

    argv: [program, container id]; the hook environment comes from the
    install-time settings, as for the worker of `create`.
    """
    try:
        conf = load_config()
    except ShimError as e:
        report_error([], f"cnirun: {e}")
        return 1
    os.environ.clear()
    os.environ.update(dict(e.split("=", 1) for e in hook_environment(conf) if "=" in e))
    from ..core.process import set_name

    set_name("cnirun-del")
    from .detach import run_delete

    return run_delete(argv[-1] if len(argv) > 1 else "", DELETE_LOCK_FD)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv if argv is None else argv)
    try:
        conf = load_config()
        cmd, idx = subcommand(args)
        if cmd == "create":
            bundle, cid = parse_create(args, idx)
            prepare_bundle(bundle, cid, conf)
    except ShimError as e:
        report_error(args, f"cnirun: {e}")
        return 1
    runc = conf["runc"]
    try:
        os.execv(runc, [runc, *args[1:]])
    except OSError as e:
        sys.stderr.write(f"cnirun: cannot exec {runc}: {e.strerror}: set the runc path with cnirun install docker-runtime\n")
        return 127
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
