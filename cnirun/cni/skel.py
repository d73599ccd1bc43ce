"""Write CNI plugins in Python: the plugin side of the CNI protocol.

A plugin is an executable that a runtime runs once per operation, with the
operation and its arguments in CNI_* environment variables and the network
configuration as JSON on stdin.  :func:`plugin_main` does the protocol work,
the way the reference Go library's ``pkg/skel`` does it:

* reads and validates the environment (missing variables are reported
  together, code 4; bad container ID or interface name, code 4);
* prints an "about" text on stderr when CNI_COMMAND is empty;
* answers VERSION without reading stdin;
* reads stdin (code 5 on a read error), requires a JSON object (code 6) with a
  valid network ``name`` (code 7);
* refuses a config ``cniVersion`` the plugin does not support (code 1,
  "incompatible CNI versions"), CHECK below 0.4.0 and GC/STATUS below 1.1.0;
* calls your callback with a :class:`CmdArgs`; what it returns is printed on
  stdout; a :class:`cnirun.core.errors.CNIError` it raises is printed as a CNI
  error object on stdout with exit status 1; any other exception becomes
  error code 999.

A minimal plugin::

    #!/usr/bin/env python3
    from cnirun.cni.skel import plugin_main

    def add(args):
        return args.prev_result() or {"cniVersion": args.cni_version}

    def delete(args):
        return None

    raise SystemExit(plugin_main(add, None, delete, about="CNI example plugin"))

This module uses the standard library only and imports nothing heavy: a
plugin runs on every container start.
"""
from __future__ import annotations

import os
import sys

from ..core import jsonfast as json  # the C codec without json's import cost (re, enum): plugins start faster

TYPE_CHECKING = False  # start-up cost: see cnirun.core
if TYPE_CHECKING:
    from typing import Any, Callable, Iterable, Mapping

    Callback = Callable[["CmdArgs"], Any]

from ..core.errors import (
    DECODING_FAILURE,
    INCOMPATIBLE_VERSION,
    INTERNAL,
    INVALID_ENVIRONMENT,
    INVALID_NETNS,
    INVALID_NETWORK_CONFIG,
    IO_FAILURE,
    UNKNOWN_CONTAINER,
    CNIError,
)
from ..core.paths import is_safe_name
from ..core.version import CURRENT, SUPPORTED_VERSIONS, parse as _parse_version

__all__ = ["CmdArgs", "plugin_main", "parse_cni_args", "COMMANDS"]

#: Every command a runtime may send.
COMMANDS = ("ADD", "CHECK", "DEL", "GC", "STATUS", "VERSION")

# Which CNI_* variables each command requires, in the order upstream skel
# checks (and reports) them.  CNI_COMMAND itself is always required.  Note
# that skel requires CNI_PATH for every command but VERSION, a little
# stricter than the spec's table.
_ENV_VARS = ("CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_ARGS", "CNI_PATH")
_REQUIRED: dict[str, frozenset[str]] = {
    "ADD": frozenset({"CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"}),
    "CHECK": frozenset({"CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"}),
    "DEL": frozenset({"CNI_CONTAINERID", "CNI_IFNAME", "CNI_PATH"}),
    "GC": frozenset({"CNI_PATH"}),
    "STATUS": frozenset({"CNI_PATH"}),
}

# Minimum config version for the commands that did not exist from the start.
_MIN_VERSION = {"CHECK": "0.4.0", "GC": "1.1.0", "STATUS": "1.1.0"}

_MAX_IFNAME = 15


def _validate_container_id(cid: str) -> None:
    if cid == "":
        raise CNIError("missing containerID", code=UNKNOWN_CONTAINER)
    if not is_safe_name(cid):
        raise CNIError("invalid characters in containerID", cid, code=INVALID_ENVIRONMENT)


def _validate_ifname(ifname: str) -> None:
    if ifname == "":
        raise CNIError("interface name is empty", code=INVALID_ENVIRONMENT)
    if len(ifname.encode("utf-8", "surrogateescape")) > _MAX_IFNAME:
        raise CNIError(
            "interface name is too long",
            f"interface name should be less than {_MAX_IFNAME + 1} characters",
            code=INVALID_ENVIRONMENT,
        )
    if ifname in (".", ".."):
        raise CNIError("interface name is . or ..", code=INVALID_ENVIRONMENT)
    if any(c in "/:" or c.isspace() for c in ifname):
        raise CNIError(
            "interface name contains / or : or whitespace characters", code=INVALID_ENVIRONMENT
        )


_VALIDATORS: dict[str, Callable[[str], None]] = {
    "CNI_CONTAINERID": _validate_container_id,
    "CNI_IFNAME": _validate_ifname,
}


def parse_cni_args(text: str) -> dict[str, str]:
    """Parse CNI_ARGS ("K=V;K2=V2") into a dict; a malformed pair is code 4.

    As upstream: an empty string is no arguments; every ';'-separated item
    must contain exactly one '=' (so an empty item, e.g. from a trailing ';',
    and a value containing '=' are errors).  A later key overrides an
    earlier one.
    """
    out: dict[str, str] = {}
    if not text:
        return out
    for pair in text.split(";"):
        parts = pair.split("=")
        if len(parts) != 2:
            raise CNIError(f"ARGS: invalid pair {json.dumps(pair)}", code=INVALID_ENVIRONMENT)
        out[parts[0]] = parts[1]
    return out


class CmdArgs:
    """What a runtime passed to the plugin: the CNI_* variables and stdin.

    Behaves like a dataclass (keyword or positional construction, equality,
    repr) without importing :mod:`dataclasses`.
    """

    __slots__ = ("container_id", "netns", "ifname", "args", "path", "stdin", "netconf",
                 "command", "netns_override")

    def __init__(
        self,
        container_id: str,
        netns: str,
        ifname: str,
        args: str,
        path: str,
        stdin: bytes,
        netconf: dict | None = None,
        command: str = "",
        netns_override: str = "",
    ) -> None:
        self.container_id = container_id
        self.netns = netns
        self.ifname = ifname
        #: CNI_ARGS, unparsed; see :meth:`cni_args`.
        self.args = args
        #: CNI_PATH, unsplit; see :attr:`path_list`.
        self.path = path
        #: stdin exactly as received (b"" for VERSION, whose stdin is not read).
        self.stdin = stdin
        #: stdin parsed as JSON; {} for VERSION.
        self.netconf = {} if netconf is None else netconf
        #: CNI_COMMAND, so that one callback can serve several commands.
        self.command = command
        #: CNI_NETNS_OVERRIDE ("1" or "true" skips the own-netns safety check).
        self.netns_override = netns_override

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={getattr(self, k)!r}" for k in self.__slots__)
        return f"CmdArgs({fields})"

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return all(getattr(self, k) == getattr(other, k) for k in self.__slots__)

    __hash__ = None  # mutable, like a dataclass with eq=True

    def cni_args(self) -> dict[str, str]:
        """CNI_ARGS as a dict; raises CNIError code 4 on a malformed pair."""
        return parse_cni_args(self.args)

    @property
    def cni_version(self) -> str:
        """The config's cniVersion ("0.1.0" when absent, as upstream)."""
        v = self.netconf.get("cniVersion")
        return v if isinstance(v, str) and v else "0.1.0"

    @property
    def name(self) -> str:
        """The network name from the config."""
        n = self.netconf.get("name")
        return n if isinstance(n, str) else ""

    @property
    def path_list(self) -> list[str]:
        """CNI_PATH split on ':' (empty entries dropped)."""
        return [p for p in self.path.split(":") if p]

    def prev_result(self) -> dict | None:
        """The config's prevResult in the config's cniVersion, or None.

        A prevResult without cniVersion is taken to be in the config's
        version (as upstream).  A prevResult already in the config's version
        is returned unchanged (a copy); otherwise it is converted with
        :func:`cnirun.cni.result.convert`.
        """
        prev = self.netconf.get("prevResult")
        if prev is None:
            return None
        if not isinstance(prev, dict):
            raise CNIError("prevResult must be a JSON object", code=DECODING_FAILURE)
        target = self.cni_version
        prev = dict(prev)
        src = prev.get("cniVersion")
        if not isinstance(src, str) or not src:
            prev["cniVersion"] = target
            return prev
        if src == target:
            return prev
        from .result import convert  # lazily: only chained plugins need it

        return convert(prev, target)


# --------------------------------------------------------------------------
# stream helpers: accept text or binary streams, and bytes/str for stdin


def _read_stdin(stdin: Any) -> bytes:
    if isinstance(stdin, bytes):
        return stdin
    if isinstance(stdin, str):
        return stdin.encode()
    data = stdin.read()
    if isinstance(data, str):
        data = data.encode()
    return data


def _write(stream: Any, text: str) -> None:
    try:
        stream.write(text)
    except TypeError:  # a binary stream
        stream.write(text.encode())
    try:
        stream.flush()
    except (AttributeError, OSError, ValueError):
        pass


def _error_version(netconf: dict | None) -> str:
    """The cniVersion an error object is printed with."""
    v = netconf.get("cniVersion") if isinstance(netconf, dict) else None
    if isinstance(v, str) and v in SUPPORTED_VERSIONS:
        return v
    if isinstance(v, str) and v == "":
        return "0.1.0"
    return CURRENT


# --------------------------------------------------------------------------
# the dispatcher


def _getenv(environ: Mapping[str, str], name: str) -> str:
    v = environ.get(name)
    return v if isinstance(v, str) else ""


def _args_from_env(environ: Mapping[str, str], stdin: Any) -> CmdArgs:
    cmd = _getenv(environ, "CNI_COMMAND")
    required = _REQUIRED.get(cmd, frozenset())
    values: dict[str, str] = {}
    missing: list[str] = []
    for name in _ENV_VARS:
        val = _getenv(environ, name)
        values[name] = val
        if val == "":
            if name == "CNI_COMMAND" or name in required:
                missing.append(name)
        elif name in required and name in _VALIDATORS:
            _VALIDATORS[name](val)
    if missing:
        raise CNIError(
            f"required env variables [{','.join(missing)}] missing", code=INVALID_ENVIRONMENT
        )

    netconf: dict = {}
    if cmd == "VERSION":
        data = b""
    else:
        try:
            data = _read_stdin(stdin)
        except (OSError, ValueError) as e:
            raise CNIError(f"error reading from stdin: {e}", code=IO_FAILURE) from e
        netconf = _validate_config(data)

    return CmdArgs(
        container_id=values["CNI_CONTAINERID"],
        netns=values["CNI_NETNS"],
        ifname=values["CNI_IFNAME"],
        args=values["CNI_ARGS"],
        path=values["CNI_PATH"],
        stdin=data,
        netconf=netconf,
        command=cmd,
        netns_override=_getenv(environ, "CNI_NETNS_OVERRIDE"),
    )


def _validate_config(data: bytes) -> dict:
    try:
        conf = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise CNIError(f"error unmarshall network config: {e}", code=DECODING_FAILURE) from e
    if not isinstance(conf, dict):
        raise CNIError(
            f"error unmarshall network config: expected a JSON object, got {type(conf).__name__}",
            code=DECODING_FAILURE,
        )
    name = conf.get("name", "")
    if name is None:
        name = ""
    if not isinstance(name, str):
        raise CNIError(
            "error unmarshall network config: name must be a string", code=DECODING_FAILURE
        )
    if name == "":
        raise CNIError("missing network name", code=INVALID_NETWORK_CONFIG)
    if not is_safe_name(name):
        raise CNIError("invalid characters found in network name", name, code=INVALID_NETWORK_CONFIG)
    return conf


def _config_version(netconf: dict) -> str:
    v = netconf.get("cniVersion")
    if v is None or v == "":
        return "0.1.0"
    if not isinstance(v, str):
        raise CNIError(
            "decoding version from network config: cniVersion must be a string",
            code=DECODING_FAILURE,
        )
    return v


def _ge(a: str, b: str) -> bool:
    """a >= b as versions; an unparsable version is a decoding failure (code 6)."""
    try:
        return _parse_version(a) >= _parse_version(b)
    except CNIError as e:
        raise CNIError(e.msg, e.details, code=DECODING_FAILURE) from None


def _check_version(conf_version: str, versions: tuple[str, ...]) -> None:
    if conf_version not in versions:
        listed = "[" + " ".join(json.dumps(v) for v in versions) + "]"
        raise CNIError(
            "incompatible CNI versions",
            f"config is {json.dumps(conf_version)}, plugin supports {listed}",
            code=INCOMPATIBLE_VERSION,
        )


def _check_gate(cmd: str, conf_version: str, versions: tuple[str, ...]) -> None:
    """CHECK needs 0.4.0, GC and STATUS need 1.1.0, in the config and the plugin."""
    if not _ge(conf_version, _MIN_VERSION[cmd]):
        raise CNIError(f"config version does not allow {cmd}", code=INCOMPATIBLE_VERSION)
    for v in versions:
        if _ge(v, conf_version):
            return
    raise CNIError(f"plugin version does not allow {cmd}", code=INCOMPATIBLE_VERSION)


def _is_own_netns(path: str) -> bool:
    """True when `path` names the network namespace this process is in."""
    if not path:
        return False
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return False  # the plugin itself reports an unusable netns
    for own in ("/proc/thread-self/ns/net", "/proc/self/ns/net"):
        try:
            mine = os.stat(own)
        except OSError:
            continue
        return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)
    raise CNIError("get plugin's netns failed", code=INVALID_NETNS)


def _dispatch(
    callbacks: dict[str, Callback | None],
    versions: tuple[str, ...],
    about: str,
    environ: Mapping[str, str],
    stdin: Any,
    stdout: Any,
    stderr: Any,
    state: dict,
) -> int:
    try:
        args = _args_from_env(environ, stdin)
    except CNIError as e:
        if (
            e.code == INVALID_ENVIRONMENT
            and _getenv(environ, "CNI_COMMAND") == ""
            and about
        ):
            _write(stderr, f"{about}\nCNI protocol versions supported: {', '.join(versions)}\n")
            return 0
        raise
    state["netconf"] = args.netconf
    cmd = args.command

    if cmd == "VERSION":
        _write(stdout, json.dumps({"cniVersion": CURRENT, "supportedVersions": list(versions)}) + "\n")
        return 0
    if cmd not in callbacks:
        raise CNIError(f"unknown CNI_COMMAND: {cmd}", code=INVALID_ENVIRONMENT)

    conf_version = _config_version(args.netconf)
    if cmd in _MIN_VERSION:
        _check_gate(cmd, conf_version, versions)
    _check_version(conf_version, versions)
    if cmd in ("ADD", "DEL") and args.netns_override.upper() != "TRUE" and args.netns_override != "1":
        # Upstream checks this after the callback; we check before it, so a
        # plugin never acts on its own namespace.
        if _is_own_netns(args.netns):
            raise CNIError(
                "plugin's netns and netns from CNI_NETNS should not be the same",
                code=INVALID_NETNS,
            )

    fn = callbacks[cmd]
    if fn is None:
        return 0
    try:
        out = fn(args)
    except CNIError:
        raise
    except Exception as e:  # noqa: BLE001 - any plugin bug becomes code 999
        raise CNIError(str(e) or type(e).__name__, code=INTERNAL) from e
    if out is None:
        return 0
    if isinstance(out, bytes):
        out = out.decode("utf-8", "replace")
    if isinstance(out, str):
        _write(stdout, out)
        return 0
    if isinstance(out, dict):
        if "cniVersion" not in out:
            out = {"cniVersion": conf_version, **out}
        _write(stdout, json.dumps(out) + "\n")
        return 0
    raise CNIError(
        f"plugin callback for {cmd} returned {type(out).__name__}, expected dict, str or None",
        code=INTERNAL,
    )


def plugin_main(
    add: Callback | None,
    check: Callback | None,
    delete: Callback | None,
    *,
    versions: Iterable[str] = SUPPORTED_VERSIONS,
    about: str = "",
    gc: Callback | None = None,
    status: Callback | None = None,
    environ: Mapping[str, str] | None = None,
    stdin: Any = None,
    stdout: Any = None,
    stderr: Any = None,
) -> int:
    """Run one CNI operation and return the process exit status.

    `add`, `check`, `delete`, `gc` and `status` receive a :class:`CmdArgs`
    and return a dict (printed as JSON on stdout; a missing ``cniVersion``
    is filled with the config's), a str/bytes (printed verbatim) or None
    (nothing printed).  A callback left as None succeeds without output.

    `versions` lists the spec versions the plugin supports (the config's
    cniVersion must be one of them); `about` is printed on stderr, with the
    versions, when CNI_COMMAND is empty.  `environ`, `stdin`, `stdout` and
    `stderr` default to the process's own; stdin may be a binary or text
    stream, or bytes/str.

    Returns 0 on success and 1 after printing a CNI error object on stdout.
    Use it as ``raise SystemExit(plugin_main(...))``.
    """
    versions = tuple(versions)
    if not versions:
        raise ValueError("a plugin must support at least one CNI version")
    environ = os.environ if environ is None else environ
    if stdin is None:
        stdin = sys.stdin.buffer if sys.stdin is not None else b""
    stdout = sys.stdout if stdout is None else stdout
    stderr = sys.stderr if stderr is None else stderr
    callbacks = {"ADD": add, "CHECK": check, "DEL": delete, "GC": gc, "STATUS": status}
    state: dict = {}
    try:
        return _dispatch(callbacks, versions, about, environ, stdin, stdout, stderr, state)
    except CNIError as e:
        try:
            _write(stdout, e.to_json(_error_version(state.get("netconf"))) + "\n")
        except (OSError, ValueError) as werr:
            _write(stderr, f"error writing error JSON to stdout: {werr}\n")
        return 1
