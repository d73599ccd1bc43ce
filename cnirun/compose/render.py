"""`compose config`: the normalised project, as `docker compose config` prints it.

Everything is spelled out as it will run: interpolated, merged (-f,
include, extends), relative paths absolute, profiles applied, short
syntax expanded where compose expands it (ports, volumes, depends_on,
networks), names resolved (PROJECT_KEY networks and volumes).
"""
from __future__ import annotations

from typing import Any

from .project import Project
from .services import Service
from .x_cni import X_CNI_SERVICE_KEYS


def _service(project: Project, svc: Service) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if svc.build is not None:
        b = svc.build
        out["build"] = {"context": b.context, "dockerfile": b.dockerfile,
                        **({"args": b.args} if b.args else {}), **({"target": b.target} if b.target else {})}
    out["image"] = svc.image
    if svc.command is not None:
        out["command"] = svc.command
    if svc.entrypoint is not None:
        out["entrypoint"] = svc.entrypoint
    if svc.environment:
        out["environment"] = svc.environment
    if svc.depends_on:
        out["depends_on"] = {d: {"condition": dep.condition, "required": dep.required, "restart": dep.restart}
                             for d, dep in svc.depends_on.items()}
    if svc.network_mode:
        out["network_mode"] = svc.network_mode
    else:
        out["networks"] = {n.key: ({"aliases": n.aliases} if n.aliases else {}) |
                           ({"ipv4_address": n.ipv4_address} if n.ipv4_address else {}) |
                           ({"ipv6_address": n.ipv6_address} if n.ipv6_address else {}) or None
                           for n in svc.networks}
    if svc.ports:
        out["ports"] = svc.ports
    if svc.expose:
        out["expose"] = svc.expose
    if svc.volumes:
        out["volumes"] = svc.volumes
    if svc.tmpfs:
        out["tmpfs"] = svc.tmpfs
    if svc.restart != "no":
        out["restart"] = svc.restart
    if svc.healthcheck is not None:
        out["healthcheck"] = ({"disable": True} if svc.healthcheck.get("test") == ["NONE"]
                              else {k: (f"{v:g}s" if isinstance(v, float) else v) for k, v in svc.healthcheck.items()})
    if svc.replicas != 1:
        out["scale"] = svc.replicas
    simple = ("hostname", "container_name", "working_dir", "user", "stop_signal", "platform", "memory",
              "memory_reservation", "cpus", "cpu_shares", "pids_limit", "shm_size", "log_driver", "mac_address")
    for key in simple:
        v = getattr(svc, key)
        if v not in ("", None):
            out[key] = v
    if svc.stop_grace_period is not None:
        out["stop_grace_period"] = f"{svc.stop_grace_period:g}s"
    for key in ("init", "privileged", "read_only", "tty", "stdin_open"):
        if getattr(svc, key):
            out[key] = True
    for key in ("cap_add", "cap_drop", "extra_hosts", "ulimits", "devices", "security_opt", "group_add", "dns",
                "dns_search", "profiles", "labels", "sysctls", "log_opts"):
        v = getattr(svc, key)
        if v:
            out[key] = v
    x_cni = {key: getattr(svc, key) for key in X_CNI_SERVICE_KEYS if getattr(svc, key)}
    if x_cni:
        out["x-cni"] = x_cni
    return out


def normalized(project: Project) -> dict[str, Any]:
    used_nets = {n.key for s in project.services for n in s.networks if s.attaches}
    out: dict[str, Any] = {"name": project.name,
                           "services": {s.name: _service(project, s) for s in sorted(project.services,
                                                                                    key=lambda s: s.name)}}
    nets = {}
    for key, spec in project.networks.items():
        if key in used_nets or key != "default":
            nets[key] = {"name": spec.name, **({"external": True} if spec.external else {})}
    if nets:
        out["networks"] = nets
    if project.volumes:
        out["volumes"] = {k: {"name": v.name, **({"external": True} if v.external else {}),
                              **({"driver": v.driver} if v.driver else {}),
                              **({"driver_opts": v.driver_opts} if v.driver_opts else {})}
                          for k, v in project.volumes.items()}
    for kind in ("secrets", "configs"):
        files = getattr(project, kind)
        if files:
            # a value-based one shows where up writes it, never the value itself
            out[kind] = {k: {"name": f"{project.name}_{k}", "file": v.file} for k, v in files.items()}
    return out


def render(project: Project, fmt: str = "yaml") -> str:
    data = normalized(project)
    if fmt == "json":
        import json

        return json.dumps(data, indent=2)
    import yaml

    # libyaml's emitter when PyYAML has it: the same text, 10x faster on a large project
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    return str(yaml.dump(data, Dumper=dumper, sort_keys=False, default_flow_style=False))
