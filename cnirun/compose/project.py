"""The compose project: its services, networks and volumes, checked, in start order.

Parsing and merging live beside it (sources: which files, which directory,
which variables; merge: files, include, extends;
services: one service; mounts: volumes, secrets, configs). Names follow
Docker Compose v2: project from -p, COMPOSE_PROJECT_NAME, the top-level
`name:` or the project directory (normalised); networks
and volumes `PROJECT_KEY` unless external or named; containers
`PROJECT-SERVICE-N`.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

from ..core.errors import ConfigError
from ..netstore.located import Document, Path as KeyPath, check_keys, expect_mapping, expect_str, read_text
from ..netstore.network_spec import NetworkSpec, parse_network
from .mounts import FileSource, VolumeSpec, parse_files, parse_volumes
from .services import Dependency, Service, ServiceNetwork  # noqa: F401 - re-exported
from .sources import STDIN

TOP_KEYS = frozenset({"version", "name", "services", "networks", "volumes", "configs", "secrets", "include"})


@dataclass
class Project:
    name: str
    file: str  # the files, comma-separated (compose's config_files label)
    working_dir: str
    doc: Document
    services: list[Service]  # in start order (dependencies first), active profiles only
    networks: dict[str, NetworkSpec]  # key -> spec, only those used or declared
    volumes: dict[str, VolumeSpec] = field(default_factory=dict)
    secrets: dict[str, FileSource] = field(default_factory=dict)
    configs: dict[str, FileSource] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)  # one line per ignored key
    inactive: list[str] = field(default_factory=list)  # services left out by profiles
    unset_variables: list[str] = field(default_factory=list)  # used without a default, not set: compose warns

    def service(self, name: str) -> Service:
        for s in self.services:
            if s.name == name:
                return s
        raise KeyError(name)

    def container_names(self, svc: Service) -> list[str]:
        """PROJECT-SERVICE-1 .. -N (container_name when set: one container)."""
        if svc.container_name:
            return [svc.container_name]
        return [f"{self.name}-{svc.name}-{i}" for i in range(1, svc.replicas + 1)]

    def container_name(self, svc: Service, number: int = 1) -> str:
        return svc.container_name or f"{self.name}-{svc.name}-{number}"

    def used_networks(self) -> list[NetworkSpec]:
        keys = {n.key for s in self.services for n in s.networks if s.attaches}
        return [spec for key, spec in self.networks.items() if key in keys]

    def select(self, names: list[str], with_deps: bool = True) -> list[Service]:
        """The named services (and what they depend on unless with_deps is False), in start order."""
        known = {s.name: s for s in self.services}
        for n in names:
            if n not in known:
                raise ConfigError(f"no such service: {n} (services: {', '.join(known)})")
        want = set(names)
        if with_deps:
            for s in reversed(self.services):
                if s.name in want:
                    want.update(d for d, dep in s.depends_on.items() if d in known)
        return [s for s in self.services if s.name in want]


def normalize_project_name(name: str) -> str:
    """Compose's rule: lower case, keep [a-z0-9_-], start with a letter or digit."""
    out = re.sub(r"[^a-z0-9_-]", "", name.lower())
    return out.lstrip("_-")


def read_stdin() -> str:
    """The compose file of `-f -`: standard input, bounded and UTF-8 as any compose file."""
    if os.isatty(0):
        raise ConfigError("-f -: standard input is a terminal: pipe the compose file in, e.g. "
                          "cnirun compose -f - config < compose.yaml")
    try:
        return read_text(0, "stdin")
    except OSError as e:
        raise ConfigError(f"-f -: cannot read standard input: {e.strerror}") from None


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


def _active(services_raw: dict[str, Any], profiles: set[str]) -> set[str]:
    """Services without profiles, those of an active profile ('*': all)."""
    out = set()
    for name, m in services_raw.items():
        prof = (m or {}).get("profiles") if isinstance(m, dict) else None
        if not prof or "*" in profiles or profiles.intersection(prof if isinstance(prof, list) else [prof]):
            out.add(str(name))
    return out


def load_project(files: Any = None, project_name: str | None = None,
                 environ: dict[str, str] | None = None, profiles: list[str] | None = None,
                 project_directory: str | None = None, env_files: list[str] | None = None) -> Project:
    """The project of the -f files (a path or a list; default: COMPOSE_FILE, else compose.yaml etc.
    here or above), merged; sources.locate says which files, directory and variables."""
    from .merge import load_files
    from .services import parse_service
    from .sources import locate

    given = [str(f) for f in (files if isinstance(files, (list, tuple)) else [files] if files else [])]
    found = locate(given, environ if environ is not None else dict(os.environ), project_directory, env_files)
    workdir, paths, env = found.workdir, found.files, found.variables
    texts = {found.stdin_path: read_stdin()} if found.stdin else {}
    doc = load_files(paths, env, texts, workdir)
    top = expect_mapping(doc, doc.data, (), "a mapping with services:")
    check_keys(doc, top, (), TOP_KEYS)
    if "version" in top:
        expect_str(doc, top["version"], ("version",))  # obsolete in compose v2; accepted
    # compose's precedence: -p, COMPOSE_PROJECT_NAME, the top-level name:, the project directory's name.
    name = project_name or env.get("COMPOSE_PROJECT_NAME") or (str(top["name"]) if top.get("name") else "") \
        or workdir.name
    norm = normalize_project_name(name)
    if not norm:
        raise ConfigError(f"invalid project name {name!r}: use -p NAME with letters, digits, '_' or '-'")
    warnings: list[str] = list(found.warnings)

    def warn(path: KeyPath, message: str) -> None:
        line = f"{doc.where(path)}: {message}"
        if line not in warnings:
            warnings.append(line)

    volumes = parse_volumes(doc, top.get("volumes"), norm)
    secrets = parse_files(doc, top.get("secrets"), "secrets", norm, env)
    configs = parse_files(doc, top.get("configs"), "configs", norm, env)
    services_raw = expect_mapping(doc, top.get("services"), ("services",), "a mapping of service name: settings")
    if not services_raw:
        doc.fail(("services",) if "services" in top else (), "no services: define at least one under services:")
    if profiles is None:
        profiles = [p.strip() for p in env.get("COMPOSE_PROFILES", "").split(",") if p.strip()]
    active = _active(services_raw, set(profiles))
    services: dict[str, Service] = {}
    for sname, sval in services_raw.items():
        sname = str(sname)
        if not re.match(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$", sname):
            doc.fail(("services", sname), "invalid service name: use letters, digits, '_', '.', '-'")
        services[sname] = parse_service(doc, sname, sval, ("services", sname), norm, volumes, secrets, configs, warn,
                                        env)
    _activate_dependencies(services, active)
    _link_dependencies(doc, services)
    nets_raw = expect_mapping(doc, top.get("networks"), ("networks",), "a mapping of network name: settings")
    networks = {str(k): parse_network(doc, str(k), v, ("networks", str(k)), norm) for k, v in nets_raw.items()}
    _check_networks(doc, services, networks, norm)
    ordered = [s for s in _order(doc, services) if s.name in active]
    return Project(name=norm, file=",".join(STDIN if p in texts else str(p.resolve()) for p in paths),
                   working_dir=str(workdir), doc=doc, services=ordered, networks=networks, volumes=volumes,
                   secrets=secrets, configs=configs, warnings=warnings,
                   inactive=[n for n in services if n not in active], unset_variables=env.unset)


def _activate_dependencies(services: dict[str, Service], active: set[str]) -> None:
    """A service that an active one depends on is activated with it, as compose does."""
    grew = True
    while grew:
        grew = False
        for n in list(active):
            for dep in services[n].depends_on:
                if dep in services and dep not in active:
                    active.add(dep)
                    grew = True


def _link_dependencies(doc: Document, services: dict[str, Service]) -> None:
    """An unknown dependency is an error when required, dropped otherwise; network_mode service:X
    depends on X."""
    for svc in services.values():
        for dep, d in list(svc.depends_on.items()):
            if dep not in services:
                if d.required:
                    doc.fail(svc.path + ("depends_on",), f"unknown service {dep!r}: expected one of "
                                                         f"{', '.join(sorted(services))}")
                del svc.depends_on[dep]
        mode = svc.network_mode
        for prefix in ("service:",):
            if mode.startswith(prefix):
                target = mode[len(prefix):]
                if target not in services:
                    doc.fail(svc.path + ("network_mode",), f"unknown service {target!r}")
                svc.depends_on.setdefault(target, Dependency())


def _check_networks(doc: Document, services: dict[str, Service], networks: dict[str, NetworkSpec],
                    norm: str) -> None:
    """Every attached service is on networks declared at the top level (default: the project's
    default network, made when a service uses it)."""
    for svc in services.values():
        if not svc.attaches:
            continue
        if not svc.networks:
            svc.networks = [ServiceNetwork("default")]
        for sn in svc.networks:
            if sn.key == "default" and "default" not in networks:
                networks["default"] = parse_network(doc, "default", None, ("networks",), norm)
            if sn.key not in networks:
                doc.fail(svc.path + ("networks", sn.key), f"network {sn.key!r} is not declared under the "
                                                          "top-level networks:")
