"""cnirun.network.portlock: a host port is published only where the kernel would let a host service have it.

Real sockets held on this host (loopback, host ports 41500-41999), the check as every way to publish runs it
(portlock.check_ports), and `cnirun run -p` refusing with one line before anything is made. Address plan:
10.214.N.0/24 (network te-N, bridge cteN) for the end-to-end runs.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cnirun.core.errors import ArgumentError
from cnirun.network.options import PortMapping
from cnirun.network.portlock import BUDGET_ENV, _sctp_held, check_ports
from cnirun.cni.runtime import CNI
from _wait import wait_for
from conftest import CNIRUN, REPO, World, _make_world, needs_docker, needs_plugins, needs_root, world_fixture

pworld = world_fixture(_make_world, 214, "ports", net="te-{n}", bridge="cte{n}", subnet="10.214.{n}.0/24",
                       name_prefix="te-{n}-")


def _free_port(kind: int) -> int:
    """A port in 41500-41999 nothing holds now, for `kind` (SOCK_STREAM/SOCK_DGRAM) on every address."""
    for port in range(41500 + os.getpid() % 300, 42000):
        for family, addr in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
            s = socket.socket(family, kind)
            try:
                s.bind((addr, port))
            except OSError:
                break
            finally:
                s.close()
        else:
            return port
    raise AssertionError("no free port in 41500-41999")


def _refused(cni: CNI, spec: PortMapping) -> str:
    try:
        check_ports(cni, [spec])
    except ArgumentError as e:
        return str(e)
    return ""


def _udp(addr: str, port: int, reuse: bool) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    if reuse:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, port))
    return s


def test_held_udp_and_tcp_ports_are_refused_as_the_kernel_would(tmp_path: Path) -> None:
    """UDP held with SO_REUSEADDR, on 0.0.0.0 (blocks every address) or on one address (blocks that one and the
    wildcard, not another address); a TCP listener; a TCP port that only just served (TIME-WAIT) stays free."""
    cni = CNI(cache_dir=str(tmp_path))
    port = _free_port(socket.SOCK_DGRAM)
    for held_on in ("0.0.0.0", "127.0.0.1"):
        with _udp(held_on, port, reuse=True):
            for ip in ("", "127.0.0.1"):
                assert "in use on this host" in _refused(cni, PortMapping(port, 53, "udp", ip)), (held_on, ip)
            other = _refused(cni, PortMapping(port, 53, "udp", "127.0.0.2"))
            assert ("in use" in other) == (held_on == "0.0.0.0"), (held_on, other)
            assert _refused(cni, PortMapping(port, 53, "tcp", "")) == ""  # another protocol is free
    assert _refused(cni, PortMapping(port, 53, "udp", "")) == ""
    with _udp("127.0.0.1", port, reuse=False):
        assert "in use" in _refused(cni, PortMapping(port, 53, "udp", ""))

    tport = _free_port(socket.SOCK_STREAM)
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", tport))
    server.listen()
    try:
        assert "in use on this host" in _refused(cni, PortMapping(tport, 80, "tcp", ""))
        assert "in use on this host" in _refused(cni, PortMapping(tport, 80, "tcp", "127.0.0.1"))
        client = socket.create_connection(("127.0.0.1", tport))
        conn, _ = server.accept()
        conn.close()  # the server side closes first: its socket stays in TIME-WAIT
        client.close()
    finally:
        server.close()
    assert _refused(cni, PortMapping(tport, 80, "tcp", "")) == ""


def test_a_clients_local_port_is_not_in_use(tmp_path: Path) -> None:
    """Host ports in the ephemeral range are often some client's local port: a connected TCP socket, its
    TIME-WAIT, a connected UDP socket on port P make the kernel refuse a bind of P but take no new traffic, so
    P may be published (a DNAT leaves their flows alone)."""
    cni = CNI(cache_dir=str(tmp_path))
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = _free_port(socket.SOCK_STREAM)
    client = socket.socket()
    client.bind(("127.0.0.1", port))
    client.connect(server.getsockname())
    conn, _ = server.accept()
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", port))
    udp.connect(("127.0.0.1", 9))
    try:
        assert _refused(cni, PortMapping(port, 80, "tcp", "")) == ""
        assert _refused(cni, PortMapping(port, 53, "udp", "")) == ""
        client.close()  # the client closes first: its socket (no SO_REUSEADDR) stays in TIME-WAIT on `port`
        assert _refused(cni, PortMapping(port, 80, "tcp", "127.0.0.1")) == ""
    finally:
        for s in (conn, client, udp, server):
            s.close()


def test_a_held_ipv6_port_blocks_a_publish_on_every_address(tmp_path: Path) -> None:
    """A UDP socket on [::] only (IPV6_V6ONLY) holds the port for a publish without a host IP."""
    if not socket.has_ipv6 or not os.path.exists("/proc/net/if_inet6"):
        pytest.skip("no IPv6 on this host")
    cni = CNI(cache_dir=str(tmp_path))
    port = _free_port(socket.SOCK_DGRAM)
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    s.bind(("::", port))
    try:
        assert "in use" in _refused(cni, PortMapping(port, 53, "udp", ""))
        assert _refused(cni, PortMapping(port, 53, "udp", "127.0.0.1")) == ""
    finally:
        s.close()


def test_held_sctp_port_is_refused(tmp_path: Path) -> None:
    """A real SCTP listener, when this kernel has SCTP loaded (creating one would load the module: not done)."""
    if not os.path.exists("/proc/net/sctp/eps"):
        pytest.skip("the kernel's SCTP module is not loaded (no /proc/net/sctp): no SCTP socket can hold a port")
    cni = CNI(cache_dir=str(tmp_path))
    port = _free_port(socket.SOCK_DGRAM)
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_SCTP)
    s.bind(("127.0.0.1", port))
    s.listen()
    try:
        assert "in use" in _refused(cni, PortMapping(port, 80, "sctp", ""))
        assert "in use" in _refused(cni, PortMapping(port, 80, "sctp", "127.0.0.1"))
    finally:
        s.close()
    assert _refused(cni, PortMapping(port, 80, "sctp", "")) == ""


def test_sctp_endpoint_table_is_read_as_the_kernel_writes_it(tmp_path: Path) -> None:
    """/proc/net/sctp/eps's layout (net/sctp/proc.c): a wildcard endpoint holds the port on every address, one
    on an address only there; no table (module not loaded) holds nothing."""
    eps = tmp_path / "eps"
    eps.write_text(
        " ENDPT     SOCK   STY SST HBKT LPORT   UID INODE LADDRS\n"
        "       0        0 2   10  29   41555      0 12345 0.0.0.0 \n"
        "       0        0 1   10  30   41556      0 12346 127.0.0.1 10.0.0.1 \n"
    )
    assert _sctp_held("", 41555, str(eps)) and _sctp_held("127.0.0.9", 41555, str(eps))
    assert _sctp_held("", 41556, str(eps)) and _sctp_held("10.0.0.1", 41556, str(eps))
    assert not _sctp_held("127.0.0.2", 41556, str(eps)) and not _sctp_held("", 41557, str(eps))
    assert not _sctp_held("", 41555, str(tmp_path / "absent"))


def test_a_host_ip_that_is_not_this_hosts_is_named_as_such(tmp_path: Path) -> None:
    cni = CNI(cache_dir=str(tmp_path))
    for ip in ("8.8.8.8", "2001:db8::1"):
        msg = _refused(cni, PortMapping(41999, 80, "tcp", ip))
        assert msg.startswith(f"host IP {ip} is not an address of this host"), msg
    assert _refused(cni, PortMapping(_free_port(socket.SOCK_STREAM), 80, "tcp", "127.0.0.1")) == ""


@needs_root
@needs_plugins
@needs_docker
def test_run_refuses_held_udp_and_foreign_ip_with_one_line_and_makes_nothing(pworld: World) -> None:
    """`cnirun run -p` on a UDP port a host service holds with SO_REUSEADDR, and on 8.8.8.8: exit 125, one line,
    no container, no rule (before the fix the UDP run got its DNAT and 8.8.8.8 was "in use")."""
    w = pworld
    port = _free_port(socket.SOCK_DGRAM)
    with _udp("0.0.0.0", port, reuse=True):
        for spec, says in ((f"{port}:53/udp", f"host port {port}/udp is in use on this host"),
                           (f"8.8.8.8:{port}:53", "host IP 8.8.8.8 is not an address of this host")):
            p = w.cnirun("run", "--rm", "--name", f"te-{w.n}-x", "-p", spec, "busybox", "true")
            assert p.returncode == 125 and p.stderr.startswith(f"cnirun: {says}"), p.stderr
            assert len(p.stderr.splitlines()) == 1
            rules = subprocess.run(["iptables-save", "-t", "nat"], capture_output=True, text=True).stdout
            assert f"--dport {port} " not in rules
    w.assert_clean()


# -- fair ordering and the host-wide budget ------------------------------------------------------------
def _hanging_portmap(w: World) -> tuple[dict[str, str], Path, Path]:
    """An environment whose portmap ADD hangs while the returned flag exists (a stand-in for an ADD of hundreds
    of mappings), and the file it touches once it hangs."""
    plugdir, flag, hanging = w.tmp / "plugins", w.tmp / "hang", w.tmp / "hanging"
    plugdir.mkdir()
    script = plugdir / "portmap"
    script.write_text(f"""#!/bin/sh
if [ "$CNI_COMMAND" = ADD ]; then
  n=0
  while [ -e {flag} ] && [ $n -lt 900 ]; do touch {hanging}; sleep 0.1; n=$((n+1)); done
fi
exec /usr/lib/cni/portmap
""")
    script.chmod(0o755)
    flag.touch()
    return {**w.env, "CNI_PATH": f"{plugdir}:/usr/lib/cni"}, flag, hanging


@needs_root
@needs_plugins
@needs_docker
def test_a_start_with_one_port_does_not_wait_for_another_starts_add(pworld: World) -> None:
    """While another start's portmap ADD runs (held here for up to 90 s), a start publishing one other port is
    up within 20 s: the port lock covers the check and the claim, not the ADD (before: it waited for the ADD)."""
    w = pworld
    big, small, first = f"te-{w.n}-big", f"te-{w.n}-small", f"te-{w.n}-first"
    base = _free_port(socket.SOCK_STREAM)
    # The network's bridge exists (a chain that creates it holds it exclusively while it runs).
    r = w.cnirun("run", "-d", "--mode", "sandbox", "--name", first, "busybox", "sleep", "300")
    assert r.returncode == 0, r.stderr
    env, flag, hanging = _hanging_portmap(w)
    slow = subprocess.Popen([*CNIRUN, "run", "-d", "--mode", "sandbox", "--name", big, "-p",
                             f"127.0.0.1:{base}:80", "busybox", "sleep", "300"], env=env, cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(hanging.exists, 30, "the first start to reach portmap")
        t0 = time.monotonic()
        quick = w.cnirun("run", "-d", "--mode", "sandbox", "--name", small, "-p", f"127.0.0.1:{base + 1}:80",
                         "busybox", "sleep", "300", timeout=60)
        took = time.monotonic() - t0
        assert quick.returncode == 0, quick.stderr
        assert took < 20, f"the one-port start took {took:.1f} s"
        assert slow.poll() is None and flag.exists()  # the other ADD was still running all along
        # Its port is taken all the while (its claim, then its ADD's intent record): a third start is refused.
        same = w.cnirun("run", "--rm", "--name", f"te-{w.n}-third", "-p", f"127.0.0.1:{base}:80", "busybox", "true")
        assert same.returncode == 125 and same.stderr.count("\n") == 1, same.stderr
        assert f"already published by container {big}" in same.stderr or "start still in progress" in same.stderr
        flag.unlink()
        assert slow.wait(60) == 0, slow.stderr.read() if slow.stderr else ""
        assert not list((w.cache_dir / "cnirun-ports.claims").iterdir())
    finally:
        flag.unlink(missing_ok=True)
        slow.wait(100)
        subprocess.run(["docker", "rm", "-f", big, small, first], capture_output=True)
    w.assert_clean(within=20.0)


def test_a_killed_claimers_ports_are_free_again(tmp_path: Path) -> None:
    """A process SIGKILLed between the check and its ADD: its claim does not hold the port (its flock went with
    it) and the next check removes the claim file."""
    port = _free_port(socket.SOCK_STREAM)
    code = (f"import sys, time; from cnirun.cni.runtime import CNI; from cnirun.network.options import PortMapping; "
            f"from cnirun.network.portlock import reserve; reserve(CNI(cache_dir={str(tmp_path)!r}), "
            f"[PortMapping({port}, 80)]); print('claimed', flush=True); time.sleep(60)")
    child = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "claimed"
        cni = CNI(cache_dir=str(tmp_path))
        assert "already published by a start still in progress" in _refused(cni, PortMapping(port, 80))
    finally:
        child.kill()
        child.wait()
    assert _refused(cni, PortMapping(port, 80)) == ""
    assert os.listdir(tmp_path / "cnirun-ports.claims") == []


@needs_root
@needs_plugins
@needs_docker
def test_the_host_wide_budget_of_published_ports(pworld: World) -> None:
    """CNIRUN_MAX_PUBLISHED_PORTS=3: two ports of one container, two more for another start are refused (one line,
    125, nothing made), one more by `port add` fits, the next is refused; a bad value is one line."""
    w = pworld
    w.env[BUDGET_ENV] = "3"
    a, b = f"te-{w.n}-a", f"te-{w.n}-b"
    base = _free_port(socket.SOCK_STREAM)
    try:
        r = w.cnirun("run", "-d", "--mode", "sandbox", "--name", a, "-p", f"127.0.0.1:{base}-{base + 1}:80-81",
                     "busybox", "sleep", "300")
        assert r.returncode == 0, r.stderr
        r = w.cnirun("run", "-d", "--mode", "sandbox", "--name", b, "-p", f"127.0.0.1:{base + 2}-{base + 3}:80-81",
                     "busybox", "sleep", "300")
        assert r.returncode == 125 and r.stderr.count("\n") == 1, r.stderr
        assert "would make 4 published on this host, over the budget of 3" in r.stderr and BUDGET_ENV in r.stderr
        assert subprocess.run(["docker", "inspect", b], capture_output=True).returncode != 0
        assert w.cnirun("port", "add", a, f"127.0.0.1:{base + 2}:82").returncode == 0
        r = w.cnirun("port", "add", a, f"127.0.0.1:{base + 3}:83")
        assert r.returncode == 1 and "over the budget of 3" in r.stderr and r.stderr.count("\n") == 1, r.stderr
        bad = subprocess.run([*CNIRUN, "port", "add", a, f"127.0.0.1:{base + 3}:83"], cwd=REPO, text=True,
                             capture_output=True, env={**w.env, BUDGET_ENV: "lots"}, timeout=60)
        assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and "not a positive number" in bad.stderr
    finally:
        subprocess.run(["docker", "rm", "-f", a, b], capture_output=True)
    w.assert_clean(within=20.0)


def test_installed_hooks_get_the_budget() -> None:
    """`cnirun install` records CNIRUN_MAX_PUBLISHED_PORTS into the hooks: label ports meet the same budget."""
    from cnirun.oci.argv import hook_env

    assert f"{BUDGET_ENV}=500" in hook_env({"PATH": "/usr/bin", BUDGET_ENV: "500"})
