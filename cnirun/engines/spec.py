"""What the user asked `cnirun run` for, independent of the engine."""
from __future__ import annotations

TYPE_CHECKING = False  # start-up cost: see cnirun.core
if TYPE_CHECKING:
    from typing import Any

from ..core.value import Record


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
    restart: str  # no, always, unless-stopped, on-failure[:N]
    healthcheck: dict[str, Any] | None  # test (list), interval/timeout/start_period/start_interval (s), retries
    ulimits: list[str]  # NAME=SOFT[:HARD]
    sysctls: dict[str, str]
    expose: list[str]  # PORT[/PROTO]
    platform: str
    log_driver: str
    log_opts: dict[str, str]
    memory_reservation: str
    cpu_shares: int | None
    runtime: str  # the engine's OCI runtime by name (docker --runtime); "" the engine's default

    _fields = (
        'image', 'command', 'entrypoint', 'env', 'volumes', 'workdir', 'user', 'name', 'hostname', 'labels', 'init',
        'tty', 'interactive', 'detach', 'remove', 'privileged', 'read_only', 'cap_add', 'cap_drop', 'tmpfs',
        'memory', 'cpus', 'stop_signal', 'stop_timeout', 'add_hosts', 'devices', 'security_opt', 'shm_size',
        'pids_limit', 'group_add', 'restart', 'healthcheck', 'ulimits', 'sysctls', 'expose', 'platform',
        'log_driver', 'log_opts', 'memory_reservation', 'cpu_shares', 'runtime',
    )
    _defaults = {
        'command': list, 'entrypoint': None, 'env': list, 'volumes': list, 'workdir': "", 'user': "", 'name': "",
        'hostname': "", 'labels': dict, 'init': False, 'tty': False, 'interactive': False, 'detach': False,
        'remove': False, 'privileged': False, 'read_only': False, 'cap_add': list, 'cap_drop': list, 'tmpfs': list,
        'memory': "", 'cpus': None, 'stop_signal': "", 'stop_timeout': None, 'add_hosts': list, 'devices': list,
        'security_opt': list, 'shm_size': "", 'pids_limit': None, 'group_add': list, 'restart': "",
        'healthcheck': None, 'ulimits': list, 'sysctls': dict, 'expose': list, 'platform': "", 'log_driver': "",
        'log_opts': dict, 'memory_reservation': "", 'cpu_shares': None, 'runtime': "",
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

    def borrowed_volumes(self) -> list[str]:
        """The anonymous volumes (an engine's 64-hex names) it mounts by name (`NAME:/path`, as a compose
        recreate passes on the old container's): not its own, its removal never takes them."""
        return [name for name in (v.split(":", 1)[0] for v in self.volumes if ":" in v) if is_anonymous_volume(name)]


def is_anonymous_volume(name: str) -> bool:
    """A name Docker and Podman give an anonymous volume: 64 hex digits."""
    return len(name) == 64 and all(ch in "0123456789abcdef" for ch in name)


# RunSpec fields whose Engine API form needs the Docker SDK's parsing (sizes
# like "512m", device specs): create_config leaves them out.
SDK_ONLY_FIELDS = ("memory", "shm_size", "devices", "memory_reservation")

RESTART_POLICIES = ("no", "always", "unless-stopped", "on-failure")


def parse_restart(text: str) -> tuple[str, int]:
    """docker's --restart: (policy, max retries); ValueError with the reason when it is not one."""
    name, sep, count = text.partition(":")
    if name not in RESTART_POLICIES:
        raise ValueError(f"invalid restart policy {text!r}: expected no, always, unless-stopped or on-failure[:N]")
    if sep and (name != "on-failure" or not count.isdigit()):
        raise ValueError(f"invalid restart policy {text!r}: only on-failure takes a count (on-failure:3)")
    return name, int(count) if sep else 0


def parse_ulimit(text: str) -> tuple[str, int, int]:
    """NAME=SOFT[:HARD] (docker's --ulimit); ValueError when malformed."""
    name, eq, limits = text.partition("=")
    soft, _, hard = limits.partition(":")
    try:
        s = int(soft)
        return name, s, int(hard) if hard else s
    except ValueError:
        raise ValueError(f"invalid ulimit {text!r}: expected NAME=SOFT[:HARD] with whole numbers") from None


def _ns(seconds: float | None) -> int | None:
    return None if seconds is None else int(seconds * 1e9)


def health_config(hc: dict[str, Any]) -> dict[str, Any]:
    """The Engine API Healthcheck of a spec's healthcheck (test ["NONE"] disables the image's)."""
    out: dict[str, Any] = {"Test": list(hc.get("test") or [])}
    for key, api in (("interval", "Interval"), ("timeout", "Timeout"), ("start_period", "StartPeriod"),
                     ("start_interval", "StartInterval")):
        if hc.get(key) is not None:
            out[api] = _ns(hc[key])
    if hc.get("retries") is not None:
        out["Retries"] = int(hc["retries"])
    return out


def create_config(
    spec: RunSpec,
    network_mode: str,
    labels: dict[str, str],
    extra_binds: list[str],
    runtime: str | None = None,
    auto_remove: bool = False,
    hostname: str | None = None,
    dns: list[str] | None = None,
    dns_search: list[str] | None = None,
) -> dict[str, Any]:
    """The Engine API body of POST /containers/create for the workload of `spec`.

    One builder for both Docker clients: engines.dockerapi posts it as is
    (and refuses runs that set SDK_ONLY_FIELDS), engines.docker adds those
    fields parsed by the SDK and posts it through the SDK. Unset options are
    left out: dockerd applies its own defaults.
    """
    # A volume entry with no ':' is an anonymous volume (Config.Volumes), not a bind.
    binds = [v for v in list(spec.volumes) + list(extra_binds) if ":" in v]
    anonymous = [v for v in spec.volumes if ":" not in v]
    host: dict[str, Any] = {"NetworkMode": network_mode, "Binds": binds, "AutoRemove": auto_remove}
    if spec.restart and spec.restart != "no":
        policy, retries = parse_restart(spec.restart)
        host["RestartPolicy"] = {"Name": policy, "MaximumRetryCount": retries}
    optional = {
        "Init": spec.init or None, "Privileged": spec.privileged or None,
        "ReadonlyRootfs": spec.read_only or None, "CapAdd": spec.cap_add or None,
        "CapDrop": spec.cap_drop or None, "SecurityOpt": spec.security_opt or None,
        "PidsLimit": spec.pids_limit, "GroupAdd": [str(g) for g in spec.group_add] or None,
        "NanoCpus": int(spec.cpus * 1e9) if spec.cpus else None, "Runtime": runtime or spec.runtime or None,
        "Tmpfs": {t.partition(":")[0]: t.partition(":")[2] for t in spec.tmpfs} or None,
        "Dns": dns or None, "DnsSearch": dns_search or None,
        "Ulimits": [dict(zip(("Name", "Soft", "Hard"), parse_ulimit(u))) for u in spec.ulimits] or None,
        "Sysctls": dict(spec.sysctls) or None, "CpuShares": spec.cpu_shares,
        "LogConfig": {"Type": spec.log_driver, "Config": dict(spec.log_opts)} if spec.log_driver else None,
    }
    # A container sharing another's network namespace shares its /etc/hosts too: dockerd refuses ExtraHosts.
    if not network_mode.startswith("container:"):
        optional["ExtraHosts"] = [h.replace("=", ":", 1) for h in spec.add_hosts] or None
    host.update({k: v for k, v in optional.items() if v is not None})
    attach_out = not spec.detach
    config: dict[str, Any] = {
        "Image": spec.image, "Labels": labels, "Tty": spec.tty, "OpenStdin": spec.interactive,
        "StdinOnce": attach_out and spec.interactive, "AttachStdin": attach_out and spec.interactive,
        "AttachStdout": attach_out, "AttachStderr": attach_out, "HostConfig": host,
    }
    if spec.command:
        config["Cmd"] = list(spec.command)
    if anonymous:
        config["Volumes"] = {v: {} for v in anonymous}
    # Expose is metadata; dockerd refuses it on a container sharing another's netns (sandbox mode).
    if spec.expose and not network_mode.startswith("container:"):
        config["ExposedPorts"] = {(e if "/" in e else f"{e}/tcp"): {} for e in spec.expose}
    if spec.healthcheck is not None:
        config["Healthcheck"] = health_config(spec.healthcheck)
    if spec.entrypoint is not None:
        config["Entrypoint"] = [spec.entrypoint] if spec.entrypoint else [""]
    fields = {"Env": spec.resolved_env() or None, "WorkingDir": spec.workdir or None, "User": spec.user or None,
              "Hostname": hostname or None, "StopSignal": spec.stop_signal or None,
              "StopTimeout": spec.stop_timeout}
    config.update({k: v for k, v in fields.items() if v is not None})
    return config
