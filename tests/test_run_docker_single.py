"""Docker sandbox mode with one container (runner/docker_single): real dockerd, real plugins (10.199.N.0/24).

The user's container is created with network none, held at a busybox
entrypoint until ADD is done, then exec's the image's real ENTRYPOINT+CMD.
What it must keep: the network up before the first instruction, argv, env,
user, workdir, exit codes, stdin, signals; and nothing left after a SIGKILL
of cnirun and `cnirun gc`. The images are built offline FROM busybox:latest.
"""
from __future__ import annotations

import ipaddress
import json
import signal
import subprocess
import time
from typing import Any, Iterator

import pytest

from conftest import World, _make_world, first_address, needs_docker, needs_root, world_fixture

pytestmark = [needs_root, needs_docker]

IMAGES = {
    # ENTRYPOINT + CMD + ENV + WORKDIR: argv and env are merged by dockerd's rules.
    "t199-ep": 'FROM busybox:latest\nENV GREETING=hi SHLVL=4\nWORKDIR /srv\n'
               'ENTRYPOINT ["/bin/echo", "ep"]\nCMD ["cmd1", "cmd2"]\n',
    # A /bin/true that is not busybox's: the command must be the image's file, not a busybox applet.
    "t199-probe": 'FROM busybox:latest\nRUN rm /bin/true && printf \'#!/bin/sh\\necho mytrue "$0" "$@"\\n\' '
                  '> /bin/true && chmod 755 /bin/true\n',
    # USER and WORKDIR from the image.
    "t199-user": 'FROM busybox:latest\nRUN mkdir -p /home/app && chown 1000:1000 /home/app\nUSER 1000:1000\n'
                 'WORKDIR /home/app\nCMD ["sh", "-c", "id -u; id -g; pwd"]\n',
}


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    for tag, dockerfile in IMAGES.items():
        ctx = tmp_path_factory.mktemp(tag)
        (ctx / "Dockerfile").write_text(dockerfile)
        r = subprocess.run(["docker", "build", "-q", "-t", tag, str(ctx)], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
    yield
    subprocess.run(["docker", "rmi", "-f", *IMAGES], capture_output=True)


world = world_fixture(_make_world, 199, "docker")


def _docker(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, input=stdin, timeout=60)


def _containers(w: World) -> list[dict[str, Any]]:
    """docker inspect of every container (running or not) of this World's runs."""
    ids = subprocess.run(["docker", "ps", "-aq", "--filter", f"label=cnirun.state={w.state_dir / 'containers'}"],
                         capture_output=True, text=True).stdout.split()
    return json.loads(_docker("inspect", *ids).stdout) if ids else []


def _remove_containers(w: World) -> None:
    ids = [c["Id"] for c in _containers(w)]
    if ids:
        subprocess.run(["docker", "rm", "-f", *ids], capture_output=True)


def _pins(w: World) -> list[str]:
    d = w.state_dir / "netns"
    return sorted(p.name for p in d.iterdir()) if d.is_dir() else []


def test_one_container_network_up_before_its_first_instruction(world: World) -> None:
    """The image's command itself (no shell first) sees eth0 with its address; only one container was made."""
    r = world.cnirun("--entrypoint", "ip", "busybox", "-o", "-4", "addr", "show", "eth0")
    try:
        assert r.returncode == 0, r.stderr
        addr = first_address(r.stdout)
        assert ipaddress.ip_interface(addr).ip in ipaddress.ip_network(world.subnet)
        made = _containers(world)
        assert len(made) == 1, [c["Name"] for c in made]
        c = made[0]
        assert c["HostConfig"]["NetworkMode"] == "none"
        assert c["Path"].startswith("/.cnirun-") and c["Path"].endswith("/busybox")
        assert c["Config"]["Labels"]["cnirun.role"] == "workload"
    finally:
        _remove_containers(world)


def test_hosts_file_and_hostname(world: World) -> None:
    r = world.cnirun("--rm", "busybox", "sh", "-c", "ip -o -4 addr show eth0; hostname; cat /etc/hosts")
    assert r.returncode == 0, r.stderr
    addr = first_address(r.stdout).split("/")[0]
    hostname = r.stdout.splitlines()[1]
    assert len(hostname) == 12  # docker's default: the container's short ID
    assert f"{addr}\t{hostname}" in r.stdout


@pytest.mark.parametrize("args", [
    [], ["x", "y"], ["--entrypoint", "", "echo", "z"], ["--entrypoint", "/bin/echo", "q"], ["--entrypoint", "/bin/echo"],
])
def test_entrypoint_and_cmd_as_docker_merges_them(world: World, images: None, args: list[str]) -> None:
    opts = [a for a in args[:2] if args and args[0] == "--entrypoint"]
    rest = args[len(opts):]
    mine = world.cnirun("--rm", *opts, "t199-ep", *rest)
    theirs = _docker("run", "--rm", "--network", "none", *opts, "t199-ep", *rest)
    assert (mine.returncode, mine.stdout) == (theirs.returncode, theirs.stdout), (mine.stderr, theirs.stderr)
    assert theirs.returncode == 0 and theirs.stdout  # the comparison is about something


def test_no_command_is_dockerds_error(world: World, images: None) -> None:
    r = world.cnirun("--rm", "--entrypoint", "", "t199-ep")
    assert r.returncode == 125 and "No command specified" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr


@pytest.mark.parametrize("args", [
    ["t199-ep-env"],
    ["-e", "SHLVL=9", "-e", "PWD=/nowhere", "-e", "A=b c", "t199-ep-env"],
    ["-u", "1000:1000", "-w", "/tmp", "-t", "t199-ep-env"],
])
def test_environment_exactly_as_docker_run(world: World, images: None, args: list[str]) -> None:
    """Same variables and values as `docker run` (busybox's shell must not add SHLVL/PWD or drop the image's)."""
    def env_of(out: str) -> list[str]:
        return sorted(ln.strip("\r") for ln in out.splitlines() if not ln.startswith("HOSTNAME="))

    image_args = [("t199-ep" if a == "t199-ep-env" else a) for a in args]
    mine = world.cnirun("--rm", "--entrypoint", "env", *image_args)
    theirs = _docker("run", "--rm", "--network", "none", "--entrypoint", "env", *image_args)
    assert mine.returncode == theirs.returncode == 0, (mine.stderr, theirs.stderr)
    assert env_of(mine.stdout) == env_of(theirs.stdout)
    assert "GREETING=hi" in env_of(mine.stdout)


def test_user_and_workdir_from_image_and_options(world: World, images: None) -> None:
    for args in (["t199-user"], ["-u", "4242:4343", "-w", "/var", "t199-user"]):
        mine = world.cnirun("--rm", *args)
        theirs = _docker("run", "--rm", "--network", "none", *args)
        assert (mine.returncode, mine.stdout) == (0, theirs.stdout), mine.stderr
    assert mine.stdout.split() == ["4242", "4343", "/var"]


def test_the_images_own_file_runs_never_a_busybox_applet(world: World, images: None) -> None:
    mine = world.cnirun("--rm", "t199-probe", "true", "a")
    theirs = _docker("run", "--rm", "--network", "none", "t199-probe", "true", "a")
    assert mine.returncode == 0, mine.stderr
    assert mine.stdout == theirs.stdout == "mytrue /bin/true a\n"


@pytest.mark.parametrize("cmd", [["true"], ["sh", "-c", "exit 3"], ["/etc"], ["no-such-command"], ["/no/such"]])
def test_exit_codes_as_docker_run(world: World, cmd: list[str]) -> None:
    theirs = _docker("run", "--rm", "--network", "none", "busybox", *cmd)
    mine = world.cnirun("--rm", "busybox", *cmd)
    assert mine.returncode == theirs.returncode, (mine.stderr, theirs.stderr)
    assert theirs.returncode in (0, 3, 126, 127)
    if theirs.returncode >= 126:
        assert "cnirun: exec:" in mine.stderr and len(mine.stderr.strip().splitlines()) == 1, mine.stderr


def test_stdin_with_i(world: World) -> None:
    r = world.cnirun("--rm", "-i", "busybox", "sh", "-c", "read a; read b; echo \"$b $a\"", input="one\ntwo\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "two one\n"


def test_console_through_the_sdk_client(world: World) -> None:
    """A run that needs the Docker SDK (-m): its attach stream relays stdin, stdout and stderr, and the exit status."""
    r = world.cnirun("--rm", "-i", "-m", "64m", "busybox", "sh", "-c", "read a; echo \"out $a\"; echo err >&2; exit 3",
                     input="one\n")
    assert (r.returncode, r.stdout, r.stderr) == (3, "out one\n", "err\n")
    world.assert_clean(within=8.0)


def test_sigterm_is_forwarded_then_teardown(world: World) -> None:
    p = world.popen("--rm", "busybox", "sh", "-c", "trap 'exit 42' TERM; echo ready; while true; do sleep 0.1; done",
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.stdout is not None
    assert p.stdout.readline().strip() == "ready"  # the user's command runs: cnirun released it
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=20) == 42
    world.assert_clean(within=5.0)  # DEL finishes in the background once the exit status is known
    assert _pins(world) == []


def _hold_add(w: World) -> None:
    """Chain the noop plugin after the others, sleeping 60 s in ADD: cnirun stays inside ADD, container held."""
    w.chain_noop({"commands": {"ADD": {"sleep": 60}}})


def _kill_while_held(w: World, *args: str) -> dict[str, Any]:
    """Start a run whose ADD hangs, SIGKILL cnirun inside ADD; the held container as docker inspects it then."""
    p = w.popen(*args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (w.tmp / "noop.json.log").exists():
        time.sleep(0.05)
    time.sleep(0.5)  # bridge's ADD is done, noop sleeps
    made = _containers(w)
    assert len(made) == 1 and made[0]["State"]["Running"], made
    assert _pins(w), "the netns is pinned before ADD"
    p.send_signal(signal.SIGKILL)
    p.wait()
    return made[0]


def test_sigkill_before_release_never_runs_the_command_and_gc_leaves_nothing(world: World) -> None:
    _hold_add(world)
    held = _kill_while_held(world, "busybox", "echo", "RAN")  # no --rm: the container stays to be looked at
    try:
        state: dict[str, Any] = {}
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            state = json.loads(_docker("inspect", held["Id"]).stdout)[0]["State"]
            if not state["Running"]:
                break
            time.sleep(0.1)
        # Its end of the FIFO closed with cnirun: the container exits 125 without running the command.
        assert (state["Running"], state["ExitCode"]) == (False, 125)
        assert "RAN" not in _docker("logs", held["Id"]).stdout
        assert world.leftovers(), "the network is still attached until gc"
        g = world.cnirun("gc")
        assert g.returncode == 0 and "tore down" in g.stdout, g.stdout + g.stderr
    finally:
        _remove_containers(world)
    world.assert_clean()
    assert _pins(world) == []


def test_sigkill_between_create_and_its_record_gc_finds_the_container(world: World) -> None:
    """A cnirun killed right after `docker create` answered, before it recorded the ID: gc finds the
    (never started) --rm container by the run's labels."""
    _hold_add(world)
    held = _kill_while_held(world, "--rm", "busybox", "sleep", "60")
    [meta_file] = (world.state_dir / "containers").glob("*/meta.json")
    meta = json.loads(meta_file.read_text())
    assert meta["workload"] == held["Id"] and meta["phase"] == "setup"
    # The held --rm container read EOF, exited 125 and dockerd removed it; what a kill between create
    # and the record leaves instead is a created container that only its labels name.
    labels = held["Config"]["Labels"]
    made = _docker("create", *[f"--label={k}={labels[k]}" for k in ("cnirun.id", "cnirun.state", "cnirun.role")],
                   "busybox", "true")
    assert made.returncode == 0, made.stderr
    meta["workload"] = ""
    meta_file.write_text(json.dumps(meta))
    g = world.cnirun("gc")
    assert g.returncode == 0 and "tore down" in g.stdout, g.stdout + g.stderr
    assert _docker("inspect", made.stdout.strip()).returncode != 0, "gc removed the unrecorded container"
    world.assert_clean()
    assert _pins(world) == []


def test_detached_runs_take_the_helper(world: World) -> None:
    r = world.cnirun("-d", "--rm", "busybox", "sleep", "60")
    assert r.returncode == 0, r.stderr
    try:
        roles = sorted(c["Config"]["Labels"]["cnirun.role"] for c in _containers(world))
        assert roles == ["sandbox", "workload"]
    finally:
        subprocess.run(["docker", "rm", "-f", r.stdout.strip()], capture_output=True)
    world.assert_clean(within=8.0)


def test_cnirun_sandbox_forces_either_and_refuses_bad_values(world: World) -> None:
    world.env["CNIRUN_SANDBOX"] = "helper"
    r = world.cnirun("busybox", "true")
    try:
        assert r.returncode == 0, r.stderr
        [c] = _containers(world)  # the helper went at teardown; the workload stays (no --rm)
        assert c["HostConfig"]["NetworkMode"].startswith("container:")
    finally:
        _remove_containers(world)
    world.env["CNIRUN_SANDBOX"] = "single"
    for args, needle in ((["-d", "busybox", "sleep", "5"], "CNIRUN_SANDBOX=single cannot"),
                         (["-e", "a.b=1", "busybox", "true"], "environment names")):
        r = world.cnirun("--rm", *args)
        assert r.returncode == 125 and needle in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    world.env["CNIRUN_SANDBOX"] = "bogus"
    r = world.cnirun("--rm", "busybox", "true")
    assert r.returncode == 125 and "expected auto, single or helper" in r.stderr
    assert _containers(world) == []
    world.assert_clean()


def test_environment_names_the_shell_cannot_carry_take_the_helper(world: World) -> None:
    r = world.cnirun("--rm", "-e", "discovery.type=single-node", "busybox", "env")
    assert r.returncode == 0, r.stderr
    assert "discovery.type=single-node" in r.stdout.splitlines()
    world.assert_clean()
