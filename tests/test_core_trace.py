"""CNIRUN_TRACE=1 / --debug (#13): each phase and its duration on stderr; nothing when off."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import CNIRUN, REPO, World, _make_world, needs_docker, needs_plugins, needs_root, world_fixture

LINE = re.compile(r"^cnirun trace \[(\d+)\] +\+ *[\d.]+ ms  (.+?) +([\d.]+) ms(?:  (.*))?$")


def _phases(stderr: str) -> list[tuple[str, float, str]]:
    out = []
    for line in stderr.splitlines():
        m = LINE.match(line)
        if m:
            out.append((m.group(2), float(m.group(3)), m.group(4) or ""))
    return out


@pytest.fixture
def noop_env(tmp_path: Path) -> dict[str, str]:
    from cnirun.plugins import install_plugin_script

    plugdir = tmp_path / "plugins"
    plugdir.mkdir()
    install_plugin_script(plugdir, "noop", "cnirun.plugins.noop")
    debug = tmp_path / "noop.json"
    debug.write_text(json.dumps({"reportResult": {"cniVersion": "1.0.0", "ips": [{"address": "10.197.254.2/24"}]}}))
    netconf = tmp_path / "net.d"
    netconf.mkdir()
    (netconf / "t197tr.conflist").write_text(json.dumps(
        {"cniVersion": "1.0.0", "name": "t197tr", "plugins": [{"type": "noop", "debugFile": str(debug)}]}))
    (tmp_path / "ns").write_text("")
    env = dict(os.environ, NETCONFPATH=str(netconf), CNI_PATH=str(plugdir), CNI_CACHE_DIR=str(tmp_path / "cache"),
               CNIRUN_LOCK_FILE=str(tmp_path / "cni.lock"), CNI_CONTAINERID="c197tr", PYTHONPATH=str(REPO))
    env.pop("CNIRUN_TRACE", None)
    return env


def _cni(env: dict[str, str], tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CNIRUN, "cni", *args], env=env, capture_output=True, text=True, timeout=60, cwd=REPO)


def test_debug_traces_every_phase_of_cni_add_and_del(noop_env: dict[str, str], tmp_path: Path) -> None:
    ns = str(tmp_path / "ns")
    add = _cni(noop_env, tmp_path, "--debug", "add", "t197tr", ns)
    assert add.returncode == 0, add.stderr
    assert json.loads(add.stdout)["ips"][0]["address"] == "10.197.254.2/24"  # stdout is the result alone
    phases = _phases(add.stderr)
    names = [p for p, _, _ in phases]
    for wanted in ("start-up", "argv parse", "config load", "lock wait", "plugin ADD", "cache write"):
        assert wanted in names, (wanted, add.stderr)
    assert ("plugin ADD", "noop (t197tr)") in [(p, d) for p, _, d in phases]
    assert [d for p, _, d in phases if p == "cache write"] == ["intent", "result"]
    assert all(ms >= 0 for _, ms, _ in phases)
    # every stderr line is a trace line: nothing else was added
    assert len(phases) == len(add.stderr.splitlines())
    # the flag may also follow the command; CNIRUN_TRACE=1 is the same
    dele = _cni(dict(noop_env, CNIRUN_TRACE="1"), tmp_path, "del", "t197tr", ns)
    assert dele.returncode == 0, dele.stderr
    assert ("plugin DEL", "noop (t197tr)") in [(p, d) for p, _, d in _phases(dele.stderr)]
    again = _cni(noop_env, tmp_path, "add", "t197tr", ns, "--debug")
    assert again.returncode == 0 and "plugin ADD" in [p for p, _, _ in _phases(again.stderr)]
    assert _cni(noop_env, tmp_path, "del", "t197tr", ns).returncode == 0


def test_no_trace_when_off(noop_env: dict[str, str], tmp_path: Path) -> None:
    ns = str(tmp_path / "ns")
    for env in (noop_env, dict(noop_env, CNIRUN_TRACE="0")):
        add = _cni(env, tmp_path, "add", "t197tr", ns)
        assert add.returncode == 0 and add.stderr == ""
        dele = _cni(env, tmp_path, "del", "t197tr", ns)
        assert dele.returncode == 0 and dele.stderr == ""
    # a --debug after `--` is an argument, not the flag
    bad = _cni(noop_env, tmp_path, "add", "--", "t197tr", ns, "--debug")
    assert bad.returncode != 0 and "cnirun trace" not in bad.stderr and bad.stderr.startswith("cnirun:")


def test_trace_module_costs_no_imports() -> None:
    code = "import sys; import cnirun.core; before = set(sys.modules); import cnirun.core.trace; print(sorted(set(sys.modules) - before))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True).stdout
    assert json.loads(out.replace("'", '"')) == ["cnirun.core.trace"]


world = world_fixture(_make_world, 197, "trace")


@needs_root
@needs_docker
@needs_plugins
def test_run_debug_traces_engine_calls_and_the_chain(world: World) -> None:
    """A --debug run traces its phases: argv parse, config, locks, each plugin, engine calls, the Docker mode."""
    run = world.cnirun("--debug", "--mode", "sandbox", "--rm", "busybox", "true", timeout=120)
    assert run.returncode == 0, run.stderr
    phases = _phases(run.stderr)
    names = [p for p, _, _ in phases]
    assert names[:2] == ["start-up", "argv parse"]
    for wanted in ("config load", "lock wait", "plugin ADD", "plugin DEL", "engine call"):
        assert wanted in names, (wanted, run.stderr)
    assert ("plugin ADD", f"bridge ({world.net})") in [(p, d) for p, _, d in phases]
    assert any(p == "engine call" and d.startswith("docker") for p, _, d in phases)
    assert ("docker mode", "single: --mode sandbox") in [(p, d) for p, _, d in phases]  # the mode, and why
    world.assert_clean(within=10)


# -- what the time went on, cut (#13) ---------------------------------------------------------
def test_dumps_indented_is_json_dumps_indent_4() -> None:
    import random

    from cnirun.core.jsonfast import dumps_indented

    rnd = random.Random(197)

    def value(depth: int) -> Any:
        kind = rnd.randrange(9 if depth < 4 else 5)
        if kind == 0:
            return rnd.choice([None, True, False])
        if kind == 1:
            return rnd.randint(-10**12, 10**12)
        if kind == 2:
            return rnd.choice([0.5, -0.0, 1e100, 3.14159, float("inf"), float("-inf"), float("nan")])
        if kind in (3, 4):
            return "".join(rnd.choice('ab"\\\n\t<>&é\u2028\x01') for _ in range(rnd.randrange(6)))
        if kind in (5, 6):
            return [value(depth + 1) for _ in range(rnd.randrange(4))]
        return {f"k{i}{rnd.choice('é<')}": value(depth + 1) for i in range(rnd.randrange(4))}

    for _ in range(300):
        v = value(0)
        assert dumps_indented(v) == json.dumps(v, indent=4, ensure_ascii=False)
    # what it cannot write itself goes to the json package, error included
    with pytest.raises(TypeError):
        dumps_indented({"x": object()})
    assert dumps_indented({1: "a"}) == json.dumps({1: "a"}, indent=4)


def test_cni_add_and_del_load_no_json_typing_or_hashlib(noop_env: dict[str, str], tmp_path: Path) -> None:
    """`cnirun cni add/del` start-up: the json package, typing and hashlib's OpenSSL binding stay unloaded."""
    code = (
        "import sys, atexit; "
        f"atexit.register(lambda: open({str(tmp_path / 'mods')!r}, 'a').write(' '.join(sys.modules) + '\\n')); "
        "from cnirun.cli.main import main; sys.exit(main(sys.argv[1:]))"
    )
    ns = str(tmp_path / "ns")
    env = dict(noop_env)
    env.pop("CNI_CONTAINERID")  # cnitool's ID derivation (SHA-512) is used
    for verb in ("add", "del"):
        p = subprocess.run([sys.executable, "-c", code, "cni", verb, "t197tr", ns], env=env, capture_output=True,
                           text=True, cwd=REPO, timeout=60)
        assert p.returncode == 0, p.stderr
    lines = (tmp_path / "mods").read_text().splitlines()
    assert len(lines) == 2
    for line in lines:
        loaded = set(line.split())
        assert "cnirun.cni.runtime" in loaded
        assert loaded & {"json", "typing", "_hashlib", "hashlib"} == set(), loaded & {"json", "typing", "_hashlib"}
