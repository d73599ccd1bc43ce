"""What a host must give a user who is not root before their containers can have CNI networks.

Rootless Podman's containers reach a user's networks through a network
namespace owned by the user's user namespace, linked to the outside by
slirp4netns (docs/rootless.md). That needs, per user: subordinate uid and gid
ranges (newuidmap/newgidmap map them, as Podman does), /dev/net/tun usable
(slirp4netns's tap device), unprivileged user namespaces enabled, a runtime
dir (XDG_RUNTIME_DIR) and the programs themselves. `problems` names each one
that is missing, with its fix, in one line each; nothing here changes the
host (opening /dev/net/tun without TUNSETIFF creates no device).
"""
from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Mapping

TUN = "/dev/net/tun"
SUBUID, SUBGID = "/etc/subuid", "/etc/subgid"
PROGRAMS = (("slirp4netns", "slirp4netns"), ("newuidmap", "uidmap"), ("newgidmap", "uidmap"), ("podman", "podman"))
# The range Podman asks for (a container image's ids up to 65535 must map).
RANGE = 65536


def subordinate_range(path: str, name: str, uid: int) -> int:
    """How many subordinate ids `path` (/etc/subuid or /etc/subgid) gives the user, by name or by uid."""
    total = 0
    try:
        with open(path, "rb") as f:
            text = f.read(1 << 20).decode("utf-8", "replace")
    except OSError:
        return 0
    for line in text.splitlines():
        parts = line.strip().split(":")
        if len(parts) != 3 or parts[0] not in (name, str(uid)):
            continue
        try:
            start, count = int(parts[1]), int(parts[2])
        except ValueError:
            continue
        if start >= 0 and count > 0:
            total += count
    return total


def _sysctl(path: str) -> int | None:
    try:
        with open(path, "rb") as f:
            return int(f.read(64).strip() or b"0")
    except (OSError, ValueError):
        return None


def _which(program: str, environ: Mapping[str, str]) -> bool:
    import shutil

    return any(shutil.which(program, path=p) for p in (environ.get("PATH") or "", "/usr/bin:/usr/sbin:/bin:/sbin"))


def problems(environ: Mapping[str, str] | None = None, *, tun: str = TUN, subuid: str = SUBUID, subgid: str = SUBGID,
             proc_sys: str = "/proc/sys") -> list[str]:
    """Each prerequisite this host lacks for the calling user, as one line naming the fix ([] : none)."""
    import pwd

    from ..core.errors import CNIError
    from ..core.paths import user_runtime_dir

    env = os.environ if environ is None else environ
    uid = os.geteuid()
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        name = str(uid)
    out: list[str] = []
    try:
        user_runtime_dir(env)
    except CNIError as e:
        out.append(str(e))
    for path, flag in ((subuid, "--add-subuids"), (subgid, "--add-subgids")):
        if subordinate_range(path, name, uid) < RANGE:
            out.append(f"{path} gives {name} fewer than {RANGE} subordinate ids (fix, as root: "
                       f"usermod {flag} 100000-165535 {name}, with a range no other user has)")
    try:
        os.close(os.open(tun, os.O_RDWR | os.O_CLOEXEC))
    except OSError as e:
        try:
            mode = f"mode {os.stat(tun).st_mode & 0o777:04o}"
        except OSError:
            mode = "missing"
        out.append(f"cannot open {tun} ({mode}: {e.strerror}): slirp4netns needs it (fix, as root: "
                   f"chmod 0666 {tun}, as Debian ships it)")
    if _sysctl(f"{proc_sys}/user/max_user_namespaces") == 0:
        out.append("user namespaces are disabled (user.max_user_namespaces is 0; fix, as root: "
                   "sysctl -w user.max_user_namespaces=15000)")
    if _sysctl(f"{proc_sys}/kernel/unprivileged_userns_clone") == 0:
        out.append("unprivileged user namespaces are disabled (fix, as root: "
                   "sysctl -w kernel.unprivileged_userns_clone=1)")
    missing = [(prog, pkg) for prog, pkg in PROGRAMS if not _which(prog, env)]
    if missing:
        pkgs = " ".join(dict.fromkeys(pkg for _, pkg in missing))
        out.append(f"{', '.join(p for p, _ in missing)} not found (fix, as root: apt-get install {pkgs})")
    return out
