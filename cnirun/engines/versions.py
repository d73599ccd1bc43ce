"""Which engines answer here and their versions (`cnirun version`), asked cheaply and side by side.

Docker: GET /version over the lean client when the resolved endpoint is a
unix socket (no SDK import), else through the SDK. Podman: `podman version
--format json`. Both are asked at once, each with a short timeout, so a
daemon that hangs costs at most that.
"""
from __future__ import annotations

import shutil
import subprocess
import threading
from typing import Any, Callable

from ..core.errors import EngineError

TIMEOUT = 3.0


def docker_version() -> dict[str, Any]:
    from .docker_context import resolve_endpoint

    ep = resolve_endpoint()
    out: dict[str, Any] = {"name": "docker", "host": ep.host, "context": ep.context, "contextSource": ep.source}
    from .dockerapi import RawDocker, unix_socket_path

    sock = unix_socket_path()
    if sock:
        v = RawDocker(sock).request("GET", "/version", timeout=TIMEOUT) or {}
    else:
        from .docker import Docker

        v = Docker().api.version()
    out.update(version=str(v.get("Version", "")), apiVersion=str(v.get("ApiVersion", "")),
               os=str(v.get("Os", "")), arch=str(v.get("Arch", "")))
    return out


def podman_version() -> dict[str, Any]:
    path = shutil.which("podman")
    if not path:
        raise EngineError("podman is not installed")
    try:
        p = subprocess.run([path, "version", "--format", "json"], capture_output=True, text=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        raise EngineError(f"podman version did not answer within {TIMEOUT:g} s") from None
    if p.returncode != 0:
        raise EngineError((p.stderr.strip().splitlines() or ["podman version failed"])[-1])
    import json

    client = (json.loads(p.stdout or "{}").get("Client") or {})
    return {"name": "podman", "version": str(client.get("Version", "")), "apiVersion": str(client.get("APIVersion", "")),
            "os": str(client.get("Os", "")), "arch": str(client.get("OsArch", "")).partition("/")[2],
            "binary": path}


PROBES: dict[str, Callable[[], dict[str, Any]]] = {"docker": docker_version, "podman": podman_version}


def engine_versions() -> list[dict[str, Any]]:
    """One entry per engine: its version fields, or {"name", "error"} when it does not answer."""
    results: dict[str, dict[str, Any]] = {}

    def ask(name: str, probe: Callable[[], dict[str, Any]]) -> None:
        try:
            results[name] = probe()
        except Exception as e:  # noqa: BLE001 - any failure is "not available here", said in one line
            results[name] = {"name": name, "error": (str(e).strip().splitlines() or [type(e).__name__])[0]}

    threads = [threading.Thread(target=ask, args=item, daemon=True) for item in PROBES.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT + 2)
    return [results.get(name, {"name": name, "error": "no answer"}) for name in PROBES]


__all__ = ["engine_versions", "docker_version", "podman_version"]
