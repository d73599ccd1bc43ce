"""`cnirun ps`, `cnirun inspect CONTAINER` and `cnirun gc`."""
from __future__ import annotations

import os
from typing import Any

import typer

from .completion import container_names
from .errors import fail, one_line_errors


FORMAT_HELP = "table, json, or a Go template such as '{{.Name}}' or 'table {{.Container}}\\t{{.Image}}'."
# docker ps's field names for ours, so that `--format '{{.ID}}'` works as there.
PS_ALIASES = {"ID": "container", "Names": "name"}


def ps_table(rows: list[dict[str, Any]], no_trunc: bool = False) -> str:
    """One line per attachment (a container without any gets one line of dashes)."""
    from .output import align, trunc

    lines = [["CONTAINER", "ENGINE", "IMAGE", "NAME", "NETWORK", "IFACE", "ADDRESSES", "PORTS"]]
    for r in rows:
        for a in r["attachments"] or [{"network": "-", "ifname": "-", "addresses": []}]:
            lines.append([trunc(r["container"], 12, no_trunc) or "-", r["engine"],
                          trunc(r.get("image") or "-", 16, no_trunc), trunc(r.get("name") or "-", 20, no_trunc),
                          a["network"], a["ifname"], ",".join(a["addresses"]) or "-",
                          ", ".join(a.get("ports") or []) or "-"])
    return align(lines)


def register(app: typer.Typer) -> None:
    from .output import check_format, emit, render, trunc

    @app.command(name="ps")
    def ps(
        fmt: str = typer.Option("table", "--format", help=FORMAT_HELP),
        as_json: bool = typer.Option(False, "--json", help="Same as --format json."),
        quiet: bool = typer.Option(False, "-q", "--quiet", help="Only container IDs."),
        no_trunc: bool = typer.Option(False, "--no-trunc", help="Do not shorten IDs, images and names."),
    ) -> None:
        """Containers with CNI attachments (cnirun run's, the OCI hook's, others'): networks, interfaces, addresses."""
        with one_line_errors():
            fmt = check_format("json" if as_json else fmt)
            rows = collect(True)
            if quiet:
                emit("\n".join(trunc(r["container"] or r["run_id"], 12, no_trunc) for r in rows))
                return
            emit(render(rows, fmt, lambda rs: ps_table(rs, no_trunc), aliases=PS_ALIASES))

    @app.command(name="inspect")
    def inspect(
        containers: list[str] = typer.Argument(..., metavar="CONTAINER...", autocompletion=container_names,
                                               help="Container ID (prefix), name, or cnirun run ID."),
        fmt: str = typer.Option("json", "--format", "-f", help="json (default) or a Go template such as "
                                "'{{range .Attachments}}{{.Addresses}}{{end}}'."),
    ) -> None:
        """The cached CNI results of containers' attachments, as JSON (one object; an array for several)."""
        with one_line_errors():
            fmt = check_format(fmt)
            rows = collect(True)
            found = []
            for key in containers:
                matches = [r for r in rows if _matches(r, key)]
                if not matches:
                    fail(f"no container {key!r} with CNI attachments: see cnirun ps")
                if len(matches) > 1:
                    fail(f"{key!r} matches {len(matches)} containers: give more of the ID")
                found.append(matches[0])
            if fmt == "table":
                fmt = "json"  # inspect has no table: docker's default is JSON too
            emit(render(found, fmt, lambda rs: "", json_value=found[0] if len(found) == 1 else found,
                        aliases=PS_ALIASES))

    @app.command(name="gc")
    def gc(dry_run: bool = typer.Option(False, "--dry-run", help="Say what would be removed.")) -> None:
        """DEL attachments whose container is gone, remove helper containers and stale state; then CNI GC."""
        with one_line_errors():
            report = collect_garbage(dry_run=dry_run, show=_print_line)
        if not report:
            print("nothing to collect")


def _print_line(line: str) -> None:
    print(line, flush=True)


def _matches(row: dict[str, Any], key: str) -> bool:
    ids = [row.get("container", ""), row.get("run_id", ""), row.get("sandbox", "")]
    return key == row.get("name") or any(i and i.startswith(key) for i in ids)


def _port_text(m: dict[str, Any]) -> str:
    host = f"{m.get('hostIP')}:" if m.get("hostIP") else "0.0.0.0:"
    return f"{host}{m.get('hostPort')}->{m.get('containerPort')}/{m.get('protocol') or 'tcp'}"


def _att_row(att: Any) -> dict[str, Any]:
    from ..network.lifecycle import Attachment

    return {
        "network": att.network_name,
        "ifname": att.ifname,
        "cni_container_id": att.container_id,
        "netns": att.netns,
        "addresses": Attachment(att.network_name, att.ifname, att.result or {}).addresses(),
        "capability_args": att.capability_args,
        # docker ps's PORTS notation: 127.0.0.1:18080->80/tcp
        "ports": [_port_text(m) for m in (att.capability_args or {}).get("portMappings") or []],
        "result": att.result,
        "cache_file": att.path,
    }


def collect(include_foreign: bool) -> list[dict[str, Any]]:
    """One row per container: cnirun runs from their state dirs, then (with -a) other cached attachments."""
    from ..cni import cache as cnicache
    from ..cni.runtime import CNI
    from ..state.runs import list_states

    rows: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    for st in list_states():
        meta = st.read_meta()
        if meta is None:
            continue
        cache_dir = meta.cni_env.get("CNI_CACHE_DIR") or cnicache.default_cache_dir()
        atts = [a for a in cnicache.list_attachments(cache_dir) if a.container_id == meta.id]
        seen.add((cache_dir, meta.id))
        if meta.mode in LIVE_RECORDS:
            # A live command's record of a container cnirun did not run: shown as before the change.
            rows.append(_other_row(meta.workload, meta.netns, atts, meta.engine, meta.name,
                                   "hook" if meta.mode == "hook" else "-"))
            continue
        rows.append({
            "container": meta.workload, "run_id": meta.id, "engine": _engine_of(meta), "image": meta.image,
            "name": meta.name, "sandbox": meta.sandbox, "netns": meta.netns, "phase": meta.phase,
            "detached": meta.detached, "attachments": [_att_row(a) for a in sorted(atts, key=lambda a: a.ifname)],
        })
    if include_foreign:
        by_id: dict[str, list[Any]] = {}
        for cache_dir in _cache_dirs(CNI().cache_dir):
            for a in cnicache.list_attachments(cache_dir):
                if (cache_dir, a.container_id) not in seen:
                    by_id.setdefault(a.container_id, []).append(a)
        for cid, atts in sorted(by_id.items()):
            rows.append(_other_row(cid, atts[0].netns, atts, "", "", _made_by(cid, atts)))
    others = [r for r in rows if r["run_id"] == ""]
    if others:
        known = _engine_containers()  # who the engines say the other containers are: one listing per engine
        for r in others:
            eng = known.get(r["container"], {})
            r.update(engine=r["engine"] or eng.get("engine", "-"), image=eng.get("image", ""),
                     name=r["name"] or eng.get("name", ""))
    return rows


# RunMeta.mode of the state dir cnirun.live.verbs makes for a hook-mode or foreign container it changes.
LIVE_RECORDS = ("hook", "foreign")


def _other_row(cid: str, netns: str, atts: list[Any], engine: str, name: str, mode: str) -> dict[str, Any]:
    """The row of a container cnirun did not run; engine, image and name are filled in from the engines."""
    return {
        "container": cid, "run_id": "", "engine": engine, "image": "", "name": name, "netns": netns, "mode": mode,
        "attachments": [_att_row(a) for a in sorted(atts, key=lambda a: (len(a.ifname), a.ifname))],
    }


def _engine_of(meta: Any) -> str:
    """What ps and gc call a run's engine: `exec` for `cnirun exec`'s runs, which have none."""
    return meta.engine or meta.mode


def _cache_dirs(current: str) -> list[str]:
    """This shell's CNI cache, plus those the Docker runtime and the hooks.d files were installed with."""
    envs: list[dict[str, str]] = []
    try:
        from ..oci.install.docker_runtime import installed_settings
        from ..oci.install.hooksd import installed_envs

        envs.append(((installed_settings() or {}).get("env") or {}))
        envs += installed_envs()
    except Exception:  # noqa: BLE001 - ps shows what it can
        pass
    dirs = [current]
    for env in envs:
        hook_cache = env.get("CNI_CACHE_DIR", "")
        if hook_cache and os.path.abspath(hook_cache) not in {os.path.abspath(d) for d in dirs}:
            dirs.append(hook_cache)
    return dirs


def _made_by(cid: str, atts: list[Any]) -> str:
    """'hook' when the OCI hook pinned the netns (CNI container ID = the engine's container ID)."""
    try:
        from ..network.netns_pin import pin_path
    except ImportError:
        return "-"
    return "hook" if any(a.netns == pin_path(cid) for a in atts) else "-"


def _engine_containers() -> dict[str, dict[str, str]]:
    """Full container ID -> engine, image, name, from one listing per engine that answers."""
    from ..engines import present

    out: dict[str, dict[str, str]] = {}
    for eng in present():
        try:
            for c in eng.containers():
                out[c.id] = {"engine": eng.name, "image": c.image, "name": c.name}
        except Exception:  # noqa: BLE001 - ps shows what it can: those rows keep engine "-"
            continue
    return out


# -- gc ----------------------------------------------------------------------------------
class _Engines:
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


def collect_garbage(dry_run: bool = False, show: Any = None) -> list[str]:
    """Tear down every run no live process owns, unless its detached container still runs.

    Safe beside runs in flight: a run's state dir is locked by its owner from
    before the first engine call until teardown ends, and locked dirs are
    skipped. A foreground run whose cnirun died is torn down fully (its
    container too): only -d containers outlive their cnirun.

    show(line), when given, gets each report line as it happens; on a
    terminal the teardowns and DELs also show a progress line (cli.output).
    """
    from ..cni import cache as cnicache
    from ..engines import ENGINES
    from ..cni.runtime import CNI
    from ..state.runs import command_runs, list_states, stale_tmp_dirs, state_root
    from ..network.lifecycle import finish_changes, reclaim
    from ..run.teardown import teardown
    from ..run.watch import ensure_watcher, lost_netns

    from .output import Progress

    report: list[str] = []
    bar: list[Progress] = []  # the progress line being drawn, if any

    def say(line: str) -> None:
        report.append(line)
        if show is not None:
            if bar:
                bar[0].clear()  # the line replaces the progress line; the next step redraws it
            show(line)

    def steps(what: str, total: int) -> Progress:
        bar[:] = [Progress(what, total if show is not None else 0)]
        return bar[0]

    engines = _Engines()
    run_ids: set[str] = set()
    need_watcher = False
    owned: list[Any] = []
    states = list_states()
    prog = steps("gc: runs", len(states))
    for st in states:
        prog.step(st.id[:12])
        run_ids.add(st.id)
        if not st.lock(blocking=False):
            owned.append(st)
            continue  # a live cnirun run or the watcher owns it
        meta = st.read_meta()
        try:
            if meta and command_runs(meta):
                continue  # `cnirun exec` was killed, its command still runs in the netns: not over yet
            if meta and meta.detached and meta.phase == "running" and meta.workload:
                alive = _run_alive(meta, engines)
                if alive is None or alive:
                    need_watcher = True
                    if alive and not dry_run and lost_netns(meta):
                        say(_restore(st, meta, engines.get(meta.engine)))  # else `start` fails: no watcher to do it
                    continue  # its container still exists: the watcher's job
            what = f"run {st.id[:12]} ({_engine_of(meta) if meta else '?'} {(meta.workload if meta else '')[:12] or '-'})"
            if dry_run:
                say(f"would tear down {what}")
                continue
            eng = engines.get(meta.engine) if meta and meta.engine else None
            if meta and meta.engine and eng is None:
                say(f"skipped {what}: {engines.errors.get(meta.engine, 'no engine')}")
                continue
            errors = teardown(st, meta, eng, stop=True)
            say(f"tore down {what}" + (f": {'; '.join(errors)}" if errors else ""))
            if not errors:
                run_ids.discard(st.id)  # gone: a helper container of it left below is an orphan
        finally:
            st.unlock()
    prog.clear()
    bar.clear()
    for p in stale_tmp_dirs():
        if not dry_run:
            import shutil

            shutil.rmtree(p, ignore_errors=True)
        say(f"removed half-made state dir {p.name}")
    # Containers of runs whose state is gone (not even made since the listing above): helpers (a
    # teardown cut short after the state went) and workloads never started (a failed set-up that
    # kept its container, as cnirun once did for -d): nothing can start them on a network any more.
    for eng in (engines.get(name) for name in ENGINES):
        if eng is None:
            continue
        for c in eng.containers("cnirun.role"):
            run_id, role = c.labels.get("cnirun.id", ""), c.labels.get("cnirun.role")
            if c.labels.get("cnirun.state") != str(state_root()) or not run_id or run_id in run_ids \
                    or (state_root() / run_id).exists():
                continue
            if role == "sandbox":
                what = "orphan helper container"
            elif role == "workload" and c.state in ("created", "configured"):
                what = "never started container"
            else:
                continue
            if not dry_run:
                eng.remove(c.id)
            say(f"{'would remove' if dry_run else 'removed'} {what} {c.id[:12]}")
    # Cached attachments no cnirun run owns (cnirun exec, the OCI hook, other runtimes),
    # pending ones (an ADD killed part-way) included: one lifecycle.reclaim per container.
    cni = CNI()
    keep: dict[str, list[tuple[str, str]]] = {}
    gone: dict[str, list[Any]] = {}
    unfinished: set[str] = set()  # live port/rate changes cut short on running containers
    for att in cnicache.list_attachments(cni.cache_dir):
        if att.container_id in run_ids or _foreign_alive(att, engines):
            keep.setdefault(att.network_name, []).append((att.container_id, att.ifname))
            if att.pending is not None and att.pending.get("update") == 1:
                unfinished.add(att.container_id)
        else:
            gone.setdefault(att.container_id, []).append(att)
    prog = steps("gc: DEL", len(gone))
    for cid, atts in gone.items():
        prog.step(cid[:12])
        for att in atts:
            say(f"{'would DEL' if dry_run else 'DEL'} {att.network_name}/{att.ifname} of {cid[:12]}")
        if dry_run:
            continue
        problems = reclaim(cni, cid)
        if problems is None:
            say("  skipped: a start or a teardown of that container holds its lock")
        elif problems:
            say(f"  failed: {'; '.join(problems)}")
    prog.clear()
    bar.clear()
    for cid in sorted(unfinished):
        say(f"{'would finish' if dry_run else 'finish'} a cut-short port or rate change of {cid[:12]}")
        if not dry_run:
            problems = finish_changes(cni, cid)
            if problems:
                say(f"  failed: {'; '.join(problems)}")
    # Netns pins whose container is gone and left nothing in the cache (a hook killed
    # between pinning and its first ADD).
    from ..network.netns_pin import pinned_containers, unpin_netns

    for cid in pinned_containers():
        if cid in gone or any(cid in [c for c, _ in v] for v in keep.values()):
            continue
        if engines.alive(cid) is False:
            say(f"{'would remove' if dry_run else 'removed'} the netns pin of {cid[:12]}")
            if not dry_run:
                err = unpin_netns(cid)
                if err:
                    say(f"  failed: {err}")
    # Start gates (cnirun.oci.start_gate) nobody holds of containers that are gone: a
    # create whose start never came, and whose runtime delete never ran either.
    from ..core.lock import is_held
    from ..oci.start_gate import gate_path, gates, remove_gate

    for cid in gates():
        if not is_held(gate_path(cid)) and engines.alive(cid) is False:
            say(f"{'would remove' if dry_run else 'removed'} the start gate of {cid[:12]}")
            if not dry_run:
                remove_gate(cid)
    for p in cnicache.corrupt_files(cni.cache_dir):
        say(f"{'would remove' if dry_run else 'removed'} corrupt cache file {p}")
        if not dry_run:
            p.unlink(missing_ok=True)
    # The spec's GC for networks whose plugins can do it (cniVersion >= 1.1.0).
    from ..core.version import at_least

    if not dry_run:
        for net in cni.networks():
            if at_least(net.cni_version, "1.1.0"):
                for e in cni.gc(net, keep.get(net.name, [])):
                    say(f"GC {net.name}: {e}")
        # Names of containers with no attachment left, resolvers nobody needs (cnirun.dns).
        from ..dns.gc import collect as collect_dns

        for line in collect_dns():
            say(line)
        # Chain lock files of networks and bridges that are gone (bookkeeping: not reported).
        from ..core.lock import remove_stale_locks

        remove_stale_locks({net.name for net in cni.networks()}, cni.lock_file)
    if need_watcher and not dry_run:
        ensure_watcher()
    if not dry_run:
        for line in _wait_restored(owned):
            say(line)
    return report


def _restore(st: Any, meta: Any, eng: Any) -> str:
    """Name a detached run's lost netns again (watch.restore_netns): its container may start again."""
    from ..run.watch import restore_netns

    try:
        return f"run {st.id[:12]}: {restore_netns(st, meta, eng)}"
    except Exception as e:  # noqa: BLE001 - a plugin, ip or the state dir: reported, the watcher retries
        return f"cannot name the netns {meta.netns} of run {st.id[:12]} again: {e}"


RESTORE_WAIT = 20.0


def _wait_restored(owned: list[Any]) -> list[str]:
    """Detached runs the watcher owns whose netns is gone: it makes them again at once; wait for that."""
    import time

    from ..run.watch import lost_netns

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


def _run_alive(meta: Any, engines: _Engines) -> bool | None:
    """Whether a detached run's container still exists (None: its engine cannot tell).

    Exists, not runs: a stopped container keeps its networks so that it can be
    started again (the watcher's rule), and only its removal ends the run.
    """
    eng = engines.get(meta.engine)
    return None if eng is None else eng.exists(meta.workload)


def _foreign_alive(att: Any, engines: _Engines) -> bool:
    if att.netns.startswith("/run/netns/") and os.path.exists(att.netns):
        return True  # cnirun exec / a hand-made netns: its owner removes it
    alive = engines.alive(att.container_id)
    if alive is None:
        return True  # no engine to ask: never DEL on a guess
    return alive
