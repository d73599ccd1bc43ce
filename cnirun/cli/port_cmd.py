"""`cnirun port CONTAINER`, `cnirun port ls|add|rm CONTAINER ...`: published ports of a running container.

Parsed by hand, without typer: `port add` is timed against `cnirun cni add`
(bench/bench_connect.py). The work is cnirun.live.verbs's (lifecycle.set_ports).
"""
from __future__ import annotations

import sys

from .errors import fail, one_line_errors

USAGE = """\
usage: cnirun port CONTAINER                      list published ports (as docker port)
       cnirun port ls CONTAINER [--format table|json|TEMPLATE]
       cnirun port add CONTAINER [IP:]HOST:CONTAINER[/PROTO]...
       cnirun port rm CONTAINER [IP:]HOST:CONTAINER[/PROTO]...

add/rm re-run only the portmap plugin with the cached result: the container
keeps its address and connections, and the ports not being changed keep
answering throughout. A host port another container publishes, or a host
process holds, a host IP that is not this host's, and a port over the
host-wide budget (CNIRUN_MAX_PUBLISHED_PORTS) are refused before anything
changes.

Examples:
  cnirun port web
  cnirun port ls web --format '{{.HostIP}}:{{.HostPort}}'
  cnirun port add web 127.0.0.1:18080:80
  cnirun port rm web 127.0.0.1:18080:80
"""


def main(args: list[str]) -> int:
    if not args or args[0] in ("-h", "--help"):
        sys.stdout.write(USAGE)
        return 0 if args else 1
    verb = args[0] if args[0] in ("ls", "add", "rm") else "ls"
    rest = args[1:] if args[0] in ("ls", "add", "rm") else args
    fmt, rest = _take_format(rest)
    if fmt and verb != "ls":
        fail(f"--format is for listing: cnirun port ls CONTAINER --format {fmt!r}")
    if any(a.startswith("-") for a in rest):
        fail(f"unknown option {next(a for a in rest if a.startswith('-'))!r}: see cnirun port --help")
    if not rest:
        fail(f"cnirun port {verb}: name a container: see cnirun port --help")
    from ..live import verbs as live
    from ..network.options import parse_ports

    with one_line_errors():
        if verb == "ls":
            if len(rest) != 1:
                fail("cnirun port ls takes one container: cnirun port ls CONTAINER")
            mappings = live.ports(rest[0])
        else:
            if len(rest) < 2:
                fail(f"cnirun port {verb}: name the ports, e.g. cnirun port {verb} {rest[0]} 127.0.0.1:8080:80")
            specs = parse_ports(",".join(rest[1:]))
            if verb == "add":
                mappings = live.change_ports(rest[0], specs, [])
            else:
                mappings = live.change_ports(rest[0], [], specs)
    ordered = sorted(mappings, key=lambda m: (int(m.get("containerPort", 0)), str(m.get("protocol", "")),
                                              int(m.get("hostPort", 0))))
    if not fmt:  # docker port's own lines: written here, output's import (json, typing, re) costs ~7 ms
        if ordered:
            sys.stdout.write("".join(live.format_port(m) + "\n" for m in ordered))
        return 0
    records = [_record(m, live.format_port(m)) for m in ordered]
    from .output import emit, render

    with one_line_errors():
        # The default is docker port's own lines (no header); json and templates as every list.
        emit(render(records, fmt or "table", lambda rs: "\n".join(r["port"] for r in rs)))
    return 0


def _record(m: dict[str, object], line: str) -> dict[str, object]:
    """One published port as --format sees it (field names stable, in the README)."""
    return {"container_port": m.get("containerPort"), "protocol": m.get("protocol", "tcp"),
            "host_ip": m.get("hostIP") or "0.0.0.0", "host_port": m.get("hostPort"), "port": line}


def _take_format(args: list[str]) -> tuple[str, list[str]]:
    """--format VALUE / --format=VALUE off args (checked at once: a bad template is one line, nothing done)."""
    fmt, out, i = "", [], 0
    while i < len(args):
        a = args[i]
        if a == "--format":
            if i + 1 >= len(args):
                fail("--format needs a value: table, json or a template such as '{{.HostPort}}'")
            fmt, i = args[i + 1], i + 2
            continue
        if a.startswith("--format="):
            fmt, i = a.partition("=")[2], i + 1
            continue
        out.append(a)
        i += 1
    if fmt:
        from .output import check_format

        with one_line_errors():
            check_format(fmt)
    return fmt, out


def run(args: list[str]) -> int:
    try:
        return main(args)
    except SystemExit as e:
        return int(e.code or 0) if not isinstance(e.code, str) else 1
