"""Docker through the Docker SDK's low-level APIClient.

The APIClient (not the high-level models) because every call is one HTTP
request there: no implicit reloads. `docker` is imported here only, so the
Podman path and the other subcommands never pay for it.
"""
from __future__ import annotations

import os
import struct
import time

TYPE_CHECKING = False  # start-up cost: see cnirun.core
if TYPE_CHECKING:
    from typing import Any, Callable, Iterator

from ..core.errors import EngineError
from .attach import SDKAttach
from .base import AttachStream, Container, ContainerNet, DockerClient, FullEngine
from .spec import RunSpec, create_config

SANDBOX_BUSYBOX = "/.cnirun/busybox"  # basename "busybox": argv[1] names the applet


class ImageNotFound(EngineError):
    pass


class StartError(EngineError):
    """start() refused: the command cannot be run (exit 126/127) or the runtime failed (125).

    Its message is the runtime's own reason when the daemon's names one
    (`exec: "x": executable file not found in $PATH`, as docker's message
    ends and cnirun's single-container sandbox says), not the chain of
    containerd, shim and runc prefixes around it.
    """

    MARK = "unable to start container process: "

    def __init__(self, message: str) -> None:
        reason = message.rpartition(self.MARK)[2] if self.MARK in message else message
        super().__init__(reason[:-len(": unknown")] if reason.endswith(": unknown") else reason)

    def exit_code(self) -> int:
        # The docker CLI's own mapping of start errors to exit statuses.
        text = str(self)
        if any(s in text for s in ("executable file not found", "no such file or directory", "not found in $PATH")):
            return 127
        if "permission denied" in text or "is a directory" in text:
            return 126
        return 125


def _explain(e: Exception) -> str:
    expl = getattr(e, "explanation", None)
    if expl:
        return str(expl.decode() if isinstance(expl, bytes) else expl)
    return str(e)


def docker_host() -> str:
    """The resolved daemon address (engines.docker_context.resolve_endpoint: --context, DOCKER_CONTEXT, ...)."""
    from .docker_context import resolve_endpoint

    ep = resolve_endpoint()
    return ep.host if ep.context == "default" else f"{ep.host} (context {ep.context})"


def client_kwargs() -> dict[str, Any]:
    """The SDK's APIClient arguments for the endpoint resolve_endpoint chose (the lean client's too).

    The default context is DOCKER_HOST with DOCKER_TLS_VERIFY/DOCKER_CERT_PATH,
    which the SDK's kwargs_from_env reads as the docker CLI does; a named
    context gives its host and the TLS files of its store.
    """
    from docker.utils import kwargs_from_env

    from .docker_context import resolve_endpoint

    ep = resolve_endpoint()
    if ep.context == "default":
        return dict(kwargs_from_env())
    kwargs: dict[str, Any] = {"base_url": ep.host}
    if ep.tls_dir:
        from docker.tls import TLSConfig

        def f(name: str) -> str | None:
            path = os.path.join(ep.tls_dir, name)
            return path if os.path.isfile(path) else None

        cert, key = f("cert.pem"), f("key.pem")
        kwargs["tls"] = TLSConfig(client_cert=(cert, key) if cert and key else None, ca_cert=f("ca.pem"),
                                  verify=not ep.skip_tls_verify)
    return kwargs


def _api_below(version: str, least: tuple[int, int]) -> bool:
    try:
        return tuple(int(x) for x in version.split(".")[:2]) < least
    except ValueError:
        return False


def _api_client(docker: Any, version: str, kwargs: dict[str, Any]) -> Any:
    """docker.APIClient; with TLS, one that verifies against the context's CA only.

    requests lets REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE (set on many machines)
    override a session's own CA file (psf/requests#3829), so a TLS daemon
    signed by its own CA failed with "self-signed certificate in certificate
    chain" although the docker CLI reached it: such a client ignores the
    environment (trust_env off) before its first request.
    """
    if "tls" not in kwargs:
        return docker.APIClient(version=version, **kwargs)
    api = docker.APIClient(version=docker.constants.MINIMUM_DOCKER_API_VERSION if version == "auto" else version,
                           **kwargs)
    api.trust_env = False
    if version == "auto":
        api._version = api._retrieve_server_version()
    return api


def find_static_busybox() -> str:
    """A statically linked busybox on the host: it runs inside any image."""
    import shutil

    for cand in (os.environ.get("CNIRUN_BUSYBOX", ""), "/bin/busybox", "/usr/bin/busybox", shutil.which("busybox") or ""):
        if cand and os.path.isfile(cand) and is_static_elf(cand):
            return cand
    raise EngineError(
        "no statically linked busybox on the host (cnirun's Docker helper container runs it): "
        "apt-get install busybox-static, or use --mode hook"
    )


def is_static_elf(path: str) -> bool:
    """No PT_INTERP program header: the binary needs no dynamic loader."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
            if head[:4] != b"\x7fELF" or head[4] != 2:  # 64-bit only
                return False
            phoff = struct.unpack_from("<Q", head, 0x20)[0]
            phentsize, phnum = struct.unpack_from("<HH", head, 0x36)
            f.seek(phoff)
            table = f.read(phentsize * phnum)
    except OSError:
        return False
    for i in range(phnum):
        if struct.unpack_from("<I", table, i * phentsize)[0] == 3:  # PT_INTERP
            return False
    return True


def sandbox_config(image: str, hostname: str, labels: dict[str, str]) -> dict[str, Any]:
    """Engine API config of the helper: the user's image running the host's static busybox `sleep`.

    No pause image exists offline; the user's image is there by definition.
    SIGKILL as stop signal: sleep as PID 1 ignores SIGTERM.
    """
    busybox = find_static_busybox()
    config: dict[str, Any] = {
        "Image": image,
        "Cmd": ["sleep", "2147483647"],
        "Entrypoint": [SANDBOX_BUSYBOX],
        "Labels": labels,
        "StopSignal": "SIGKILL",
        "Healthcheck": {"Test": ["NONE"]},
        "User": "0:0",
        "WorkingDir": "/",
        "HostConfig": {"NetworkMode": "none", "Binds": [f"{busybox}:{SANDBOX_BUSYBOX}:ro"]},
    }
    if hostname:
        config["Hostname"] = hostname
    return config


def image_not_found(image: str, detail: str) -> str:
    return (
        f"Unable to find image '{image}' locally ({detail}): it went away after the pull check; "
        f"run `docker pull {image}` or `docker load` it, then again"
    )


def netns_from_inspect(cid: str, info: dict[str, Any] | None) -> str:
    """/proc/<pid>/ns/net of the running container.

    Not SandboxKey: dockerd's bind mount under /var/run/docker/netns is
    not always visible in our mount namespace (plugins then see a plain
    file). The pid can be reused after exit, so the run records the
    netns inode and DEL only uses the path while it still matches.
    """
    if not info or not info["State"].get("Running"):
        raise EngineError(f"docker helper container {cid[:12]} exited right after start")
    return f"/proc/{info['State']['Pid']}/ns/net"


def container_state(info: dict[str, Any] | None) -> str | None:
    """Engine.state's answer from an inspect document (None: no such container)."""
    return str((info.get("State") or {}).get("Status") or "unknown") if info else None


def container_list(raw: list[dict[str, Any]]) -> list[Container]:
    """Engine.containers' answer from GET /containers/json (the SDK's and the lean client's)."""
    out = []
    for c in raw or []:
        names = c.get("Names") or [""]
        out.append(Container(str(c["Id"]), names[0].lstrip("/"), str(c.get("Image", "")),
                             dict(c.get("Labels") or {}), str(c.get("State", ""))))
    return out


def container_net(info: dict[str, Any]) -> ContainerNet:
    """Engine.lookup's answer from an inspect document (the SDK's and the lean client's)."""
    from .local import docker_state_file

    state = info.get("State") or {}
    return ContainerNet(
        id=str(info.get("Id", "")),
        name=str(info.get("Name", "")).lstrip("/"),
        state=str(state.get("Status") or "unknown"),
        pid=int(state.get("Pid") or 0) if state.get("Running") else 0,
        network_mode=str((info.get("HostConfig") or {}).get("NetworkMode") or ""),
        labels=dict((info.get("Config") or {}).get("Labels") or {}),
        state_file=docker_state_file(info),
    )


class Docker(FullEngine, DockerClient):
    """The Docker engine over the Docker SDK's low-level APIClient (one method per Engine API call).

    The run path's hot calls go through engines.dockerapi.LeanDocker instead
    when it can do them (importing the SDK costs ~95 ms); both create
    containers from the same engines.spec config.
    """

    name = "docker"
    waits_before_start = False  # the SDK's wait is one blocking call: it cannot be registered before start

    def __init__(self) -> None:
        import docker

        self._errors = docker.errors
        kwargs = client_kwargs()
        try:
            # version="auto": one GET /version; engines refuse versions they don't know.
            self.api = _api_client(docker, "auto", kwargs)
        except docker.errors.DockerException as e:
            raise EngineError(
                f"cannot reach the Docker daemon at {docker_host()} ({_short(e)}): start it "
                "(`dockerd &`, `systemctl start docker`, or `make run`) or set DOCKER_HOST"
            ) from None

    def clone(self) -> Docker:
        """A second client with its own connection pool, for use from another thread."""
        other = Docker.__new__(Docker)
        other._errors = self._errors
        import docker

        other.api = _api_client(docker, self.api._version, client_kwargs())
        return other

    # -- generic --------------------------------------------------------------
    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        from ..core import trace

        try:
            with trace.span("engine call", f"docker SDK {what}"):
                return fn(*args, **kwargs)
        except self._errors.ImageNotFound:
            raise
        except self._errors.NotFound:
            raise
        except self._errors.APIError as e:
            raise EngineError(f"docker {what}: {_explain(e)}") from None
        except Exception as e:  # requests' connection errors and the like
            raise EngineError(f"docker {what}: {_short(e)}") from None

    def runtimes(self) -> set[str]:
        info = self._call("info", self.api.info)
        return set((info.get("Runtimes") or {}).keys())

    def unsupported(self, spec: RunSpec) -> dict[str, str]:
        out: dict[str, str] = {}
        if spec.runtime and spec.runtime not in (have := self.runtimes()):
            out["runtime"] = f"dockerd has no runtime {spec.runtime!r} (it has {', '.join(sorted(have))})"
        if (spec.healthcheck or {}).get("start_interval") is not None and _api_below(self.api._version, (1, 44)):
            out["healthcheck.start_interval"] = (f"dockerd's API {self.api._version} has no healthcheck start "
                                                 "interval (1.44 has): ignored")
        return out

    def inspect(self, cid: str) -> dict[str, Any] | None:
        try:
            return self._call("inspect", self.api.inspect_container, cid)
        except self._errors.NotFound:
            return None

    def state(self, cid: str) -> str | None:
        return container_state(self.inspect(cid))

    def containers(self, label: str = "") -> list[Container]:
        return container_list(self._call("ps", self.api.containers, all=True,
                                         filters={"label": label} if label else None))

    # -- the helper container -------------------------------------------------
    def create_sandbox(self, image: str, hostname: str, labels: dict[str, str]) -> str:
        """The helper container (see sandbox_config)."""
        try:
            res = self._call("create", self.api.create_container_from_config, sandbox_config(image, hostname, labels))
        except (self._errors.ImageNotFound, self._errors.NotFound) as e:
            raise ImageNotFound(image_not_found(image, _explain(e))) from None
        return res["Id"]

    def netns_of(self, cid: str) -> str:
        return netns_from_inspect(cid, self.inspect(cid))

    def lookup(self, ref: str) -> ContainerNet | None:
        info = self.inspect(ref)  # dockerd resolves names, IDs and unique prefixes itself
        return container_net(info) if info else None

    # -- the workload -----------------------------------------------------------
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
        from docker.utils import parse_bytes, parse_devices

        config = create_config(spec, network_mode, labels, extra_binds, runtime, auto_remove, hostname, dns, dns_search)
        host = config["HostConfig"]
        if spec.memory:
            host["Memory"] = parse_bytes(spec.memory)
        if spec.shm_size:
            host["ShmSize"] = parse_bytes(spec.shm_size)
        if spec.devices:
            host["Devices"] = parse_devices(spec.devices)
        if spec.memory_reservation:
            host["MemoryReservation"] = parse_bytes(spec.memory_reservation)
        try:
            res = self._call("create", self.api.create_container_from_config, config, name=spec.name or None,
                             platform=spec.platform or None)
        except (self._errors.ImageNotFound, self._errors.NotFound) as e:
            raise ImageNotFound(f"Unable to find image '{spec.image}' locally: {_explain(e)}") from None
        return res["Id"]

    def attach_socket(self, cid: str, stdin: bool) -> AttachStream:
        params = {"stdout": 1, "stderr": 1, "stream": 1, "stdin": 1 if stdin else 0}
        return SDKAttach(self._call("attach", self.api.attach_socket, cid, params=params))

    def start(self, cid: str) -> None:
        try:
            self.api.start(cid)
        except self._errors.APIError as e:
            raise StartError(_explain(e)) from None
        except Exception as e:
            raise EngineError(f"docker start: {_short(e)}") from None

    def wait(self, cid: str) -> int:
        try:
            res = self._call("wait", self.api.wait, cid)
        except self._errors.NotFound:
            return 125
        return int(res.get("StatusCode", 125))

    def wait_pending(self, cid: str, condition: str = "next-exit") -> Any:
        return None  # waits_before_start is False: the run waits after start

    def kill(self, cid: str, sig: str = "KILL") -> None:
        try:
            self.api.kill(cid, signal=sig)
        except Exception:
            pass  # already gone or not running: nothing to signal

    def resize(self, cid: str, height: int, width: int) -> None:
        try:
            self.api.resize(cid, height=height, width=width)
        except Exception:
            pass

    def remove(self, cid: str, volumes: bool = True, keep: frozenset[str] = frozenset()) -> None:
        # keep: dockerd's rm -v takes only the volumes the container's own create made
        try:
            self.api.remove_container(cid, force=True, v=volumes)
        except self._errors.NotFound:
            pass
        except self._errors.APIError as e:
            if "already in progress" in _explain(e):
                try:  # auto_remove got there first: the run is over when the container is gone
                    self.api.wait(cid, timeout=30, condition="removed")
                except Exception:  # noqa: BLE001 - gone already (404), or slow: the removal goes on
                    pass
                return
            raise EngineError(f"docker rm {cid[:12]}: {_explain(e)}") from None

    def stop(self, cid: str, timeout: int = 10) -> None:
        try:
            self.api.stop(cid, timeout=timeout)
        except Exception:  # noqa: BLE001 - gone or already stopped; remove() reports real trouble
            pass

    def logs(self, cid: str, follow: bool = True, tail: int | None = None, timestamps: bool = False,
             since: float | None = None, until: float | None = None) -> Iterator[bytes]:
        client = self.clone()
        try:
            yield from client.api.logs(cid, stream=True, follow=follow, timestamps=timestamps,
                                       tail="all" if tail is None else tail, since=since, until=until)
        except Exception:  # noqa: BLE001 - the container went away: the stream ends
            return

    def events(self, filters: dict[str, Any], since: float | None = None) -> Iterator[dict[str, Any]]:
        return self._call("events", self.api.events, decode=True, filters=filters, since=since)

    def follow(self, cid: str, run_id: str, notify: Callable[[str], None]) -> None:
        """One event stream for every followed container; reconnects by itself.

        Each die/destroy/oom of a container notifies its run: by the label
        `cnirun.id` (a workload or its sandbox helper), else by the container's
        own ID (hook-mode and foreign records use it as their run ID); after a
        reconnect every followed run is notified once, for what the gap hid.
        """
        self._followed = getattr(self, "_followed", set())
        self._followed.add(run_id)
        if getattr(self, "_stream", None) is not None:
            return
        import threading

        def stream() -> None:
            while True:
                try:
                    client = self.clone()
                    # Not filtered on the cnirun.id label: containers the hook attached and
                    # foreign ones `network connect` attached are followed by their own ID.
                    events = client.events({"type": "container", "event": ["die", "destroy", "oom"]})
                    for rid in list(self._followed):
                        notify(rid)
                    for ev in events:
                        actor = ev.get("Actor") or {}
                        rid = (actor.get("Attributes") or {}).get("cnirun.id", "") or str(actor.get("ID") or "")
                        if rid in self._followed:
                            notify(rid)
                except Exception:  # noqa: BLE001 - dockerd restarting: reconnect; callers re-check anyway
                    time.sleep(1.0)

        self._stream = threading.Thread(target=stream, daemon=True)
        self._stream.start()

    # -- what compose needs beside runs: images, volumes, health, exec, restart ------------
    def health(self, cid: str) -> str:
        info = self.inspect(cid) or {}
        state = info.get("State") or {}
        return str((state.get("Health") or {}).get("Status") or "")

    def exit_code(self, cid: str) -> int | None:
        info = self.inspect(cid) or {}
        state = info.get("State") or {}
        return None if state.get("Running") or not info else int(state.get("ExitCode", 0))

    def restart_refused(self, cid: str) -> bool:
        # dockerd starts restart-policy containers at its own start, in parallel: a `container:` joiner
        # whose netns holder is not up yet fails with this error, and dockerd never tries it again.
        info = self.inspect(cid) or {}
        state = info.get("State") or {}
        policy = ((info.get("HostConfig") or {}).get("RestartPolicy") or {}).get("Name") or "no"
        return (not state.get("Running") and policy != "no"
                and "cannot join network of a non running container" in str(state.get("Error") or ""))

    def image_config(self, image: str) -> dict[str, Any]:
        """The image's Config (Entrypoint, Cmd, Env, ...): what dockerd merges a container's argv from."""
        try:
            info = self._call("image inspect", self.api.inspect_image, image)
        except (self._errors.ImageNotFound, self._errors.NotFound) as e:
            raise ImageNotFound(image_not_found(image, _explain(e))) from None
        return dict((info or {}).get("Config") or {})

    def has_image(self, image: str) -> bool:
        try:
            self.api.inspect_image(image)
            return True
        except Exception:  # noqa: BLE001 - NotFound, or a name the engine cannot parse
            return False

    def build(self, context: str, dockerfile: str, tag: str, args: dict[str, str], target: str,
              labels: dict[str, str], no_cache: bool = False, pull: bool = False) -> None:
        try:
            for chunk in self.api.build(path=context, dockerfile=dockerfile, tag=tag, buildargs=args or None,
                                        target=target or None, labels=labels or None, nocache=no_cache,
                                        pull=pull, rm=True, decode=True):
                if chunk.get("error"):
                    raise EngineError(f"docker build {tag}: {str(chunk['error']).strip()}")
        except self._errors.APIError as e:
            raise EngineError(f"docker build {tag}: {_explain(e)}") from None
        except (OSError, TypeError) as e:
            raise EngineError(f"docker build {tag}: {e}") from None

    def pull(self, image: str, progress: Any = None) -> None:
        """dockerd pulls the image; on a terminal `progress` its progress shows as the docker CLI's.

        The stream is read to its end: a failed pull is an error message in
        it (HTTP 200), which raise_pull_error turns into an EngineError.
        """
        from .docker_pull import PullDisplay, raise_pull_error, split_image

        name, tag = split_image(image)
        show = PullDisplay(progress)
        for msg in self._call("pull", self.api.pull, name, tag=tag or None, stream=True, decode=True):
            raise_pull_error(image, msg)
            show(msg)

    def volume_create(self, name: str, driver: str, opts: dict[str, str], labels: dict[str, str]) -> None:
        self._call("volume create", self.api.create_volume, name, driver=driver or None, driver_opts=opts or None,
                   labels=labels)

    def volume_labels(self, name: str) -> dict[str, str] | None:
        try:
            return dict(self.api.inspect_volume(name).get("Labels") or {})
        except self._errors.NotFound:
            return None

    def volumes(self, label: str) -> list[str]:
        res = self._call("volume ls", self.api.volumes, filters={"label": label})
        return [v["Name"] for v in (res or {}).get("Volumes") or []]

    def volume_mounts(self, cid: str) -> dict[str, str]:
        return {m["Destination"]: m["Name"] for m in (self.inspect(cid) or {}).get("Mounts") or []
                if m.get("Type") == "volume" and m.get("Name")}

    def volume_remove(self, name: str) -> None:
        try:
            self.api.remove_volume(name, force=True)
        except self._errors.NotFound:
            pass
        except self._errors.APIError as e:
            raise EngineError(f"docker volume rm {name}: {_explain(e)}") from None

    def exec(self, cid: str, argv: list[str], user: str = "", workdir: str = "",
             env: list[str] | None = None) -> int:
        import sys

        ex = self._call("exec", self.api.exec_create, cid, argv, user=user, workdir=workdir or None,
                        environment=env or None)
        for out, err in self._call("exec", self.api.exec_start, ex["Id"], stream=True, demux=True):
            if out:
                sys.stdout.buffer.write(out)
                sys.stdout.flush()
            if err:
                sys.stderr.buffer.write(err)
                sys.stderr.flush()
        return int(self._call("exec", self.api.exec_inspect, ex["Id"]).get("ExitCode") or 0)

    def restart(self, cid: str, timeout: int = 10) -> None:
        self._call("restart", self.api.restart, cid, timeout=timeout)


def _short(e: Exception) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return text[:200]

