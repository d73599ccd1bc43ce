"""Network configuration ("netconf"): loading, validation and look-up.

Behaviour follows libcni's conf.go: `.conflist` files first (sorted by name),
then the deprecated single-plugin `.conf`/`.json` files wrapped as one-plugin
lists. Unknown keys are kept verbatim and reach the plugins untouched.
"""
from __future__ import annotations

import os

from ..core import jsonfast as json
from ..core import version as cniversion
from ..core.errors import ConfigError, NetworkNotFound
from ..core import paths
from ..core.paths import is_safe_name
from ..core.value import Value

TYPE_CHECKING = False  # start-up cost: see cnirun.core
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any, Callable

NAME_PATTERN = r"^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$"
LIST_EXTENSIONS = (".conflist",)
SINGLE_EXTENSIONS = (".conf", ".json")


def __getattr__(name: str) -> Any:
    if name == "NAME_RE":  # kept for callers; compiled only when asked for
        import re

        value = re.compile(NAME_PATTERN)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# The capabilities cnirun fills in a plugin's runtimeConfig (CNI CONVENTIONS.md),
# by the names plugins declare them under in "capabilities".
PORT_CAPABILITY = "portMappings"
BANDWIDTH_CAPABILITY = "bandwidth"
IPS_CAPABILITY = "ips"
MAC_CAPABILITY = "mac"
FIREWALL_POLICY_CAPABILITY = "firewallPolicy"  # cnirun's own (cnirun.network.policies)


class PluginConf(Value):
    """One plugin object of a list, as written in the file."""

    _fields = ("raw",)
    __match_args__ = _fields

    def __init__(self, raw: dict[str, Any]) -> None:
        self.raw = raw

    @property
    def type(self) -> str:
        return self.raw["type"]

    @property
    def capabilities(self) -> dict[str, bool]:
        caps = self.raw.get("capabilities") or {}
        return {k: bool(v) for k, v in caps.items() if v is True}


class NetworkConfigList(Value):
    """A network: an ordered plugin chain plus the list-level settings."""

    _fields = (
        "name", "cni_version", "plugins", "raw", "bytes", "source", "cni_versions",
        "disable_check", "disable_gc", "load_only_inlined_plugins",
    )
    __match_args__ = _fields

    def __init__(
        self,
        name: str,
        cni_version: str,  # the version selected to run at (see version.select)
        plugins: list[PluginConf],
        raw: dict[str, Any],
        bytes: bytes,  # what the result cache stores as "config"
        source: str = "<memory>",
        cni_versions: list[str] | None = None,
        disable_check: bool = False,
        disable_gc: bool = False,
        load_only_inlined_plugins: bool = False,
    ) -> None:
        self.name = name
        self.cni_version = cni_version
        self.plugins = plugins
        self.raw = raw
        self.bytes = bytes
        self.source = source
        self.cni_versions = [] if cni_versions is None else cni_versions
        self.disable_check = disable_check
        self.disable_gc = disable_gc
        self.load_only_inlined_plugins = load_only_inlined_plugins

    @property
    def types(self) -> list[str]:
        return [p.type for p in self.plugins]

    def subnets(self) -> list[str]:
        """Every subnet the chain's IPAM sections declare (for display)."""
        return [str(r["subnet"]) for p in self.plugins for r in ipam_ranges(p.raw) if r.get("subnet")]


def ipam_ranges(plugin: dict[str, Any]) -> list[dict[str, Any]]:
    """The address ranges a plugin's ipam section declares, as host-local reads them: a top-level
    "subnet" (with its "gateway") first, then each range of each range set of "ranges"."""
    ipam = plugin.get("ipam")
    if not isinstance(ipam, dict):
        return []
    out = [{"subnet": ipam["subnet"], "gateway": ipam.get("gateway", "")}] if ipam.get("subnet") else []
    ranges = ipam.get("ranges")
    for rs in ranges if isinstance(ranges, list) else []:
        out += [r for r in rs if isinstance(r, dict)] if isinstance(rs, list) else []
    return out


DEFAULT_BRIDGE = "cni0"  # the bridge plugin's bridge when its config names none


def bridges_of(conf: NetworkConfigList | dict[str, Any]) -> tuple[str, ...]:
    """The Linux bridges a network's bridge plugins plug into, in chain order, each once.

    `conf` is a loaded network or a raw config (a conflist, or a single
    plugin's config as a result cache written by libcni may hold).
    """
    if isinstance(conf, NetworkConfigList):
        plugins: Any = [p.raw for p in conf.plugins]
    elif isinstance(conf, dict):
        plugins = conf.get("plugins") if "plugins" in conf else [conf]
    else:
        plugins = None
    out: list[str] = []
    for p in plugins if isinstance(plugins, list) else ():
        if isinstance(p, dict) and p.get("type") == "bridge":
            name = str(p.get("bridge") or DEFAULT_BRIDGE)
            if name not in out:
                out.append(name)
    return tuple(out)


def bridge_of(conf: NetworkConfigList | dict[str, Any]) -> str:
    """The Linux bridge a network plugs into: its first bridge plugin's ('' when its chain has none)."""
    found = bridges_of(conf)
    return found[0] if found else ""




def host_local_dirs(net: NetworkConfigList) -> list[str]:
    """Where host-local keeps `net`'s address reservations: a directory per plugin with host-local IPAM."""
    out: list[str] = []
    for p in net.plugins:
        ipam = p.raw.get("ipam")
        if isinstance(ipam, dict) and ipam.get("type") == "host-local":
            out.append(os.path.join(str(ipam.get("dataDir") or paths.host_local_data_dir()), net.name))
    return out


META_KEY = "cnirun"  # a conflist's top-level object of cnirun's own settings (netstore, dns, the hook)


def meta_of(conf: NetworkConfigList | dict[str, Any]) -> dict[str, Any]:
    """The top-level "cnirun" object of a network or a raw conflist ({} when it has none)."""
    raw = conf.raw if isinstance(conf, NetworkConfigList) else conf
    meta = raw.get(META_KEY) if isinstance(raw, dict) else None
    return meta if isinstance(meta, dict) else {}


def labels_allowed(net: NetworkConfigList) -> bool:
    """Whether containers may join `net` by naming it in a label or annotation (the OCI hook's way).

    A top-level `"cnirun": {"allowLabels": false}` in the conflist closes it:
    then only `cnirun run` (root on the host) attaches containers to it.
    Default: allowed.
    """
    return meta_of(net).get("allowLabels", True) is True


def has_ipv6(net: NetworkConfigList) -> bool:
    """Whether one of the network's plugins gives out IPv6 addresses (an ipam range with an IPv6 subnet)."""
    return any(":" in s for s in net.subnets())


def _where(source: str, key: str) -> str:
    return f"{source}: {key}" if key else source


def _bool_field(value: Any, source: str, key: str) -> bool:
    # libcni accepts JSON booleans and the strings "true"/"false" in any case.
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ConfigError(f"{_where(source, key)}: invalid value {value!r}: expected true or false")


def validate_name(name: Any, source: str, key: str = "name") -> str:
    if not isinstance(name, str) or not name:
        raise ConfigError(f'{_where(source, key)}: missing network name: every network needs a "name"')
    if not is_safe_name(name):
        raise ConfigError(
            f"{_where(source, key)}: invalid network name {name!r}: "
            "use letters, digits, '_', '.', '-' and start with a letter or digit"
        )
    return name


def _validate_plugin(obj: Any, source: str, key: str) -> PluginConf:
    if not isinstance(obj, dict):
        raise ConfigError(f"{_where(source, key)}: expected a JSON object, got {type(obj).__name__}")
    ptype = obj.get("type")
    if not isinstance(ptype, str) or not ptype:
        raise ConfigError(f'{_where(source, key + ".type")}: missing plugin type: every plugin needs a "type"')
    if "/" in ptype or "\\" in ptype:
        raise ConfigError(
            f"{_where(source, key + '.type')}: invalid plugin type {ptype!r}: "
            "a type is a file name looked up along CNI_PATH and must not contain a path separator"
        )
    caps = obj.get("capabilities")
    if caps is not None and not isinstance(caps, dict):
        raise ConfigError(f"{_where(source, key + '.capabilities')}: expected an object of name: true|false")
    return PluginConf(raw=obj)


def _parse_json(data: bytes, source: str) -> dict[str, Any]:
    try:
        obj = json.loads(data)
    except UnicodeDecodeError as e:
        raise ConfigError(f"{source}: not UTF-8 text: {e.reason}") from None
    except json.JSONDecodeError as e:  # jsonfast imports json only when this is evaluated
        raise ConfigError(f"{source}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}: fix or remove the file") from None
    except ValueError as e:  # e.g. an integer of more digits than Python converts
        raise ConfigError(f"{source}: invalid JSON: {e}: fix or remove the file") from None
    if not isinstance(obj, dict):
        raise ConfigError(f"{source}: expected a JSON object at the top level, got {type(obj).__name__}")
    return obj


def _select_version(obj: dict[str, Any], source: str) -> tuple[str, list[str]]:
    raw_version = obj.get("cniVersion")
    if raw_version is not None and not isinstance(raw_version, str):
        raise ConfigError(f"{_where(source, 'cniVersion')}: expected a string such as \"1.0.0\"")
    versions = obj.get("cniVersions")
    if versions is not None and (
        not isinstance(versions, list) or not all(isinstance(v, str) for v in versions)
    ):
        raise ConfigError(f"{_where(source, 'cniVersions')}: expected a list of version strings")
    try:
        chosen = cniversion.select(raw_version, versions)
    except ConfigError:
        raise
    except Exception as e:  # VersionError: keep its code out, name the file instead
        raise ConfigError(f"{_where(source, 'cniVersion')}: {e}") from None
    return chosen, list(versions or [])


def conflist_from_bytes(data: bytes, source: str = "<memory>") -> NetworkConfigList:
    """Parse a `.conflist` document (plugins may still be added from a sub-directory)."""
    obj = _parse_json(data, source)
    name = validate_name(obj.get("name"), source)
    chosen, versions = _select_version(obj, source)
    only_inlined = _bool_field(obj.get("loadOnlyInlinedPlugins", False), source, "loadOnlyInlinedPlugins")
    plugins_raw = obj.get("plugins")
    if plugins_raw is None:
        if only_inlined:
            raise ConfigError(
                f'{source}: plugins: missing: "loadOnlyInlinedPlugins" is true but the list has no "plugins"'
            )
        plugins_raw = []
    if not isinstance(plugins_raw, list):
        raise ConfigError(f"{_where(source, 'plugins')}: expected a list of plugin objects")
    plugins = [_validate_plugin(p, source, f"plugins[{i}]") for i, p in enumerate(plugins_raw)]
    return NetworkConfigList(
        name=name,
        cni_version=chosen,
        cni_versions=versions,
        plugins=plugins,
        raw=obj,
        bytes=bytes(data),
        source=source,
        disable_check=_bool_field(obj.get("disableCheck", False), source, "disableCheck"),
        disable_gc=_bool_field(obj.get("disableGC", False), source, "disableGC"),
        load_only_inlined_plugins=only_inlined,
    )


def _stem(path: str) -> str:
    name = path.rpartition("/")[2]
    suffix = _suffix(name)
    return name[: -len(suffix)] if suffix else name


def conflist_from_conf(data: bytes, source: str = "<memory>") -> NetworkConfigList:
    """Wrap a single-plugin `.conf` as a one-plugin list, as libcni does.

    libcni loads a `.conf` without a "name" (upstream's own walkthrough ships
    `99-loopback.conf` so): such a file is named after its file's stem, which
    is what `--net all` and the cache file name then use.
    """
    obj = _parse_json(data, source)
    raw_name = obj.get("name")
    if raw_name is None and source.startswith("/"):
        raw_name = _stem(source)
    name = validate_name(raw_name, source)
    plugin = _validate_plugin(obj, source, "")
    chosen, versions = _select_version(obj, source)
    wrapped: dict[str, Any] = {"cniVersion": obj.get("cniVersion", chosen), "name": name, "plugins": [obj]}
    return NetworkConfigList(
        name=name,
        cni_version=chosen,
        cni_versions=versions,
        plugins=[plugin],
        raw=wrapped,
        bytes=json.dumps(wrapped).encode(),
        source=source,
    )


def path_str(path: str | os.PathLike[str]) -> str:
    """`str(pathlib.Path(path))` without importing pathlib: file names in messages stay as they were."""
    p = os.fspath(path)
    lead = "//" if p.startswith("//") and not p.startswith("///") else "/" if p.startswith("/") else ""
    return (lead + "/".join(x for x in p.split("/") if x and x != ".")) or "."


def _suffix(path: str) -> str:
    """pathlib's PurePath.suffix of `path`."""
    name = path.rpartition("/")[2]
    i = name.rfind(".")
    return name[i:] if 0 < i < len(name) - 1 else ""


def _add_subdir_plugins(net: NetworkConfigList, path: str) -> NetworkConfigList:
    """Append plugin objects from `<dir>/<name>/*.conf` (libcni, loadOnlyInlinedPlugins false)."""
    if net.load_only_inlined_plugins:
        return net
    subdir = path_str(os.path.join(os.path.dirname(path) or ".", net.name))
    if not os.path.isdir(subdir):
        if not net.plugins:
            raise ConfigError(f"{path}: plugins: the list has no plugins and there is no directory {subdir}")
        return net
    extra: list[PluginConf] = []
    for f in sorted(os.path.join(subdir, n) for n in os.listdir(subdir)):
        if _suffix(f) != ".conf" or not os.path.isfile(f):
            continue
        obj = _parse_json(_read(f), f)
        extra.append(_validate_plugin(obj, f, ""))
    if not net.plugins and not extra:
        raise ConfigError(f"{path}: plugins: no plugins inline and none in {subdir}")
    if extra:
        net.plugins = net.plugins + extra
        # Cache the effective list, so a DEL from cache runs the same chain.
        net.raw = dict(net.raw, plugins=[p.raw for p in net.plugins])
        net.bytes = json.dumps(net.raw).encode()
    return net


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except PermissionError:
        raise ConfigError(f"{path}: permission denied: run as root or make the file readable") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None


def load_file(path: str | os.PathLike[str]) -> NetworkConfigList:
    """Load one netconf file, `.conflist` or single-plugin `.conf`/`.json`."""
    p = path_str(path)
    data = _read(p)
    if _suffix(p) in LIST_EXTENSIONS:
        return _add_subdir_plugins(conflist_from_bytes(data, p), p)
    return conflist_from_conf(data, p)


def _unreadable_dir(d: object, e: OSError) -> ConfigError:
    if isinstance(e, PermissionError):
        return ConfigError(
            f"{d}: permission denied reading the netconf directory: make it readable or point NETCONFPATH elsewhere"
        )
    return ConfigError(f"{d}: not a directory: NETCONFPATH must name a directory of netconf files")


def config_files(directory: str | os.PathLike[str]) -> list[Path]:
    """Netconf files in libcni's search order: conflists sorted, then confs sorted.

    A missing directory holds no files (not an error, as in libcni); an
    unreadable one is an error, since silently seeing no networks misleads.
    """
    from pathlib import Path

    d = Path(directory)
    try:
        entries = sorted(d.iterdir())
    except FileNotFoundError:
        return []
    except (PermissionError, NotADirectoryError) as e:
        raise _unreadable_dir(d, e) from None
    lists = [e for e in entries if e.suffix in LIST_EXTENSIONS and e.is_file()]
    singles = [e for e in entries if e.suffix in SINGLE_EXTENSIONS and e.is_file()]
    return lists + singles


def _config_paths(directory: str) -> list[str]:
    """config_files() as strings, without pathlib (the hook path)."""
    d = path_str(directory)
    try:
        names = os.listdir(d)
    except FileNotFoundError:
        return []
    except (PermissionError, NotADirectoryError) as e:
        raise _unreadable_dir(d, e) from None
    entries = sorted(d + "/" + n if d != "/" else "/" + n for n in names)
    lists = [e for e in entries if _suffix(e) in LIST_EXTENSIONS and os.path.isfile(e)]
    singles = [e for e in entries if _suffix(e) in SINGLE_EXTENSIONS and os.path.isfile(e)]
    return lists + singles


def netconf_dirs(netconf_path: str | None) -> list[str]:
    """NETCONFPATH may hold several directories separated by ':' (searched in order); empty or unset, the
    default (core.paths.netconf_path: /etc/cni/net.d, or a user's own)."""
    value = netconf_path if netconf_path is not None else paths.netconf_path()
    dirs = [d for d in value.split(":") if d]
    if dirs:
        return dirs
    return [paths.netconf_path({k: v for k, v in os.environ.items() if k != "NETCONFPATH"})]


def _may_define(path: str, name: str) -> bool:
    """Whether a file that failed to load may be the definition of `name`.

    Its name cannot be parsed out of it, so look for it: the file's stem
    (`10-mynet.conf` for mynet) or the name as a JSON string in its text.
    """
    stem = _stem(path)
    if stem == name or stem.partition("-")[2] == name:
        return True
    try:
        with open(path, "rb") as f:
            text = f.read(1 << 20)
    except OSError:
        return False
    return b'"' + name.encode() + b'"' in text


def _warn_broken(err: ConfigError) -> None:
    import sys

    sys.stderr.write(f"cnirun: warning: skipping a broken netconf file: {err}\n")


def find_network(
    name: str, netconf_path: str | None = None, on_broken: Callable[[ConfigError], None] | None = _warn_broken
) -> NetworkConfigList:
    """The first network named `name`, as libcni's LoadConfList does.

    Directories in NETCONFPATH order; in each, conflists then confs, sorted.
    A file that cannot be loaded is an error only when it may be the network
    asked for (_may_define); any other broken file is reported through
    `on_broken` (one warning line by default, as `network ls` gives) and
    skipped, so one bad file cannot stop every run on other networks.
    """
    dirs = netconf_dirs(netconf_path)
    for d in dirs:
        files = _config_paths(d)
        for f in [f for f in files if _suffix(f) in LIST_EXTENSIONS] + [f for f in files if _suffix(f) not in LIST_EXTENSIONS]:
            try:
                net = load_file(f)
            except ConfigError as e:
                if _may_define(f, name):
                    raise
                if on_broken is not None:
                    on_broken(e)
                continue
            if net.name == name:
                return net
    raise NetworkNotFound(name, ":".join(dirs))


def all_networks(netconf_path: str | None = None) -> list[NetworkConfigList]:
    """`--net all`: every network of NETCONFPATH in libcni's file order (what upstream's scripts attach).

    Directories in order; in each, conflists then confs, sorted by name; a
    name defined twice is attached once (its first file). A broken file is
    an error here: it would have been one of the networks asked for.
    """
    out: list[NetworkConfigList] = []
    seen: set[str] = set()
    for d in netconf_dirs(netconf_path):
        for f in _config_paths(d):
            net = load_file(f)
            if net.name not in seen:
                seen.add(net.name)
                out.append(net)
    return out


def load_all(netconf_path: str | None = None) -> tuple[list[NetworkConfigList], list[ConfigError]]:
    """Every loadable network (first definition of each name wins) and the errors met."""
    nets: list[NetworkConfigList] = []
    errors: list[ConfigError] = []
    seen: set[str] = set()
    for d in netconf_dirs(netconf_path):
        for f in _config_paths(d):
            try:
                net = load_file(f)
            except ConfigError as e:
                errors.append(e)
                continue
            if net.name not in seen:
                seen.add(net.name)
                nets.append(net)
    return nets, errors
