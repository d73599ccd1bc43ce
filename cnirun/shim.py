"""The Docker runtime shim: runc with cnirun's OCI hooks added at `create`.

dockerd (through containerd-shim-runc-v2) calls the runtime registered as
`cnirun` with runc's full command line. On `create` the shim:
1. finds the bundle (--bundle/-b in space or '=' form, else the cwd) and the
   container ID (the positional argument after `create`);
2. learns the container's cnirun.* labels without asking dockerd (which is
   busy starting this very container): from the bundle's annotations when a
   caller already put them there, else from Docker's own container config
   <docker root>/containers/<id>/config.v2.json, written before create;
3. copies those labels into the spec's annotations (so the hook reads them
   from the OCI state exactly as under Podman) and appends a createRuntime
   and a poststop hook (appends: Docker has its own prestart hook);
4. execs the real runc with the same argv and environment.
Containers without a cnirun.networks label, and every other runc call, go
straight to runc. The launcher that dockerd executes (see docker_runtime)
is a tiny sh script that only starts Python when an argument is `create`,
so non-create calls cost a shell start, not a Python start.

Only os, sys, cnirun.jsonfast (the json package's C codec without the
package's ~6 ms import of re and enum) and cnirun.fsutil (os only) are imported here: the create path runs
on every container start.
"""
from __future__ import annotations

import os
import sys

from . import jsonfast as json
from .fsutil import atomic_write, file_mode, which

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

LABEL_PREFIX = "cnirun."
CONFIG_ENV = "CNIRUN_SHIM_CONFIG"
DEFAULT_DOCKER_ROOT = "/var/lib/docker"
HOOK_TIMEOUT = 120

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
    create path, which must stay lean (tests/test_hook.py).
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


def docker_labels(docker_root: str, container_id: str) -> dict[str, str]:
    """The cnirun.* labels of a Docker container, read from Docker's own config file."""
    if not container_id or "/" in container_id or container_id.startswith("."):
        return {}
    path = os.path.join(docker_root, "containers", container_id, "config.v2.json")
    try:
        with open(path, "rb") as f:
            obj = json.loads(f.read())
    except FileNotFoundError:
        return {}  # not a Docker container (or another data root): nothing to add
    except (OSError, ValueError) as e:
        raise ShimError(f"cannot read Docker's container config {path}: {e}") from None
    if not isinstance(obj, dict) or obj.get("ID") != container_id:
        return {}
    labels = (obj.get("Config") or {}).get("Labels") or {}
    if not isinstance(labels, dict):
        return {}
    return {str(k): str(v) for k, v in labels.items() if str(k).startswith(LABEL_PREFIX)}


def add_hooks(spec: dict[str, Any], labels: dict[str, str], conf: dict[str, Any]) -> None:
    """Copy the labels into annotations and append cnirun's createRuntime and poststop hooks."""
    ann = spec.get("annotations")
    if not isinstance(ann, dict):
        ann = {}
    ann.update(labels)
    spec["annotations"] = ann
    hooks = spec.get("hooks")
    if not isinstance(hooks, dict):
        hooks = {}
    env = list(conf.get("hook_env") or [])
    # The hook writes /etc/hosts only when it is Docker's own file under this root.
    if not any(e.startswith("CNIRUN_DOCKER_ROOT=") for e in env):
        env.append("CNIRUN_DOCKER_ROOT=" + str(conf.get("docker_root") or DEFAULT_DOCKER_ROOT))
    timeout = int(conf.get("hook_timeout") or HOOK_TIMEOUT)
    for stage in ("createRuntime", "poststop"):
        argv = list(conf["hook_argv"]) + [stage]
        entry = {"path": argv[0], "args": argv, "env": env, "timeout": timeout}
        existing = hooks.get(stage)
        existing = existing if isinstance(existing, list) else []
        if entry not in existing:  # a re-run create on the same bundle must not add it twice
            existing.append(entry)
        hooks[stage] = existing
    spec["hooks"] = hooks


def prepare_bundle(bundle: str, container_id: str, conf: dict[str, Any]) -> bool:
    """Add the hooks to <bundle>/config.json when the container asks for CNI networks.

    Returns whether the bundle was changed.
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
    if "cnirun.networks" not in labels:
        labels = docker_labels(conf.get("docker_root") or DEFAULT_DOCKER_ROOT, container_id)
    if "cnirun.networks" not in labels:
        return False
    add_hooks(spec, labels, conf)
    try:
        atomic_write(path, json.dumps(spec).encode(), file_mode(path))
    except OSError as e:
        raise ShimError(f"cannot update the OCI spec {path}: {e.strerror}") from None
    return True


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
    if not conf.get("hook_argv"):
        from .hook_command import hook_argv, hook_env

        conf["hook_argv"] = hook_argv("")[:-1]
        conf["hook_env"] = hook_env()
    return conf


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv if argv is None else argv)
    try:
        conf = load_config()
        cmd, idx = subcommand(args)
        if cmd == "create":
            bundle, cid = parse_create(args, idx)
            prepare_bundle(bundle, cid, conf)
    except ShimError as e:
        sys.stderr.write(f"cnirun: {e}\n")
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
