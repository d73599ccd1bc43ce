"""Per-container state kept by `cnirun run` under /run/cnirun/containers/<id>/.

One directory per run, named by the CNI container ID the run uses (a random
64-hex ID, so it exists before any engine object does). It holds:

- `lock`: flocked by whoever is responsible for tearing the run down (the
  foreground `cnirun run`, or the detached-container watcher). `cnirun gc`
  never touches a run whose lock is held, so it is safe beside runs in flight;
  a SIGKILLed owner releases the lock with its last descriptor.
- `meta.json`: the engine, the helper and workload container IDs, the
  networks, and the CNI paths the run used (DEL must use the same cache dir).
- `hosts`, `resolv.conf`: bind-mounted into the workload (see cnirun.network.files).

Directories are made under a temporary name, locked, then renamed into
place, so gc never sees a run's directory without its lock held.
"""
from __future__ import annotations

import os
import time
TYPE_CHECKING = False  # start-up cost: see cnirun.core
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any

from ..core import jsonfast as json  # the json package pulls in re and enum (~10 ms of every connect/port/ps)
from ..core.fsutil import TMP_PREFIX, atomic_write
from ..core.value import Record


def state_root() -> Path:
    """Where run state dirs live: $CNIRUN_STATE_DIR/containers."""
    # pathlib only here and below, never at import: it pulls in re, fnmatch, urllib.parse and
    # ipaddress (~8 ms of every `cnirun update`, `port`, `network connect`, which use paths.runs_dir).
    from pathlib import Path

    from ..core.paths import runs_dir

    return Path(runs_dir())


def watcher_lock(root: Path | None = None) -> Path:
    """The lock the `-d` watcher (cnirun.run.watch) holds while it runs: held = detached runs are watched."""
    return (root or state_root()) / ".watcher.lock"


class RunMeta(Record):
    """What a run records about itself; enough for a later teardown by anyone."""

    id: str  # CNI container ID of every attachment of this run
    engine: str  # "docker" | "podman"
    image: str
    name: str
    workload: str  # engine container ID of the workload
    sandbox: str  # docker: the helper container holding the netns
    netns: str  # the netns path given to ADD (podman: /run/netns/<name>)
    netns_id: str  # "dev:ino" of that netns, to spot a reused /proc/<pid> path
    networks: list[str]
    detached: bool
    remove: bool  # --rm
    mode: str
    cni_env: dict[str, str]  # CNI_PATH, NETCONFPATH, CNI_CACHE_DIR, lock
    created: float
    phase: str  # setup -> running -> teardown
    # `cnirun exec` (engine "", mode "exec"): its command's process, recorded before the command
    # may start; the run is not over while that pid has that start time, whoever owns the lock.
    pid: int
    pid_start: str
    # The bridges of its `-f` networks ({"network", "bridge", "subnets"}), recorded before the DELs
    # (teardown.detach_networks): they go once nothing uses them (teardown.remove_file_bridges).
    bridges: list[dict[str, Any]]
    borrowed: list[str]  # volumes the workload mounts by name (RunSpec.borrowed_volumes): its removal keeps them

    _fields = (
        'id', 'engine', 'image', 'name', 'workload', 'sandbox', 'netns', 'netns_id', 'networks', 'detached',
        'remove', 'mode', 'cni_env', 'created', 'phase', 'pid', 'pid_start', 'bridges', 'borrowed',
    )
    _defaults = {
        'image': "", 'name': "", 'workload': "", 'sandbox': "", 'netns': "", 'netns_id': "", 'networks': list,
        'detached': False, 'remove': False, 'mode': "sandbox", 'cni_env': dict, 'created': time.time,
        'phase': "setup", 'pid': 0, 'pid_start': "", 'bridges': list, 'borrowed': list,
    }

    @classmethod
    def from_dict(cls, obj: dict[str, Any]) -> "RunMeta":
        known = {k: obj[k] for k in cls._fields if k in obj}
        return cls(**known)


class RunState:
    """A run's directory; `lock()` makes this process its owner."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock_fd: int | None = None

    @property
    def id(self) -> str:
        return self.path.name

    @property
    def hosts(self) -> Path:
        return self.path / "hosts"

    @property
    def resolv_conf(self) -> Path:
        return self.path / "resolv.conf"

    @property
    def log(self) -> Path:
        return self.path / "log"

    # -- creation -------------------------------------------------------------
    @classmethod
    def create(cls, root: Path | None = None) -> "RunState":
        """A new, locked state dir with a fresh ID."""
        root = root or state_root()
        root.mkdir(mode=0o755, parents=True, exist_ok=True)
        run_id = os.urandom(32).hex()  # as secrets.token_hex(32), without its ~7 ms import
        tmp = root / (TMP_PREFIX + run_id)
        tmp.mkdir(mode=0o755)
        st = cls(tmp)
        st.lock(blocking=False)
        final = root / run_id
        os.rename(tmp, final)
        st.path = final
        return st

    @classmethod
    def open(cls, run_id: str, root: Path | None = None) -> "RunState":
        return cls((root or state_root()) / run_id)

    # -- ownership ------------------------------------------------------------
    def lock(self, blocking: bool = True) -> bool:
        """Become the owner; False when another live process owns it (non-blocking)."""
        from ..core.lock import flock

        if self._lock_fd is not None:
            return True
        self._lock_fd = flock(str(self.path / "lock"), blocking=blocking)
        return self._lock_fd is not None

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def owned_elsewhere(self) -> bool:
        """Whether some other live process holds the lock right now."""
        from ..core.lock import is_held

        return self._lock_fd is None and is_held(str(self.path / "lock"))

    # -- metadata -------------------------------------------------------------
    def write_meta(self, meta: RunMeta) -> None:
        atomic_write(self.path / "meta.json", json.dumps(meta.to_dict()).encode(), 0o644, fsync=False)

    def read_meta(self) -> RunMeta | None:
        return read_meta(os.path.join(self.path, "meta.json"))

    def remove(self) -> None:
        self.unlock()
        from .containers import forget  # its name and ID index entries (cnirun.state.containers)

        forget(str(self.path))
        import shutil  # lazily: it pulls in fnmatch and re

        shutil.rmtree(self.path, ignore_errors=True)


def read_meta(path: str) -> RunMeta | None:
    """A meta.json by path (a str: the live commands' fast path has no pathlib); None if unreadable."""
    try:
        with open(path, "rb") as f:
            return RunMeta.from_dict(json.loads(f.read()))
    except (OSError, ValueError, TypeError, AttributeError):
        return None


def container_display(cni_container_id: str, root: Path | None = None) -> str:
    """What users know a CNI container ID by: a cnirun run's container name or engine ID.

    `cnirun run` uses its own run ID as CNI container ID (the engine's ID does
    not exist yet at ADD time); the hook uses the engine's ID. Unknown IDs are
    shown short, as engines show IDs.
    """
    from ..core.paths import runs_dir

    meta = read_meta(os.path.join(root or runs_dir(), cni_container_id, "meta.json")) if cni_container_id else None
    if meta is not None and (meta.name or meta.workload):
        return meta.name or meta.workload[:12]
    return cni_container_id[:12]


def command_runs(meta: RunMeta) -> bool:
    """Whether the run's own command (`cnirun exec`'s) still runs: its pid, with the recorded start time.

    A pid alone could be another process by now; the start time (cnirun.core.process.process_start)
    tells them apart, and a zombie counts as ended.
    """
    if not meta.pid or not meta.pid_start:
        return False
    from ..core.process import process_start

    return process_start(meta.pid) == meta.pid_start


def list_states(root: Path | None = None) -> list[RunState]:
    """The run dirs under root (dot-files beside them, the watcher's and cnirun.state.containers's, are not runs)."""
    root = root or state_root()
    try:
        names = sorted(os.listdir(root))
    except FileNotFoundError:
        return []
    return [RunState(root / n) for n in names if not n.startswith(TMP_PREFIX) and (root / n).is_dir()]


def stale_tmp_dirs(root: Path | None = None, min_age: float = 60.0) -> list[Path]:
    """Half-made dirs from a run killed within its first milliseconds."""
    root = root or state_root()
    out: list[Path] = []
    try:
        names = os.listdir(root)
    except FileNotFoundError:
        return out
    now = time.time()
    for n in names:
        p = root / n
        if n.startswith(TMP_PREFIX):
            try:
                if now - p.stat().st_mtime >= min_age and not RunState(p).owned_elsewhere():
                    out.append(p)
            except OSError:
                continue
    return out
