"""Teardown for detached (`-d`) containers: a supervised watcher process.

`cnirun run -d` hands its run over to one host-wide watcher and returns.
Layout: `python -P -m cnirun.run.watch supervise` (new session, no terminal,
started as cnirun.core.resident says) holds <state root>/.watcher.lock, its
pid and generation inside, imports every module it and its worker can use
(PRELOADED) and forks the worker, which inherits the locked descriptor, so
the lock is held while either lives; the supervisor forks a new worker when
one dies. Neither imports anything of cnirun after it started, so an upgrade
that moves or removes modules cannot break a running watcher; a watcher of
another generation (an earlier cnirun's, which imported as it went) is
stopped by the next ensure_watcher, whose watcher takes over its runs. The
worker:

- adopts every detached run whose lock is free (flocks its state dir),
- tears a run down (DEL, helper removal) when its container is removed:
  Docker events for speed; for Podman, one thread looking at the
  containers' storage dirs, which `podman rm` removes before it returns
  (engines.podman.Podman.follow; closely for a while once a run's poststop
  hook said its container stopped); and a periodic re-check in case an
  event was missed. A container that only stopped
  keeps its networks (and, in Docker sandbox mode, its helper), so `docker restart`, `docker stop; docker start` and `podman
  restart` bring it back on them, as in hook mode; when dockerd restarted
  and stopped the helper, the worker starts it again and re-attaches the
  networks into its new netns (reattach_run), same addresses where the
  chain allows it,
- checks (tears down) up to CONCURRENT runs at once, each run by one
  thread at a time (a run's events while it is checked are checked again
  after); a run's teardown records its phase before it acts, and the run
  keeps its state dir until it is done, so a killed worker's runs are
  finished by the next worker or `cnirun gc`,
- reconciles from the state dirs on every (re)start, so nothing that died
  while no watcher ran is forgotten; it exits after a while with nothing to
  watch.

Every `run -d` calls ensure_watcher(), which wakes a running worker through
its FIFO (.watcher.wake) to adopt the new run at once, and `cnirun gc` does
whenever a run needs a watcher or one runs; gc tears down what no watcher
owns, so even a killed supervisor loses nothing.

`python -P -m cnirun.run.watch resolvers` is another process: the keeper of the
networks' DNS resolvers (cnirun.dns.keeper.keep), one per state dir, whatever the
mode of the containers on them.
"""
from __future__ import annotations

import os
import queue
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from ..state.runs import RunMeta, RunState, list_states, state_root, watcher_lock

RECHECK_SECONDS = 10.0
SCAN_SECONDS = 1.0
CONCURRENT = 8  # runs checked (torn down) at once: a `docker rm -f` of many is not done one by one
STORAGE_SECONDS = 5.0  # how long after a Podman container stopped its storage is watched (watch_storage)
# In the lock file after the supervisor's pid. Bump it when what a watcher reads (run states, records)
# changes: a watcher of another generation is replaced. Watchers of cnirun before 2 wrote no generation.
WATCHER_GENERATION = "2"
# The worker's package and every one below it (tests/test_layers.py's order): all it can import.
PRELOADED = ("core", "cni", "engines", "state", "dns", "netstore", "network", "oci", "run")


def _idle_seconds() -> float:
    try:
        return float(os.environ.get("CNIRUN_WATCHER_IDLE", "30"))
    except ValueError:
        return 30.0


def _try_lock(path: Path) -> int | None:
    from ..core.lock import flock

    return flock(str(path), blocking=False)


def pid_path(root: Path) -> Path:
    return root / ".watcher.pid"


def watcher_running(root: Path | None = None) -> bool:
    fd = _try_lock(watcher_lock(root))
    if fd is None:
        return True
    os.close(fd)
    return False


def wake_path(root: Path) -> Path:
    """The FIFO the worker reads: a byte in it makes the worker look for new runs now, not at its next scan."""
    return root / ".watcher.wake"


def wake(root: Path) -> None:
    """Have a running worker adopt the runs handed over now (a run removed right after `run -d` returned is
    torn down as soon as any other); nothing when no worker reads (a watcher starting scans anyway)."""
    try:
        fd = os.open(wake_path(root), os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:  # ENXIO: no reader; ENOENT: no watcher made it yet
        return
    try:
        os.write(fd, b".")
    except OSError:  # EAGAIN: full, a wake-up is pending already
        pass
    finally:
        os.close(fd)


def ensure_watcher(root: Path | None = None) -> None:
    """Start the supervisor unless one of this generation runs (one of another generation is stopped
    first; a second one started in a race exits at once); wake a running one's worker."""
    from ..core.resident import spawn_argv, spawn_env, stop_outdated

    root = root or state_root()
    if watcher_running(root) and not stop_outdated(str(watcher_lock(root)), WATCHER_GENERATION, str(pid_path(root))):
        wake(root)
        return
    log = open(root / ".watcher.log", "ab")
    try:
        subprocess.Popen(
            spawn_argv("cnirun.run.watch", "supervise"), env=spawn_env(os.environ),
            stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            start_new_session=True, close_fds=True, cwd="/",
        )
    finally:
        log.close()


def _log(msg: str) -> None:
    sys.stderr.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} cnirun-watch[{os.getpid()}]: {msg}\n")
    sys.stderr.flush()


def supervise() -> int:
    """Hold the watcher's lock and keep a worker running until one ends idle."""
    from ..core.resident import hold

    root = state_root()
    fd = hold(str(watcher_lock(root)), WATCHER_GENERATION)
    if fd is None:
        return 0  # another supervisor (or its worker) is running
    pid_path(root).write_text(str(os.getpid()))
    _log("supervisor started")
    preload()
    while True:
        rc = _fork_worker()
        if rc == 0:
            _log("worker idle, exiting")
            return 0
        _log(f"worker ended with {rc}; respawning")
        time.sleep(0.3)


def _fork_worker() -> int:
    """Run a worker in a child (the modules already loaded, the locked descriptor shared); its exit code,
    or minus the signal that ended it."""
    pid = os.fork()
    if pid == 0:
        rc = 1
        try:
            rc = work()
        finally:
            sys.stderr.flush()
            os._exit(rc)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def work() -> int:
    """The worker's life: its loop until it is idle (0), or 1 when it failed."""
    _log("worker started")
    try:
        return Worker().loop()
    except Exception as e:  # noqa: BLE001 - logged; the supervisor starts another worker
        _log(f"worker failed: {e}")
        return 1


def preload() -> None:
    """Import every module of PRELOADED now: the watcher runs for as long as detached runs do, and an
    upgrade may move or remove the files of the ones its work imports lazily."""
    import importlib
    import pkgutil

    for name in PRELOADED:
        package = importlib.import_module(f"cnirun.{name}")
        for module in pkgutil.walk_packages(package.__path__, f"cnirun.{name}."):
            try:
                importlib.import_module(module.name)
            except Exception as e:  # noqa: BLE001 - that module's work fails when it comes, as it would have
                _log(f"cannot load {module.name}: {e}")


class Worker:
    """Owns the detached runs no process owns; tears each down when its container is removed."""

    def __init__(self) -> None:
        self.owned: dict[str, tuple[RunState, RunMeta]] = {}
        self.todo: queue.Queue[str] = queue.Queue()
        self._engines: dict[str, Any] = {}
        # Runs whose engine could not be reached at the last pass (dockerd
        # restarting): not adopted yet, but the worker is not idle either.
        self.waiting: set[str] = set()
        self.retry: dict[str, float] = {}  # run ID -> when its lost netns may be looked at again
        self.gone: set[str] = set()  # runs whose container's storage went (watch_storage): no need to ask
        import threading

        self._mu = threading.Lock()  # owned, busy and again: the loop and the checking threads share them
        self.busy: set[str] = set()  # runs a thread checks now
        self.again: set[str] = set()  # runs to check once more when that ends (an event came meanwhile)
        self._ready: queue.Queue[str] = queue.Queue()  # runs for the checking threads
        self._threads = 0  # checking threads started (they last as long as the worker)

    def engine(self, name: str) -> Any:
        """One engine object per engine for the worker's life (Docker's follows one event stream)."""
        if name not in self._engines:
            from ..engines import get

            self._engines[name] = get(name)
        return self._engines[name]

    def adopt_new(self) -> None:
        before, self.waiting = self.waiting, set()
        for st in list_states():
            if st.id in self.owned:
                continue
            meta = st.read_meta()
            # "teardown": a DEL that failed earlier; retried when its container is gone
            if meta is None or not meta.detached or meta.phase not in ("running", "teardown"):
                continue
            if not st.lock(blocking=False):
                continue  # its run is still finishing, or gc is at it
            try:
                eng = self.engine(meta.engine)
            except Exception as e:  # noqa: BLE001 - engine down (restarting?): try again at the next pass
                if st.id not in before:
                    _log(f"cannot watch run {st.id[:12]} yet: {e}")
                self.waiting.add(st.id)
                st.unlock()
                continue
            with self._mu:
                self.owned[st.id] = (st, meta)
            _log(f"watching {meta.engine} container {meta.workload[:12]} (run {st.id[:12]})")
            eng.follow(meta.workload, st.id, self.todo.put)
            self.todo.put(st.id)  # check once now: it may have died already

    def check(self, run_id: str) -> None:
        """Keep a run whose container exists (running or stopped); tear down one whose container is gone."""
        from .teardown import teardown

        if run_id not in self.owned:
            return
        st, meta = self.owned[run_id]
        eng = self.engine(meta.engine)
        if run_id not in self.gone and meta.workload and (_stored(meta) or eng.exists(meta.workload)):
            if meta.sandbox:
                self._keep_helper(eng, st, meta)
            elif lost_netns(meta):
                try:
                    _log(f"run {run_id[:12]}: {restore_netns(st, meta, eng)}")
                except Exception as e:  # noqa: BLE001 - logged; retried at the next check
                    _log(f"cannot name run {run_id[:12]}'s netns {meta.netns} again: {e}")
            return
        errors = teardown(st, meta, eng, stop=False)
        for e in errors:
            _log(f"teardown of run {run_id[:12]}: {e}")
        if not errors:
            _log(f"tore down run {run_id[:12]} (container {meta.workload[:12]})")
            with self._mu:
                del self.owned[run_id]
            self.gone.discard(run_id)

    def dispatch(self, run_id: str) -> None:
        """Have a checking thread check the run (up to CONCURRENT at once); one being checked now is
        checked once more after."""
        import threading

        with self._mu:
            if run_id not in self.owned:
                return
            if run_id in self.busy:
                self.again.add(run_id)
                return
            self.busy.add(run_id)
            more = self._threads < min(len(self.busy), CONCURRENT)  # a thread for each run under way
            if more:
                self._threads += 1
        self._ready.put(run_id)
        if more:
            threading.Thread(target=self._checking, daemon=True).start()

    def _checking(self) -> None:
        """A checking thread: checks the runs dispatch hands it, for the worker's life."""
        while True:
            run_id = self._ready.get()
            try:
                self.check(run_id)
            except Exception as e:  # noqa: BLE001 - logged; the run is checked again at the next recheck
                _log(f"check of run {run_id[:12]} failed: {e}")
            with self._mu:
                self.busy.discard(run_id)
                if run_id in self.again:
                    self.again.discard(run_id)
                    self.todo.put(run_id)

    def _keep_helper(self, eng: Any, st: RunState, meta: RunMeta) -> None:
        """Keep the netns holder (Docker's sandbox helper) running, its netns attached: the stopped
        workload may start again, and it can only join a running helper."""
        from ..core.fsutil import identity

        state = eng.state(meta.sandbox)
        if state is None:
            _log(f"helper {meta.sandbox[:12]} of run {st.id[:12]} was removed: its networks stay until the "
                 "container is removed")
            return
        try:
            if state != "running":
                eng.start(meta.sandbox)  # dockerd restarted (or someone stopped it)
            netns = eng.netns_of(meta.sandbox)
        except Exception as e:  # noqa: BLE001 - logged; retried at the next check
            _log(f"cannot restart helper {meta.sandbox[:12]} of run {st.id[:12]}: {e}")
            return
        ident = identity(netns)
        # The path too: the kernel recycles nsfs inode numbers, so a helper
        # restarted at once can get a new netns with its old one's number.
        if netns == meta.netns and ident == meta.netns_id:
            self._restart_workload(eng, st, meta)
            return
        try:
            atts = reattach_run(st, meta, netns)
        except Exception as e:  # noqa: BLE001 - logged; retried at the next check
            _log(f"cannot re-attach run {st.id[:12]} in its helper's new netns: {e}")
            return
        _log(f"re-attached run {st.id[:12]} in its helper's new netns: "
             + ", ".join(f"{a.ifname} {','.join(a.addresses())}" for a in atts))
        self._restart_workload(eng, st, meta)

    def _restart_workload(self, eng: Any, st: RunState, meta: RunMeta) -> None:
        """Start the workload the engine's restart policy could not start while its helper was down
        (dockerd restarted: it starts both at once and does not retry the one that lost)."""
        try:
            if not eng.restart_refused(meta.workload):
                return
            eng.start(meta.workload)
        except Exception as e:  # noqa: BLE001 - logged; retried at the next check
            _log(f"cannot start container {meta.workload[:12]} of run {st.id[:12]} again (its restart "
                 f"policy): {e}")
            return
        _log(f"started container {meta.workload[:12]} of run {st.id[:12]} again: its restart policy could "
             "not while its helper was down")

    def listen(self) -> None:
        """Read the wake FIFO: each write (wake(), a Podman run's poststop hook) becomes an empty entry of
        `todo`, so the loop adopts at once; a run ID (the hook's) starts watch_storage."""
        import threading

        path = wake_path(state_root())
        try:
            try:
                os.mkfifo(path, 0o600)
            except FileExistsError:
                pass
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)  # read-write: never blocks, never at end of file
        except OSError as e:  # the scan every SCAN_SECONDS still adopts
            _log(f"cannot listen on {path}: {e}")
            return

        def read() -> None:
            while True:
                for run_id in os.read(fd, 4096).decode(errors="replace").split():
                    if run_id != ".":  # its Podman container stopped (the run's poststop hook)
                        self.watch_storage(run_id)
                self.todo.put("")

        threading.Thread(target=read, daemon=True).start()

    def watch_storage(self, run_id: str) -> None:
        """For STORAGE_SECONDS after a Podman container stopped: tear its run down as soon as its storage is
        gone (`podman rm` removes it before it returns; `podman wait` would tell a poll interval and two
        podman calls later). A container that only stopped keeps it: the watch just ends."""
        import threading

        from ..engines.podman import storage_dir

        owned = self.owned.get(run_id)  # the loop may have torn it down meanwhile
        meta = owned[1] if owned else None
        path = storage_dir(meta.workload) if meta is not None and meta.engine == "podman" else ""
        if not path:
            return

        def poll() -> None:
            deadline = time.monotonic() + STORAGE_SECONDS
            while time.monotonic() < deadline:
                if not os.path.isdir(path):
                    self.gone.add(run_id)
                    self.todo.put(run_id)
                    return
                time.sleep(0.005)

        threading.Thread(target=poll, daemon=True).start()

    def loop(self) -> int:
        """Adopt runs (when woken, and every SCAN_SECONDS), hand the runs events name to the checking
        threads, re-check every run every RECHECK_SECONDS; 0 once idle for _idle_seconds()."""
        self.listen()
        idle_since = time.monotonic()
        last_recheck = time.monotonic()
        last_scan = 0.0
        woken = True
        while True:
            if woken or time.monotonic() - last_scan >= SCAN_SECONDS:
                woken, last_scan = False, time.monotonic()
                self.adopt_new()
                with self._mu:
                    owned = list(self.owned.items())
                for rid, (_, meta) in owned:
                    if lost_netns(meta) and now_due(self.retry, rid):
                        self.todo.put(rid)  # a stopped container cannot start without it: not at the next recheck
            try:
                run_id = self.todo.get(timeout=SCAN_SECONDS)
                if run_id:
                    self.dispatch(run_id)
                else:
                    woken = True
            except queue.Empty:
                pass
            now = time.monotonic()
            if now - last_recheck > RECHECK_SECONDS:
                last_recheck = now
                with self._mu:
                    for rid in self.owned:
                        self.todo.put(rid)
            if self.owned or self.waiting:
                idle_since = now
            elif now - idle_since > _idle_seconds():
                return 0


def _stored(meta: RunMeta) -> bool:
    """Whether a Podman run's container has its storage dir: it exists (a removed one has none), no podman
    process asked (the re-check of a thousand runs would start a thousand)."""
    from ..engines.podman import storage_dir

    return meta.engine == "podman" and bool(storage_dir(meta.workload))


def now_due(retry: dict[str, float], key: str, every: float = 2.0) -> bool:
    """True at most once every `every` seconds per key (a repair that keeps failing is not retried in a loop)."""
    now = time.monotonic()
    if retry.get(key, 0.0) > now:
        return False
    retry[key] = now + every
    return True


def lost_netns(meta: RunMeta) -> bool:
    """Whether a running run's named netns (a Podman run's /run/netns/cnirun-*) is gone, or not the attached one.

    /run is a tmpfs: a reboot empties it (and `ip netns delete` removes one);
    the stopped container's `podman start` would fail with "invalid netns
    path" for as long as its run lasts. Another namespace at the path (one
    made again whose attach did not finish) is not the one the run attached.
    """
    from ..core.fsutil import identity
    from ..network.netns import named_dir

    if meta.sandbox or meta.phase != "running" or not meta.netns or os.path.dirname(meta.netns) != named_dir():
        return False
    return identity(meta.netns) != meta.netns_id


def restore_netns(st: RunState, meta: RunMeta, eng: Any) -> str:
    """Name a run's lost netns again; returns what was done, for the log. Raises on failure (the next check retries).

    A running container still lives in the namespace its run attached: only
    its name is gone, and it is given back (re-attaching would DEL the
    running container's links). A stopped one has none: a new netns is made
    under the name and its networks are attached there (reattach_run), on
    the same addresses and MACs. Call with the run's state dir locked (its
    owner: the watcher, or gc when no watcher runs).
    """
    from ..network import netns as nsmod
    from ..core.fsutil import identity

    name = os.path.basename(meta.netns)
    if eng.is_running(meta.workload):
        path = eng.netns_of(meta.workload)
        if identity(path) != meta.netns_id:
            raise RuntimeError(f"container {meta.workload[:12]} runs in another netns than its run attached: left alone")
        if os.path.lexists(meta.netns):
            raise RuntimeError(f"{meta.netns} is another namespace now: left alone")
        nsmod.attach(name, int(path.split("/")[2]))
        return f"named the running container's netns {meta.netns} again (the name was gone)"
    if not os.path.lexists(meta.netns):
        nsmod.create(name)
    atts = reattach_run(st, meta, meta.netns)
    return f"made the netns {meta.netns} again (it was gone): " + ", ".join(
        f"{a.ifname} {','.join(a.addresses())}" for a in atts)


def reattach_run(st: RunState, meta: RunMeta, netns: str) -> list[Any]:
    """lifecycle.reattach of a run's cached attachments into `netns` (its holder's new one); meta updated.

    Same networks, interfaces, options, addresses and MACs (new ones only
    when those were taken meanwhile). reattach DELs every attachment before
    it ADDs them again: what it must re-ADD is copied into the run's state
    first, so a process killed (or an ADD failing) in between leaves the full
    set for the next try, not an empty cache that would "re-attach" nothing.
    """
    from ..network.lifecycle import cached_attachments, reattach
    from ..core.fsutil import identity
    from .caches import cni_for

    cni = cni_for(meta)
    saved = st.path / "reattach"
    if saved.is_dir():
        from ..cni.cache import read_file

        todo = [read_file(p) for p in sorted(saved.iterdir()) if not p.name.startswith(".")]
    else:
        todo = cached_attachments(cni, meta.id)
        _save_copies(saved, [a.path for a in todo])
    atts = reattach(cni, meta.id, netns, todo)
    meta.netns, meta.netns_id = netns, identity(netns)
    st.write_meta(meta)
    import shutil

    shutil.rmtree(saved, ignore_errors=True)
    return atts


def _save_copies(directory: Path, files: list[str]) -> None:
    """Copy cache files into `directory`, made under a temporary name and renamed: all or nothing."""
    import shutil

    tmp = directory.with_name(directory.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(mode=0o700)
    for f in files:
        shutil.copy2(f, tmp / os.path.basename(f))
    os.replace(tmp, directory)


def main(argv: list[str]) -> int:
    cmd = argv[0] if argv else ""
    if cmd == "supervise":
        return supervise()
    if cmd == "worker":  # as a supervisor of an earlier cnirun starts it
        preload()
        return work()
    if cmd == "resolvers":  # the DNS resolvers' keeper (cnirun.dns): one per state dir
        from ..dns.keeper import keep

        return keep()
    sys.stderr.write("usage: python -P -m cnirun.run.watch supervise|worker|resolvers\n")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
