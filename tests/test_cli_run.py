"""`cnirun run` parsing (cli.run) and the lean imports of the fast paths, without an engine."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cnirun.cli.run import UsageError, parse
from conftest import World, _make_world, world_fixture

REPO = Path(__file__).resolve().parent.parent


def test_per_network_ips_parse() -> None:
    req = parse(["--net", "a,b", "--ip", "10.1.0.5", "--ip", "b=10.2.0.5", "busybox"])
    assert req is not None
    assert req.ip == "10.1.0.5" and req.network_ips == {"b": "10.2.0.5"}
    with pytest.raises(UsageError):
        parse(["--ip", "b=", "busybox"])


@pytest.mark.parametrize("argv", [["exec", "--help"], ["--help"]])
def test_fast_paths_do_not_import_typer(argv: list[str]) -> None:
    # `cnirun --help` is the typer app's; `cnirun exec` and `cnirun run` must not load it.
    p = subprocess.run([sys.executable, "-X", "importtime", "-m", "cnirun.cli.main", *argv],
                       capture_output=True, text=True, cwd=REPO)
    assert p.returncode == 0, p.stderr
    imported = {ln.split("|")[-1].strip() for ln in p.stderr.splitlines() if ln.startswith("import time:")}
    if argv[0] == "exec":
        assert "typer" not in imported and "docker" not in imported
    else:
        assert "typer" in imported


def test_run_path_does_not_import_typer_or_yaml() -> None:
    p = subprocess.run([sys.executable, "-X", "importtime", "-c",
                        "from cnirun.cli.run import parse; import cnirun.run, cnirun.run.docker_mode"],
                       capture_output=True, text=True, cwd=REPO)
    imported = {ln.split("|")[-1].strip() for ln in p.stderr.splitlines() if ln.startswith("import time:")}
    assert not {"typer", "yaml", "docker", "pyroute2"} & imported


def test_env_file_with_a_line_over_64k_is_refused_as_docker_does(tmp_path: Path) -> None:
    big = tmp_path / "big.env"
    big.write_bytes(b"BIG=" + b"a" * (10 << 20) + b"\nSMALL=1\n")
    with pytest.raises(UsageError, match=r"line 1 is \d+ bytes, over the 64 KiB docker run accepts"):
        parse(["--env-file", str(big), "busybox"])
    ok = tmp_path / "ok.env"
    ok.write_bytes(b"# c\nA=" + b"b" * 60000 + b"\n\nB=2\n")
    req = parse(["--env-file", str(ok), "busybox"])
    assert req is not None and [e[:2] for e in req.spec.env] == ["A=", "B="]


@pytest.mark.parametrize("argv,needle", [
    (["--engine", "rkt"], "unknown engine 'rkt': use --engine docker or --engine podman"),
    (["--engine", "podman", "--mode", "hook"], "--mode hook is for Docker; podman runs attach their own netns"),
])
def test_engine_and_mode_refused_before_any_engine_is_asked(argv: list[str], needle: str) -> None:
    """An unknown engine, and hook mode for an engine whose runs join their own netns: one line, exit 125,
    decided from the engine's name alone (no daemon, no image check)."""
    env = {**os.environ, "DOCKER_HOST": "unix:///nonexistent.sock", "PATH": "/nonexistent"}
    r = subprocess.run([sys.executable, "-m", "cnirun.cli.main", "run", "--rm", *argv, "busybox", "true"],
                       capture_output=True, text=True, cwd=REPO, timeout=60, env=env)
    assert (r.returncode, r.stderr) == (125, f"cnirun: {needle}\n")


def test_env_file_limit_is_a_one_line_error_with_exit_125(tmp_path: Path) -> None:
    big = tmp_path / "big.env"
    big.write_bytes(b"BIG=" + b"a" * (1 << 20) + b"\n")
    r = subprocess.run([sys.executable, "-m", "cnirun.cli.main", "--rm", "--env-file", str(big), "busybox", "true"],
                       capture_output=True, text=True, cwd=REPO, timeout=60)
    assert r.returncode == 125 and r.stderr.count("\n") == 1 and "token too long" in r.stderr, r.stderr



# Address plan of the tests below: 10.214.N.0/24 (network te-N, bridge cteN).
pworld = world_fixture(_make_world, 214, "ports", net="te-{n}", bridge="cte{n}", subnet="10.214.{n}.0/24",
                       name_prefix="te-{n}-")


@pytest.mark.parametrize("spec", ["[::1]:41990:80", "[::ffff:127.0.0.1]:41990:80", "[0:0:0:0:0:0:0:1]:41990:80/udp"])
def test_ipv6_loopback_host_ip_is_refused_before_anything_is_made(pworld: World, spec: str) -> None:
    """-p on [::1] never answered (the kernel drops ::1 outside lo): `cnirun run` refuses it with one line naming
    what to use, exit 125, before any engine or plugin runs (no CNI cache, no run state written)."""
    w = pworld
    r = w.cnirun("run", "--rm", "--name", f"te-{w.n}-v6", "-p", spec, "busybox", "true")
    assert r.returncode == 125 and r.stderr.count("\n") == 1, r.stderr
    assert "IPv6 loopback cannot be forwarded" in r.stderr and "127.0.0.1" in r.stderr
    assert not (w.cache_dir / "results").exists() and not (w.state_dir / "containers").exists()


@pytest.mark.parametrize("argv, message", [
    (["--ip", "10.0.0.9;x"], "invalid --ip '10.0.0.9;x': not an IP address a container can use"),
    (["--ip", "th-a=10.0.0.9;x"], "invalid --ip 'th-a=10.0.0.9;x': '10.0.0.9;x' is not an IP address"),
    (["--ip", "10.0.0.9;x=1"], "invalid --ip '10.0.0.9;x=1': '1' is not an IP address"),
    (["--ip", "10.0.0.9=x"], "invalid --ip '10.0.0.9=x': 'x' is not an IP address"),
    (["--ip=127.0.0.1"], "invalid --ip '127.0.0.1': not an IP address a container can use"),
    (["--ip6", "fd97:11::9%eth0"], "invalid --ip6 'fd97:11::9%eth0': not an IPv6 address"),
    (["--ip6", "th-a=10.217.0.9"], "invalid --ip6 'th-a=10.217.0.9': '10.217.0.9' is not an IPv6 address"),
    (["--net", ""], "invalid --network '': an empty network name"),
    (["--network=th-a,"], "invalid --network 'th-a,': an empty network name"),
    (["--net", "th-a", "--net", " , "], "invalid --network ' , ': an empty network name"),
])
def test_bad_ip_and_network_values_are_named_as_given(argv: list[str], message: str) -> None:
    """--ip/--ip6 name the value as the user gave it (not a part the network check picked), whatever the
    NETWORK= part; an empty --network is refused instead of meaning the default network."""
    with pytest.raises(UsageError) as e:
        parse([*argv, "busybox"])
    assert str(e.value).startswith(message), str(e.value)


def test_empty_network_is_one_line_and_exit_125(tmp_path: Path) -> None:
    """`cnirun --net '' IMAGE`: one line, 125, before any network is looked up or anything is made."""
    env = dict(os.environ, NETCONFPATH=str(tmp_path), CNIRUN_DEFAULT_NETWORK="th-none",
               CNIRUN_STATE_DIR=str(tmp_path / "state"))
    r = subprocess.run([sys.executable, "-m", "cnirun.cli.main", "--rm", "--pull", "never", "--net", "", "busybox",
                        "true"], capture_output=True, text=True, cwd=REPO, timeout=60, env=env)
    assert r.returncode == 125 and r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith("cnirun: invalid --network '': an empty network name"), r.stderr
    assert not (tmp_path / "state").exists()
