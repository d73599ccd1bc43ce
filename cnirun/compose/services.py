"""One compose service, checked and normalised into what `cnirun run` takes.

Every key `docker run` can express is accepted with Docker Compose v2's
meaning; Swarm-only keys and the few a single CNI host cannot honour are
ignored with one warning each (Project.warnings), as compose does outside
Swarm; anything else unknown is an error naming its location.
"""
from __future__ import annotations

import hashlib
import json
import shlex
from dataclasses import dataclass, field
from typing import Any

from ..core.errors import ArgumentError
from ..netstore.located import (
    Document,
    Path as KeyPath,
    check_keys,
    expect_bool,
    expect_int,
    expect_mapping,
    expect_str,
    string_map,
    type_name,
)
from ..network.options import parse_ip, parse_ip6, parse_publish
from .durations import duration, size
from .mounts import FileSource, Mounts, VolumeSpec, parse_service_files, parse_service_volumes, plain_name
from .service_keys import SERVICE_IGNORED, SERVICE_KEYS, SERVICE_REFUSED
from .x_cni import parse_x_cni

DEPLOY_KEYS = frozenset({"replicas", "resources", "restart_policy", "labels", "mode", "placement",
                         "update_config", "rollback_config", "endpoint_mode"})
SWARM_DEPLOY = ("mode", "placement", "update_config", "rollback_config", "endpoint_mode", "labels")
BUILD_KEYS = frozenset({"context", "dockerfile", "args", "target", "labels", "network", "cache_from",
                        "cache_to", "shm_size", "extra_hosts", "platforms", "tags", "no_cache", "pull",
                        "secrets", "ssh", "dockerfile_inline", "additional_contexts", "isolation",
                        "privileged", "ulimits"})
HEALTH_KEYS = frozenset({"test", "interval", "timeout", "retries", "start_period", "start_interval", "disable"})
CONDITIONS = ("service_started", "service_healthy", "service_completed_successfully")
NET_ATTACH_KEYS = frozenset({"aliases", "ipv4_address", "ipv6_address", "priority", "link_local_ips",
                             "mac_address", "driver_opts"})
# More containers of one service than a host runs: a typo or a hostile file, refused before any is made.
MAX_REPLICAS = 1000
PULL_POLICIES = ("always", "never", "missing", "if_not_present", "build", "daily", "weekly")


@dataclass
class ServiceNetwork:
    key: str  # key under the top-level networks:
    aliases: list[str] = field(default_factory=list)
    ipv4_address: str = ""
    ipv6_address: str = ""  # on a network with enable_ipv6 (options_for checks it has an IPv6 subnet)


@dataclass
class Dependency:
    condition: str = "service_started"
    required: bool = True
    restart: bool = False


@dataclass
class Build:
    context: str
    dockerfile: str = "Dockerfile"
    args: dict[str, str] = field(default_factory=dict)
    target: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    no_cache: bool = False
    pull: bool = False


@dataclass
class Service:
    name: str
    image: str
    path: KeyPath
    build: Build | None = None
    command: list[str] | None = None
    entrypoint: list[str] | None = None
    environment: dict[str, str | None] = field(default_factory=dict)
    ports: list[str] = field(default_factory=list)
    # What `config` prints for ports: the short syntax, or the long one for a port with mode, name or
    # app_protocol (accepted: they change nothing in a single-host publish).
    ports_shown: list[Any] = field(default_factory=list)
    expose: list[str] = field(default_factory=list)
    networks: list[ServiceNetwork] = field(default_factory=list)
    network_mode: str = ""  # host, none, service:X, container:X: no CNI attachment
    hostname: str = ""
    depends_on: dict[str, Dependency] = field(default_factory=dict)
    restart: str = "no"
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
    volumes: list[str] = field(default_factory=list)  # docker -v entries, named volumes already PROJECT_KEY
    mounts: Mounts = field(default_factory=Mounts)  # volumes, secrets and configs as `config` prints them
    tmpfs: list[str] = field(default_factory=list)
    stop_signal: str = ""
    stop_grace_period: float | None = None
    tty: bool = False
    stdin_open: bool = False
    healthcheck: dict[str, Any] | None = None
    platform: str = ""
    runtime: str = ""  # the engine's OCI runtime (docker run --runtime)
    sysctls: dict[str, str] = field(default_factory=dict)
    ulimits: list[str] = field(default_factory=list)
    devices: list[str] = field(default_factory=list)
    memory: str = ""
    memory_reservation: str = ""
    cpus: float | None = None
    cpu_shares: int | None = None
    pids_limit: int | None = None
    shm_size: str = ""
    security_opt: list[str] = field(default_factory=list)
    group_add: list[str] = field(default_factory=list)
    log_driver: str = ""
    log_opts: dict[str, str] = field(default_factory=dict)
    profiles: list[str] = field(default_factory=list)
    replicas: int = 1
    pull_policy: str = "missing"
    dns: list[str] = field(default_factory=list)
    dns_search: list[str] = field(default_factory=list)
    mac_address: str = ""
    ingress_rate: str = ""  # x-cni: {ingress_rate: 10mbit} (network.rates.parse_rate)
    egress_rate: str = ""
    ingress_allow: list[str] = field(default_factory=list)  # x-cni: {ingress_allow: [web:5432]} (compose.x_cni)
    egress_allow: list[str] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)

    def config_hash(self) -> str:
        """What decides whether `up` recreates a container: the service's keys but its replica count
        (scaling up or down leaves the containers that stay alone, as compose does)."""
        raw = {k: v for k, v in self.raw.items() if k != "scale" and v is not None}
        if isinstance(raw.get("deploy"), dict):
            deploy = {k: v for k, v in raw.pop("deploy").items() if k != "replicas"}
            if deploy:
                raw["deploy"] = deploy
        return hashlib.sha256(json.dumps(raw, sort_keys=True, default=str).encode()).hexdigest()

    @property
    def attaches(self) -> bool:
        """Whether the service gets CNI networks (network_mode takes the engine's instead)."""
        return not self.network_mode


def words(doc: Document, value: Any, path: KeyPath) -> list[str]:
    """command/entrypoint: a string (split like a shell) or a list of strings."""
    if isinstance(value, str):
        try:
            return shlex.split(value)
        except ValueError as e:
            doc.fail(path, f"cannot split {value!r} into words ({e}): use a list of strings")
    if isinstance(value, list):
        return [expect_str(doc, v, path + (i,)) for i, v in enumerate(value)]
    doc.fail(path, f"expected a string or a list of strings, got {type_name(value)}")


def str_list(doc: Document, value: Any, path: KeyPath, what: str = "a list of strings") -> list[str]:
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list):
        doc.fail(path, f"expected {what}, got {type_name(value)}")
    return [expect_str(doc, v, path + (i,)) for i, v in enumerate(value)]


def _ports(doc: Document, svc: Service, value: Any, path: KeyPath, warn: Any) -> None:
    if not isinstance(value, list):
        doc.fail(path, f"expected a list of ports such as \"8080:80\", got {type_name(value)}")
    for i, item in enumerate(value):
        p = path + (i,)
        if isinstance(item, dict):
            check_keys(doc, item, p, frozenset({"target", "published", "host_ip", "protocol", "mode", "name",
                                                "app_protocol"}))
            if item.get("target") is None:
                doc.fail(p, "a port needs target")
            if item.get("mode") not in (None, "host", "ingress"):
                doc.fail(p + ("mode",), "expected host or ingress")
            target = expect_str(doc, item["target"], p + ("target",))
            if item.get("published") in (None, ""):
                spec = target
            else:
                spec = f"{expect_str(doc, item['published'], p + ('published',))}:{target}"
                if item.get("host_ip"):
                    hip = expect_str(doc, item["host_ip"], p + ("host_ip",))
                    spec = f"[{hip}]:{spec}" if ":" in hip else f"{hip}:{spec}"
            if item.get("protocol"):
                spec += "/" + expect_str(doc, item["protocol"], p + ("protocol",))
            shown: Any = _long_port(doc, item, p) if any(item.get(k) for k in ("mode", "name", "app_protocol")) \
                else spec
        else:
            spec = shown = expect_str(doc, item, p, 'a port such as "8080:80"')
        if ":" not in spec.split("/")[0]:
            # Compose would pick a random host port; CNI's portmap needs one named.
            warn(p, f"port {spec} has no host port: not published (write HOSTPORT:{spec} to publish it); "
                    "it stays reachable from the service's networks")
            svc.expose.append(spec)
            continue
        try:
            parse_publish(spec)
        except ArgumentError as e:
            doc.fail(p, str(e))
        svc.ports.append(spec)
        svc.ports_shown.append(shown)


def _long_port(doc: Document, item: dict[str, Any], path: KeyPath) -> dict[str, Any]:
    """A long-syntax port as `config` prints it: its keys as given, target a number."""
    out: dict[str, Any] = {}
    for key in ("target", "published", "host_ip", "protocol", "mode", "name", "app_protocol"):
        if item.get(key) not in (None, ""):
            out[key] = expect_str(doc, item[key], path + (key,))
    out["target"] = int(out["target"]) if out["target"].isdigit() else out["target"]
    return out


def host_name(doc: Document, value: str, path: KeyPath, what: str) -> None:
    """Host names and aliases go into hosts files: RFC 1123 only (no newline can add a line)."""
    from ..network.options import parse_hostname

    try:
        parse_hostname(value, what)
    except ArgumentError as e:
        doc.fail(path, str(e))


def _service_networks(doc: Document, value: Any, path: KeyPath, warn: Any) -> list[ServiceNetwork]:
    out: list[ServiceNetwork] = []
    if isinstance(value, list):
        for i, item in enumerate(value):
            out.append(ServiceNetwork(expect_str(doc, item, path + (i,), "a network name")))
    elif isinstance(value, dict):
        for key, conf in value.items():
            p = path + (str(key),)
            sn = ServiceNetwork(str(key))
            m = expect_mapping(doc, conf, p, "a mapping with aliases and ipv4_address (or nothing)")
            check_keys(doc, m, p, NET_ATTACH_KEYS)
            for k in ("link_local_ips", "mac_address", "driver_opts"):
                if m.get(k) is not None:
                    warn(p + (k,), "not supported per network by cnirun: ignored")
            if m.get("aliases") is not None:
                sn.aliases = str_list(doc, m["aliases"], p + ("aliases",))
                for i, alias in enumerate(sn.aliases):
                    host_name(doc, alias, p + ("aliases", i), "alias")
            if m.get("ipv4_address") is not None:
                raw = expect_str(doc, m["ipv4_address"], p + ("ipv4_address",), "an IPv4 address")
                try:
                    sn.ipv4_address = parse_ip(raw)
                except ArgumentError as e:
                    doc.fail(p + ("ipv4_address",), str(e))
            if m.get("ipv6_address") is not None:
                raw = expect_str(doc, m["ipv6_address"], p + ("ipv6_address",), "an IPv6 address")
                try:
                    sn.ipv6_address = parse_ip6(raw)
                except ArgumentError as e:
                    doc.fail(p + ("ipv6_address",), str(e))
            out.append(sn)
        if any(isinstance(c, dict) and c.get("priority") is not None for c in value.values()):
            out.sort(key=lambda n: -int((value[n.key] or {}).get("priority") or 0))
    else:
        doc.fail(path, f"expected a list of network names or a mapping, got {type_name(value)}")
    names = [n.key for n in out]
    if len(set(names)) != len(names):
        doc.fail(path, "a network is listed twice")
    return out


def _depends(doc: Document, value: Any, path: KeyPath) -> dict[str, Dependency]:
    if isinstance(value, list):
        return {expect_str(doc, v, path + (i,), "a service name"): Dependency() for i, v in enumerate(value)}
    if isinstance(value, dict):
        out: dict[str, Dependency] = {}
        for k, v in value.items():
            p = path + (str(k),)
            m = expect_mapping(doc, v, p)
            check_keys(doc, m, p, frozenset({"condition", "restart", "required"}))
            cond = str(m.get("condition") or "service_started")
            if cond not in CONDITIONS:
                doc.fail(p + ("condition",), f"unknown condition {cond!r}: expected one of {', '.join(CONDITIONS)}")
            out[str(k)] = Dependency(cond, expect_bool(doc, m["required"], p + ("required",))
                                     if "required" in m else True,
                                     expect_bool(doc, m["restart"], p + ("restart",)) if "restart" in m else False)
        return out
    doc.fail(path, f"expected a list of service names or a mapping, got {type_name(value)}")


def _healthcheck(doc: Document, value: Any, path: KeyPath) -> dict[str, Any] | None:
    m = expect_mapping(doc, value, path)
    check_keys(doc, m, path, HEALTH_KEYS)
    if m.get("disable") and expect_bool(doc, m["disable"], path + ("disable",)):
        return {"test": ["NONE"]}
    out: dict[str, Any] = {}
    test = m.get("test")
    if isinstance(test, str):
        out["test"] = ["CMD-SHELL", test]
    elif isinstance(test, list):
        out["test"] = str_list(doc, test, path + ("test",))
        if out["test"] and out["test"][0] not in ("CMD", "CMD-SHELL", "NONE"):
            doc.fail(path + ("test",), 'a test list starts with "CMD", "CMD-SHELL" or "NONE"')
    elif test is not None:
        doc.fail(path + ("test",), f"expected a string or a list, got {type_name(test)}")
    for key in ("interval", "timeout", "start_period", "start_interval"):
        if m.get(key) is not None:
            out[key] = duration(doc, m[key], path + (key,))
    if m.get("retries") is not None:
        out["retries"] = expect_int(doc, m["retries"], path + ("retries",))
    return out


def _build(doc: Document, value: Any, path: KeyPath, warn: Any) -> Build:
    m = {"context": value} if isinstance(value, str) else expect_mapping(doc, value, path)
    check_keys(doc, m, path, BUILD_KEYS)
    for k in ("cache_to", "secrets", "ssh", "additional_contexts", "platforms", "tags", "isolation"):
        if m.get(k) is not None:
            warn(path + (k,), "not supported by cnirun's build: ignored")
    if m.get("dockerfile_inline") is not None:
        doc.fail(path + ("dockerfile_inline",), "not supported: write the Dockerfile to a file")
    b = Build(context=expect_str(doc, m.get("context") or ".", path + ("context",)))
    if m.get("dockerfile") is not None:
        b.dockerfile = expect_str(doc, m["dockerfile"], path + ("dockerfile",))
    if m.get("args") is not None:
        b.args = string_map(doc, m["args"], path + ("args",), "build args")
    if m.get("labels") is not None:
        b.labels = string_map(doc, m["labels"], path + ("labels",), "labels")
    if m.get("target") is not None:
        b.target = expect_str(doc, m["target"], path + ("target",))
    b.no_cache = bool(m.get("no_cache"))
    b.pull = bool(m.get("pull"))
    return b


def _cpus(doc: Document, value: Any, path: KeyPath) -> float:
    try:
        cpus = float(expect_str(doc, value, path, "a number of CPUs"))
    except ValueError:
        cpus = -1.0
    if not 0 < cpus < 1e6:  # also refuses nan and inf
        doc.fail(path, f"invalid cpus {value!r}: expected a positive number such as 0.5 or 2")
    return cpus


def _deploy(doc: Document, svc: Service, value: Any, path: KeyPath, warn: Any) -> None:
    m = expect_mapping(doc, value, path)
    check_keys(doc, m, path, DEPLOY_KEYS)
    for key in SWARM_DEPLOY:
        if m.get(key) is not None and not (key == "mode" and m[key] == "replicated"):
            warn(path + (key,), "Swarm-only: ignored")
    if m.get("replicas") is not None:
        svc.replicas = expect_int(doc, m["replicas"], path + ("replicas",))
    rp = m.get("restart_policy")
    if rp is not None:
        r = expect_mapping(doc, rp, path + ("restart_policy",))
        cond = str(r.get("condition") or "any")
        svc.restart = {"none": "no", "any": "always"}.get(cond, "on-failure")
        if cond == "on-failure" and r.get("max_attempts") is not None:
            svc.restart = f"on-failure:{expect_int(doc, r['max_attempts'], path + ('restart_policy', 'max_attempts'))}"
        for k in ("delay", "window"):
            if r.get(k) is not None:
                warn(path + ("restart_policy", k), "Swarm-only: ignored")
    res = expect_mapping(doc, m.get("resources"), path + ("resources",))
    lim = expect_mapping(doc, res.get("limits"), path + ("resources", "limits"))
    rsv = expect_mapping(doc, res.get("reservations"), path + ("resources", "reservations"))
    lp, rpath = path + ("resources", "limits"), path + ("resources", "reservations")
    if lim.get("cpus") is not None:
        svc.cpus = _cpus(doc, lim["cpus"], lp + ("cpus",))
    if lim.get("memory") is not None:
        svc.memory = size(doc, lim["memory"], lp + ("memory",))
    if lim.get("pids") is not None:
        svc.pids_limit = expect_int(doc, lim["pids"], lp + ("pids",))
    if rsv.get("memory") is not None:
        svc.memory_reservation = size(doc, rsv["memory"], rpath + ("memory",))
    for k in ("cpus", "devices", "generic_resources"):
        if rsv.get(k) is not None:
            warn(rpath + (k,), "a reservation docker run cannot express: ignored")


def parse_service(doc: Document, name: str, value: Any, path: KeyPath, project: str,
                  volumes: dict[str, VolumeSpec], secrets: dict[str, FileSource], configs: dict[str, FileSource],
                  warn: Any, env: Any = None) -> Service:
    m = expect_mapping(doc, value, path, "a mapping of service settings")
    check_keys(doc, m, path, SERVICE_KEYS, SERVICE_REFUSED)
    for key, why in SERVICE_IGNORED.items():
        if m.get(key) is not None:
            warn(path + (key,), why)
    svc = _image_and_command(doc, name, m, path, project, warn)
    _environment(doc, svc, m, path, env)
    _network_keys(doc, svc, m, path, warn)
    _container_keys(doc, svc, m, path)
    _resource_keys(doc, svc, m, path, warn)
    _mount_keys(doc, svc, m, path, project, volumes, secrets, configs)
    if m.get("x-cni") is not None:
        parse_x_cni(doc, svc, m["x-cni"], path + ("x-cni",))
    return svc


def _image_and_command(doc: Document, name: str, m: dict[str, Any], path: KeyPath, project: str,
                       warn: Any) -> Service:
    """The service with its image (or build:, tagged PROJECT-NAME), command and entrypoint."""
    if m.get("image") is None and m.get("build") is None:
        doc.fail(path, "a service needs image: or build:")
    image = expect_str(doc, m["image"], path + ("image",), "an image reference") if m.get("image") is not None \
        else f"{project}-{name}"  # compose's tag for a built image
    svc = Service(name=name, image=image, path=path, raw=m)
    if m.get("build") is not None:
        svc.build = _build(doc, m["build"], path + ("build",), warn)
    if m.get("command") is not None:
        svc.command = words(doc, m["command"], path + ("command",))
    if m.get("entrypoint") is not None:
        svc.entrypoint = words(doc, m["entrypoint"], path + ("entrypoint",))
    return svc


def _network_keys(doc: Document, svc: Service, m: dict[str, Any], path: KeyPath, warn: Any) -> None:
    """ports, expose, network_mode, networks, hostname."""
    if m.get("ports") is not None:
        _ports(doc, svc, m["ports"], path + ("ports",), warn)
    if m.get("expose") is not None:
        if not isinstance(m["expose"], list):
            doc.fail(path + ("expose",), "expected a list of ports")
        svc.expose += [expect_str(doc, e, path + ("expose", i), "a port") for i, e in enumerate(m["expose"])]
    if m.get("network_mode") is not None:
        mode = expect_str(doc, m["network_mode"], path + ("network_mode",))
        if mode not in ("host", "none", "bridge") and not mode.startswith(("service:", "container:")):
            doc.fail(path + ("network_mode",), f"invalid network_mode {mode!r}: expected host, none, "
                                               "service:NAME or container:NAME")
        if mode == "bridge":
            warn(path + ("network_mode",), "bridge means the project's CNI networks here")
        else:
            svc.network_mode = mode
            if m.get("networks") is not None:
                doc.fail(path, "network_mode and networks contradict each other: keep one")
    if m.get("networks") is not None:
        svc.networks = _service_networks(doc, m["networks"], path + ("networks",), warn)
    if m.get("hostname") is not None:
        svc.hostname = expect_str(doc, m["hostname"], path + ("hostname",))
        host_name(doc, svc.hostname, path + ("hostname",), "hostname")


def _container_keys(doc: Document, svc: Service, m: dict[str, Any], path: KeyPath) -> None:
    """depends_on, restart, labels, the container's plain settings, extra_hosts, stop_grace_period,
    healthcheck."""
    if m.get("depends_on") is not None:
        svc.depends_on = _depends(doc, m["depends_on"], path + ("depends_on",))
    if "restart" in m:
        r = "no" if m["restart"] is False else str(m["restart"])
        from ..engines.spec import parse_restart

        try:
            parse_restart(r)
        except ValueError as e:
            doc.fail(path + ("restart",), str(e))
        svc.restart = r
    if m.get("labels") is not None:
        svc.labels = string_map(doc, m["labels"], path + ("labels",), "labels")
    for key in ("container_name", "working_dir", "user", "stop_signal", "platform", "mac_address", "runtime"):
        if m.get(key) is not None:
            setattr(svc, key, expect_str(doc, m[key], path + (key,)))
    if svc.container_name:
        plain_name(doc, svc.container_name, path + ("container_name",), "container")
    if svc.container_name and (m.get("scale") or 1) != 1:
        doc.fail(path + ("container_name",), "container_name and scale > 1 contradict each other: drop one")
    for key in ("init", "privileged", "read_only", "tty", "stdin_open"):
        if key in m:
            setattr(svc, key, expect_bool(doc, m[key], path + (key,)))
    for key in ("cap_add", "cap_drop", "security_opt", "group_add", "dns", "dns_search", "profiles"):
        if m.get(key) is not None:
            setattr(svc, key, str_list(doc, m[key], path + (key,)))
    if isinstance(m.get("extra_hosts"), dict):
        svc.extra_hosts = [f"{k}:{v}" for k, v in string_map(doc, m["extra_hosts"], path + ("extra_hosts",),
                                                              "extra_hosts").items()]
    elif m.get("extra_hosts") is not None:
        svc.extra_hosts = [h.replace("=", ":", 1) for h in str_list(doc, m["extra_hosts"], path + ("extra_hosts",))]
    if m.get("stop_grace_period") is not None:
        svc.stop_grace_period = duration(doc, m["stop_grace_period"], path + ("stop_grace_period",))
    if m.get("healthcheck") is not None:
        svc.healthcheck = _healthcheck(doc, m["healthcheck"], path + ("healthcheck",))


def _resource_keys(doc: Document, svc: Service, m: dict[str, Any], path: KeyPath, warn: Any) -> None:
    """Kernel settings and limits (sysctls, ulimits, devices, memory, CPUs, pids), logging, replicas
    (scale, deploy), pull_policy."""
    if m.get("sysctls") is not None:
        svc.sysctls = string_map(doc, m["sysctls"], path + ("sysctls",), "sysctls")
    if m.get("ulimits") is not None:
        for k, v in expect_mapping(doc, m["ulimits"], path + ("ulimits",)).items():
            if isinstance(v, dict):
                limits = [expect_int(doc, v.get(x), path + ("ulimits", str(k), x)) for x in ("soft", "hard")]
                svc.ulimits.append(f"{k}={limits[0]}:{limits[1]}")
            else:
                svc.ulimits.append(f"{k}={expect_int(doc, v, path + ('ulimits', str(k)))}")
    if m.get("devices") is not None:
        if not isinstance(m["devices"], list):
            doc.fail(path + ("devices",), f"expected a list of devices, got {type_name(m['devices'])}")
        for i, d in enumerate(m["devices"]):
            if isinstance(d, dict):
                src = expect_str(doc, d.get("source"), path + ("devices", i, "source"), "a host device path")
                d = f"{src}:{expect_str(doc, d.get('target', src), path + ('devices', i, 'target'))}"
            svc.devices.append(expect_str(doc, d, path + ("devices", i), "HOST[:CONTAINER[:PERMISSIONS]]"))
    if m.get("mem_limit") is not None:
        svc.memory = size(doc, m["mem_limit"], path + ("mem_limit",))
    if m.get("mem_reservation") is not None:
        svc.memory_reservation = size(doc, m["mem_reservation"], path + ("mem_reservation",))
    if m.get("shm_size") is not None:
        svc.shm_size = size(doc, m["shm_size"], path + ("shm_size",))
    if m.get("cpus") is not None:
        svc.cpus = _cpus(doc, m["cpus"], path + ("cpus",))
    for key in ("cpu_shares", "pids_limit"):
        if m.get(key) is not None:
            setattr(svc, key, expect_int(doc, m[key], path + (key,)))
    if m.get("logging") is not None:
        lg = expect_mapping(doc, m["logging"], path + ("logging",))
        check_keys(doc, lg, path + ("logging",), frozenset({"driver", "options"}))
        svc.log_driver = expect_str(doc, lg["driver"], path + ("logging", "driver")) if lg.get("driver") else ""
        svc.log_opts = string_map(doc, lg.get("options") or {}, path + ("logging", "options"), "options")
    if m.get("scale") is not None:
        svc.replicas = expect_int(doc, m["scale"], path + ("scale",))
    if m.get("deploy") is not None:
        _deploy(doc, svc, m["deploy"], path + ("deploy",), warn)
    if not 0 <= svc.replicas <= MAX_REPLICAS:
        doc.fail(path + ("scale",), f"replicas must be 0 to {MAX_REPLICAS}, not {svc.replicas}")
    if m.get("pull_policy") is not None:
        svc.pull_policy = expect_str(doc, m["pull_policy"], path + ("pull_policy",))
        if svc.pull_policy not in PULL_POLICIES:
            doc.fail(path + ("pull_policy",), f"expected one of {', '.join(PULL_POLICIES)}")


def _mount_keys(doc: Document, svc: Service, m: dict[str, Any], path: KeyPath, project: str,
                volumes: dict[str, VolumeSpec], secrets: dict[str, FileSource], configs: dict[str, FileSource]) -> None:
    """volumes, tmpfs, secrets and configs: the container's mounts."""
    mounts = Mounts()
    if m.get("volumes") is not None:
        parse_service_volumes(doc, m["volumes"], path + ("volumes",), volumes, mounts)
    if m.get("tmpfs") is not None:
        mounts.tmpfs += str_list(doc, m["tmpfs"], path + ("tmpfs",))
    if m.get("secrets") is not None:
        parse_service_files(doc, m["secrets"], path + ("secrets",), secrets, "secrets", mounts, project)
    if m.get("configs") is not None:
        parse_service_files(doc, m["configs"], path + ("configs",), configs, "configs", mounts, project)
    svc.volumes, svc.tmpfs, svc.mounts = mounts.volumes, mounts.tmpfs, mounts


def _environment(doc: Document, svc: Service, m: dict[str, Any], path: KeyPath, env: Any) -> None:
    """env_file entries first (in order, read with the project's variables, then environment:'s), then
    environment: on top, as compose does."""
    if "environment" in m and m["environment"] is not None:
        own = m["environment"]
        if isinstance(own, dict):  # a null value means "take it from our environment"
            svc.environment.update({str(k): None if v is None else string_map(doc, {k: v}, path + ("environment",),
                                                                                "environment")[str(k)]
                                    for k, v in own.items()})
        else:
            items = str_list(doc, own, path + ("environment",), "a mapping or a list of KEY=VALUE")
            svc.environment.update({k: (v if sep else None) for k, sep, v in (i.partition("=") for i in items)})
    if m.get("env_file") is not None:
        from .envfile import lookup_of, service_env_files
        from .interpolate import Variables

        values = env if isinstance(env, Variables) else Variables(env or {})
        files = service_env_files(doc, m["env_file"], path + ("env_file",), values.over(lookup_of(svc.environment)))
        svc.environment = {**files, **svc.environment}
