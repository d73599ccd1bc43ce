"""cnirun.core.lock: the one flock helper and the CNI chain locks (#13).

Unit tests on lock files in tmp, plus chains run through the real runtime
with the recording noop plugin sleeping, to show which chains wait for which.
"""
from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from cnirun.core import lock
from cnirun.core.errors import LockError
from cnirun.core.lock import chain_lock, flock, host_lock, is_held, link_lock_path, network_lock_path

REPO = Path(__file__).resolve().parent.parent


def _holder(path: Path, shared: bool = False) -> subprocess.Popen[str]:
    """Another process holding `path` until killed; returns once it holds it."""
    code = (
        "import sys, time; from cnirun.core.lock import flock; "
        f"flock({str(path)!r}, shared={shared!r}); print('held', flush=True); time.sleep(600)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=REPO,
                            env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def _take_in_thread(path: Path, **kw: object) -> tuple[threading.Thread, dict[str, object]]:
    out: dict[str, object] = {}

    def run() -> None:
        t0 = time.monotonic()
        try:
            out["fd"] = flock(str(path), **kw)  # type: ignore[arg-type]
        except LockError as e:
            out["error"] = e
        out["after"] = time.monotonic() - t0

    t = threading.Thread(target=run)
    t.start()
    return t, out


def test_exclusive_and_shared(tmp_path: Path) -> None:
    path = tmp_path / "d" / "l.lock"  # the directory is created
    a = flock(str(path), shared=True)
    b = flock(str(path), shared=True)  # shared holders coexist
    assert a is not None and b is not None
    assert flock(str(path), blocking=False) is None  # no exclusive beside them
    os.close(a)
    os.close(b)
    c = flock(str(path), blocking=False)
    assert c is not None and flock(str(path), blocking=False, shared=True) is None
    os.close(c)


def test_wait_times_out_with_lock_error_naming_what(tmp_path: Path) -> None:
    path = tmp_path / "l.lock"
    fd = flock(str(path))
    try:
        t0 = time.monotonic()
        with pytest.raises(LockError, match="the thing .* more than 0.3 s"):
            flock(str(path), wait=0.3, what="the thing")
        assert 0.3 <= time.monotonic() - t0 < 2.0
    finally:
        os.close(fd)  # type: ignore[arg-type]
    # The waiter that gave up lets go as soon as it gets the lock: it is free again within moments. (Its
    # helper may still be queued when a probe finds the lock free, and take it right after: so try to
    # take it until that works, rather than trusting one probe.)
    deadline = time.monotonic() + 2
    fd2 = flock(str(path), blocking=False)
    while fd2 is None and time.monotonic() < deadline:
        time.sleep(0.01)
        fd2 = flock(str(path), blocking=False)
    assert fd2 is not None, "the lock stayed held after its only waiter gave up"
    os.close(fd2)


def test_waiter_wakes_when_released_not_on_a_poll_tick(tmp_path: Path) -> None:
    """A blocking wait with a timeout sleeps in the kernel: it gets the lock right when it is released."""
    path = tmp_path / "l.lock"
    fd = flock(str(path))
    t, out = _take_in_thread(path, wait=30.0)
    time.sleep(0.5)  # the test: half a second later the waiter still waits
    assert t.is_alive() and "fd" not in out
    released = time.monotonic()
    os.close(fd)  # type: ignore[arg-type]
    t.join(5)
    assert isinstance(out.get("fd"), int), out
    woke_after = float(out["after"]) - 0.5  # type: ignore[arg-type]
    assert woke_after < 0.2, f"took {woke_after:.3f} s after the release"
    assert time.monotonic() - released < 1.0
    os.close(out["fd"])  # type: ignore[arg-type]


def test_sigkilled_holder_never_blocks_others(tmp_path: Path) -> None:
    path = tmp_path / "cni.lock"
    holder = _holder(path)
    try:
        assert is_held(str(path))
        with pytest.raises(LockError):
            flock(str(path), wait=0.2)
        t, out = _take_in_thread(path, wait=30.0)
        time.sleep(0.2)  # the test: the holder dies while the thread waits (a thread that has not begun waiting yet
        holder.send_signal(signal.SIGKILL)  # would only pass more easily)
        holder.wait(10)
        t.join(5)
        assert isinstance(out.get("fd"), int), out  # the waiter got it once the holder died
        os.close(out["fd"])  # type: ignore[arg-type]
    finally:
        holder.kill()
        holder.wait()
    # and a later taker finds it free at once
    with host_lock(str(path), wait=0.5):
        assert is_held(str(path))


def test_sigkilled_chain_holder_never_blocks_gc_or_other_chains(tmp_path: Path) -> None:
    host = str(tmp_path / "cni.lock")
    code = (
        "import time; from cnirun.core.lock import chain_lock; "
        f"l = chain_lock('t197k', {host!r}, new_links=('t197kbr',)); l.__enter__(); print('held', flush=True); "
        "time.sleep(600)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        with pytest.raises(LockError):
            with chain_lock("t197k", host, exclusive=True, wait=0.2):
                pass
        with pytest.raises(LockError):
            with chain_lock("t197k", host, links=("t197kbr",), wait=0.2):
                pass
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        t0 = time.monotonic()
        with chain_lock("t197k", host, exclusive=True, wait=5):
            pass
        assert time.monotonic() - t0 < 1.0
    finally:
        proc.kill()
        proc.wait()


def test_chain_lock_levels(tmp_path: Path) -> None:
    """"lo" plays an existing bridge (its lock is a file of the test's own lock dir)."""
    host = str(tmp_path / "cni.lock")
    with chain_lock("t197a", host, links=("lo",)):
        # another network: never waits
        with chain_lock("t197b", host, exclusive=True, wait=0.2):
            pass
        # the same network and bridge, shared: runs beside it
        with chain_lock("t197a", host, links=("lo",), wait=0.2):
            pass
        # GC of the same network waits
        with pytest.raises(LockError):
            with chain_lock("t197a", host, exclusive=True, wait=0.2):
                pass
        # a chain that would create the bridge waits (it is in use: someone made it)
        with pytest.raises(LockError):
            with chain_lock("t197c", host, new_links=("lo",), wait=0.2):
                pass
        # the chains' setup (host lock, exclusively) waits for running chains
        with pytest.raises(LockError):
            with host_lock(host, wait=0.2):
                pass
    assert os.path.exists(network_lock_path("t197a", host)) and os.path.exists(link_lock_path("lo", host))
    # nothing is held once the blocks are left; a waiter that gave up (the GC and setup attempts above)
    # is still queued in the kernel: it gets the lock the moment we leave and drops it at once
    for p in (host, network_lock_path("t197a", host), link_lock_path("lo", host)):
        deadline = time.monotonic() + 10.0  # a loaded machine may take seconds to run the abandoned waiter
        while is_held(p) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not is_held(p)


def test_a_bridge_gone_while_the_chain_waited_is_held_exclusively(tmp_path: Path) -> None:
    """A chain planned with an existing bridge (held shared) whose bridge is gone once it has its locks
    (a -f network's last container took it) will create it again: it holds the bridge's lock exclusively,
    so a second such chain waits instead of racing it to make the bridge and its gateway address."""
    host = str(tmp_path / "cni.lock")
    with chain_lock("t197a", host, links=("t197gone",)):
        with pytest.raises(LockError):
            with chain_lock("t197a", host, links=("t197gone",), wait=0.2):
                pass
        with chain_lock("t197a", host, links=("lo",), wait=0.2):  # an existing bridge stays shared
            pass


def test_chain_lock_gives_up_as_a_whole(tmp_path: Path) -> None:
    """A chain lock that times out on its last lock drops the ones it had taken."""
    host = str(tmp_path / "cni.lock")
    fd = flock(link_lock_path("t197br", host))
    try:
        with pytest.raises(LockError):
            with chain_lock("t197a", host, links=("t197br",), wait=0.2):
                pass
        assert not is_held(host) and not is_held(network_lock_path("t197a", host))
    finally:
        os.close(fd)  # type: ignore[arg-type]


def _fork_idle() -> tuple[int, int]:
    """A child forked without exec (as a detached DEL, a netns helper, another thread's fork): it holds
    a copy of every descriptor of this process until its pipe's write end (returned with its pid) closes."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child only waits
        try:
            os.close(w)
            os.read(r, 1)
        finally:
            os._exit(0)
    os.close(r)
    return pid, w


def _opened_here(path: str) -> bool:
    """Whether a descriptor of this process is open on `path`."""
    for n in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{n}") == path:
                return True
        except OSError:
            pass  # closed meanwhile (the listing's own descriptor among them)
    return False


def _end_idle(child: tuple[int, int]) -> None:
    pid, w = child
    os.close(w)
    os.waitpid(pid, 0)


def test_a_waiter_that_gave_up_lets_go_although_a_forked_child_holds_its_descriptor(tmp_path: Path) -> None:
    """A taker that gave up leaves a waiter queued on a duplicate of its descriptor; a child forked
    meanwhile holds a copy of that duplicate. Once the holder lets go, the waiter takes the lock and lets
    it go at once: the lock is free while that child still lives, not held until the child ends."""
    path = str(tmp_path / "l.lock")
    holder = flock(path)
    assert holder is not None
    with pytest.raises(LockError):
        flock(path, wait=0.2)  # gives up: its waiter stays queued in the kernel
    child = _fork_idle()
    try:
        fcntl.flock(holder, fcntl.LOCK_UN)  # the holder lets go (the child's copy of its descriptor too)
        os.close(holder)
        deadline = time.monotonic() + 10.0  # the waiter closes its duplicate once it had the lock: its turn is over
        while _opened_here(path) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not _opened_here(path)
        assert not is_held(path), "the abandoned waiter's lock lives on in the forked child"
    finally:
        _end_idle(child)


def test_leaving_a_lock_block_lets_go_although_a_forked_child_holds_its_descriptor(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """host_lock, chain_lock and container_locked let go of their locks when their block is left, also
    while a child forked inside the block (which holds copies of their descriptors) lives on."""
    monkeypatch.setenv("CNIRUN_STATE_DIR", str(tmp_path / "state"))
    with lock.container_locked("c24f") as held:
        held.remove_file = False
        child = _fork_idle()
    try:
        assert not is_held(str(tmp_path / "state" / "locks" / "c24f.lock"))
    finally:
        _end_idle(child)
    host = str(tmp_path / "cni.lock")
    with host_lock(host):
        child = _fork_idle()
    try:
        assert not is_held(host)
    finally:
        _end_idle(child)
    with chain_lock("t24f", host, new_links=("t24fbr",)):
        child = _fork_idle()
    try:
        assert not any(is_held(p) for p in (host, network_lock_path("t24f", host), link_lock_path("t24fbr", host)))
    finally:
        _end_idle(child)


def test_lock_api_the_others_call_is_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CNIRUN_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("CNIRUN_LOCK_FILE", str(tmp_path / "cni.lock"))
    assert lock.lock_file() == str(tmp_path / "cni.lock")
    with host_lock():
        assert is_held(str(tmp_path / "cni.lock"))
    fd = lock.lock_container("c197")
    assert fd is not None and lock.lock_container("c197", blocking=False) is None
    lock.unlock_container(fd, "c197", remove=True)
    assert not (tmp_path / "state" / "locks" / "c197.lock").exists()


def test_container_locked_holds_for_the_block_and_its_file_goes_unless_kept(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """container_locked: held inside the block (a second, non-blocking taker is told so at once and
    touches nothing), released after it, also when the block raises; the lock file goes with the lock,
    unless the block keeps it (an attach); a busy lock past `wait` is a LockError naming the container;
    in another state dir when asked (a run's)."""
    from cnirun.core.errors import LockError

    monkeypatch.setenv("CNIRUN_STATE_DIR", str(tmp_path / "state"))
    path = tmp_path / "state" / "locks" / "c24b.lock"
    with lock.container_locked("c24b") as held:
        assert held.held and is_held(str(path))
        with lock.container_locked("c24b", blocking=False) as other:
            assert not other.held
        with pytest.raises(LockError, match="c24b"):
            with lock.container_locked("c24b", wait=0.2):
                pass
        assert is_held(str(path))  # the busy takers left the holder's lock alone
    assert not path.exists()
    with pytest.raises(RuntimeError):
        with lock.container_locked("c24b") as held:
            raise RuntimeError("boom")
    assert not path.exists() and not held.held
    with lock.container_locked("c24b") as held:
        held.remove_file = False
    assert path.exists() and not is_held(str(path))
    elsewhere = tmp_path / "run-state" / "locks" / "c24b.lock"  # a run's state dir, not this shell's
    with lock.container_locked("c24b", state_dir=str(tmp_path / "run-state")):
        assert is_held(str(elsewhere)) and not is_held(str(path))
    assert not elsewhere.exists()


def test_a_chain_waiting_on_a_removed_lock_file_takes_the_new_one(tmp_path: Path) -> None:
    """remove_lock_file unlinks a network's lock file while it holds it; a chain that opened the file
    before and gets it after must move to the new file: two chains never hold "the" lock at once."""
    host = str(tmp_path / "cni.lock")
    path = network_lock_path("ta-race", host)
    os.makedirs(os.path.dirname(path))
    remover = os.open(path, os.O_RDWR | os.O_CREAT)
    fcntl.flock(remover, fcntl.LOCK_EX)  # what remove_lock_file holds while it unlinks
    entered, leave = threading.Event(), threading.Event()

    def chain() -> None:
        with chain_lock("ta-race", host, wait=10):
            entered.set()
            leave.wait(10)

    t = threading.Thread(target=chain)
    t.start()
    try:
        time.sleep(0.3)  # the chain has opened the file and waits on it
        assert not entered.is_set()
        os.unlink(path)
        os.close(remover)
        assert entered.wait(5)
        assert is_held(path)  # the chain holds the file at the path, not the unlinked one
        with pytest.raises(LockError):
            with chain_lock("ta-race", host, exclusive=True, wait=0.3):
                pass
    finally:
        leave.set()
        t.join(10)


def test_remove_stale_locks_removes_only_unheld_files_of_gone_networks_and_bridges(tmp_path: Path) -> None:
    """Lock files of networks not in the set and of bridges that do not exist go, unless held;
    those of kept networks, existing links and chains.py's markers stay."""
    host = str(tmp_path / "cni.lock")
    for net, link in (("ta-gone", "ctagone"), ("ta-kept", "lo")):
        with chain_lock(net, host, links=(link,)):
            pass
    marker = os.path.join(lock.lock_dir(host), "chains.iptables.portmap.13")
    Path(marker).write_text("")
    holder = _holder(Path(network_lock_path("ta-held", host)))
    try:
        removed = lock.remove_stale_locks({"ta-kept"}, host)
        assert sorted(removed) == ["link-ctagone.lock", "net-ta-gone.lock"]
        left = sorted(os.listdir(lock.lock_dir(host)))
        assert left == ["chains.iptables.portmap.13", "link-lo.lock", "net-ta-held.lock", "net-ta-kept.lock"]
    finally:
        holder.kill()
        holder.wait()
    assert lock.remove_stale_locks({"ta-kept"}, host) == ["net-ta-held.lock"]  # free now


def test_gc_removes_the_lock_files_of_a_network_that_is_gone(tmp_path: Path) -> None:
    """`cnirun gc` after a network's conflist was deleted: its lock file and its bridge's go."""
    from cnirun.cni.runtime_conf import RuntimeConf

    cni, nets = _noop_world(tmp_path, ["ta-g1", "ta-g2"], sleep=0)
    ns = tmp_path / "ns"
    ns.write_text("")
    for name in nets:
        cni.add(nets[name], RuntimeConf("cta" + name, netns=str(ns)))  # type: ignore[attr-defined]
        cni.delete(name, RuntimeConf("cta" + name, netns=str(ns)))  # type: ignore[attr-defined]
    with chain_lock("ta-g1", str(tmp_path / "cni.lock"), links=("ctag1br",)):
        pass
    (tmp_path / "net.d" / "ta-g1.conflist").unlink()
    d = Path(lock.lock_dir(str(tmp_path / "cni.lock")))
    assert {"net-ta-g1.lock", "net-ta-g2.lock", "link-ctag1br.lock"} <= set(os.listdir(d))
    env = dict(os.environ, NETCONFPATH=str(tmp_path / "net.d"), CNI_CACHE_DIR=str(tmp_path / "cache"),
               CNIRUN_STATE_DIR=str(tmp_path / "state"), CNIRUN_LOCK_FILE=str(tmp_path / "cni.lock"),
               CNI_PATH=str(tmp_path / "plugins"), PYTHONPATH=str(REPO))
    gc = subprocess.run([sys.executable, "-m", "cnirun.cli.main", "gc"], env=env, capture_output=True, text=True,
                        timeout=60, cwd=REPO)
    assert gc.returncode == 0, gc.stderr
    left = set(os.listdir(d))
    assert "net-ta-g2.lock" in left
    assert not {"net-ta-g1.lock", "link-ctag1br.lock"} & left, left


# -- through the runtime: which chains wait for which ------------------------------------------
def _noop_world(tmp_path: Path, names: list[str], sleep: float) -> tuple[object, dict[str, object]]:
    from cnirun.plugins import install_plugin_script
    from cnirun.cni.runtime import CNI

    plugdir = tmp_path / "plugins"
    plugdir.mkdir()
    install_plugin_script(plugdir, "noop", "cnirun.plugins.noop")
    debug = tmp_path / "noop.json"
    debug.write_text(json.dumps({"sleep": sleep, "reportResult": {"cniVersion": "1.0.0"}}))
    netconf = tmp_path / "net.d"
    netconf.mkdir()
    for n in names:
        (netconf / f"{n}.conflist").write_text(json.dumps(
            {"cniVersion": "1.0.0", "name": n, "plugins": [{"type": "noop", "debugFile": str(debug)}]}))
    cni = CNI(plugin_path=[str(plugdir)], netconf_path=str(netconf), cache_dir=str(tmp_path / "cache"),
              lock_file=str(tmp_path / "cni.lock"))
    return cni, {n: cni.network(n) for n in names}


def test_chains_on_different_and_same_networks_run_in_parallel(tmp_path: Path) -> None:
    from cnirun.cni.runtime_conf import RuntimeConf

    cni, nets = _noop_world(tmp_path, ["t197p1", "t197p2"], sleep=1.0)
    ns = tmp_path / "ns"
    ns.write_text("")
    jobs = [("t197p1", "c1"), ("t197p2", "c2"), ("t197p1", "c3")]
    errors: list[BaseException] = []

    def add(net: str, cid: str) -> None:
        try:
            cni.add(nets[net], RuntimeConf(cid, netns=str(ns)))  # type: ignore[attr-defined]
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=add, args=j) for j in jobs]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    took = time.monotonic() - t0
    assert errors == []
    assert took < 2.5, f"three 1 s chains took {took:.2f} s: they waited for each other"
    # GC of t197p1 takes its network exclusively: a DEL on t197p2 does not wait for it
    gc_done: list[float] = []

    def gc() -> None:
        cni.gc(nets["t197p1"], [])  # type: ignore[attr-defined]
        gc_done.append(time.monotonic())

    t0 = time.monotonic()
    g = threading.Thread(target=gc)
    g.start()
    time.sleep(0.2)  # the test: the other network's DEL runs while this gc is under way
    cni.delete("t197p2", RuntimeConf("c2"))  # type: ignore[attr-defined]
    other_done = time.monotonic()
    g.join(30)
    assert gc_done and other_done < gc_done[0], "the DEL on t197p2 waited for t197p1's GC"
    assert not list((tmp_path / "cache" / "results").glob("*"))


def test_add_retries_once_only_when_shared_chains_were_flushed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """"Chain already exists" with our markers in place: the chains were flushed and two plugins
    raced to recreate them; ADD makes them again and retries once. Any other error: no retry."""
    from cnirun.cni import chains
    from cnirun.core.errors import PluginError
    from cnirun.cni.runtime_conf import RuntimeConf

    cni, nets = _noop_world(tmp_path, ["t197r"], sleep=0)
    debug = tmp_path / "noop.json"
    ns = tmp_path / "ns"
    ns.write_text("")
    marker = Path(chains._marker("iptables.portmap.13", cni.lock_file))  # type: ignore[attr-defined]
    monkeypatch.setattr(chains, "needs", lambda _net: ["iptables.portmap.13"])
    made: list[str] = []
    monkeypatch.setattr(chains, "_create", lambda name: made.append(name) or True)

    def adds() -> int:
        log = tmp_path / "noop.json.log"
        return sum(json.loads(ln)["command"] == "ADD" for ln in log.read_text().splitlines()) if log.exists() else 0

    for message, retried in (("container veth name provided (eth0) already exists", False),
                             ("iptables v1.8.9 (nf_tables): Chain already exists.", True)):
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text("")
        made.clear()
        debug.write_text(json.dumps({"commands": {"ADD": {"reportError": message, "reportErrorCode": 999}}}))
        before = adds()
        with pytest.raises(PluginError, match="already exists"):
            cni.add(nets["t197r"], RuntimeConf("c197r", netns=str(ns)))  # type: ignore[attr-defined]
        assert adds() - before == (2 if retried else 1), message
        assert made == (["iptables.portmap.13"] if retried else [])  # the chains were made again before the retry
    assert not list((tmp_path / "cache" / "results").glob("*"))
