"""`cnirun`'s dispatch (cli.main): docker's and podman's verbs, `help`, global options before any command.

A fake Engine API on a unix socket in tmp (test_engines_docker_context's
fake_daemon) stands for dockerd behind a Docker context; it records every
request, so "nothing was pulled or run" is checked on the wire. The
machine's ~/.docker is never read (DOCKER_CONFIG points at tmp).
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from conftest import CNIRUN, REPO
from test_engines_docker_context import fake_daemon, make_context  # noqa: F401  (fixture)

from cnirun.cli.main import ENGINE_COMMANDS, SUBCOMMANDS

# The docker CLI's (20.10) top-level commands, management commands included, and podman's (4.x).
DOCKER_VERBS = (
    "attach build commit cp create diff events exec export history images import info inspect kill load login logout "
    "logs pause port ps pull push rename restart rm rmi run save search start stats stop tag top unpause update "
    "version wait builder config container context image manifest network node plugin secret service stack swarm "
    "system trust volume").split()
PODMAN_VERBS = (
    "attach auto-update build commit container cp create diff events exec export generate healthcheck history image "
    "images import info init inspect kill kube load login logout logs machine manifest mount network pause pod port "
    "ps pull push rename restart rm rmi run save search secret start stats stop system tag top unmount unpause "
    "unshare untag update version volume wait").split()
# cnirun's own commands of the same names: never a pointer to the engine.
OWN = {"exec", "inspect", "ps", "port", "update", "network", "version", "run"}


@pytest.fixture
def env(tmp_path: Path, fake_daemon: Any) -> dict[str, str]:  # noqa: F811
    """The environment of a cnirun whose Docker daemon is the fake one (context th-fake, in use)."""
    config = tmp_path / "docker-config"
    config.mkdir()
    make_context(config, "th-fake", f"unix://{fake_daemon.server_address}")
    e = {k: v for k, v in os.environ.items()
         if k not in ("DOCKER_HOST", "DOCKER_CONTEXT", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH", "CNIRUN_ENGINE",
                      "CNIRUN_TRACE")}
    e.update(DOCKER_CONFIG=str(config), DOCKER_CONTEXT="th-fake", NETCONFPATH=str(tmp_path / "net.d"),
             CNI_CACHE_DIR=str(tmp_path / "cache"), CNIRUN_STATE_DIR=str(tmp_path / "state"),
             PYTHONPATH=str(REPO))
    return e


def cnirun(env: dict[str, str], *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CNIRUN, *args], env=env, capture_output=True, text=True, timeout=60, cwd=REPO, **kw)


def test_every_docker_and_podman_verb_is_cnirun_s_own_or_a_pointer() -> None:
    """Each top-level verb of docker 20.10 and podman 4 is decided: cnirun's command, or the one-line pointer."""
    ours = SUBCOMMANDS | {"run"}
    for verb in set(DOCKER_VERBS) | set(PODMAN_VERBS):
        assert (verb in ours) != (verb in ENGINE_COMMANDS), verb
    assert OWN <= ours and not OWN & ENGINE_COMMANDS.keys()
    assert "help" not in ENGINE_COMMANDS


def test_engine_verbs_are_one_line_naming_the_engine_command_and_never_reach_the_daemon(
        env: dict[str, str], fake_daemon: Any) -> None:  # noqa: F811
    """`cnirun logs x`, `stop`, `images`, ... : one line naming the docker (or podman) command, exit 1, and no
    request at all reaches the daemon (before, each was `cnirun IMAGE`: an image lookup, then a pull)."""
    for verb in ("logs", "stop", "images", "pull", "rm", "container", "volume", "swarm", "pod"):
        p = cnirun(env, verb, "x", "--tail", "a b")
        engine = "podman" if verb == "pod" else "docker"
        assert p.returncode == 1, (verb, p.stderr)
        assert p.stdout == "" and p.stderr.count("\n") == 1, (verb, p.stderr)
        assert p.stderr.startswith(f"cnirun: '{verb}' is not a cnirun command; use: {engine} {verb} x --tail 'a b'"), \
            p.stderr
    assert fake_daemon.seen == []
    # With Podman as the engine, the commands both engines have name podman's; docker-only ones docker's.
    podman = dict(env, CNIRUN_ENGINE="podman")
    assert "use: podman logs x" in cnirun(podman, "logs", "x").stderr
    assert "use: docker swarm init" in cnirun(podman, "swarm", "init").stderr
    # After a run option, a command's name is not taken for the image either.
    p = cnirun(env, "--rm", "logs", "x")
    assert p.returncode == 125 and p.stderr.count("\n") == 1 and "`cnirun run [OPTIONS] logs`" in p.stderr, p.stderr
    assert fake_daemon.seen == []


def test_an_image_named_like_a_verb_runs_with_run(env: dict[str, str], fake_daemon: Any) -> None:  # noqa: F811
    """`cnirun run IMAGE` takes any word for the image: the daemon is asked for the image `logs`."""
    p = cnirun(env, "run", "--rm", "--pull", "never", "logs")
    assert p.returncode == 125 and "Unable to find image 'logs' locally, and --pull never" in p.stderr, p.stderr
    assert any("/images/logs/json" in s for s in fake_daemon.seen), fake_daemon.seen


def test_a_misspelled_command_is_not_pulled_as_an_image(env: dict[str, str], fake_daemon: Any) -> None:  # noqa: F811
    """`cnirun nework ls`: one line naming `network` and `cnirun run nework`, exit 125; the daemon is asked
    whether it has the image, never to pull it. Image names people run are never taken for slips."""
    from cnirun.cli.run import near_command

    commands = SUBCOMMANDS | {"run", "help"}
    for word, near in (("nework", "network"), ("compse", "compose"), ("netwrok", "network"), ("isntall", "install"),
                       ("exce", "exec"), ("inspcet", "inspect"), ("ntewrok", "network"), ("updte", "update")):
        assert near_command(word, commands) == near, word
    for image in ("busybox", "redis", "nginx", "alpine", "ubuntu", "postgres", "mysql", "node", "python", "golang",
                  "traefik", "httpd", "crate", "rust", "storm", "maven", "gcc", "nc", "docker.io/nework",
                  "nework:1", "Nework", "ps2", "rms"):
        assert near_command(image, commands) == "", image
    p = cnirun(env, "nework", "ls")
    assert p.returncode == 125 and p.stderr.count("\n") == 1, p.stderr
    assert "'nework' is not a cnirun command (did you mean 'network'?)" in p.stderr and "cnirun run nework" in p.stderr
    assert fake_daemon.seen and all("/images/nework/json" in s for s in fake_daemon.seen), fake_daemon.seen
    assert not any("/images/create" in s for s in fake_daemon.seen)


def test_help_is_help(env: dict[str, str], fake_daemon: Any) -> None:  # noqa: F811
    """`cnirun help [COMMAND]` is `cnirun [COMMAND] --help`; help of an engine verb is its pointer."""
    top = cnirun(env, "help")
    assert top.returncode == 0 and top.stdout.startswith("Usage: cnirun [OPTIONS] COMMAND"), top.stderr
    assert "--debug" in top.stdout and "--context" in top.stdout
    assert cnirun(env, "-h").stdout == top.stdout
    net = cnirun(env, "help", "network")
    assert net.returncode == 0 and net.stdout.startswith("Usage: cnirun network"), net.stderr
    run = cnirun(env, "help", "run")
    assert run.returncode == 0 and run.stdout.startswith("Usage: cnirun [run] [OPTIONS] IMAGE"), run.stderr
    logs = cnirun(env, "help", "logs")
    assert logs.returncode == 1 and logs.stderr.startswith("cnirun: 'logs' is not a cnirun command; use: docker logs")
    nosuch = cnirun(env, "help", "th-nosuch")
    assert nosuch.returncode == 1 and nosuch.stderr.count("\n") == 1 and "see cnirun --help" in nosuch.stderr
    assert fake_daemon.seen == []
    v = cnirun(env, "-v")  # docker -v: the version (with a value, -v is run's --volume)
    assert v.returncode == 0 and v.stdout.startswith("cnirun version "), v.stderr


def test_global_options_work_before_any_command(env: dict[str, str], fake_daemon: Any,  # noqa: F811
                                                tmp_path: Path) -> None:
    """--debug/-D and --context NAME come before any command, in any order; none is taken for an image."""
    compose = tmp_path / "compose.yaml"
    compose.write_text("services:\n  web:\n    image: busybox\n")
    p = cnirun(env, "--debug", "compose", "-f", str(compose), "config")
    assert p.returncode == 0 and "image: busybox" in p.stdout, p.stderr
    p = cnirun(env, "--debug=true", "--context", "th-fake", "ps", "-q")
    assert p.returncode == 0 and p.stdout == "", p.stderr
    assert fake_daemon.seen == []  # compose and ps were not taken for images
    # --context picks the daemon of any command (version asks it), --debug traces it.
    other = dict(env, DOCKER_CONTEXT="default", DOCKER_HOST="unix:///nonexistent/th.sock")
    p = cnirun(other, "-D", "--context=th-fake", "version", "--format", "json")
    assert '"context": "th-fake"' in p.stdout, p.stdout
    assert "cnirun trace" in p.stderr and "GET /version" in p.stderr, p.stderr
    assert any(s.endswith("/version") for s in fake_daemon.seen)
    # A context that does not exist, a bad --debug value, a docker CLI option cnirun does not take: one line, 125.
    for args, needle in ((["--context", "th-nope", "ps"], "docker context 'th-nope'"),
                         (["--debug=maybe", "ps"], "invalid value 'maybe' for --debug"),
                         (["-H", "unix:///x", "ps"], "-H is a docker CLI option cnirun does not take")):
        p = cnirun(env, *args)
        assert p.returncode == 125 and p.stderr.count("\n") == 1 and needle in p.stderr, (args, p.stderr)


def test_engine_before_any_command_is_that_commands_engine(env: dict[str, str], fake_daemon: Any,  # noqa: F811
                                                          tmp_path: Path) -> None:
    """--engine NAME before the command, among the other global options in any order, is CNIRUN_ENGINE=NAME
    for it (the engine the messages name); compose is taken as the command, not an image; an unknown or
    missing engine is one line, 125."""
    compose = tmp_path / "compose.yaml"
    compose.write_text("services:\n  web:\n    image: busybox\n")
    for args in (["--engine", "podman", "--debug"], ["-D", "--engine=podman"], ["--debug", "--engine", "podman"]):
        p = cnirun(env, *args, "compose", "-f", str(compose), "config")
        assert p.returncode == 0 and "image: busybox" in p.stdout, (args, p.stderr)
    p = cnirun(env, "--engine", "podman", "update", "web", "--cpus=2")
    assert p.returncode == 1 and "podman update --cpus ..." in p.stderr, p.stderr
    p = cnirun(dict(env, CNIRUN_ENGINE="podman"), "--engine", "docker", "logs", "web")
    assert p.returncode == 1 and "use: docker logs web" in p.stderr, p.stderr
    assert fake_daemon.seen == []
    for args, needle in ((["--engine", "rkt", "ps"], "unknown engine 'rkt'"),
                         (["--engine"], "--engine needs docker or podman"),
                         (["--engine=", "compose", "config"], "--engine needs docker or podman")):
        p = cnirun(env, *args)
        assert p.returncode == 125 and p.stderr.count("\n") == 1 and needle in p.stderr, (args, p.stderr)


@pytest.mark.parametrize("args, message", [
    (["ps", "-a"], "cnirun: No such option: -a (see cnirun ps --help)"),
    (["network", "create"], "cnirun: Missing argument 'name'. (see cnirun network create --help)"),
    (["network", "th-frob"], "cnirun: No such command 'th-frob'. (see cnirun network --help)"),
    (["gc", "--format", "json"], "cnirun: No such option: --format (see cnirun gc --help)"),
])
def test_usage_errors_of_commands_are_one_line(env: dict[str, str], args: list[str], message: str) -> None:
    """A bad option, a missing argument or an unknown subcommand of any command: one line naming the
    command's help, exit 2 (not typer's usage block)."""
    p = cnirun(env, *args)
    assert p.returncode == 2 and p.stdout == "" and p.stderr == message + "\n", p.stderr


def test_docker_update_options_name_the_engine_command(env: dict[str, str], fake_daemon: Any) -> None:  # noqa: F811
    """cnirun's own `update` changes rate limits; docker update's options (--memory, --cpus, ...) are one line
    naming `docker update` (podman's with CNIRUN_ENGINE=podman), and nothing reaches the daemon."""
    p = cnirun(env, "update", "web", "--memory", "1g")
    assert p.returncode == 1 and p.stderr.count("\n") == 1, p.stderr
    assert "cnirun update changes rate limits" in p.stderr and "docker update --memory ..." in p.stderr, p.stderr
    assert "podman update --cpus ..." in cnirun(dict(env, CNIRUN_ENGINE="podman"), "update", "web", "--cpus=2").stderr
    assert fake_daemon.seen == []
