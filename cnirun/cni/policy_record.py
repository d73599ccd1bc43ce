"""The cnirun-policy plugin's records, and its calls cnirun's runtime answers without running it.

Every bridge chain cnirun makes carries cnirun-policy (cnirun.plugins.policy),
and most containers have no policy: then the plugin's ADD hands the
prevResult on and its DEL and CHECK do nothing. Running it costs a Python
start (20-40 ms) on every ADD, DEL and CHECK of every container, so
cnirun's runtime (runtime.CNI._exec) answers those calls itself when the
plugin found is cnirun's own (a launcher of cnirun.plugins.policy) and the
call carries no firewallPolicy in runtimeConfig:

* ADD: the prevResult, as the plugin would print it;
* DEL: nothing, unless a record of the attachment exists (a policy was
  made: the plugin is run, finds the record and removes the table);
* CHECK: nothing (with no policy the plugin checks nothing).

Other runtimes run the plugin, which does the same itself.

Where the records live is here, so that both the runtime (which may not
import cnirun.network) and the plugin's own code (network.policy_attachments)
use one definition: <state>/policies/<network>-<container id>-<ifname>,
<state> from CNIRUN_STATE_DIR of the environment the plugin gets.

Start-up cost: see cnirun.core (os, core.paths and core.jsonfast only).
"""
from __future__ import annotations

import os

from ..core import jsonfast as json
from ..core.paths import state_dir
from .config import FIREWALL_POLICY_CAPABILITY

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Mapping

PLUGIN_TYPE = "cnirun-policy"
DIR_NAME = "policies"
# What every launcher of the plugin holds: the in-tree one (plugins/bin) and those `cnirun install plugins` writes.
_LAUNCHER_LINE = b"from cnirun.plugins.policy import main"
_OURS: dict[str, bool] = {}  # launcher path -> whether it is cnirun's own, once per process


def records_dir(environ: Mapping[str, str] | None = None) -> str:
    return os.path.join(state_dir(environ), DIR_NAME)


def record_path(network: str, container_id: str, ifname: str, environ: Mapping[str, str] | None = None) -> str:
    return os.path.join(records_dir(environ), f"{network}-{container_id}-{ifname}")


def is_own_launcher(path: str) -> bool:
    ours = _OURS.get(path)
    if ours is None:
        try:
            with open(path, "rb") as f:
                ours = _LAUNCHER_LINE in f.read(2048)
        except OSError:
            ours = False
        _OURS[path] = ours
    return ours


def answer_without_running(path: str, command: str, container_id: str, ifname: str, conf: dict[str, Any],
                           environ: Mapping[str, str] | None) -> bytes | None:
    """What the plugin at `path` would print for `command` with stdin `conf`, when that is known without
    running it (see the module's docstring); None: run it."""
    rc = conf.get("runtimeConfig")
    if isinstance(rc, dict) and rc.get(FIREWALL_POLICY_CAPABILITY) not in (None, {}):
        return None
    if not is_own_launcher(path):
        return None
    if command == "ADD":
        prev = conf.get("prevResult")
        # Not chained, or a result the plugin would convert to the config's version: the plugin answers.
        if not isinstance(prev, dict) or prev.get("cniVersion", conf.get("cniVersion")) != conf.get("cniVersion"):
            return None
        return json.dumps(prev, separators=(",", ":")).encode()
    if command == "DEL":
        exists = os.path.exists(record_path(str(conf.get("name", "")), container_id, ifname, environ))
        return None if exists else b""
    if command == "CHECK":
        return b"" if isinstance(conf.get("prevResult"), dict) else None
    return None
