"""Docker sandbox mode: a helper container holds the netns; the workload joins it.

The helper is a container of the user's own image, network `none`, running
the host's static busybox `sleep`; the CNI chain is ADDed to its netns, and
the workload joins it with `--network container:` and starts only after ADD
finished, so the network is up before its first instruction. A thread
creates and starts the helper and runs ADD while the main thread creates the
workload. This process also opens the helper's netns, so at the end the
helper is removed while DEL still runs in that netns (teardown_parallel).
Works with any dockerd: no runtime needs to be installed.
"""
from __future__ import annotations

import os
import threading

from ..core.errors import EngineError
from .console import StartFailed, foreground
from ..engines.dockerapi import docker_client
from .etc_files import host_file_binds, publish_engine_name, write_host_files
from .failures import EXIT_CNIRUN
TYPE_CHECKING = False  # start-up cost: see cnirun.core

if TYPE_CHECKING:
    from typing import Any

    from ..engines.base import DockerClient
    from .request import RunOutcome
    from ..state.runs import RunMeta, RunState
    from .plan import Plan
    from .signals import SignalGate


def run_docker_sandbox(p: Plan, gate: SignalGate, outcome: RunOutcome) -> RunOutcome:
    """Helper container holding the netns; ADD; the workload joins it with --network container:.

    The helper is created and started by a thread, and ADD runs there too,
    while the main thread creates the workload (and, when the run needs the
    Docker SDK, imports it meanwhile: the helper goes over the lean client).
    Whatever happens before a -d workload started, the run is undone.
    """
    from .plan import record_run

    spec = p.req.spec
    st, meta = record_run(p, "docker", detached=spec.detach)
    run = _SandboxRun(p, st, meta)
    outcome.code, outcome.run_id, outcome.detached = EXIT_CNIRUN, st.id, spec.detach
    try:
        run.thread.start()
        run.create_workload()
        run.network_up()
        if spec.detach:
            run.start_detached()
        else:
            meta.phase = "running"
            st.write_meta(meta)
        outcome.container = meta.workload
        outcome.code = 0 if spec.detach else foreground(run.client(), meta.workload, spec, gate)
        return outcome
    except StartFailed as e:
        outcome.code, outcome.error = e.code, str(e)
        return outcome
    finally:
        if not run.handed_over:
            gate.shield()
            outcome.warnings += run.undo()


class _SandboxRun:
    """One sandbox-mode run's steps and what they made, for its teardown."""

    def __init__(self, p: Plan, st: RunState, meta: RunMeta) -> None:
        from ..engines.dockerapi import unix_socket_path

        self.p, self.st, self.meta, self.spec = p, st, meta, p.req.spec
        self.base_labels = {"cnirun.id": st.id, "cnirun.state": str(st.path.parent)}
        self.sock = unix_socket_path()
        self.docker = docker_client(self.spec, sdk_ok=not self.sock)  # None: the SDK is imported in parallel
        self.added: dict[str, Any] = {}  # the helper thread's: netns_fd, atts, or error
        self.sandbox_made = threading.Event()
        self.thread = threading.Thread(target=self._add, daemon=True)
        self.handed_over = False  # a -d workload started: the container is the user's, the run the watcher's

    def client(self) -> DockerClient:
        """The run's client (the SDK's is imported on first use, while dockerd starts the helper)."""
        if self.docker is None:
            self.docker = docker_client(self.spec)
        return self.docker

    def _add(self) -> None:
        """The helper thread: create and start the helper, open its netns, ADD."""
        from ..core.fsutil import identity
        from ..engines.dockerapi import LeanDocker
        from ..network.lifecycle import attach

        p, st, meta = self.p, self.st, self.meta
        try:
            helper = LeanDocker(self.sock) if self.sock else self.client().clone()
            try:
                meta.sandbox = helper.create_sandbox(self.spec.image, self.spec.hostname,
                                                     {**self.base_labels, "cnirun.role": "sandbox"})
                st.write_meta(meta)  # before the main thread goes on: teardown must know it
            finally:
                self.sandbox_made.set()
            helper.start(meta.sandbox)
            netns = helper.netns_of(meta.sandbox)
            meta.netns, meta.netns_id = netns, identity(netns)
            # Our own reference to the netns: teardown can then remove the
            # sandbox while DEL still runs in the netns (see teardown_parallel).
            # The helper may have exited since dockerd answered: its /proc/PID is gone then.
            try:
                self.added["netns_fd"] = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                raise EngineError(f"docker helper container {meta.sandbox[:12]} exited right after start") from None
            if not meta.netns_id or identity(f"/proc/self/fd/{self.added['netns_fd']}") != meta.netns_id:
                raise EngineError(f"docker helper container {meta.sandbox[:12]} exited right after start")
            self.added["atts"] = attach(p.cni, p.networks, st.id, netns, p.options)
        except BaseException as e:  # noqa: BLE001 - handed to the main thread
            self.added["error"] = e

    def create_workload(self) -> None:
        """The workload, joined to the helper's netns, created while the helper thread runs ADD."""
        meta, spec, t = self.meta, self.spec, self.thread
        docker = self.client()
        while not self.sandbox_made.wait(0.05):  # short waits: a signal handler can still interrupt us
            pass
        if not meta.sandbox:
            t.join()
            raise self.added["error"]
        try:
            labels = {**spec.labels, **self.base_labels, "cnirun.role": "workload", "cnirun.sandbox": meta.sandbox}
            meta.workload = docker.create_workload(spec, f"container:{meta.sandbox}", labels, host_file_binds(self.st),
                                                   auto_remove=spec.remove and spec.detach)
        finally:
            while t.is_alive():
                t.join(0.05)
        self.st.write_meta(meta)

    def network_up(self) -> None:
        """ADD's outcome: its error raised, else the container's host files and its name in DNS."""
        p, st, meta = self.p, self.st, self.meta
        p.release_ports()  # ADD cached the mappings (or failed and undid itself)
        if "error" in self.added:
            raise self.added["error"]
        hostname = self.spec.hostname or meta.sandbox[:12]  # docker's default: the (sandbox's) short ID
        write_host_files(st, p.req, self.added["atts"], hostname)
        if not self.spec.name:
            publish_engine_name(self.client(), meta.workload, st.id)  # docker's generated name, as its DNS has it

    def start_detached(self) -> None:
        """Start the -d workload and hand the run to the watcher."""
        from ..engines.docker import StartError
        from .watch import ensure_watcher

        try:
            self.client().start(self.meta.workload)
        except StartError as e:
            raise StartFailed(str(e), e.exit_code()) from None  # 126/127 as docker run -d
        self.handed_over = True
        # Recorded only once started: a run killed before (still in "setup") is undone by
        # gc, its never-started container too; from here on the container is the user's.
        self.meta.phase = "running"
        self.st.write_meta(self.meta)
        self.st.unlock()  # the watcher owns it from here
        ensure_watcher()

    def undo(self) -> list[str]:
        """The teardown of a foreground run, or of a -d run that never started: ADD finished first."""
        meta = self.meta
        if self.spec.detach:
            meta.remove = True  # never started, never handed over: `docker run -d` leaves no such container
        if self.thread.ident is not None:
            self.thread.join()  # an interrupted set-up: let ADD finish (or undo itself) before DEL
        self.st.write_meta(meta)
        return teardown_parallel(self.st, meta, self.client(), self.added.get("netns_fd"))


def teardown_parallel(st: RunState, meta: RunMeta, docker: Any, netns_fd: int | None) -> list[str]:
    """DEL while the workload (and, with our netns reference, the sandbox) is removed.

    The single-container mode (docker_single) uses it too: no sandbox there,
    DEL runs in the netns pin while the workload goes.

    DEL needs the netns: normally the sandbox holds it, so the sandbox goes
    after DEL. When this process holds the netns open (netns_fd), DEL runs in
    /proc/<our pid>/fd/N (the same netns, checked by identity) and the sandbox
    can go at the same time; closing the fd afterwards frees the netns.
    """
    from ..state.runs import RunMeta
    from .teardown import teardown

    errors: list[str] = []
    removals = [meta.workload] if meta.workload and meta.remove else []
    rest = RunMeta(**{**meta.__dict__, "workload": ""})
    if netns_fd is not None and meta.sandbox:
        removals.append(meta.sandbox)
        rest.sandbox = ""
        rest.netns = f"/proc/{os.getpid()}/fd/{netns_fd}"

    def rm(cid: str) -> None:
        try:
            docker.clone().remove(cid)
        except Exception as e:  # noqa: BLE001
            errors.append(str(e))

    threads = [threading.Thread(target=rm, args=(cid,)) for cid in removals]
    for th in threads:
        th.start()
    try:
        errors += teardown(st, rest, docker, stop=False, workload=False)  # the workload is ours, above
    finally:
        for th in threads:
            th.join()
        if netns_fd is not None:
            os.close(netns_fd)
    return errors
