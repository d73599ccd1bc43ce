"""What the user asked `cnirun run` for, independent of the engine."""
from __future__ import annotations
from ..record import Record



class RunSpec(Record):
    """docker-run options that are passed on to the engine (networking excluded)."""

    image: str
    command: list[str]
    entrypoint: str | None  # "" resets the image's entrypoint
    env: list[str]  # KEY=VALUE or KEY (taken from our environment)
    volumes: list[str]  # docker -v syntax
    workdir: str
    user: str
    name: str
    hostname: str
    labels: dict[str, str]
    init: bool
    tty: bool
    interactive: bool
    detach: bool
    remove: bool
    privileged: bool
    read_only: bool
    cap_add: list[str]
    cap_drop: list[str]
    tmpfs: list[str]  # PATH[:OPTIONS]
    memory: str
    cpus: float | None
    stop_signal: str
    stop_timeout: int | None
    add_hosts: list[str]  # NAME:IP
    devices: list[str]
    security_opt: list[str]
    shm_size: str
    pids_limit: int | None
    group_add: list[str]
    restart: str

    _fields = (
        'image', 'command', 'entrypoint', 'env', 'volumes', 'workdir', 'user', 'name', 'hostname', 'labels', 'init',
        'tty', 'interactive', 'detach', 'remove', 'privileged', 'read_only', 'cap_add', 'cap_drop', 'tmpfs',
        'memory', 'cpus', 'stop_signal', 'stop_timeout', 'add_hosts', 'devices', 'security_opt', 'shm_size',
        'pids_limit', 'group_add', 'restart',
    )
    _defaults = {
        'command': list, 'entrypoint': None, 'env': list, 'volumes': list, 'workdir': "", 'user': "", 'name': "",
        'hostname': "", 'labels': dict, 'init': False, 'tty': False, 'interactive': False, 'detach': False,
        'remove': False, 'privileged': False, 'read_only': False, 'cap_add': list, 'cap_drop': list, 'tmpfs': list,
        'memory': "", 'cpus': None, 'stop_signal': "", 'stop_timeout': None, 'add_hosts': list, 'devices': list,
        'security_opt': list, 'shm_size': "", 'pids_limit': None, 'group_add': list, 'restart': "",
    }

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
