"""Podman through its CLI.

`podman run --network ns:PATH` starts the workload inside a network namespace
cnirun created and attached beforehand, so no helper container is needed;
and the CLI already does -it, signal proxying and docker-compatible exit
codes (125/126/127). The REST API would need the podman service running.
"""
from __future__ import annotations

import os

from ..core import jsonfast as json  # not the json package: its re costs ~3 ms of every podman run
from ..core.errors import EngineError
from .base import Container, ContainerNet, FullEngine
from .podman_run import podman_bin, run_argv, split_env, write_env_file
from .spec import RunSpec, is_anonymous_volume

TYPE_CHECKING = False
if TYPE_CHECKING:
    import subprocess
    from typing import Any, Callable, Iterator


# `podman run --log-driver` of podman 4.3 (json-file is its name for k8s-file); Docker's others are refused.
LOG_DRIVERS = ("k8s-file", "json-file", "journald", "none", "passthrough")



STORAGE_CONF = "/etc/containers/storage.conf"
DEFAULT_GRAPHROOT = "/var/lib/containers/storage"
# How long remove() retries a container podman calls busy (its cleanup still holds a mount).
REMOVE_BUSY_S = 10.0
FOLLOW_SECONDS = 0.5  # how often Podman.follow looks at the followed containers' storage dirs


def _graphroot() -> str:
    """containers/storage's graphroot for root: storage.conf's (CONTAINERS_STORAGE_CONF first), else the default."""
    conf = os.environ.get("CONTAINERS_STORAGE_CONF") or STORAGE_CONF
    try:
        with open(conf, encoding="utf-8") as f:
            for line in f:
                key, sep, value = line.partition("=")
                if sep and key.strip() == "graphroot":
                    return value.split("#", 1)[0].strip().strip("'\"")
    except OSError:
        pass
    return DEFAULT_GRAPHROOT


def storage_dir(cid: str) -> str:
    """The directory root's containers/storage keeps container `cid` (the full ID) in: `podman rm` removes it
    before it returns, a stop keeps it. "" when there is none (not root's, or gone already)."""
    root = _graphroot()
    try:
        stores = [d for d in os.listdir(root) if d.endswith("-containers")] if len(cid) == 64 else []
    except OSError:
        return ""
    for d in stores:
        path = os.path.join(root, d, cid)
        if os.path.isdir(path):
            return path
    return ""


class StorageWatch:
    """One thread telling each run when its container's storage dir is gone (Podman.follow)."""

    def __init__(self) -> None:
        import threading

        self._mu = threading.Lock()
        self._dirs: dict[str, tuple[str, Callable[[str], None]]] = {}  # storage dir -> (run ID, notify)
        threading.Thread(target=self._poll, daemon=True).start()

    def add(self, path: str, run_id: str, notify: Callable[[str], None]) -> None:
        with self._mu:
            self._dirs[path] = (run_id, notify)

    def _poll(self) -> None:
        import time

        while True:
            time.sleep(FOLLOW_SECONDS)
            with self._mu:
                gone = [(p, v) for p, v in self._dirs.items() if not os.path.isdir(p)]
                for p, _ in gone:
                    del self._dirs[p]
            for _, (run_id, notify) in gone:
                notify(run_id)


def _lookup_names(image: str) -> list[str]:
    """The stored names that certainly are `image` for podman: itself with a tag; a short name as
    localhost/NAME and docker.io/[library/]NAME. Digests: none (podman decides)."""
    if not image or "@" in image or any(c.isspace() for c in image):
        return []
    last = image.rsplit("/", 1)[-1]
    name = image if ":" in last else image + ":latest"
    first = name.split("/", 1)[0]
    if "/" in name and ("." in first or ":" in first or first == "localhost"):
        return [name]
    return ["localhost/" + name, "docker.io/" + ("library/" + name if "/" not in name else name)]


def stored_image(image: str) -> bool:
    """Whether root's containers/storage lists `image` (a quick yes; False means: ask podman)."""
    names = set(_lookup_names(image))
    if not names or os.geteuid() != 0:
        return False
    from ..core import jsonfast

    root = _graphroot()
    try:
        stores = [d for d in os.listdir(root) if d.endswith("-images")]
    except OSError:
        return False
    for d in stores:
        try:
            with open(os.path.join(root, d, "images.json"), "rb") as f:
                images = jsonfast.loads(f.read())
        except (OSError, ValueError):
            continue
        for img in images if isinstance(images, list) else []:
            if isinstance(img, dict) and names & set(img.get("names") or []):
                return True
    return False


class Podman(FullEngine):
    """The Podman engine over its CLI (the REST API would need the podman service running)."""

    name = "podman"

    def __init__(self) -> None:
        self.bin = podman_bin()

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        import subprocess

        from ..core import trace

        with trace.span("engine call", f"podman {args[0] if args else ''}"):
            return subprocess.run([self.bin, *args], capture_output=True, text=True)

    def state(self, cid: str) -> str | None:
        p = self._run("container", "inspect", "--format", "{{.State.Status}}", cid)
        return p.stdout.strip() or "unknown" if p.returncode == 0 else None

    def containers(self, label: str = "") -> list[Container]:
        p = self._run("ps", "-a", "--format", "json", *(["--filter", f"label={label}"] if label else []))
        if p.returncode != 0:
            raise EngineError(f"podman ps: {p.stderr.strip()}")
        try:
            items = json.loads(p.stdout or "[]")
        except ValueError:
            return []
        out = []
        for c in items if isinstance(items, list) else []:
            names = c.get("Names") or [""]
            out.append(Container(str(c.get("Id", "")), str(names[0]), str(c.get("Image", "")),
                                 dict(c.get("Labels") or {}), str(c.get("State", ""))))
        return out

    def start(self, cid: str) -> None:
        p = self._run("start", cid)
        if p.returncode != 0:
            raise EngineError(f"podman start {cid[:12]}: {p.stderr.strip()}")

    def stop(self, cid: str, timeout: int = 10) -> None:
        self._run("stop", "-t", str(timeout), cid)

    def kill(self, cid: str, sig: str = "KILL") -> None:
        self._run("kill", "--signal", sig, cid)

    def unsupported(self, spec: RunSpec) -> dict[str, str]:
        out: dict[str, str] = {}
        if spec.log_driver and spec.log_driver not in LOG_DRIVERS:
            out["log_driver"] = (f"podman has no {spec.log_driver} log driver (it has {', '.join(LOG_DRIVERS)}): "
                                 "podman's default is used")
        if (spec.healthcheck or {}).get("start_interval") is not None:
            out["healthcheck.start_interval"] = "podman has no healthcheck start interval: ignored"
        if spec.runtime:
            # Podman names its runtimes in containers.conf: asking for one is the only check.
            p = self._run("--runtime", spec.runtime, "info", "--format", "{{.Host.OCIRuntime.Name}}")
            if p.returncode != 0:
                default = self._run("info", "--format", "{{.Host.OCIRuntime.Name}}").stdout.strip()
                out["runtime"] = f"podman has no runtime {spec.runtime!r} (its default runtime: {default or '?'})"
        return out

    def remove(self, cid: str, volumes: bool = True, keep: frozenset[str] = frozenset()) -> None:
        # -v: its anonymous volumes go with it, as with Docker's remove (compose's down -v relies on it).
        # podman's -v also takes a volume made anonymous that the container mounts by name: with `keep`,
        # the container goes without -v and its other anonymous volumes (podman names them by 64 hex
        # digits) one by one.
        # "device or resource busy": a container whose `podman run` was just killed (a run undone in
        # its set-up) still has its shm mounted by podman's own cleanup for a moment: tried again.
        import time

        own: list[str] = []
        if volumes and keep:
            own = [n for n in self.volume_mounts(cid).values() if n not in keep and is_anonymous_volume(n)]
            volumes = False
        deadline = time.monotonic() + REMOVE_BUSY_S
        while True:
            p = self._run("rm", "-f", *(["-v"] if volumes else []), "--ignore", cid)
            if p.returncode == 0:
                for name in own:
                    self.volume_remove(name)
                return
            if "resource busy" not in p.stderr or time.monotonic() >= deadline:
                # e.g. another container still shares its network namespace
                raise EngineError(f"podman rm {cid[:12]}: {(p.stderr.strip().splitlines() or ['failed'])[-1]}")
            time.sleep(0.1)

    def netns_of(self, cid: str) -> str:
        p = self._run("container", "inspect", "--format", "{{.State.Pid}}", cid)
        pid = p.stdout.strip()
        if p.returncode != 0 or not pid.isdigit() or pid == "0":
            raise EngineError(f"podman container {cid[:12]} is not running")
        return f"/proc/{pid}/ns/net"

    def lookup(self, ref: str) -> ContainerNet | None:
        p = self._run("container", "inspect", "--format", "json", ref)
        if p.returncode != 0:
            if "no such" in p.stderr.lower():
                return None
            raise EngineError(f"podman inspect {ref}: {p.stderr.strip()}")
        try:
            info = (json.loads(p.stdout or "[]") or [{}])[0]
        except (ValueError, IndexError):
            raise EngineError(f"podman inspect {ref}: unreadable output") from None
        state = info.get("State") or {}
        return ContainerNet(
            id=str(info.get("Id", "")),
            name=str(info.get("Name", "")),
            state=str(state.get("Status") or "unknown"),
            pid=int(state.get("Pid") or 0) if state.get("Running") else 0,
            network_mode=str((info.get("HostConfig") or {}).get("NetworkMode") or ""),
            labels=dict((info.get("Config") or {}).get("Labels") or {}),
        )

    def create_workload(
        self,
        spec: RunSpec,
        network_mode: str,
        labels: dict[str, str],
        extra_binds: list[str],
        runtime: str | None = None,
        auto_remove: bool = False,
        hostname: str | None = None,
        dns: list[str] | None = None,
        dns_search: list[str] | None = None,
    ) -> str:
        """`podman create --network MODE` (host, none, container:ID): a container on an engine network,
        not started; its ID. Docker's create_workload for Podman (`runtime` is Docker's only).

        The environment goes through a 0600 env file in a private temporary
        directory (removed once podman has read it), never on the command line.
        """
        import tempfile

        extra: list[str] = []
        binds = list(extra_binds)
        if network_mode.startswith("container:"):
            # As Docker does for --network container:X: X's hostname, /etc/hosts and resolv.conf (the
            # files cnirun writes for a CNI-attached X, kept current in place). Podman makes its own.
            shared, target_hostname = self._net_files(network_mode.split(":", 1)[1])
            taken = {v.split(":")[1] for v in spec.volumes if v.count(":") >= 1}
            binds += [f"{src}:{dst}" for dst, src in shared.items() if dst not in taken]
            hostname = hostname or target_hostname
        else:
            # A container in another's netns shares its hosts and resolv.conf: podman refuses these there.
            for h in spec.add_hosts:
                extra += ["--add-host", h.replace("=", ":", 1)]
            for d in dns or []:
                extra += ["--dns", d]
            for d in dns_search or []:
                extra += ["--dns-search", d]
        if auto_remove and not spec.remove:
            extra.append("--rm")
        import shutil
        import subprocess

        lines, passthrough = split_env(spec.resolved_env())
        tmp = tempfile.mkdtemp(prefix="cnirun-create-")
        try:
            env_file = os.path.join(tmp, "env")
            if lines:
                write_env_file(env_file, lines)
            argv = run_argv(spec, "", labels, binds, hostname or "", "", env_file=env_file if lines else "",
                            env_names=list(passthrough), network=network_mode, verb="create", extra=extra)
            from ..core import trace

            with trace.span("engine call", "podman create"):
                p = subprocess.run(argv, capture_output=True, text=True,
                                   env={**os.environ, **passthrough} if passthrough else None)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        if p.returncode != 0:
            raise EngineError(f"podman create {spec.name or spec.image}: "
                              f"{(p.stderr.strip().splitlines() or ['failed'])[-1]}")
        return p.stdout.strip().splitlines()[-1]

    def _net_files(self, ref: str) -> tuple[dict[str, str], str]:
        """Container ref's /etc/hosts and /etc/resolv.conf on the host (destination -> source: its bind
        mounts, else podman's own files) and its hostname; nothing when podman cannot say."""
        info: dict[str, Any] = self._inspect(ref)  # type: ignore[assignment]
        files: dict[str, str] = {}
        for dst, key in (("/etc/hosts", "HostsPath"), ("/etc/resolv.conf", "ResolvConfPath")):
            mounted = [m.get("Source") for m in info.get("Mounts") or [] if m.get("Destination") == dst]
            src = str(mounted[0] if mounted and mounted[0] else info.get(key) or "")
            if src and os.path.isfile(src):
                files[dst] = src
        return files, str((info.get("Config") or {}).get("Hostname") or "")

    def logs(self, cid: str, follow: bool = True, tail: int | None = None, timestamps: bool = False,
             since: float | None = None, until: float | None = None) -> Iterator[bytes]:
        import subprocess

        argv = [self.bin, "logs"] + (["-f"] if follow else []) + (["-t"] if timestamps else []) + \
            (["--tail", str(tail)] if tail is not None else [])
        for flag, when in (("--since", since), ("--until", until)):
            if when is not None:
                argv += [flag, f"{when:.9f}"]  # a Unix time, as podman reads it too
        proc = subprocess.Popen([*argv, cid], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        assert proc.stdout is not None
        try:
            yield from iter(proc.stdout.readline, b"")
        finally:
            proc.kill()
            proc.wait()

    def follow(self, cid: str, run_id: str, notify: Callable[[str], None]) -> None:
        """Notify the run once its container is removed; a restart or stop/start is not a removal.

        One thread for all followed containers looks at each one's storage dir
        every FOLLOW_SECONDS (storage_dir: `podman rm` removes it before it
        returns, a stop keeps it): no process per container. One whose dir is
        not found (not root's storage) gets a thread of its own running
        `podman wait --condition=removing`, which polls the container across
        restarts and ends when it is gone (at once when it already is).
        """
        import threading

        path = storage_dir(cid)
        if path:
            watch = self.__dict__.get("_storage_watch")
            if watch is None:
                watch = self.__dict__["_storage_watch"] = StorageWatch()
            watch.add(path, run_id, notify)
            return

        def wait() -> None:
            while self.state(cid) is not None:
                self._run("wait", "--condition=removing", cid)
            notify(run_id)

        threading.Thread(target=wait, daemon=True).start()

    def wait(self, cid: str) -> int:
        """The container's exit status once it stops (125 when podman cannot say)."""
        p = self._run("wait", cid)
        try:
            return int(p.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            return 125

    # -- what compose needs beside runs: images, volumes, health, exec, restart ------------
    def _inspect(self, cid: str) -> dict[str, object]:
        p = self._run("container", "inspect", cid)
        try:
            items = json.loads(p.stdout or "[]") if p.returncode == 0 else []
        except ValueError:
            items = []
        return items[0] if items else {}

    def health(self, cid: str) -> str:
        state = self._inspect(cid).get("State") or {}
        # podman 4 reports Healthcheck (and Health since 4.?); its timer needs systemd: run the check when due.
        h = state.get("Health") or state.get("Healthcheck") or {}  # type: ignore[union-attr]
        status = str(h.get("Status") or "")  # type: ignore[union-attr]
        if status == "starting" or status == "":
            if self._run("healthcheck", "run", cid).returncode == 0:
                return "healthy"
        return status

    def exit_code(self, cid: str) -> int | None:
        info = self._inspect(cid)
        state = info.get("State") or {}
        return None if not info or state.get("Running") else int(state.get("ExitCode", 0))  # type: ignore

    def has_image(self, image: str) -> bool:
        # `podman image exists` costs a podman start (~30 ms) on every run's critical path: the store's
        # image list answers "yes" for the names podman looks up first; anything else asks podman.
        return stored_image(image) or self._run("image", "exists", image).returncode == 0

    def build(self, context: str, dockerfile: str, tag: str, args: dict[str, str], target: str,
              labels: dict[str, str], no_cache: bool = False, pull: bool = False) -> None:
        argv = ["build", "-t", tag, "-f", os.path.join(context, dockerfile)]
        for k, v in args.items():
            argv += ["--build-arg", f"{k}={v}"]
        for k, v in labels.items():
            argv += ["--label", f"{k}={v}"]
        if target:
            argv += ["--target", target]
        if no_cache:
            argv.append("--no-cache")
        argv += ["--pull=always" if pull else "--pull=never", context]
        p = self._run(*argv)
        if p.returncode != 0:
            raise EngineError(f"podman build {tag}: {(p.stderr.strip().splitlines() or ['failed'])[-1]}")

    def pull(self, image: str, progress: Any = None) -> None:
        """`podman pull`; on a terminal `progress` podman draws its own progress there, else it is quiet."""
        import subprocess

        if progress is not None and getattr(progress, "isatty", lambda: False)():
            progress.flush()
            p = subprocess.run([self.bin, "pull", image], stdout=subprocess.DEVNULL, stderr=progress)
            if p.returncode != 0:
                raise EngineError(f"podman pull {image}: failed (exit {p.returncode}; its error is above)")
            return
        p = self._run("pull", "-q", image)
        if p.returncode != 0:
            raise EngineError(f"podman pull {image}: {(p.stderr.strip().splitlines() or ['failed'])[-1]}")

    def volume_create(self, name: str, driver: str, opts: dict[str, str], labels: dict[str, str]) -> None:
        argv = ["volume", "create"] + (["--driver", driver] if driver else [])
        for k, v in opts.items():
            argv += ["--opt", f"{k}={v}"]
        for k, v in labels.items():
            argv += ["--label", f"{k}={v}"]
        p = self._run(*argv, name)
        if p.returncode != 0:
            raise EngineError(f"podman volume create {name}: {p.stderr.strip()}")

    def volume_labels(self, name: str) -> dict[str, str] | None:
        p = self._run("volume", "inspect", "--format", "{{json .Labels}}", name)
        return dict(json.loads(p.stdout or "{}") or {}) if p.returncode == 0 else None

    def volumes(self, label: str) -> list[str]:
        p = self._run("volume", "ls", "-q", "--filter", f"label={label}")
        return p.stdout.split() if p.returncode == 0 else []

    def volume_mounts(self, cid: str) -> dict[str, str]:
        p = self._run("container", "inspect", "--format", "{{json .Mounts}}", cid)
        mounts = json.loads(p.stdout or "[]") if p.returncode == 0 else []
        return {m["Destination"]: m["Name"] for m in mounts or [] if m.get("Type") == "volume" and m.get("Name")}

    def volume_remove(self, name: str) -> None:
        p = self._run("volume", "rm", "-f", name)
        if p.returncode != 0 and "no such volume" not in p.stderr:
            raise EngineError(f"podman volume rm {name}: {p.stderr.strip()}")

    def exec(self, cid: str, argv: list[str], user: str = "", workdir: str = "",
             env: list[str] | None = None) -> int:
        import subprocess

        args = ["exec"] + (["-u", user] if user else []) + (["-w", workdir] if workdir else [])
        for e in env or []:
            args += ["-e", e]
        return subprocess.run([self.bin, *args, cid, *argv]).returncode

    def restart(self, cid: str, timeout: int = 10) -> None:
        p = self._run("restart", "-t", str(timeout), cid)
        if p.returncode != 0:
            raise EngineError(f"podman restart {cid[:12]}: {p.stderr.strip()}")
