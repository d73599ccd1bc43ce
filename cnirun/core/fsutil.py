"""Atomic file replacement, shared by every writer of files that others read.

The result cache (every OCI hook run) and the Docker shim's create path use
this (start-up cost: see cnirun.core).
"""
from __future__ import annotations

import os

# Temp files are named `.tmp-<pid>-<random>` in the target's directory: the
# same file system (so the rename is atomic), a leading dot and no `.json` /
# `.conflist` suffix (so no directory reader - the cache lister, podman's
# hooks.d, the netconf loader - ever takes a half-written file for a real one).
TMP_PREFIX = ".tmp-"


def atomic_write(path: str | os.PathLike[str], data: bytes, mode: int = 0o644, *, fsync: bool = True) -> None:
    """Replace `path` with `data`, mode exactly `mode` (umask does not apply).

    A temp file in the same directory is written, optionally fsynced, and
    renamed over `path`: readers see the old content or the new one, never a
    mix, and a crash leaves no partial file under the real name. On any
    failure the temp file is removed and the error propagates (the caller
    turns it into its own one-line error). The directory must exist.
    """
    path = os.fspath(path)
    # O_EXCL with a random name is what mkstemp does, without importing tempfile.
    tmp = os.path.join(os.path.dirname(path), f"{TMP_PREFIX}{os.getpid()}-{os.urandom(6).hex()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        try:
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def file_mode(path: str | os.PathLike[str], default: int = 0o644) -> int:
    """The permission bits of `path`, `default` when it cannot be stat'ed."""
    try:
        return os.stat(path).st_mode & 0o7777
    except OSError:
        return default


def unsafe_dir(path: str) -> str:
    """Why `path` is not a directory only root controls ('' when it is).

    The directory (or, when it does not exist, its nearest existing parent)
    must be root's and writable by nobody else; every parent must be root's
    and not writable by others, unless sticky (as /tmp is: others cannot
    replace root's entries there). A symbolic link on the way (the path as
    given is what gets recorded and later followed by the engine) must be
    root's too, in such a directory: else its owner could point it elsewhere
    after the check.
    """
    why = _unsafe_link(os.path.abspath(path))
    if why:
        return why
    current = os.path.realpath(path)
    leaf = True
    while True:
        try:
            st = os.stat(current)
        except FileNotFoundError:
            parent = os.path.dirname(current)
            if parent == current:
                return ""
            current = parent
            continue
        except OSError as e:
            return f"{current}: {e.strerror}"
        if st.st_uid != 0:
            return f"{current} belongs to uid {st.st_uid}, not root"
        others_write = st.st_mode & 0o002 or (st.st_mode & 0o020 and st.st_gid != 0)
        if others_write and (leaf or not st.st_mode & 0o1000):
            return f"{current} is writable by users other than root (mode {st.st_mode & 0o7777:o})"
        leaf = False
        parent = os.path.dirname(current)
        if parent == current:
            return ""
        current = parent


def _unsafe_link(path: str) -> str:
    """Why a symbolic link among `path`'s components could be repointed by someone else ('' if none)."""
    import stat

    prefix = "/"
    for part in path.strip("/").split("/"):
        prefix = os.path.join(prefix, part)
        try:
            st = os.lstat(prefix)
        except OSError:
            return ""  # not there (yet): nothing further to follow
        if not stat.S_ISLNK(st.st_mode):
            continue
        if st.st_uid != 0:
            return f"{prefix} is a symbolic link of uid {st.st_uid}, not root's: give the directory it names"
        try:
            parent = os.stat(os.path.dirname(prefix))
        except OSError as e:
            return f"{os.path.dirname(prefix)}: {e.strerror}"
        if parent.st_uid != 0 or (parent.st_mode & 0o002 or (parent.st_mode & 0o020 and parent.st_gid != 0)) \
                and not parent.st_mode & 0o1000:
            return f"{prefix} is a symbolic link in a directory others can change: give the directory it names"
    return ""


# The command search path where none is given (an engine gives hooks no PATH of its own).
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def which(name: str, dirs: list[str] | tuple[str, ...] | None = None, exclude: str = "") -> str:
    """The first executable `name` in `dirs` (default: PATH, else the usual directories); '' when none.

    shutil.which's answer without shutil's imports (fnmatch, bz2, lzma: ~3 ms
    of a run). `exclude`: a program that must not be taken (a launcher that
    shadows the real one under the same name).
    """
    search = dirs if dirs is not None else (os.environ.get("PATH") or DEFAULT_PATH).split(":")
    for d in search:
        p = os.path.join(d, name)
        if d and os.path.isfile(p) and os.access(p, os.X_OK):
            if exclude and os.path.realpath(p) == os.path.realpath(exclude):
                continue
            return p
    return ""


def identity(path: str) -> str:
    """Which file `path` is (device:inode), '' when gone: for a netns (an nsfs file or a bind mount
    of one), which namespace it is; a path may name another one later."""
    try:
        st = os.stat(path)
    except OSError:
        return ""
    return f"{st.st_dev}:{st.st_ino}"
