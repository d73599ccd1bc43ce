"""flannel: the flannel CNI meta-plugin (flannel-io/cni-plugin), on cnirun.cni.skel.

Reads the subnet.env that `cnirun overlay agent` (or flanneld) writes and
runs a delegate plugin, bridge by default, with host-local IPAM on this
host's subnet. Configuration, flannel's keys::

    {
      "type": "flannel", "name": "overlay",
      "subnetFile": "/run/flannel/subnet.env",   (default)
      "dataDir": "/var/lib/cni/flannel",          (default)
      "ipam": {...},         extra host-local settings (dataDir, routes); ranges are set from subnet.env
      "delegate": {...}      merged into the delegate's config (e.g. "bridge": "cni1", "type": "ipvlan")
    }

The delegate config, as flannel builds it: ``name`` (the network's), ``type``
bridge, ``ipMasq`` = not FLANNEL_IPMASQ (whoever does not masquerade, the
agent or the bridge), ``mtu`` = FLANNEL_MTU, ``isGateway`` true (bridge),
the config's ``cniVersion``, and ``ipam`` = the config's ipam with type
host-local, ranges [[{"subnet": FLANNEL_SUBNET's network}]] and a route to
FLANNEL_NETWORK; keys already in ``delegate`` win (``name`` and ``ipam``
may not be given there). ``runtimeConfig`` passes through.

ADD saves that config in <dataDir>/<containerID> (0600) and runs the
delegate; DEL runs the delegate's DEL with the saved config (a missing one
is success: nothing was set up) and removes it; CHECK checks through the
delegate with the saved config. stdlib and cnirun's stdlib-only modules: a
plugin runs on every container start.
"""
from __future__ import annotations

import json
import os
import sys

from ..core.errors import INVALID_NETWORK_CONFIG, IO_FAILURE, CNIError
from ..cni.skel import CmdArgs, plugin_main

ABOUT = "CNI flannel plugin (cnirun): bridge + host-local on the subnet from flannel's subnet.env"
DEFAULT_DATA_DIR = "/var/lib/cni/flannel"


def _string(conf: dict, key: str, default: str) -> str:
    value = conf.get(key)
    if value in (None, ""):
        return default
    if not isinstance(value, str):
        raise CNIError(f'"{key}" must be a string', code=INVALID_NETWORK_CONFIG)
    return value


def _object(conf: dict, key: str) -> dict:
    value = conf.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise CNIError(f'"{key}" must be an object', code=INVALID_NETWORK_CONFIG)
    return json.loads(json.dumps(value))  # a copy we may change


def build_delegate(netconf: dict, env: object) -> dict:
    """The delegate's network config for ADD, exactly as flannel's plugin builds it.

    `env` is a :class:`cnirun.overlay.subnet_env.SubnetEnv`.
    """
    delegate = _object(netconf, "delegate")
    if "type" in delegate and not isinstance(delegate["type"], str):
        raise CNIError("'delegate' dictionary, if present, must have (string) 'type' field", code=INVALID_NETWORK_CONFIG)
    if "name" in delegate:
        raise CNIError("'delegate' dictionary must not have 'name' field, it'll be set by flannel", code=INVALID_NETWORK_CONFIG)
    if "ipam" in delegate:
        raise CNIError("'delegate' dictionary must not have 'ipam' field, it'll be set by flannel", code=INVALID_NETWORK_CONFIG)
    if isinstance(netconf.get("runtimeConfig"), dict):
        delegate["runtimeConfig"] = netconf["runtimeConfig"]
    delegate["name"] = netconf.get("name")
    delegate.setdefault("type", "bridge")
    delegate.setdefault("ipMasq", not env.ipmasq)  # type: ignore[attr-defined]
    delegate.setdefault("mtu", env.mtu)  # type: ignore[attr-defined]
    if delegate["type"] == "bridge":
        delegate.setdefault("isGateway", True)
    if netconf.get("cniVersion"):
        delegate["cniVersion"] = netconf["cniVersion"]
    ipam = _object(netconf, "ipam")
    ipam.setdefault("type", "host-local")
    ipam["ranges"] = [[{"subnet": str(env.subnet.network)}]]  # type: ignore[attr-defined]
    routes = ipam.get("routes") or []
    if not isinstance(routes, list):
        raise CNIError("failed to read IPAM routes: ipam.routes must be a list", code=INVALID_NETWORK_CONFIG)
    ipam["routes"] = routes + [{"dst": str(env.network)}]  # type: ignore[attr-defined]
    delegate["ipam"] = ipam
    return delegate


def _data_dir(args: CmdArgs) -> str:
    return _string(args.netconf, "dataDir", DEFAULT_DATA_DIR)


def _scratch(data_dir: str, container_id: str) -> str:
    return os.path.join(data_dir, container_id)


def _delegate(args: CmdArgs, command: str, conf: dict) -> bytes:
    """Run the delegate plugin (found along CNI_PATH) with `conf`; its stdout."""
    from ..cni.invoke import Invocation, exec_plugin, find_plugin

    ptype = conf.get("type")
    path = find_plugin(ptype, args.path_list)
    inv = Invocation(command, args.container_id, args.netns, args.ifname, args.args, args.path)
    return exec_plugin(path, inv, json.dumps(conf).encode(), plugin_type=ptype, network=args.name)


def cmd_add(args: CmdArgs) -> object:
    from ..overlay import subnet_env

    subnet_file, data_dir = _string(args.netconf, "subnetFile", subnet_env.DEFAULT_PATH), _data_dir(args)
    conf = build_delegate(args.netconf, subnet_env.read(subnet_file))
    data = json.dumps(conf).encode()
    try:
        os.makedirs(data_dir, mode=0o700, exist_ok=True)
        from ..core.fsutil import atomic_write

        atomic_write(_scratch(data_dir, args.container_id), data, 0o600, fsync=False)
    except OSError as e:
        raise CNIError(f"cannot save the delegate config in {data_dir}: {e.strerror}", code=IO_FAILURE) from None
    return _delegate(args, "ADD", conf)  # the delegate's result, printed as it came


def _saved(args: CmdArgs) -> tuple[str, dict | None]:
    data_dir = _data_dir(args)
    path = _scratch(data_dir, args.container_id)
    try:
        with open(path, "rb") as f:
            conf = json.loads(f.read())
    except FileNotFoundError:
        return path, None
    except (OSError, ValueError):
        return path, {}  # unreadable: nothing we can undo with it
    return path, conf if isinstance(conf, dict) else {}


def cmd_del(args: CmdArgs) -> None:
    path, conf = _saved(args)
    if conf is None:
        return None  # never added (or already deleted): success, as the spec asks
    if conf.get("type"):
        if isinstance(args.netconf.get("runtimeConfig"), dict):
            conf["runtimeConfig"] = args.netconf["runtimeConfig"]
        _delegate(args, "DEL", conf)
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    return None


def cmd_check(args: CmdArgs) -> None:
    _, conf = _saved(args)
    if not conf:
        raise CNIError(f"no saved delegate config for container {args.container_id}: was it added?", code=IO_FAILURE)
    prev = args.netconf.get("prevResult")
    if prev is not None:
        conf["prevResult"] = prev
    _delegate(args, "CHECK", conf)
    return None


def main(environ=None, stdin=None, stdout=None, stderr=None) -> int:  # noqa: ANN001 - skel's stream types
    return plugin_main(
        cmd_add,
        cmd_check,
        cmd_del,
        about=ABOUT,
        environ=environ,
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
    )


if __name__ == "__main__":
    sys.exit(main())
