"""`cnirun --version` / `cnirun version`, and the help every command shows (issue 14).

No network, container or bridge is made here.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import CNIRUN, HAVE_DOCKER, HAVE_PODMAN, REPO

from cnirun.core.version import SUPPORTED_VERSIONS


def cnirun(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CNIRUN, *args], capture_output=True, text=True, timeout=60, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})})


def test_version_reports_cnirun_cni_engines_and_dirs(tmp_path: Path) -> None:
    env = {"CNI_PATH": f"{tmp_path}/plugins:/usr/lib/cni", "NETCONFPATH": str(tmp_path / "net.d")}
    p = cnirun("version", "--format", "json", env=env)
    assert p.returncode == 0, p.stderr
    data = json.loads(p.stdout)
    c = data["cnirun"]
    from importlib.metadata import version

    assert c["version"] == version("cnirun")
    assert c["cniVersions"] == list(SUPPORTED_VERSIONS)
    assert c["pluginDirs"][:2] == [f"{tmp_path}/plugins", "/usr/lib/cni"]
    assert c["pluginDirs"][-1].endswith("cnirun/plugins/bin")
    assert c["netconfPath"] == [str(tmp_path / "net.d")]
    engines = {e["name"]: e for e in data["engines"]}
    assert set(engines) == {"docker", "podman"}
    if HAVE_DOCKER:
        want = subprocess.run(["docker", "version", "--format", "{{.Server.Version}}"], capture_output=True,
                              text=True).stdout.strip()
        assert engines["docker"]["version"] == want and engines["docker"]["context"] == "default"
    if HAVE_PODMAN:
        want = subprocess.run(["podman", "version", "--format", "{{.Client.Version}}"], capture_output=True,
                              text=True).stdout.strip()
        assert engines["podman"]["version"] == want
    text = cnirun("--version", env=env)
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[0] == f"cnirun version {c['version']}"
    assert f" CNI versions:    {', '.join(SUPPORTED_VERSIONS)}" in lines
    assert f" Plugin dirs:     {':'.join(c['pluginDirs'])}" in lines
    assert "Engine: docker" in lines and "Engine: podman" in lines
    if HAVE_DOCKER:
        assert f" Version:         {engines['docker']['version']}" in lines
    assert cnirun("version").stdout.splitlines()[0] == lines[0]
    tpl = cnirun("version", "--format", "{{.Cnirun.Version}} {{range .Engines}}{{.Name}} {{end}}")
    assert tpl.stdout.strip() == f"{c['version']} docker podman"


def test_version_is_lean_and_errors_are_one_line() -> None:
    code = ("import sys; from cnirun.cli.main import main; rc = main(['--version']); "
            "heavy = [m for m in ('docker', 'typer', 'requests', 'yaml', 'pyroute2') if m in sys.modules]; "
            "sys.stderr.write(repr(heavy)); sys.exit(rc)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert p.returncode == 0 and p.stderr == "[]", p.stderr
    for args in (("version", "--bogus"), ("version", "--format", "{{.Nope}}"), ("version", "--format")):
        bad = cnirun(*args)
        assert bad.returncode == 1 and bad.stderr.startswith("cnirun: ") and bad.stderr.count("\n") == 1, bad.stderr


def test_help_lists_run_first_with_its_summary() -> None:
    p = cnirun("--help")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    first = lines[lines.index("Commands:") + 1].split()
    assert first[0] == "run" and "Run a container on CNI networks" in " ".join(first)
    for opt in ("--version", "--context", "--install-completion", "--show-completion"):
        assert opt in p.stdout
    assert "Examples:" in p.stdout


def _command_paths() -> list[tuple[str, ...]]:
    from cnirun.cli.app import command

    out: list[tuple[str, ...]] = []

    def walk(cmd: object, path: tuple[str, ...]) -> None:
        out.append(path)
        for name, sub in (getattr(cmd, "commands", None) or {}).items():
            walk(sub, (*path, name))

    walk(command(), ())
    return out


def test_every_command_help_has_an_example() -> None:
    paths = _command_paths()
    # The tree holds what users type: the main groups and the hand-parsed commands too.
    for want in (("run",), ("version",), ("cni", "add"), ("exec",), ("network", "ls"), ("ps",), ("compose", "up")):
        assert want in paths
    missing = []
    for path in paths:
        p = cnirun(*path, "--help")
        if p.returncode != 0 or "Example" not in p.stdout:
            missing.append(" ".join(path) or "(top)")
    assert missing == [], f"no example in the help of: {missing}"


def test_completion_scripts_for_bash_and_zsh() -> None:
    for shell, marker in (("bash", "complete -o"), ("zsh", "compdef")):
        # typer's own switch to name the shell instead of detecting the one we run under
        p = cnirun("--show-completion", shell, env={"_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"})
        assert p.returncode == 0, p.stderr
        assert "_CNIRUN_COMPLETE" in p.stdout and marker in p.stdout


def _complete(words: str, tmp_path: Path, extra: dict[str, str] | None = None) -> list[str]:
    """What bash completion offers for the command line `words` (typer's protocol, as the script runs it)."""
    env = {"_CNIRUN_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": str(len(words.split(" ")) - 1),
           **(extra or {})}
    p = cnirun(env=env)
    assert p.returncode == 0, p.stderr
    return p.stdout.split()


@pytest.mark.skipif(os.geteuid() != 0, reason="reads root-only state")
def test_completion_offers_commands_options_and_network_names(tmp_path: Path) -> None:
    netconf = tmp_path / "net.d"
    netconf.mkdir()
    for name in ("t14-alpha", "t14-beta"):
        (netconf / f"{name}.conflist").write_text(json.dumps(
            {"cniVersion": "1.0.0", "name": name, "plugins": [{"type": "loopback"}]}))
    env = {"NETCONFPATH": str(netconf), "CNIRUN_STATE_DIR": str(tmp_path / "state"),
           "CNI_CACHE_DIR": str(tmp_path / "cache")}
    assert {"run", "ps", "network", "version"} <= set(_complete("cnirun ", tmp_path, env))
    assert {"ls", "inspect", "rm"} <= set(_complete("cnirun network ", tmp_path, env))
    assert "--no-trunc" in _complete("cnirun network ls --", tmp_path, env)
    assert set(_complete("cnirun network inspect t14-", tmp_path, env)) == {"t14-alpha", "t14-beta"}
    assert set(_complete("cnirun network rm t14-a", tmp_path, env)) == {"t14-alpha"}
