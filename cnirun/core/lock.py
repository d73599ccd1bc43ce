"""flock-based locks: the one helper every lock of cnirun goes through, and the CNI chain locks.

`flock()` is how cnirun takes any lock (the chain locks below, a container's
lifecycle lock, a run's state-dir lock, the watcher's, the port lock, the
Podman start gate): a killed holder releases an flock with its last
descriptor, so no lock of cnirun can go stale, and a waiter sleeps in the
kernel (a blocking flock, no polling) until the holder lets go or its
timeout runs out.

Locking around plugin execution (`chain_lock`), found on this host's
reference plugins (1.1.1):

- host-local locks its own store (an flock per network's data dir), and
  every iptables call of the plugins takes the xtables lock (-w): those
  need nothing from us.
- The chains several containers share (portmap's CNI-HOSTPORT-DNAT/-SETMARK
  /-MASQ and their jumps, firewall's CNI-FORWARD/CNI-ADMIN and the FORWARD
  jump) race only while they are created: two plugins both find one
  missing, the second `iptables -N` fails with "Chain already exists", and a
  check-then-insert jump rule can be inserted twice. cnirun creates them
  once, up front, under the host lock held exclusively (chains.py); every
  chain runs under the host lock held *shared*, so the creation never runs
  beside a plugin.
- bridge creates its bridge and gives it the gateway address on the first
  ADD: a bridge plugin that does not tolerate the address being added
  twice fails the second of two first ADDs. A chain whose bridge does not
  exist yet holds that bridge's lock exclusively while it runs; the others
  hold it shared, so they wait only while a bridge is being made.
- GC DELs every cached attachment of a network it is not told to keep,
  which would include an ADD in flight: it holds the network's lock
  exclusively, ADD/DEL/CHECK hold it shared.

So chains on different networks never wait for each other, and chains on
one network wait only for a bridge being created or a GC. The lock files
live beside the host lock file (CNIRUN_LOCK_FILE, default
/run/cnirun/cni.lock): <file>.d/net-<network>.lock, <file>.d/link-<bridge>.lock.
Locks are always taken in that order (host, network, bridge), and the
exclusive host lock only while holding nothing else but the networks lock:
no deadlock.

The networks lock (<file>.d/networks.lock, `networks_lock_path`) is held,
exclusively, by whoever creates networks (`network create`, compose's up:
netstore.store.creating) from reading the networks that exist, through
choosing a free subnet and bridge, to the written conflist: two creations at
once would otherwise both choose the same free subnet. It is taken first and
held for milliseconds; nobody holding another lock waits for it.

A container's lock (`container_locked`, file <state dir>/locks/<id>.lock,
the CNI container ID) is held by every step that changes the container's
attachments, for the whole step: the OCI hook's attach and detach, the
Docker shim's, a run's teardown (run.teardown.detach_networks: `cnirun
run`, the `-d` watcher, gc's teardown of a run), `network connect` and
`disconnect`, `port`, `update`, `network reload`'s repairs, gc's reclaim of
a container no run owns. A DEL under it can therefore never cut into a live
ADD of the same container (the intent record of an ADD it finds pending is
a dead process's). A run's own attach happens before its phase is "running",
and the live verbs change a run only in that phase, under the lock.

The order, one way only: a run's state-dir lock (state.runs.RunState.lock:
who owns the run), then its container's lock, then the port lock and the
chain locks (host, network, bridge). So a teardown (which holds the run's
state-dir lock) waits for a connect that holds the container's lock, and
never the other way round; nothing holding a container's lock waits for a
state-dir lock (the live verbs' record of a hook-mode or foreign container
is made under a new, not yet visible directory's).

A network's and a bridge's lock files outlive neither: `network rm` and gc
remove those of networks and bridges that are gone (remove_stale_locks).
That is race-free: a file is unlinked only while its remover holds it
exclusively (never while anyone holds it or waits in a chain), and chain
locks are taken `replaceable`, so a chain that opened the file before it was
unlinked finds it replaced once it gets the lock and takes the new file.
"""
from __future__ import annotations

import fcntl
import os
import time

from .errors import LockError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import TracebackType

DEFAULT_WAIT = 120.0
CONTAINER_LOCK_WAIT = 60.0


def lock_file() -> str:
    from .paths import cni_lock

    return cni_lock()


def release(fd: int) -> None:
    """Let go of the flock on `fd` and close it.

    An flock belongs to the open file, which lives while any descriptor of
    it does: a child forked without exec holds copies of every descriptor
    of ours until it ends. LOCK_UN lets go whatever copies exist; close
    alone would not.
    """
    try:
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _blocking_flock(fd: int, op: int, wait: float) -> bool:
    """A blocking flock on `fd` that gives up after `wait` seconds; True once taken.

    flock(2) has no timeout. The wait is done in the kernel by a helper
    thread on a duplicate of `fd` (the same open file, so the same lock)
    while we wait on a semaphore with a timeout: no polling. If we give up,
    the helper stays queued and drops the lock the moment it gets it, with
    LOCK_UN (`release`): a child forked meanwhile without exec (a detached
    DEL, a netns helper, another thread's fork) holds a copy of the
    duplicate, and closing ours alone would leave the lock held until that
    child ends.
    _thread, not threading: the OCI hook path stays lean.
    """
    import _thread

    dup = os.dup(fd)
    done = _thread.allocate_lock()
    done.acquire()
    guard = _thread.allocate_lock()
    state = {"taken": False, "abandoned": False, "error": None}

    def take() -> None:
        try:
            fcntl.flock(dup, op)
        except OSError as e:
            state["error"] = e
        with guard:
            if state["abandoned"]:
                release(dup)  # we gave up meanwhile: let the next waiter have it
                return
            state["taken"] = state["error"] is None
            os.close(dup)  # `fd` still holds the open file, and with it the lock
        done.release()

    _thread.start_new_thread(take, ())
    try:
        done.acquire(timeout=max(wait, 0.0))
    except BaseException:  # a signal handler raised (the hook's time budget): give up
        with guard:
            state["abandoned"] = not state["taken"]
        raise
    with guard:
        if state["taken"]:
            return True
        if state["error"] is not None:
            raise state["error"]  # type: ignore[misc]
        state["abandoned"] = True
        return False


def flock(
    path: str,
    *,
    wait: float | None = None,
    blocking: bool = True,
    replaceable: bool = False,
    shared: bool = False,
    what: str = "",
) -> int | None:
    """Open `path` (creating it and its directory) and take an flock; returns the fd.

    Exclusive, or shared=True (several holders at once, none while someone
    holds it exclusively). blocking=False: None at once when it is busy.
    `wait`: give up after that many seconds with LockError naming `what`
    (None: wait for ever). replaceable: the holder may unlink the file when
    done (a container's lock): if the file was replaced after we opened it,
    lock the new one, so two processes can never both hold "the" lock
    through different inodes. The fd is close-on-exec; `release` lets the
    lock go (closing it does too, unless a child forked without exec holds
    a copy).
    """
    try:
        os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    except OSError as e:
        raise LockError(f"cannot create the directory of lock file {path}: {e.strerror}: run as root") from None
    op = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
    deadline = None if wait is None else time.monotonic() + wait
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as e:
            raise LockError(f"cannot open lock file {path}: {e.strerror}: run as root") from None
        try:
            try:
                fcntl.flock(fd, op | fcntl.LOCK_NB)  # the usual case: free, no thread
            except BlockingIOError:
                if not blocking:
                    os.close(fd)
                    return None
                if deadline is None:
                    fcntl.flock(fd, op)
                elif not _blocking_flock(fd, op, deadline - time.monotonic()):
                    raise LockError(
                        f"{what or 'another cnirun process'} has held {path} for more than {wait:g} s: try again later"
                    ) from None
        except BaseException:
            release(fd)
            raise
        if not replaceable:
            return fd
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        release(fd)  # the holder removed the file after we opened it: take the new one


class host_lock:  # noqa: N801 - used as `with host_lock(...)`, like the generator it replaced
    """Hold one lock file (default: the host-wide CNI lock) for a block; LockError (code 11) after `wait` s.

    Exclusive unless shared=True. A plain context manager rather than
    @contextmanager: contextlib is not imported on the hook path. The lock
    is taken on entering the block.
    """

    def __init__(self, path: str | None = None, wait: float = DEFAULT_WAIT, shared: bool = False) -> None:
        self.path = path
        self.wait = wait
        self.shared = shared
        self._fd = -1

    def __enter__(self) -> None:
        self._fd = flock(  # type: ignore[assignment]
            self.path or lock_file(), wait=self.wait, shared=self.shared, what="another CNI operation"
        )

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            release(fd)


def lock_dir(host: str | None = None) -> str:
    """Where the per-network and per-bridge locks (and chains.py's markers) live: beside the host lock."""
    return (host or lock_file()) + ".d"


def network_lock_path(network: str, host: str | None = None) -> str:
    return os.path.join(lock_dir(host), f"net-{network}.lock")


def link_lock_path(link: str, host: str | None = None) -> str:
    return os.path.join(lock_dir(host), f"link-{link}.lock")


def networks_lock_path(host: str | None = None) -> str:
    """The lock under which networks are chosen and installed (see the module's docstring)."""
    return os.path.join(lock_dir(host), "networks.lock")


class chain_lock:  # noqa: N801 - a context manager, like host_lock
    """What one chain execution holds: the host lock shared, its network's lock, and its bridges' locks.

    exclusive=True takes the network's lock exclusively (GC). `new_links`:
    bridges the chain will create (they do not exist yet): held exclusively;
    `links`: bridges that exist, held shared (see the module's docstring).
    The time spent waiting is reported to the trace (cnirun.core.trace).
    """

    def __init__(
        self,
        network: str,
        host: str | None = None,
        *,
        exclusive: bool = False,
        links: tuple[str, ...] = (),
        new_links: tuple[str, ...] = (),
        wait: float = DEFAULT_WAIT,
    ) -> None:
        self.host = host or lock_file()
        self.network = network
        self.exclusive = exclusive
        self.links = links
        self.new_links = new_links
        self.wait = wait
        self._fds: list[int] = []

    def __enter__(self) -> None:
        from . import trace

        t0 = time.monotonic() if trace.ON else 0.0
        deadline = time.monotonic() + self.wait
        what = "another CNI operation"
        while True:  # ends: each round moves at least one of the finite self.links into new_links
            wanted = [(self.host, True), (network_lock_path(self.network, self.host), not self.exclusive)]
            wanted += sorted((link_lock_path(n, self.host), n not in self.new_links)
                             for n in {*self.links, *self.new_links})
            try:
                for path, shared in wanted:
                    left = max(deadline - time.monotonic(), 0.0)
                    # The host lock file stays; the others may be removed (remove_stale_locks).
                    self._fds.append(flock(  # type: ignore[arg-type]
                        path, wait=left, shared=shared, what=what, replaceable=path != self.host))
            except BaseException:
                self.__exit__(None, None, None)
                raise
            # A bridge that existed when the chain was planned may have been deleted
            # while it waited (a -f network's last container went): its ADD will
            # create it again, which needs the bridge's lock exclusively.
            gone = tuple(n for n in self.links if n not in self.new_links and not os.path.exists("/sys/class/net/" + n))
            if not gone:
                break
            self.__exit__(None, None, None)
            self.new_links = (*self.new_links, *gone)
        if trace.ON:
            trace.event("lock wait", time.monotonic() - t0, self.network + (" (exclusive)" if self.exclusive else ""))

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        fds, self._fds = self._fds, []
        for fd in reversed(fds):
            release(fd)


def remove_lock_file(path: str) -> bool:
    """Unlink the lock file `path` unless someone holds it; whether it is gone.

    Locked exclusively, without waiting, while it is unlinked: a holder (or a
    waiter that gets it first) keeps it. Only for files every taker locks
    with replaceable=True (the chain locks' network and bridge files).
    """
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return True
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        try:
            if os.stat(path).st_ino != os.fstat(fd).st_ino:
                return False  # replaced meanwhile: the new file may be someone's
            os.unlink(path)
        except FileNotFoundError:
            pass
        return True
    finally:
        release(fd)


def remove_stale_locks(networks: set[str], host: str | None = None) -> list[str]:
    """Remove the network lock files of networks not in `networks`, and the bridge lock files of
    bridges that no longer exist on the host, unless someone holds them; the names removed."""
    d = lock_dir(host)
    try:
        names = os.listdir(d)
    except OSError:
        return []
    removed: list[str] = []
    for name in names:
        if not name.endswith(".lock"):
            continue  # chains.py's markers
        if name.startswith("net-"):
            stale = name[len("net-"):-len(".lock")] not in networks
        elif name.startswith("link-"):
            link = name[len("link-"):-len(".lock")]
            stale = bool(link) and "/" not in link and not os.path.exists(os.path.join("/sys/class/net", link))
        else:
            continue
        if stale and remove_lock_file(os.path.join(d, name)):
            removed.append(name)
    return removed


def is_held(path: str) -> bool:
    """Whether some live process holds the flock on `path` (a missing file: nobody)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        release(fd)
    return False


def _container_lock_path(container_id: str, state_dir: str | None) -> str:
    from .paths import container_lock

    return container_lock(container_id, {"CNIRUN_STATE_DIR": state_dir} if state_dir else None)


def lock_container(container_id: str, wait: float = CONTAINER_LOCK_WAIT, blocking: bool = True,
                   state_dir: str | None = None) -> int | None:
    """Take a container's lifecycle lock; the fd holding it (None: busy and not blocking).

    container_locked holds it for a block (the module says who takes it and
    in which order); this and unlock_container are for the two holders that
    hand it to another process: the hook's poststop parent takes it and its
    forked child inherits it, the Docker launcher takes it with flock(1) and
    its DEL process inherits it, so it is held without a gap until the DEL
    is done (a `docker restart` runs that DEL and the next attach back to
    back). LockError after `wait` seconds. `state_dir`: the one whose locks/
    holds it (default: CNIRUN_STATE_DIR's). Here, not in the network layer:
    the poststop parent takes it and must not import the runtime core.
    """
    return flock(
        _container_lock_path(container_id, state_dir), wait=wait, blocking=blocking, replaceable=True,
        what=f"another step of container {container_id[:12]} (its start, teardown or a live change)",
    )


class container_locked:  # noqa: N801 - a context manager, like host_lock
    """`with container_locked(id) as lock:` the container's lock (lock_container) for the block.

    blocking=False: lock.held is False at once when someone else holds it
    (the block then must not touch the container). LockError after `wait`
    seconds. The lock file goes with the lock (remove_file), unless the
    block sets lock.remove_file = False (an attach: the container lives on).
    `state_dir`: as lock_container's (a run's own, for a run's container).
    """

    def __init__(self, container_id: str, wait: float = CONTAINER_LOCK_WAIT, blocking: bool = True,
                 state_dir: str | None = None) -> None:
        self.container_id = container_id
        self.wait = wait
        self.blocking = blocking
        self.state_dir = state_dir
        self.remove_file = True
        self.fd: int | None = None

    @property
    def held(self) -> bool:
        return self.fd is not None

    def __enter__(self) -> "container_locked":
        self.fd = lock_container(self.container_id, wait=self.wait, blocking=self.blocking, state_dir=self.state_dir)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        fd, self.fd = self.fd, None
        if fd is not None:
            unlock_container(fd, self.container_id, remove=self.remove_file, state_dir=self.state_dir)


def unlock_container(fd: int, container_id: str, remove: bool = False, state_dir: str | None = None) -> None:
    """Release a container's lock; remove=True also deletes its file (the container is gone)."""
    if remove:
        try:
            os.unlink(_container_lock_path(container_id, state_dir))
        except OSError:
            pass
    release(fd)
