"""The few Docker Engine API calls that make the sandbox helper, without the SDK.

Why: importing the Docker SDK (requests, urllib3) costs ~95 ms of CPU per
run, and the helper's start costs ~140 ms of waiting on dockerd. Creating
and starting the helper with these plain HTTP calls on the unix socket lets
the SDK import (main thread) run while dockerd starts the helper (this
thread mostly sleeps in recv, so the GIL is free). Everything else still
goes through the SDK (engines/docker.py). Only unix-socket DOCKER_HOSTs are
handled here; tcp/ssh/TLS hosts use the SDK throughout.

Unversioned API paths: dockerd serves them at its own current version, so
no version negotiation round trip is needed.
"""
from __future__ import annotations

import json
import os
import socket
from typing import Any
from urllib.parse import quote

from ..errors import EngineError

DEFAULT_SOCKET = "/var/run/docker.sock"
TIMEOUT = 60.0


def unix_socket_path() -> str:
    """The socket path of DOCKER_HOST (default socket when unset); '' for non-unix hosts."""
    host = os.environ.get("DOCKER_HOST", "")
    if not host:
        return DEFAULT_SOCKET
    if host.startswith("unix://"):
        return host[len("unix://"):] or DEFAULT_SOCKET
    return ""


class APIError(EngineError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class RawDocker:
    """HTTP/1.1 by hand (http.client's import alone costs 10 ms): one request per connection."""

    def __init__(self, path: str) -> None:
        self.path = path

    def _connect(self) -> socket.socket:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(TIMEOUT)
        try:
            s.connect(self.path)
        except OSError as e:
            s.close()
            raise EngineError(
                f"cannot reach the Docker daemon at unix://{self.path} ({e.strerror}): start it "
                "(`dockerd &`, `systemctl start docker`, or `make run`) or set DOCKER_HOST"
            ) from None
        return s

    def request(self, method: str, url: str, body: Any = None) -> Any:
        data = b"" if body is None else json.dumps(body).encode()
        head = f"{method} {url} HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n"
        if body is not None:
            head += "Content-Type: application/json\r\n"
        head += f"Content-Length: {len(data)}\r\n\r\n"
        s = self._connect()
        try:
            s.sendall(head.encode() + data)
            chunks = []
            while True:  # Connection: close: dockerd ends the response by closing
                b = s.recv(65536)
                if not b:
                    break
                chunks.append(b)
        except OSError as e:
            raise EngineError(f"docker {method} {url}: {e}") from None
        finally:
            s.close()
        status, body_bytes = _parse_response(b"".join(chunks))
        if status >= 400:
            try:
                message = str(json.loads(body_bytes).get("message", ""))
            except (ValueError, AttributeError):
                message = body_bytes.decode(errors="replace").strip()
            raise APIError(status, message or f"HTTP {status}")
        return json.loads(body_bytes) if body_bytes.strip() else None


    # -- the calls the sandbox needs ---------------------------------------------------
    def create(self, config: dict[str, Any]) -> str:
        return str(self.request("POST", "/containers/create", config)["Id"])

    def start(self, cid: str) -> None:
        self.request("POST", f"/containers/{quote(cid)}/start")

    def inspect(self, cid: str) -> dict[str, Any]:
        return self.request("GET", f"/containers/{quote(cid)}/json")


def _parse_response(raw: bytes) -> tuple[int, bytes]:
    head, sep, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    try:
        status = int(lines[0].split()[1])
    except (IndexError, ValueError):
        raise EngineError(f"docker: unexpected answer {lines[0][:80]!r}") from None
    if not sep:
        return status, b""
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(b":") for ln in lines[1:])}
    if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
        out, rest = [], body
        while rest:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line.split(b";")[0] or b"0", 16)
            if size == 0:
                break
            out.append(rest[:size])
            rest = rest[size + 2:]
        body = b"".join(out)
    return status, body
