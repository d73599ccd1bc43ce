"""Where cnirun keeps its run-time state: every path defined once, here.

Everything lives under the state dir (CNIRUN_STATE_DIR, default /run/cnirun:
a tmpfs, so a reboot starts it empty, as it must, since namespaces and
processes it describes are gone too):

    <state>/containers/<run id>/  one `cnirun run`'s state (state.RunState)
    <state>/containers/.watcher.* the `-d` watcher's lock, pid and log (bookkeeping)
    <state>/netns/<container id>  a hook-pinned netns (network.netns)
    <state>/locks/<container id>.lock  a container's lifecycle lock
    <state>/starting/<container id>  the gate `runc start` waits on while the
                                  Docker shim's worker attaches (start_gate)

The host-wide CNI lock is /run/cnirun/cni.lock whatever the state dir
(CNIRUN_LOCK_FILE moves it): runs with other state dirs still share the
host's iptables chains. The hook log is not state: CNIRUN_HOOK_LOG, default
/var/log/cnirun/hooks.log.
The result cache is libcni's (CNI_CACHE_DIR, default /var/lib/cni: cache.py).

On the hook path: imports only os.
"""
from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Mapping

# The cnirun package's directory and the one holding it (the source tree, or
# site-packages): what a `python -I -S` must put on sys.path, and where netconf/
# and hooks/ sit in a source tree or an editable install.
PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE_PARENT = os.path.dirname(PACKAGE_DIR)

DEFAULT_STATE_DIR = "/run/cnirun"
DEFAULT_HOOK_LOG = "/var/log/cnirun/hooks.log"
DEFAULT_CNI_LOCK = DEFAULT_STATE_DIR + "/cni.lock"
# A netns path that never exists: DEL given it drops the cached netns path (which,
# for a /proc/<pid>/ns/net path, may name another process's netns by now) and
# lets the plugins clean up the host side; cnirun then sweeps bridge's NAT rules.
NO_NETNS = DEFAULT_STATE_DIR + "/.no-netns"


def _env(environ: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if environ is None else environ


def state_dir(environ: Mapping[str, str] | None = None) -> str:
    return _env(environ).get("CNIRUN_STATE_DIR") or DEFAULT_STATE_DIR


def runs_dir(environ: Mapping[str, str] | None = None) -> str:
    """Where `cnirun run` keeps one directory per run."""
    return os.path.join(state_dir(environ), "containers")


def pins_dir(environ: Mapping[str, str] | None = None) -> str:
    return os.path.join(state_dir(environ), "netns")


def gates_dir(environ: Mapping[str, str] | None = None) -> str:
    return os.path.join(state_dir(environ), "starting")


def container_lock(container_id: str, environ: Mapping[str, str] | None = None) -> str:
    return os.path.join(state_dir(environ), "locks", container_id + ".lock")


def cni_lock(environ: Mapping[str, str] | None = None) -> str:
    """The host-wide CNI lock: CNIRUN_LOCK_FILE, else /run/cnirun/cni.lock (never per state dir)."""
    return _env(environ).get("CNIRUN_LOCK_FILE") or DEFAULT_CNI_LOCK


def hook_log(environ: Mapping[str, str] | None = None) -> str:
    return _env(environ).get("CNIRUN_HOOK_LOG") or DEFAULT_HOOK_LOG
