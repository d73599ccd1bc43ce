"""bench/_cpu.py: bench_scale's CPU per component, from the kernel's taskstats exit records."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import needs_root

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import _cpu  # noqa: E402


def test_names_map_to_components() -> None:
    assert _cpu.component("cnirun-attach") == "cnirun attach worker (ADD)"
    assert _cpu.component("cnirun-del") == "cnirun DEL (runc delete)"
    assert _cpu.component("bridge") == _cpu.component("host-local") == "CNI plugins"
    assert _cpu.component("xtables-nft-mul") == _cpu.component("iptables") == "iptables (the plugins' calls)"
    assert _cpu.component("exe") == "runc init" and _cpu.component("runc:[2:INIT]").startswith("runc (")
    assert _cpu.component("frobnicate") == "other: frobnicate"


def test_table_is_ms_per_container_per_group() -> None:
    lines = _cpu.table({"a": {"CNI plugins": 0.2, "dockerd": 0.1}, "b": {"dockerd": 0.4}}, 10)
    assert lines[1].split()[-2:] == ["10.0", "40.0"] and lines[1].startswith("dockerd")
    assert lines[2].startswith("CNI plugins") and lines[2].split()[-2:] == ["20.0", "0.0"]
    assert lines[-1].split() == ["total", "30.0", "40.0"]


@needs_root
def test_a_process_that_ran_is_counted_under_its_component() -> None:
    with _cpu.ComponentCPU() as cpu:
        subprocess.run(["sh", "-c", "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done"], check=True)
    if not cpu.available:
        pytest.skip("no taskstats on this kernel")
    assert cpu.seconds["sh (the runtime's launcher)"] > 0.005
    assert "dockerd" in cpu.seconds or not Path("/run/docker.pid").exists()
