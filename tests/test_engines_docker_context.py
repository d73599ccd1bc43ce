"""Docker contexts (issue 14): cnirun resolves the daemon in the order --context, DOCKER_CONTEXT,
DOCKER_HOST, the docker config's currentContext, the default socket; the lean client and the SDK alike.

A fake Engine API (a Python HTTP server on a unix socket in tmp) stands for the
context's daemon; DOCKER_CONFIG points at tmp, the machine's ~/.docker is never read.
"""
from __future__ import annotations

import hashlib
import json
import os
import socketserver
import subprocess
import threading
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, Iterator

import pytest

from conftest import CNIRUN, HAVE_DOCKER, REPO

from cnirun.engines import docker_context
from cnirun.engines.docker_context import resolve_endpoint
from cnirun.engines.dockerapi import unix_socket_path
from cnirun.errors import EngineError

FAKE_VERSION = "99.14.0-fake"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def _answer(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Api-Version", "1.41")
        self.end_headers()
        self.wfile.write(data)
        self.server.seen.append(f"{self.command} {self.path}")  # type: ignore[attr-defined]

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        path = self.path.split("?")[0]
        if path.endswith("/_ping"):
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"OK")
            self.server.seen.append(f"GET {self.path}")  # type: ignore[attr-defined]
        elif path.endswith("/version"):
            self._answer(200, {"Version": FAKE_VERSION, "ApiVersion": "1.41", "MinAPIVersion": "1.12",
                               "Os": "linux", "Arch": "amd64"})
        else:
            self._answer(404, {"message": f"fake daemon has no {path}"})

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._answer(500, {"message": "fake daemon refuses every change"})


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def get_request(self) -> Any:
        req, _ = super().get_request()
        return req, ("local", 0)  # BaseHTTPRequestHandler wants a (host, port) client address


@pytest.fixture
def fake_daemon(tmp_path: Path) -> Iterator[Any]:
    sock = str(tmp_path / "fake-docker.sock")
    srv = _Server(sock, _Handler)
    srv.seen = []  # type: ignore[attr-defined]
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()


def make_context(config: Path, name: str, host: str) -> None:
    meta = config / "contexts" / "meta" / hashlib.sha256(name.encode()).hexdigest()
    meta.mkdir(parents=True)
    (meta / "meta.json").write_text(json.dumps(
        {"Name": name, "Metadata": {}, "Endpoints": {"docker": {"Host": host, "SkipTLSVerify": False}}}))


@pytest.fixture
def docker_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_daemon: Any) -> Path:
    config = tmp_path / "docker-config"
    config.mkdir()
    make_context(config, "t14-fake", f"unix://{fake_daemon.server_address}")
    make_context(config, "t14-other", "unix:///nonexistent/t14-other.sock")
    for var in ("DOCKER_CONTEXT", "DOCKER_HOST", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("DOCKER_CONFIG", str(config))
    return config


def test_resolution_order(docker_config: Path, fake_daemon: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    sock = fake_daemon.server_address
    # Nothing set, no currentContext: the default socket.
    ep = resolve_endpoint()
    assert (ep.host, ep.context, ep.source) == ("unix:///var/run/docker.sock", "default", "default")
    # The config's currentContext.
    (docker_config / "config.json").write_text(json.dumps({"currentContext": "t14-fake", "auths": {}}))
    ep = resolve_endpoint()
    assert (ep.host, ep.context) == (f"unix://{sock}", "t14-fake") and "currentContext" in ep.source
    assert unix_socket_path() == sock
    # DOCKER_HOST beats the config.
    monkeypatch.setenv("DOCKER_HOST", "unix:///run/t14-host.sock")
    ep = resolve_endpoint()
    assert (ep.host, ep.context, ep.source) == ("unix:///run/t14-host.sock", "default", "DOCKER_HOST")
    # DOCKER_CONTEXT beats DOCKER_HOST (cnirun's contract order).
    monkeypatch.setenv("DOCKER_CONTEXT", "t14-other")
    ep = resolve_endpoint()
    assert (ep.host, ep.context) == ("unix:///nonexistent/t14-other.sock", "t14-other")
    # The "default" context is DOCKER_HOST, else the default socket.
    monkeypatch.setenv("DOCKER_CONTEXT", "default")
    assert resolve_endpoint().host == "unix:///run/t14-host.sock"
    # --context (main puts it into DOCKER_CONTEXT) beats all of them.
    from cnirun.cli.main import _global_options

    assert _global_options(["--context", "t14-fake", "ps", "-q"]) == ["ps", "-q"]
    assert resolve_endpoint().context == "t14-fake"
    assert _global_options(["--context=t14-other", "--rm", "busybox"]) == ["--rm", "busybox"]
    assert resolve_endpoint().context == "t14-other"
    for bad in (["--context"], ["--context="], ["--context", "--rm"]):
        with pytest.raises(ValueError, match="--context needs a Docker context name"):
            _global_options(bad)


def test_unknown_context_and_broken_config_are_one_line_errors(docker_config: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_CONTEXT", "t14-nope")
    with pytest.raises(EngineError, match=r"docker context 't14-nope' \(from --context or DOCKER_CONTEXT\) does not exist"):
        resolve_endpoint()
    monkeypatch.delenv("DOCKER_CONTEXT")
    (docker_config / "config.json").write_text("{not json")
    with pytest.raises(EngineError, match="config.json: cannot read it"):
        resolve_endpoint()


def test_lean_client_and_sdk_both_reach_the_context_daemon(docker_config: Path, fake_daemon: Any,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/t14-wrong.sock")  # the context must win
    monkeypatch.setenv("DOCKER_CONTEXT", "t14-fake")
    from cnirun.engines.dockerapi import LeanDocker

    lean = LeanDocker(unix_socket_path())
    assert lean.raw.request("GET", "/version")["Version"] == FAKE_VERSION
    assert lean.has_image("busybox:latest") is False  # the fake has no images; the real dockerd has it
    from cnirun.engines.docker import Docker, docker_host

    sdk = Docker()
    assert sdk.api.version()["Version"] == FAKE_VERSION
    assert docker_host() == f"unix://{fake_daemon.server_address} (context t14-fake)"
    assert any(s.endswith("/version") for s in fake_daemon.seen)


def _cnirun(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CNIRUN, *args], capture_output=True, text=True, timeout=60, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO), **env})


def test_cli_version_and_run_follow_the_context(docker_config: Path, fake_daemon: Any, tmp_path: Path) -> None:
    env = {"DOCKER_CONFIG": str(docker_config), "CNIRUN_STATE_DIR": str(tmp_path / "state"),
           "NETCONFPATH": str(tmp_path / "net.d"), "CNI_CACHE_DIR": str(tmp_path / "cache")}
    env_clean = {k: v for k, v in os.environ.items() if k not in ("DOCKER_CONTEXT", "DOCKER_HOST")}
    base = {**env_clean, **env}

    def run(*args: str, extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*CNIRUN, *args], capture_output=True, text=True, timeout=60, cwd=REPO,
                              env={**base, "PYTHONPATH": str(REPO), **(extra or {})})

    def docker_of(p: subprocess.CompletedProcess[str]) -> dict[str, Any]:
        assert p.returncode == 0, p.stderr
        return [e for e in json.loads(p.stdout)["engines"] if e["name"] == "docker"][0]

    flag = docker_of(run("--context", "t14-fake", "version", "--format", "json"))
    assert (flag["version"], flag["context"]) == (FAKE_VERSION, "t14-fake")
    assert docker_of(run("version", "--format", "json", extra={"DOCKER_CONTEXT": "t14-fake"}))["version"] == FAKE_VERSION
    (docker_config / "config.json").write_text(json.dumps({"currentContext": "t14-fake"}))
    assert docker_of(run("version", "--format", "json"))["context"] == "t14-fake"
    # --context beats the config's context and DOCKER_HOST.
    other = docker_of(run("--context", "default", "version", "--format", "json",
                          extra={"DOCKER_HOST": f"unix://{fake_daemon.server_address}"}))
    assert other["context"] == "default" and other["version"] == FAKE_VERSION
    if HAVE_DOCKER:
        # The docker CLI, given the same config, talks to the same daemons as cnirun.
        def docker_cli(*args: str) -> str:
            return subprocess.run(["docker", *args, "version", "--format", "{{.Server.Version}}"],
                                  capture_output=True, text=True, env=base).stdout.strip()

        assert docker_cli() == FAKE_VERSION == docker_of(run("version", "--format", "json"))["version"]
        real = docker_cli("--context", "default")
        assert real and real != FAKE_VERSION
        assert docker_of(run("--context", "default", "version", "--format", "json"))["version"] == real
    # A run goes to the context's daemon: the fake has no busybox (the real dockerd has).
    fake_daemon.seen.clear()
    r = run("--context", "t14-fake", "--rm", "--pull", "never", "busybox", "true")
    assert r.returncode == 125 and "Unable to find image 'busybox' locally" in r.stderr, r.stderr
    assert "GET /images/busybox/json" in fake_daemon.seen
    r = run("--rm", "busybox", "true")  # currentContext, --pull missing: the fake refuses the pull
    assert r.returncode == 125 and "fake daemon refuses every change" in r.stderr, r.stderr
    assert any(s.startswith("POST /images/create?fromImage=busybox&tag=latest") for s in fake_daemon.seen)
    assert not (tmp_path / "state" / "containers").exists() or not list((tmp_path / "state" / "containers").iterdir())
    bad = run("--context", "t14-nope", "--rm", "busybox", "true")
    assert bad.returncode == 125 and bad.stderr.count("\n") == 1 and "t14-nope" in bad.stderr, bad.stderr
    assert "Traceback" not in bad.stderr


def test_context_module_is_light() -> None:
    # The run path resolves the endpoint on every run: nothing heavy may come with it.
    assert docker_context.DEFAULT_SOCKET == "/var/run/docker.sock"
    code = ("import sys; import cnirun.engines.dockerapi as d; d.unix_socket_path(); "
            "print([m for m in ('docker', 'requests', 'urllib3', 'http.client') if m in sys.modules])")
    p = subprocess.run([*CNIRUN[:1], "-c", code], capture_output=True, text=True, cwd=REPO,
                       env={**os.environ, "PYTHONPATH": str(REPO)})
    assert p.stdout.strip() == "[]", p.stderr
