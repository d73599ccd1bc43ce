"""The OCI hook: attach a container's CNI networks at createRuntime, detach at poststop.

Run by the OCI runtime (runc, crun) with the container's state JSON on stdin
and the stage as its only argument; installed through Podman/CRI-O hooks.d or
added to config.json by the Docker runtime shim (cnirun.oci.shim). This
module is the entry and the stage switch: createRuntime/prestart go to
cnirun.oci.attach, poststop to cnirun.oci.detach. Under Docker the shim runs
the attach itself, before runc, in a forked worker (attach.run_for_shim),
and the runtime's `delete` runs the detach (detach.run_delete); the hooks
serve the cases the early attach does not (see cnirun.oci.shim).

- Failures: one `cnirun: ...` line on stderr (the engine shows it), exit 1,
  nothing left allocated.
- One log line per run in CNIRUN_HOOK_LOG (default /var/log/cnirun/hooks.log).

The hook runs on every container start: what it imports is checked by
tests/test_oci_hook.py. The process is started with `python -I -S` (no site, no
editable-install finder; argv.hook_argv puts the package on sys.path) and
leaves with os._exit (run_process). This module imports only os, sys, time,
the log and the OCI state at the top, and the stage's module when it knows
the stage.
"""
from __future__ import annotations

import os
import sys
import time

from .log import finish
from ..core.oci_state import HookError, parse_state

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

ATTACH_STAGES = ("createRuntime", "prestart")
DETACH_STAGES = ("poststop",)


def run_hook(stage: str, state_data: bytes, started: float | None = None) -> tuple[int, dict[str, Any] | None]:
    """Run one stage; returns (exit code, log record or None when a background child logs it)."""
    from ..core.errors import CNIError

    started = time.monotonic() if started is None else started
    record: dict[str, Any] = {"stage": stage, "container": "", "networks": [], "outcome": "ok"}
    try:
        if stage not in ATTACH_STAGES + DETACH_STAGES:
            raise HookError(
                f"unknown hook stage {stage!r}: use createRuntime or prestart (attach) or poststop (detach)"
            )
        state = parse_state(state_data)
        record["container"] = state.id
        if stage in DETACH_STAGES:
            from .detach import poststop

            return poststop(state, record, started), None
        from .attach import attach_stage

        return attach_stage(state, record, started), record
    except (CNIError, HookError) as e:
        record["outcome"] = "failed"
        record["error"] = str(e)
        return 1, record


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not os.environ.get("PATH"):  # the installers always give one; plugins run iptables from /usr/sbin
        from ..core.fsutil import DEFAULT_PATH

        os.environ["PATH"] = DEFAULT_PATH
    started = time.monotonic()
    stage = args[0] if args else ""
    if len(args) != 1 or stage in ("-h", "--help"):
        sys.stderr.write("usage: cnirun-hook STAGE  (createRuntime|prestart|poststop; OCI state JSON on stdin)\n")
        return 2
    try:
        data = sys.stdin.buffer.read()
    except OSError:
        data = b""
    try:
        code, record = run_hook(stage, data, started)
    except KeyboardInterrupt:
        code, record = 130, {"stage": stage, "outcome": "interrupted"}
    if record is None:
        return code
    finish(record, started)
    if record.get("error"):
        prefix = "cnirun: " if code else "cnirun: warning: "
        sys.stderr.write(f"{prefix}{record['error']}\n")
    return code


def run_process() -> None:
    """The hook process's entry point (argv.hook_argv): main(), then exit at once.

    Tearing the interpreter down (module dicts, GC) costs ~2 ms per hook run,
    on every container start; a hook process has nothing to finalise but
    stdio (the log is written with os.write), so it is flushed and the
    process leaves with os._exit. An unexpected exception still propagates
    (traceback, normal exit).
    """
    from ..core.process import exit_now

    exit_now(main())


if __name__ == "__main__":
    sys.exit(main())
