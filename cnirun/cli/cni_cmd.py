"""`cnirun cni ...`: a drop-in for upstream cnitool, plus version and validate.

Same environment as cnitool: NETCONFPATH, CNI_PATH, CNI_ARGS, CAP_ARGS,
CNI_IFNAME, and cnirun's CNI_CACHE_DIR and CNI_CONTAINERID overrides.

This path is parsed by hand and never imports typer: `cnirun cni add` runs
once per container start in scripts, where typer's import would be most of
cnirun's own cost (see bench/bench_core.py). `cli.main` calls :func:`main`
directly; the typer application (`app`, built on first access) only serves
`cnirun --help` and callers that still mount it.
"""
from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # start-up cost: see cnirun.core
if TYPE_CHECKING:
    from typing import Any, Callable

from ..core.errors import ArgumentError, CNIError
from .errors import fail, one_line_errors

USAGE = """\
usage: cnirun cni COMMAND ...   (a drop-in for cnitool)

  add      NETWORK NETNS [-i IFNAME]   ADD the network's chain to NETNS, print the result
  check    NETWORK NETNS [-i IFNAME]   CHECK the attachment against the cached result
  del      NETWORK NETNS [-i IFNAME]   DEL the attachment (from the cache; NETNS may be gone)
  gc       NETWORK [NETNS [-i IFNAME]] [--valid CONTAINERID/IFNAME]...
                                       DEL every cached attachment not kept, then plugin GC
  status   NETWORK                     STATUS: exit 0 when the network is ready for ADD
  version  TYPE                        the CNI versions a plugin supports
  validate NETWORK                     every plugin exists and speaks the list's cniVersion

--debug (anywhere before `--`) or CNIRUN_TRACE=1: trace each phase and its
duration on stderr (argv parse, config load, lock wait, plugin execs, cache writes).

NETNS is a netns path (a bare name means /run/netns/NAME). Environment:
NETCONFPATH (default /etc/cni/net.d), CNI_PATH, CNI_ARGS (K=V;K2=V2),
CAP_ARGS (JSON object), CNI_IFNAME (default eth0), CNI_CACHE_DIR (default
/var/lib/cni), CNI_CONTAINERID (default: cnitool's, derived from NETNS),
CNIRUN_PLUGIN_TIMEOUT (seconds, default 60).

Examples:
  ip netns add test && cnirun cni add mynet test
  CAP_ARGS='{"portMappings":[{"hostPort":8080,"containerPort":80,"protocol":"tcp"}]}' cnirun cni add mynet test
  cnirun cni del mynet test
"""


def cnitool_container_id(netns_path: str) -> str:
    """cnitool's derivation ("cnitool-" + first 10 bytes of SHA-512 of the path, hex).

    Using the same one lets cnirun and cnitool DEL each other's attachments.
    """
    try:
        from _sha512 import sha512  # the builtin module: hashlib's OpenSSL binding costs ~2 ms to load
    except ImportError:
        from hashlib import sha512
    return "cnitool-" + sha512(netns_path.encode()).hexdigest()[:20]


def netns_path(arg: str) -> str:
    """The absolute netns path, as cnitool computes it (filepath.Abs).

    Beyond cnitool: a bare name that is not a file here but is a named netns
    means /run/netns/NAME (what `ip netns add NAME` made).
    """
    from ..network.netns import path_of

    if "/" not in arg and not os.path.exists(arg) and os.path.exists(path_of(arg)):
        return path_of(arg)
    return os.path.abspath(arg)


def _runtime(netns: str, ifname: str | None) -> Any:
    from ..cni.runtime_conf import RuntimeConf, parse_cap_args, parse_cni_args

    path = netns_path(netns) if netns else ""
    return RuntimeConf(
        container_id=os.environ.get("CNI_CONTAINERID") or cnitool_container_id(path),
        netns=path,
        ifname=ifname or os.environ.get("CNI_IFNAME") or "eth0",
        args=parse_cni_args(os.environ.get("CNI_ARGS", "")),
        capability_args=parse_cap_args(os.environ.get("CAP_ARGS", "")),
    )


def _cni() -> Any:
    from ..cni.runtime import CNI

    return CNI()


# -- the operations (shared by the fast path and the typer app) -------------


def do_add(network: str, netns: str, ifname: str | None = None) -> None:
    """ADD the network's plugin chain to NETNS and print the result as cnitool does."""
    from ..cni.result import Result

    rt = _runtime(netns, ifname)
    cni = _cni()
    result = cni.add(cni.network(network), rt)
    sys.stdout.write(Result.from_dict(result).to_json() + "\n")


def do_check(network: str, netns: str, ifname: str | None = None) -> None:
    """CHECK the attachment against the cached ADD result."""
    rt = _runtime(netns, ifname)
    cni = _cni()
    cni.check(cni.network(network), rt)


def do_del(network: str, netns: str, ifname: str | None = None) -> None:
    """DEL the attachment (reverse order, from the cache). A vanished NETNS is fine."""
    # By name: CNI.delete runs the config cached at ADD and reads the netconf
    # files only when nothing is cached (an unknown network then fails there).
    _cni().delete(network, _runtime(netns, ifname))


def do_gc(network: str, netns: str = "", ifname: str | None = None, valid: list[str] | None = None) -> None:
    """GC: DEL every cached attachment of NETWORK that is not valid, then the plugins' GC."""
    keep: list[tuple[str, str]] = []
    if netns:
        rt = _runtime(netns, ifname)
        keep.append((rt.container_id, rt.ifname))
    for v in valid or []:
        cid, sep, ifn = v.partition("/")
        if not sep or not cid or not ifn:
            raise ArgumentError(f"invalid --valid {v!r}: expected CONTAINERID/IFNAME")
        keep.append((cid, ifn))
    cni = _cni()
    errors = cni.gc(cni.network(network), keep)
    if errors:
        raise errors[0] if len(errors) == 1 else CNIError("; ".join(str(e) for e in errors))


def do_status(network: str, netns: str = "") -> None:
    """STATUS: exit 0 when every plugin is ready for ADD."""
    cni = _cni()
    cni.status(cni.network(network))


def do_version(plugin_type: str) -> None:
    """Print a plugin's VERSION answer."""
    info = _cni().version(plugin_type)
    import json

    sys.stdout.write(json.dumps({"cniVersion": info.cni_version, "supportedVersions": info.supported_versions}) + "\n")


def do_validate(network: str) -> None:
    """Check that every plugin of NETWORK exists and speaks its cniVersion."""
    cni = _cni()
    net = cni.network(network)
    caps = cni.validate(net)
    sys.stdout.write(
        f"{net.name}: OK (cniVersion {net.cni_version}; plugins {', '.join(net.types)}; "
        f"capabilities {', '.join(caps) or 'none'})\n"
    )


# -- fast path: hand-parsed argv ----------------------------------------------

# command -> (operation, required positionals, optional positionals, takes -i, takes --valid)
_COMMANDS: dict[str, tuple[Callable[..., None], list[str], list[str], bool, bool]] = {
    "add": (do_add, ["NETWORK", "NETNS"], [], True, False),
    "check": (do_check, ["NETWORK", "NETNS"], [], True, False),
    "del": (do_del, ["NETWORK", "NETNS"], [], True, False),
    "gc": (do_gc, ["NETWORK"], ["NETNS"], True, True),
    "status": (do_status, ["NETWORK"], ["NETNS"], False, False),
    "version": (do_version, ["TYPE"], [], False, False),
    "validate": (do_validate, ["NETWORK"], [], False, False),
}


def _usage_error(message: str) -> None:
    fail(f"{message} (see `cnirun cni --help`)", 2)


def main(argv: list[str]) -> int:
    """Run `cnirun cni ARGV...`; returns the exit status (errors: one line, exit 1)."""
    from ..core import trace

    t0 = trace.now()
    end = argv.index("--") if "--" in argv else len(argv)
    if "--debug" in argv[:end]:
        argv = [a for a in argv[:end] if a != "--debug"] + argv[end:]
        trace.enable()
    if trace.ON:
        trace.startup()
    if not argv or argv[0] in ("-h", "--help", "help"):
        sys.stdout.write(USAGE)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    spec = _COMMANDS.get(command)
    if spec is None:
        _usage_error(f"unknown cni command {command!r}: expected one of {', '.join(_COMMANDS)}")
    func, required, optional, takes_ifname, takes_valid = spec  # type: ignore[misc]
    positionals: list[str] = []
    ifname: str | None = None
    valid: list[str] = []
    i = 0
    only_positionals = False
    while i < len(rest):
        arg = rest[i]
        if only_positionals or not arg.startswith("-") or arg == "-":
            positionals.append(arg)
        elif arg == "--":
            only_positionals = True
        elif arg in ("-h", "--help"):
            sys.stdout.write(USAGE)
            return 0
        elif takes_ifname and (arg in ("-i", "--ifname") or arg.startswith("--ifname=")):
            if "=" in arg:
                ifname = arg.split("=", 1)[1]
            elif i + 1 < len(rest):
                i += 1
                ifname = rest[i]
            else:
                _usage_error(f"{arg} needs an interface name")
        elif takes_valid and (arg == "--valid" or arg.startswith("--valid=")):
            if "=" in arg:
                valid.append(arg.split("=", 1)[1])
            elif i + 1 < len(rest):
                i += 1
                valid.append(rest[i])
            else:
                _usage_error("--valid needs CONTAINERID/IFNAME")
        else:
            _usage_error(f"unknown option {arg!r} for `cni {command}`")
        i += 1
    if not (len(required) <= len(positionals) <= len(required) + len(optional)):
        names = " ".join(required + [f"[{o}]" for o in optional])
        _usage_error(f"`cni {command}` takes {names}, got {len(positionals)} argument(s)")
    kwargs: dict[str, Any] = {}
    if takes_ifname:
        kwargs["ifname"] = ifname
    if takes_valid:
        kwargs["valid"] = valid
    if trace.ON:
        trace.event("argv parse", trace.now() - t0, f"cni {command}")
    with one_line_errors():
        func(*positionals, **kwargs)
    return 0


# -- the typer application (only for `cnirun --help` and embedding) ---------


def _build_app() -> Any:
    import typer

    app = typer.Typer(
        help="cnitool-compatible plugin operations on a network namespace.",
        no_args_is_help=True,
        add_completion=False,
        rich_markup_mode=None,
    )
    ifname_opt = typer.Option(None, "-i", "--ifname", help="Interface name in the netns (default: $CNI_IFNAME or eth0).")

    @app.command()
    def add(network: str, netns: str, ifname: str | None = ifname_opt) -> None:
        """ADD the network's plugin chain to NETNS and print the result."""
        with one_line_errors():
            do_add(network, netns, ifname)

    @app.command()
    def check(network: str, netns: str, ifname: str | None = ifname_opt) -> None:
        """CHECK the attachment against the cached ADD result."""
        with one_line_errors():
            do_check(network, netns, ifname)

    @app.command(name="del")
    def delete(network: str, netns: str, ifname: str | None = ifname_opt) -> None:
        """DEL the attachment (reverse order, from the cache). A vanished NETNS is fine."""
        with one_line_errors():
            do_del(network, netns, ifname)

    @app.command()
    def gc(
        network: str,
        netns: str = typer.Argument("", help="A netns whose attachment stays valid."),
        ifname: str | None = ifname_opt,
        valid: list[str] = typer.Option([], "--valid", help="CONTAINERID/IFNAME to keep; repeatable."),
    ) -> None:
        """GC: DEL every cached attachment of NETWORK that is not valid, then the plugins' GC."""
        with one_line_errors():
            do_gc(network, netns, ifname, valid)

    @app.command()
    def status(network: str, netns: str = typer.Argument("", hidden=True)) -> None:
        """STATUS: exit 0 when every plugin is ready for ADD."""
        with one_line_errors():
            do_status(network, netns)

    @app.command()
    def version(plugin_type: str = typer.Argument(..., metavar="TYPE")) -> None:
        """Ask a plugin which CNI versions it supports."""
        with one_line_errors():
            do_version(plugin_type)

    @app.command()
    def validate(network: str) -> None:
        """Check that every plugin of NETWORK exists and speaks its cniVersion."""
        with one_line_errors():
            do_validate(network)

    return app


_app: Any = None


def __getattr__(name: str) -> Any:
    # `cni_cmd.app` (mounted by cli/app.py) is built on first access, so
    # importing this module for the fast path costs no typer import.
    global _app
    if name == "app":
        if _app is None:
            _app = _build_app()
        return _app
    raise AttributeError(name)


__all__ = ["main", "cnitool_container_id", "netns_path", "do_add", "do_check", "do_del", "do_gc", "do_status"]
