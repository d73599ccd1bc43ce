"""What the user asked `cnirun run` for, independent of the engine."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class RunSpec:
    """docker-run options that are passed on to the engine (networking excluded)."""

    image: str
    command: list[str] = field(default_factory=list)
    entrypoint: str | None = None  # "" resets the image's entrypoint
    env: list[str] = field(default_factory=list)  # KEY=VALUE or KEY (taken from our environment)
    volumes: list[str] = field(default_factory=list)  # docker -v syntax
    workdir: str = ""
    user: str = ""
    name: str = ""
    hostname: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    init: bool = False
    tty: bool = False
    interactive: bool = False
    detach: bool = False
    remove: bool = False
    privileged: bool = False
    read_only: bool = False
    cap_add: list[str] = field(default_factory=list)
    cap_drop: list[str] = field(default_factory=list)
    tmpfs: list[str] = field(default_factory=list)  # PATH[:OPTIONS]
    memory: str = ""
    cpus: float | None = None
    stop_signal: str = ""
    stop_timeout: int | None = None
    add_hosts: list[str] = field(default_factory=list)  # NAME:IP
    devices: list[str] = field(default_factory=list)
    security_opt: list[str] = field(default_factory=list)
    shm_size: str = ""
    pids_limit: int | None = None
    group_add: list[str] = field(default_factory=list)
    restart: str = ""

    def resolved_env(self) -> list[str]:
        """`-e KEY` takes KEY from our environment (dropped when unset), as docker does."""
        import os

        out: list[str] = []
        for e in self.env:
            if "=" in e:
                out.append(e)
            elif e in os.environ:
                out.append(f"{e}={os.environ[e]}")
        return out
