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

A user who is not root gets defaults of their own (rootless): the state dir
is $XDG_RUNTIME_DIR/cnirun, and the CNI lock, the hook log, the result cache
(<state>/cni) and host-local's data (<state>/ipam) live under it; networks
are under ${XDG_CONFIG_HOME:-~/.config}/cni/net.d, as rootless Podman keeps
them. Nothing of root's is read or written, and users share no path.
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
NETNS_DIR = "/run/netns"  # iproute2's named network namespaces
HOST_LOCAL_DATA_DIR = "/var/lib/cni/networks"  # host-local's own dataDir
DEFAULT_HOOK_LOG = "/var/log/cnirun/hooks.log"
DEFAULT_CNI_LOCK = DEFAULT_STATE_DIR + "/cni.lock"
# A netns path that never exists: DEL given it drops the cached netns path (which,
# for a /proc/<pid>/ns/net path, may name another process's netns by now) and
# lets the plugins clean up the host side; cnirun then sweeps bridge's NAT rules.
NO_NETNS = DEFAULT_STATE_DIR + "/.no-netns"
# dockerd's data root unless daemon.json's data-root moves it (the installer records the real one).
DEFAULT_DOCKER_ROOT = "/var/lib/docker"

_NAME_FIRST = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_NAME_REST = _NAME_FIRST | frozenset("_.-")


def is_safe_name(name: str) -> bool:
    """The rule libcni applies to container IDs and network names (^[a-zA-Z0-9][a-zA-Z0-9_.-]*$).

    Such a name is part of cache, IPAM and state file names: it is one path
    component ('/' and a leading '.' are refused). Checked without `re`
    (hook path); unlike re's `$`, a trailing newline is refused, as Go's
    regexp does.
    """
    return bool(name) and name[0] in _NAME_FIRST and all(c in _NAME_REST for c in name)


def _env(environ: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if environ is None else environ


_HOST_ROOT: list[bool] = []  # memo of _host_root(): one read of uid_map per process


def _host_root() -> bool:
    """Whether this process is the host's root: uid 0 in the initial user namespace (whose uid_map
    maps every uid to itself). Root of a user's own namespace (`unshare -r`, `podman unshare`, a
    rootless Podman's hooks) is that user."""
    if not _HOST_ROOT:
        ok = os.geteuid() == 0
        if ok:
            try:
                with open("/proc/self/uid_map", "rb") as f:
                    ok = f.read(128).split() == [b"0", b"0", b"4294967295"]
            except OSError:
                pass  # no /proc: nothing to tell a user namespace by
        _HOST_ROOT.append(ok)
    return _HOST_ROOT[0]


def rootless() -> bool:
    """Whether this process runs for a user who is not root (every default below is then that user's own).

    A cnirun that network.rootless runs inside the user's namespaces for them is root there and not
    rootless: its environment names the user's paths, and the rootless netns is its host."""
    return not _host_root() and not inside_user_namespace()


#: Set (to the user's uid) in the environment of a cnirun that runs inside a user's namespaces (network.rootless:
#: their user, mount and rootless network namespaces), where it is root of the user namespace only.
INSIDE_ENV = "CNIRUN_ROOTLESS_UID"


def inside_user_namespace(environ: Mapping[str, str] | None = None) -> bool:
    """Whether this cnirun runs inside a user's namespaces for them (network.rootless.enter): root of a
    user namespace, with the marker set (set by a user outside, it means nothing)."""
    return bool(_env(environ).get(INSIDE_ENV)) and os.geteuid() == 0 and not _host_root()


def named_netns_dir(environ: Mapping[str, str] | None = None) -> str:
    """Where named network namespaces are: iproute2's /run/netns, or, inside a user's namespaces (where
    /run/netns is root's), <state>/named-netns."""
    return os.path.join(state_dir(environ), "named-netns") if inside_user_namespace(environ) else NETNS_DIR


def user_runtime_dir(environ: Mapping[str, str] | None = None) -> str:
    """The user's $XDG_RUNTIME_DIR/cnirun (rootless): ConfigError, in one line naming the fix, when there is none."""
    from .errors import ConfigError

    import stat

    base = _env(environ).get("XDG_RUNTIME_DIR") or ""
    uid = os.geteuid()
    fix = (f"as root: install -d -m 0700 -o {_user_name(uid)} /run/user/{uid}; then export XDG_RUNTIME_DIR=/run/user/{uid}")
    if not base:
        raise ConfigError(f"XDG_RUNTIME_DIR is not set (no login session); {fix}")
    shown = ascii(base)[1:-1][:200]  # one line, whatever the value holds
    try:
        st = os.stat(base)
    except OSError as e:
        raise ConfigError(f"XDG_RUNTIME_DIR {shown}: {e.strerror}; {fix}") from None
    if not os.path.isabs(base) or not stat.S_ISDIR(st.st_mode) or st.st_uid != uid or st.st_mode & 0o022:
        raise ConfigError(f"XDG_RUNTIME_DIR {shown} is not a directory of yours that only you can write; {fix}")
    return os.path.join(base, "cnirun")


def user_config_dir(environ: Mapping[str, str] | None = None) -> str:
    """${XDG_CONFIG_HOME:-$HOME/.config}: where a user who is not root keeps networks (<it>/cni/net.d)."""
    env = _env(environ)
    xdg = env.get("XDG_CONFIG_HOME") or ""
    if os.path.isabs(xdg):
        return xdg
    home = env.get("HOME") or ""
    if not os.path.isabs(home):
        import pwd

        try:
            home = pwd.getpwuid(os.geteuid()).pw_dir
        except KeyError:
            from .errors import ConfigError

            raise ConfigError("HOME is not set and this user has no home directory: set HOME or XDG_CONFIG_HOME") from None
    return os.path.join(home, ".config")


def _user_name(uid: int) -> str:
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def state_dir(environ: Mapping[str, str] | None = None) -> str:
    explicit = _env(environ).get("CNIRUN_STATE_DIR")
    if explicit:
        return explicit
    return user_runtime_dir(environ) if rootless() else DEFAULT_STATE_DIR


def runs_dir(environ: Mapping[str, str] | None = None) -> str:
    """Where `cnirun run` keeps one directory per run."""
    return os.path.join(state_dir(environ), "containers")


def live_record(container_id: str, environ: Mapping[str, str] | None = None) -> str:
    """What the live verbs changed on a running container, which its next start applies again (oci.reapply)."""
    return os.path.join(runs_dir(environ), container_id, "live.json")


def pins_dir(environ: Mapping[str, str] | None = None) -> str:
    return os.path.join(state_dir(environ), "netns")


def gates_dir(environ: Mapping[str, str] | None = None) -> str:
    return os.path.join(state_dir(environ), "starting")


def container_lock(container_id: str, environ: Mapping[str, str] | None = None) -> str:
    return os.path.join(state_dir(environ), "locks", container_id + ".lock")


def cni_lock(environ: Mapping[str, str] | None = None) -> str:
    """The host-wide CNI lock: CNIRUN_LOCK_FILE, else /run/cnirun/cni.lock (never per state dir); a user's own
    under their state dir (rootless: their plugins run on their own bridges and chains)."""
    explicit = _env(environ).get("CNIRUN_LOCK_FILE")
    if explicit:
        return explicit
    return os.path.join(state_dir(environ), "cni.lock") if rootless() else DEFAULT_CNI_LOCK


def hook_log(environ: Mapping[str, str] | None = None) -> str:
    explicit = _env(environ).get("CNIRUN_HOOK_LOG")
    if explicit:
        return explicit
    return os.path.join(state_dir(environ), "hooks.log") if rootless() else DEFAULT_HOOK_LOG


def cache_dir(environ: Mapping[str, str] | None = None) -> str:
    """libcni's result cache: CNI_CACHE_DIR, else /var/lib/cni (a user's own: <state>/cni)."""
    explicit = _env(environ).get("CNI_CACHE_DIR")
    if explicit:
        return explicit
    return os.path.join(state_dir(environ), "cni") if rootless() else "/var/lib/cni"


def netconf_path(environ: Mapping[str, str] | None = None) -> str:
    """NETCONFPATH, else /etc/cni/net.d (a user's own: ${XDG_CONFIG_HOME:-~/.config}/cni/net.d)."""
    explicit = _env(environ).get("NETCONFPATH")
    if explicit is not None:
        return explicit
    return os.path.join(user_config_dir(environ), "cni", "net.d") if rootless() else "/etc/cni/net.d"


def host_local_data_dir(environ: Mapping[str, str] | None = None) -> str:
    """Where host-local keeps reservations when a network's ipam names no dataDir (a user's own: <state>/ipam)."""
    if rootless() or inside_user_namespace(environ):
        return os.path.join(state_dir(environ), "ipam")
    return HOST_LOCAL_DATA_DIR
