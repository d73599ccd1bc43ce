"""A Docker container's attached console (engines.base.AttachStream), as either Docker client returns it.

The lean client (engines.dockerapi) hijacks the HTTP connection itself
(Hijacked: the raw socket and what came with the answer's head, framing
read here); the SDK's client (engines.docker) hands over its connection's
socket (SDKAttach: the same I/O, the SDK's framing). Imports only _socket:
foreground runs load it.
"""
from __future__ import annotations

import _socket as socket

from .base import AttachStream

TYPE_CHECKING = False  # start-up cost: see cnirun.core
if TYPE_CHECKING:
    from typing import Any, Iterator


class Hijacked(AttachStream):
    """An attach stream: the raw socket plus what arrived with the HTTP head."""

    def __init__(self, sock: socket.socket, leftover: bytes) -> None:
        self._sock = sock
        self.leftover = leftover

    def frames(self, tty: bool) -> Iterator[tuple[int, bytes]]:
        return frames(self, tty)

    def send(self, data: bytes) -> None:
        self._sock.sendall(data)

    def end_input(self) -> None:
        self._sock.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self._sock.close()


def frames(stream: Hijacked, tty: bool) -> Iterator[tuple[int, bytes]]:
    """(stream number, bytes) from an attach stream: raw with a tty, else 8-byte-header frames."""
    sock, buf = stream._sock, stream.leftover
    while True:
        if tty:
            if buf:
                yield 1, buf
                buf = b""
            b = sock.recv(65536)
            if not b:
                return
            buf = b
            continue
        while len(buf) < 8:
            b = sock.recv(65536)
            if not b:
                return
            buf += b
        kind, size = buf[0], int.from_bytes(buf[4:8], "big")
        while len(buf) < 8 + size:
            b = sock.recv(max(65536, 8 + size - len(buf)))
            if not b:
                return
            buf += b
        yield (2 if kind == 2 else 1), buf[8:8 + size]
        buf = buf[8 + size:]


class SDKAttach(Hijacked):
    """The SDK's attach socket as an AttachStream: the lean client's I/O on the connection's socket, the
    SDK's own framing."""

    def __init__(self, sock: Any) -> None:
        super().__init__(getattr(sock, "_sock", sock), b"")
        self.sock = sock  # a SocketIO around the connection's socket, or an SSLSocket (a TLS daemon)

    def frames(self, tty: bool) -> Iterator[tuple[int, bytes]]:
        if type(self.sock).__module__ == "ssl":
            # A TLS daemon: docker-py's frames_iter polls the descriptor, which
            # stays quiet while the container's output already sits decrypted in
            # the TLS layer's buffer (the output was lost, the run waited 2 s).
            # Blocking recv returns what is buffered.
            return Hijacked(self.sock, b"").frames(tty)
        from docker.utils.socket import frames_iter

        return frames_iter(self.sock, tty)  # type: ignore[no-any-return]
