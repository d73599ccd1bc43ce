"""What one service's container is: the `cnirun run` request it runs through, and what of it
the engine cannot do."""
from __future__ import annotations

from typing import Any

from .anon_volumes import labels_for, with_inherited
from .labels import container_labels, network_names
from .messages import ComposeFailed, say
from .project import Project, Service


def run_spec(project: Project, svc: Service, number: int = 1, inherit: dict[str, str] | None = None) -> Any:
    """The container options of one service's container (everything but its networks); `inherit`: the
    anonymous volumes it takes from the container it replaces (destination -> volume name)."""
    from ..engines.spec import RunSpec

    command = list(svc.command or [])
    entrypoint: str | None = None
    if svc.entrypoint is not None:
        # Setting an entrypoint drops the image's CMD (as compose does); its
        # extra words come before the service's command.
        entrypoint = svc.entrypoint[0] if svc.entrypoint else ""
        command = svc.entrypoint[1:] + command
    env = [k if v is None else f"{k}={v}" for k, v in svc.environment.items()]
    return RunSpec(
        image=svc.image, command=command, entrypoint=entrypoint, env=env,
        volumes=with_inherited(list(svc.volumes), inherit or {}),
        workdir=svc.working_dir, user=svc.user, name=project.container_name(svc, number),
        hostname=svc.hostname or svc.name, labels={**container_labels(project, svc, number), **labels_for(inherit or {})},
        init=svc.init,
        detach=True, remove=False, privileged=svc.privileged, read_only=svc.read_only,
        cap_add=list(svc.cap_add), cap_drop=list(svc.cap_drop), stop_signal=svc.stop_signal,
        stop_timeout=int(svc.stop_grace_period) if svc.stop_grace_period is not None else None,
        add_hosts=list(svc.extra_hosts), tty=svc.tty, interactive=svc.stdin_open, restart=svc.restart,
        tmpfs=list(svc.tmpfs), memory=svc.memory, memory_reservation=svc.memory_reservation, cpus=svc.cpus,
        cpu_shares=svc.cpu_shares, pids_limit=svc.pids_limit, shm_size=svc.shm_size,
        security_opt=list(svc.security_opt), group_add=list(svc.group_add), devices=list(svc.devices),
        healthcheck=svc.healthcheck, ulimits=list(svc.ulimits), sysctls=dict(svc.sysctls),
        expose=list(svc.expose), platform=svc.platform, log_driver=svc.log_driver, log_opts=dict(svc.log_opts),
        runtime=svc.runtime,
    )


def run_request(project: Project, svc: Service, engine: str, number: int = 1,
                inherit: dict[str, str] | None = None) -> Any:
    """The `cnirun run` request for one service's container (`inherit`: as run_spec's)."""
    from ..run.request import RunRequest

    names = network_names(project)
    ordered = list(svc.networks)
    return RunRequest(
        spec=run_spec(project, svc, number, inherit), networks=[names[n.key] for n in ordered], publish=list(svc.ports),
        network_ips={names[n.key]: n.ipv4_address for n in ordered if n.ipv4_address}, engine=engine,
        network_ips6={names[n.key]: n.ipv6_address for n in ordered if n.ipv6_address},
        mac=svc.mac_address, dns=list(svc.dns), dns_search=list(svc.dns_search),
        ingress_rate=svc.ingress_rate, egress_rate=svc.egress_rate,
        ingress_allow=list(svc.ingress_allow), egress_allow=list(svc.egress_allow),
        # DNS names (cnirun.dns), as Docker's: the service name and the container
        # name (spec.name) on every network, the aliases on their network.
        aliases=[svc.name, *([svc.hostname] if svc.hostname else [])], network_aliases={names[n.key]: list(n.aliases) for n in ordered if n.aliases},
        # Service discovery rewrites each service's hosts file in its run state:
        # Docker's hook mode lets dockerd own that file (Podman runs always own it).
        mode="sandbox",
    )


# What an engine may lack and compose leaves out with a warning (Engine.unsupported's keys, a RunSpec
# field or FIELD.KEY within one): the compose key, and the service's settings that go with it (a log
# driver's options belong to it).
_LEFT_OUT = {"log_driver": (("logging", "driver"), ("log_driver", "log_opts")),
             "healthcheck.start_interval": (("healthcheck", "start_interval"), ())}


def engine_lacks(project: Project, svc: Service, eng: Any) -> None:
    """Leave out of svc what the engine cannot do, one WARN line each (compose warns and goes on);
    refuse the rest (a runtime the engine does not have) before anything is made."""
    for fld, why in eng.unsupported(run_spec(project, svc)).items():
        if fld not in _LEFT_OUT:
            raise ComposeFailed(f"service {svc.name}: {why}")
        key, dropped = _LEFT_OUT[fld]
        say(f"WARN {project.doc.where(svc.path + key)}: {why}")
        for name in dropped:
            setattr(svc, name, type(getattr(svc, name))())
        field, _, within = fld.partition(".")
        if within:
            (getattr(svc, field) or {}).pop(within, None)
