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
from cnirun.core.errors import EngineError

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


# -- a TLS context, against the real dockerd behind a mutual-TLS proxy on 127.0.0.1 ------------
def _openssl(*args: str, cwd: Path) -> None:
    p = subprocess.run(["openssl", *args], capture_output=True, text=True, cwd=cwd)
    assert p.returncode == 0, p.stderr


def _make_pki(d: Path) -> None:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, as `dockerd --tlsverify` wants."""
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca-key.pem", "-out", "ca.pem",
             "-days", "1", "-subj", "/CN=t14-ca", cwd=d)
    for who, ext in (("server", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth"),
                     ("client", "extendedKeyUsage=clientAuth")):
        (d / f"{who}.ext").write_text(ext + "\n")
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{who}-key.pem", "-out", f"{who}.csr",
                 "-subj", f"/CN=t14-{who}", cwd=d)
        _openssl("x509", "-req", "-in", f"{who}.csr", "-CA", "ca.pem", "-CAkey", "ca-key.pem", "-CAcreateserial",
                 "-out", f"{who}.pem", "-days", "1", "-extfile", f"{who}.ext", cwd=d)


class _TLSProxy:
    """127.0.0.1:PORT with mutual TLS in front of /var/run/docker.sock: what a remote TLS daemon looks like."""

    def __init__(self, pki: Path) -> None:
        import socket
        import ssl

        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(pki / "server.pem", pki / "server-key.pem")
        self.ctx.load_verify_locations(pki / "ca.pem")
        self.ctx.verify_mode = ssl.CERT_REQUIRED
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.refused = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        import socket
        import ssl

        while True:
            try:
                raw, _ = self.sock.accept()
            except OSError:
                return
            try:
                conn = self.ctx.wrap_socket(raw, server_side=True)
            except (ssl.SSLError, OSError):
                self.refused += 1
                raw.close()
                continue
            self.accepted += 1
            up = socket.socket(socket.AF_UNIX)
            up.connect("/var/run/docker.sock")
            threading.Thread(target=self._pump, args=(conn, up), daemon=True).start()

    @staticmethod
    def _pump(conn: Any, up: Any) -> None:
        """Both directions in one thread: an SSL socket read and written from two threads at once
        corrupts its records now and then (DECRYPTION_FAILED_OR_BAD_RECORD_MAC)."""
        import select
        import socket

        client_open = True
        try:
            while True:
                watch = [up] + ([conn] if client_open else [])
                ready = [] if client_open and conn.pending() else select.select(watch, [], [])[0]
                if client_open and (conn in ready or conn.pending()):
                    data = conn.recv(65536)
                    if data:
                        up.sendall(data)
                    else:
                        # The client closing its sending side (end of stdin of an attach) is a half-close,
                        # as dockerd sees it: the daemon's answer keeps flowing.
                        client_open = False
                        up.shutdown(socket.SHUT_WR)
                if up in ready:
                    data = up.recv(65536)
                    if not data:
                        break  # the daemon closing ends the connection
                    conn.sendall(data)
        except OSError:
            pass
        for s in (conn, up):
            try:
                s.close()
            except OSError:
                pass

    def close(self) -> None:
        self.sock.close()


@pytest.mark.skipif(not HAVE_DOCKER or os.geteuid() != 0, reason="needs root and the real dockerd")
def test_tls_context_and_docker_tls_verify_reach_the_real_daemon(tmp_path: Path, docker_world: Any) -> None:
    import shutil

    w = docker_world
    pki = tmp_path / "pki"
    pki.mkdir()
    _make_pki(pki)
    proxy = _TLSProxy(pki)
    try:
        config = tmp_path / "docker-config"
        host = f"tcp://127.0.0.1:{proxy.port}"
        for name, files in (("t14-tls", ("ca.pem", "cert.pem", "key.pem")), ("t14-tls-nocert", ("ca.pem",))):
            make_context(config, name, host)
            tls = config / "contexts" / "tls" / hashlib.sha256(name.encode()).hexdigest() / "docker"
            tls.mkdir(parents=True)
            for f in files:
                src = {"ca.pem": "ca.pem", "cert.pem": "client.pem", "key.pem": "client-key.pem"}[f]
                shutil.copy(pki / src, tls / f)
        env = {k: v for k, v in w.env.items() if k not in ("DOCKER_CONTEXT", "DOCKER_HOST", "DOCKER_TLS_VERIFY",
                                                             "DOCKER_CERT_PATH")}
        env["DOCKER_CONFIG"] = str(config)

        def run(*args: str, extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
            return subprocess.run([*CNIRUN, *args], capture_output=True, text=True, timeout=90, cwd=REPO,
                                  env={**env, **(extra or {})})

        real = subprocess.run(["docker", "version", "--format", "{{.Server.Version}}"], capture_output=True,
                              text=True).stdout.strip()
        v = run("--context", "t14-tls", "version", "--format", "json")
        assert v.returncode == 0, v.stderr
        eng = [e for e in json.loads(v.stdout)["engines"] if e["name"] == "docker"][0]
        assert (eng.get("version"), eng.get("context")) == (real, "t14-tls"), eng
        # A whole run over TLS: the container gets its CNI address; the attachment is gone after it.
        r = run("--context", "t14-tls", "run", "--rm", "busybox", "ip", "-4", "-o", "addr", "show", "eth0")
        assert r.returncode == 0, r.stderr
        assert f"10.131.{w.n}." in r.stdout
        assert proxy.accepted > 0
        # The same daemon through DOCKER_HOST + DOCKER_TLS_VERIFY + DOCKER_CERT_PATH, as the docker CLI reads them.
        certs = tmp_path / "certs"
        certs.mkdir()
        for src, dst in (("ca.pem", "ca.pem"), ("client.pem", "cert.pem"), ("client-key.pem", "key.pem")):
            shutil.copy(pki / src, certs / dst)
        e = run("run", "--rm", "busybox", "true",
                extra={"DOCKER_HOST": host, "DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": str(certs)})
        assert e.returncode == 0, e.stderr
        # Without a client certificate the daemon refuses: one line, exit 125, nothing made.
        before = proxy.refused
        bad = run("--context", "t14-tls-nocert", "run", "--rm", "busybox", "true")
        assert bad.returncode == 125 and bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr, bad.stderr
        assert proxy.refused > before
    finally:
        proxy.close()
