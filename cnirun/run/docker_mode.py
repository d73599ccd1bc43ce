"""Choosing how `cnirun run` attaches a Docker container: helper sandbox or OCI hook.

Hook mode (the cnirun runtime registered in dockerd) saves a whole helper
container per run, but the hook attaches whatever the container's labels
name using the environment recorded when the runtime was installed. So it is
only chosen when that is exactly what this run would do:

- every network must be one the hook can find (none from `-f FILE`);
- the recorded NETCONFPATH, CNI_PATH and CNI_CACHE_DIR must be this run's
  (else the hook would attach other networks, other plugins, another cache);
- the options must be expressible as the hook's labels (static IPs on eth0 only).

Everything here reads local files only: no `docker info` round trip. Whether
dockerd really loaded the runtime shows when the container is created (see
runner: an auto-chosen hook run falls back to the sandbox then).
"""
from __future__ import annotations

import os
TYPE_CHECKING = False  # typing costs ~7 ms of start-up on `cnirun run`: annotations only
if TYPE_CHECKING:
    from typing import Any, Mapping

from ..core.errors import ArgumentError

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
    """docker_runtime.installed_settings(), skipping its import when daemon.json cannot name the runtime."""
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

    auto: the user's container alone (runner.docker_single) where it can
    work, else a helper container (runner.docker_sandbox); single/helper
    force one (single refuses a run it cannot carry out).
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


def choose(requested: str, cni: Any, file_networks: list[str]) -> str:
    """'sandbox' or 'hook' for this run; ArgumentError when --mode hook cannot work.

    requested: '' (auto), 'sandbox' or 'hook'. file_networks: networks that
    come from -f.
    """
    if requested == "sandbox":
        return "sandbox"
    hook = requested == "hook"
    if file_networks:
        if hook:
            raise ArgumentError(
                f"--mode hook cannot attach {', '.join(file_networks)}: networks from -f exist only for this "
                "command and the OCI hook cannot see them; drop --mode hook (sandbox mode is used) or "
                "install the network into NETCONFPATH"
            )
        return "sandbox"
    settings = installed_settings()
    if settings is None:
        if hook:
            raise ArgumentError(
                "--mode hook needs the cnirun OCI runtime registered in dockerd: run `cnirun install docker-runtime`"
            )
        return "sandbox"
    why = env_mismatch(recorded_env(settings.get("env") or {}), effective_env(cni))
    if why:
        if hook:
            raise ArgumentError(
                f"--mode hook: the cnirun runtime was installed for other networks ({why}): "
                f"reinstall it from this environment (`{REINSTALL}`) or drop --mode hook"
            )
        return "sandbox"
    return "hook"
