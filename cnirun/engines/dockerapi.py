"""A lean Docker Engine API client for `cnirun run`'s hot path (unix socket only).

Why: importing the Docker SDK (requests, urllib3) costs ~95 ms of CPU on
every run, more than a third of `docker run --rm --network none busybox
true`. `cnirun run` needs a dozen plain calls (create, attach, start, wait,
kill, resize, remove, inspect); this module speaks them as HTTP/1.1 over the
unix socket by hand (even http.client's import costs 10 ms).

LeanDocker is a DockerClient (engines.base) as engines.docker.Docker is, and
`cnirun run` uses it when DOCKER_HOST is a unix socket and the run's options
map 1:1 to Engine API fields (see lean_supported); otherwise, and for
tcp/ssh/TLS hosts, for the watcher, gc, ps and compose (FullEngine), the
Docker SDK does it all.

Unversioned API paths: dockerd serves them at its own current version, so
no version negotiation round trip is needed.
"""
from __future__ import annotations

# socket's C core: the socket module's own import (enum, selectors) costs ~4 ms of every run.
import _socket as socket
TYPE_CHECKING = False  # start-up cost: see cnirun.core
if TYPE_CHECKING:
    from typing import Any

    from .base import Container, ContainerNet
    from .spec import RunSpec

from ..core import jsonfast as json
from ..core import trace
from ..core.errors import EngineError
from .attach import Hijacked
from .base import AttachStream, DockerClient
from .spec import SDK_ONLY_FIELDS, create_config

TIMEOUT = 60.0


def unix_socket_path() -> str:
    """The socket path of the resolved Docker endpoint; '' for non-unix hosts or TLS contexts (the SDK's job)."""
    from .docker_context import DEFAULT_SOCKET, resolve_endpoint

    ep = resolve_endpoint()
    if ep.host.startswith("unix://") and not ep.tls_dir:
        return ep.host[len("unix://"):] or DEFAULT_SOCKET
    return ""


def quote(text: str) -> str:
    """Percent-encode for a URL path or query value (urllib.parse's import costs 2 ms)."""
    return "".join(c if c.isascii() and (c.isalnum() or c in "-_.") else
                   "".join(f"%{b:02X}" for b in c.encode()) for c in text)


def image_path(image: str) -> str:
    """An image reference in a URL path: / : @ stay as the docker CLI sends them."""
    return "/".join(":".join("@".join(quote(p) for p in part.split("@")) for part in seg.split(":"))
                    for seg in image.split("/"))


class APIError(EngineError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


REMOVE_WAIT = 30.0  # seconds remove() waits for a removal dockerd already started


class RawDocker:
    """HTTP/1.1 by hand (http.client's import alone costs 10 ms): one request per connection."""

    def __init__(self, path: str) -> None:
        self.path = path

    def _connect(self, timeout: float | None = TIMEOUT) -> socket.socket:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        try:
            s.connect(self.path)
        except OSError as e:
            s.close()
            raise EngineError(
                f"cannot reach the Docker daemon at unix://{self.path} ({e.strerror}): start it "
                "(`dockerd &`, `systemctl start docker`, or `make run`) or set DOCKER_HOST"
            ) from None
        return s

    def request(self, method: str, url: str, body: Any = None, timeout: float | None = TIMEOUT) -> Any:
        """One call; the decoded JSON answer (None when empty). timeout None: wait as long as it takes."""
        data = b"" if body is None else json.dumps(body).encode()
        head = f"{method} {url} HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n"
        if body is not None:
            head += "Content-Type: application/json\r\n"
        head += f"Content-Length: {len(data)}\r\n\r\n"
        if trace.ON:
            with trace.span("engine call", f"docker API {method} {url.partition('?')[0]}"):
                return self._exchange(head.encode() + data, method, url, timeout)
        return self._exchange(head.encode() + data, method, url, timeout)

    def _exchange(self, request: bytes, method: str, url: str, timeout: float | None) -> Any:
        s = self._connect(timeout)
        try:
            s.sendall(request)
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
            raise _api_error(status, body_bytes)
        return json.loads(body_bytes) if body_bytes.strip() else None


    # -- the calls the sandbox needs ---------------------------------------------------
    def create(self, config: dict[str, Any]) -> str:
        return str(self.request("POST", "/containers/create", config)["Id"])

    def start(self, cid: str) -> None:
        self.request("POST", f"/containers/{quote(cid)}/start")

    def inspect(self, cid: str) -> dict[str, Any]:
        return self.request("GET", f"/containers/{quote(cid)}/json")

    def post_for_head(self, what: str, url: str, connection: str) -> tuple[socket.socket, bytes]:
        """POST url (no body, no timeout); the open socket and what was read up to the end of the answer's head.

        For calls whose body comes later or never: attach (an Upgrade to a
        raw stream) and a wait registered before start.
        """
        s = self._connect(None)
        try:
            s.sendall(f"POST {url} HTTP/1.1\r\nHost: docker\r\n{connection}Content-Length: 0\r\n\r\n".encode())
            buf = b""
            while b"\r\n\r\n" not in buf:
                b = s.recv(65536)
                if not b:
                    break
                buf += b
        except OSError as e:
            s.close()
            raise EngineError(f"docker {what}: {e}") from None
        return s, buf

    def hijack(self, url: str) -> tuple[socket.socket, bytes]:
        """POST url with an Upgrade to a raw stream (attach); the socket and bytes already read past the head."""
        s, buf = self.post_for_head("attach", url, "Connection: Upgrade\r\nUpgrade: tcp\r\n")
        rest = buf.partition(b"\r\n\r\n")[2]
        status, body = _parse_response(buf)
        if status not in (101, 200):
            s.close()
            raise _api_error(status, body)
        return s, rest


def _api_error(status: int, body: bytes) -> APIError:
    """dockerd's error answer: its JSON `message`, else the body as text."""
    try:
        message = str(json.loads(body).get("message", ""))
    except (ValueError, AttributeError):
        message = body.decode(errors="replace").strip()
    return APIError(status, message or f"HTTP {status}")


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


# -- the engine interface ------------------------------------------------------------------
def lean_supported(spec: Any) -> bool:
    """Whether every option of the run maps 1:1 to an Engine API field (none needs the SDK's parsing)."""
    return not any(getattr(spec, f) for f in SDK_ONLY_FIELDS)


def docker_client(spec: Any, sdk_ok: bool = True) -> Any:
    """The Docker client for a run: this lean one when it can (unix socket, plain options), else the SDK's.

    sdk_ok=False: None instead of importing the SDK here.
    """
    sock = unix_socket_path()
    if sock and lean_supported(spec):
        return LeanDocker(sock)
    if not sdk_ok:
        return None
    from .docker import Docker

    return Docker()


class PendingWait:
    def __init__(self, sock: socket.socket, head: bytes) -> None:
        self._sock, self._buf = sock, head

    def close(self) -> None:
        try:
            self._sock.close()
        except OSError:
            pass

    def result(self) -> int:
        """The exit status (125 when the container vanished or dockerd answered an error)."""
        try:
            while True:
                b = self._sock.recv(65536)
                if not b:
                    break
                self._buf += b
        except OSError:
            return 125
        finally:
            self._sock.close()
        try:
            status, body = _parse_response(self._buf)
            return int(json.loads(body).get("StatusCode", 125)) if status < 400 else 125
        except (EngineError, ValueError, AttributeError):
            return 125


class LeanDocker(DockerClient):
    """A DockerClient for `cnirun run` and the live commands, without the SDK."""

    name = "docker"
    waits_before_start = True

    def __init__(self, socket_path: str) -> None:
        self.raw = RawDocker(socket_path)

    def clone(self) -> LeanDocker:
        return LeanDocker(self.raw.path)  # stateless: every call has its own connection

    def _call(self, what: str, method: str, url: str, body: Any = None, timeout: float | None = TIMEOUT) -> Any:
        try:
            return self.raw.request(method, url, body, timeout)
        except APIError:
            raise
        except EngineError as e:
            raise EngineError(f"docker {what}: {e}") from None

    # -- containers --------------------------------------------------------------------
    def inspect(self, cid: str) -> dict[str, Any] | None:
        try:
            return self._call("inspect", "GET", f"/containers/{quote(cid)}/json")
        except APIError as e:
            if e.status == 404:
                return None
            raise EngineError(f"docker inspect: {e}") from None

    def state(self, cid: str) -> str | None:
        from .docker import container_state

        return container_state(self.inspect(cid))

    def containers(self, label: str = "") -> list[Container]:
        from .docker import container_list

        query = f"&filters={quote(json.dumps({'label': [label]}))}" if label else ""
        return container_list(self._call("ps", "GET", "/containers/json?all=1" + query) or [])

    def lookup(self, ref: str) -> ContainerNet | None:
        """engines.base.Engine.lookup without the SDK (connect and port are timed like `cni add`)."""
        from .docker import container_net

        info = self.inspect(ref)
        return container_net(info) if info else None

    def is_running(self, cid: str) -> bool:
        info = self.inspect(cid)
        return bool(info and info.get("State", {}).get("Running"))

    def create_sandbox(self, image: str, hostname: str, labels: dict[str, str]) -> str:
        from .docker import ImageNotFound, image_not_found, sandbox_config

        try:
            return self.raw.create(sandbox_config(image, hostname, labels))
        except APIError as e:
            if e.status == 404:
                raise ImageNotFound(image_not_found(image, str(e))) from None
            raise EngineError(f"docker create: {e}") from None

    def netns_of(self, cid: str) -> str:
        from .docker import netns_from_inspect

        return netns_from_inspect(cid, self.inspect(cid))

    def create_workload(
        self,
        spec: RunSpec,
        network_mode: str,
        labels: dict[str, str],
        extra_binds: list[str],
        runtime: str | None = None,
        auto_remove: bool = False,
        hostname: str | None = None,
        dns: list[str] | None = None,
        dns_search: list[str] | None = None,
    ) -> str:
        from .docker import ImageNotFound

        if not lean_supported(spec):
            raise EngineError("docker create: this run needs the Docker SDK (memory, shm-size or devices)")
        config = create_config(spec, network_mode, labels, extra_binds, runtime, auto_remove, hostname, dns, dns_search)
        query = [f"name={quote(spec.name)}"] if spec.name else []
        if spec.platform:
            query.append(f"platform={quote(spec.platform)}")
        url = "/containers/create" + ("?" + "&".join(query) if query else "")
        try:
            return str(self.raw.request("POST", url, config)["Id"])
        except APIError as e:
            if e.status == 404:
                raise ImageNotFound(f"Unable to find image '{spec.image}' locally: {e}") from None
            raise EngineError(f"docker create: {e}") from None

    def attach_socket(self, cid: str, stdin: bool) -> AttachStream:
        url = f"/containers/{quote(cid)}/attach?stream=1&stdout=1&stderr=1&stdin={1 if stdin else 0}"
        try:
            sock, leftover = self.raw.hijack(url)
        except APIError as e:
            raise EngineError(f"docker attach: {e}") from None
        return Hijacked(sock, leftover)

    def start(self, cid: str) -> None:
        from .docker import StartError

        try:
            self.raw.start(cid)
        except EngineError as e:
            raise StartError(str(e)) from None

    def wait_pending(self, cid: str, condition: str = "next-exit") -> PendingWait:
        """Register a wait before start (as the docker CLI does): an auto-removed container cannot slip by.

        dockerd answers the head at once and the body when the condition is met.
        """
        s, buf = self.raw.post_for_head("wait", f"/containers/{quote(cid)}/wait?condition={condition}",
                                        "Connection: close\r\n")
        return PendingWait(s, buf)

    def wait(self, cid: str) -> int:
        try:
            res = self._call("wait", "POST", f"/containers/{quote(cid)}/wait", timeout=None)
        except APIError as e:
            if e.status == 404:
                return 125
            raise EngineError(f"docker wait: {e}") from None
        return int((res or {}).get("StatusCode", 125))

    def kill(self, cid: str, sig: str = "KILL") -> None:
        try:
            self.raw.request("POST", f"/containers/{quote(cid)}/kill?signal={quote(sig)}")
        except EngineError:
            pass  # already gone or not running: nothing to signal

    def stop(self, cid: str, timeout: int = 10) -> None:
        try:
            self.raw.request("POST", f"/containers/{quote(cid)}/stop?t={timeout}", timeout=timeout + TIMEOUT)
        except EngineError:
            pass  # gone or already stopped; remove() reports real trouble

    def resize(self, cid: str, height: int, width: int) -> None:
        try:
            self.raw.request("POST", f"/containers/{quote(cid)}/resize?h={height}&w={width}")
        except EngineError:
            pass

    def remove(self, cid: str, volumes: bool = True, keep: frozenset[str] = frozenset()) -> None:
        """docker rm -f (-v); when dockerd's auto-remove is already at it, returns once the container is gone.
        `keep`: dockerd's -v takes only the volumes the container's own create made."""
        try:
            self.raw.request("DELETE", f"/containers/{quote(cid)}?force=1&v={int(volumes)}")
        except APIError as e:
            if e.status == 404:
                return
            if "already in progress" in str(e):
                try:  # as `docker run --rm` does: the run is over when the container is
                    self.raw.request("POST", f"/containers/{quote(cid)}/wait?condition=removed", timeout=REMOVE_WAIT)
                except EngineError:
                    pass  # gone already (404), or dockerd is slow: the removal goes on without us
                return
            raise EngineError(f"docker rm {cid[:12]}: {e}") from None

    # -- images (cnirun run --pull) -------------------------------------------------------
    def image_config(self, image: str) -> dict[str, Any]:
        """The image's Config (Entrypoint, Cmd, Env, ...): what dockerd merges a container's argv from."""
        from .docker import ImageNotFound, image_not_found

        try:
            info = self.raw.request("GET", f"/images/{image_path(image)}/json")
        except APIError as e:
            if e.status == 404:
                raise ImageNotFound(image_not_found(image, str(e))) from None
            raise EngineError(f"docker image inspect {image}: {e}") from None
        return dict((info or {}).get("Config") or {})

    def has_image(self, image: str) -> bool:
        try:
            self.raw.request("GET", f"/images/{image_path(image)}/json")
        except APIError as e:
            if e.status == 404:
                return False
            raise EngineError(f"docker image inspect {image}: {e}") from None
        return True

    def pull(self, image: str, progress: Any = None) -> None:
        """POST /images/create: dockerd pulls; on a terminal `progress` shows it as the docker CLI does."""
        from .docker_pull import PullDisplay, raise_pull_error, split_image

        show = PullDisplay(progress)
        name, tag = split_image(image)
        url = f"/images/create?fromImage={quote(name)}" + (f"&tag={quote(tag)}" if tag else "")
        s, buf = self.raw.post_for_head("pull", url, "Connection: close\r\n")
        try:
            head, _, rest = buf.partition(b"\r\n\r\n")
            status, _ = _parse_response(head)
            chunked = b"transfer-encoding: chunked" in head.lower()
            if status >= 400:
                raise EngineError(f"docker pull {image}: {_api_error(status, _read_all(s, rest, chunked))}")
            for msg in _json_lines(_body_stream(s, rest, chunked)):
                raise_pull_error(image, msg)
                show(msg)
        except OSError as e:
            raise EngineError(f"docker pull {image}: {e}") from None
        finally:
            s.close()


# -- pulling -----------------------------------------------------------------------------------
def _read_all(s: socket.socket, rest: bytes, chunked: bool) -> bytes:
    return b"".join(_body_stream(s, rest, chunked))


def _body_stream(s: socket.socket, rest: bytes, chunked: bool) -> Any:
    """The response body as it arrives (chunked encoding undone)."""
    buf = rest
    if not chunked:
        if buf:
            yield buf
        while True:
            b = s.recv(65536)
            if not b:
                return
            yield b
    while True:
        while b"\r\n" not in buf:
            b = s.recv(65536)
            if not b:
                return
            buf += b
        size_line, _, buf = buf.partition(b"\r\n")
        size = int(size_line.split(b";")[0].strip() or b"0", 16)
        if size == 0:
            return
        while len(buf) < size + 2:
            b = s.recv(65536)
            if not b:
                yield buf[:size]
                return
            buf += b
        yield buf[:size]
        buf = buf[size + 2:]


def _json_lines(chunks: Any) -> Any:
    """Decoded JSON messages of a stream of newline-separated JSON objects."""
    buf = b""
    for chunk in chunks:
        buf += chunk
        while b"\n" in buf:
            line, _, buf = buf.partition(b"\n")
            if line.strip():
                try:
                    yield json.loads(line)
                except ValueError:
                    continue
    if buf.strip():
        try:
            yield json.loads(buf)
        except ValueError:
            pass
