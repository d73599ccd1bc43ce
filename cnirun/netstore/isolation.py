"""Keep cnirun-created bridge networks apart, as Docker keeps its networks apart.

With two gateway bridges on one host, the host routes between them, so a
container could reach one on a network it does not share. Docker drops that
traffic in its isolation chains; we do the same with two chains per family
in the *mangle* table: the firewall plugin insists on being first in
filter/FORWARD and accepts container traffic there, so a filter rule of ours
would never see the packets, while mangle/FORWARD runs before filter.

  FORWARD -> CNIRUN-ISOLATION-1:  -i BR ! -o BR -> CNIRUN-ISOLATION-2
  CNIRUN-ISOLATION-2:             -o BR -> DROP

Rules are added when a network is created and removed with it.
"""
from __future__ import annotations

import shutil
import subprocess

from ..core.errors import CNIError

TABLE = "mangle"
STAGE1 = "CNIRUN-ISOLATION-1"
STAGE2 = "CNIRUN-ISOLATION-2"
TOOLS = ("iptables", "ip6tables")


def _run(tool: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([tool, "-w", "-t", TABLE, *args], capture_output=True, text=True, timeout=30)


def _rules(bridge: str) -> list[tuple[str, list[str]]]:
    return [
        (STAGE1, ["-i", bridge, "!", "-o", bridge, "-j", STAGE2]),
        (STAGE2, ["-o", bridge, "-j", "DROP"]),
    ]


def _available() -> list[str]:
    return [t for t in TOOLS if shutil.which(t)]


def ensure(bridge: str) -> None:
    """Add the isolation rules for `bridge` (idempotent)."""
    tools = _available()
    if "iptables" not in tools:
        raise CNIError("iptables is missing: install it (networks are isolated from each other with it)")
    for tool in tools:
        for chain in (STAGE1, STAGE2):
            _run(tool, "-N", chain)  # fails harmlessly when it exists
        if _run(tool, "-C", "FORWARD", "-j", STAGE1).returncode != 0:
            _check(tool, _run(tool, "-I", "FORWARD", "1", "-j", STAGE1))
        for chain, rule in _rules(bridge):
            if _run(tool, "-C", chain, *rule).returncode != 0:
                _check(tool, _run(tool, "-A", chain, *rule))


def _check(tool: str, proc: subprocess.CompletedProcess[str]) -> None:
    # IPv6 filtering may be unavailable (no ip6tables modules): IPv4 must work.
    if proc.returncode != 0 and tool == "iptables":
        raise CNIError(f"{tool} -t {TABLE} failed: {proc.stderr.strip()}")


def remove(bridge: str) -> None:
    """Remove `bridge`'s rules; drop the chains once no bridge is left in them."""
    for tool in _available():
        for chain, rule in _rules(bridge):
            while _run(tool, "-C", chain, *rule).returncode == 0:
                if _run(tool, "-D", chain, *rule).returncode != 0:
                    break
        listing = _run(tool, "-S", STAGE2)
        if listing.returncode == 0 and not [ln for ln in listing.stdout.splitlines() if ln.startswith("-A")]:
            while _run(tool, "-C", "FORWARD", "-j", STAGE1).returncode == 0:
                if _run(tool, "-D", "FORWARD", "-j", STAGE1).returncode != 0:
                    break
            for chain in (STAGE1, STAGE2):
                _run(tool, "-F", chain)
                _run(tool, "-X", chain)


def rules_for(bridge: str) -> list[str]:
    """The rules naming `bridge` (tests use it to prove nothing is left)."""
    out: list[str] = []
    for tool in _available():
        listing = _run(tool, "-S")
        if listing.returncode == 0:
            out += [ln for ln in listing.stdout.splitlines() if bridge in ln.split()]
    return out



# The firewall plugin's ingressPolicy "same-bridge" (network create --isolate
# same-bridge) adds per-bridge rules to filter's CNI-ISOLATION-STAGE-1/2 and
# never removes them (upstream leaves them for the bridge's lifetime): the
# network's removal does, and drops the chains once no bridge is left in them.
FW_TABLE = "filter"
FW_STAGE1 = "CNI-ISOLATION-STAGE-1"
FW_STAGE2 = "CNI-ISOLATION-STAGE-2"


def _fw(tool: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([tool, "-w", "-t", FW_TABLE, *args], capture_output=True, text=True, timeout=30)


def remove_firewall_isolation(bridge: str) -> None:
    """Remove the firewall plugin's same-bridge rules naming `bridge`; the chains when they are empty."""
    import shlex

    for tool in _available():
        listing = _fw(tool, "-S")
        if listing.returncode != 0:
            continue
        for line in listing.stdout.splitlines():
            words = shlex.split(line)
            if line.startswith(("-A " + FW_STAGE1 + " ", "-A " + FW_STAGE2 + " ")) and bridge in words:
                _fw(tool, "-D", *words[1:])
        left = [ln for ln in _fw(tool, "-S", FW_STAGE2).stdout.splitlines()
                if ln.startswith("-A ") and " -o " in ln]
        if left or _fw(tool, "-S", FW_STAGE2).returncode != 0:
            continue
        for line in _fw(tool, "-S", "FORWARD").stdout.splitlines():
            if line.startswith("-A FORWARD ") and line.endswith("-j " + FW_STAGE1):
                _fw(tool, "-D", *shlex.split(line)[1:])
        for chain in (FW_STAGE1, FW_STAGE2):
            _fw(tool, "-F", chain)
        for chain in (FW_STAGE1, FW_STAGE2):
            _fw(tool, "-X", chain)
