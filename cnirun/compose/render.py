"""`compose config`: the normalised project, as `docker compose config` prints it.

Everything is spelled out as it will run: interpolated, merged (-f,
include, extends), relative paths absolute, env files read into
environment, profiles applied, names resolved. The output is a compose
file cnirun reads back to the same project, and reading it back prints the
same text: top-level keys of networks, volumes, secrets and configs stay
(their `name:` says the engine's name) and services refer to them by key;
every key is printed in compose-spec's form; every `$` is written `$$`,
since the text is interpolated again when it is read.
"""
from __future__ import annotations

from typing import Any

from .durations import duration_text
from .project import Project
from .services import Service
from .x_cni import X_CNI_SERVICE_KEYS

# Plain settings printed as they are when set.
SIMPLE_KEYS = ("hostname", "container_name", "working_dir", "user", "stop_signal", "platform", "runtime",
               "cpu_shares", "shm_size", "mac_address")
FLAGS = ("init", "privileged", "read_only", "tty", "stdin_open")
LISTS_AND_MAPS = ("cap_add", "cap_drop", "extra_hosts", "devices", "security_opt", "group_add", "dns",
                  "dns_search", "profiles", "labels", "sysctls")
# Limits: (Service attribute, the service key, deploy.resources section and key).
LIMITS = (("memory", "mem_limit", "limits", "memory"), ("cpus", "cpus", "limits", "cpus"),
          ("pids_limit", "pids_limit", "limits", "pids"),
          ("memory_reservation", "mem_reservation", "reservations", "memory"))


def _extensions(raw: Any, skip: str = "") -> dict[str, Any]:
    """The `x-` keys of a mapping, kept as written (compose's extension fields)."""
    if not isinstance(raw, dict):
        return {}
    return {k: v for k, v in raw.items() if isinstance(k, str) and k.startswith("x-") and k != skip}


def _image_keys(svc: Service) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if svc.build is not None:
        b = svc.build
        out["build"] = {"context": b.context, "dockerfile": b.dockerfile, **({"args": b.args} if b.args else {}),
                        **({"target": b.target} if b.target else {}), **({"labels": b.labels} if b.labels else {}),
                        **({"no_cache": True} if b.no_cache else {}), **({"pull": True} if b.pull else {})}
    out["image"] = svc.image
    if svc.pull_policy != "missing":
        out["pull_policy"] = svc.pull_policy
    if svc.command is not None:
        out["command"] = svc.command
    if svc.entrypoint is not None:
        out["entrypoint"] = svc.entrypoint
    if svc.environment:
        out["environment"] = svc.environment
    if svc.depends_on:
        out["depends_on"] = {d: {"condition": dep.condition, "required": dep.required, "restart": dep.restart}
                             for d, dep in svc.depends_on.items()}
    return out


def _network_keys(svc: Service) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if svc.network_mode:
        out["network_mode"] = svc.network_mode
    else:
        out["networks"] = {n.key: ({"aliases": n.aliases} if n.aliases else {}) |
                           ({"ipv4_address": n.ipv4_address} if n.ipv4_address else {}) |
                           ({"ipv6_address": n.ipv6_address} if n.ipv6_address else {}) or None
                           for n in svc.networks}
    if svc.ports:
        out["ports"] = svc.ports_shown or svc.ports
    if svc.expose:
        out["expose"] = svc.expose
    return out


def _mount_keys(svc: Service) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if svc.mounts.shown:
        out["volumes"] = svc.mounts.shown
    if svc.tmpfs:
        out["tmpfs"] = svc.tmpfs
    for kind in ("secrets", "configs"):
        if svc.mounts.files.get(kind):
            out[kind] = svc.mounts.files[kind]
    return out


def _ulimits(items: list[str]) -> dict[str, Any]:
    """NAME=N or NAME=SOFT:HARD back into compose's mapping."""
    out: dict[str, Any] = {}
    for item in items:
        name, _, value = item.partition("=")
        soft, sep, hard = value.partition(":")
        out[name] = {"soft": int(soft), "hard": int(hard)} if sep else int(value)
    return out


def _limit_keys(svc: Service) -> dict[str, Any]:
    """Memory, CPU and pids limits where the file set them: the service's own keys or deploy.resources."""
    out: dict[str, Any] = {}
    deploy = svc.raw.get("deploy") if isinstance(svc.raw.get("deploy"), dict) else {}
    given = deploy.get("resources") or {}
    resources: dict[str, dict[str, Any]] = {}
    for attr, key, section, sub in LIMITS:
        value = getattr(svc, attr)
        if value in ("", None):
            continue
        if (given.get(section) or {}).get(sub) is not None:
            resources.setdefault(section, {})[sub] = value
        else:
            out[key] = value
    if resources:
        out["deploy"] = {"resources": resources}
    return out


def _container_keys(svc: Service) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if svc.restart != "no":
        out["restart"] = svc.restart
    if svc.healthcheck is not None:
        out["healthcheck"] = ({"disable": True} if svc.healthcheck.get("test") == ["NONE"]
                              else {k: (duration_text(v) if isinstance(v, float) else v)
                                    for k, v in svc.healthcheck.items()})
    if svc.replicas != 1:
        out["scale"] = svc.replicas
    for key in SIMPLE_KEYS:
        v = getattr(svc, key, "")
        if v not in ("", None):
            out[key] = v
    if svc.stop_grace_period is not None:
        out["stop_grace_period"] = duration_text(svc.stop_grace_period)
    for key in FLAGS:
        if getattr(svc, key):
            out[key] = True
    for key in LISTS_AND_MAPS:
        v = getattr(svc, key)
        if v:
            out[key] = v
    if svc.ulimits:
        out["ulimits"] = _ulimits(svc.ulimits)
    if svc.log_driver or svc.log_opts:
        out["logging"] = {**({"driver": svc.log_driver} if svc.log_driver else {}),
                          **({"options": svc.log_opts} if svc.log_opts else {})}
    return out


def _service(svc: Service) -> dict[str, Any]:
    out = {**_image_keys(svc), **_network_keys(svc), **_mount_keys(svc), **_container_keys(svc),
           **_limit_keys(svc)}
    x_cni = {key: getattr(svc, key) for key in X_CNI_SERVICE_KEYS if getattr(svc, key)}
    if x_cni:
        out["x-cni"] = x_cni
    return out | _extensions(svc.raw, skip="x-cni")


def _network(project: Project, key: str) -> dict[str, Any]:
    from ..netstore.located import string_map

    spec = project.networks[key]
    raw = (project.doc.data.get("networks") or {}).get(key) or {}
    if spec.external:
        return {"name": spec.name, "external": True}
    out: dict[str, Any] = {"name": spec.name}
    if spec.driver != "bridge":
        out["driver"] = spec.driver
    opts = string_map(project.doc, raw.get("driver_opts"), spec.path + ("driver_opts",), "driver_opts")
    if opts:
        out["driver_opts"] = opts
    for flag in ("internal", "enable_ipv6"):
        if getattr(spec, flag):
            out[flag] = True
    if spec.labels:
        out["labels"] = spec.labels
    if spec.pools:
        out["ipam"] = {"config": [{k: str(v) for k, v in (("subnet", p.subnet), ("ip_range", p.ip_range),
                                                          ("gateway", p.gateway)) if v is not None}
                                  | ({"aux_addresses": {n: str(a) for n, a in p.aux.items()}} if p.aux else {})
                                  for p in spec.pools]}
    return out | _extensions(raw)


def _top_level(project: Project) -> dict[str, Any]:
    """networks, volumes, secrets and configs, each under its own key with the engine's name."""
    out: dict[str, Any] = {}
    used_nets = {n.key for s in project.services for n in s.networks if s.attaches}
    nets = {key: _network(project, key) for key in project.networks if key in used_nets or key != "default"}
    if nets:
        out["networks"] = nets
    raw_volumes = project.doc.data.get("volumes") or {}
    if project.volumes:
        out["volumes"] = {k: {"name": v.name, **({"external": True} if v.external else {}),
                              **({"driver": v.driver} if v.driver else {}),
                              **({"driver_opts": v.driver_opts} if v.driver_opts else {}),
                              **({"labels": v.labels} if v.labels else {})} | _extensions(raw_volumes.get(k))
                          for k, v in project.volumes.items()}
    for kind in ("secrets", "configs"):
        files = getattr(project, kind)
        if files:
            # environment: names its variable, never the value; content: is the config's text
            out[kind] = {k: {"name": v.name,
                             **({"environment": v.variable} if v.variable else
                                {"content": v.value} if v.value is not None else {"file": v.file})}
                         for k, v in files.items()}
    return out


def _escaped(node: Any) -> Any:
    """Every `$` of every string value written `$$`: reading the text back interpolates it again."""
    if isinstance(node, str):
        return node.replace("$", "$$")
    if isinstance(node, dict):
        return {k: _escaped(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_escaped(v) for v in node]
    return node


def normalized(project: Project) -> dict[str, Any]:
    out: dict[str, Any] = {"name": project.name,
                           "services": {s.name: _service(s) for s in sorted(project.services, key=lambda s: s.name)},
                           **_top_level(project), **_extensions(project.doc.data)}
    return _escaped(out)


def render(project: Project, fmt: str = "yaml") -> str:
    data = normalized(project)
    if fmt == "json":
        import json

        return json.dumps(data, indent=2, default=str)  # a YAML timestamp in an x- key: its text
    import yaml

    # libyaml's emitter when PyYAML has it: the same text, 10x faster on a large project
    base = getattr(yaml, "CSafeDumper", yaml.SafeDumper)

    class Dumper(base):  # type: ignore[valid-type,misc]
        def ignore_aliases(self, data: Any) -> bool:
            return True  # a value the file shared through an anchor is printed where it is used

    return str(yaml.dump(data, Dumper=Dumper, sort_keys=False, default_flow_style=False))
