"""Registering the cnirun runtime shim with dockerd, and removing it again.

`install` writes two files into a directory (default /usr/local/lib/cnirun):
- `docker-runtime`, the executable dockerd runs instead of runc: a sh script
  (docker-runtime.sh beside this module, filled in by launcher_text) that
  execs runc directly unless an argument is `create`, and then runs the
  Python shim (cnirun.oci.shim) with -I -S;
- `docker-runtime.json`, the settings in effect at install time: the real
  runc, the hook command line and the hook environment (PATH, NETCONFPATH,
  CNI_PATH, CNI_CACHE_DIR, ...), Docker's data root.
It then adds {"runtimes": {"cnirun": {"path": ...}}} to /etc/docker/daemon.json
(no other key is touched; the original bytes are kept beside it), sends
dockerd SIGHUP and waits until `docker info` lists the runtime.
`uninstall` puts the original file back when nothing else changed in the
meantime, else removes only the `cnirun` entry; then reloads dockerd again.
"""
from __future__ import annotations

import os

# `cnirun run` reads the installed settings on every run (run.docker_mode):
# the json package, subprocess, signal and typing cost ~5 ms of imports
# together, so reading goes through jsonfast and the rest is imported where used.
from ...core import jsonfast as json
from ...core.errors import CNIError
from ...core.fsutil import atomic_write, unsafe_dir, which
from ...core.paths import DEFAULT_DOCKER_ROOT, container_lock, gates_dir, pins_dir

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Mapping

RUNTIME_NAME = "cnirun"
DEFAULT_DIR = "/usr/local/lib/cnirun"
DAEMON_JSON = "/etc/docker/daemon.json"
BACKUP_SUFFIX = ".cnirun-backup"
LAUNCHER = "docker-runtime"
SETTINGS = "docker-runtime.json"
RELOAD_WAIT = 30.0


class InstallError(CNIError):
    """Installing or removing the runtime failed."""


# -- daemon.json --------------------------------------------------------------------
def _read_json_object(path: str) -> tuple[bytes | None, dict[str, Any]]:
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        return None, {}
    except OSError as e:
        raise InstallError(f"cannot read {path}: {e.strerror}") from None
    if not raw.strip():
        return raw, {}
    try:
        obj = json.loads(raw)
    except ValueError as e:
        raise InstallError(f"{path} is not valid JSON ({e}): fix it first, dockerd would refuse it too") from None
    if not isinstance(obj, dict):
        raise InstallError(f"{path} is not a JSON object: fix it first")
    return raw, obj


def _write(path: str, data: bytes, mode: int = 0o644) -> None:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    atomic_write(path, data, mode)


def registered_path(daemon_json: str = DAEMON_JSON) -> str:
    """The launcher path registered as runtime `cnirun` in daemon.json, '' when none."""
    try:
        _raw, obj = _read_json_object(daemon_json)
    except InstallError:
        return ""
    entry = (obj.get("runtimes") or {}).get(RUNTIME_NAME) if isinstance(obj.get("runtimes"), dict) else None
    return str(entry.get("path", "")) if isinstance(entry, dict) else ""


def docker_runtime_installed(info: Mapping[str, Any] | None = None, daemon_json: str = DAEMON_JSON) -> bool:
    """Whether dockerd offers the `cnirun` runtime.

    With `info` (the result of the engine's /info, e.g. docker SDK client.info())
    this is what the running dockerd says; without it, what daemon.json says.
    """
    if info is not None:
        runtimes = info.get("Runtimes") or {}
        return isinstance(runtimes, dict) and RUNTIME_NAME in runtimes
    path = registered_path(daemon_json)
    return bool(path) and os.access(path, os.X_OK)


def installed_settings(daemon_json: str = DAEMON_JSON) -> dict[str, Any] | None:
    """What `install` recorded (runc, hook argv, hook env as a dict under "env"), None when not installed.

    `cnirun run` can compare "env" with its own NETCONFPATH/CNI_PATH/CNI_CACHE_DIR
    before choosing hook mode: the hooks only see the networks recorded here.
    """
    launcher = registered_path(daemon_json)
    if not launcher:
        return None
    try:
        with open(os.path.join(os.path.dirname(launcher), SETTINGS), "rb") as f:
            settings = json.loads(f.read())
    except (OSError, ValueError):
        return None
    if not isinstance(settings, dict):
        return None
    settings["env"] = dict(e.split("=", 1) for e in settings.get("hook_env") or [] if "=" in e)
    return settings


# -- dockerd ---------------------------------------------------------------------
def dockerd_pid() -> int:
    """dockerd's pid: /var/run/docker.pid when it names a live dockerd, else by process name."""
    for pidfile in ("/var/run/docker.pid", "/run/docker.pid"):
        try:
            pid = int(open(pidfile).read().strip())
        except (OSError, ValueError):
            continue
        if _comm(pid) == "dockerd":
            return pid
    for name in os.listdir("/proc"):
        if name.isdigit() and _comm(int(name)) == "dockerd":
            return int(name)
    raise InstallError("dockerd is not running: start it (systemctl start docker, or dockerd &) and retry")


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def _docker_info(fmt: str) -> str | None:
    import subprocess

    try:
        proc = subprocess.run(["docker", "info", "--format", fmt], capture_output=True, text=True, timeout=15)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def reload_dockerd(present: bool, wait: float = RELOAD_WAIT) -> None:
    """SIGHUP dockerd and wait until `docker info` does (or does not) list the runtime."""
    import signal
    import time

    os.kill(dockerd_pid(), signal.SIGHUP)
    deadline = time.monotonic() + wait
    while True:
        out = _docker_info("{{json .Runtimes}}")
        if out is not None:
            try:
                listed = RUNTIME_NAME in json.loads(out)
            except ValueError:
                listed = False
            if listed == present:
                return
        if time.monotonic() >= deadline:
            state = "list" if present else "drop"
            raise InstallError(
                f"dockerd did not {state} the {RUNTIME_NAME} runtime within {wait:g} s after SIGHUP: "
                "check its log for a daemon.json error"
            )
        time.sleep(0.2)


# -- the launcher ----------------------------------------------------------------------
LAUNCHER_TEMPLATE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "docker-runtime.sh")


def launcher_text(python: str, package_parent: str, runc: str, settings: str, gates: str = "",
                  flock: str = "flock", pins: str = "", locks: str = "") -> str:
    """The runtime dockerd executes (docker-runtime.sh filled in): sh; Python for `create` and, in the background, for `delete`.

    `gates`: the start gates' directory (cnirun.oci.start_gate); a `start` whose
    container has a gate waits until the shim's attach worker has finished,
    and fails with the worker's error when it did not attach. `pins`, `locks`:
    the netns pins' and container locks' directories; a `delete` of a
    container with a pin takes its lock (flock(1) on fd DELETE_LOCK_FD), starts the DEL
    (shim.delete_main) in the background with it, and execs runc at once
    (when the lock is busy, only while runc still knows the container: the
    DEL then waits for the lock itself). Without them, the launcher has no
    `start` or `delete` branch.
    """
    import shlex

    from ..shim import DELETE_LOCK_FD, LAUNCHER_VERSION
    from ..start_gate import WAIT_SECONDS

    boot = (
        f"import sys; sys.path.insert(0, {package_parent!r}); "
        "from cnirun.oci.shim import main; sys.exit(main(sys.argv[1:]))"
    )
    boot_delete = (
        f"import sys; sys.path.insert(0, {package_parent!r}); "
        "from cnirun.oci.shim import delete_main; from cnirun.core.process import exit_now; exit_now(delete_main(sys.argv))"
    )
    values = {
        "python": python, "runc": runc, "settings": settings, "gates": gates, "flock": flock, "pins": pins,
        "locks": locks, "boot": boot, "boot_delete": boot_delete,
    }
    values = {k: shlex.quote(v) for k, v in values.items()}
    values.update(launcher_version=LAUNCHER_VERSION, wait_seconds=str(WAIT_SECONDS), lock_fd=str(DELETE_LOCK_FD))
    with open(LAUNCHER_TEMPLATE, encoding="utf-8") as f:
        template = f.read()
    return render_template(template, values, {"start": bool(gates), "delete": bool(pins and locks)})


def render_template(template: str, values: Mapping[str, str], sections: Mapping[str, bool]) -> str:
    """docker-runtime.sh's form: `#%` lines dropped, `#%{ name` ... `#%}` kept only when sections[name], @name@ replaced.

    Every @name@ is replaced in one pass (a value that holds @other@ stays as
    it is); a name without a value is a KeyError.
    """
    import re

    kept: list[str] = []
    keep = [True]
    for line in template.splitlines(keepends=True):
        if line.startswith("#%{ "):
            keep.append(keep[-1] and sections[line[4:].strip()])
        elif line.startswith("#%}"):
            keep.pop()
        elif keep[-1] and not line.startswith("#%"):
            kept.append(line)
    return re.sub(r"@([a-z_]+)@", lambda m: values[m.group(1)], "".join(kept))


def _find_program(name: str, environ: Mapping[str, str], hint: str) -> str:
    """`name` in the install environment's PATH, then in the usual system directories; InstallError when nowhere."""
    dirs = (environ.get("PATH", "") + ":/usr/sbin:/usr/bin:/sbin:/bin:/usr/local/sbin:/usr/local/bin").split(":")
    found = which(name, dirs)
    if not found:
        raise InstallError(f"{name} not found in PATH: {hint}")
    return found


def _find_runc(environ: Mapping[str, str]) -> str:
    return _find_program("runc", environ, "install runc (Debian: apt-get install runc)")


# What install records and the root hook later trusts: a relative entry would
# be resolved against whatever directory the engine runs the hook in, and a
# directory others can write lets them put a plugin, a network or an
# `iptables` there that root then runs.
SEARCH_PATH_KEYS = ("PATH", "NETCONFPATH", "CNI_PATH")
FILE_PATH_KEYS = ("CNI_CACHE_DIR", "CNIRUN_STATE_DIR", "CNIRUN_HOOK_LOG", "CNIRUN_LOCK_FILE", "CNIRUN_DOCKER_ROOT")


def install_problems(environ: Mapping[str, str]) -> list[str]:
    """What is unsafe in the environment install would record (empty: nothing)."""
    problems: list[str] = []
    for key in SEARCH_PATH_KEYS:
        for entry in (environ.get(key) or "").split(":"):
            if not entry:
                continue  # hook_env drops empty entries
            if not os.path.isabs(entry):
                problems.append(f"{key} has the relative entry {entry!r}: use absolute directories")
                continue
            why = unsafe_dir(entry)
            if why:
                problems.append(f"{key} entry {entry}: {why}")
    for key in FILE_PATH_KEYS:
        value = environ.get(key)
        if value:
            why = unsafe_dir(os.path.dirname(os.path.abspath(value)) if key in ("CNIRUN_HOOK_LOG", "CNIRUN_LOCK_FILE") else value)
            if why:
                problems.append(f"{key}={value}: {why}")
    return problems


def checked_env(environ: Mapping[str, str], force: bool = False,
                install_dir: str = "") -> tuple[dict[str, str], list[str]]:
    """The environment to record, with file paths made absolute; refuses unsafe entries.

    `install_dir`: where install writes what an engine runs as root (hooks.d
    files, the runtime launcher); it must be root's alone too (fsutil.unsafe_dir).
    Returns (env, warnings): with `force`, the problems come back as warnings
    instead of an InstallError.
    """
    problems = install_problems(environ)
    why = unsafe_dir(os.path.abspath(install_dir)) if install_dir else ""
    if why:
        problems.insert(0, f"--dir {install_dir}: {why} (the engine runs what is there as root)")
    if problems and not force:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise InstallError(f"unsafe environment for a root hook: {problems[0]}{more}: fix it, or pass --force")
    env = dict(environ)
    for key in FILE_PATH_KEYS:
        if env.get(key):
            env[key] = os.path.abspath(env[key])
    return env, problems


def _abs_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment with path-like CNI settings made absolute, unchecked (tests, callers that checked)."""
    env = dict(environ)
    for key in ("NETCONFPATH", "CNI_PATH"):
        if env.get(key):
            env[key] = ":".join(os.path.abspath(p) for p in env[key].split(":") if p)
    for key in FILE_PATH_KEYS:
        if env.get(key):
            env[key] = os.path.abspath(env[key])
    return env


def install(
    directory: str = DEFAULT_DIR,
    daemon_json: str = DAEMON_JSON,
    environ: Mapping[str, str] | None = None,
    reload: bool = True,
    force: bool = False,
    warnings: list[str] | None = None,
) -> str:
    """Write the launcher and settings, register them in daemon.json, reload dockerd. Returns the launcher path.

    Refuses an unsafe environment (checked_env) unless `force`; then the
    problems are appended to `warnings`.
    """
    import sys

    from ..argv import hook_argv, hook_env, package_parent

    env, problems = checked_env(os.environ if environ is None else environ, force, directory)
    if warnings is not None:
        warnings.extend(problems)
    directory = os.path.abspath(directory)
    raw, obj = _read_json_object(daemon_json)
    runtimes = obj.get("runtimes")
    if runtimes is not None and not isinstance(runtimes, dict):
        raise InstallError(f'{daemon_json}: "runtimes" is not an object: fix it first')
    runc = _find_runc(env)
    flock = _find_program("flock", env, "install util-linux")  # the launcher's start and delete use it
    launcher = os.path.join(directory, LAUNCHER)
    settings_path = os.path.join(directory, SETTINGS)
    settings = {
        "runc": runc,
        "hook_argv": hook_argv("", sys.executable)[:-1],
        "hook_env": hook_env(env),
        "docker_root": _docker_info("{{.DockerRootDir}}") or DEFAULT_DOCKER_ROOT,
    }
    try:
        _write(settings_path, (json.dumps_indented(settings, 2) + "\n").encode(), 0o644)
        locks = os.path.dirname(container_lock("x", env))
        text = launcher_text(sys.executable, package_parent(), runc, settings_path, gates_dir(env), flock,
                             pins_dir(env), locks)
        _write(launcher, text.encode(), 0o755)
        backup = daemon_json + BACKUP_SUFFIX
        if not os.path.exists(backup):  # a second install keeps the first original
            record = {"existed": raw is not None, "content": (raw or b"").decode("utf-8", "surrogateescape")}
            _write(backup, json.dumps(record).encode(), 0o600)
        new = dict(obj)
        new["runtimes"] = {**(runtimes or {}), RUNTIME_NAME: {"path": launcher}}
        _write(daemon_json, (json.dumps_indented(new, 2) + "\n").encode(), 0o644)
    except OSError as e:
        raise InstallError(f"cannot install the docker runtime: {e.strerror}: {e.filename}: run as root") from None
    if reload:
        reload_dockerd(present=True)
    return launcher


def containers_using_runtime() -> list[str]:
    """Docker containers (any state) created with the cnirun runtime."""
    ids = _run_docker(["ps", "-aq", "--no-trunc"])
    if not ids:
        return []
    out = _run_docker(["inspect", "--format", "{{.Id}} {{.HostConfig.Runtime}}", *ids.split()]) or ""
    return [line.split()[0][:12] for line in out.splitlines() if line.endswith(" " + RUNTIME_NAME)]


def _run_docker(args: list[str]) -> str | None:
    import subprocess

    try:
        proc = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def _dockerd_running() -> bool:
    try:
        dockerd_pid()
    except InstallError:
        return False
    return True


def uninstall(
    directory: str | None = None, daemon_json: str = DAEMON_JSON, reload: bool = True, force: bool = False
) -> bool:
    """Remove the runtime from daemon.json (restoring the original when possible) and its files.

    Refuses while containers created with the runtime exist (dockerd would
    still call the removed launcher to stop and delete them) unless `force`.
    Returns whether anything was registered.
    """
    if not force and registered_path(daemon_json) and _dockerd_running():
        users = containers_using_runtime()
        if users:
            raise InstallError(
                f"containers still use the {RUNTIME_NAME} runtime ({', '.join(users[:5])}"
                f"{', ...' if len(users) > 5 else ''}): remove them first (docker rm -f) or pass --force"
            )
    raw, obj = _read_json_object(daemon_json)
    launcher = registered_path(daemon_json)
    backup = daemon_json + BACKUP_SUFFIX
    runtimes = obj.get("runtimes") if isinstance(obj.get("runtimes"), dict) else None
    was_registered = bool(runtimes and RUNTIME_NAME in runtimes)
    stripped = dict(obj)
    if runtimes is not None and RUNTIME_NAME in runtimes:
        rest = {k: v for k, v in runtimes.items() if k != RUNTIME_NAME}
        if rest:
            stripped["runtimes"] = rest
        else:
            del stripped["runtimes"]
    try:
        original = _load_backup(backup)
        target = _target_after_uninstall(stripped, original)
        listed = RUNTIME_NAME in (target.get("runtimes") or {})
        if reload and was_registered and _dockerd_running():
            # dockerd reloads runtimes only when the key is present, and ignores a
            # missing file: state the runtimes explicitly first.
            staged = {**target, "runtimes": target.get("runtimes", {})}
            _write(daemon_json, (json.dumps_indented(staged, 2) + "\n").encode(), 0o644)
            reload_dockerd(present=listed)
        if original is not None and _same_json(original, target):
            # Nothing else changed since install: put the exact bytes back.
            existed, content = original
            if existed:
                _write(daemon_json, content, 0o644)
            elif os.path.exists(daemon_json):
                os.unlink(daemon_json)
        elif was_registered:
            _write(daemon_json, (json.dumps_indented(target, 2) + "\n").encode(), 0o644)
        if os.path.exists(backup):
            os.unlink(backup)
        for d in {os.path.dirname(launcher) if launcher else "", os.path.abspath(directory) if directory else ""}:
            if d:
                _remove_files(d)
    except OSError as e:
        raise InstallError(f"cannot uninstall the docker runtime: {e.strerror}: {e.filename}: run as root") from None
    return was_registered


def _target_after_uninstall(stripped: dict[str, Any], original: tuple[bool, bytes] | None) -> dict[str, Any]:
    """daemon.json without our entry, or with the `cnirun` entry it had before install."""
    if original is None or not original[1].strip():
        return stripped
    try:
        before = json.loads(original[1])
    except ValueError:
        return stripped
    if not isinstance(before, dict) or not isinstance(before.get("runtimes"), dict):
        return stripped
    old = before["runtimes"].get(RUNTIME_NAME)
    if old is None:
        return stripped
    return {**stripped, "runtimes": {**(stripped.get("runtimes") or {}), RUNTIME_NAME: old}}


def _load_backup(path: str) -> tuple[bool, bytes] | None:
    try:
        with open(path, "rb") as f:
            rec = json.loads(f.read())
        return bool(rec["existed"]), str(rec["content"]).encode("utf-8", "surrogateescape")
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _same_json(original: tuple[bool, bytes], current: dict[str, Any]) -> bool:
    existed, content = original
    if not existed or not content.strip():
        return current == {}
    try:
        return json.loads(content) == current
    except ValueError:
        return False


def _remove_files(directory: str) -> None:
    for name in (LAUNCHER, SETTINGS):
        try:
            os.unlink(os.path.join(directory, name))
        except FileNotFoundError:
            pass
    try:
        os.rmdir(directory)  # only when empty: the directory may hold other things
    except OSError:
        pass
