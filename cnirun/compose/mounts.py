"""What a service mounts: volumes (short and long syntax), tmpfs, secrets and configs.

Everything becomes what `docker run -v` / `--tmpfs` takes, so the run path
needs nothing compose-specific: a named volume `data` of project `p` is
`p_data:/path`, an anonymous volume is `/path`, a bind is `/abs/src:/path`,
secrets and configs are read-only file binds under /run/secrets/NAME and
/NAME as compose mounts them (one with uid/gid/mode: of a copy `up` writes
with that owner and mode, OwnedCopy). Top-level `volumes:` are created by `up` with
compose's labels (see up.ensure_volumes) unless `external`.
"""
from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass, field
from typing import Any

from ..netstore.located import Document, Path as KeyPath, check_keys, expect_bool, expect_mapping, expect_str, \
    string_map, type_name

VOLUME_KEYS = frozenset({"driver", "driver_opts", "external", "labels", "name"})
LONG_KEYS = frozenset({"type", "source", "target", "read_only", "bind", "volume", "tmpfs", "consistency"})
SECRET_KEYS = frozenset({"file", "external", "name", "labels", "environment", "content", "driver",
                         "driver_opts", "template_driver"})


# A name that is never a path: services, volumes, secrets, configs, container names (Docker's rule
# for names). A secret's or config's name is also a file name under the project's state dir.
PLAIN_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}")


def plain_name(doc: Document, value: Any, path: KeyPath, what: str) -> str:
    name = expect_str(doc, value, path, f"a {what} name")
    if not PLAIN_NAME.fullmatch(name):
        doc.fail(path, f"invalid {what} name {name!r}: use letters, digits, '_', '.', '-' (starting with a letter "
                       "or digit, at most 128), never a path")
    return name


@dataclass
class VolumeSpec:
    """A top-level named volume."""

    key: str
    name: str  # the engine's volume name: PROJECT_KEY unless name: or external
    external: bool = False
    driver: str = ""
    driver_opts: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)


@dataclass
class FileSource:
    """A top-level secret or config: a host file, or a value (`environment:`, `content:`) that `up`
    writes to `file` (under the project's state dir, see materialize) before it starts containers."""

    key: str
    file: str
    value: str | None = None  # None: `file` is the user's own file
    variable: str = ""  # environment: the variable the value came from
    name: str = ""  # compose's name for the object: name:, else PROJECT_KEY (config shows it; nothing uses it)


def sources_dir(project: str, environ: dict[str, str] | None = None) -> str:
    """Where `up` writes the project's environment:/content: secrets and configs; `down` removes it."""
    from ..core.paths import state_dir

    return os.path.join(state_dir(environ), "compose", project)


def _subdir(parent: int, name: str, where: str) -> int:
    """The directory `name` under the open directory `parent`, made if missing; root's and 0700.

    Opened with O_NOFOLLOW relative to its parent (openat), so a symlink planted
    anywhere below the state dir redirects nothing: it is refused.
    """
    from ..core.errors import ConfigError

    try:
        os.mkdir(name, 0o700, dir_fd=parent)
    except FileExistsError:
        pass
    try:
        fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
    except OSError:
        raise ConfigError(f"{where} is a symlink or not a directory: cnirun keeps secrets there; "
                          "remove it and run up again") from None
    if os.fstat(fd).st_uid != os.geteuid():
        os.close(fd)
        raise ConfigError(f"{where} belongs to another user: remove it and run up again")
    os.fchmod(fd, 0o700)
    return fd


def _write_at(parent: int, name: str, value: str | bytes, mode: int, where: str,
              owner: tuple[int, int] | None = None) -> None:
    """`value` into the regular file `name` under `parent`, in place (a container's bind mount of it
    sees the new text), owned by `owner` (uid, gid) if given; never through a symlink, into a FIFO or
    device, or into a hard link."""
    from ..core.errors import ConfigError

    try:
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, mode,
                     dir_fd=parent)
    except OSError:
        raise ConfigError(f"{where} is a symlink or not a file: remove it and run up again") from None
    with os.fdopen(fd, "wb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1 or st.st_uid not in (os.geteuid(), (owner or (-1,))[0]):
            raise ConfigError(f"{where} is not a file cnirun wrote (a link or a device): remove it and run up again")
        os.fchmod(fd, mode)
        if owner is not None:
            os.fchown(fd, *owner)
        os.ftruncate(fd, 0)
        f.write(value.encode() if isinstance(value, str) else value)


def materialize(project: str, kinds: dict[str, dict[str, FileSource]], copies: list[OwnedCopy] | None = None) -> None:
    """Write the value-based secrets/configs to their files (root-only directories, secrets 0400), and
    the copies of those mounted with uid/gid/mode (KIND.owned/NAME.UID.GID.MODE, that owner and mode).

    Everything is written below the state dir through directory descriptors:
    compose/PROJECT/KIND/NAME, each name a plain one (PLAIN_NAME), each
    directory opened without following symlinks. Rewritten in place on every
    up, so a changed variable reaches containers started (or recreated) after
    it, as compose does.
    """
    from ..core.errors import ConfigError

    todo = [(kind, src) for kind, sources in kinds.items() for src in sources.values() if src.value is not None]
    if not todo and not copies:
        return
    where = sources_dir(project)
    project_fd = open_project_dir(project)
    fds = [project_fd]
    try:
        for kind, src in todo:
            name = os.path.basename(src.file)
            if not PLAIN_NAME.fullmatch(name):  # parse_files made it from a checked name
                raise ConfigError(f"{kind} {name!r}: not a plain name")
            fds.append(_subdir(project_fd, kind, os.path.join(where, kind)))
            _write_at(fds[-1], name, src.value or "", 0o400 if kind == "secrets" else 0o444, src.file)
        for c in copies or []:
            fds.append(_subdir(project_fd, f"{c.kind}.owned", os.path.dirname(c.file)))
            _write_at(fds[-1], os.path.basename(c.file), c.content(), c.mode, c.file, (c.uid, c.gid))
    finally:
        for fd in fds:
            os.close(fd)


def open_project_dir(project: str, create: bool = True) -> int:
    """The project's dir under the state dir (compose/PROJECT, sources_dir), opened as a descriptor
    through its parents without following a symlink, root's and 0700 (_subdir); made if missing, or
    with not create FileNotFoundError if it is. The caller closes it."""
    from ..core.paths import state_dir

    root = state_dir()
    where = os.path.join(root, "compose")
    if create:
        os.makedirs(root, 0o755, exist_ok=True)
    elif not os.path.isdir(os.path.join(where, project)):
        raise FileNotFoundError(os.path.join(where, project))
    top = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        compose = _subdir(top, "compose", where)
    finally:
        os.close(top)
    try:
        return _subdir(compose, project, os.path.join(where, project))
    finally:
        os.close(compose)


def forget(project: str, keep: str = "") -> None:
    """Remove what up wrote for the project (materialize's files; at down), all but the entry `keep`
    (the project dir stays while that exists); a symlink in the way is left alone."""
    import shutil

    from ..core.paths import state_dir

    try:
        root = os.open(state_dir(), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        compose = os.open("compose", os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=root)
    except OSError:
        return
    finally:
        os.close(root)
    try:
        if not keep:
            shutil.rmtree(project, ignore_errors=True, dir_fd=compose)
            return
        try:
            pfd = os.open(project, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=compose)
        except OSError:
            return
        try:
            for name in os.listdir(pfd):
                if name == keep:
                    continue
                try:
                    os.unlink(name, dir_fd=pfd)
                except IsADirectoryError:
                    shutil.rmtree(name, ignore_errors=True, dir_fd=pfd)
                except OSError:
                    pass
        finally:
            os.close(pfd)
        try:
            os.rmdir(project, dir_fd=compose)  # empty: `keep` is not there
        except OSError:
            pass
    finally:
        os.close(compose)


@dataclass
class OwnedCopy:
    """A secret or config a service mounts with uid/gid/mode: `up` writes a copy of it to `file`, with
    that owner and mode (materialize); the service binds the copy."""

    kind: str
    source: FileSource
    file: str
    uid: int
    gid: int
    mode: int

    def content(self) -> bytes:
        from ..core.errors import ConfigError

        if self.source.value is not None:
            return self.source.value.encode()
        try:
            with open(self.source.file, "rb") as f:
                return f.read()
        except OSError as e:
            raise ConfigError(f"{self.kind[:-1]} {self.source.key!r}: cannot read {self.source.file}: "
                              f"{e.strerror}") from None


@dataclass
class Mounts:
    volumes: list[str] = field(default_factory=list)  # docker -v entries
    tmpfs: list[str] = field(default_factory=list)  # PATH[:OPTIONS]
    # What `config` prints: the service's volumes: with a named volume by its top-level key (SRC:DST[:OPTS]),
    # and its secrets:/configs: as {source, target} (their binds are in `volumes` above).
    shown: list[str] = field(default_factory=list)
    files: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    copies: list[OwnedCopy] = field(default_factory=list)
    host_dirs: list[str] = field(default_factory=list)  # bind sources up makes when missing (make_bind_sources)

    def add(self, entry: str, shown: str = "") -> None:
        self.volumes.append(entry)
        self.shown.append(shown or entry)


def parse_volumes(doc: Document, section: Any, project: str) -> dict[str, VolumeSpec]:
    out: dict[str, VolumeSpec] = {}
    for key, value in expect_mapping(doc, section, ("volumes",), "a mapping of volume name: settings").items():
        p: KeyPath = ("volumes", str(key))
        plain_name(doc, key, p, "volume")
        m = expect_mapping(doc, value, p, "a mapping of volume settings (or nothing)")
        check_keys(doc, m, p, VOLUME_KEYS)
        spec = VolumeSpec(key=str(key), name=f"{project}_{key}")
        ext = m.get("external")
        if isinstance(ext, dict):  # legacy external: {name: X}
            spec.external = True
            spec.name = plain_name(doc, ext.get("name", key), p + ("external", "name"), "volume")
        elif ext is not None:
            spec.external = expect_bool(doc, ext, p + ("external",))
            if spec.external:
                spec.name = str(key)
        if m.get("name") is not None:
            spec.name = plain_name(doc, m["name"], p + ("name",), "volume")
        if m.get("driver") is not None:
            spec.driver = expect_str(doc, m["driver"], p + ("driver",))
        if m.get("driver_opts") is not None:
            spec.driver_opts = string_map(doc, m["driver_opts"], p + ("driver_opts",), "driver_opts")
        if m.get("labels") is not None:
            spec.labels = string_map(doc, m["labels"], p + ("labels",), "labels")
        if spec.external and (spec.driver or spec.driver_opts):
            doc.fail(p, "an external volume cannot have a driver or driver_opts: compose does not create it")
        out[spec.key] = spec
    return out


def parse_files(doc: Document, section: Any, kind: str, project: str = "",
                env: dict[str, str] | None = None) -> dict[str, FileSource]:
    """Top-level secrets/configs: `file:`, `environment:` (the value of a variable of the environment or
    .env) and, for configs, `content:`; `external` (a swarm object) cannot exist on one host."""
    out: dict[str, FileSource] = {}
    for key, value in expect_mapping(doc, section, (kind,), f"a mapping of {kind[:-1]} name: settings").items():
        p: KeyPath = (kind, str(key))
        plain_name(doc, key, p, kind[:-1])
        m = expect_mapping(doc, value, p)
        check_keys(doc, m, p, SECRET_KEYS)
        name = plain_name(doc, m["name"], p + ("name",), kind[:-1]) if m.get("name") is not None \
            else f"{project}_{key}" if project else str(key)
        given = [k for k in ("file", "environment", "content", "external") if m.get(k) is not None]
        if len(given) != 1:
            doc.fail(p, f"{kind[:-1]} {key!r} needs exactly one of file:, environment:"
                        + (", content:" if kind == "configs" else "")
                        + (f" (it has {', '.join(given)})" if given else ""))
        how = given[0]
        if how == "file":
            file = expect_str(doc, m["file"], p + ("file",))
            if ":" in file:
                doc.fail(p + ("file",), f"{file}: a path with ':' cannot be mounted: rename the file")
            out[str(key)] = FileSource(str(key), file, name=name)
            continue
        if how == "external" or (how == "content" and kind == "secrets"):
            doc.fail(p + (how,), f"{how}: is not supported for {kind} on one host: use file: or environment:")
        if not project:
            doc.fail(p + (how,), f"{how}: needs a project name")
        var = ""
        if how == "environment":
            var = expect_str(doc, m["environment"], p + ("environment",), "the name of a variable")
            val = (env if env is not None else os.environ).get(var)
            if val is None:
                doc.fail(p + ("environment",), f"variable {var} is not set: set it in the environment or .env")
        else:
            val = expect_str(doc, m["content"], p + ("content",), "the config's text")
        path = os.path.join(sources_dir(project), kind, str(key))
        out[str(key)] = FileSource(str(key), path, value=val, variable=var, name=name)
    return out


def _bind_source(doc: Document, src: str, path: KeyPath, create: bool) -> str:
    if not os.path.exists(src) and not create:
        doc.fail(path, f"bind source {src} does not exist (bind.create_host_path is false): create it first")
    return src


def make_bind_sources(mounts: list[Mounts]) -> None:
    """Make the missing bind sources a directory, as dockerd does for `-v`: podman refuses a missing one.
    Those with bind.create_host_path: false were refused when the file was read."""
    for src in dict.fromkeys(d for m in mounts for d in m.host_dirs):
        if not os.path.lexists(src):
            os.makedirs(src, 0o755, exist_ok=True)


def parse_service_volumes(doc: Document, value: Any, path: KeyPath, volumes: dict[str, VolumeSpec],
                          mounts: Mounts) -> None:
    if not isinstance(value, list):
        doc.fail(path, f"expected a list of volumes, got {type_name(value)}")
    for i, item in enumerate(value):
        p = path + (i,)
        if isinstance(item, str):
            parts = item.split(":")
            if len(parts) == 1:
                mounts.add(item)  # anonymous volume
                continue
            src, rest = parts[0], ":".join(parts[1:])
            if src.startswith("/"):
                mounts.add(item)
                mounts.host_dirs.append(src)
                continue
            if src not in volumes:
                doc.fail(p, f"volume {src!r} is not declared under the top-level volumes: (declare it, or "
                            "write a bind source as ./path or /path)")
            mounts.add(f"{volumes[src].name}:{rest}", item)
            continue
        m = expect_mapping(doc, item, p, "SRC:DST[:OPTS] or a mapping with type, source and target")
        check_keys(doc, m, p, LONG_KEYS)
        kind = str(m.get("type") or "volume")
        target = expect_str(doc, m.get("target"), p + ("target",), "the path inside the container")
        ro = expect_bool(doc, m["read_only"], p + ("read_only",)) if "read_only" in m else False
        opts: list[str] = ["ro"] if ro else []
        src = str(m.get("source") or "")
        if kind == "tmpfs":
            t = expect_mapping(doc, m.get("tmpfs"), p + ("tmpfs",))
            topts = [f"size={t['size']}"] if t.get("size") is not None else []
            if t.get("mode") is not None:
                topts.append(f"mode={int(str(t['mode']), 8) if isinstance(t['mode'], str) else t['mode']:o}")
            mounts.tmpfs.append(target + (":" + ",".join(topts) if topts else ""))
        elif kind == "bind":
            if not src:
                doc.fail(p + ("source",), "a bind needs a source (a host path)")
            b = expect_mapping(doc, m.get("bind"), p + ("bind",))
            create = expect_bool(doc, b["create_host_path"], p + ("bind", "create_host_path")) \
                if "create_host_path" in b else True
            if b.get("propagation"):
                opts.append(expect_str(doc, b["propagation"], p + ("bind", "propagation")))
            if b.get("selinux"):
                opts.append(expect_str(doc, b["selinux"], p + ("bind", "selinux")))
            mounts.add(f"{_bind_source(doc, src, p + ('source',), create)}:{target}"
                       + (":" + ",".join(opts) if opts else ""))
            if create:
                mounts.host_dirs.append(src)
        elif kind == "volume":
            v = expect_mapping(doc, m.get("volume"), p + ("volume",))
            if v.get("nocopy"):
                opts.append("nocopy")
            if not src:
                if opts:
                    doc.fail(p, "an anonymous volume takes no options: give it a source")
                mounts.add(target)
                continue
            if src not in volumes:
                doc.fail(p + ("source",), f"volume {src!r} is not declared under the top-level volumes:")
            suffix = ":" + ",".join(opts) if opts else ""
            mounts.add(f"{volumes[src].name}:{target}{suffix}", f"{src}:{target}{suffix}")
        else:
            doc.fail(p + ("type",), f"volume type {kind!r} is not supported: expected volume, bind or tmpfs")


def _container_path(doc: Document, target: str, path: KeyPath, kind: str) -> None:
    """A secret's or config's target: a path in the container (a secret's may be a name under
    /run/secrets), without ':' (it would add options to the mount) or '..'."""
    if not target or ":" in target or "\0" in target or ".." in target.split("/") or \
            (kind == "configs" and not target.startswith("/")):
        doc.fail(path, f"invalid target {target!r}: expected an absolute path in the container"
                       + (" or a file name under /run/secrets" if kind == "secrets" else "")
                       + ", without ':' or '..'")


def _owner(doc: Document, m: dict[str, Any], path: KeyPath, kind: str) -> tuple[int, int, int] | None:
    """A long-syntax secret's or config's uid, gid and mode (None when it gives none of them): numeric IDs
    (0 when left out) and an octal mode (cnirun's 0400 for secrets, 0444 for configs when left out)."""
    if all(m.get(k) is None for k in ("uid", "gid", "mode")):
        return None
    ids = []
    for key in ("uid", "gid"):
        v = m.get(key, 0)
        if isinstance(v, bool) or not (isinstance(v, int) or isinstance(v, str) and v.isdigit()) or int(v) > 2**32 - 2:
            doc.fail(path + (key,), f"expected a numeric {key.upper()}, got {v!r}")
        ids.append(int(v))
    mode = m.get("mode", 0o400 if kind == "secrets" else 0o444)
    if isinstance(mode, str) and mode and all(ch in "01234567" for ch in mode):
        mode = int(mode, 8)
    if isinstance(mode, bool) or not isinstance(mode, int) or not 0 <= mode <= 0o777:
        doc.fail(path + ("mode",), f"expected an octal file mode such as 0440, got {m.get('mode')!r}")
    return ids[0], ids[1], mode


def parse_service_files(doc: Document, value: Any, path: KeyPath, sources: dict[str, FileSource], kind: str,
                        mounts: Mounts, project: str = "") -> None:
    """Service secrets/configs: read-only file binds at /run/secrets/NAME (secrets) or /NAME (configs); with
    uid/gid/mode, of a copy with that owner and mode (OwnedCopy) under the project's sources_dir."""
    if not isinstance(value, list):
        doc.fail(path, f"expected a list of {kind}, got {type_name(value)}")
    for i, item in enumerate(value):
        p = path + (i,)
        owner = None
        if isinstance(item, str):
            src, target = item, ""
        else:
            m = expect_mapping(doc, item, p, f"a {kind[:-1]} name or a mapping with source and target")
            check_keys(doc, m, p, frozenset({"source", "target", "uid", "gid", "mode"}))
            src = expect_str(doc, m.get("source"), p + ("source",), f"the {kind[:-1]}'s name")
            target = expect_str(doc, m["target"], p + ("target",), "a path in the container") \
                if "target" in m else ""
            if "target" in m:
                _container_path(doc, target, p + ("target",), kind)
            owner = _owner(doc, m, p, kind)
        if src not in sources:
            doc.fail(p, f"{kind[:-1]} {src!r} is not declared under the top-level {kind}:")
        if not target:
            target = f"/run/secrets/{src}" if kind == "secrets" else f"/{src}"
        elif kind == "secrets" and not target.startswith("/"):
            target = f"/run/secrets/{target}"
        file = sources[src].file
        if sources[src].value is None and not os.path.isfile(file):
            doc.fail(p, f"{kind[:-1]} {src!r}: file {file} does not exist")
        shown = {"source": src, "target": target}
        if owner is not None:
            uid, gid, mode = owner
            file = os.path.join(sources_dir(project), f"{kind}.owned", f"{src}.{uid}.{gid}.{mode:o}")
            mounts.copies.append(OwnedCopy(kind, sources[src], file, uid, gid, mode))
            shown.update(uid=str(uid), gid=str(gid), mode=f"0{mode:o}")
        mounts.volumes.append(f"{file}:{target}:ro")
        mounts.files.setdefault(kind, []).append(shown)
