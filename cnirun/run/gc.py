"""`cnirun gc`: tear down what no live process owns, in every result cache in use.

Safe beside runs in flight: a run's state dir is locked by its owner from
before the first engine call until teardown ends, and locked dirs are
skipped; a container's own steps hold its lock (cnirun.core.lock), and gc's
reclaim skips a container whose lock is held. A foreground run whose cnirun
died is torn down fully (its container too): only -d containers outlive
their cnirun. Cached attachments are looked for in every cache
cnirun.run.caches answers, so gc, ps and reload see the same containers.

The steps, in order: runs (state dirs), half-made state dirs, containers of
runs whose state is gone, cached attachments of containers that are gone
(and live changes cut short on running ones), netns pins, start gates,
corrupt cache files, firewall policies of attachments that are gone
(network.policy_attachments.collect), then the CNI spec's GC, the names
and resolvers nobody needs, stale chain lock files, the watcher, and the
netns the watcher makes again.
"""
from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable

RESTORE_WAIT = 20.0


class Engines:
    """Every engine, made once and lazily; one that cannot be reached is 'unknown', never 'container gone'."""

    def __init__(self) -> None:
        self._made: dict[str, Any] = {}
        self.errors: dict[str, str] = {}

    def get(self, name: str) -> Any:
        """The engine, or None (with the reason in errors[name]) when it cannot be reached."""
        if name not in self._made and name not in self.errors:
            from ..engines import get

            try:
                self._made[name] = get(name)
            except Exception as e:  # noqa: BLE001
                self.errors[name] = str(e)
        return self._made.get(name)

    def every(self) -> list[Any]:
        """The engines that can be reached."""
        from ..engines import ENGINES

        return [eng for eng in (self.get(name) for name in ENGINES) if eng is not None]

    def alive(self, cid: str) -> bool | None:
        """Whether an engine has this container created, running or paused; None when no engine can tell."""
        from ..engines import ENGINES

        known = False
        for name in ENGINES:
            eng = self.get(name)
            if eng is None:
                continue
            known = True
            if eng.is_live(cid):
                return True
        return False if known else None


class _Report:
    """gc's report lines, each handed to `show` as it happens, and the progress line they replace."""

    def __init__(self, dry_run: bool, show: Callable[[str], None] | None,
                 progress: Callable[[str, int], Any] | None) -> None:
        self.dry_run = dry_run
        self.lines: list[str] = []
        self._show = show
        self._progress = progress
        self._bar: Any = None  # the progress line being drawn, if any

    def say(self, line: str) -> None:
        self.lines.append(line)
        if self._show is not None:
            if self._bar is not None:
                self._bar.clear()  # the line replaces the progress line; the next step redraws it
            self._show(line)

    def steps(self, what: str, total: int) -> Any:
        """A progress line of `total` steps (cli.output.Progress's step/clear), drawn only with `show`."""
        self.end_steps()
        if self._progress is not None and self._show is not None:
            self._bar = self._progress(what, total)
        else:
            self._bar = _NoProgress()
        return self._bar

    def end_steps(self) -> None:
        if self._bar is not None:
            self._bar.clear()
            self._bar = None


class _NoProgress:
    def step(self, item: str) -> None:
        pass

    def clear(self) -> None:
        pass


def engine_of(meta: Any) -> str:
    """What ps and gc call a run's engine: `exec` for `cnirun exec`'s runs, which have none."""
    return meta.engine or meta.mode


def collect_garbage(dry_run: bool = False, show: Callable[[str], None] | None = None,
                    progress: Callable[[str, int], Any] | None = None) -> list[str]:
    """Tear down every run no live process owns, unless its detached container still runs; the report lines.

    show(line), when given, gets each report line as it happens; progress(what, total),
    when given with show, draws a progress line of the teardowns and DELs (cli.output.Progress).
    """
    from ..run.caches import runtimes

    out = _Report(dry_run, show, progress)
    engines = Engines()
    run_ids, need_watcher, owned = _runs(out, engines)
    _half_made_states(out)
    _orphan_containers(out, engines, run_ids)
    cnis = runtimes()
    keep, attached = _attachments(out, engines, cnis, run_ids)
    _pins(out, engines, attached)
    _start_gates(out, engines)
    _corrupt_files(out, cnis)
    _policy_records(out, cnis)
    if not dry_run:
        _spec_gc(out, cnis[0], keep)
        from .watch import ensure_watcher, watcher_running

        if need_watcher or (owned and watcher_running()):  # the running one may be of another generation
            ensure_watcher()
        for line in _wait_restored(owned):
            out.say(line)
    return out.lines


def _runs(out: _Report, engines: Engines) -> tuple[set[str], bool, list[Any]]:
    """Tear down the runs nobody owns; (IDs of the runs still there, a watcher needed, runs others own)."""
    from ..state.runs import list_states

    run_ids: set[str] = set()
    need_watcher = False
    owned: list[Any] = []
    states = list_states()
    prog = out.steps("gc: runs", len(states))
    for st in states:
        prog.step(st.id[:12])
        run_ids.add(st.id)
        if not st.lock(blocking=False):
            owned.append(st)
            continue  # a live cnirun run or the watcher owns it
        try:
            verdict = _run(out, engines, st)
        finally:
            st.unlock()
        need_watcher = need_watcher or verdict == "watched"
        if verdict == "gone":
            run_ids.discard(st.id)  # gone: a helper container of it left below is an orphan
    out.end_steps()
    return run_ids, need_watcher, owned


def _run(out: _Report, engines: Engines, st: Any) -> str:
    """One run gc owns now: 'gone' (torn down), 'watched' (its container exists: the watcher's), or 'kept'."""
    from ..state.runs import command_runs
    from .teardown import teardown
    from .watch import lost_netns

    meta = st.read_meta()
    if meta and command_runs(meta):
        return "kept"  # `cnirun exec` was killed, its command still runs in the netns: not over yet
    if meta and meta.detached and meta.phase == "running" and meta.workload:
        alive = _run_alive(meta, engines)
        if alive is None or alive:
            if alive and not out.dry_run and lost_netns(meta):
                out.say(_restore(st, meta, engines.get(meta.engine)))  # else `start` fails: no watcher to do it
            return "watched"  # its container still exists: the watcher's job
    what = f"run {st.id[:12]} ({engine_of(meta) if meta else '?'} {(meta.workload if meta else '')[:12] or '-'})"
    if out.dry_run:
        out.say(f"would tear down {what}")
        return "kept"
    eng = engines.get(meta.engine) if meta and meta.engine else None
    if meta and meta.engine and eng is None:
        out.say(f"skipped {what}: {engines.errors.get(meta.engine, 'no engine')}")
        return "kept"
    errors = teardown(st, meta, eng, stop=True)
    out.say(f"tore down {what}" + (f": {'; '.join(errors)}" if errors else ""))
    return "kept" if errors else "gone"


def _run_alive(meta: Any, engines: Engines) -> bool | None:
    """Whether a detached run's container still exists (None: its engine cannot tell).

    Exists, not runs: a stopped container keeps its networks so that it can be
    started again (the watcher's rule), and only its removal ends the run.
    """
    eng = engines.get(meta.engine)
    return None if eng is None else eng.exists(meta.workload)


def _restore(st: Any, meta: Any, eng: Any) -> str:
    """Name a detached run's lost netns again (watch.restore_netns): its container may start again."""
    from .watch import restore_netns

    try:
        return f"run {st.id[:12]}: {restore_netns(st, meta, eng)}"
    except Exception as e:  # noqa: BLE001 - a plugin, ip or the state dir: reported, the watcher retries
        return f"cannot name the netns {meta.netns} of run {st.id[:12]} again: {e}"


def _half_made_states(out: _Report) -> None:
    """State dirs a run killed in its first milliseconds left under their temporary name."""
    import shutil

    from ..state.runs import stale_tmp_dirs

    for p in stale_tmp_dirs():
        if not out.dry_run:
            shutil.rmtree(p, ignore_errors=True)
        out.say(f"removed half-made state dir {p.name}")


def _orphan_containers(out: _Report, engines: Engines, run_ids: set[str]) -> None:
    """Containers of runs whose state is gone (not even made since the listing of the runs).

    Helpers (a teardown cut short after the state went) and workloads never
    started (a failed set-up that kept its container): nothing can start
    them on a network any more.
    """
    from ..state.runs import state_root

    root = state_root()
    for eng in engines.every():
        for c in eng.containers("cnirun.role"):
            run_id, role = c.labels.get("cnirun.id", ""), c.labels.get("cnirun.role")
            if c.labels.get("cnirun.state") != str(root) or not run_id or run_id in run_ids \
                    or (root / run_id).exists():
                continue
            if role == "sandbox":
                what = "orphan helper container"
            elif role == "workload" and c.state in ("created", "configured"):
                what = "never started container"
            else:
                continue
            if not out.dry_run:
                eng.remove(c.id)
            out.say(f"{'would remove' if out.dry_run else 'removed'} {what} {c.id[:12]}")


def _attachments(out: _Report, engines: Engines, cnis: list[Any], run_ids: set[str]
                 ) -> tuple[dict[str, list[tuple[str, str]]], set[str]]:
    """Cached attachments no cnirun run owns (cnirun exec, the OCI hook, other runtimes) in every cache.

    Those of containers that are gone, pending ones (an ADD killed part-way)
    included: one lifecycle.reclaim per container. Live port or rate changes
    cut short on running containers: finished. Returns (network -> (container
    ID, ifname) of the attachments kept, for the spec's GC; the container IDs
    that had attachments).
    """
    from ..cni import cache as cnicache

    keep: dict[str, list[tuple[str, str]]] = {}
    gone: dict[tuple[int, str], list[Any]] = {}  # (index in cnis, container ID) -> its attachments
    unfinished: list[tuple[int, str]] = []  # live port/rate changes cut short on running containers
    for i, cni in enumerate(cnis):
        for att in cnicache.list_attachments(cni.cache_dir):
            if att.container_id in run_ids or _foreign_alive(att, engines):
                keep.setdefault(att.network_name, []).append((att.container_id, att.ifname))
                if att.pending is not None and att.pending.get("update") == 1 \
                        and (i, att.container_id) not in unfinished:
                    unfinished.append((i, att.container_id))
            else:
                gone.setdefault((i, att.container_id), []).append(att)
    _reclaim(out, cnis, gone)
    _finish_changes(out, cnis, sorted(unfinished, key=lambda k: k[1]))
    attached = {cid for _, cid in gone} | {cid for v in keep.values() for cid, _ in v}
    return keep, attached


def _foreign_alive(att: Any, engines: Engines) -> bool:
    from ..network.netns import named_dir

    if att.netns.startswith(named_dir() + "/") and os.path.exists(att.netns):
        return True  # cnirun exec / a hand-made netns: its owner removes it
    alive = engines.alive(att.container_id)
    if alive is None:
        return True  # no engine to ask: never DEL on a guess
    return alive


def _reclaim(out: _Report, cnis: list[Any], gone: dict[tuple[int, str], list[Any]]) -> None:
    from ..network.lifecycle import reclaim

    prog = out.steps("gc: DEL", len(gone))
    for (i, cid), atts in gone.items():
        prog.step(cid[:12])
        for att in atts:
            out.say(f"{'would DEL' if out.dry_run else 'DEL'} {att.network_name}/{att.ifname} of {cid[:12]}")
        if out.dry_run:
            continue
        problems = reclaim(cnis[i], cid)
        if problems is None:
            out.say("  skipped: a start or a teardown of that container holds its lock")
        elif problems:
            out.say(f"  failed: {'; '.join(problems)}")
    out.end_steps()


def _finish_changes(out: _Report, cnis: list[Any], unfinished: list[tuple[int, str]]) -> None:
    from ..network.lifecycle import finish_changes

    for i, cid in unfinished:
        out.say(f"{'would finish' if out.dry_run else 'finish'} a cut-short port or rate change of {cid[:12]}")
        if not out.dry_run:
            problems = finish_changes(cnis[i], cid)
            if problems:
                out.say(f"  failed: {'; '.join(problems)}")


def _pins(out: _Report, engines: Engines, attached: set[str]) -> None:
    """Netns pins whose container is gone and left nothing in the cache (a hook killed between pinning and
    its first ADD)."""
    from ..network.netns import pinned_containers, unpin_netns

    for cid in pinned_containers():
        if cid in attached:
            continue
        if engines.alive(cid) is False:
            out.say(f"{'would remove' if out.dry_run else 'removed'} the netns pin of {cid[:12]}")
            if not out.dry_run:
                err = unpin_netns(cid)
                if err:
                    out.say(f"  failed: {err}")


def _start_gates(out: _Report, engines: Engines) -> None:
    """Start gates (cnirun.oci.start_gate) nobody holds of containers that are gone: a create whose start
    never came, and whose runtime delete never ran either."""
    from ..core.lock import is_held
    from ..oci.start_gate import gate_path, gates, remove_gate

    for cid in gates():
        if not is_held(gate_path(cid)) and engines.alive(cid) is False:
            out.say(f"{'would remove' if out.dry_run else 'removed'} the start gate of {cid[:12]}")
            if not out.dry_run:
                remove_gate(cid)


def _corrupt_files(out: _Report, cnis: list[Any]) -> None:
    from ..cni import cache as cnicache

    for cni in cnis:
        for p in cnicache.corrupt_files(cni.cache_dir):
            out.say(f"{'would remove' if out.dry_run else 'removed'} corrupt cache file {p}")
            if not out.dry_run:
                p.unlink(missing_ok=True)


def _policy_records(out: _Report, cnis: list[Any]) -> None:
    """Firewall policies (cnirun-policy's records and tables) of attachments that are gone: after the DELs
    above, which remove those of the attachments they end."""
    from ..network.policy_attachments import collect

    for line in collect([cni.cache_dir for cni in cnis], out.dry_run):
        out.say(line)


def _spec_gc(out: _Report, cni: Any, keep: dict[str, list[tuple[str, str]]]) -> None:
    """The spec's GC of this shell's networks whose plugins can do it (cniVersion >= 1.1.0), keeping what
    is attached in any cache; names and resolvers nobody needs (cnirun.dns); chain lock files of networks
    and bridges that are gone (bookkeeping: not reported)."""
    from ..core.lock import remove_stale_locks
    from ..core.version import at_least
    from ..dns.gc import collect as collect_dns

    networks = cni.networks()
    for net in networks:
        if at_least(net.cni_version, "1.1.0"):
            for e in cni.gc(net, keep.get(net.name, [])):
                out.say(f"GC {net.name}: {e}")
    for line in collect_dns():
        out.say(line)
    from ..network.policy_follow import repair

    for line in repair():  # the names gc dropped, and refreshes a kill or a failure left stale
        out.say(line)
    remove_stale_locks({net.name for net in networks}, cni.lock_file)


def _wait_restored(owned: list[Any]) -> list[str]:
    """Detached runs the watcher owns whose netns is gone: it makes them again at once; wait for that."""
    import time

    from .watch import lost_netns

    lines: list[str] = []
    deadline = time.monotonic() + RESTORE_WAIT  # one wait for all: a failing watcher costs gc 20 s, not 20 s a run
    for st in owned:
        meta = st.read_meta()
        if meta is None or not meta.detached or not lost_netns(meta):
            continue
        while lost_netns(meta) and time.monotonic() < deadline:
            time.sleep(0.1)
            meta = st.read_meta() or meta
        lines.append(f"the watcher {'has not made' if lost_netns(meta) else 'made'} the netns {meta.netns} of run "
                     f"{st.id[:12]} again" + (f" within {RESTORE_WAIT:g} s: see its log" if lost_netns(meta) else ""))
    return lines
