"""The few engine operations compose needs beyond `cnirun run`: find, stop,
remove and follow the logs of a project's containers, by label.

Docker goes through cnirun's Docker client (SDK, imported lazily); Podman
through its CLI, as the rest of cnirun does.
"""
from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from typing import Iterator

from ..errors import EngineError


@dataclass
class Container:
    id: str
    name: str
    labels: dict[str, str]
    running: bool


class Engine:
    name = ""

    def by_label(self, label: str) -> list[Container]:
        raise NotImplementedError

    def stop(self, cid: str, timeout: int = 10) -> None:
        raise NotImplementedError

    def remove(self, cid: str) -> None:
        raise NotImplementedError

    def logs(self, cid: str) -> Iterator[bytes]:
        raise NotImplementedError

    def is_running(self, cid: str) -> bool:
        raise NotImplementedError


class DockerEngine(Engine):
    name = "docker"

    def __init__(self) -> None:
        from ..engines.docker import Docker

        self.docker = Docker()

    def by_label(self, label: str) -> list[Container]:
        out = []
        for c in self.docker.containers(label):
            names = c.get("Names") or [""]
            out.append(Container(c["Id"], names[0].lstrip("/"), c.get("Labels") or {}, c.get("State") == "running"))
        return out

    def stop(self, cid: str, timeout: int = 10) -> None:
        try:
            self.docker.clone().api.stop(cid, timeout=timeout)
        except Exception:  # noqa: BLE001 - gone or already stopped; remove() reports real trouble
            pass

    def remove(self, cid: str) -> None:
        self.docker.remove(cid)

    def logs(self, cid: str) -> Iterator[bytes]:
        client = self.docker.clone()
        try:
            yield from client.api.logs(cid, stream=True, follow=True)
        except Exception:  # noqa: BLE001 - the container went away: the stream ends
            return

    def is_running(self, cid: str) -> bool:
        return self.docker.is_running(cid)


class PodmanEngine(Engine):
    name = "podman"

    def __init__(self) -> None:
        from ..engines.podman import podman_bin

        self.bin = podman_bin()

    def by_label(self, label: str) -> list[Container]:
        p = subprocess.run([self.bin, "ps", "-a", "--filter", f"label={label}", "--format", "json"],
                           capture_output=True, text=True)
        if p.returncode != 0:
            raise EngineError(f"podman ps: {p.stderr.strip()}")
        out = []
        for c in json.loads(p.stdout or "[]"):
            names = c.get("Names") or [""]
            out.append(Container(c["Id"], names[0], c.get("Labels") or {}, c.get("State") == "running"))
        return out

    def stop(self, cid: str, timeout: int = 10) -> None:
        subprocess.run([self.bin, "stop", "-t", str(timeout), cid], capture_output=True)

    def remove(self, cid: str) -> None:
        subprocess.run([self.bin, "rm", "-f", "--ignore", cid], capture_output=True)

    def logs(self, cid: str) -> Iterator[bytes]:
        proc = subprocess.Popen([self.bin, "logs", "-f", cid], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        assert proc.stdout is not None
        try:
            yield from iter(lambda: proc.stdout.readline(), b"")  # type: ignore[union-attr]
        finally:
            proc.kill()
            proc.wait()

    def is_running(self, cid: str) -> bool:
        from ..engines.podman import container_running

        return bool(container_running(cid))


def engine_for(name: str) -> Engine:
    if name == "podman":
        return PodmanEngine()
    if name == "docker":
        return DockerEngine()
    raise EngineError(f"unknown engine {name!r}: use --engine docker or --engine podman")

