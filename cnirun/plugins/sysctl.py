"""sysctl: a chained CNI plugin that sets net.* sysctls inside the container's netns.

A small, real subset of the reference "tuning" plugin.  Configuration::

    {
      "type": "sysctl",
      "sysctl": {
        "net.ipv4.conf.IFNAME.rp_filter": "2",
        "net.ipv6.conf.IFNAME.accept_ra": "0",
        "net.ipv4.ping_group_range": "0 2147483647"
      },
      "dataDir": "/run/cnirun/sysctl"
    }

* Keys name sysctls under ``net.``, in dotted form (``net.ipv4.ip_forward``)
  or slash form (``net/ipv4/conf/eth0.100/rp_filter``, for names holding a
  dot).  A key component spelled ``IFNAME`` is replaced by CNI_IFNAME, so one
  config serves any interface.  Values are strings (or numbers).
* ADD (needs a prevResult: it is a chained plugin) records each sysctl's
  current value in ``<dataDir>/<network>-<containerID>-<ifname>.json``,
  writes the new values, and passes the prevResult through.  A failed write
  rolls back the ones already made.
* DEL writes the recorded values back (best effort: a namespace or interface
  that is gone is not an error) and removes the record.  Repeated DELs succeed.
* CHECK reads the values back and fails (code 100) when one differs.
* GC removes records of this network whose attachment is not in
  ``cni.dev/valid-attachments``.

Per-namespace sysctls live in /proc/sys/net as seen by a process inside the
namespace, so the work is done by a forked child that enters the namespace
with setns(2) (through ctypes: Python 3.11 has no os.setns).
"""
from __future__ import annotations

import json
import os
import sys
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable

from ..core.errors import INVALID_NETWORK_CONFIG, IO_FAILURE, CNIError, NetnsError
from ..core.fsutil import atomic_write
from ..cni.skel import CmdArgs, plugin_main

ABOUT = "CNI sysctl plugin (cnirun): set net.* sysctls in the container netns"
DEFAULT_DATA_DIR = "/run/cnirun/sysctl"
#: Error code for "a sysctl does not have its configured value" (CHECK).
ERR_MISMATCH = 100

_CLONE_NEWNET = 0x40000000


# --------------------------------------------------------------------------
# configuration


def _sysctl_paths(args: CmdArgs) -> dict[str, tuple[str, str]]:
    """{key: (/proc/sys path, value)} from the config; bad input is code 7."""
    table = args.netconf.get("sysctl", {})
    if table is None:
        table = {}
    if not isinstance(table, dict):
        raise CNIError('"sysctl" must be an object of name: value', code=INVALID_NETWORK_CONFIG)
    out: dict[str, tuple[str, str]] = {}
    for key, value in table.items():
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise CNIError(f'sysctl "{key}": the value must be a string', code=INVALID_NETWORK_CONFIG)
        parts = key.split("/") if "/" in key else key.split(".")
        parts = [args.ifname if p == "IFNAME" else p for p in parts]
        if (
            len(parts) < 2
            or parts[0] != "net"
            or any(p in ("", ".", "..") or "\0" in p or "/" in p for p in parts)
        ):
            raise CNIError(
                f'invalid sysctl name "{key}": expected net.<...> (only network sysctls are per namespace)',
                code=INVALID_NETWORK_CONFIG,
            )
        out[key] = ("/proc/sys/" + "/".join(parts), str(value))
    return out


def _data_dir(args: CmdArgs) -> str:
    d = args.netconf.get("dataDir") or DEFAULT_DATA_DIR
    if not isinstance(d, str):
        raise CNIError('"dataDir" must be a string', code=INVALID_NETWORK_CONFIG)
    return d


def _record_path(data_dir: str, network: str, container_id: str, ifname: str) -> str:
    return os.path.join(data_dir, f"{network}-{container_id}-{ifname}.json")


# --------------------------------------------------------------------------
# running code inside a network namespace


def _run_in_netns(netns: str, func: Callable[..., Any], *fargs: Any) -> Any:
    """Run func(*fargs) in a forked child that joined `netns`; return its value.

    The value must be JSON-serialisable.  An OSError in the child is raised
    again here with its errno; a missing or unusable namespace is NetnsError.
    """
    import ctypes  # only this plugin needs it

    libc = ctypes.CDLL(None, use_errno=True)
    try:
        nsfd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise NetnsError(f"failed to open netns {netns}: {e.strerror}") from e
    try:
        rfd, wfd = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: never return into the caller
            status = 0
            try:
                os.close(rfd)
                if libc.setns(nsfd, _CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    reply = {"netns_error": f"setns({netns}): {os.strerror(err)}"}
                else:
                    try:
                        reply = {"value": func(*fargs)}
                    except OSError as e:
                        reply = {
                            "errno": e.errno or 0,
                            "error": e.strerror or str(e),
                            "filename": e.filename,
                        }
                    except Exception as e:  # noqa: BLE001
                        reply = {"error": f"{type(e).__name__}: {e}"}
                data = json.dumps(reply).encode()
                while data:
                    data = data[os.write(wfd, data):]
            except BaseException:  # noqa: BLE001
                status = 1
            finally:
                os._exit(status)
        os.close(wfd)
        chunks = []
        with os.fdopen(rfd, "rb") as r:
            while chunk := r.read(65536):
                chunks.append(chunk)
        os.waitpid(pid, 0)
    finally:
        os.close(nsfd)
    if not chunks:
        raise CNIError(f"helper process for netns {netns} died without an answer", code=IO_FAILURE)
    reply = json.loads(b"".join(chunks))
    if "netns_error" in reply:
        raise NetnsError(reply["netns_error"])
    if "errno" in reply:
        raise OSError(reply["errno"], reply["error"], reply.get("filename"))
    if "error" in reply:
        raise CNIError(reply["error"])
    return reply["value"]


def _read(path: str) -> str:
    with open(path) as f:
        return f.read().rstrip("\n")


def _write(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def _apply(wanted: dict[str, str]) -> dict[str, str]:
    """(in the netns) write every value, returning the old ones; all or nothing."""
    old: dict[str, str] = {}
    try:
        for path, value in wanted.items():
            before = _read(path)
            _write(path, value)
            old[path] = before
    except OSError as e:
        for path, before in old.items():
            try:
                _write(path, before)
            except OSError:
                pass
        raise OSError(e.errno, e.strerror, e.filename or path) from None
    return old


def _restore(values: dict[str, str]) -> list[str]:
    """(in the netns) write values back; a vanished sysctl is skipped; returns errors."""
    errors = []
    for path, value in values.items():
        try:
            _write(path, value)
        except FileNotFoundError:
            pass
        except OSError as e:
            errors.append(f"{path}: {e.strerror}")
    return errors


def _read_many(paths: list[str]) -> dict[str, str | None]:
    """(in the netns) current values, None for a sysctl that does not exist."""
    out: dict[str, str | None] = {}
    for path in paths:
        try:
            out[path] = _read(path)
        except FileNotFoundError:
            out[path] = None
    return out


# --------------------------------------------------------------------------
# commands


def _save_record(path: str, record: dict) -> None:
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    atomic_write(path, json.dumps(record).encode(), 0o600, fsync=False)


def _load_record(path: str) -> dict | None:
    try:
        with open(path) as f:
            rec = json.load(f)
    except FileNotFoundError:
        return None
    except ValueError:
        return {}  # corrupt: nothing we can restore
    return rec if isinstance(rec, dict) else {}


def cmd_add(args: CmdArgs) -> dict:
    prev = args.prev_result()
    if prev is None:
        raise CNIError("sysctl must be called as a chained plugin: no prevResult", code=INVALID_NETWORK_CONFIG)
    sysctls = _sysctl_paths(args)
    record_path = _record_path(_data_dir(args), args.name, args.container_id, args.ifname)
    wanted = {path: value for path, value in sysctls.values()}
    try:
        old = _run_in_netns(args.netns, _apply, wanted) if wanted else {}
    except OSError as e:
        raise CNIError(f"failed to set sysctl {e.filename}: {e.strerror}", code=IO_FAILURE) from None
    existing = _load_record(record_path) or {}
    # an ADD repeated without DEL must not lose the original values
    old.update(existing.get("saved", {}) if isinstance(existing.get("saved"), dict) else {})
    record = {
        "networkName": args.name,
        "containerID": args.container_id,
        "ifname": args.ifname,
        "netns": args.netns,
        "saved": old,
    }
    try:
        _save_record(record_path, record)
    except OSError as e:
        try:
            _run_in_netns(args.netns, _restore, old)
        except (OSError, CNIError):
            pass
        raise CNIError(f"cannot save {record_path}: {e.strerror}", code=IO_FAILURE) from None
    return prev


def cmd_del(args: CmdArgs) -> None:
    record_path = _record_path(_data_dir(args), args.name, args.container_id, args.ifname)
    record = _load_record(record_path)
    if record is None:
        return None
    saved = record.get("saved")
    if args.netns and isinstance(saved, dict) and saved:
        try:
            errors = _run_in_netns(args.netns, _restore, saved)
        except NetnsError:
            errors = []  # the namespace is gone: nothing left to undo
        if errors:
            raise CNIError("failed to restore sysctls: " + "; ".join(errors), code=IO_FAILURE)
    try:
        os.unlink(record_path)
    except FileNotFoundError:
        pass
    return None


def cmd_check(args: CmdArgs) -> None:
    if args.prev_result() is None:
        raise CNIError("sysctl CHECK: required prevResult missing", code=INVALID_NETWORK_CONFIG)
    sysctls = _sysctl_paths(args)
    if not sysctls:
        return None
    current = _run_in_netns(args.netns, _read_many, [p for p, _ in sysctls.values()])
    for key, (path, want) in sysctls.items():
        have = current.get(path)
        if have is None:
            raise CNIError(f'sysctl "{key}" does not exist in netns {args.netns}', code=ERR_MISMATCH)
        if have.split() != want.split():
            raise CNIError(f'sysctl "{key}" is "{have}", configured "{want}"', code=ERR_MISMATCH)
    return None


def cmd_gc(args: CmdArgs) -> None:
    valid = args.netconf.get("cni.dev/valid-attachments")
    if valid is None:
        valid = args.netconf.get("cni.dev/attachments") or []
    keep = {
        (a.get("containerID"), a.get("ifname")) for a in valid if isinstance(a, dict)
    }
    data_dir = _data_dir(args)
    try:
        names = os.listdir(data_dir)
    except FileNotFoundError:
        return None
    for fname in names:
        if not fname.endswith(".json"):
            continue
        path = os.path.join(data_dir, fname)
        rec = _load_record(path)
        if not rec or rec.get("networkName") != args.name:
            continue
        if (rec.get("containerID"), rec.get("ifname")) not in keep:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
    return None


def main(environ=None, stdin=None, stdout=None, stderr=None) -> int:
    return plugin_main(
        cmd_add,
        cmd_check,
        cmd_del,
        gc=cmd_gc,
        about=ABOUT,
        environ=environ,
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
    )


if __name__ == "__main__":
    sys.exit(main())
