"""`cnirun overlay init|agent|status`: multi-host overlay networks, flannel's way (cnirun.overlay)."""
from __future__ import annotations

import inspect
import json
import os
import stat
import time
from typing import TYPE_CHECKING, Any, Callable, get_type_hints

import typer

from ..overlay import subnet_env
from .errors import fail, one_line_errors

if TYPE_CHECKING:
    from ..overlay.etcd import Credentials

PASSWORD_ENV = "FLANNELD_ETCD_PASSWORD"
_MAX_PASSWORD_BYTES = 4096


def _password(path: str | None) -> str | None:
    """The etcd password: from --etcd-password-file (first line; a file only its owner can read), else the environment."""
    if not path:
        return os.environ.get(PASSWORD_ENV)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as e:
        fail(f"--etcd-password-file {path}: {e.strerror}")
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            fail(f"--etcd-password-file {path} is not a regular file")
        if st.st_mode & 0o077:
            fail(f"--etcd-password-file {path} can be read by other users (mode {st.st_mode & 0o777:o}): chmod 600 it")
        raw = f.read(_MAX_PASSWORD_BYTES + 1)
    if len(raw) > _MAX_PASSWORD_BYTES:
        fail(f"--etcd-password-file {path} is larger than {_MAX_PASSWORD_BYTES} bytes: it should hold the password only")
    text = raw.decode(errors="replace").split("\n", 1)[0].rstrip("\r")
    if not text:
        fail(f"--etcd-password-file {path} is empty: its first line is the password")
    return text


def _credentials(cafile: str | None, certfile: str | None, keyfile: str | None, username: str | None,
                 password_file: str | None, password: str | None) -> Credentials:
    from ..overlay.etcd import Credentials

    if password is not None:
        fail(f"--etcd-password would show the password to every user of this host (ps, /proc): put it in {PASSWORD_ENV}"
             " or in a file only root can read and pass --etcd-password-file FILE")
    return Credentials(cafile=cafile or None, certfile=certfile or None, keyfile=keyfile or None,
                       username=username or None,
                       password=_password(password_file) if username or password_file else None)


def _option(name: str, default: Any, *flags: str, **kw: Any) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=str,
                             default=typer.Option(default, *flags, **kw))


# --etcd, and flanneld's names and environment variables for etcd's credentials: the options of every
# command that talks to etcd, defined once (_with_etcd adds them).
_ETCD = _option("etcd", ..., "--etcd", help="etcd client URL, e.g. http://192.0.2.1:2379 (v3 API).")
_CREDENTIALS = (
    _option("etcd_cafile", None, "--etcd-cafile", envvar="FLANNELD_ETCD_CAFILE",
            help="CA certificate(s) that signed etcd's server certificate (https:// --etcd)."),
    _option("etcd_certfile", None, "--etcd-certfile", envvar="FLANNELD_ETCD_CERTFILE",
            help="Client certificate for etcd's --client-cert-auth (with --etcd-keyfile)."),
    _option("etcd_keyfile", None, "--etcd-keyfile", envvar="FLANNELD_ETCD_KEYFILE",
            help="Private key of --etcd-certfile."),
    _option("etcd_username", None, "--etcd-username", envvar="FLANNELD_ETCD_USERNAME",
            help=f"etcd user (auth enabled); its password comes from {PASSWORD_ENV} or --etcd-password-file."),
    _option("etcd_password_file", None, "--etcd-password-file", envvar="FLANNELD_ETCD_PASSWORD_FILE",
            help="File whose first line is the etcd password (mode 600)."),
    _option("etcd_password", None, "--etcd-password", hidden=True),
)


def _with_etcd(fn: Callable[..., None]) -> Callable[..., None]:
    """fn(etcd, OPTIONS..., creds) as a command taking --etcd first, its own OPTIONS, then the
    credential options; their Credentials (refused or read as _credentials says) are fn's creds."""
    hints = get_type_hints(fn, localns={"Credentials": object})
    own = [p.replace(annotation=hints[p.name]) for p in inspect.signature(fn).parameters.values()
           if p.name not in ("etcd", "creds")]

    def command(**kw: Any) -> None:
        creds = _credentials(*(kw.pop(p.name) for p in _CREDENTIALS))
        fn(creds=creds, **kw)

    command.__name__, command.__doc__ = fn.__name__, fn.__doc__
    command.__signature__ = inspect.Signature([_ETCD, *own, *_CREDENTIALS])  # type: ignore[attr-defined]
    return command


def register(app: typer.Typer) -> None:
    overlay = typer.Typer(
        help="Overlay networks across hosts: flannel's etcd keys, subnet.env and VXLAN, with cnirun's own agent and flannel plugin.",
        no_args_is_help=True,
    )
    app.add_typer(overlay, name="overlay")

    subnet_file_opt = typer.Option(subnet_env.DEFAULT_PATH, "--subnet-file", help="Where subnet.env goes (flanneld's -subnet-file).")

    @overlay.command("init")
    @_with_etcd
    def init(
        etcd: str,
        network: str = typer.Option(..., "--network", help="The overlay's CIDR, e.g. 10.5.0.0/16."),
        subnet_len: int = typer.Option(None, "--subnet-len", help="Per-host subnet length (default 24, flannel's rule)."),
        vni: int = typer.Option(1, "--vni", help="VXLAN id (flannel's default 1)."),
        port: int = typer.Option(8472, "--port", help="VXLAN UDP port (flannel's default 8472)."),
        force: bool = typer.Option(False, "--force", help="Replace a different config already in etcd."),
        *,
        creds: Credentials,
    ) -> None:
        """Write the network config to etcd at /coreos.com/network/config."""
        from ..overlay import config, registry
        from ..overlay.etcd import Store

        with one_line_errors():
            cfg = config.build(network, subnet_len, vni, port)
            what = registry.write_config(Store(etcd, creds=creds), cfg, force=force)
        typer.echo(f"{what} {registry.CONFIG_KEY} = {cfg.to_json()} ({cfg.capacity()} host subnets of /{cfg.subnet_len})")

    @overlay.command("agent")
    @_with_etcd
    def agent(
        etcd: str,
        iface: str = typer.Option(None, "--iface", help="Interface the VXLAN traffic uses (its first IPv4 address is the public IP)."),
        public_ip: str = typer.Option(None, "--public-ip", help="This host's address the other hosts reach (finds the interface)."),
        subnet_file: str = subnet_file_opt,
        lease_ttl: int = typer.Option(86400, "--lease-ttl", help="Seconds a lease lives without renewal (flannel: 24 h)."),
        renew_margin: int = typer.Option(3600, "--renew-margin", help="Renew this many seconds before expiry (flannel: 1 h)."),
        resync: float = typer.Option(30.0, "--resync", help="Seconds between full re-lists of the leases (besides the watch)."),
        *,
        creds: Credentials,
    ) -> None:
        """Run this host's overlay daemon (foreground; SIGTERM removes its device and lease)."""
        from ..overlay.agent import AgentOptions, run_agent

        if not iface and not public_ip:
            fail("say which interface carries the overlay: --iface IFACE or --public-ip IP")
        if os.geteuid() != 0:
            fail("the overlay agent creates a VXLAN device and routes: run it as root")
        margin = min(renew_margin, max(1, lease_ttl // 2)) if renew_margin >= lease_ttl else renew_margin
        opts = AgentOptions(etcd=etcd, iface=iface, public_ip=public_ip, subnet_file=subnet_file,
                            ttl=lease_ttl, renew_margin=margin, resync=resync, creds=creds)
        with one_line_errors():
            try:
                run_agent(opts)
            except (ImportError, OSError) as e:
                fail(f"overlay agent: {e}")

    @overlay.command("status")
    def status_(
        subnet_file: str = subnet_file_opt,
        fmt: str = typer.Option("table", "--format", help="table or json."),
    ) -> None:
        """This host's lease and the peers its agent programmed (checked against the kernel)."""
        from ..overlay import status

        if fmt not in ("table", "json"):
            fail(f"unknown --format {fmt!r}: expected table or json")
        state = status.read(subnet_file)
        if state is None:
            fail(f"no overlay agent state for {subnet_file}: is cnirun overlay agent running (same --subnet-file)?")
        state["agentRunning"] = status.pid_alive(state.get("pid"))
        state["kernel"] = _kernel(state)
        if fmt == "json":
            typer.echo(json.dumps(state, indent=1, sort_keys=True))
            return
        typer.echo(_table(state))


def _kernel(state: dict[str, Any]) -> dict[str, Any]:
    """What the VXLAN device holds, by peer subnet ({} when the device is missing)."""
    try:
        from ..overlay.vxlan import DataPlane

        with DataPlane() as dp:
            index = dp.index_of(str(state.get("device", "")))
            return {} if index is None else {"device": True, "entries": dp.programmed(index)}
    except Exception as e:  # noqa: BLE001 - status must still print the agent's view
        return {"error": str(e)}


def _table(state: dict[str, Any]) -> str:
    from .network_cmd import table

    net = state.get("network", {})
    backend = net.get("Backend", {})
    left = int(state.get("leaseExpires", 0) - time.time())
    lines = [
        f"lease:    {state.get('subnet')} for {state.get('publicIP')} (VtepMAC {state.get('vtepMAC')}),"
        f" expires in {_duration(left)}",
        f"network:  {net.get('Network')} /{net.get('SubnetLen')} per host, VNI {backend.get('VNI')}, port {backend.get('Port')}",
        f"agent:    pid {state.get('pid')} {'running' if state['agentRunning'] else 'NOT RUNNING'};"
        f" etcd {state.get('etcd')} {'reachable' if state.get('etcdReachable') else 'UNREACHABLE (retrying)'}",
        f"device:   {state.get('device')} {'present' if state['kernel'].get('device') else 'MISSING'}",
    ]
    entries = state["kernel"].get("entries", {})
    rows = []
    for p in state.get("peers", []):
        k = entries.get(p["subnet"]) or {}
        rows.append([
            p["subnet"], p["publicIP"], p["vtepMAC"],
            "ok" if k else "missing",
            "ok" if k.get("vtepMAC") == p["vtepMAC"] else "missing",
            "ok" if k.get("publicIP") == p["publicIP"] else "missing",
        ])
    refused = state.get("refused") or []
    if refused:
        lines.append(f"refused:  {len(refused)} lease(s) in etcd not programmed: {refused[0].get('reason')}"
                     + (" ..." if len(refused) > 1 else "") + " (all: --format json)")
    lines.append("")
    lines.append(table(rows, ["PEER SUBNET", "PUBLIC IP", "VTEP MAC", "ROUTE", "NEIGH", "FDB"]) if rows else "peers:    none")
    return "\n".join(lines)


def _duration(seconds: int) -> str:
    if seconds <= 0:
        return "0 s (expired)"
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s} s")
