"""`cnirun network ...`: list, inspect, create, remove, prune and convert networks.

Tables for people, `--format json` for scripts. New networks are written as
conflists into the first NETCONFPATH directory (default /etc/cni/net.d).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer

from .completion import handparsed_command, network_names
from .errors import fail, one_line_errors

FORMATS = ("table", "json")


def _format_option() -> Any:
    return typer.Option("table", "--format", help="table (for people) or json (for scripts).")


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        fail(f"unknown --format {fmt!r}: expected table or json")


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    lines = ["   ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in [header] + rows]
    return "\n".join(lines)


def _cni() -> Any:
    from ..cni.runtime import CNI

    return CNI()


def network_summary(cni: Any, net: Any) -> dict[str, Any]:
    from ..cni.config import bridge_of, meta_of
    from ..netstore import store

    m = meta_of(net)
    return {
        "name": net.name,
        "file": net.source,
        "plugins": net.types,
        "subnets": net.subnets(),
        "driver": m.get("driver", ""),
        "bridge": m.get("bridge", "") or bridge_of(net),
        "managed": bool(m),
        "labels": store.labels(net),
        "attachments": len(store.attachments(cni, net.name)),
    }


def network_detail(cni: Any, net: Any) -> dict[str, Any]:
    from ..network.attachment import Attachment
    from ..netstore import store

    out = network_summary(cni, net)
    out["containers"] = [
        {
            "containerId": a.container_id,
            "ifname": a.ifname,
            "addresses": Attachment(a.network_name, a.ifname, a.result or {}).addresses(),
            "netns": a.netns,
        }
        for a in store.attachments(cni, net.name)
    ]
    out["conflist"] = net.raw
    return out


def _cut(text: str, width: int, no_trunc: bool) -> str:
    return text if no_trunc or len(text) <= width else text[:width - 3] + "..."


def ls_table(rows: list[dict[str, Any]], no_trunc: bool = False) -> str:
    return table([[r["name"], r["driver"] or "-", _cut(",".join(r["plugins"]), 40, no_trunc),
                   ",".join(r["subnets"]) or "-", str(r["attachments"]), _cut(r["file"], 60, no_trunc)]
                  for r in rows],
                 ["NAME", "DRIVER", "PLUGINS", "SUBNET", "ATTACHED", "FILE"])


def inspect_text(details: list[dict[str, Any]]) -> str:
    """`network inspect`'s text for people: the summary, the attached containers, the conflist."""
    out: list[str] = []
    for d in details:
        out.append(f"Name:      {d['name']}\nFile:      {d['file']}\nPlugins:   {' -> '.join(d['plugins'])}")
        out.append(f"Subnets:   {', '.join(d['subnets']) or '-'}")
        if d["bridge"]:
            out.append(f"Bridge:    {d['bridge']}")
        for k, v in sorted(d["labels"].items()):
            out.append(f"Label:     {k}={v}")
        if d["containers"]:
            from ..state.runs import container_display

            out.append(table([[container_display(c["containerId"]), c["ifname"], ", ".join(c["addresses"])]
                              for c in d["containers"]],
                             ["CONTAINER", "IFACE", "ADDRESSES"]))
        else:
            out.append("Containers: none")
        out.append(json.dumps(d["conflist"], indent=2))
    return "\n".join(out)


def register(app: typer.Typer) -> None:
    net_app = typer.Typer(help="Manage CNI networks (conflists in NETCONFPATH).", no_args_is_help=True)
    app.add_typer(net_app, name="network")
    # connect and disconnect are served by hand in main.py (connect is timed against `cni add`);
    # registered here for --help and completion.
    net_app.command("connect", add_help_option=False, context_settings=PASSTHROUGH,
                    cls=handparsed_command(".connect_cmd:CONNECT_USAGE", "network container"),
                    short_help="Attach a running container to one more network (ethN).")(connect)
    net_app.command("disconnect", add_help_option=False, context_settings=PASSTHROUGH,
                    cls=handparsed_command(".connect_cmd:DISCONNECT_USAGE", "network container"),
                    short_help="Detach a running container from one network.")(disconnect)
    net_app.command("ls")(ls)
    net_app.command("inspect")(inspect)
    net_app.command("create")(create)
    net_app.command("rm")(rm)
    net_app.command("prune")(prune)
    net_app.command("reload")(reload)
    net_app.command("convert")(convert)


PASSTHROUGH = {"ignore_unknown_options": True, "allow_extra_args": True}


def connect(ctx: typer.Context) -> None:
    """cnirun network connect [--ip IP] [--ip6 IP6] [--mac MAC] [--alias NAME]... NETWORK CONTAINER"""
    from .connect_cmd import run as connect_run

    raise SystemExit(connect_run(["connect", *ctx.args]))


def disconnect(ctx: typer.Context) -> None:
    """cnirun network disconnect [-f|--force] NETWORK CONTAINER"""
    from .connect_cmd import run as connect_run

    raise SystemExit(connect_run(["disconnect", *ctx.args]))


def ls(fmt: str = typer.Option("table", "--format", help="table, json, or a Go template such as "
                               "'{{.Name}}' or 'table {{.Name}}\\t{{.Subnets}}'."),
       quiet: bool = typer.Option(False, "-q", "--quiet", help="Only names."),
       no_trunc: bool = typer.Option(False, "--no-trunc", help="Do not shorten long plugin chains and paths.")
       ) -> None:
    """List every network of NETCONFPATH and the built-in default."""
    from ..cni.config import load_all
    from .output import check_format, emit, render

    with one_line_errors():
        fmt = check_format(fmt)
        cni = _cni()
        nets = cni.networks()
        _, errors = load_all(cni.netconf_path)
        rows = [network_summary(cni, n) for n in nets]
    for e in errors:
        sys.stderr.write(f"cnirun: warning: skipped: {e}\n")
    if quiet:
        emit("\n".join(r["name"] for r in rows))
        return
    with one_line_errors():
        emit(render(rows, fmt, lambda rs: ls_table(rs, no_trunc)))


def inspect(names: list[str] = typer.Argument(..., metavar="NAME...", autocompletion=network_names),
            fmt: str = typer.Option("table", "--format", "-f", help="table, json, or a Go template such as "
                                    "'{{.Subnets}}' or '{{json .Conflist}}'.")) -> None:
    """Show networks: conflist, file, attached containers and their addresses."""
    from .output import check_format, emit, render

    with one_line_errors():
        fmt = check_format(fmt)
        cni = _cni()
        details = [network_detail(cni, cni.network(n)) for n in names]
        emit(render(details, fmt, inspect_text))


def create(
    name: str = typer.Argument(...),
    driver: str = typer.Option("bridge", "--driver", "-d", help="bridge, macvlan or ipvlan."),
    subnet: list[str] = typer.Option([], "--subnet", help="e.g. 10.89.5.0/24 (default: a free /24); "
                                     "repeat with an IPv6 one for dual stack."),
    gateway: list[str] = typer.Option([], "--gateway", help="Gateway of the subnet that contains it."),
    ip_range: list[str] = typer.Option([], "--ip-range", help="Hand out addresses from this part of the subnet."),
    internal: bool = typer.Option(False, "--internal", help="No gateway, NAT, port mapping or default route."),
    ipv6: bool = typer.Option(False, "--ipv6", help="Dual stack: also an IPv6 /64 (a free one from "
                              "CNIRUN_SUBNET_POOL_V6 unless --subnet gives one)."),
    opt: list[str] = typer.Option([], "--opt", "-o", help="Driver option K=V (repeatable)."),
    label: list[str] = typer.Option([], "--label", help="Label K=V (repeatable)."),
    no_dns: bool = typer.Option(False, "--no-dns", help="No DNS resolver for the containers' names."),
    isolate: str = typer.Option("", "--isolate", metavar="same-bridge|none",
                                help="same-bridge: the firewall plugin's ingressPolicy drops traffic from "
                                     "other bridges; none: no isolation from other networks. (Between the "
                                     "network's own containers: --opt com.docker.network.bridge.enable_icc=false.)"),
    fmt: str = _format_option(),
) -> None:
    """Create a network: a conflist in the first NETCONFPATH directory."""
    _check_format(fmt)
    with one_line_errors():
        net = create_network(name, driver, subnet, gateway, ip_range, internal, opt, label, ipv6, dns=not no_dns,
                             isolate=isolate)
    if fmt == "json":
        print(json.dumps(network_summary(_cni(), net), indent=2))
    else:
        print(net.name)


def rm(names: list[str] = typer.Argument(..., metavar="NAME...", autocompletion=network_names),
       fmt: str = _format_option()) -> None:
    """Remove networks (refused while containers are attached); deletes the bridges cnirun made."""
    from ..netstore import store

    _check_format(fmt)
    cni = _cni()
    done, failed = [], False
    for n in names:
        try:
            r = store.remove(cni, n)
        except Exception as e:  # report each name, then go on with the others
            from ..core.errors import CNIError

            if not isinstance(e, CNIError):
                raise
            sys.stderr.write(f"cnirun: {e}\n")
            failed = True
            continue
        done.append(r)
        for w in r.warnings:
            sys.stderr.write(f"cnirun: warning: {w}\n")
    _print_removals(done, fmt)
    if failed:
        raise SystemExit(1)


def prune(force: bool = typer.Option(False, "--force", "-f", help="Do not ask for confirmation."),
          filters: list[str] = typer.Option([], "--filter", metavar="KEY=VALUE",
                                            help="until=<timestamp|duration> (created before), "
                                                 "label=<key>[=<value>], label!=<key>[=<value>]; repeatable."),
          fmt: str = _format_option()) -> None:
    """Remove every network cnirun created that has no container attached (asks first, as docker)."""
    from ..netstore import store

    _check_format(fmt)
    with one_line_errors():
        match = prune_filter(filters)
    if not force and not confirmed(PRUNE_WARNING):
        fail("network prune cancelled: nothing removed")
    with one_line_errors():
        done = store.prune(_cni(), match)
    for r in done:
        for w in r.warnings:
            sys.stderr.write(f"cnirun: warning: {w}\n")
    _print_removals(done, fmt)


def reload(names: list[str] = typer.Argument(None, metavar="[NETWORK]...", autocompletion=network_names),
           dry_run: bool = typer.Option(False, "--dry-run", help="Only say what is missing.")) -> None:
    """Re-apply the rules and qdiscs a firewall reload or `iptables -F` removed (after `firewall-cmd
    --reload`, `systemctl reload firewalld` or any flush), for every live container; addresses stay."""
    from ..live.reload import reload as do_reload
    from ..state.runs import container_display

    with one_line_errors():
        for n in names or []:
            _cni().network(n)  # an unknown name: one line, nothing done
        from .output import Progress

        report = do_reload(list(names or []), dry_run=dry_run,
                           progress=lambda total: Progress("network reload", total))
    failed = False
    for r in report.repairs:
        who = f"{container_display(r.container_id)} {r.ifname}" if r.container_id else "network"
        verb = "missing" if dry_run else ("not repaired" if r.error else "repaired")
        print(f"{r.network} {who}: {verb}: {'; '.join(r.missing)}" + (f" ({r.error})" if r.error else ""))
        failed = failed or bool(r.error)
    for s in report.skipped:
        sys.stderr.write(f"cnirun: warning: skipped: {s}\n")
    if not report.repairs:
        print(f"nothing to repair ({report.checked} live attachments checked)")
    if failed:
        raise SystemExit(1)


def convert(
    file: Path = typer.Argument(..., metavar="FILE.yaml"),
    directory: Path = typer.Option(None, "--dir", help="Write NAME.conflist files here instead of printing."),
) -> None:
    """Turn the networks: of a compose-style YAML file into CNI conflists."""
    from ..netstore.networks import load_networks_file

    with one_line_errors():
        nets = load_networks_file(file)
    if directory is None:
        for n in nets:
            print(json.dumps(n.raw, indent=2))
        return
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for n in nets:
            target = directory / f"{n.name}.conflist"
            target.write_text(json.dumps(n.raw, indent=2) + "\n")
            print(target)
    except OSError as e:
        fail(f"{directory}: cannot write: {e.strerror}")


PRUNE_WARNING = "WARNING! This will remove all networks created by cnirun not used by at least one container."


def confirmed(warning: str) -> bool:
    """Ask on stderr and read one line of stdin, as docker's prompts do (a pipe or a file too, not only a
    terminal): y or yes (any case) goes on; anything else, or end of input, does not."""
    sys.stderr.write(f"{warning}\nAre you sure you want to continue? [y/N] ")
    sys.stderr.flush()
    answer, tty = "", False
    try:
        if sys.stdin is not None:  # None: stdin closed (<&-)
            tty = sys.stdin.isatty()
            answer = sys.stdin.readline(1024)
    except (OSError, ValueError, UnicodeDecodeError):
        answer = ""
    if not answer.endswith("\n") or not tty:
        sys.stderr.write("\n")  # no terminal echoed the answer's newline: the next line starts on its own
    return answer.strip().lower() in ("y", "yes")


PRUNE_FILTERS = "until=<timestamp|duration>, label=<key>[=<value>] or label!=<key>[=<value>]"


def prune_filter(filters: list[str]) -> Any:
    """docker network prune's --filter values -> a predicate of a network (None: every network).

    label: every label= filter must match (the key, or key=value); label!: a
    network that matches every label!= filter is kept. until: created (its
    conflist written) before that time. Other keys: ConfigError.
    """
    from ..core.errors import ConfigError
    from ..netstore import store

    wanted: dict[str, list[str]] = {"label": [], "label!": [], "until": []}
    for f in filters:
        key, eq, value = f.partition("=")  # label!=k: key "label!"
        if not eq or not value or key not in wanted:
            raise ConfigError(f"invalid --filter {f!r}: network prune filters by {PRUNE_FILTERS}")
        wanted[key].append(value)
    if len(wanted["until"]) > 1:
        raise ConfigError("more than one --filter until=...: give one")
    until = _until(wanted["until"][0]) if wanted["until"] else None
    if not filters:
        return None

    def has(labels: dict[str, str], spec: str) -> bool:
        k, eq, v = spec.partition("=")
        return k in labels and (not eq or labels[k] == v)

    def match(net: Any) -> bool:
        labels = store.labels(net)
        if not all(has(labels, spec) for spec in wanted["label"]):
            return False
        if wanted["label!"] and all(has(labels, spec) for spec in wanted["label!"]):
            return False
        if until is not None:
            try:
                return Path(net.source).stat().st_mtime < until
            except OSError:
                return False
        return True

    return match


def _until(value: str) -> float:
    """docker's until=: a Unix timestamp, an RFC 3339 date or time (local time without a zone), or a Go
    duration before now (10m, 1h30m) -> seconds since the epoch."""
    import re
    import time
    from datetime import datetime

    from ..core.errors import ConfigError

    if re.fullmatch(r"\d+(\.\d+)?", value):
        return float(value)
    units = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)", value)
    if parts and "".join(n + u for n, u in parts) == value:
        return time.time() - sum(float(n) * units[u] for n, u in parts)
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        raise ConfigError(f"invalid --filter until={value!r}: expected a Unix timestamp, a date or time "
                          "(2026-12-07, 2026-12-07T10:00:00Z) or a duration (10m, 1h30m)") from None


def _print_removals(done: list[Any], fmt: str) -> None:
    if fmt == "json":
        print(json.dumps([{"name": r.name, "file": r.file, "bridgeDeleted": r.bridge_deleted,
                           "warnings": r.warnings} for r in done], indent=2))
    else:
        for r in done:
            print(r.name)


def _kv(items: list[str], what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        k, sep, v = item.partition("=")
        if not sep or not k:
            fail(f"invalid {what} {item!r}: expected KEY=VALUE")
        out[k] = v
    return out


def _pools(subnets: list[str], gateways: list[str], ranges: list[str]) -> list[dict[str, Any]]:
    """--subnet/--gateway/--ip-range -> ipam.config entries; each gateway and range joins the subnet holding it.

    With one subnet, everything goes to it (the converter then says what is
    outside it); values that fit no subnet are refused here.
    """
    import ipaddress

    pools: list[dict[str, Any]] = [{"subnet": s} for s in subnets if s]
    for key, flag, values in (("gateway", "--gateway", gateways), ("ip_range", "--ip-range", ranges)):
        for v in (v for v in values if v):
            target = pools[0] if len(pools) == 1 else None
            if target is None:
                try:
                    value = ipaddress.ip_network(v, strict=False)
                except ValueError:
                    fail(f"invalid {flag} {v!r}: expected an address (or a CIDR for --ip-range)")
                for p in pools:
                    try:
                        if value.subnet_of(ipaddress.ip_network(p["subnet"], strict=False)):  # type: ignore[arg-type]
                            target = p
                    except (ValueError, TypeError):
                        continue
            if target is None:
                fail(f"{flag} {v} is in none of the subnets given ({', '.join(subnets) or 'none'}): "
                     f"add the --subnet it belongs to")
            if key in target:
                fail(f"two {flag} values for subnet {target.get('subnet')}: keep one")
            target[key] = v
    return pools


def create_network(name: str, driver: str, subnet: str | list[str] = "", gateway: str | list[str] = "",
                   ip_range: str | list[str] = "", internal: bool = False, opts: list[str] | None = None,
                   labels: list[str] | None = None, ipv6: bool = False, dns: bool = True, isolate: str = "") -> Any:
    """`network create` through the compose converter, so both follow the same rules.

    Several --subnet (one per family: dual stack) each become an ipam.config
    entry; a --gateway or --ip-range goes to the subnet that contains it. An
    IPv6 --subnet implies --ipv6.
    """
    from ..netstore import store
    from ..netstore.located import Document
    from ..netstore.network_spec import parse_network
    from ..netstore.networks import Planner

    config = _pools([subnet] if isinstance(subnet, str) else subnet,
                    [gateway] if isinstance(gateway, str) else gateway,
                    [ip_range] if isinstance(ip_range, str) else ip_range)
    if any(":" in str(p.get("subnet", "")) for p in config):
        ipv6 = True
    mapping: dict[str, Any] = {"driver": driver, "internal": internal}
    if not dns:
        mapping["x-cni"] = {"dns": False}  # as compose spells it
    if isolate:
        mapping.setdefault("x-cni", {})["isolate"] = isolate
    if ipv6:
        mapping["enable_ipv6"] = True
    if config:
        mapping["ipam"] = {"config": config}
    if opts:
        mapping["driver_opts"] = _kv(opts, "--opt")
    if labels:
        mapping["labels"] = _kv(labels, "--label")
    # A synthetic document: errors read "cnirun network create NAME: ipam.config[0].subnet: ...".
    doc = Document(source=f"cnirun network create {name}", data=mapping)
    spec = parse_network(doc, name, mapping, ())
    cni = _cni()
    with store.creating(cni) as nets:
        conf = Planner(nets).conflist(spec, {"createdBy": "cnirun network create"})
        return store.install(cni, conf)
