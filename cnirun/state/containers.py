"""Where a running container's attachments are, remembered for the next live command (connect, port, update).

Finding a container through its engine (for Docker the API call and the
client's import, ~5 ms; for Podman a whole `podman inspect`) costs more than
the plugin that `cnirun update` or `cnirun port add` re-runs. So when a live
command has found a running container through the engine, and that
container has a state dir here (a `cnirun run`'s, or the record cnirun.live.verbs
makes for a hook-mode or foreign container), it writes into that dir
`target.json`: the engine and its endpoint, the container's ID, name,
process (pid and start time), network mode, cnirun labels and the engine's
own state file; and beside the state dirs (paths.runs_dir) two index
entries, `.ref-<engine>-<name>` and `.ref-<engine>-<id>`, each holding the
state dir's name.

recall() of a name or full ID uses that record only when all of this holds
(else the caller asks the engine, and remembers again):
- the index entry and the record agree (engine, name or ID), and the
  record's engine is the one cnirun.live.verbs.lookup would ask first, at the same
  endpoint (CNIRUN_ENGINE, DOCKER_HOST, the Docker context);
- the process is the same one: /proc/<pid>/stat's start time is the
  recorded one and it is not a zombie, and its cgroup names the container ID
  (a container that is gone, restarted or recreated under the same name has
  another process);
- the engine's own file says the container runs that process under that
  name right now (engines.local: a rename, a pause, a stop show there at
  once; Podman has no such file, so Podman containers always ask the engine).
A prefix of an ID is never looked up here. The record holds no more than the
engine would say; the state dir (meta.json, the run's lock) is read as on the
engine path. RunState.remove() drops a state dir's index entries, and any
left pointing at no dir (forget()).

On the live commands' path: imports only os, cnirun.core.jsonfast, cnirun.core.process,
cnirun.core.fsutil and cnirun.core.paths (no pathlib).
"""
from __future__ import annotations

import os

from ..core import jsonfast as json
from ..core.process import process_start

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ..engines.base import ContainerNet

RECORD_FILE = "target.json"
REF_PREFIX = ".ref-"
LABELS = ("cnirun.id", "cnirun.state", "cnirun.role")  # all cnirun.live.verbs.target reads


def _ref_path(root: str, engine: str, key: str) -> str:
    return os.path.join(root, f"{REF_PREFIX}{engine}-{key}")


def _plain(key: str) -> bool:
    """A name or ID that is a file name as it is (engines allow [a-zA-Z0-9][a-zA-Z0-9_.-]* in names)."""
    return 0 < len(key) <= 200 and key[0].isascii() and key[0].isalnum() and \
        all(c.isascii() and (c.isalnum() or c in "_.-") for c in key)


def _in_cgroup(pid: int, cid: str) -> bool:
    try:
        with open(f"/proc/{pid}/cgroup", "rb") as f:
            return cid.encode() in f.read()
    except OSError:
        return False


def remember(state_dir: str, engine: str, c: ContainerNet) -> None:
    """Record where running container `c` (found through `engine`) has its state dir; best effort.

    Only for a state dir directly under this process's runs_dir (the index
    lives there). A failure to write only costs the next command an engine
    call.
    """
    from ..engines.local import endpoint
    from ..core.fsutil import atomic_write
    from ..core.paths import runs_dir

    root = runs_dir()
    state_dir = os.fspath(state_dir)
    if not c.running or os.path.dirname(state_dir) != root or not _plain(c.id):
        return
    start = process_start(c.pid)
    if not start:
        return
    record = {
        "engine": engine, "endpoint": endpoint(engine), "id": c.id, "name": c.name, "pid": c.pid, "start": start,
        "network_mode": c.network_mode, "labels": {k: c.labels[k] for k in LABELS if k in c.labels},
        "state_file": c.state_file,
    }
    path = os.path.join(state_dir, RECORD_FILE)
    try:
        atomic_write(path, json.dumps(record).encode(), 0o600, fsync=False)
        for key in (c.id, c.name):
            if key and _plain(key):
                atomic_write(_ref_path(root, engine, key), os.path.basename(state_dir).encode(), 0o600, fsync=False)
    except OSError:
        pass  # the state dir just went (a teardown): nothing to remember
    if not os.path.exists(os.path.join(state_dir, "meta.json")):
        # A teardown removed the dir while the record was written into it: do not keep it alive.
        for leftover in (path, state_dir):
            try:
                (os.unlink if leftover == path else os.rmdir)(leftover)
            except OSError:
                pass


def recall(ref: str) -> tuple[str, ContainerNet] | None:
    """(engine name, the container as its engine would describe it) from the record, or None: ask the engine."""
    from ..engines import engine_name
    from ..core.paths import runs_dir

    if not _plain(ref):
        return None
    engine = engine_name(None)  # what cnirun.live.verbs.lookup asks first
    root = runs_dir()
    try:
        with open(_ref_path(root, engine, ref), "rb") as f:
            name = f.read().decode()
        if not _plain(name):
            return None
        with open(os.path.join(root, name, RECORD_FILE), "rb") as f:
            rec = json.loads(f.read())
        cid, cname, pid = str(rec["id"]), str(rec["name"]), int(rec["pid"])
        if rec["engine"] != engine or ref not in (cid, cname) or process_start(pid) != rec["start"]:
            return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    from ..engines.local import confirms, endpoint

    if not _in_cgroup(pid, cid) or rec.get("endpoint") != endpoint(engine) or \
            not confirms(engine, str(rec.get("state_file") or ""), cid, cname, pid):
        return None
    from ..engines.base import ContainerNet

    return engine, ContainerNet(id=cid, name=cname, state="running", pid=pid,
                                network_mode=str(rec.get("network_mode") or ""),
                                labels=dict(rec.get("labels") or {}), state_file=str(rec.get("state_file") or ""))


def forget(state_dir: str) -> None:
    """Drop the index entries beside `state_dir` that point at it (it is being removed) or at no dir at all.

    All of them, not only its current name's: a rename leaves the old name's
    entry behind, and a state dir removed by a cnirun older than this module
    left its own. Entries of other, existing dirs stay.
    """
    state_dir = os.fspath(state_dir)
    root, mine = os.path.dirname(state_dir), os.path.basename(state_dir)
    try:
        names = [n for n in os.listdir(root) if n.startswith(REF_PREFIX)]
    except OSError:
        return
    for n in names:
        path = os.path.join(root, n)
        try:
            with open(path, "rb") as f:
                target = f.read().decode(errors="replace")
            if target == mine or not _plain(target) or not os.path.isdir(os.path.join(root, target)):
                os.unlink(path)
        except OSError:
            continue
