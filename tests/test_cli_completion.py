"""Shell completion of the hand-parsed commands (cli/completion.py): run, port, network connect/disconnect."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any


from conftest import CNIRUN, REPO, needs_docker, needs_plugins, needs_root
from cnirun.cli.completion import complete_handparsed, usage_options, usage_valued

CONNECT_USAGE = "usage: cnirun network connect [--ip IP] [--mac MAC] [--alias NAME]... NETWORK CONTAINER\n"


def _complete(words: str, env: dict[str, str]) -> list[str]:
    """What bash completion offers for `words` (typer's protocol, as its bash script runs it)."""
    full = {**env, "_CNIRUN_COMPLETE": "complete_bash", "COMP_WORDS": words,
            "COMP_CWORD": str(len(words.split(" ")) - 1)}
    p = subprocess.run(CNIRUN, env=full, capture_output=True, text=True, timeout=60, cwd=REPO)
    assert p.returncode == 0, p.stderr
    assert "Traceback" not in p.stderr
    return p.stdout.split()


def test_usage_text_gives_the_options_and_which_take_a_value() -> None:
    assert usage_options(CONNECT_USAGE) == ["--ip", "--mac", "--alias"]
    assert usage_valued(CONNECT_USAGE) == {"--ip", "--mac", "--alias"}
    # options named only in examples are not offered
    assert usage_options("usage: x [--a]\n\nExamples:\n  x --b\n") == ["--a"]


def test_positional_words_skip_option_values() -> None:
    opts = usage_options(CONNECT_USAGE)
    valued = usage_valued(CONNECT_USAGE)
    # after `--ip 10.0.0.9 NET` the next word is the container: nothing to offer without containers
    import cnirun.cli.completion as c

    calls: list[str] = []
    orig_n, orig_c = c.network_names, c.container_names
    c.network_names = lambda inc: calls.append(f"net:{inc}") or []  # type: ignore[assignment]
    c.container_names = lambda inc: calls.append(f"ctr:{inc}") or []  # type: ignore[assignment]
    try:
        complete_handparsed(opts, valued, ["--ip", "10.0.0.9"], "ne", "network container")
        complete_handparsed(opts, valued, ["--ip", "10.0.0.9", "net1"], "we", "network container")
        complete_handparsed(opts, valued, ["net1", "web"], "", "network container")
    finally:
        c.network_names, c.container_names = orig_n, orig_c
    assert calls == ["net:ne", "ctr:we"]
    assert complete_handparsed(opts, valued, [], "--a", "network container") == ["--alias"]


@needs_root
def test_run_options_and_network_names_complete(tmp_path: Path) -> None:
    netconf = tmp_path / "net.d"
    netconf.mkdir()
    for name in ("t192-alpha", "t192-beta"):
        (netconf / f"{name}.conflist").write_text(json.dumps(
            {"cniVersion": "1.0.0", "name": name, "plugins": [{"type": "loopback"}]}))
    env = {**os.environ, "NETCONFPATH": str(netconf), "CNIRUN_STATE_DIR": str(tmp_path / "state"),
           "CNI_CACHE_DIR": str(tmp_path / "cache")}
    assert {"--net", "--network"} <= set(_complete("cnirun run --ne", env))
    assert {"--rm", "--publish", "--ip", "--engine"} <= set(_complete("cnirun run --rm -", env))
    assert set(_complete("cnirun run --net t192-", env)) == {"t192-alpha", "t192-beta"}
    assert set(_complete("cnirun network connect t192-a", env)) == {"t192-alpha"}
    assert set(_complete("cnirun network connect --ip 10.192.0.5 t192-", env)) == {"t192-alpha", "t192-beta"}
    assert "--alias" in _complete("cnirun network connect --", env)
    assert "--force" in _complete("cnirun network disconnect --", env)


@needs_root
@needs_docker
@needs_plugins
def test_container_names_complete_for_port_and_connect(docker_world: Any) -> None:
    w = docker_world
    name = f"t192-cmpl-{w.n}"
    p = w.cnirun("run", "-d", "--name", name, "busybox", "sleep", "60")
    assert p.returncode == 0, p.stderr
    try:
        assert _complete("cnirun port t192-cm", w.env) == [name]
        assert _complete("cnirun port add t192-cm", w.env) == [name]
        assert _complete(f"cnirun network connect {w.net} t192-cm", w.env) == [name]
        assert _complete(f"cnirun network disconnect -f {w.net} t192-cm", w.env) == [name]
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)
