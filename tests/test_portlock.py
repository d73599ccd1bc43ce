"""cnirun.portlock: a host port is published only where the kernel would let a host service have it.

Real sockets held on this host (loopback, host ports 41000-41999), the check as every way to publish runs it
(portlock.check_ports), and `cnirun run -p` refusing with one line before anything is made. Address plan:
10.214.N.0/24 (network te-N, bridge cteN) for the end-to-end runs.
"""
from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest

from cnirun.errors import ArgumentError
from cnirun.options import PortMapping
from cnirun.portlock import _sctp_held, check_ports
from cnirun.runtime import CNI
from conftest import World, _make_world, needs_docker, needs_plugins, needs_root, world_fixture

pworld = world_fixture(_make_world, 214, "ports", net="te-{n}", bridge="cte{n}", subnet="10.214.{n}.0/24",
                       name_prefix="te-{n}-")


def _free_port(kind: int) -> int:
    """A port in 41000-41999 nothing holds now, for `kind` (SOCK_STREAM/SOCK_DGRAM) on every address."""
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
