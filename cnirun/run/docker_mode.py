"""How `cnirun run` attaches a Docker container: hook, or sandbox with one container or a helper.

decide() is the one place that answers, with why (shown by --debug):

- hook: an ordinary `docker run` with the cnirun runtime, whose hook
  attaches from the container's labels (docker_hook). It saves a whole
  helper container per run, but the hook attaches what the labels name
  with the environment recorded when the runtime was installed, so it is
  only taken when that is exactly what this run would do: every network
  one the hook can find (none from `-f FILE`, none closed to label joins),
  the recorded NETCONFPATH, CNI_PATH and CNI_CACHE_DIR this run's.
- single: sandbox mode with the user's container alone, held at its
  entrypoint until ADD is done (docker_single); not for detached runs,
  restart policies, environment names busybox's shell cannot carry, or a
  run without a command.
- helper: sandbox mode with a helper container holding the netns
  (docker_sandbox); it always works.

--mode and CNIRUN_SANDBOX ask for one; asked for and unable to carry out
the run, it is an ArgumentError (one line, exit 125). The hook's fitness is
read from local files only: no `docker info` round trip. Whether dockerd
really loaded the runtime shows when the container is created; an
auto-chosen hook run then decides again with the runtime refused.
"""
from __future__ import annotations

import os
TYPE_CHECKING = False  # start-up cost: see cnirun.core
if TYPE_CHECKING:
    from typing import Any, Callable, Mapping

    from ..engines.base import DockerClient
    from .plan import Plan

from ..core.errors import ArgumentError
from ..core.value import Value

COMPARED_ENV = ("NETCONFPATH", "CNI_PATH", "CNI_CACHE_DIR")
REINSTALL = "cnirun uninstall docker-runtime && cnirun install docker-runtime"


def effective_env(cni: Any) -> dict[str, str]:
    """This run's CNI settings, made absolute, in the form they are compared in."""
    from ..cni.config import netconf_dirs

    return {
        "NETCONFPATH": ":".join(os.path.abspath(d) for d in netconf_dirs(cni.netconf_path)),
        "CNI_PATH": ":".join(os.path.abspath(d) for d in cni.plugin_dirs),
        "CNI_CACHE_DIR": os.path.abspath(cni.cache_dir),
    }


def recorded_env(env: Mapping[str, str]) -> dict[str, str]:
    """The runtime's recorded settings with the defaults a hook run falls back to filled in."""
    from ..cni.cache import DEFAULT_CACHE_DIR
    from ..cni.config import netconf_dirs
    from ..cni.invoke import plugin_dirs

    return {
        "NETCONFPATH": ":".join(os.path.abspath(d) for d in netconf_dirs(env.get("NETCONFPATH") or "")),
        "CNI_PATH": ":".join(os.path.abspath(d) for d in plugin_dirs(env.get("CNI_PATH") or "")),
        "CNI_CACHE_DIR": os.path.abspath(env.get("CNI_CACHE_DIR") or DEFAULT_CACHE_DIR),
    }


def env_mismatch(recorded: Mapping[str, str], current: Mapping[str, str]) -> str:
    """'' when equal, else which setting differs, as a short phrase."""
    for key in COMPARED_ENV:
        if recorded.get(key) != current.get(key):
            return f"{key} is {recorded.get(key)!r} for the runtime but {current.get(key)!r} here"
    return ""


def installed_settings(daemon_json: str = "/etc/docker/daemon.json") -> dict[str, Any] | None:
    """oci.install.docker_runtime.installed_settings(), skipping its import when daemon.json cannot name
    the runtime."""
    try:
        with open(daemon_json, "rb") as f:
            if b'"cnirun"' not in f.read():
                return None
    except OSError:
        return None
    from ..oci.install.docker_runtime import installed_settings as settings

    return settings(daemon_json)


SANDBOX_ENV = "CNIRUN_SANDBOX"
SANDBOX_KINDS = ("auto", "single", "helper")


def sandbox_requested(environ: Mapping[str, str] | None = None) -> str:
    """Which sandbox mode CNIRUN_SANDBOX asks for: 'auto' (default), 'single' or 'helper'.

    auto: the user's container alone (docker_single) where it can work,
    else a helper container (docker_sandbox); single/helper force one
    (single refuses a run it cannot carry out).
    """
    value = (os.environ if environ is None else environ).get(SANDBOX_ENV, "") or "auto"
    if value not in SANDBOX_KINDS:
        raise ArgumentError(f"{SANDBOX_ENV}={value!r}: expected auto, single or helper (or leave it unset)")
    return value


def warn_sandbox_ignored(this_run: str, instead: str = "") -> None:
    """One warning line on stderr when CNIRUN_SANDBOX names a sandbox path and this run has no sandbox mode
    (`this_run` says what it uses, `instead` what else to do); a bad value is an ArgumentError, as in sandbox mode."""
    kind = sandbox_requested()
    if kind != "auto":
        import sys

        sys.stderr.write(f"cnirun: warning: {SANDBOX_ENV}={kind} applies to Docker's sandbox mode only, and "
                         f"{this_run}: {instead + ', or ' if instead else ''}unset {SANDBOX_ENV}\n")


class DockerMode(Value):
    """decide()'s answer: `kind` hook, single or helper; `why` in one phrase; `image_config`: the image's
    Config when single (its argv and environment are merged from it), else None."""

    _fields = ("kind", "why", "image_config")

    def __init__(self, kind: str, why: str, image_config: dict[str, Any] | None = None) -> None:
        self.kind = kind
        self.why = why
        self.image_config = image_config


def decide(p: Plan, client: Callable[[], DockerClient], runtime_unknown: str = "") -> DockerMode:
    """How this Docker run attaches, and why; ArgumentError when the mode asked for cannot carry it out.

    client() returns the run's Docker client: called only when the image's
    config decides between single and helper. runtime_unknown: dockerd
    refused the cnirun runtime at create (its words): hook is out.
    """
    req = p.req
    why = hook_unfit(req.mode, p.cni, p.networks, p.file_networks, runtime_unknown, req.spec.runtime)
    if not why:
        return _decided("hook", "the cnirun runtime is installed with this run's CNI settings")
    kind = sandbox_requested()
    if kind == "helper":
        return _decided("helper", f"{why}; {SANDBOX_ENV}=helper")
    image_config = None
    unfit = single_unfit(req.spec)
    if not unfit:
        image_config = client().image_config(req.spec.image)
        unfit = single_unfit(req.spec, image_config)
    if unfit:
        if kind == "single":
            raise ArgumentError(f"{SANDBOX_ENV}=single cannot carry out this run: {unfit}; unset {SANDBOX_ENV} "
                                "(a helper container is used)")
        return _decided("helper", f"{why}; {unfit}")
    return _decided("single", why, image_config)


def _decided(kind: str, why: str, image_config: dict[str, Any] | None = None) -> DockerMode:
    from ..core import trace

    if trace.ON:
        trace.event("docker mode", 0.0, f"{kind}: {why}")
    return DockerMode(kind, why, image_config)


def hook_unfit(requested: str, cni: Any, networks: list[Any], file_networks: list[str],
               runtime_unknown: str = "", runtime: str = "") -> str:
    """'' when hook mode can carry out the run, else why not (one phrase); ArgumentError when
    `requested` is 'hook' and it cannot.

    requested: '' (auto), 'sandbox' or 'hook'. networks: the run's conflists;
    file_networks: the names of those that come from -f. runtime: the OCI
    runtime the container asks for (--runtime), '' for the engine's default.
    """
    if requested == "sandbox":
        return "--mode sandbox"
    hook = requested == "hook"
    if runtime and runtime != _cnirun_runtime():
        # Hook mode is the container run under the cnirun runtime (runc and the attach): a container
        # runs under one runtime, so one asking for another is attached from outside, in sandbox mode.
        if hook:
            raise ArgumentError(f"--mode hook runs the container under the cnirun runtime, not {runtime!r}: "
                                "drop --mode hook (sandbox mode is used) or drop --runtime")
        return f"the container asks for runtime {runtime!r}, and hook mode is the cnirun runtime"
    from ..cni.config import labels_allowed

    closed = [n.name for n in networks if not labels_allowed(n)]
    if closed:
        # The hook refuses label joins of these networks: the sandbox attaches them itself.
        if hook:
            raise ArgumentError(
                f"--mode hook cannot attach {', '.join(closed)}: its conflist sets \"cnirun\": "
                '{"allowLabels": false}; drop --mode hook (sandbox mode is used)'
            )
        return f"{', '.join(closed)} refuse label joins (allowLabels false)"
    if file_networks:
        if hook:
            raise ArgumentError(
                f"--mode hook cannot attach {', '.join(file_networks)}: networks from -f exist only for this "
                "command and the OCI hook cannot see them; drop --mode hook (sandbox mode is used) or "
                "install the network into NETCONFPATH"
            )
        return f"{', '.join(file_networks)} come from -f, which the hook cannot see"
    settings = installed_settings()
    if settings is None:
        if hook:
            raise ArgumentError(
                "--mode hook needs the cnirun OCI runtime registered in dockerd: run `cnirun install docker-runtime`"
            )
        return "the cnirun runtime is not installed"
    why = env_mismatch(recorded_env(settings.get("env") or {}), effective_env(cni))
    if why:
        if hook:
            raise ArgumentError(
                f"--mode hook: the cnirun runtime was installed for other networks ({why}): "
                f"reinstall it from this environment (`{REINSTALL}`) or drop --mode hook"
            )
        return f"the cnirun runtime was installed for other networks ({why})"
    if runtime_unknown:
        if hook:
            raise ArgumentError(
                f"--mode hook: dockerd does not know the cnirun runtime ({runtime_unknown}): run "
                "`cnirun install docker-runtime` (it reloads dockerd)"
            )
        # daemon.json names the runtime but dockerd was not reloaded: the sandbox always works.
        return f"dockerd does not know the cnirun runtime ({runtime_unknown})"
    return ""


def _cnirun_runtime() -> str:
    from ..oci.install.docker_runtime import RUNTIME_NAME

    return RUNTIME_NAME


def single_unfit(spec: Any, image_config: dict[str, Any] | None = None) -> str:
    """'' when the user's container can be held alone (docker_single), else why not (one phrase).

    Without image_config only what the run's options decide is checked.
    """
    if spec.detach:
        return ("a detached container must come back on its addresses after `docker restart` or `docker start`, "
                "with no cnirun to release it")
    if spec.restart and spec.restart != "no":
        return "a restart policy would start the container again with no cnirun to release it"
    if spec.runtime and spec.runtime != "runc":
        # The hold is a busybox shell bind-mounted in and a FIFO shared with cnirun: runc runs both as
        # the default runtime does; a VM or Wasm runtime may run neither.
        return f"the hold is busybox's shell and a FIFO, which runtime {spec.runtime!r} may not run"
    if image_config is None:
        return ""
    from .docker_single import merged_env, resolve_argv, shell_name

    bad = sorted(k for k in merged_env(image_config, spec.resolved_env()) if not shell_name(k))
    if bad:
        return f"busybox's shell cannot pass on environment names such as {bad[0]!r}"
    if not resolve_argv(image_config, spec.entrypoint, spec.command):
        return "no command: dockerd reports that itself"
    return ""
