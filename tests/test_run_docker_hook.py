"""`cnirun run` in hook mode on Docker, and `cnirun ps/inspect` for hook-made attachments.

A module fixture installs the cnirun runtime with this module's environment
(NETCONFPATH, CNI_CACHE_DIR, CNIRUN_STATE_DIR, CNIRUN_HOOK_LOG ... of its
World) and uninstalls it at the end, checking /etc/docker/daemon.json is
byte for byte what it was. Skipped when a `cnirun` runtime is already
registered (a real installation is not ours to replace). Subnet: the
World's 10.131.N.0/24 (conftest's Docker counter).
"""
from __future__ import annotations

import ipaddress
import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Iterator

import pytest

from conftest import (
    CNIRUN,
    REPO,
    Net,
    World,
    _finish,
    _make_world,
    docker_runtime_installed,
    first_address,
    links,
    needs_docker,
    restarts_keep_links,
    needs_root,
)

pytestmark = [needs_root, needs_docker]


@pytest.fixture(scope="module")
def hook_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    w = _make_world(tmp_path_factory.mktemp("runhook"), 131, "hook")
    try:
        with docker_runtime_installed(w, "cnirun-t3hook-"):
            yield w
    finally:
        _finish(w)


def _hook_runs(w: World) -> int:
    try:
        return sum(1 for ln in Path(w.env["CNIRUN_HOOK_LOG"]).read_text().splitlines()
                   if '"stage":"create"' in ln)
    except FileNotFoundError:
        return 0


def _assert_no_pins(w: World) -> None:
    pins = w.state_dir / "netns"
    assert not pins.is_dir() or not [p for p in pins.iterdir() if not p.name.startswith(".")]


def test_mode_hook_run_shows_the_cni_address(hook_world: World) -> None:
    w = hook_world
    before = _hook_runs(w)
    r = w.cnirun("--mode", "hook", "--rm", "busybox", "ifconfig", "eth0")
    assert r.returncode == 0, r.stderr
    addr = next(word.split(":", 1)[1] for word in r.stdout.split() if word.startswith("addr:"))
    assert ipaddress.ip_address(addr) in ipaddress.ip_network(w.subnet)
    assert _hook_runs(w) == before + 1
    w.assert_clean(within=10.0)
    _assert_no_pins(w)


def test_auto_mode_picks_the_hook_when_the_env_matches(hook_world: World) -> None:
    w = hook_world
    before = _hook_runs(w)
    r = w.cnirun("--rm", "busybox", "sh", "-c", "exit 7")
    assert r.returncode == 7, r.stderr
    assert _hook_runs(w) == before + 1
    w.assert_clean(within=10.0)


def test_other_env_uses_the_sandbox_and_hook_mode_says_why(hook_world: World) -> None:
    w = hook_world
    other = w.tmp / "other-net.d"
    other.mkdir(exist_ok=True)
    for f in Path(w.env["NETCONFPATH"]).iterdir():
        shutil.copy(f, other / f.name)
    env = dict(w.env, NETCONFPATH=str(other))
    before = _hook_runs(w)
    r = subprocess.run([*CNIRUN, "--rm", "busybox", "ip", "-o", "-4", "addr", "show", "eth0"], env=env,
                       capture_output=True, text=True, timeout=60, cwd=REPO)
    assert r.returncode == 0, r.stderr
    assert w.subnet.rsplit(".", 2)[0] in r.stdout
    assert _hook_runs(w) == before  # the sandbox attached it, not the hook
    h = subprocess.run([*CNIRUN, "--mode", "hook", "--rm", "busybox", "true"], env=env,
                       capture_output=True, text=True, timeout=60, cwd=REPO)
    assert h.returncode == 125
    assert "NETCONFPATH" in h.stderr and "install docker-runtime" in h.stderr
    assert len(h.stderr.strip().splitlines()) == 1, h.stderr
    w.assert_clean(within=10.0)


def test_ps_and_inspect_show_hook_made_attachments(hook_world: World) -> None:
    w = hook_world
    name = f"cnirun-t3hook-{w.n}"
    d = subprocess.run(["docker", "run", "-d", "--runtime", "cnirun", "--network", "none", "--name", name,
                        "--label", f"cnirun.networks={w.net}", "busybox", "sleep", "60"],
                       capture_output=True, text=True, timeout=60)
    try:
        assert d.returncode == 0, d.stderr
        cid = d.stdout.strip()
        ps = w.cnirun("ps", "--json")
        assert ps.returncode == 0, ps.stderr
        rows = [r for r in json.loads(ps.stdout) if r["container"] == cid]
        assert len(rows) == 1, ps.stdout
        row = rows[0]
        assert (row["engine"], row["image"], row["name"], row["mode"]) == ("docker", "busybox", name, "hook")
        assert row["netns"] == str(w.state_dir / "netns" / cid)
        addr = row["attachments"][0]["addresses"][0]
        assert ipaddress.ip_interface(addr).ip in ipaddress.ip_network(w.subnet)
        table = w.cnirun("ps").stdout
        assert cid[:12] in table and name in table and addr in table
        for key in (name, cid[:10]):
            i = w.cnirun("inspect", key)
            assert i.returncode == 0, i.stderr
            assert json.loads(i.stdout)["attachments"][0]["result"]["ips"][0]["address"] == addr
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)
    w.assert_clean(within=10.0)
    _assert_no_pins(w)


@pytest.mark.parametrize("cmd,code", [(["sh", "-c", "exit 3"], 3), (["/etc"], 126), (["no-such-command"], 127)])
def test_hook_mode_exit_codes(hook_world: World, cmd: list[str], code: int) -> None:
    r = hook_world.cnirun("--mode", "hook", "--rm", "busybox", *cmd)
    assert r.returncode == code, r.stderr
    hook_world.assert_clean(within=10.0)
    _assert_no_pins(hook_world)


def test_hook_mode_dns_options(hook_world: World) -> None:
    r = hook_world.cnirun("--mode", "hook", "--rm", "--dns", "10.131.250.53", "--dns-search", "example.test", "busybox",
                          "cat", "/etc/resolv.conf")
    assert r.returncode == 0, r.stderr
    assert "nameserver 10.131.250.53" in r.stdout and "example.test" in r.stdout
    hook_world.assert_clean(within=10.0)


def test_hook_mode_hosts_file_has_the_cni_address(hook_world: World) -> None:
    w = hook_world
    r = w.cnirun("--mode", "hook", "--rm", "--hostname", "hk1", "busybox", "sh", "-c",
                 "cat /etc/hosts; ip -4 -o addr show eth0")
    assert r.returncode == 0, r.stderr
    addr = first_address(r.stdout.split("eth0", 1)[1]).split("/")[0]
    assert f"{addr}\thk1" in r.stdout
    w.assert_clean(within=10.0)


TUNING = {"type": "tuning", "capabilities": {"mac": True}}


def _hook_warnings(w: World, cid: str) -> list[str]:
    lines = Path(w.env["CNIRUN_HOOK_LOG"]).read_text().splitlines()
    return [x for r in map(json.loads, lines) if r.get("container") == cid for x in r.get("warnings", [])]


def test_restarts_keep_addresses_and_macs_on_run_and_connected_networks(hook_world: World) -> None:
    """A hook-mode container keeps eth0's (the run's network) and eth1's (`network connect`, dual stack) IPv4,
    IPv6 and MAC over 6 `docker restart`s and a stop + start; one whose address another container took
    meanwhile starts on a new one, with a warning in the hook log."""
    w = hook_world
    w.add_network("tc-h1", "ctc1", "10.212.1.0/24", extra=[TUNING])
    dual = {"cniVersion": "1.0.0", "name": "tc-h2", "plugins": [
        {"type": "bridge", "bridge": "ctc2", "isGateway": True, "ipMasq": True, "capabilities": {"ips": True},
         "ipam": {"type": "host-local", "dataDir": str(w.data_dir),
                  "ranges": [[{"subnet": "10.212.2.0/24"}], [{"subnet": "fd97:c:2::/64"}]]}}, TUNING]}
    (Path(w.env["NETCONFPATH"]) / "tc-h2.conflist").write_text(json.dumps(dual))
    w.watch(Net("tc-h2", "ctc2", "10.212.2.0/24", "fd97:c:2::/64"))
    name, thief = f"cnirun-t3hook-tc{w.n}", f"cnirun-t3hook-tc{w.n}b"
    try:
        r = w.cnirun("--mode", "hook", "-d", "--name", name, "--net", "tc-h1", "busybox", "sleep", "600")
        assert r.returncode == 0, r.stderr
        c = w.cnirun("network", "connect", "tc-h2", name)
        assert c.returncode == 0, c.stderr
        first = restarts_keep_links("docker", name)
        assert first[0][0].startswith("10.212.1.") and first[1][0].startswith("10.212.2.")
        assert first[1][1].startswith("fd97:c:2::"), first
        cid = subprocess.run(["docker", "inspect", "-f", "{{.Id}}", name], capture_output=True, text=True).stdout.strip()
        assert _hook_warnings(w, cid) == []
        # Stopped, its eth0 address goes to another container: it starts all the same, on a new one.
        assert subprocess.run(["docker", "stop", "-t", "0", name], capture_output=True).returncode == 0
        taken = first[0][0].split("/")[0]
        deadline = time.monotonic() + 15
        while (w.data_dir / "tc-h1" / taken).exists() and time.monotonic() < deadline:
            time.sleep(0.05)  # the stop's DEL runs in the background
        t = w.cnirun("--mode", "hook", "-d", "--name", thief, "--net", "tc-h1", "--ip", taken, "busybox", "sleep", "600")
        assert t.returncode == 0, t.stderr
        out = subprocess.run(["docker", "start", name], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        now = links("docker", name, ("eth0", "eth1"))
        assert now[0][0] != first[0][0] and now[0][0].startswith("10.212.1.") and now[0][1] == first[0][1]
        assert now[1] == first[1]
        assert any(taken in x and "taken" in x for x in _hook_warnings(w, cid)), _hook_warnings(w, cid)
    finally:
        subprocess.run(["docker", "rm", "-f", name, thief], capture_output=True)
    w.assert_clean(within=10.0)
    _assert_no_pins(w)


BANDWIDTH = {"type": "bandwidth", "capabilities": {"bandwidth": True}}


def _th_networks(w: World) -> tuple[str, str]:
    """Helper H's two networks on the module's World (10.217.5x.0/24, bridges cthh*), made once."""
    names = ("th-h1", "th-h2")
    if not any(o.name == names[0] for o in w.others):
        w.add_network(names[0], "cthh1", "10.217.51.0/24", extra=[TUNING, BANDWIDTH])
        w.add_network(names[1], "cthh2", "10.217.52.0/24", extra=[TUNING, BANDWIDTH])
    return names


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_ps_keeps_image_and_mode_of_a_hook_container_after_live_changes(hook_world: World) -> None:
    """`cnirun ps` shows a hook-mode container's IMAGE and mode (hook) after `port add`, `update` and
    `network connect` as before them (each makes cnirun's record of the container, a state dir)."""
    w = hook_world
    net1, net2 = _th_networks(w)
    name = f"cnirun-t3hook-th{w.n}"

    def row() -> dict:
        ps = w.cnirun("ps", "--format", "json")
        assert ps.returncode == 0, ps.stderr
        rows = [r for r in json.loads(ps.stdout) if r["name"] == name]
        assert len(rows) == 1, ps.stdout
        return rows[0]

    try:
        d = subprocess.run(["docker", "run", "-d", "--runtime", "cnirun", "--network", "none", "--name", name,
                            "--label", f"cnirun.networks={net1}", "busybox", "sleep", "120"],
                           capture_output=True, text=True, timeout=60)
        assert d.returncode == 0, d.stderr
        want = ("docker", "busybox", "hook", d.stdout.strip(), "")
        assert tuple(row()[k] for k in ("engine", "image", "mode", "container", "run_id")) == want
        port = _free_port()
        for change in (["port", "add", name, f"127.0.0.1:{port}:80"], ["update", name, "--ingress-rate", "10mbit"],
                       ["network", "connect", net2, name]):
            c = w.cnirun(*change)
            assert c.returncode == 0, (change, c.stderr)
            r = row()
            assert tuple(r[k] for k in ("engine", "image", "mode", "container", "run_id")) == want, (change, r)
        assert [a["network"] for a in r["attachments"]] == [net1, net2]
        assert r["attachments"][0]["ports"] == [f"127.0.0.1:{port}->80/tcp"]
        table = w.cnirun("ps").stdout
        assert any(name in ln and "busybox" in ln for ln in table.splitlines()), table
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)
    w.assert_clean(within=10.0)
    _assert_no_pins(w)


def test_hook_mode_missing_command_is_one_line_and_127(hook_world: World) -> None:
    """A command the image does not have: one line (as docker's `exec: "X": executable file not found`),
    exit 127, nothing left; in the foreground and with -d."""
    w = hook_world
    net1, _ = _th_networks(w)
    name = f"cnirun-t3hook-th{w.n}m"
    try:
        for detach in ([], ["-d", "--name", name]):
            r = w.cnirun("--mode", "hook", "--rm", "--net", net1, *detach, "busybox", "th-nosuchcmd")
            assert r.returncode == 127, (detach, r.stderr)
            assert r.stderr == 'cnirun: exec: "th-nosuchcmd": executable file not found in $PATH\n', (detach, r.stderr)
            w.assert_clean(within=10.0)
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)
    _assert_no_pins(w)


def test_hook_mode_says_cnirun_sandbox_does_not_apply(hook_world: World) -> None:
    """CNIRUN_SANDBOX=single|helper in a hook-mode run (chosen or auto): one warning line, the run goes on; a
    bad value is refused with one line, 125, as in sandbox mode."""
    w = hook_world
    net1, _ = _th_networks(w)
    for kind, mode in (("single", ["--mode", "hook"]), ("helper", [])):
        env = dict(w.env, CNIRUN_SANDBOX=kind)
        r = subprocess.run([*CNIRUN, *mode, "--rm", "--net", net1, "busybox", "echo", "hi"], env=env,
                           capture_output=True, text=True, timeout=60, cwd=REPO)
        assert r.returncode == 0 and r.stdout == "hi\n", r.stderr
        assert r.stderr == (f"cnirun: warning: CNIRUN_SANDBOX={kind} applies to Docker's sandbox mode only, and this "
                            "run uses hook mode (the cnirun runtime): add --mode sandbox to use it, or unset "
                            "CNIRUN_SANDBOX\n"), r.stderr
    r = subprocess.run([*CNIRUN, "--mode", "hook", "--rm", "--net", net1, "busybox", "true"],
                       env=dict(w.env, CNIRUN_SANDBOX="th-bogus"), capture_output=True, text=True, timeout=60, cwd=REPO)
    assert r.returncode == 125 and r.stderr.count("\n") == 1 and "CNIRUN_SANDBOX='th-bogus'" in r.stderr, r.stderr
    w.assert_clean(within=10.0)
