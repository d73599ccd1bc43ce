"""Reading a project's files into one compose model, as Docker Compose v2 merges them.

Several `-f` files, `include:` entries and `extends:` all come down to the
same merge: mappings merge key by key, the "sequence" keys that compose
appends (ports, expose, cap_add, dns, ...) are concatenated without
duplicates, environment/labels/sysctls/extra_hosts merge by key, volumes,
secrets and configs by target, and everything else (command, entrypoint,
scalars) is replaced by the later file. Each file is interpolated with the
project's environment and its relative paths resolved before it is merged
(those of every -f file against the project directory, as compose-spec says;
those of an included or extended file against that file's directory), so a
merged model no longer depends on where a value came from.
"""
from __future__ import annotations

import os
from pathlib import Path as FsPath
from typing import Any, Mapping

from ..netstore.located import Document, Path as KeyPath, expect_mapping, expect_str, load, parse, type_name

# Service keys whose lists are concatenated (duplicates dropped) on merge.
APPEND_KEYS = frozenset({"ports", "expose", "cap_add", "cap_drop", "dns", "dns_search", "env_file", "devices",
                         "profiles", "security_opt", "tmpfs", "group_add", "external_links", "links"})
# Service keys merged by their KEY (list form KEY=VALUE turned into a mapping first).
KEYED_KEYS = frozenset({"environment", "labels", "sysctls", "extra_hosts", "annotations"})
# Service keys whose entries are merged by the path they mount at.
MOUNT_KEYS = frozenset({"volumes", "secrets", "configs"})
# Service keys replaced as a whole (a later command replaces the whole argv).
REPLACE_KEYS = frozenset({"command", "entrypoint"})


def _kv_map(value: Any, sep: str = "=") -> dict[str, Any]:
    if isinstance(value, dict):
        return dict(value)
    out: dict[str, Any] = {}
    for item in value or []:
        k, s, v = str(item).partition(sep if sep in str(item) else ":")
        out[k] = v if s else None
    return out


def _mount_target(entry: Any) -> str:
    if isinstance(entry, dict):
        return str(entry.get("target") or entry.get("source") or "")
    parts = str(entry).split(":")
    return parts[1] if len(parts) > 1 else parts[0]


def merge_service(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """One service's settings with `over` applied on `base` (compose's merge rules)."""
    out = dict(base)
    for key, value in over.items():
        if key not in out or value is None or out[key] is None or key in REPLACE_KEYS:
            out[key] = value
        elif key in APPEND_KEYS and isinstance(value, list) and isinstance(out[key], list):
            out[key] = list(out[key]) + [v for v in value if v not in out[key]]
        elif key in KEYED_KEYS:
            out[key] = {**_kv_map(out[key]), **_kv_map(value)}
        elif key in MOUNT_KEYS and isinstance(value, list) and isinstance(out[key], list):
            merged = {_mount_target(e): e for e in out[key]}
            merged.update({_mount_target(e): e for e in value})
            out[key] = list(merged.values())
        elif key in ("depends_on", "networks"):
            a = out[key] if isinstance(out[key], dict) else {str(n): None for n in out[key]}
            b = value if isinstance(value, dict) else {str(n): None for n in value}
            out[key] = {**a, **b}
        elif isinstance(value, dict) and isinstance(out[key], dict):
            out[key] = merge_mapping(out[key], value)
        else:
            out[key] = value
    return out


def merge_mapping(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_mapping(out[key], value)
        else:
            out[key] = value
    return out


def merge_top(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Two whole compose files: services by merge_service, the other sections key by key."""
    out = dict(base)
    for key, value in over.items():
        if key == "services" and isinstance(value, dict) and isinstance(out.get(key), dict):
            services = dict(out[key])
            for name, svc in value.items():
                prev = services.get(name)
                services[name] = merge_service(prev, svc or {}) if isinstance(prev, dict) else svc
            out[key] = services
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_mapping(out[key], value)
        else:
            out[key] = value
    return out


def _abs(base: FsPath, path: str) -> str:
    """A path relative to the file's directory, as compose resolves it (~ is the home directory)."""
    if path.startswith("~"):
        path = os.path.expanduser(path)
    return str((base / path).resolve()) if not os.path.isabs(path) else path


def _is_local_path(src: str) -> bool:
    return src.startswith((".", "/", "~"))


def resolve_paths(data: dict[str, Any], base: FsPath) -> None:
    """Relative paths of one file (build contexts, bind sources, env files, secret files) made absolute."""
    for svc in (data.get("services") or {}).values():
        if not isinstance(svc, dict):
            continue
        build = svc.get("build")
        if isinstance(build, str):
            svc["build"] = {"context": _abs(base, build)}
        elif isinstance(build, dict):
            ctx = str(build.get("context") or ".")
            if "://" not in ctx:  # git URLs are left for the engine to refuse
                build["context"] = _abs(base, ctx)
        env_file = svc.get("env_file")
        if isinstance(env_file, str):
            svc["env_file"] = [_abs(base, env_file)]
        elif isinstance(env_file, list):
            svc["env_file"] = [
                {**e, "path": _abs(base, str(e.get("path", "")))} if isinstance(e, dict) else _abs(base, str(e))
                for e in env_file]
        vols = svc.get("volumes")
        if isinstance(vols, list):
            out = []
            for v in vols:
                if isinstance(v, str) and ":" in v and _is_local_path(v.split(":", 1)[0]):
                    src, rest = v.split(":", 1)
                    v = _abs(base, src) + ":" + rest
                elif isinstance(v, dict) and v.get("type") == "bind" and v.get("source"):
                    v = {**v, "source": _abs(base, str(v["source"]))}
                out.append(v)
            svc["volumes"] = out
        ext = svc.get("extends")
        if isinstance(ext, dict) and ext.get("file"):
            ext["file"] = _abs(base, str(ext["file"]))
    for section in ("secrets", "configs"):
        for entry in (data.get(section) or {}).values():
            if isinstance(entry, dict) and entry.get("file"):
                entry["file"] = _abs(base, str(entry["file"]))


# What merging and path resolution read in a service, and the types compose-spec gives them:
# checked in every file before it is merged (each entry's own rules come later, in services.py).
SERVICE_SHAPES: dict[str, tuple[type, ...]] = {
    "build": (str, dict), "env_file": (str, list), "extends": (str, dict), "depends_on": (list, dict),
    "networks": (list, dict), **{k: (dict, list) for k in KEYED_KEYS}, **{k: (list,) for k in MOUNT_KEYS}}
_TYPE_NAMES = {str: "a string", dict: "a mapping", list: "a list"}


def _expect(doc: Document, value: Any, path: KeyPath, types: tuple[type, ...]) -> None:
    if not isinstance(value, types):
        doc.fail(path, f"expected {' or '.join(_TYPE_NAMES[t] for t in types)}, got {type_name(value)}")


def check_shape(doc: Document, top: dict[str, Any]) -> None:
    """The top-level keys, each service and what merging reads in it have compose-spec's types."""
    for key in ("version", "name"):
        if top.get(key) is not None:
            expect_str(doc, top[key], (key,))
    if top.get("include") is not None:
        _expect(doc, top["include"], ("include",), (list,))
    for section in ("services", "networks", "volumes", "secrets", "configs"):
        entries = expect_mapping(doc, top.get(section), (section,), f"a mapping of {section[:-1]} name: settings")
        for name, entry in entries.items():
            if entry is not None or section == "services":
                _expect(doc, entry, (section, str(name)), (dict,))
            if section in ("secrets", "configs") and isinstance(entry, dict) and entry.get("file") is not None:
                _expect(doc, entry["file"], (section, str(name), "file"), (str,))
    for name, svc in (top.get("services") or {}).items():
        path: KeyPath = ("services", str(name))
        for key, types in SERVICE_SHAPES.items():
            if svc.get(key) is not None:
                _expect(doc, svc[key], path + (key,), types)
        for key in ("env_file", *MOUNT_KEYS):
            if isinstance(svc.get(key), list):
                for i, entry in enumerate(svc[key]):
                    _expect(doc, entry, path + (key, i), (str, dict))
                    for field in ("source", "target", "path"):  # what resolve_paths makes absolute
                        if isinstance(entry, dict) and entry.get(field) is not None:
                            _expect(doc, entry[field], path + (key, i, field), (str,))
        ext = svc.get("extends")
        if isinstance(ext, dict):
            for key in ("service", "file"):
                if key in ext:
                    _expect(doc, ext[key], path + ("extends", key), (str,))
        for key in ("depends_on", "networks"):
            if isinstance(svc.get(key), list):
                for i, entry in enumerate(svc[key]):
                    _expect(doc, entry, path + (key, i), (str,))


def _included(doc: Document, file: FsPath, path: KeyPath) -> FsPath:
    """A file another names (include:, extends: file:) must be a regular file (not a FIFO or a device)."""
    if not file.is_file():
        doc.fail(path, f"{file} is not a regular file: name a compose file")
    return file


def read_file(path: FsPath, env: Mapping[str, str], seen: tuple[str, ...] = (),
              text: str | None = None, base: FsPath | None = None) -> tuple[Document, dict[str, Any]]:
    """One file (or `text`, standard input's), interpolated, its relative paths resolved against
    `base` (default: its own directory), its `include:` entries merged in (theirs first)."""
    from .interpolate import interpolate

    real = str(path.resolve())
    if real in seen:
        raise Document(str(path), None).error((), f"include cycle: {' -> '.join(seen + (real,))}")
    doc = parse(text, "stdin") if text is not None else load(path)
    interpolate(doc, env)
    top = expect_mapping(doc, doc.data, (), "a mapping with services:")
    check_shape(doc, top)
    resolve_paths(top, base or path.resolve().parent)
    includes = top.pop("include", None)
    if includes is None:
        return doc, top
    if not isinstance(includes, list):
        doc.fail(("include",), f"expected a list of files, got {type_name(includes)}")
    merged: dict[str, Any] = {}
    for i, item in enumerate(includes):
        paths = item.get("path") if isinstance(item, dict) else item
        for p in paths if isinstance(paths, list) else [paths]:
            rel = expect_str(doc, p, ("include", i), "a file path")
            inc = _included(doc, FsPath(_abs(path.resolve().parent, rel)), ("include", i))
            _, data = read_file(inc, env, seen + (real,))
            for name in (data.get("services") or {}):
                if name in (top.get("services") or {}):
                    doc.fail(("include", i), f"service {name!r} is defined both here and in the included {rel}: "
                                             "use an override file (-f) to change an included service")
            merged = merge_top(merged, data)
    return doc, merge_top(merged, top)


def resolve_extends(doc: Document, services: dict[str, Any], env: Mapping[str, str]) -> None:
    """Replace each `extends:` by the service it extends, with this service's settings on top."""
    done: set[str] = set()

    def resolve(name: str, chain: tuple[str, ...]) -> dict[str, Any]:
        svc = services[name]
        if name in done or not isinstance(svc, dict) or "extends" not in svc:
            return svc
        if name in chain:
            doc.fail(("services", name, "extends"), f"extends cycle: {' -> '.join(chain + (name,))}")
        ext = svc["extends"]
        if isinstance(ext, str):
            ext = {"service": ext}
        if not isinstance(ext, dict) or not ext.get("service"):
            doc.fail(("services", name, "extends"), "expected a service name or {service: NAME, file: FILE}")
        target = str(ext["service"])
        if ext.get("file"):
            other_path = _included(doc, FsPath(str(ext["file"])), ("services", name, "extends", "file"))
            odoc, odata = read_file(other_path, env)
            others = dict(odata.get("services") or {})
            if target not in others:
                doc.fail(("services", name, "extends"), f"no service {target!r} in {other_path}")
            resolve_extends(odoc, others, env)
            base = others[target]
        else:
            if target not in services:
                doc.fail(("services", name, "extends"), f"unknown service {target!r}")
            base = resolve(target, chain + (name,))
        own = {k: v for k, v in svc.items() if k != "extends"}
        # depends_on is never inherited (compose's rule): the base's dependencies are the base's.
        base = {k: v for k, v in base.items() if k != "depends_on"}
        services[name] = merge_service(base, own)
        done.add(name)
        return services[name]

    for n in list(services):
        resolve(n, ())


def load_files(files: list[FsPath], env: Mapping[str, str], texts: Mapping[FsPath, str] | None = None,
               base: FsPath | None = None) -> Document:
    """Every -f file in order (one given by its text in `texts`: standard input's), merged; the first
    file's Document (its lines) carries the merged data. The relative paths of every file resolve
    against `base`, the project directory (default: each file's own directory); those of an
    included or extended file against that file's directory."""
    first: Document | None = None
    merged: dict[str, Any] = {}
    for path in files:
        doc, data = read_file(path, env, text=(texts or {}).get(path), base=base)
        first = first or doc
        merged = merge_top(merged, data)
    assert first is not None
    first.data = merged
    services = merged.get("services")
    if isinstance(services, dict):
        services = {str(k): v for k, v in services.items()}
        resolve_extends(first, services, env)
        merged["services"] = services
    return first
