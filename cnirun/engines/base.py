"""The engine protocols: what cnirun needs from a container engine, and nothing more.

The lifecycle's users (teardown, the watcher, gc, ps, compose) speak to
Docker and Podman only through these verbs; each engine implements them
once (engines.docker.Docker over the Docker SDK, engines.podman.Podman over
the podman CLI, engines.dockerapi.LeanDocker over Docker's unix socket for
the run path), so no code outside engines/ branches on an engine's name.
What only one engine has (Docker's sandbox helper, Podman's --network ns:)
lives in that engine's run mode (cnirun.run), not here.

Three protocols, each a typing.Protocol to a type checker:

- Engine: what every engine and client has (teardown, gc, ps, the live
  commands, the image pull);
- FullEngine: Engine plus what the watcher and compose need, as
  engines.get() returns it (Docker, Podman);
- DockerClient: Engine plus the Engine API calls of a Docker run (Docker
  and LeanDocker), as engines.dockerapi.docker_client() returns it; its
  attach_socket gives an AttachStream.

tests/test_engines_base.py checks that every engine, client and the tests'
FakeEngine has each member of its protocols with the protocol's signature.
"""
from __future__ import annotations

from ..core.value import Value

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Iterator, Protocol

    from .spec import RunSpec
else:
    Protocol = object  # the run path never imports typing: at run time the protocols are plain base classes

# A container in one of these states may still (again) run in its netns:
# its attachments are not garbage.
LIVE_STATES = frozenset({"created", "configured", "initialized", "running", "restarting", "paused", "stopping"})


class Container(Value):
    """One container as an engine lists it."""

    _fields = ("id", "name", "image", "labels", "state")
    __match_args__ = _fields

    def __init__(self, id: str, name: str, image: str, labels: dict[str, str], state: str) -> None:
        self.id = id
        self.name = name
        self.image = image
        self.labels = labels
        self.state = state  # the engine's word: created, running, exited, ...

    @property
    def running(self) -> bool:
        return self.state == "running"


class ContainerNet(Value):
    """A container as `network connect` and `port` need it: who it is and which netns it runs in.

    `network_mode`: "none", "host", "container:<id>", "ns:<path>" (Podman)
    or the engine's own word for its networks ("bridge", "default", ...).
    `pid`: its process while it runs (0 otherwise). `state_file`: a file of
    the engine's own on this host that names the container and its process
    (engines.local reads it to confirm a cnirun.state.containers record without
    a daemon call), '' when the engine has none.
    """

    _fields = ("id", "name", "state", "pid", "network_mode", "labels", "state_file")
    __match_args__ = _fields

    def __init__(self, id: str, name: str, state: str, pid: int, network_mode: str, labels: dict[str, str],
                 state_file: str = "") -> None:
        self.id = id
        self.name = name
        self.state = state
        self.pid = pid
        self.network_mode = network_mode
        self.labels = labels
        self.state_file = state_file

    @property
    def running(self) -> bool:
        return self.state == "running" and self.pid > 0


class Engine(Protocol):
    """A container engine, or a client of one, as the attachment lifecycle's users need it.

    `state(cid)` is None when the engine has no such container: that, and
    only that, means the container is gone. Every verb is safe on a
    container that no longer exists (it does nothing) unless it says
    otherwise. Members that raise NotImplementedError here are required;
    the others are defaults an implementation inherits.
    """

    name: str  # the engine's name: "docker", "podman" (what a run's meta records)

    def state(self, cid: str) -> str | None:
        raise NotImplementedError

    def exists(self, cid: str) -> bool:
        return self.state(cid) is not None

    def is_running(self, cid: str) -> bool:
        return self.state(cid) == "running"

    def is_live(self, cid: str) -> bool:
        """Created, running, paused, restarting: its network may be in use."""
        return self.state(cid) in LIVE_STATES

    def containers(self, label: str = "") -> list[Container]:
        """Every container (any state), only those with `label` (KEY or KEY=VALUE) when given."""
        raise NotImplementedError

    def start(self, cid: str) -> None:
        raise NotImplementedError

    def stop(self, cid: str, timeout: int = 10) -> None:
        raise NotImplementedError

    def kill(self, cid: str, sig: str = "KILL") -> None:
        raise NotImplementedError

    def remove(self, cid: str, volumes: bool = True, keep: frozenset[str] = frozenset()) -> None:
        """Remove (forcibly) the container, with its anonymous volumes unless not `volumes` (compose's
        down without -v keeps them), never a volume in `keep` (those it mounts by name: Docker's rm -v
        never takes them, Podman's takes one made anonymous wherever it is mounted); EngineError only
        when the engine refuses."""
        raise NotImplementedError

    def lookup(self, ref: str) -> ContainerNet | None:
        """The container named `ref` (name, full ID or unique ID prefix); None when there is none.

        EngineError when `ref` is ambiguous or the engine cannot answer.
        """
        raise NotImplementedError

    def netns_of(self, cid: str) -> str:
        """/proc/<pid>/ns/net of the running container; EngineError when it does not run."""
        raise NotImplementedError

    def create_workload(self, spec: RunSpec, network_mode: str, labels: dict[str, str], extra_binds: list[str],
                        runtime: str | None = None, auto_remove: bool = False, hostname: str | None = None,
                        dns: list[str] | None = None, dns_search: list[str] | None = None) -> str:
        """Create (not start) a container of `spec` on the engine's network `network_mode` (none, host,
        container:ID); its ID."""
        raise NotImplementedError

    def has_image(self, image: str) -> bool:
        raise NotImplementedError

    def pull(self, image: str, progress: Any = None) -> None:
        """The engine pulls `image`; on a terminal `progress` shows it as the engine's CLI does."""
        raise NotImplementedError


class FullEngine(Engine, Protocol):
    """Engine plus what the watcher and compose need: an engine as engines.get() returns it."""

    def logs(self, cid: str, follow: bool = True, tail: int | None = None, timestamps: bool = False,
             since: float | None = None, until: float | None = None) -> Iterator[bytes]:
        """The container's output (stdout and stderr) as the engine keeps it; with follow, what comes
        next too, until the container ends. Only its last `tail` lines (None: all), each line after
        its RFC 3339 time with timestamps, only the lines written from `since` to `until` (Unix times,
        None: no bound)."""
        raise NotImplementedError

    def follow(self, cid: str, run_id: str, notify: Callable[[str], None]) -> None:
        """From now on, call notify(run_id) whenever container `cid` may have stopped or gone.

        Returns at once (the engine watches in a daemon thread); a notification
        is a hint to look again (`state`), never a verdict.
        """
        raise NotImplementedError

    def unsupported(self, spec: RunSpec) -> dict[str, str]:
        """What of `spec` this engine cannot carry out: RunSpec field -> one line why (compose warns and
        leaves it out, as compose does for what the engine lacks). Nothing by default."""
        return {}

    def health(self, cid: str) -> str:
        """healthy, unhealthy, starting, or '' when the container has no health check."""
        raise NotImplementedError

    def exit_code(self, cid: str) -> int | None:
        """The exit status of a stopped container; None while it runs or when it is gone."""
        raise NotImplementedError

    def restart_refused(self, cid: str) -> bool:
        """Whether the engine's restart policy meant to start this stopped container again and could not,
        because the container whose netns it joins was not running (and the engine does not retry).
        Nothing by default: only an engine that restarts containers itself, in no set order, needs it."""
        return False

    def build(self, context: str, dockerfile: str, tag: str, args: dict[str, str], target: str,
              labels: dict[str, str], no_cache: bool = False, pull: bool = False) -> None:
        raise NotImplementedError

    def volume_create(self, name: str, driver: str, opts: dict[str, str], labels: dict[str, str]) -> None:
        raise NotImplementedError

    def volume_labels(self, name: str) -> dict[str, str] | None:
        """The volume's labels; None when there is no such volume."""
        raise NotImplementedError

    def volumes(self, label: str) -> list[str]:
        raise NotImplementedError

    def volume_remove(self, name: str) -> None:
        raise NotImplementedError

    def volume_mounts(self, cid: str) -> dict[str, str]:
        """The container's volume mounts: destination -> volume name (nothing when it is gone)."""
        raise NotImplementedError

    def exec(self, cid: str, argv: list[str], user: str = "", workdir: str = "",
             env: list[str] | None = None) -> int:
        """Run argv in the container, its output on ours; its exit status."""
        raise NotImplementedError

    def restart(self, cid: str, timeout: int = 10) -> None:
        raise NotImplementedError


class AttachStream(Protocol):
    """A container's attached console as a DockerClient's attach_socket returns it."""

    def frames(self, tty: bool) -> Iterator[tuple[int, bytes]]:
        """(1 for stdout or 2 for stderr, bytes) as the container writes them, until it ends."""
        raise NotImplementedError

    def send(self, data: bytes) -> None:
        """Write all of `data` to the container's stdin."""
        raise NotImplementedError

    def end_input(self) -> None:
        """Our stdin ended: so does the container's (its read sees EOF)."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class DockerClient(Engine, Protocol):
    """Engine plus the Engine API calls a Docker run makes (engines.dockerapi.docker_client)."""

    # Whether wait_pending registers a wait before start (then dockerd may auto-remove a foreground
    # container: the wait still sees its exit); when not, wait_pending is None and the run waits after start.
    waits_before_start: bool

    def clone(self) -> DockerClient:
        """A second client for use from another thread."""
        raise NotImplementedError

    def inspect(self, cid: str) -> dict[str, Any] | None:
        """The container's inspect document; None when there is no such container."""
        raise NotImplementedError

    def create_sandbox(self, image: str, hostname: str, labels: dict[str, str]) -> str:
        """The helper container of sandbox mode (engines.docker.sandbox_config); its ID."""
        raise NotImplementedError

    def attach_socket(self, cid: str, stdin: bool) -> AttachStream:
        """The container's console, attached before start (stdin: ours goes to it)."""
        raise NotImplementedError

    def wait(self, cid: str) -> int:
        """The container's exit status once it stops (125 when it is gone)."""
        raise NotImplementedError

    def wait_pending(self, cid: str, condition: str = "next-exit") -> Any:
        """A wait registered now, read after start (its result() is the exit status); None when this
        client cannot register one (waits_before_start)."""
        raise NotImplementedError

    def resize(self, cid: str, height: int, width: int) -> None:
        raise NotImplementedError

    def image_config(self, image: str) -> dict[str, Any]:
        """The image's Config (Entrypoint, Cmd, Env, ...): what dockerd merges a container's argv from."""
        raise NotImplementedError
