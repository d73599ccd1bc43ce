"""noop: a recording CNI test plugin (a test double, like upstream's noop).

It finds a *debug file* from CNI_ARGS ``DEBUG=<path>`` or, failing that, the
config key ``debugFile``.  On every call, VERSION included and before any
validation, it appends one JSON line to ``<debug file>.log``::

    {"command": "ADD", "containerID": "...", "netns": "...", "ifname": "...",
     "args": "<CNI_ARGS>", "path": "<CNI_PATH>", "stdin": "<stdin as text>",
     "env": {"CNI_COMMAND": "...", ...every CNI_* variable...},
     "pid": 1234, "time": 1700000000.0}

so a test can assert exactly what a runtime gave the plugin.  Then it
behaves as the debug file says.  The debug file is JSON; every key is
optional, and a missing file counts as ``{}``:

``reportResult``
    text printed as the result (a JSON object is printed as JSON), or
    ``"PASSTHROUGH"``: the config's prevResult converted to the config's
    cniVersion (ADD without prevResult is then an error, code 7; other
    commands print nothing).
``reportError``, ``reportErrorCode`` (default 999), ``reportErrorDetails``
    fail with this CNI error (printed on stdout, exit 1).
``reportStderr``
    text written to stderr first (the call still succeeds).
``exitWithCode``
    after a successful call, exit with this status instead of 0.
``sleep``
    seconds to sleep before answering (simulates a hung plugin).
``crash``
    true: exit 2 with nothing on stdout.
``stderrOnly``
    text: write it to stderr and exit 1 with nothing on stdout.
``reportVersionSupport``
    the versions answered to VERSION and accepted in configs (default: every
    version cnirun knows).
``commands``
    per-command overrides, e.g. ``{"DEL": {"reportError": "boom"}}``.

The top-level behaviour keys apply to ADD, CHECK, DEL, GC and STATUS.
VERSION is answered normally unless ``commands.VERSION`` says otherwise
(there ``reportResult`` replaces the version answer verbatim).

Without a debug file, or with no ``reportResult``, noop is a harmless
pass-through: ADD prints the prevResult (converted to the config's version)
or an empty result; the other commands print nothing.
"""
from __future__ import annotations

import io
import json
import os
import sys
import time
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Mapping

from ..core.errors import INTERNAL, INVALID_NETWORK_CONFIG, CNIError
from ..cni.skel import CmdArgs, plugin_main
from ..core.version import SUPPORTED_VERSIONS

ABOUT = "CNI noop plugin (cnirun test double)"

_BEHAVIOUR_KEYS = (
    "reportResult",
    "reportError",
    "reportErrorCode",
    "reportErrorDetails",
    "reportStderr",
    "exitWithCode",
    "sleep",
    "crash",
    "stderrOnly",
)


# --------------------------------------------------------------------------
# helpers for tests


def write_debug(path: str | os.PathLike, **fields: Any) -> None:
    """Write a debug file: ``write_debug(p, reportResult="PASSTHROUGH")``."""
    with open(path, "w") as f:
        json.dump(fields, f)


def log_path(debug_path: str | os.PathLike) -> str:
    """Where noop records calls for a debug file."""
    return os.fspath(debug_path) + ".log"


def read_log(debug_path: str | os.PathLike) -> list[dict]:
    """Every call recorded for a debug file, oldest first ([] if none)."""
    try:
        with open(log_path(debug_path)) as f:
            return [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError:
        return []


# --------------------------------------------------------------------------


def _debug_path(cni_args: str, conf: dict) -> str:
    """DEBUG= from CNI_ARGS (read leniently), else the config's debugFile."""
    for pair in cni_args.split(";") if cni_args else ():
        k, sep, v = pair.partition("=")
        if sep and k == "DEBUG" and "=" not in v:
            return v
    v = conf.get("debugFile")
    return v if isinstance(v, str) else ""


def _load_debug(path: str) -> tuple[dict, str]:
    """(debug dict, error text); a missing file is an empty debug."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        return {}, ""
    except OSError as e:
        return {}, f"noop: cannot read debug file {path}: {e}"
    if not raw.strip():
        return {}, ""
    try:
        debug = json.loads(raw)
    except ValueError as e:
        return {}, f"noop: cannot parse debug file {path}: {e}"
    if not isinstance(debug, dict):
        return {}, f"noop: debug file {path} must hold a JSON object"
    return debug, ""


def _behaviour(debug: dict, cmd: str) -> dict:
    per = debug.get("commands")
    over = per.get(cmd) if isinstance(per, dict) else None
    eff: dict = {}
    if cmd != "VERSION":
        eff.update({k: debug[k] for k in _BEHAVIOUR_KEYS if k in debug})
    if isinstance(over, dict):
        eff.update(over)
    return eff


def _record(path: str, env: Mapping[str, str], stdin: bytes) -> None:
    entry = {
        "command": env.get("CNI_COMMAND", ""),
        "containerID": env.get("CNI_CONTAINERID", ""),
        "netns": env.get("CNI_NETNS", ""),
        "ifname": env.get("CNI_IFNAME", ""),
        "args": env.get("CNI_ARGS", ""),
        "path": env.get("CNI_PATH", ""),
        "stdin": stdin.decode("utf-8", "replace"),
        "env": {k: v for k, v in sorted(env.items()) if k.startswith("CNI_")},
        "pid": os.getpid(),
        "time": time.time(),
    }
    line = (json.dumps(entry) + "\n").encode()
    # one write(2) on an O_APPEND file: concurrent calls do not interleave
    fd = os.open(log_path(path), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def _write(stream: Any, text: str) -> None:
    try:
        stream.write(text)
    except TypeError:
        stream.write(text.encode())
    try:
        stream.flush()
    except (AttributeError, OSError, ValueError):
        pass


class _FailingStdin:
    def __init__(self, err: BaseException) -> None:
        self.err = err

    def read(self, *_: Any) -> bytes:
        raise self.err


def _as_output(value: Any) -> Any:
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    if value is None:
        return None
    return str(value)


def main(
    environ: Mapping[str, str] | None = None,
    stdin: Any = None,
    stdout: Any = None,
    stderr: Any = None,
) -> int:
    """Run noop once; returns the exit status.  Streams default to the process's."""
    env = os.environ if environ is None else environ
    stdout = sys.stdout if stdout is None else stdout
    stderr = sys.stderr if stderr is None else stderr
    if stdin is None:
        stdin = sys.stdin.buffer if sys.stdin is not None else b""

    # Read stdin ourselves (for VERSION too) so that it can be recorded.
    stdin_for_skel: Any
    try:
        if isinstance(stdin, (bytes, str)):
            data = stdin.encode() if isinstance(stdin, str) else stdin
        else:
            data = stdin.read()
            if isinstance(data, str):
                data = data.encode()
        stdin_for_skel = io.BytesIO(data)
    except (OSError, ValueError) as e:
        data = b""
        stdin_for_skel = _FailingStdin(e)

    try:
        conf = json.loads(data) if data.strip() else {}
    except ValueError:
        conf = {}
    if not isinstance(conf, dict):
        conf = {}

    cmd = env.get("CNI_COMMAND", "")
    debug_path = _debug_path(env.get("CNI_ARGS", ""), conf)
    debug, debug_error = _load_debug(debug_path) if debug_path else ({}, "")
    if debug_path:
        _record(debug_path, env, data)
    eff = _behaviour(debug, cmd)

    if eff.get("sleep"):
        time.sleep(float(eff["sleep"]))
    if eff.get("crash"):
        return 2
    if eff.get("stderrOnly"):
        _write(stderr, str(eff["stderrOnly"]))
        return 1

    versions = debug.get("reportVersionSupport") or SUPPORTED_VERSIONS
    if cmd == "VERSION":
        if eff.get("reportStderr"):
            _write(stderr, str(eff["reportStderr"]))
        if eff.get("reportError"):
            err = CNIError(
                str(eff["reportError"]),
                str(eff.get("reportErrorDetails") or ""),
                code=int(eff.get("reportErrorCode") or INTERNAL),
            )
            _write(stdout, err.to_json() + "\n")
            return 1
        if eff.get("reportResult") is not None:
            _write(stdout, _as_output(eff["reportResult"]))
            return int(eff.get("exitWithCode") or 0)

    def behave(args: CmdArgs) -> Any:
        if debug_error:
            raise CNIError(debug_error, code=INTERNAL)
        args.cni_args()  # a malformed CNI_ARGS is an error (code 4), as upstream
        if eff.get("reportStderr"):
            _write(stderr, str(eff["reportStderr"]))
        if eff.get("reportError"):
            raise CNIError(
                str(eff["reportError"]),
                str(eff.get("reportErrorDetails") or ""),
                code=int(eff.get("reportErrorCode") or INTERNAL),
            )
        result = eff.get("reportResult")
        if result == "PASSTHROUGH":
            prev = args.prev_result()
            if prev is None and args.command == "ADD":
                raise CNIError(
                    "noop: reportResult is PASSTHROUGH but the config has no prevResult",
                    code=INVALID_NETWORK_CONFIG,
                )
            return prev
        if result is not None and result != "":
            return _as_output(result)
        # no canned result: a harmless pass-through plugin
        if args.command == "ADD":
            return args.prev_result() or {"cniVersion": args.cni_version}
        return None

    rc = plugin_main(
        behave,
        behave,
        behave,
        gc=behave,
        status=behave,
        versions=versions,
        about=ABOUT,
        environ=env,
        stdin=stdin_for_skel,
        stdout=stdout,
        stderr=stderr,
    )
    if rc == 0 and eff.get("exitWithCode"):
        return int(eff["exitWithCode"])
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
