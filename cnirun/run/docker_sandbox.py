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

    from .request import RunOutcome
    from ..state.runs import RunMeta, RunState
    from .plan import Plan
    from .signals import SignalGate


def run_docker_sandbox(p: Plan, gate: SignalGate) -> RunOutcome:
    """Helper container holding the netns; ADD; the workload joins it with --network container:.

    The helper is created and started by a thread, and ADD runs there too,
    while the main thread creates the workload (and, when the run needs the
    Docker SDK, imports it meanwhile: the helper goes over the lean client).
    """
    from ..engines.dockerapi import LeanDocker, unix_socket_path
    from ..network.lifecycle import attach
    from .request import RunOutcome
    from ..core.fsutil import identity
    from ..state.runs import RunMeta, RunState
    from .caches import cni_env

    req, spec = p.req, p.req.spec
    st = RunState.create()
    meta = RunMeta(
        id=st.id, engine="docker", image=spec.image, name=spec.name, networks=[n.name for n in p.networks],
        detached=spec.detach, remove=spec.remove, cni_env=cni_env(p.cni),
    )
    st.write_meta(meta)
    base_labels = {"cnirun.id": st.id, "cnirun.state": str(st.path.parent)}
    workload_started = False
    outcome = RunOutcome(code=EXIT_CNIRUN, run_id=st.id, detached=spec.detach)
    add_result: dict[str, Any] = {}
    sandbox_made = threading.Event()
    sock = unix_socket_path()
    docker: Any = docker_client(spec, sdk_ok=not sock)  # None: the SDK is imported below, in parallel

    def add() -> None:
        try:
            helper = LeanDocker(sock) if sock else docker.clone()
            try:
                meta.sandbox = helper.create_sandbox(spec.image, spec.hostname,
                                                     {**base_labels, "cnirun.role": "sandbox"})
                st.write_meta(meta)  # before the main thread goes on: teardown must know it
            finally:
                sandbox_made.set()
            helper.start(meta.sandbox)
            netns = helper.netns_of(meta.sandbox)
            meta.netns, meta.netns_id = netns, identity(netns)
            # Our own reference to the netns: teardown can then remove the
            # sandbox while DEL still runs in the netns (see teardown_parallel).
            # The helper may have exited since dockerd answered: its /proc/PID is gone then.
            try:
                add_result["netns_fd"] = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                raise EngineError(f"docker helper container {meta.sandbox[:12]} exited right after start") from None
            if not meta.netns_id or identity(f"/proc/self/fd/{add_result['netns_fd']}") != meta.netns_id:
                raise EngineError(f"docker helper container {meta.sandbox[:12]} exited right after start")
            add_result["atts"] = attach(p.cni, p.networks, st.id, netns, p.options)
        except BaseException as e:  # noqa: BLE001 - handed to the main thread
            add_result["error"] = e

    t = threading.Thread(target=add, daemon=True)
    try:
        t.start()
        if docker is None:
            docker = docker_client(spec)  # the SDK import runs while dockerd starts the helper
        while not sandbox_made.wait(0.05):  # short waits: a signal handler can still interrupt us
            pass
        if not meta.sandbox:
            t.join()
            raise add_result["error"]
        hostname = spec.hostname or meta.sandbox[:12]  # docker's default: the (sandbox's) short ID
        binds = host_file_binds(st)
        try:
            labels = {**spec.labels, **base_labels, "cnirun.role": "workload", "cnirun.sandbox": meta.sandbox}
            meta.workload = docker.create_workload(
                spec, f"container:{meta.sandbox}", labels, binds, auto_remove=spec.remove and spec.detach
            )
        finally:
            while t.is_alive():
                t.join(0.05)
        st.write_meta(meta)
        p.release_ports()  # ADD cached the mappings (or failed and undid itself)
        if "error" in add_result:
            raise add_result["error"]
        write_host_files(st, req, add_result["atts"], hostname)
        if not spec.name:
            publish_engine_name(docker, meta.workload, st.id)  # docker's generated name, as its DNS has it
        if spec.detach:
            from .watch import ensure_watcher

            from ..engines.docker import StartError

            try:
                docker.start(meta.workload)
            except StartError as e:
                raise StartFailed(str(e), e.exit_code()) from None  # 126/127 as docker run -d
            workload_started = True
            # Recorded only once started: a run killed before (still in "setup") is undone by
            # gc, its never-started container too; from here on the container is the user's.
            meta.phase = "running"
            st.write_meta(meta)
            st.unlock()  # the watcher owns it from here
            ensure_watcher()
            outcome.code, outcome.container = 0, meta.workload
            return outcome
        meta.phase = "running"
        st.write_meta(meta)
        outcome.container = meta.workload
        outcome.code = foreground(docker, meta.workload, spec, gate)
        workload_started = True
        return outcome
    except StartFailed as e:
        outcome.code, outcome.error = e.code, str(e)
        return outcome
    finally:
        if not (spec.detach and workload_started):
            gate.shield()
            if spec.detach:
                meta.remove = True  # never started, never handed over: `docker run -d` leaves no such container
            if t.ident is not None:
                t.join()  # an interrupted set-up: let ADD finish (or undo itself) before DEL
            if docker is None:
                docker = docker_client(spec)
            st.write_meta(meta)
            outcome.warnings += teardown_parallel(st, meta, docker, add_result.get("netns_fd"))


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
