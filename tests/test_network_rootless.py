"""network.rootless: what a host lacks for a user's containers' networks, each in one line naming its fix."""
from __future__ import annotations

import json
import os
import pwd
import stat
import subprocess
from pathlib import Path

import pytest

from _users import CNIRUN, User, rootless_user, users  # noqa: F401 (the fixtures)
from cnirun.network import rootless


@pytest.fixture
def host(tmp_path: Path) -> dict[str, str]:
    """A host that has everything, in files: the test takes one thing away at a time."""
    rt = tmp_path / "rt"
    rt.mkdir(mode=0o700)
    tun = tmp_path / "tun"
    tun.write_bytes(b"")
    (tmp_path / "sys" / "user").mkdir(parents=True)
    (tmp_path / "sys" / "kernel").mkdir()
    (tmp_path / "sys" / "user" / "max_user_namespaces").write_text("96370\n")
    (tmp_path / "sys" / "kernel" / "unprivileged_userns_clone").write_text("1\n")
    name = pwd.getpwuid(os.geteuid()).pw_name
    for f in ("subuid", "subgid"):
        (tmp_path / f).write_text(f"someone:100000:65536\n{name}:165536:65536\n")
    return {"rt": str(rt), "tun": str(tun), "subuid": str(tmp_path / "subuid"), "subgid": str(tmp_path / "subgid"),
            "sys": str(tmp_path / "sys"), "name": name}


def _problems(h: dict[str, str], **env: str) -> list[str]:
    return rootless.problems({"XDG_RUNTIME_DIR": h["rt"], "PATH": os.environ["PATH"], **env}, tun=h["tun"],
                             subuid=h["subuid"], subgid=h["subgid"], proc_sys=h["sys"])


def test_a_host_with_everything_lacks_nothing(host: dict[str, str]) -> None:
    assert _problems(host) == []


def test_each_missing_prerequisite_is_one_line_naming_its_fix(host: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    Path(host["subuid"]).write_text(f"{host['name']}:100000:1000\n")  # too few
    Path(host["subgid"]).write_text(f"x\n:::\n{host['name']}:abc:65536\n{host['name']}:1:-5\n")  # none usable
    os.unlink(host["tun"])
    Path(host["sys"], "user", "max_user_namespaces").write_text("0\n")
    Path(host["sys"], "kernel", "unprivileged_userns_clone").write_text("0\n")
    monkeypatch.setattr(rootless, "PROGRAMS", (("cnirun-no-such-program", "pkg-a"), ("podman", "podman")))
    found = _problems(host, XDG_RUNTIME_DIR="")
    assert len(found) == 7, found
    expected = ["XDG_RUNTIME_DIR is not set", "usermod --add-subuids 100000-165535",
                "usermod --add-subgids 100000-165535", f"cannot open {host['tun']} (missing",
                "sysctl -w user.max_user_namespaces=", "sysctl -w kernel.unprivileged_userns_clone=1",
                "cnirun-no-such-program not found (fix, as root: apt-get install pkg-a)"]
    for line, want in zip(found, expected):
        assert want in line and "\n" not in line, (want, line)


def test_subordinate_ranges_are_summed_by_name_or_uid(tmp_path: Path) -> None:
    f = tmp_path / "subuid"
    f.write_text("alice:100000:30000\n1000:200000:40000\nbob:300000:65536\n# comment\nalice:1:0\n")
    assert rootless.subordinate_range(str(f), "alice", 1000) == 70000
    assert rootless.subordinate_range(str(f), "carol", 1001) == 0
    assert rootless.subordinate_range(str(tmp_path / "none"), "alice", 1000) == 0
    f.write_bytes(b"\xff\xfe:1:2\n" + b"a" * 2_000_000)  # garbage and huge: bounded, no error
    assert rootless.subordinate_range(str(f), "alice", 1000) == 0


def test_a_user_sees_what_this_host_lacks_in_version(users: tuple[User, User]) -> None:
    """`cnirun version` as a user: their state dir and this host's missing prerequisites, as the host
    really is (the test users have no subordinate ids; /dev/net/tun is as the host has it)."""
    user, _ = users
    p = user.cnirun("version", "--format", "json")
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)["rootless"]
    assert r["user"] == user.name and r["stateDir"] == f"{user.runtime_dir}/cnirun"
    lacks = r["hostLacks"]
    assert any("/etc/subuid gives " + user.name in x for x in lacks), lacks
    tun_mode = stat.S_IMODE(os.stat("/dev/net/tun").st_mode)
    assert any(x.startswith("cannot open /dev/net/tun") for x in lacks) == ((tun_mode & 0o006) != 0o006), lacks
    text = user.cnirun("version")
    assert text.returncode == 0 and f"Rootless (user {user.name}):" in text.stdout, text.stdout
    assert " Host lacks:      " in text.stdout
    root = subprocess.run([str(CNIRUN), "version", "--format", "json"], capture_output=True, text=True, timeout=60)
    assert root.returncode == 0 and "rootless" not in json.loads(root.stdout)


# -- a user's containers on their own networks (rootless Podman) -----------------------------
def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(port: int) -> str:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/hostname", timeout=5) as r:
        return r.read().decode().strip()


def _slirps_of(user: User) -> list[str]:
    p = subprocess.run(["pgrep", "-a", "-u", str(user.uid), "slirp4netns"], capture_output=True, text=True)
    return p.stdout.splitlines()


def _left(user: User) -> dict[str, list[str]]:
    """What a user's runs may leave: runs, cached attachments, reservations, the rootless netns, slirp4netns."""
    state = user.runtime_dir / "cnirun"
    ipam = [str(f) for f in (state / "ipam").rglob("*") if f.is_file() and f.name != "lock"
            and not f.name.startswith("last_reserved_ip")] if (state / "ipam").exists() else []
    return {
        "runs": sorted(n.name for n in (state / "containers").glob("*") if not n.name.startswith(".")),
        "cache": sorted(n.name for n in (state / "cni" / "results").glob("*")),
        "reservations": ipam,
        "rootless netns": sorted(n.name for n in state.glob("rootless-netns*")) + sorted(n.name for n in state.glob("rootless.json")),
        "slirp4netns": _slirps_of(user),
        "named netns": sorted(n.name for n in (state / "named-netns").glob("*")),
    }


def _nothing_left(user: User, within: float = 20.0) -> None:
    import time

    deadline = time.monotonic() + within
    while True:
        left = {k: v for k, v in _left(user).items() if v}
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.25)
    assert not left, left


def test_a_users_containers_get_addresses_names_and_ports_and_leave_nothing(rootless_user: User) -> None:
    """As the user: a container has its address before its first instruction, containers resolve each
    other by name, a published port answers on the host's loopback, and after rm -f and gc nothing of the
    runs, the forwards or the rootless netns is left; nothing of root's changed."""
    user = rootless_user
    root_before = subprocess.run(["iptables-save"], capture_output=True, text=True).stdout.count("\n-A ")
    p = user.cnirun("network", "create", "rlnet", "--subnet", "10.251.20.0/24")
    assert p.returncode == 0, p.stderr
    port = _free_port()
    try:
        p = user.cnirun("--rm", "--net", "rlnet", "busybox", "ip", "-o", "-4", "addr", "show", "eth0", timeout=120)
        assert p.returncode == 0, p.stderr
        assert " inet 10.251.20." in p.stdout, p.stdout
        p = user.cnirun("-d", "--name", "rlweb", "--net", "rlnet", "-p", f"127.0.0.1:{port}:80", "busybox",
                        "httpd", "-f", "-p", "80", "-h", "/etc", timeout=120)
        assert p.returncode == 0, p.stderr
        p = user.cnirun("--rm", "--net", "rlnet", "busybox", "wget", "-q", "-O-", "http://rlweb/hostname", timeout=120)
        assert p.returncode == 0 and p.stdout.strip(), p.stderr
        assert _get(port) == p.stdout.strip()  # the same container, by name inside and by port from the host
        ps = user.cnirun("ps")
        assert "rlweb" in ps.stdout and f"127.0.0.1:{port}->80/tcp" in ps.stdout, ps.stdout
        # Nothing of it is root's: no rule, no state, no container.
        assert subprocess.run(["iptables-save"], capture_output=True, text=True).stdout.count("\n-A ") == root_before
        assert "rlweb" not in subprocess.run(["podman", "ps", "-a", "--format", "{{.Names}}"], capture_output=True,
                                             text=True).stdout
    finally:
        user.run("podman", "rm", "-f", "-t", "0", "rlweb", timeout=60)
    import time

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and _left(user)["cache"]:
        time.sleep(0.25)
    try:
        _get(port)
        raise AssertionError(f"127.0.0.1:{port} still answers after the container was removed")
    except OSError:
        pass
    p = user.cnirun("gc")
    assert p.returncode == 0, p.stderr
    _nothing_left(user)
    assert user.cnirun("network", "rm", "rlnet").returncode == 0


def test_a_sigkilled_run_is_collected_by_the_users_gc(rootless_user: User) -> None:
    """SIGKILL of a user's foreground run once its container runs, then the container removed: the user's
    `cnirun gc` DELs it inside their namespaces and takes the rootless netns down; nothing is left."""
    import signal
    import time

    user = rootless_user
    assert user.cnirun("network", "create", "rlkill", "--subnet", "10.251.21.0/24").returncode == 0
    proc = subprocess.Popen(user.argv(str(CNIRUN), "--name", "rlk", "--net", "rlkill", "-p", f"127.0.0.1:{_free_port()}:80",
                                      "busybox", "sleep", "60"), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            ps = user.cnirun("ps")
            if "rlk" in ps.stdout and "10.251.21." in ps.stdout:
                break
            time.sleep(0.2)
        assert "10.251.21." in ps.stdout, ps.stdout
        # runuser's child is the run (its pid after nsenter's execs): kill the whole group of it.
        for pid in _pids_of(user, b"--name\0rlk\0"):
            os.kill(pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()  # type: ignore[union-attr]
    assert _left(user)["cache"], "the killed run's attachment should still be cached until gc"
    user.run("podman", "rm", "-f", "-t", "0", "rlk", timeout=60)
    p = user.cnirun("gc")
    assert p.returncode == 0, p.stderr
    _nothing_left(user)
    assert user.cnirun("network", "rm", "rlkill").returncode == 0


def _pids_of(user: User, mark: bytes) -> list[int]:
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            if os.stat(f"/proc/{pid}").st_uid != user.uid:
                continue
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if mark in cmd and b"cnirun.cli.main" in cmd:
            out.append(int(pid))
    return out


def test_a_users_live_verbs_exec_compose_and_isolation(rootless_user: User, tmp_path: Path) -> None:
    """The commands on a user's containers run inside their rootless netns: exec, network connect and
    disconnect, port add and rm (a host forward that cannot be made is not published inside either),
    update, compose up and down. A network created while the rootless netns is there is isolated from
    the others there, as root's are on the host."""
    user = rootless_user
    for net, subnet in (("rla", "10.251.22.0/24"), ("rlb", "10.251.23.0/24")):
        assert user.cnirun("network", "create", net, "--subnet", subnet).returncode == 0
    port = _free_port()
    try:
        p = user.cnirun("exec", "--net", "rla", "--", "ip", "-o", "-4", "addr", "show", "eth0", timeout=120)
        assert p.returncode == 0 and " inet 10.251.22." in p.stdout, (p.stdout, p.stderr)
        assert user.cnirun("-d", "--name", "rlc", "--net", "rla", "busybox", "httpd", "-f", "-p", "80", "-h", "/etc",
                           timeout=120).returncode == 0
        # Made while the rootless netns is there: its isolation rules go there at once.
        assert user.cnirun("network", "create", "rlc2", "--subnet", "10.251.24.0/24").returncode == 0
        p = user.cnirun("-d", "--name", "rlo", "--net", "rlc2", "busybox", "httpd", "-f", "-p", "80", "-h", "/etc",
                        timeout=120)
        assert p.returncode == 0, p.stderr
        probe = 'printf "GET /hostname HTTP/1.0\\r\\n\\r\\n" | nc -w 2 {} 80 | tail -n 1; echo; echo "nc=$?"'
        p = user.cnirun("--rm", "--net", "rlc2", "busybox", "sh", "-c", probe.format("rlo"), timeout=120)
        assert p.returncode == 0 and p.stdout.splitlines()[-1] == "nc=0" and p.stdout.splitlines()[0], p.stdout
        p = user.cnirun("--rm", "--net", "rla", "busybox", "sh", "-c", probe.format("10.251.24.2"), timeout=120)
        assert p.returncode == 0 and p.stdout.split() == ["nc=0"] and "timed out" in p.stderr, (p.stdout, p.stderr)
        p = user.cnirun("network", "connect", "rlb", "rlc", timeout=120)
        assert p.returncode == 0, p.stderr
        p = user.run("podman", "exec", "rlc", "ip", "-o", "-4", "addr", "show", "eth1")
        assert " inet 10.251.23." in p.stdout, (p.stdout, p.stderr)
        p = user.cnirun("port", "add", "rlc", f"127.0.0.1:{port}:80", timeout=120)
        assert p.returncode == 0, p.stderr
        assert _get(port)
        p = user.cnirun("port", "add", "rlc", "81:80", timeout=120)
        assert p.returncode == 1 and "a port below 1024 needs root" in p.stderr and p.stderr.count("\n") == 1, p.stderr
        p = user.cnirun("port", "rlc")
        assert p.stdout.split() == ["80/tcp", "->", f"127.0.0.1:{port}"], p.stdout
        assert user.cnirun("port", "rm", "rlc", f"127.0.0.1:{port}:80", timeout=120).returncode == 0
        try:
            _get(port)
            raise AssertionError(f"127.0.0.1:{port} still answers after port rm")
        except OSError:
            pass
        assert user.cnirun("network", "disconnect", "rlb", "rlc", timeout=120).returncode == 0
        p = user.cnirun("update", "--ingress-allow", "10.251.22.0/24", "rlc", timeout=120)
        assert p.returncode == 0 and "ingress from 10.251.22.0/24" in p.stdout, (p.stdout, p.stderr)
        # compose: the project directory is the user's working directory, inside as outside.
        proj = user.home / "rlproj"
        proj.mkdir()
        (proj / "compose.yaml").write_text("services:\n  web:\n    image: localhost/busybox\n"
                                           "    command: httpd -f -p 80 -h /etc\n    stop_grace_period: 1s\n"
                                           "  cli:\n    image: localhost/busybox\n    command: sleep 300\n"
                                           "    stop_grace_period: 1s\n")
        os.chown(proj, user.uid, user.gid)
        os.chown(proj / "compose.yaml", user.uid, user.gid)
        up = subprocess.run(user.argv("sh", "-c", f"cd {proj} && {CNIRUN} compose up -d"), capture_output=True,
                            text=True, timeout=180)
        assert up.returncode == 0, up.stderr
        p = user.run("podman", "exec", "rlproj-cli-1", "wget", "-q", "-O-", "http://web/hostname")
        assert p.returncode == 0 and p.stdout.strip(), (p.stdout, p.stderr)
        down = subprocess.run(user.argv("sh", "-c", f"cd {proj} && {CNIRUN} compose down"), capture_output=True,
                              text=True, timeout=180)
        assert down.returncode == 0, down.stderr
    finally:
        user.run("podman", "rm", "-f", "-t", "0", "rlc", "rlo", timeout=60)
    import time

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and _left(user)["cache"]:
        time.sleep(0.25)
    for net in ("rla", "rlb", "rlc2"):
        p = user.cnirun("network", "rm", net)
        assert p.returncode == 0, p.stderr
    p = user.cnirun("gc")
    assert p.returncode == 0, p.stderr
    _nothing_left(user)


def test_a_dead_slirp4netns_is_restarted_on_the_same_netns_and_bad_records_are_one_line(rootless_user: User) -> None:
    """slirp4netns killed while a container runs: the next command starts it again on the same rootless
    netns (the container keeps its links, gets its published port back) instead of cutting the container
    off. A record the user garbled (wrong types, a FIFO) and an IPv6 host IP give one line, no hang."""
    import signal
    import time

    user = rootless_user
    assert user.cnirun("network", "create", "rls", "--subnet", "10.251.25.0/24").returncode == 0
    port = _free_port()
    state = user.runtime_dir / "cnirun"
    try:
        p = user.cnirun("-d", "--name", "rls1", "--net", "rls", "-p", f"127.0.0.1:{port}:80", "busybox", "httpd", "-f",
                        "-p", "80", "-h", "/etc", timeout=120)
        assert p.returncode == 0, p.stderr
        name = _get(port)
        for line in _slirps_of(user):
            os.kill(int(line.split()[0]), signal.SIGKILL)
        deadline = time.monotonic() + 10
        while _slirps_of(user) and time.monotonic() < deadline:
            time.sleep(0.05)
        netns_before = json.loads((state / "rootless.json").read_text())["netns"]
        p = user.cnirun("--rm", "--net", "rls", "busybox", "wget", "-q", "-O-", "http://rls1/hostname", timeout=120)
        assert p.returncode == 0 and p.stdout.strip() == name, (p.stdout, p.stderr)
        assert json.loads((state / "rootless.json").read_text())["netns"] == netns_before  # the same netns
        assert len(_slirps_of(user)) == 1 and _get(port) == name  # its port is back
        p = user.cnirun("-d", "--net", "rls", "-p", f"[::]:{_free_port()}:80", "busybox", "true", timeout=120)
        assert p.returncode == 125 and "IPv4 only" in p.stderr and p.stderr.count("\n") == 1, p.stderr
    finally:
        user.run("podman", "rm", "-f", "-t", "0", "rls1", timeout=60)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and _left(user)["cache"]:
        time.sleep(0.25)
    record = state / "rootless.json"
    good = record.read_bytes()
    for bad in (b'{"pause": "abc", "slirp": 1e400}', b'{"slirp": "abc", "userns": 5}', b"[" * 5000, b"\xff" * 100):
        record.write_bytes(bad)
        p = user.cnirun("gc", timeout=60)
        assert "Traceback" not in p.stderr and p.stderr.count("\n") <= 1, (bad[:20], p.stderr)
        record.write_bytes(good) if record.exists() else None
    record.unlink(missing_ok=True)
    os.mkfifo(record)
    os.chown(record, user.uid, user.gid)
    p = user.cnirun("gc", timeout=30)  # never blocks on it
    assert "Traceback" not in p.stderr, p.stderr
    record.unlink(missing_ok=True)
    assert user.cnirun("network", "rm", "rls").returncode == 0
    p = user.cnirun("gc")
    assert p.returncode == 0, p.stderr
    _nothing_left(user)


def test_a_users_container_goes_out_through_the_user_mode_stack(rootless_user: User, tmp_path: Path) -> None:
    """Outbound: a user's container reaches a server outside their namespaces (in a netns this test makes,
    routed from the host) through the bridge, the rootless netns's masquerade and slirp4netns, which
    connects from the host as the user."""
    import time

    user = rootless_user
    ns, host_if, ns_if = "t27out", "t27o-h", "t27o-n"
    subprocess.run(["ip", "netns", "del", ns], capture_output=True)  # one a killed run left
    subprocess.run(["ip", "link", "del", host_if], capture_output=True)
    (tmp_path / "hello").write_text("from outside\n")
    server = None
    try:
        for argv in (["ip", "netns", "add", ns], ["ip", "link", "add", host_if, "type", "veth", "peer", "name", ns_if],
                     ["ip", "link", "set", ns_if, "netns", ns], ["ip", "addr", "add", "10.251.90.1/30", "dev", host_if],
                     ["ip", "link", "set", host_if, "up"], ["ip", "-n", ns, "addr", "add", "10.251.90.2/30", "dev", ns_if],
                     ["ip", "-n", ns, "link", "set", ns_if, "up"], ["ip", "-n", ns, "link", "set", "lo", "up"]):
            subprocess.run(argv, check=True, capture_output=True)
        server = subprocess.Popen(["ip", "netns", "exec", ns, "busybox", "httpd", "-f", "-p", "10.251.90.2:8080",
                                   "-h", str(tmp_path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.3)
        assert user.cnirun("network", "create", "rlout", "--subnet", "10.251.26.0/24").returncode == 0
        p = user.cnirun("--rm", "--net", "rlout", "busybox", "wget", "-q", "-O-", "http://10.251.90.2:8080/hello",
                        timeout=120)
        assert p.returncode == 0 and p.stdout == "from outside\n", (p.stdout, p.stderr)
    finally:
        if server is not None:
            server.kill()
            server.wait()
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        subprocess.run(["ip", "link", "del", host_if], capture_output=True)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and _left(user)["cache"]:
        time.sleep(0.25)
    assert user.cnirun("network", "rm", "rlout").returncode == 0
    assert user.cnirun("gc").returncode == 0
    _nothing_left(user)
