"""The resolvers' keeper: a resolver that dies is started again at once.

dnsmasq daemonises: nobody waits on it. One keeper per state dir (`python -P -m
cnirun.run.watch resolvers`: one process whatever the number of networks and
containers) holds <dns>/.keeper.lock (its pid and generation inside), watches every
resolver of the state dir through a pidfd; one that dies while its record
says it should run is started again (under its network's lock, or its
container's: never beside a stop) within milliseconds. New resolvers are
watched within KEEP_RESCAN. It exits once no resolver is left; register(),
gc and `network reload` start it whenever none runs, so a killed keeper
comes back with the next container, gc or reload. A resolver that keeps
dying is started again at most every KEEP_BACKOFF_MAX seconds.

A keeper is the holder of the lock, whatever started it. It imports all it
uses when it starts (see _preload), so an upgrade that moves cnirun's modules
while it runs does not break its next restart, and it writes its generation
beside its pid: a keeper of another generation (an earlier cnirun's, which
imported as it went) is stopped by the next start of a keeper, which replaces
it. Nothing identifies a keeper by its command line.
"""
from __future__ import annotations

import os

from ..core.fsutil import DEFAULT_PATH
from .dnsmasq import DNSError, detached, running
from .resolver import resolver_pid, revive_network
from .store import conf_path, dns_root, lock, lock_path, members, net_dir, networks
from .view import VIEWS, revive_view, view_cids, view_conf, view_wanted

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable

KEEPER_LOCK = ".keeper.lock"
KEEPER_LOG = ".keeper.log"
KEEP_RESCAN = 1.0
KEEP_IDLE = 2.0
KEEP_BACKOFF_MAX = 60.0
KEEPER_LOG_MAX = 1 << 20
# In the lock file after the pid. Bump it when what a keeper reads (the names store, the records) changes:
# a keeper of another generation is replaced. Keepers of cnirun before 2 wrote no generation.
KEEPER_GENERATION = "2"
_keepers: list[int] = []  # keepers this process started, reaped at the next ensure_keeper


def _keeper_lock() -> str:
    return os.path.join(dns_root(), KEEPER_LOCK)


def ensure_keeper() -> None:
    """Start the keeper unless one runs (of two started in a race, the second exits at once)."""
    from ..core.lock import flock
    from ..core.paths import state_dir
    from ..core.resident import spawn_argv, spawn_env, stop_outdated

    for pid in list(_keepers):
        try:
            if os.waitpid(pid, os.WNOHANG)[0]:
                _keepers.remove(pid)
        except ChildProcessError:
            _keepers.remove(pid)
    fd = flock(_keeper_lock(), blocking=False)
    if fd is None and stop_outdated(_keeper_lock(), KEEPER_GENERATION):
        fd = flock(_keeper_lock(), blocking=False)
    if fd is None:
        return
    os.close(fd)
    # This package first on its path: the hook runs with -I -S and finds cnirun by an explicit sys.path.
    env = spawn_env({"PATH": os.environ.get("PATH") or DEFAULT_PATH,
                     "CNIRUN_STATE_DIR": state_dir(), "PYTHONPATH": os.environ.get("PYTHONPATH", "")})
    log = os.path.join(dns_root(), KEEPER_LOG)
    try:
        if os.path.getsize(log) > KEEPER_LOG_MAX:
            os.truncate(log, 0)
    except OSError:
        pass
    try:
        _keepers.append(detached(spawn_argv("cnirun.run.watch", "resolvers"), env, log, os.O_APPEND))
    except OSError:
        pass  # the resolvers run all the same; the next register, gc or reload tries again


def kept() -> list[str]:
    """The configs of every resolver of the state dir that should run."""
    confs = [conf_path(n) for n in networks() if os.path.exists(conf_path(n)) and members(n)]
    return confs + [view_conf(c) for c in view_cids() if os.path.exists(view_conf(c)) and view_wanted(c)]


def _keep_one(conf: str) -> str:
    """Start the resolver of `conf` again if it is dead and should run; what was done ('' for nothing)."""
    owner = os.path.basename(os.path.dirname(conf))
    if os.path.basename(os.path.dirname(os.path.dirname(conf))) == VIEWS:
        # Busy: being started or stopped (the next scan looks again).
        return f"restarted the DNS resolver of container {owner[:12]}" if revive_view(owner, False) else ""
    if not os.path.isdir(net_dir(owner)):
        return ""
    fd = lock(owner)
    try:
        if not os.path.isdir(net_dir(owner)):  # stopped meanwhile: its lock file goes with it
            os.unlink(lock_path(owner))
            return ""
        return f"restarted the DNS resolver of network {owner}" if revive_network(owner) else ""
    finally:
        os.close(fd)


def _log(msg: str) -> None:
    import sys
    import time

    sys.stderr.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} cnirun-dns-keeper[{os.getpid()}]: {msg}\n")
    sys.stderr.flush()


def _hold() -> int | None:
    """Take the keeper's lock and write our pid and generation in it (None: another keeper holds it)."""
    from ..core.resident import hold

    return hold(_keeper_lock(), KEEPER_GENERATION)


def _preload() -> None:
    """Import now every module the keeper's work imports lazily (restarting a resolver: its lock, its guard
    rules, the spawn, the netns check): it runs as long as resolvers do, and may outlive their files."""
    import _socket  # noqa: F401
    import fcntl  # noqa: F401
    import select  # noqa: F401
    import shutil  # noqa: F401
    import time  # noqa: F401
    import zlib  # noqa: F401

    from ..cni import invoke  # noqa: F401
    from ..core import fsutil, lock, paths, trace  # noqa: F401
    from . import guard, hostname  # noqa: F401


class _Restarts:
    """Restarts of dead resolvers, each one backing off while it keeps dying."""

    def __init__(self) -> None:
        self.last: dict[str, tuple[float, float]] = {}  # conf -> (last restart, delay before the next one)

    def __call__(self, conf: str) -> None:
        import time

        now = time.monotonic()
        before, delay = self.last.get(conf, (-KEEP_BACKOFF_MAX, 0.0))
        if now < before + delay:
            return  # dying again and again: wait (the next scans retry)
        try:
            done = _keep_one(conf)
        except Exception as e:  # noqa: BLE001 - logged; the next scan tries again
            done = f"cannot restart the DNS resolver of {conf}: {e}"
        if done:
            _log(done)
            self.last[conf] = (now, min(max(2 * delay, 1.0), KEEP_BACKOFF_MAX) if now - before < 10.0 else 0.0)


def _watch(confs: list[str], restart: Callable[[str], None]) -> None:
    """Restart the dead resolvers of `confs`, then wait up to KEEP_RESCAN for one to die and restart it."""
    import select

    watched: dict[int, str] = {}
    for conf in confs:
        pid = running(conf)
        try:
            watched[os.pidfd_open(pid)] = conf
            continue
        except (OSError, ValueError):  # pid 0, or gone since
            pass
        restart(conf)
    poller = select.poll()
    for pfd in watched:
        poller.register(pfd, select.POLLIN)
    try:
        fired = [watched[pfd] for pfd, _ in poller.poll(KEEP_RESCAN * 1000)]
    finally:
        for pfd in watched:
            os.close(pfd)
    for conf in fired:
        restart(conf)


def keep() -> int:
    """The keeper's loop (see above); 0 once no resolver is left."""
    import time

    os.chdir("/")
    _preload()
    held = _hold()
    if held is None:
        return 0
    _log(f"keeping the DNS resolvers of {dns_root()}")
    restart = _Restarts()
    idle_since = time.monotonic()
    while True:
        confs = kept()
        now = time.monotonic()
        if confs:
            idle_since = now
        elif now - idle_since >= KEEP_IDLE:
            os.close(held)  # then look once more: a starter that found the lock held relies on this look
            if not kept() or (held := _hold()) is None:
                _log("no resolver left, exiting")
                return 0
            continue
        _watch(confs, restart)


def revive(only: set[str] | None = None, dry_run: bool = False) -> list[tuple[str, str]]:
    """`cnirun network reload`: start again the resolvers (of `only`, default all) that died while their
    network has containers, and the keeper. (network, '' or the error) per resolver found dead."""
    out: list[tuple[str, str]] = []
    for network in networks():
        if (only and network not in only) or not members(network) or resolver_pid(network):
            continue
        if dry_run:
            out.append((network, ""))
            continue
        fd = lock(network)
        try:
            if revive_network(network):
                out.append((network, ""))
        except DNSError as e:
            out.append((network, str(e)))
        finally:
            os.close(fd)
    if not dry_run and any(os.path.exists(conf_path(n)) for n in networks()):
        ensure_keeper()
    return out
