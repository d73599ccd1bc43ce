"""`cnirun ps`, `cnirun inspect CONTAINER` and `cnirun gc` (cnirun.run.gc)."""
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
        from ..run.gc import collect_garbage
        from .output import Progress

        with one_line_errors():
            report = collect_garbage(dry_run=dry_run, show=_print_line, progress=Progress)
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


def _policy_text(capability_args: dict[str, Any] | None) -> str:
    """The attachment's firewall policy for people ('' without one): 'ingress from db:5432; egress unrestricted'."""
    from ..cni.config import FIREWALL_POLICY_CAPABILITY

    value = (capability_args or {}).get(FIREWALL_POLICY_CAPABILITY)
    if value is None:
        return ""
    from ..network.policies import describe  # only for a container that has one

    return describe(value)


def _att_row(att: Any) -> dict[str, Any]:
    from ..cni.config import PORT_CAPABILITY
    from ..network.attachment import Attachment

    return {
        "policy": _policy_text(att.capability_args),
        "network": att.network_name,
        "ifname": att.ifname,
        "cni_container_id": att.container_id,
        "netns": att.netns,
        "addresses": Attachment(att.network_name, att.ifname, att.result or {}).addresses(),
        "capability_args": att.capability_args,
        # docker ps's PORTS notation: 127.0.0.1:18080->80/tcp
        "ports": [_port_text(m) for m in (att.capability_args or {}).get(PORT_CAPABILITY) or []],
        "result": att.result,
        "cache_file": att.path,
    }


def collect(include_foreign: bool) -> list[dict[str, Any]]:
    """One row per container: cnirun runs from their state dirs, then (with -a) other cached attachments."""
    from ..cni import cache as cnicache
    from ..run.caches import cni_for, runtimes
    from ..run.gc import engine_of
    from ..state.runs import list_states

    rows: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    for st in list_states():
        meta = st.read_meta()
        if meta is None:
            continue
        cache_dir = os.path.abspath(cni_for(meta).cache_dir)
        atts = cnicache.list_attachments(cache_dir, container_id=meta.id)
        seen.add((cache_dir, meta.id))
        if meta.mode in LIVE_RECORDS:
            # A live command's record of a container cnirun did not run: shown as before the change.
            rows.append(_other_row(meta.workload, meta.netns, atts, meta.engine, meta.name,
                                   "hook" if meta.mode == "hook" else "-"))
            continue
        rows.append({
            "container": meta.workload, "run_id": meta.id, "engine": engine_of(meta), "image": meta.image,
            "name": meta.name, "sandbox": meta.sandbox, "netns": meta.netns, "phase": meta.phase,
            "detached": meta.detached, "attachments": [_att_row(a) for a in sorted(atts, key=lambda a: a.ifname)],
        })
    if include_foreign:
        by_id: dict[str, list[Any]] = {}
        for cache_dir in (os.path.abspath(cni.cache_dir) for cni in runtimes()):
            for a in cnicache.list_attachments(cache_dir):
                if (cache_dir, a.container_id) not in seen:
                    by_id.setdefault(a.container_id, []).append(a)
        for cid, atts in sorted(by_id.items()):
            rows.append(_other_row(cid, atts[0].netns, atts, "", "", _made_by(cid, atts)))
    for r in rows:  # the container's policy: the same on each attachment (lifecycle.set_policy)
        r["policy"] = next((a["policy"] for a in r["attachments"] if a["policy"]), "")
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


def _made_by(cid: str, atts: list[Any]) -> str:
    """'hook' when the OCI hook pinned the netns (CNI container ID = the engine's container ID)."""
    try:
        from ..network.netns import pin_path
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
