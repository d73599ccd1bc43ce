"""The lean core every other package builds on, and the start-up cost rule all of cnirun follows.

Start-up cost. Every container start runs the OCI hook (cnirun.oci.hook) in a
fresh interpreter, and `cnirun run`, `cnirun cni` and the Docker shim each
start one too: whatever their modules import when they load is paid on every
start. So the modules of cnirun.core, cni, network, oci, dns and state (the
hook path, and what `cnirun run` shares with it), and of run and engines (the
run path, which may also load threading), import at load time only os, sys,
time, C modules (_socket, _signal, _thread, _json, ...) and each other; never
typing, dataclasses, re, json, pathlib, subprocess, signal, socket, enum,
contextlib, inspect, shutil, tempfile, copy, urllib (each costs 1-10 ms,
most of it re, enum and inspect pulled in behind them). Instead:

- annotations: `from __future__ import annotations`, and names for them under
  `TYPE_CHECKING = False` / `if TYPE_CHECKING:` (typing's own TYPE_CHECKING
  would import typing);
- json: cnirun.core.jsonfast; dataclasses: cnirun.core.value (Value, Record);
  subprocess: cnirun.cni.invoke.run_program (posix_spawn); socket: _socket;
  threading: _thread; re: string methods; pathlib: os.path;
- what a path needs only sometimes (ipaddress, ctypes, hashlib, the Docker
  SDK, pyroute2, typer) is imported inside the function that needs it.

The exceptions (the plugin skeleton, installers, the watcher, image pulls)
are listed with their reasons in tests/test_oci_hook.py (HEAVY_BY_DESIGN). A
"start-up cost: see cnirun.core" comment marks a place where a heavier
import would be the obvious choice.

Enforced by:
- tests/test_oci_hook.py: test_lean_modules_import_nothing_heavy imports each
  module of those packages alone (engine-free); test_hook_path_imports_nothing_heavy
  and test_shim_create_path_imports_nothing_heavy check what a real hook run
  and the shim's create path load (NOT_ON_HOOK_PATH);
- tests/test_layers.py: imports, lazy ones included, only run from a package
  to those left of it, without cycles, so a lean package never reaches a
  heavy one (cli, compose, netstore);
- tests/test_cni_invoke.py: test_package_exports_the_api_lazily (`import cnirun`
  loads no runtime);
- tests/test_cli_run.py and tests/test_cli_cni.py: the hand-parsed commands
  (run, exec, cni) load no typer.
"""
