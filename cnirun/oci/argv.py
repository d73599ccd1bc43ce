"""How engines call the OCI hook: its argv and its environment, for the installers.

hooksd (Podman/CRI-O hooks.d files), docker_runtime (the Docker shim's
settings) and the shim itself write what these return; the hook itself
(cnirun.oci.hook) never needs them. Imports only os and sys (the shim's create
path uses hook_argv).
"""
from __future__ import annotations

import os
import sys

from ..core.fsutil import DEFAULT_PATH
from ..core.paths import PACKAGE_PARENT

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Mapping

# Seconds an engine lets the attaching hook run before it kills it: its entry in the Docker shim's
# bundles (hooks/cnirun-attach.json says the same to Podman and CRI-O); oci.attach's budget stays below.
HOOK_TIMEOUT = 120
# Variables `cnirun install` records into hooks so hook runs see the same
# networks, plugins and cache as the shell that installed them.
RECORDED_ENV = (
    "NETCONFPATH",
    "CNI_PATH",
    "CNI_CACHE_DIR",
    "CNIRUN_STATE_DIR",
    "CNIRUN_HOOK_LOG",
    "CNIRUN_LOCK_FILE",
    "CNIRUN_PLUGIN_TIMEOUT",
    "CNIRUN_DEFAULT_NETWORK",
    "CNIRUN_HOOK_BUDGET",
    "CNIRUN_DOCKER_ROOT",
    "CNIRUN_STORAGE_ROOTS",
    "CNIRUN_MAX_PUBLISHED_PORTS",  # portlock's host-wide budget: the hook checks label ports against it too
)


def package_parent() -> str:
    """The directory holding the cnirun package (what a -I -S python must put on sys.path)."""
    return PACKAGE_PARENT


def hook_argv(stage: str, python: str | None = None) -> list[str]:
    """The full argv (argv[0] included) that runs this hook with a lean interpreter.

    -I -S skip site-packages and the editable-install finder (a few ms per
    start); the package directory is put on sys.path explicitly instead.
    run_process() skips the interpreter's teardown.
    """
    exe = python or sys.executable
    boot = (
        f"import sys; sys.path.insert(0, {package_parent()!r}); "
        "from cnirun.oci.hook import run_process; run_process()"
    )
    return [exe, "-I", "-S", "-c", boot, stage]


def hook_env(environ: Mapping[str, str] | None = None) -> list[str]:
    """The hook's whole environment: a PATH that finds iptables plus the recorded CNI settings."""
    env = os.environ if environ is None else environ
    path = env.get("PATH") or DEFAULT_PATH
    parts = path.split(":")
    for needed in ("/usr/sbin", "/sbin", "/usr/bin", "/bin"):
        if needed not in parts:
            parts.append(needed)
    out = ["PATH=" + ":".join(p for p in parts if p)]
    for key in RECORDED_ENV:
        if env.get(key):
            out.append(f"{key}={env[key]}")
    return out


