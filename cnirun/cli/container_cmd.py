"""`cnirun ps`, `cnirun inspect CONTAINER` and `cnirun gc`."""
from __future__ import annotations

import json
import os
from typing import Any

import typer

from .errors import fail, one_line_errors


def register(app: typer.Typer) -> None:
    @app.command(name="ps")
    def ps(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
        """Containers with CNI attachments (cnirun run's, the OCI hook's, others'): networks, interfaces, addresses."""
        with one_line_errors():
            rows = collect(True)
        if as_json:
            print(json.dumps(rows, indent=2))
            return
        fmt = "{:<14} {:<8} {:<16} {:<20} {:<16} {:<6} {}"
        print(fmt.format("CONTAINER", "ENGINE", "IMAGE", "NAME", "NETWORK", "IFACE", "ADDRESSES"))
        for r in rows:
            for a in r["attachments"] or [{"network": "-", "ifname": "-", "addresses": []}]:
                print(fmt.format(r["container"][:12] or "-", r["engine"], (r.get("image") or "-")[:16],
                                 (r.get("name") or "-")[:20], a["network"], a["ifname"],
                                 ",".join(a["addresses"]) or "-"))

    @app.command(name="inspect")
    def inspect(container: str = typer.Argument(..., help="Container ID (prefix), name, or cnirun run ID.")) -> None:
        """The cached CNI results of a container's attachments, as JSON."""
        with one_line_errors():
            rows = [r for r in collect(True) if _matches(r, container)]
        if not rows:
            fail(f"no container {container!r} with CNI attachments: see cnirun ps")
        if len(rows) > 1:
            fail(f"{container!r} matches {len(rows)} containers: give more of the ID")
        print(json.dumps(rows[0], indent=2))

    @app.command(name="gc")
    def gc(dry_run: bool = typer.Option(False, "--dry-run", help="Say what would be removed.")) -> None:
        """DEL attachments whose container is gone, remove helper containers and stale state; then CNI GC."""
        with one_line_errors():
            report = collect_garbage(dry_run=dry_run)
        for line in report:
            print(line)
        if not report:
            print("nothing to collect")


def _matches(row: dict[str, Any], key: str) -> bool:
    ids = [row.get("container", ""), row.get("run_id", ""), row.get("sandbox", "")]
    return key == row.get("name") or any(i and i.startswith(key) for i in ids)


def _att_row(att: Any) -> dict[str, Any]:
    from ..attach import Attachment

    return {
        "network": att.network_name,
        "ifname": att.ifname,
        "cni_container_id": att.container_id,
        "netns": att.netns,
        "addresses": Attachment(att.network_name, att.ifname, att.result or {}).addresses(),
        "capability_args": att.capability_args,
        "result": att.result,
        "cache_file": att.path,
    }


def collect(include_foreign: bool) -> list[dict[str, Any]]:
    """One row per container: cnirun runs from their state dirs, then (with -a) other cached attachments."""
    from .. import cache as cnicache
    from ..runtime import CNI
    from ..state import list_states

    rows: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    for st in list_states():
        meta = st.read_meta()
        if meta is None:
            continue
        cache_dir = meta.cni_env.get("CNI_CACHE_DIR") or cnicache.default_cache_dir()
        atts = [a for a in cnicache.list_attachments(cache_dir) if a.container_id == meta.id]
        seen.add((cache_dir, meta.id))
        rows.append({
            "container": meta.workload, "run_id": meta.id, "engine": meta.engine, "image": meta.image,
            "name": meta.name, "sandbox": meta.sandbox, "netns": meta.netns, "phase": meta.phase,
            "detached": meta.detached, "attachments": [_att_row(a) for a in sorted(atts, key=lambda a: a.ifname)],
        })
    if include_foreign:
        by_id: dict[str, list[Any]] = {}
        for cache_dir in _cache_dirs(CNI().cache_dir):
            for a in cnicache.list_attachments(cache_dir):
                if (cache_dir, a.container_id) not in seen:
                    by_id.setdefault(a.container_id, []).append(a)
        known = _engine_containers() if by_id else {}
        for cid, atts in sorted(by_id.items()):
            eng = known.get(cid, {})
            rows.append({
                "container": cid, "run_id": "", "engine": eng.get("engine", "-"), "image": eng.get("image", ""),
                "name": eng.get("name", ""), "netns": atts[0].netns, "mode": _made_by(cid, atts),
                "attachments": [_att_row(a) for a in sorted(atts, key=lambda a: (len(a.ifname), a.ifname))],
            })
    return rows


def _cache_dirs(current: str) -> list[str]:
    """This shell's CNI cache, plus those the Docker runtime and the hooks.d files were installed with."""
    envs: list[dict[str, str]] = []
    try:
        from ..docker_runtime import installed_settings
        from ..hooksd import installed_envs

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
        from ..hook import pin_path
    except ImportError:
        return "-"
    return "hook" if any(a.netns == pin_path(cid) for a in atts) else "-"


def _engine_containers() -> dict[str, dict[str, str]]:
    """Full container ID -> engine, image, name, from one listing per engine that answers."""
    from shutil import which

    out: dict[str, dict[str, str]] = {}
    if which("podman"):
        from ..engines import podman

        for c in podman.list_containers():
            out[c["id"]] = {"engine": "podman", "image": c["image"], "name": c["name"]}
    try:
        from ..engines.docker import Docker

        for c in Docker().all_containers():
            names = c.get("Names") or []
            out[c["Id"]] = {"engine": "docker", "image": str(c.get("Image", "")),
                            "name": names[0].lstrip("/") if names else ""}
    except Exception:  # noqa: BLE001 - no dockerd: those rows keep engine "-"
        pass
    return out


# -- gc ----------------------------------------------------------------------------------
class _Engines:
    """Lazy engine access; an unreachable engine counts as 'unknown', never as 'container gone'."""

    def __init__(self) -> None:
        self._docker: Any = None
        self.docker_error = ""

    def docker(self) -> Any:
        if self._docker is None and not self.docker_error:
            from ..engines.docker import Docker

            try:
                self._docker = Docker()
            except Exception as e:  # noqa: BLE001
                self.docker_error = str(e)
        return self._docker

    def alive(self, cid: str) -> bool | None:
        """Whether an engine has this container created or running; None when no engine can tell."""
        d = self.docker()
        known = False
        if d is not None:
            known = True
            info = d.inspect(cid)
            if info and info["State"].get("Status") in ("created", "running", "restarting", "paused"):
                return True
        from shutil import which

        if which("podman"):
            from ..engines import podman

            known = True
            state = podman.container_running(cid)
            if state:
                return True
        return False if known else None


def collect_garbage(dry_run: bool = False) -> list[str]:
    """Tear down every run no live process owns, unless its detached container still runs.

    Safe beside runs in flight: a run's state dir is locked by its owner from
    before the first engine call until teardown ends, and locked dirs are
    skipped. A foreground run whose cnirun died is torn down fully (its
    container too): only -d containers outlive their cnirun.
    """
    from .. import cache as cnicache
    from ..runtime import CNI, RuntimeConf
    from ..state import list_states, stale_tmp_dirs, state_root
    from ..teardown import teardown
    from ..watch import ensure_watcher

    report: list[str] = []
    engines = _Engines()
    run_ids: set[str] = set()
    need_watcher = False
    for st in list_states():
        run_ids.add(st.id)
        if not st.lock(blocking=False):
            continue  # a live cnirun run or the watcher owns it
        meta = st.read_meta()
        try:
            if meta and meta.detached and meta.phase == "running" and meta.workload:
                alive = _run_alive(meta, engines)
                if alive is None or alive:
                    need_watcher = True
                    continue  # its container still exists: the watcher's job
            what = f"run {st.id[:12]} ({meta.engine if meta else '?'} {(meta.workload if meta else '')[:12] or '-'})"
            if dry_run:
                report.append(f"would tear down {what}")
                continue
            docker = engines.docker() if meta and meta.engine == "docker" else None
            if meta and meta.engine == "docker" and docker is None:
                report.append(f"skipped {what}: {engines.docker_error}")
                continue
            errors = teardown(st, meta, docker, stop=True)
            report.append(f"tore down {what}" + (f": {'; '.join(errors)}" if errors else ""))
        finally:
            st.unlock()
    for p in stale_tmp_dirs():
        if not dry_run:
            import shutil

            shutil.rmtree(p, ignore_errors=True)
        report.append(f"removed half-made state dir {p.name}")
    # Helper containers whose run state is gone (a teardown cut short after the state went).
    d = engines.docker()
    if d is not None:
        for c in d.containers("cnirun.role=sandbox"):
            labels = c.get("Labels") or {}
            if labels.get("cnirun.state") != str(state_root()) or labels.get("cnirun.id") in run_ids:
                continue
            if not dry_run:
                d.remove(c["Id"])
            report.append(f"removed orphan helper container {c['Id'][:12]}")
    # Cached attachments no cnirun run owns (cnirun exec, the OCI hook, other runtimes).
    cni = CNI()
    keep: dict[str, list[tuple[str, str]]] = {}
    for att in cnicache.list_attachments(cni.cache_dir):
        if att.container_id in run_ids or _foreign_alive(att, engines):
            keep.setdefault(att.network_name, []).append((att.container_id, att.ifname))
            continue
        report.append(f"{'would DEL' if dry_run else 'DEL'} {att.network_name}/{att.ifname} of {att.container_id[:12]}")
        if dry_run:
            continue
        try:
            _del_foreign(cni, att)
        except Exception as e:  # noqa: BLE001 - reported; the cache file stays for a retry
            report.append(f"  failed: {e}")
    for p in cnicache.corrupt_files(cni.cache_dir):
        report.append(f"{'would remove' if dry_run else 'removed'} corrupt cache file {p}")
        if not dry_run:
            p.unlink(missing_ok=True)
    # The spec's GC for networks whose plugins can do it (cniVersion >= 1.1.0).
    from ..version import at_least

    if not dry_run:
        for net in cni.networks():
            if at_least(net.cni_version, "1.1.0"):
                for e in cni.gc(net, keep.get(net.name, [])):
                    report.append(f"GC {net.name}: {e}")
    if need_watcher and not dry_run:
        ensure_watcher()
    return report


def _run_alive(meta: Any, engines: _Engines) -> bool | None:
    """Whether a detached run's container still exists (None: no engine can tell).

    Exists, not runs: a stopped container keeps its networks so that it can be
    started again (the watcher's rule), and only its removal ends the run.
    """
    if meta.engine == "podman":
        from ..engines import podman

        return podman.container_running(meta.workload) is not None
    d = engines.docker()
    return None if d is None else d.inspect(meta.workload) is not None


def _foreign_alive(att: Any, engines: _Engines) -> bool:
    if att.netns.startswith("/run/netns/") and os.path.exists(att.netns):
        return True  # cnirun exec / a hand-made netns: its owner removes it
    alive = engines.alive(att.container_id)
    if alive is None:
        return True  # no engine to ask: never DEL on a guess
    return alive


def _del_foreign(cni: Any, att: Any) -> None:
    from ..runtime import RuntimeConf

    hook_pin = ""
    try:
        from ..hook import pin_path

        hook_pin = pin_path(att.container_id)
    except ImportError:
        pass
    if hook_pin and att.netns == hook_pin:
        from ..hook import detach_container

        errors = detach_container(cni, att.container_id)
        if errors:
            raise RuntimeError("; ".join(errors))
        return
    from ..teardown import _NO_NETNS

    # A /proc/<pid> path may belong to another process by now: never enter it.
    netns = _NO_NETNS if att.netns.startswith("/proc/") else ""
    cni.delete(att.network_name, RuntimeConf(container_id=att.container_id, ifname=att.ifname, netns=netns))
    try:
        from ..leftovers import remove_rules_naming

        remove_rules_naming(att.network_name, att.container_id)  # a DEL without its netns leaves NAT rules
    except ImportError:
        pass
