"""cnirun.state.containers: the live commands (connect, port, update) find a container from their own record,
and only while it is verifiably the same container under the same name; on every doubt, the engine.

Real dockerd and plugins. Address plan of this file: 10.189.N.0/24 (the World's network t3-189-N, bridge
cnr189xN), containers t189-N-*, no host ports. The fast path is seen in CNIRUN_TRACE's output: an engine call
is traced, a record's use is not.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from _parallel import run_pid
from conftest import World, _make_world, first_address, needs_docker, needs_plugins, needs_root, world_fixture

BANDWIDTH = [{"type": "bandwidth", "capabilities": {"bandwidth": True}}]


lworld = world_fixture(_make_world, 189, "live", extra=BANDWIDTH)


def ok(p: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert p.returncode == 0, f"exit {p.returncode}: {p.stderr}"
    return p


def traced(w: World, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*_cli(), *args], env={**w.env, "CNIRUN_TRACE": "1"}, capture_output=True, text=True,
                          timeout=60)


def _cli() -> list[str]:
    # Not `python -m` (runpy imports contextlib): the launcher's own two lines.
    return [sys.executable, "-c", "import sys; from cnirun.cli.main import main; sys.exit(main(sys.argv[1:]))"]


def asked_engine(p: subprocess.CompletedProcess[str]) -> bool:
    return "engine call" in p.stderr


def docker(*args: str) -> str:
    p = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    return p.stdout.strip()


def eth0(name: str) -> str:
    p = subprocess.run(["docker", "exec", name, "ip", "-4", "addr", "show", "eth0"], capture_output=True, text=True)
    return first_address(p.stdout) if p.returncode == 0 else ""


def refs(w: World) -> list[str]:
    d = w.state_dir / "containers"
    return sorted(n for n in os.listdir(d) if n.startswith(".ref-")) if d.is_dir() else []


@needs_root
@needs_plugins
@needs_docker
def test_the_record_is_used_only_while_the_same_container_has_the_name(lworld: World) -> None:
    w = lworld
    name, other = f"t189-{w.n}-a", f"t189-{w.n}-b"
    try:
        _record_checks(w, name, other)
    finally:
        subprocess.run(["docker", "rm", "-f", name, other], capture_output=True)


def _record_checks(w: World, name: str, other: str) -> None:
    first = docker("run", "-d", "--name", name, "--network", "none", "busybox", "sleep", "300")
    ok(w.cnirun("network", "connect", w.net, name))
    address = eth0(name)
    assert address.startswith(f"10.189.{w.n}.")
    record = json.loads((w.state_dir / "containers" / first / "target.json").read_text())
    assert (record["id"], record["name"], record["engine"]) == (first, name, "docker")
    assert refs(w) == sorted([f".ref-docker-{first}", f".ref-docker-{name}"])

    # The record, by name and by full ID: no engine call; the change is made all the same.
    p = ok(traced(w, "update", name, "--ingress-rate", "10mbit"))
    assert not asked_engine(p) and "ingress 10mbit" in p.stdout
    p = ok(traced(w, "update", first, "--ingress-rate", "20mbit"))
    assert not asked_engine(p) and "ingress 20mbit" in p.stdout
    assert "rate 20Mbit" in subprocess.run(["tc", "qdisc", "show"], capture_output=True, text=True).stdout
    # A prefix is the engine's to resolve.
    assert asked_engine(ok(traced(w, "port", "ls", first[:12])))

    # What the fast path imports: none of what the engine client, pathlib or subprocess would pull in.
    p = subprocess.run([sys.executable, "-X", "importtime", *_cli()[1:], "update", name, "--ingress-rate", "30mbit"],
                       env=w.env, capture_output=True, text=True, timeout=60)
    ok(p)
    loaded = {ln.rsplit("|", 1)[1].strip() for ln in p.stderr.splitlines() if ln.startswith("import time:")}
    assert "cnirun.state.containers" in loaded
    assert not loaded & {"pathlib", "subprocess", "socket", "re", "enum", "typing", "json", "contextlib", "shutil",
                         "ipaddress", "cnirun.cli.output", "cnirun.engines.dockerapi"}

    # Renamed while running, and a new container under the old name: the name is the new one's.
    docker("rename", name, other)
    p = traced(w, "port", "ls", name)
    assert p.returncode == 1 and "no such container" in p.stderr and asked_engine(p)
    second = docker("run", "-d", "--name", name, "--network", "none", "busybox", "sleep", "300")
    p = traced(w, "network", "connect", w.net, name)
    ok(p)
    assert asked_engine(p)
    assert eth0(name) and eth0(name) != address and eth0(other) == address  # the new one got it; the old kept its own
    assert json.loads((w.state_dir / "containers" / second / "target.json").read_text())["id"] == second
    assert not asked_engine(ok(traced(w, "update", name, "--ingress-rate", "5mbit")))
    # The old one under its new name: found through the engine once, then from its record again.
    assert asked_engine(ok(traced(w, "update", other, "--egress-rate", "5mbit")))
    assert not asked_engine(ok(traced(w, "update", other, "--egress-rate", "6mbit")))

    # Paused, then stopped: never from the record; the engine's answer is the error.
    docker("pause", other)
    p = traced(w, "update", other, "--ingress-rate", "1mbit")
    assert p.returncode == 1 and "not running (paused)" in p.stderr and asked_engine(p)
    docker("unpause", other)
    docker("kill", other)
    p = traced(w, "update", other, "--ingress-rate", "1mbit")
    assert p.returncode == 1 and "not running" in p.stderr and asked_engine(p)

    # Gone and made again under the same name: the new container is not connected to anything.
    docker("rm", "-f", name)
    docker("run", "-d", "--name", name, "--network", "none", "busybox", "sleep", "300")
    p = traced(w, "port", "ls", name)
    ok(p)
    assert asked_engine(p) and p.stdout == ""
    p = traced(w, "update", name, "--ingress-rate", "1mbit")
    assert p.returncode == 1 and "no network with the bandwidth plugin" in p.stderr

    # Removed: the watcher tears them down and their index entries go with their state dirs.
    docker("rm", "-f", name, other)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and refs(w):
        time.sleep(0.25)
    assert refs(w) == []
    w.assert_clean(within=10)


def test_recall_refuses_what_it_cannot_verify(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No engine here: index entries and records that are odd, stale or not this process's say 'ask the engine'."""
    from cnirun.state import containers as live_record
    from cnirun.engines.base import ContainerNet

    monkeypatch.setenv("CNIRUN_STATE_DIR", str(tmp_path))
    monkeypatch.delenv("CNIRUN_ENGINE", raising=False)
    root = tmp_path / "containers"
    (root / "run1").mkdir(parents=True)
    (root / "run1" / "meta.json").write_text(json.dumps({"id": "run1", "engine": "docker"}))
    me = os.getpid()
    from cnirun.core.process import process_start

    start = process_start(me)
    assert start == Path(f"/proc/{me}/stat").read_text().rsplit(")", 1)[1].split()[19]
    cid = "f" * 64
    for ref in ("", "../x", "a/b", ".ref-x", "-x", "x" * 300):
        assert live_record.recall(ref) is None
    # remember() writes nothing for a container that does not run, or whose dir is not under runs_dir.
    live_record.remember(str(root / "run1"), "docker", ContainerNet(cid, "web", "exited", 0, "none", {}))
    live_record.remember(str(tmp_path / "elsewhere"), "docker", ContainerNet(cid, "web", "running", me, "none", {}))
    assert sorted(os.listdir(root)) == ["run1"]
    # This process is no container (its cgroup does not name cid), and a file Docker did not write cannot say so.
    state_file = tmp_path / "config.v2.json"
    state_file.write_text(json.dumps({"ID": cid, "Name": "/web", "State": {"Running": True, "Pid": me}}))
    c = ContainerNet(cid, "web", "running", me, "none", {"cnirun.id": "x", "other": "y"}, str(state_file))
    live_record.remember(str(root / "run1"), "docker", c)
    assert sorted(os.listdir(root)) == [f".ref-docker-{cid}", ".ref-docker-web", "run1"]
    assert sorted(os.listdir(root / "run1")) == ["meta.json", "target.json"]
    rec = json.loads((root / "run1" / "target.json").read_text())
    assert rec["labels"] == {"cnirun.id": "x"} and rec["start"] == start and rec["pid"] == me
    assert live_record.recall("web") is None and live_record.recall(cid) is None
    monkeypatch.setattr(live_record, "_in_cgroup", lambda pid, cid: True)  # as if it were the container's process
    found = live_record.recall("web")
    assert found is not None and found[0] == "docker" and found[1].id == cid and found[1].running
    assert live_record.recall(cid) is not None
    for doc in ({"ID": cid, "Name": "/web2", "State": {"Running": True, "Pid": me}},  # renamed
                {"ID": cid, "Name": "/web", "State": {"Running": True, "Paused": True, "Pid": me}},
                {"ID": cid, "Name": "/web", "State": {"Running": False, "Pid": 0}},
                {"ID": cid, "Name": "/web", "State": {"Running": True, "Pid": me + 1}}):
        state_file.write_text(json.dumps(doc))
        assert live_record.recall("web") is None, doc
    state_file.write_text(json.dumps({"ID": cid, "Name": "/web", "State": {"Running": True, "Pid": me}}))
    assert live_record.recall("web") is not None
    # Another engine asked first, another start time (pid reused), another daemon: ask the engine.
    monkeypatch.setenv("CNIRUN_ENGINE", "podman")
    assert live_record.recall("web") is None
    monkeypatch.delenv("CNIRUN_ENGINE")
    monkeypatch.setenv("DOCKER_HOST", "unix:///elsewhere.sock")
    assert live_record.recall("web") is None
    monkeypatch.delenv("DOCKER_HOST")
    (root / "run1" / "target.json").write_text(json.dumps({**rec, "start": "1"}))
    assert live_record.recall("web") is None
    (root / "run1" / "target.json").write_text("{not json")
    assert live_record.recall("web") is None
    (root / "run1" / "target.json").write_text(json.dumps(rec))
    assert live_record.recall("web") is not None
    # forget(): this dir's entries go (an older name's too), and entries of no dir at all; the entry of a name
    # another state dir has taken since stays.
    (root / "run2").mkdir()
    (root / ".ref-docker-web").write_text("run2")
    (root / ".ref-docker-oldname").write_text("run1")
    (root / ".ref-docker-gone").write_text("run3")
    live_record.forget(str(root / "run1"))
    assert sorted(os.listdir(root)) == [".ref-docker-web", "run1", "run2"]


def test_removing_a_run_state_drops_its_index_entries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cnirun.state import containers as live_record
    from cnirun.engines.base import ContainerNet
    from cnirun.state.runs import RunMeta, RunState

    monkeypatch.setenv("CNIRUN_STATE_DIR", str(tmp_path))
    # A dir a teardown is removing (no meta.json left): the record is not written into it.
    gone = tmp_path / "containers" / "gone"
    gone.mkdir(parents=True)
    live_record.remember(str(gone), "docker", ContainerNet("d" * 64, "x", "running", os.getpid(), "none", {}))
    assert not gone.exists()
    st = RunState.create()
    st.write_meta(RunMeta(id=st.id, engine="docker"))
    live_record.remember(str(st.path), "docker", ContainerNet("e" * 64, "db", "running", os.getpid(), "none", {}))
    assert (st.path / "target.json").exists()
    st.remove()
    assert os.listdir(st.path.parent) == []


# -- published ports change without interrupting the others ---------------------------------------
# Address plan of these tests: 10.214.N.0/24 (network te-N, bridge cteN), containers te-N-*, host ports
# 41000-41499 on 127.0.0.1 (test_network_portlock's are 41500-41999).
pworld = world_fixture(_make_world, 214, "ports", net="te-{n}", bridge="cte{n}", subnet="10.214.{n}.0/24",
                       name_prefix="te-{n}-", extra=BANDWIDTH)


def _page(port: int) -> str:
    """What 127.0.0.1:`port` serves ('' when nothing answers)."""
    p = subprocess.run(["wget", "-qO-", "-T", "3", f"http://127.0.0.1:{port}/"], capture_output=True, text=True)
    return p.stdout.strip()


def _base(w: World) -> int:
    """The first of ten host ports of the test, in 41000-41499: the World's own (its n, fewer than 50 Worlds
    share this file's counter) and salted per run (the old code's refused connections can leave a client
    socket in TIME-WAIT on a port for a minute)."""
    return 41000 + 10 * ((run_pid() + w.n) % 50)


def _httpd(name: str) -> list[str]:
    return ["sh", "-c", f"mkdir -p /www && echo hello-{name} > /www/index.html && exec httpd -f -p 80 -h /www"]


class _Hammer:
    """A client connecting to 127.0.0.1:`port` over and over in a thread: counts answers and refusals."""

    def __init__(self, port: int) -> None:
        import threading

        self.port, self.answered, self.refused, self.errors = port, 0, 0, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        import socket

        while not self._stop.is_set():
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=3) as s:
                    s.sendall(b"GET / HTTP/1.0\r\n\r\n")
                    if b"hello-" in s.recv(4096) + s.recv(4096):
                        self.answered += 1
            except ConnectionRefusedError:
                self.refused += 1
            except OSError as e:
                self.errors.append(repr(e))

    def __enter__(self) -> "_Hammer":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


@needs_root
@needs_plugins
@needs_docker
def test_port_add_and_rm_never_refuse_an_untouched_port(pworld: World) -> None:
    """A client hammering a published port sees no refused connection while other ports are added and removed."""
    w = pworld
    name, base = f"te-{w.n}-web", _base(w)
    ok(w.cnirun("run", "-d", "--mode", "sandbox", "--name", name, "-p", f"127.0.0.1:{base}:80", "busybox",
                *_httpd(name)))
    try:
        deadline = time.monotonic() + 20
        while _page(base) != f"hello-{name}":
            assert time.monotonic() < deadline, "the published port never answered"
            time.sleep(0.2)
        with _Hammer(base) as hammer:
            for i in range(1, 4):
                ok(w.cnirun("port", "add", name, f"127.0.0.1:{base + i}:80"))
            for i in range(1, 4):
                ok(w.cnirun("port", "rm", name, f"127.0.0.1:{base + i}:80"))
        assert hammer.refused == 0, f"{hammer.refused} of {hammer.refused + hammer.answered} connections refused"
        assert hammer.answered > 50 and not hammer.errors, (hammer.answered, hammer.errors[:3])
        assert ok(w.cnirun("port", name)).stdout == f"80/tcp -> 127.0.0.1:{base}\n"
        assert _swap_rules(w) == []  # only the container's own portmap chain is left
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)
    w.assert_clean(within=20.0)


def _slow_portmap(w: World) -> Path:
    """A portmap wrapper first on CNI_PATH: its ADD for the container's own ID hangs while the returned flag
    file exists (the second identity's ADD and every DEL run at once)."""
    plugdir, flag = w.tmp / "plugins", w.tmp / "hang"
    plugdir.mkdir()
    script = plugdir / "portmap"
    script.write_text(f"""#!/bin/sh
if [ "$CNI_COMMAND" = ADD ] && [ -e {flag} ]; then
  case "$CNI_CONTAINERID" in
    *-portswap) ;;
    *) n=0; while [ -e {flag} ] && [ $n -lt 600 ]; do sleep 0.1; n=$((n+1)); done ;;
  esac
fi
exec /usr/lib/cni/portmap
""")
    script.chmod(0o755)
    w.env["CNI_PATH"] = f"{plugdir}:/usr/lib/cni"
    return flag


def _swap_rules(w: World) -> list[str]:
    rules = subprocess.run(["iptables-save", "-t", "nat"], capture_output=True, text=True).stdout
    return [ln for ln in rules.splitlines() if f'name: \\"{w.net}\\"' in ln and "-portswap" in ln]


@needs_root
@needs_plugins
@needs_docker
@pytest.mark.parametrize("then", ["next-change", "rate-change", "gc", "remove"])
def test_a_port_change_killed_midway_is_finished_or_removed(pworld: World, then: str) -> None:
    """`cnirun port add` SIGKILLed while portmap re-adds the container's rules: the kept port still answers
    (the second identity's rules hold it), and the next change (of its ports, or of its rates only), `cnirun gc`
    (the container still running), or the container's removal leaves no rule of the second identity."""
    w = pworld
    flag = _slow_portmap(w)
    name, base = f"te-{w.n}-web", _base(w)
    ok(w.cnirun("run", "-d", "--mode", "sandbox", "--name", name, "-p", f"127.0.0.1:{base}:80", "busybox",
                *_httpd(name)))
    flag.touch()
    add = w.popen("port", "add", name, f"127.0.0.1:{base + 1}:80", stdout=subprocess.DEVNULL,
                  stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while not _swap_rules(w) or _dnat_main(w, base):
            assert time.monotonic() < deadline and add.poll() is None, "the change never reached portmap's ADD"
            time.sleep(0.05)
        add.kill()
        add.wait()
        flag.unlink()
        assert _page(base) == f"hello-{name}"
        if then == "next-change":
            ok(w.cnirun("port", "add", name, f"127.0.0.1:{base + 2}:80"))
            assert _swap_rules(w) == []
            assert ok(w.cnirun("port", name)).stdout.split("\n")[:-1] == [
                f"80/tcp -> 127.0.0.1:{p}" for p in (base, base + 1, base + 2)]
            for p in (base, base + 1, base + 2):
                assert _page(p) == f"hello-{name}", p
        if then in ("gc", "rate-change"):
            if then == "gc":
                gc = ok(w.cnirun("gc"))
                assert "finish a cut-short port or rate change" in gc.stdout + gc.stderr
            else:
                ok(w.cnirun("update", name, "--ingress-rate", "10mbit"))
            assert _swap_rules(w) == [] and _dnat_main(w, base)
            assert ok(w.cnirun("port", name)).stdout.split("\n")[:-1] == [
                f"80/tcp -> 127.0.0.1:{p}" for p in (base, base + 1)]
            for p in (base, base + 1):
                assert _page(p) == f"hello-{name}", p
    finally:
        flag.unlink(missing_ok=True)
        if add.poll() is None:  # a failed check: the change must not hold the container's lock any longer
            add.kill()
            add.wait()
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)
    w.assert_clean(within=20.0)
    assert _swap_rules(w) == []


def _dnat_main(w: World, port: int) -> bool:
    """Whether the container's own portmap chain (not the second identity's) is jumped to for `port`."""
    rules = subprocess.run(["iptables-save", "-t", "nat"], capture_output=True, text=True).stdout
    return any(f'name: \\"{w.net}\\"' in ln and "-portswap" not in ln and "CNI-HOSTPORT-DNAT" in ln
               for ln in rules.splitlines())
