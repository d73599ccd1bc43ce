"""`cnirun cni ...`: a drop-in for upstream cnitool, plus version and validate.

Same environment as cnitool: NETCONFPATH, CNI_PATH, CNI_ARGS, CAP_ARGS,
CNI_IFNAME, and cnirun's CNI_CACHE_DIR and CNI_CONTAINERID overrides.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys

import typer

from ..errors import ArgumentError, CNIError, NetnsError
from ..runtime import CNI, RuntimeConf, parse_cap_args, parse_cni_args
from .errors import one_line_errors

app = typer.Typer(
    help="cnitool-compatible plugin operations on a network namespace.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)

IFNAME_OPT = typer.Option(None, "-i", "--ifname", help="Interface name in the netns (default: $CNI_IFNAME or eth0).")


def cnitool_container_id(netns_path: str) -> str:
    """cnitool's derivation, so both tools name the same attachment identically."""
    return "cnitool-" + hashlib.sha512(netns_path.encode()).hexdigest()[:20]


def _netns_path(arg: str) -> str:
    # Convenience beyond cnitool: a bare name means a netns under /run/netns.
    if "/" not in arg and os.path.exists(os.path.join("/run/netns", arg)):
        return os.path.join("/run/netns", arg)
    return os.path.abspath(arg)


def _runtime(netns: str, ifname: str | None) -> RuntimeConf:
    path = _netns_path(netns) if netns else ""
    return RuntimeConf(
        container_id=os.environ.get("CNI_CONTAINERID") or cnitool_container_id(path),
        netns=path,
        ifname=ifname or os.environ.get("CNI_IFNAME") or "eth0",
        args=parse_cni_args(os.environ.get("CNI_ARGS", "")),
        capability_args=parse_cap_args(os.environ.get("CAP_ARGS", "")),
    )


@app.command()
def add(network: str, netns: str, ifname: str | None = IFNAME_OPT) -> None:
    """ADD the network's plugin chain to NETNS and print the result."""
    with one_line_errors():
        rt = _runtime(netns, ifname)
        cni = CNI()
        result = cni.add(cni.network(network), rt)
        sys.stdout.write(json.dumps(result, indent=4) + "\n")


@app.command()
def check(network: str, netns: str, ifname: str | None = IFNAME_OPT) -> None:
    """CHECK the attachment against the cached ADD result."""
    with one_line_errors():
        rt = _runtime(netns, ifname)
        cni = CNI()
        cni.check(cni.network(network), rt)


@app.command(name="del")
def delete(network: str, netns: str, ifname: str | None = IFNAME_OPT) -> None:
    """DEL the attachment (reverse order, from the cache). A vanished NETNS is fine."""
    with one_line_errors():
        rt = _runtime(netns, ifname)
        cni = CNI()
        try:
            net = cni.network(network)
        except CNIError:
            # The cache still has the config the attachment was made with.
            if cni.cached(network, rt) is None:
                raise
            net = None
        cni.delete(net if net is not None else network, rt)


@app.command()
def gc(
    network: str,
    netns: str = typer.Argument("", help="A netns whose attachment stays valid."),
    ifname: str | None = IFNAME_OPT,
    valid: list[str] = typer.Option([], "--valid", help="CONTAINERID/IFNAME to keep; repeatable."),
) -> None:
    """GC: DEL every cached attachment of NETWORK that is not valid, then the plugins' GC."""
    with one_line_errors():
        keep: list[tuple[str, str]] = []
        if netns:
            rt = _runtime(netns, ifname)
            keep.append((rt.container_id, rt.ifname))
        for v in valid:
            cid, sep, ifn = v.partition("/")
            if not sep or not cid or not ifn:
                raise ArgumentError(f"invalid --valid {v!r}: expected CONTAINERID/IFNAME")
            keep.append((cid, ifn))
        cni = CNI()
        errors = cni.gc(cni.network(network), keep)
        if errors:
            raise errors[0] if len(errors) == 1 else CNIError("; ".join(str(e) for e in errors))


@app.command()
def status(network: str, netns: str = typer.Argument("", hidden=True)) -> None:
    """STATUS: exit 0 when every plugin is ready for ADD."""
    with one_line_errors():
        cni = CNI()
        cni.status(cni.network(network))


@app.command()
def version(plugin_type: str = typer.Argument(..., metavar="TYPE")) -> None:
    """Ask a plugin which CNI versions it supports."""
    with one_line_errors():
        info = CNI().version(plugin_type)
        sys.stdout.write(json.dumps({"cniVersion": info.cni_version, "supportedVersions": info.supported_versions}) + "\n")


@app.command()
def validate(network: str) -> None:
    """Check that every plugin of NETWORK exists and speaks its cniVersion."""
    with one_line_errors():
        cni = CNI()
        net = cni.network(network)
        caps = cni.validate(net)
        sys.stdout.write(
            f"{net.name}: OK (cniVersion {net.cni_version}; plugins {', '.join(net.types)}; "
            f"capabilities {', '.join(caps) or 'none'})\n"
        )


__all__ = ["app", "cnitool_container_id", "NetnsError"]
