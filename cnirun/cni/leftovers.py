"""Removing iptables rules that a DEL without a netns leaves behind.

The reference bridge plugin finds the addresses whose masquerade rules it
must delete by looking at the interface inside the netns; when the netns or
the interface is already gone (the container exited, the host rebooted, the
veth was removed) its DEL succeeds but leaves the POSTROUTING jump and the
per-container CNI-... chain in the nat table. The
plugins tag every rule with a comment holding `id: "<containerID>"`, so
after such a DEL cnirun deletes the rules carrying that tag (the workaround
nerdctl also uses). Only rules naming the container are touched.
"""
from __future__ import annotations

import re
import shlex
import subprocess

from ..core.fsutil import which

_TOOLS = (("iptables-save", "iptables"), ("ip6tables-save", "ip6tables"))
_TABLES = ("nat", "filter", "mangle")
# Per-container chains are named from a hash of network name and container ID
# (bridge's "CNI-<hex>", portmap's "CNI-DN-<hex>"/"CNI-SN-<hex>"). Shared chains
# such as CNI-HOSTPORT-SETMARK or CNI-FORWARD must never be flushed.
_PER_CONTAINER_CHAIN = re.compile(r"^CNI-(?:DN-|SN-)?[0-9a-f]{16,}$")


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True)


def rules_naming(
    network: str, container_id: str, tables: tuple[str, ...] = _TABLES
) -> list[tuple[str, str, str, list[str]]]:
    """(tool, table, chain, rule spec) of every rule whose comment names this network's attachment.

    The plugins' comments read `name: "<network>" id: "<containerID>"`
    (portmap prefixes "dnat "); matching both keeps the container's other
    networks' rules untouched.
    """
    tag = f'name: \\"{network}\\" id: \\"{container_id}\\"'
    found: list[tuple[str, str, str, list[str]]] = []
    for save, tool in _TOOLS:
        save_exe = which(save) or which(save, ("/usr/sbin", "/sbin"))
        tool_exe = which(tool) or which(tool, ("/usr/sbin", "/sbin"))
        if not save_exe or not tool_exe:
            continue
        for table in tables:
            out = _run([save_exe, "-t", table])
            if out.returncode != 0:
                continue
            for line in out.stdout.splitlines():
                if line.startswith("-A ") and tag in line:
                    words = shlex.split(line)
                    found.append((tool_exe, table, words[1], words[2:]))
    return found


def remove_rules_naming(network: str, container_id: str, tables: tuple[str, ...] = _TABLES) -> list[str]:
    """Delete every rule naming the container, then the CNI-... chains they jumped to.

    Best effort: returns what could not be removed (as text), never raises.
    """
    problems: list[str] = []
    rules = rules_naming(network, container_id, tables)
    targets: set[tuple[str, str, str]] = set()
    for tool, table, chain, spec in rules:
        if "-j" in spec:
            target = spec[spec.index("-j") + 1]
            if _PER_CONTAINER_CHAIN.match(target):
                targets.add((tool, table, target))
    # Rules inside the per-container chains go with the chain; delete the rest one by one.
    for tool, table, chain, spec in rules:
        if (tool, table, chain) in targets:
            continue
        out = _run([tool, "-w", "-t", table, "-D", chain, *spec])
        if out.returncode != 0:
            problems.append(f"{tool} -t {table} -D {chain}: {out.stderr.strip()}")
    for tool, table, chain in sorted(targets):
        for op in ("-F", "-X"):
            out = _run([tool, "-w", "-t", table, op, chain])
            if out.returncode != 0:
                problems.append(f"{tool} -t {table} {op} {chain}: {out.stderr.strip()}")
                break
    return problems
