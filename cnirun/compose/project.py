"""The compose file model: a project's services and networks, checked.

Only what cnirun can honour is accepted; every other key is refused with its
location, so nothing in a compose file is silently ignored. Names follow
Docker Compose v2: project from -p, the top-level `name:`,
COMPOSE_PROJECT_NAME or the file's directory (normalised); networks
`PROJECT_KEY` unless external or named; containers `PROJECT-SERVICE-1`.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ArgumentError, ConfigError
from ..options import parse_ip, parse_publish
from ..netstore.located import (
    Document,
    Path as KeyPath,
    check_keys,
    expect_bool,
    expect_mapping,
    expect_str,
    load,
    string_map,
    type_name,
)
from ..netstore.networks import NetworkSpec, parse_network

DEFAULT_FILES = ("compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml")
TOP_KEYS = frozenset({"version", "name", "services", "networks", "volumes", "configs", "secrets"})
SERVICE_KEYS = frozenset({
    "image", "command", "entrypoint", "environment", "ports", "networks", "hostname", "depends_on",
    "restart", "labels", "container_name", "working_dir", "user", "init", "privileged", "read_only",
    "cap_add", "cap_drop", "extra_hosts", "volumes", "stop_signal", "tty", "stdin_open",
})
SERVICE_UNSUPPORTED = {
    "build": "cnirun runs images; build it first (docker build) and use image:",
    "network_mode": "cnirun attaches CNI networks; use networks:",
    "links": "services reach each other by name on shared networks; remove links",
    "deploy": "Swarm settings are not supported",
    "healthcheck": "health checks are not supported",
    "scale": "one container per service",
    "expose": "every port is reachable on a shared network; remove expose",
    "env_file": "use environment:",
    "dns": "not supported yet for compose services",
    "mac_address": "not supported yet for compose services",
    "logging": "the engine's default logging is used",
    "profiles": "profiles are not supported",
    "secrets": "not supported",
    "configs": "not supported",
    "extends": "not supported",
}
NET_ATTACH_KEYS = frozenset({"aliases", "ipv4_address"})
DEPENDS_KEYS = frozenset({"condition", "restart", "required"})


@dataclass
class ServiceNetwork:
    key: str  # key under the top-level networks:
    aliases: list[str] = field(default_factory=list)
    ipv4_address: str = ""


@dataclass
class Service:
    name: str
    image: str
    path: KeyPath
    command: list[str] | None = None
    entrypoint: list[str] | None = None
    environment: dict[str, str | None] = field(default_factory=dict)
    ports: list[str] = field(default_factory=list)
    networks: list[ServiceNetwork] = field(default_factory=list)
    hostname: str = ""
    depends_on: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    container_name: str = ""
    working_dir: str = ""
    user: str = ""
    init: bool = False
    privileged: bool = False
    read_only: bool = False
    cap_add: list[str] = field(default_factory=list)
    cap_drop: list[str] = field(default_factory=list)
    extra_hosts: list[str] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)
    stop_signal: str = ""
    tty: bool = False
    stdin_open: bool = False
    raw: dict[str, Any] = field(default_factory=dict)

    def config_hash(self) -> str:
        return hashlib.sha256(json.dumps(self.raw, sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class Project:
    name: str
    file: str
    working_dir: str
    doc: Document
    services: list[Service]  # in start order (dependencies first)
    networks: dict[str, NetworkSpec]  # key -> spec, only those used or declared

    def service(self, name: str) -> Service:
        for s in self.services:
            if s.name == name:
                return s
        raise KeyError(name)

    def container_name(self, svc: Service) -> str:
        return svc.container_name or f"{self.name}-{svc.name}-1"

    def used_networks(self) -> list[NetworkSpec]:
        keys = {n.key for s in self.services for n in s.networks}
        return [spec for key, spec in self.networks.items() if key in keys]


def normalize_project_name(name: str) -> str:
    """Compose's rule: lower case, keep [a-z0-9_-], start with a letter or digit."""
    out = re.sub(r"[^a-z0-9_-]", "", name.lower())
    return out.lstrip("_-")


def find_file(cwd: str | None = None) -> Path:
    d = Path(cwd or os.getcwd())
    for n in DEFAULT_FILES:
        if (d / n).is_file():
            return d / n
    raise ConfigError(f"no compose file in {d}: expected one of {', '.join(DEFAULT_FILES)}, or pass -f FILE")


def _words(doc: Document, value: Any, path: KeyPath) -> list[str]:
    """command/entrypoint: a string (split like a shell) or a list of strings."""
    if isinstance(value, str):
        try:
            return shlex.split(value)
        except ValueError as e:
            doc.fail(path, f"cannot split {value!r} into words ({e}): use a list of strings")
    if isinstance(value, list):
        return [expect_str(doc, v, path + (i,)) for i, v in enumerate(value)]
    doc.fail(path, f"expected a string or a list of strings, got {type_name(value)}")


def _str_list(doc: Document, value: Any, path: KeyPath, what: str = "a list of strings") -> list[str]:
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list):
        doc.fail(path, f"expected {what}, got {type_name(value)}")
    return [expect_str(doc, v, path + (i,)) for i, v in enumerate(value)]


def _ports(doc: Document, value: Any, path: KeyPath) -> list[str]:
    if not isinstance(value, list):
        doc.fail(path, f"expected a list of ports such as \"8080:80\", got {type_name(value)}")
    out: list[str] = []
    for i, item in enumerate(value):
        p = path + (i,)
        if isinstance(item, dict):
            check_keys(doc, item, p, frozenset({"target", "published", "host_ip", "protocol", "mode", "name"}))
            if item.get("target") is None or item.get("published") in (None, ""):
                doc.fail(p, "a port needs target and published (CNI port mapping has no random host port)")
            if item.get("mode") not in (None, "host", "ingress"):
                doc.fail(p + ("mode",), "expected host or ingress")
            spec = f"{expect_str(doc, item['published'], p + ('published',))}:{expect_str(doc, item['target'], p + ('target',))}"
            if item.get("host_ip"):
                hip = expect_str(doc, item["host_ip"], p + ("host_ip",))
                spec = f"[{hip}]:{spec}" if ":" in hip else f"{hip}:{spec}"
            if item.get("protocol"):
                spec += "/" + expect_str(doc, item["protocol"], p + ("protocol",))
        else:
            spec = expect_str(doc, item, p, 'a port such as "8080:80"')
            if ":" not in spec.split("/")[0]:
                doc.fail(p, f"port {spec!r} has no host port: write HOSTPORT:{spec} "
                            "(CNI port mapping has no random host port)")
        try:
            parse_publish(spec)
        except ArgumentError as e:
            doc.fail(p, str(e))
        out.append(spec)
    return out


def _host_name(doc: Document, value: str, path: KeyPath, what: str) -> None:
    """Host names and aliases go into hosts files: RFC 1123 only (no newline can add a line)."""
    from ..options import parse_hostname

    try:
        parse_hostname(value, what)
    except ArgumentError as e:
        doc.fail(path, str(e))


def _service_networks(doc: Document, value: Any, path: KeyPath) -> list[ServiceNetwork]:
    out: list[ServiceNetwork] = []
    if isinstance(value, list):
        for i, item in enumerate(value):
            out.append(ServiceNetwork(expect_str(doc, item, path + (i,), "a network name")))
    elif isinstance(value, dict):
        for key, conf in value.items():
            p = path + (str(key),)
            sn = ServiceNetwork(str(key))
            m = expect_mapping(doc, conf, p, "a mapping with aliases and ipv4_address (or nothing)")
            check_keys(doc, m, p, NET_ATTACH_KEYS, {
                "ipv6_address": "static IPv6 addresses are not supported yet",
                "priority": "networks attach in the order written",
                "link_local_ips": "not supported",
                "mac_address": "not supported yet",
                "driver_opts": "not supported",
            })
            if m.get("aliases") is not None:
                sn.aliases = _str_list(doc, m["aliases"], p + ("aliases",))
                for i, alias in enumerate(sn.aliases):
                    _host_name(doc, alias, p + ("aliases", i), "alias")
            if m.get("ipv4_address") is not None:
                raw = expect_str(doc, m["ipv4_address"], p + ("ipv4_address",), "an IPv4 address")
                try:
                    sn.ipv4_address = parse_ip(raw)
                except ArgumentError as e:
                    doc.fail(p + ("ipv4_address",), str(e))
            out.append(sn)
    else:
        doc.fail(path, f"expected a list of network names or a mapping, got {type_name(value)}")
    names = [n.key for n in out]
    if len(set(names)) != len(names):
        doc.fail(path, "a network is listed twice")
    return out


def _depends(doc: Document, value: Any, path: KeyPath) -> list[str]:
    if isinstance(value, list):
        return [expect_str(doc, v, path + (i,), "a service name") for i, v in enumerate(value)]
    if isinstance(value, dict):
        for k, v in value.items():
            p = path + (str(k),)
            m = expect_mapping(doc, v, p)
            check_keys(doc, m, p, DEPENDS_KEYS)
            cond = m.get("condition", "service_started")
            if cond != "service_started":
                doc.fail(p + ("condition",), f"condition {cond!r} is not supported: only service_started "
                                             "(no health checks, no wait for completion)")
        return [str(k) for k in value]
    doc.fail(path, f"expected a list of service names or a mapping, got {type_name(value)}")


def parse_service(doc: Document, name: str, value: Any, path: KeyPath) -> Service:
    m = expect_mapping(doc, value, path, "a mapping of service settings")
    check_keys(doc, m, path, SERVICE_KEYS, SERVICE_UNSUPPORTED)
    if m.get("image") is None:
        doc.fail(path, "missing image: every service needs image: (build: is not supported)")
    svc = Service(name=name, image=expect_str(doc, m["image"], path + ("image",), "an image reference"),
                  path=path, raw=m)
    if m.get("command") is not None:
        svc.command = _words(doc, m["command"], path + ("command",))
    if m.get("entrypoint") is not None:
        svc.entrypoint = _words(doc, m["entrypoint"], path + ("entrypoint",))
    if "environment" in m:
        env = m["environment"]
        if isinstance(env, dict):  # a null value means "take it from our environment"
            svc.environment = {str(k): None if v is None else string_map(doc, {k: v}, path + ("environment",),
                                                                            "environment")[str(k)]
                               for k, v in env.items()}
        else:
            items = _str_list(doc, env, path + ("environment",), "a mapping or a list of KEY=VALUE")
            svc.environment = {k: (v if sep else None) for k, sep, v in (i.partition("=") for i in items)}
    if "ports" in m:
        svc.ports = _ports(doc, m["ports"], path + ("ports",))
    if m.get("networks") is not None:
        svc.networks = _service_networks(doc, m["networks"], path + ("networks",))
    if m.get("hostname") is not None:
        svc.hostname = expect_str(doc, m["hostname"], path + ("hostname",))
        _host_name(doc, svc.hostname, path + ("hostname",), "hostname")
    if m.get("depends_on") is not None:
        svc.depends_on = _depends(doc, m["depends_on"], path + ("depends_on",))
    if "restart" in m:
        r = m["restart"]
        if r is not False and str(r) != "no":
            doc.fail(path + ("restart",), f'restart {r!r} is not supported: only "no" (quote it: "no")')
    if "labels" in m:
        svc.labels = string_map(doc, m["labels"], path + ("labels",), "labels")
    for key in ("container_name", "working_dir", "user", "stop_signal"):
        if m.get(key) is not None:
            setattr(svc, key, expect_str(doc, m[key], path + (key,)))
    for key in ("init", "privileged", "read_only", "tty", "stdin_open"):
        if key in m:
            setattr(svc, key, expect_bool(doc, m[key], path + (key,)))
    for key in ("cap_add", "cap_drop", "extra_hosts"):
        if m.get(key) is not None:
            setattr(svc, key, _str_list(doc, m[key], path + (key,)))
    if isinstance(m.get("extra_hosts"), dict):
        svc.extra_hosts = [f"{k}:{v}" for k, v in string_map(doc, m["extra_hosts"], path + ("extra_hosts",),
                                                              "extra_hosts").items()]
    if m.get("volumes") is not None:
        vols = m["volumes"]
        if not isinstance(vols, list):
            doc.fail(path + ("volumes",), f"expected a list of SRC:DST[:OPTS], got {type_name(vols)}")
        for i, v in enumerate(vols):
            if not isinstance(v, str):
                doc.fail(path + ("volumes", i), "only the short syntax SRC:DST[:OPTS] is supported")
            src = v.split(":", 1)[0]
            if src.startswith("."):  # relative to the project directory, as compose does
                v = str((Path(doc.source).resolve().parent / src).resolve()) + v[len(src):]
            svc.volumes.append(v)
    return svc


def _order(doc: Document, services: dict[str, Service]) -> list[Service]:
    """Dependencies first; a cycle or an unknown service is an error."""
    done: list[Service] = []
    state: dict[str, int] = {}

    def visit(name: str, chain: list[str]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            doc.fail(services[chain[0]].path + ("depends_on",), f"dependency cycle: {' -> '.join(chain + [name])}")
        state[name] = 1
        svc = services[name]
        for dep in svc.depends_on:
            if dep not in services:
                doc.fail(svc.path + ("depends_on",), f"unknown service {dep!r}: expected one of "
                                                     f"{', '.join(sorted(services))}")
            visit(dep, chain + [name])
        state[name] = 2
        done.append(svc)

    for n in services:
        visit(n, [])
    return done


def load_project(file: str | os.PathLike[str] | None = None, project_name: str | None = None,
                 environ: dict[str, str] | None = None) -> Project:
    from .interpolate import interpolate, read_env_file

    path = Path(file) if file else find_file()
    doc = load(path)
    workdir = path.resolve().parent
    env = {**read_env_file(workdir / ".env"), **(environ if environ is not None else os.environ)}
    interpolate(doc, env)
    top = expect_mapping(doc, doc.data, (), "a mapping with services:")
    check_keys(doc, top, (), TOP_KEYS)
    for key in ("volumes", "configs", "secrets"):
        if top.get(key):
            doc.fail((key,), f"top-level {key} are not supported by cnirun; remove them")
    if "version" in top:
        expect_str(doc, top["version"], ("version",))  # obsolete in compose v2; accepted
    name = project_name or (str(top["name"]) if top.get("name") else "") or env.get("COMPOSE_PROJECT_NAME") \
        or workdir.name
    norm = normalize_project_name(name)
    if not norm:
        raise ConfigError(f"invalid project name {name!r}: use -p NAME with letters, digits, '_' or '-'")
    services_raw = expect_mapping(doc, top.get("services"), ("services",), "a mapping of service name: settings")
    if not services_raw:
        doc.fail(("services",) if "services" in top else (), "no services: define at least one under services:")
    services: dict[str, Service] = {}
    for sname, sval in services_raw.items():
        sname = str(sname)
        if not re.match(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$", sname):
            doc.fail(("services", sname), "invalid service name: use letters, digits, '_', '.', '-'")
        services[sname] = parse_service(doc, sname, sval, ("services", sname))
    nets_raw = expect_mapping(doc, top.get("networks"), ("networks",), "a mapping of network name: settings")
    networks = {str(k): parse_network(doc, str(k), v, ("networks", str(k)), norm) for k, v in nets_raw.items()}
    for svc in services.values():
        if not svc.networks:
            svc.networks = [ServiceNetwork("default")]
        for sn in svc.networks:
            if sn.key == "default" and "default" not in networks:
                networks["default"] = parse_network(doc, "default", None, ("networks",), norm)
            if sn.key not in networks:
                doc.fail(svc.path + ("networks", sn.key), f"network {sn.key!r} is not declared under the "
                                                          "top-level networks:")
    return Project(name=norm, file=str(path.resolve()), working_dir=str(workdir), doc=doc,
                   services=_order(doc, services), networks=networks)
